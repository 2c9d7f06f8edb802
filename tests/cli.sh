#!/usr/bin/env bash
# The command line as a user meets it: help, version, usage errors and their
# exit codes, and `weld inspect` on real fixtures. Usage: cli.sh WELD SOURCE_DIR
set -u
weld=$1
fx=$2/tests/fixtures
fails=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
. "$(dirname "$0")/lib.sh"

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
has stdout '{"name":"model.embed_tokens.weight","dtype":"F32","shape":[509,64],"file":"model-00001-of-00009.safetensors","parts":1,"bytes":130304}'
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

# torch's neg / conj view bits (metadata of _rebuild_tensor_v2): the storage
# holds the un-negated values, so such a tensor is refused, never copied.
for f in neg_zip neg_legacy neg_param; do
	name=w; [ $f = neg_param ] && name=p
	expect 1 "$weld" inspect "$fx/view_bits/$f.pt"
	has stderr "weld: error: $fx/view_bits/$f.pt: tensor '$name' is a negative view (torch's neg bit): its values are its storage's negated; save it after .resolve_neg()"
	lines stderr 1
	expect 1 "$weld" convert --input "$fx/view_bits/$f.pt" --output "$out/$f"
	has stderr "tensor '$name' is a negative view (torch's neg bit)"
	[ -e "$out/$f/model.safetensors" ] && { echo "FAIL: $f: convert wrote model.safetensors"; fails=$((fails + 1)); }
done
expect 1 "$weld" convert --input "$fx/view_bits/conj_zip.pt" --output "$out/conj" --dtype keep
has stderr "weld: error: $fx/view_bits/conj_zip.pt: tensor 'c' is a conjugate view (torch's conj bit): its values are its storage's conjugated; save it after .resolve_conj()"
lines stderr 1

