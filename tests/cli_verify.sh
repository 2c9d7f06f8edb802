#!/usr/bin/env bash
# `weld verify` as a user meets it: exit codes 0 / 1 / 2 / 3, one line per
# check, the final summary line, and --json. Usage: cli_verify.sh WELD SOURCE_DIR
set -u
weld=$1
fx=$2/tests/fixtures
fails=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
. "$(dirname "$0")/lib.sh"

good=$out/good
expect 0 "$weld" convert --input "$fx/qwen2_tied/st_sharded" --output "$good" --device cpu --quiet

expect 0 "$weld" verify --help
has stdout "usage: weld verify DIR [--against SOURCE]"
expect 0 "$weld" verify "$good"
has stdout "PASS  crc32           model.safetensors and its 26 tensors match weld.json (computed on cpu)"
has stdout "WARN  tokenizer       no tokenizer files"
has stdout "PASS  config_shapes   qwen2: hidden 64, vocab 509, 2 layers, 4 heads (2 KV) of dim 16, intermediate 176 agree with the tensors; the head is the tied embedding"
last stdout "weld verify: 14 checks: 13 passed, 1 warnings, 0 failed"
expect 0 "$weld" verify "$good" --against "$fx/qwen2_tied/st_single_fp32" --device cpu
has stdout "TENSOR"
has stdout "PASS  against_values  all 26 tensors equal the source cast to their dtype exactly"
last stdout "weld verify: 17 checks: 16 passed, 1 warnings, 0 failed"
expect 0 "$weld" verify "$good" --json
has stdout '"ok":true'
has stdout '{"name":"config_dtype","level":"PASS","detail":"config.json says bfloat16, the tensors are BF16"}'

# Broken: no config.json. Exit 1, the FAIL line, the summary still last.
cp -r "$good" "$out/broken"
rm "$out/broken/config.json"
expect 1 "$weld" verify "$out/broken"
has stdout "FAIL  config          config.json: missing"
last stdout "weld verify: 12 checks: 10 passed, 1 warnings, 1 failed"
expect 1 "$weld" verify "$out/broken" --json
has stdout '"ok":false'
has stdout '"failed":1'

# Broken: config.json's hidden_size disagrees with the tensors; then a second closing brace.
cp -r "$good" "$out/sizes"
sed -i 's/"hidden_size": 64/"hidden_size": 32/' "$out/sizes/config.json"
expect 1 "$weld" verify "$out/sizes"
has stdout "FAIL  config_shapes   config.json hidden_size 32, but 'model.embed_tokens.weight' is [509, 64] (and 14 more disagreements)"
last stdout "weld verify: 14 checks: 12 passed, 1 warnings, 1 failed"
cp "$good/config.json" "$out/sizes/config.json"
printf '}' >>"$out/sizes/config.json"
end=$(($(wc -c <"$good/config.json"))) # where the brace lands: Python's "Extra data ... (char N)"
expect 1 "$weld" verify "$out/sizes"
has stdout "FAIL  config          config.json: not valid JSON (trailing data after the value at byte $end)"

# Broken: a stale shard beside the weights.
cp "$fx/qwen2_tied/st_sharded/model-00002-of-00009.safetensors" "$good/"
expect 1 "$weld" verify "$good"
has stdout "FAIL  one_format      stale weight file beside model.safetensors: 'model-00002-of-00009.safetensors'"
rm "$good/model-00002-of-00009.safetensors"

# Could not verify at all: exit 1 with one error line.
expect 1 "$weld" verify "$out/nowhere"
has stderr "weld: error: $out/nowhere: no such folder"
expect 1 "$weld" verify "$good" --against "$out/nowhere"
has stderr "weld: error: $out/nowhere: no such file or folder"

# Usage errors: exit 2.
expect 2 "$weld" verify
has stderr "weld: verify: expects one DIR"
expect 2 "$weld" verify "$good" "$good"
expect 2 "$weld" verify "$good" --device gpu
has stderr "weld: verify: --device must be auto, cpu or cuda, not 'gpu'"
expect 2 "$weld" verify "$good" --bogus
has stderr "weld: verify: unknown option '--bogus'"

# --device cuda: with a GPU the CRC-32s (and, with cuBLAS, the L2 norms) are
# computed there and the report is the CPU's to the printed digit; without one,
# exit 3 like convert.
src=$fx/qwen2_tied/st_single_fp32
if "$weld" verify "$good" --device cuda >/dev/null 2>&1; then
	expect 0 "$weld" verify "$good" --against "$src" --device cuda
	has stdout "match weld.json (computed on cuda)"
	sed -e 's/ (computed on [a-z]*)//' -e 's/, norms by cuBLAS//' "$out/stdout" >"$out/report.cuda"
	expect 0 "$weld" verify "$good" --against "$src" --device cpu
	sed -e 's/ (computed on [a-z]*)//' "$out/stdout" >"$out/report.cpu"
	if ! cmp -s "$out/report.cuda" "$out/report.cpu"; then
		echo "FAIL: the --device cuda report differs from the cpu one:"
		diff "$out/report.cpu" "$out/report.cuda" | head -10
		fails=$((fails + 1))
	fi
else
	expect 3 "$weld" verify "$good" --device cuda
	has stderr "--device cuda: no usable CUDA device"
fi

if [ "$fails" != 0 ]; then
	echo "$fails failure(s)"
	exit 1
fi
echo "cli_verify: all passed"
