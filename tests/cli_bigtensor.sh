#!/usr/bin/env bash
# A tensor of more than 2^31 elements and outputs past 2^32 bytes, end to end:
# an 8 GiB sparse safetensors input (tests/bigtensor.py: F32 [524289, 4096]
# and a small tensor behind it) converted to bf16 safetensors and to a zip64
# pytorch_model.bin, each checked where it matters byte for byte and against
# zlib's CRC-32s, then passed by `weld verify`; the .bin is read back in turn.
# Usage: cli_bigtensor.sh WELD SOURCE_DIR (ctest label "big").
#
# The outputs are 4 GiB each, at most two at a time. They go to $WELD_BIG_DIR,
# else to /dev/shm when it and the memory have room, else beside the input;
# in memory the test takes about a minute on 2 cores, on a disk several.
# Exit 77 (skipped) when no place has 9 GiB free.
# WELD_BIG_CUDA=1 (scripts/device-check) also converts with --device cuda and
# requires the very bytes of --device cpu, and verifies on the GPU.
set -u
weld=$1
src=$2
fails=0
out=$(mktemp -d)
big=
trap 'rm -rf "$out" ${big:+"$big"}' EXIT
. "$(dirname "$0")/lib.sh"
py=python3
gen=$src/tests/bigtensor.py
need=$((9 << 30))

# free_bytes DIR: what df says is available there.
free_bytes() {
	df -Pk "$1" 2>/dev/null | awk 'NR == 2 { printf "%.0f\n", $4 * 1024 }'
}
mem=$(awk '/^MemAvailable:/ { printf "%.0f\n", $2 * 1024 }' /proc/meminfo 2>/dev/null)
if [ -n "${WELD_BIG_DIR:-}" ]; then
	big=$(mktemp -d -p "$WELD_BIG_DIR")
elif [ -d /dev/shm ] && [ "$(free_bytes /dev/shm)" -ge $need ] 2>/dev/null && [ "${mem:-0}" -ge $((need + (4 << 30))) ]; then
	big=$(mktemp -d -p /dev/shm)
elif ! [ "$(free_bytes "$out")" -ge $need ] 2>/dev/null; then
	echo "bigtensor: skipped: no place with 9 GiB free for the outputs (set WELD_BIG_DIR)"
	exit 77
fi
dir=${big:-$out}
echo "bigtensor: outputs in $dir"

# step NAME CMD...: run CMD (its status is the caller's to check) and say how long it took.
step() {
	local name=$1 t0=$SECONDS
	shift
	"$@"
	local rc=$?
	echo "bigtensor: $name: $((SECONDS - t0)) s"
	return $rc
}
# checked WHAT OUT: tests/bigtensor.py's checks of OUT.
checked() {
	step "check $2" "$py" "$gen" "$1" "$dir/$2" || fail "$gen $1 $dir/$2"
}
# verified OUT WEIGHTS [--device D]: weld verify passes OUT, recomputing every CRC-32.
verified() {
	local o=$1 w=$2
	shift 2
	step "verify $o" expect 0 "$weld" verify "$dir/$o" "$@"
	has stdout "PASS  crc32           $w and its 2 tensors match weld.json"
	last stdout "weld verify: 13 checks: 12 passed, 1 warnings, 0 failed"
}

"$py" "$gen" make "$out/in" || fail "$gen make"
ls -s "$out/in/model.safetensors" | awk '{ if ($1 > 1024) print "bigtensor: note: the input is not sparse here (" $1 " KiB)" }'

# Safetensors: the small tensor lands past byte 2^32.
step "convert to safetensors" expect 0 "$weld" convert --input "$out/in" --output "$dir/st" --device cpu --quiet
checked check-st st
verified st model.safetensors
if [ "${WELD_BIG_CUDA:-0}" = 1 ]; then
	step "convert on cuda" expect 0 "$weld" convert --input "$out/in" --output "$dir/gpu" --device cuda --quiet
	cmp "$dir/st/model.safetensors" "$dir/gpu/model.safetensors" || fail "--device cuda wrote other bytes than --device cpu"
	cmp "$dir/st/weld.json" "$dir/gpu/weld.json" || fail "--device cuda wrote another weld.json than --device cpu"
	rm -rf "$dir/gpu"
	verified st model.safetensors --device cuda
	has stdout "(computed on cuda)"
fi
rm -rf "$dir/st"

# pytorch_model.bin: zip64 records, then read back as an input (a zip64 record of 4 GiB, CRC-checked).
step "convert to pytorch_model.bin" expect 0 "$weld" convert --input "$out/in" --output "$dir/bin" --pytorch-bin --device cpu --quiet
checked check-bin bin
verified bin pytorch_model.bin
step "convert the .bin back" expect 0 "$weld" convert --input "$dir/bin" --output "$dir/back" --dtype keep --device cpu --quiet
checked check-st back
rm -rf "$dir/bin" "$dir/back"

[ $fails -eq 0 ] || echo "$fails check(s) failed"
exit $((fails > 0))
