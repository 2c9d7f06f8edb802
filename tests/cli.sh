#!/usr/bin/env bash
# The command line as a user meets it: help, version, usage errors and their
# exit codes, and `weld inspect` on real fixtures. Usage: cli.sh WELD SOURCE_DIR
set -u
weld=$1
fx=$2/tests/fixtures
fails=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

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
# has FILE TEXT: FILE contains TEXT literally.
has() {
	if ! grep -qF -- "$2" "$out/$1"; then
		echo "FAIL: $1 lacks '$2'"
		sed "s/^/  $1: /" "$out/$1" | head -5
		fails=$((fails + 1))
	fi
}
lines() {
	local n
	n=$(wc -l <"$out/$1")
	if [ "$n" != "$2" ]; then
		echo "FAIL: $1 has $n lines, expected $2"
		fails=$((fails + 1))
	fi
}

expect 0 "$weld" --help
has stdout "usage: weld COMMAND"
has stdout "exit codes:"
expect 0 "$weld" --version
has stdout "weld 0."
lines stdout 1
expect 2 "$weld"
expect 2 "$weld" frobnicate
has stderr "weld: unknown command 'frobnicate'"
expect 2 "$weld" --frobnicate
has stderr "weld: unknown option '--frobnicate'"
expect 0 "$weld" inspect --help
has stdout "usage: weld inspect PATH [--json]"
expect 2 "$weld" inspect
has stderr "weld: inspect: expects one PATH"
expect 2 "$weld" inspect --bogus "$fx/qwen2_tied/bin_single"
has stderr "weld: inspect: unknown option '--bogus'"
has stderr "Try 'weld inspect --help'."

# A table for people...
expect 0 "$weld" inspect "$fx/qwen2_tied/bin_sharded"
has stdout "torch-sharded, 9 files"
has stdout "model.embed_tokens.weight"
has stdout "26 tensors, 125312 parameters, 501248 bytes"
# ...and one JSON object for machines.
expect 0 "$weld" inspect --json "$fx/qwen2_tied/st_sharded"
lines stdout 1
has stdout '"format":"safetensors-sharded"'
has stdout '{"name":"model.embed_tokens.weight","dtype":"F32","shape":[509,64],"file":"model-00001-of-00009.safetensors","bytes":130304}'
has stdout '"tensor_count":26'
expect 0 "$weld" inspect --json "$fx/torch_edge/edge_zip.pt"
has stdout '"format":"torch-zip"'
has stdout '{"name":"transposed","dtype":"F32","shape":[6,4]'
has stdout '{"name":"nested.b.c","dtype":"F32","shape":[2,2]'
expect 0 "$weld" inspect "$fx/torch_edge/edge_legacy.pt"
has stdout "torch-legacy, 1 file"

# Errors: one line on stderr naming the file, exit 1.
expect 1 "$weld" inspect "$fx/qwen2_tied/st_sharded/config.json"
has stderr "weld: error: $fx/qwen2_tied/st_sharded/config.json: not a safetensors or torch checkpoint file"
lines stderr 1
head -c 3000 "$fx/qwen2_tied/bin_single/pytorch_model.bin" >"$out/cut.bin"
expect 1 "$weld" inspect "$out/cut.bin"
has stderr "weld: error: $out/cut.bin: "
lines stderr 1

if [ "$fails" -ne 0 ]; then
	echo "$fails CLI check(s) failed"
	exit 1
fi
echo "all CLI checks passed"