# st FILE SHAPE: a safetensors file holding one empty F32 tensor 'x' of SHAPE.
st() {
	local h='{"x":{"dtype":"F32","shape":'$2',"data_offsets":[0,0]}}' n i
	n=${#h}
	{
		for i in 0 8 16 24 32 40 48 56; do printf "\\$(printf %o $(((n >> i) & 255)))"; done
		printf %s "$h"
	} >"$1"
}
# A dimension above 2^63-1 passes the reference's header check, but no loader
# indexes it: refused by inspect and convert. 2^63-1 itself is accepted.
st "$out/big63.safetensors" '[0,9223372036854775808]'
expect 1 "$weld" inspect "$out/big63.safetensors"
has stderr "weld: error: $out/big63.safetensors: tensor 'x': dimension 1 is 9223372036854775808, above 2^63-1, which no loader can index"
lines stderr 1
expect 1 "$weld" convert --input "$out/big63.safetensors" --output "$out/big63"
has stderr "tensor 'x': dimension 1 is 9223372036854775808, above 2^63-1"
[ -e "$out/big63/model.safetensors" ] && { echo "FAIL: big63: convert wrote model.safetensors"; fails=$((fails + 1)); }
st "$out/max63.safetensors" '[0,9223372036854775807]'
expect 0 "$weld" inspect "$out/max63.safetensors"

# Integers in JSON are exact, also past 2^53 (a double prints 9.00719925474099e+15).
st "$out/big53.safetensors" '[0,9007199254740993]'
expect 0 "$weld" inspect --json "$out/big53.safetensors"
has stdout '"shape":[0,9007199254740993]'
expect 0 "$weld" inspect --json "$out/max63.safetensors"
has stdout '"shape":[0,9223372036854775807]'
# ...in weld.json too, which verify reads back exactly: one off past 2^53 is caught.
expect 0 "$weld" convert --input "$out/big53.safetensors" --output "$out/big53" --dtype keep
grep -qF '"shape":	[0, 9007199254740993]' "$out/big53/weld.json" || { echo "FAIL: weld.json shape not exact"; fails=$((fails + 1)); }
expect 1 "$weld" verify "$out/big53"
has stdout "PASS  manifest        weld.json describes the 1 tensors of model.safetensors"
sed -i 's/9007199254740993/9007199254740992/' "$out/big53/weld.json"
expect 1 "$weld" verify "$out/big53"
has stdout "FAIL  manifest        weld.json says 'x' is F32 [0, 9007199254740992] at offset 112, model.safetensors has F32 [0, 9007199254740993] at 112"

# inspect refuses what convert refuses before reading data, word for word
# (fixtures/make_refused.py); a CRC-32 only reading finds, so inspect passes it.
for f in deflated encrypted small missing0 collide; do
	expect 1 "$weld" inspect "$fx/refused/$f.pt"
	lines stderr 1
	cp "$out/stderr" "$out/inspect.err"
	expect 1 "$weld" convert --input "$fx/refused/$f.pt" --output "$out/refused_$f" --quiet
	if ! grep "^weld: error:" "$out/stderr" | cmp -s - "$out/inspect.err"; then
		echo "FAIL: $f: inspect and convert refuse differently"
		cat "$out/inspect.err" "$out/stderr" | sed 's/^/  /'
		fails=$((fails + 1))
	fi
done
expect 1 "$weld" inspect "$fx/refused/deflated.pt"
has stderr "weld: error: $fx/refused/deflated.pt: record 'data/0' is compressed (method 8)"
expect 1 "$weld" inspect "$fx/refused/encrypted.pt"
has stderr "weld: error: $fx/refused/encrypted.pt: record 'data/0' is encrypted"
expect 1 "$weld" inspect "$fx/refused/small.pt"
has stderr "weld: error: $fx/refused/small.pt: record 'data/0' holds 8 bytes but its storage needs 24"
expect 1 "$weld" inspect "$fx/refused/missing0.pt"
has stderr "weld: error: $fx/refused/missing0.pt: missing record 'data/0'"
expect 1 "$weld" inspect --json "$fx/refused/collide.pt"
has stderr "weld: error: tensor 'a.b' appears twice in the checkpoint (twice in $fx/refused/collide.pt)"
lines stdout 0
expect 0 "$weld" inspect "$fx/refused/badcrc.pt"
expect 1 "$weld" convert --input "$fx/refused/badcrc.pt" --output "$out/refused_badcrc" --quiet
has stderr "$fx/refused/badcrc.pt: CRC-32 mismatch in record 'data/0'"

# A link to nothing in the input's folder (a stale one in a shared folder) is not a side file: skipped.
cp -r "$fx/qwen2_tied/st_sharded" "$out/dangling-in" && ln -s "$out/nowhere" "$out/dangling-in/stale-link"
expect 0 "$weld" convert --input "$out/dangling-in" --output "$out/dangling-out" --device cpu --quiet
[ -f "$out/dangling-out/config.json" ] && [ ! -e "$out/dangling-out/stale-link" ] && [ ! -L "$out/dangling-out/stale-link" ] ||
	{ echo "FAIL: a dangling link in the input folder"; fails=$((fails + 1)); }

# weld convert: the main job.
expect 0 "$weld" convert --help
has stdout "usage: weld convert --input PATH --output DIR"
has stdout "  --dtype D           bfloat16 (default; alias bf16), float16 (fp16), float32 (fp32),"
# `weld help CMD` is CMD's --help, and every help ends with the exit codes.
for c in convert batch inspect verify; do
	"$weld" "$c" --help >"$out/h1" && "$weld" help "$c" >"$out/h2" && cmp -s "$out/h1" "$out/h2" ||
		fail "weld help $c is not weld $c --help"
	grep -q "^exit codes: 0 " "$out/h1" && tail -n 1 "$out/h1" | grep -q "2 usage error\|3 --device cuda" ||
		fail "weld $c --help does not end with the exit codes"
done
expect 0 "$weld" help
has stdout "  weld help COMMAND       the same as \`weld COMMAND --help\`"
expect 2 "$weld" help frobnicate
has stderr "weld: no command 'frobnicate'"
expect 2 "$weld" convert --input "$fx/qwen2_tied/st_sharded"
has stderr "weld: convert: needs --input PATH and --output DIR"
expect 2 "$weld" convert --input "$fx/qwen2_tied/st_sharded" --output "$out/c" --dtype int4
has stderr "weld: convert: --dtype must be bfloat16, float16, float32 or keep, not 'int4'"
expect 0 "$weld" convert --input "$fx/qwen2_tied/st_sharded" --output "$out/c" --device cpu --threads 2
# A Slurm log (stderr, no terminal): what runs, before any data moves; then the summary. stdout stays empty.
lines stdout 0
lines stderr 2
head -n 1 "$out/stderr" >"$out/first"
has first "weld: converting $fx/qwen2_tied/st_sharded (safetensors-sharded) -> $out/c/model.safetensors: 26 tensors, 501.2 kB to read, 253.3 kB to write as bfloat16, cpu, 2 threads"
tail -n 1 "$out/stderr" >"$out/final"
like final "weld: done in [0-9.]+ s: 26 tensors -> $out/c/model.safetensors, read 504.2 kB \([0-9.]+ GB/s\), wrote 253.3 kB \([0-9.]+ GB/s\), peak memory [0-9]+ MB, cpu, 2 threads"
cmp -s "$out/c/model.safetensors" "$fx/qwen2_tied/st_single_bf16_reference/model.safetensors" ||
	{ echo "FAIL: convert output differs from transformers' bf16 model"; fails=$((fails + 1)); }
# --dtype keep: the first line reads "to write as stored dtypes", not "as as stored".
expect 0 "$weld" convert --input "$fx/qwen2_tied/st_sharded" --output "$out/k" --device cpu --threads 2 --dtype keep
head -n 1 "$out/stderr" >"$out/first"
has first "weld: converting $fx/qwen2_tied/st_sharded (safetensors-sharded) -> $out/k/model.safetensors: 26 tensors, 501.2 kB to read, 503.9 kB to write as stored dtypes, cpu, 2 threads"
expect 1 "$weld" convert --input "$fx/qwen2_tied/st_sharded" --output "$out/c" --device cpu
has stderr "weld: error: $out/c: already holds model.safetensors; use --force to replace it"
expect 0 "$weld" convert --input "$fx/qwen2_tied/bin_sharded" --output "$out/c" --device cpu --force --json --threads 1
lines stdout 1
has stdout '"tensors":26'
has stdout '"backend":"cpu"'
SLURM_CPUS_PER_TASK=3 expect 0 "$weld" convert --input "$fx/qwen2_tied/bin_single" --output "$out/c" --force --device cpu
has stderr ", 3 threads"
expect 0 "$weld" convert --input "$fx/hf_edge/wrapped" --output "$out/e" --pytorch-bin --quiet --device cpu
lines stdout 0
[ -f "$out/e/pytorch_model.bin" ] && [ ! -e "$out/e/model.safetensors" ] ||
	{ echo "FAIL: --pytorch-bin wrote the wrong file"; fails=$((fails + 1)); }
if ! "$weld" --version | grep -q "[1-9] device"; then
	expect 3 "$weld" convert --input "$fx/qwen2_tied/st_sharded" --output "$out/g" --device cuda
	has stderr "weld: error: --device cuda: no usable CUDA device: "
fi

# Formats weld recognises but does not read: inspect and convert both exit 1 with
# one line naming the format and its evidence, and convert leaves nothing behind.
# refused PATH MESSAGE
refused() {
	expect 1 "$weld" inspect "$1"
	last stderr "weld: error: $1: $2"
	lines stderr 1
	mkdir -p "$out/made"
	expect 1 "$weld" convert --input "$1" --output "$out/made/o" --device cpu
	last stderr "weld: error: $1: $2"
	lines stderr 1
	[ -z "$(ls -A "$out/made")" ] || fail "convert of $1 left $(ls -A "$out/made")"
}
u=$out/unsupported
not_yet="weld does not read this format yet"
mkdir -p "$u/checkpoint-10/pytorch_model_fsdp_0" "$u/lora" "$u/uni/global_step1_universal/zero/fc.weight"
touch "$u/checkpoint-10/pytorch_model_fsdp_0/.metadata" "$u/checkpoint-10/pytorch_model_fsdp_0/__0_0.distcp" \
	"$u/checkpoint-10/trainer_state.json" "$u/lora/adapter_config.json" "$u/uni/latest_universal" \
	"$u/uni/global_step1_universal/zero/fc.weight/fp32.pt"
refused "$u/checkpoint-10/pytorch_model_fsdp_0/__0_0.distcp" \
	"a PyTorch Distributed Checkpoint (a *.distcp shard of one); convert the folder that holds its .metadata (weld batch converts a run of them)"
cp "$fx/megatron/model_optim_rng.pt" "$u/model.pt"
refused "$u/model.pt" "a Megatron-LM checkpoint (its dict has 'checkpoint_version'); $not_yet"
refused "$fx/megatron/model_optim_rng.pt" "a Megatron-LM checkpoint (named model_optim_rng.pt); $not_yet"
cp "$fx/qwen2_tied/st_single_fp32/model.safetensors" "$u/lora/adapter_model.safetensors"
refused "$u/lora" "a PEFT adapter (adapter_config.json + adapter_model.safetensors, no full weights); weld does not read adapters; merge it into its base model first (PEFT's merge_and_unload) and convert that"
printf 'GGUF\003\000\000\000' >"$u/model.gguf"
refused "$u/model.gguf" "a GGUF model (starts with GGUF); weld does not read GGUF, a serving format already (llama.cpp)"
refused "$u/uni" "a DeepSpeed universal checkpoint (latest_universal, and no latest); $not_yet; convert the ZeRO checkpoint it was made from"

# A signal mid-run: exit 143, and neither the weights nor a temporary file left behind.
# The input is a 1 GiB safetensors file of zeros (sparse), converted in 4 KiB chunks.
sparse_input "$out/big" 1024
"$weld" convert --input "$out/big" --output "$out/sig" --threads 1 --chunk-bytes 4096 --device cpu >"$out/stdout" 2>"$out/stderr" &
pid=$!
wait_staging "$out" sig
kill -TERM $pid
wait $pid
rc=$?
if [ $rc -ne 143 ]; then
	echo "FAIL: SIGTERM gave exit $rc, expected 143"
	fails=$((fails + 1))
fi
has stderr "weld: interrupted by SIGTERM; the output folder is as it was"
if [ -e "$out/sig" ] || ls -A "$out" | grep -q '^\.sig\.'; then
	echo "FAIL: the interrupted run left files: $(ls -A "$out" | grep sig)"
	fails=$((fails + 1))
fi

# Strided views: a transposed 2100 x 2100 view is one segment per run for
# convert, which refuses it, and so inspect (the same checks, no data read)
# refuses it too; a record damaged outside a slice's rows is still caught.
# The files are made with Python's standard library; without python3 this
# part is skipped.
if command -v python3 >/dev/null; then
	python3 "$fx/make_views.py" transposed 2100 "$out/t.pt"
	expect 1 "$weld" inspect "$out/t.pt"
	has stderr "weld: error: $out/t.pt: tensor 'w' is a strided view made of 4410000 separate runs; save it contiguous"
	lines stderr 1
	expect 1 "$weld" convert --input "$out/t.pt" --output "$out/t" --device cpu --quiet
	has stderr "tensor 'w' is a strided view made of 4410000 separate runs; save it contiguous"
	python3 "$fx/make_views.py" transposed 300 "$out/t300.pt"
	expect 0 "$weld" convert --input "$out/t300.pt" --output "$out/t300" --device cpu --quiet
	expect 1 "$weld" verify "$out/t300" --against "$out/t300.pt" --device cpu # no config.json: FAIL config
	has stdout "PASS  against_values  all 1 tensors equal the source cast to their dtype exactly"
	python3 "$fx/make_views.py" slice "$out/slice.pt"
	expect 1 "$weld" convert --input "$out/slice.pt" --output "$out/slice" --device cpu --quiet
	has stderr "CRC-32 mismatch in record 'data/0'"
else
	echo "cli: strided views skipped: no python3"
fi

if [ "$fails" -ne 0 ]; then
	echo "$fails CLI check(s) failed"
	exit 1
fi
echo "all CLI checks passed"
