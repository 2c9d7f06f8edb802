#!/usr/bin/env bash
# Golden outputs: every fixture converted with every dtype to safetensors and
# pytorch_model.bin, `weld inspect --json` of every input, and `weld verify
# --against` of the bf16 outputs. Prints one line per output file (its
# SHA-256) and per command (its exit code and, on failure, its error line),
# so a change that alters a single byte of any output shows up as a diff.
#
#   tests/golden/run.sh WELD SOURCE_DIR            compare with tests/golden/outputs.txt
#   tests/golden/run.sh WELD SOURCE_DIR --record   rewrite tests/golden/outputs.txt
#
# outputs.txt was recorded from the commit before the restructuring of
# issue 10; it changes only when an output is meant to change.
set -u
weld=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$2
mode=${3:-compare}
cd "$src" || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

inputs=(tests/fixtures/qwen2_tied/bin_sharded tests/fixtures/qwen2_tied/bin_single
	tests/fixtures/qwen2_tied/st_sharded tests/fixtures/qwen2_tied/st_single_fp32
	tests/fixtures/qwen2_tied/st_single_bf16_reference tests/fixtures/hf_edge/wrapped
	tests/fixtures/torch_edge/edge_zip.pt tests/fixtures/torch_edge/edge_legacy.pt
	tests/fixtures/torch_edge/plain_zip.pt tests/fixtures/torch_writer/mixed.pt)
for d in tests/fixtures/zero/*/; do
	inputs+=("${d%/}")
done

# run NAME CMD...: one line with the exit code and the first error line.
run() {
	local name=$1
	shift
	"$@" >"$work/stdout" 2>"$work/stderr"
	local rc=$?
	local why=""
	[ $rc -ne 0 ] && why=" $(grep -m1 'error' "$work/stderr")"
	echo "$name: exit $rc$why"
}

# files DIR NAME: the SHA-256 of every file in DIR, by name. weld.json's
# source_path is the input resolved: where this checkout lies becomes SRC
# before it is hashed, so the hashes hold wherever the tests run.
root=$(pwd -P)
files() {
	(cd "$1" && find . -type f | LC_ALL=C sort | while read -r f; do
		if [ "$f" = ./weld.json ]; then
			local text
			text=$(cat "$f")
			echo "$2/${f#./} $(printf '%s\n' "${text//"\"$root/"/\"SRC/}" | sha256sum | cut -c1-64)"
		else
			echo "$2/${f#./} $(sha256sum "$f" | cut -c1-64)"
		fi
	done)
}

generate() {
	for in in "${inputs[@]}"; do
		run "inspect $in" "$weld" inspect --json "$in"
		echo "inspect $in $(sha256sum <"$work/stdout" | cut -c1-64)"
		for dtype in bfloat16 float16 float32 keep; do
			for kind in safetensors pytorch-bin; do
				local o="$work/out"
				rm -rf "$o"
				run "convert $in $dtype $kind" "$weld" convert --input "$in" --output "$o" --dtype "$dtype" \
					--"$kind" --device cpu --threads 2 --quiet
				[ -d "$o" ] && files "$o" "  $dtype.$kind"
				if [ "$dtype.$kind" = bfloat16.safetensors ] && [ -d "$o" ]; then
					run "verify $in" "$weld" verify "$o" --against "$in" --device cpu
					sed "s#$o#OUT#g" "$work/stdout" | sed 's/^/    /'
				fi
			done
		done
	done
}

if [ "$mode" = --record ]; then
	generate >tests/golden/outputs.txt
	echo "recorded $(wc -l <tests/golden/outputs.txt) lines in tests/golden/outputs.txt"
	exit 0
fi
generate >"$work/now.txt"
if diff -u tests/golden/outputs.txt "$work/now.txt" >"$work/diff"; then
	echo "golden: $(wc -l <"$work/now.txt") lines, every output as recorded"
	exit 0
fi
head -60 "$work/diff"
echo "golden: outputs differ from tests/golden/outputs.txt (above)"
exit 1
