# Shared by the shell tests: run a command and check its exit code and output.
# The sourcing script sets $out (a scratch folder) and fails=0 first.

# expect CODE CMD...: run CMD, require exit CODE; stdout/stderr land in $out.
expect() {
	local want=$1
	shift
	"$@" >"$out/stdout" 2>"$out/stderr"
	local got=$?
	if [ "$got" != "$want" ]; then
		echo "FAIL: '$*' exited $got, expected $want"
		sed 's/^/  stderr: /' "$out/stderr" | head -5
		fails=$((fails + 1))
	fi
}
# has FILE TEXT: $out/FILE contains TEXT literally.
has() {
	if ! grep -qF -- "$2" "$out/$1"; then
		echo "FAIL: $1 lacks '$2'"
		sed "s/^/  $1: /" "$out/$1" | head -5
		fails=$((fails + 1))
	fi
}
# lines FILE N: $out/FILE has N lines.
lines() {
	local n
	n=$(wc -l <"$out/$1")
	if [ "$n" != "$2" ]; then
		echo "FAIL: $1 has $n lines, expected $2"
		fails=$((fails + 1))
	fi
}
# last FILE TEXT: the last line of $out/FILE is exactly TEXT.
last() {
	local got
	got=$(tail -n 1 "$out/$1")
	if [ "$got" != "$2" ]; then
		echo "FAIL: last line of $1 is '$got', expected '$2'"
		fails=$((fails + 1))
	fi
}
# like FILE ERE: some line of $out/FILE matches the extended regular expression ERE whole.
like() {
	if ! grep -qE -- "^$2\$" "$out/$1"; then
		echo "FAIL: no line of $1 matches '$2'"
		sed "s/^/  $1: /" "$out/$1" | head -5
		fails=$((fails + 1))
	fi
}
# fail TEXT: count a failure and say what it was.
fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}
# make_run DIR FIXTURE:NAME...: a training run folder of copies of fixture
# checkpoints ($fx/FIXTURE as DIR/NAME), writable.
make_run() {
	local run=$1 spec
	shift
	mkdir -p "$run"
	for spec in "$@"; do
		cp -r "$fx/${spec%%:*}" "$run/${spec##*:}"
	done
	chmod -R u+w "$run"
}
# sparse_input DIR MIB: DIR/model.safetensors, one F32 tensor of MIB MiB of
# zeros in a sparse file; converted in 4 KiB chunks it keeps weld busy a while.
sparse_input() {
	local dir=$1 bytes=$(($2 << 20))
	local json='{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":['$((bytes / 4))'],"data_offsets":[0,'$bytes']}}'
	while [ $(((${#json} + 8) % 8)) -ne 0 ]; do json="$json "; done
	mkdir -p "$dir"
	printf "\\x$(printf %02x $((${#json} & 255)))\\x$(printf %02x $((${#json} >> 8)))\\0\\0\\0\\0\\0\\0%s" "$json" >"$dir/model.safetensors"
	truncate -s $((8 + ${#json} + bytes)) "$dir/model.safetensors"
}
# wait_staging PARENT NAME: until the conversion into PARENT/NAME writes its weights in its staging folder.
wait_staging() {
	for _ in $(seq 1 200); do
		ls -A "$1"/."$2".weld-stage-* 2>/dev/null | grep -q weld-tmp && return
		sleep 0.05
	done
}
