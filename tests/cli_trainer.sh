#!/usr/bin/env bash
# Real HF Trainer + DeepSpeed runs (tests/fixtures/trainer, made on the CPU by
# make_trainer_fixtures.py): plain `weld convert` on a checkpoint-N reads the
# DeepSpeed fp32 masters, writes exactly what zero_to_fp32 + torch's cast +
# save_pretrained write, says so from its first line, and cross-checks the
# Trainer's own 16-bit weights: agreement, a difference, placeholders,
# another dtype, unreadable weights, --cross-check error, --type hf.
# Usage: cli_trainer.sh WELD SOURCE_DIR [FAULT_SHIM]
# With FAULT_SHIM (tests/fault/fault_io.c, not under a sanitizer): a SIGTERM
# during the cross-check cancels the run and publishes nothing.
set -u
weld=$1
shim=${3:-}
fx=$2/tests/fixtures
tr=$fx/trainer
fails=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
. "$(dirname "$0")/lib.sh"
c() { "$weld" convert --device cpu --threads 2 "$@"; }
same() { cmp -s "$1" "$2" || fail "$1 differs from $2"; }
json_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$@"; }
# rewrite_st FILE empty|first5: the safetensors FILE with every tensor an empty placeholder (what a ZeRO-3
# module state holds when not gathered), or with only the first five names (sorted) and their data.
rewrite_st() {
	python3 - "$1" "$2" <<'EOF'
import json, struct, sys
path, mode = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head, data = json.loads(raw[8:8 + n]), raw[8 + n:]
names = sorted(k for k in head if k != "__metadata__")
out, keep = {"__metadata__": head["__metadata__"]}, b""
for k in names if mode == "empty" else names[:5]:
    b, e = (0, 0) if mode == "empty" else head[k]["data_offsets"]
    shape = [0] if mode == "empty" else head[k]["shape"]
    out[k] = {"dtype": head[k]["dtype"], "shape": shape, "data_offsets": [len(keep), len(keep) + e - b]}
    keep += data[b:e]
text = json.dumps(out).encode()
open(path, "wb").write(struct.pack("<Q", len(text)) + text + keep)
EOF
}
# first_line FILE: $out/FILE's first line alone in $out/first.
first_line() { head -n 1 "$out/$1" >"$out/first"; }

# Every checkpoint of every run, as a user types it: no --type.
for ck in z2_untied/checkpoint-1:global_step1:2:21 z2_untied/checkpoint-2:global_step2:2:21 \
	z2_tied/checkpoint-1:global_step1:2:27 z3_gather/checkpoint-1:global_step1:3:26; do
	IFS=: read -r rel tag stage n <<<"$ck"
	in=$tr/$rel o=$out/${rel//\//_}
	expect 0 c --input "$in" --output "$o"
	same "$o/model.safetensors" "$tr/${rel%%/*}/oracle/${rel##*/}.bf16.safetensors"
	lines stdout 0
	first_line stderr
	like first "weld: converting $in \\(deepspeed: ZeRO-$stage, 2 ranks, tag $tag\\) -> $o/model.safetensors: [0-9]+ tensors, [0-9.]+ kB to read, [0-9.]+ kB to write as bfloat16, cpu, 2 threads"
	has stderr "weld: note: $in: read the DeepSpeed fp32 master weights (tag $tag), not the HF safetensors weights beside them (--type hf reads those)"
	last stderr "weld: cross-check: the HF safetensors weights beside the masters agree: $n tensors match the masters cast to bfloat16 (CRC-32)"
	[ "$(json_field "$o/weld.json" '["cross_check"]["result"]')" = agree ] || fail "$rel: weld.json cross_check"
	[ "$(json_field "$o/weld.json" '["source_choice"]')" = "$in: read the DeepSpeed fp32 master weights (tag $tag), not the HF safetensors weights beside them (--type hf reads those)" ] ||
		fail "$rel: weld.json source_choice"
done
expect 0 "$weld" verify "$out/z2_tied_checkpoint-1" --device cpu
has stdout "PASS  cross_check     at conversion, the HF safetensors weights beside the masters agree: 27 tensors"

# ZeRO-3 without gathered 16-bit weights: the Trainer saved none (transformers 5.24); nothing to cross-check.
expect 0 c --input "$tr/z3_nogather/checkpoint-1" --output "$out/nogather" --json
same "$out/nogather/model.safetensors" "$tr/z3_nogather/oracle/checkpoint-1.bf16.safetensors"
grep -q "cross-check\|weld: note" "$out/stderr" && fail "z3_nogather: a note or cross-check with no HF weights"
[ "$(json_field "$out/stdout" '["cross_check"]["result"]')" = none ] || fail "z3_nogather: --json cross_check"

# One bf16 element of the Trainer's copy altered: a warning naming the tensor, the output still exact.
alt=$tr/z2_altered/checkpoint-2
diff_line="the HF safetensors weights beside the masters DIFFER from the masters cast to bfloat16 in 1 of 21 tensors (first: model.layers.1.mlp.down_proj.weight)"
expect 0 c --input "$alt" --output "$out/alt" --json
same "$out/alt/model.safetensors" "$tr/z2_altered/oracle/checkpoint-2.bf16.safetensors"
last stderr "weld: warning: $diff_line"
[ "$(json_field "$out/stdout" '["cross_check"]["first_difference"]')" = model.layers.1.mlp.down_proj.weight ] &&
	[ "$(json_field "$out/stdout" '["cross_check"]["differing"]')" = 1 ] || fail "--json cross_check of the altered copy"
[ "$(json_field "$out/alt/weld.json" '["cross_check"]["result"]')" = differ ] || fail "weld.json: altered copy"
expect 0 "$weld" verify "$out/alt" --device cpu
has stdout "WARN  cross_check     at conversion, $diff_line"
# --cross-check error: the run fails and publishes nothing.
expect 1 c --input "$alt" --output "$out/alt-strict" --cross-check error
last stderr "weld: error: $alt: $diff_line; --cross-check warn converts anyway"
[ -z "$(ls -A "$out" | grep alt-strict)" ] || fail "--cross-check error left $(ls -A "$out" | grep alt-strict)"
# off: not even read.
expect 0 c --input "$alt" --output "$out/alt-off" --cross-check off
grep -q "cross-check\|warning" "$out/stderr" && fail "--cross-check off still checked"
expect 2 c --input "$alt" --output "$out/x" --cross-check maybe
has stderr "weld: convert: --cross-check must be warn, error or off, not 'maybe'"

# --type hf reads the Trainer's copy instead: no choice, nothing to cross-check.
expect 0 c --input "$tr/z2_untied/checkpoint-2" --output "$out/hf" --type hf
same "$out/hf/model.safetensors" "$tr/z2_untied/oracle/checkpoint-2.bf16.safetensors"
first_line stderr
like first "weld: converting $tr/z2_untied/checkpoint-2 \\(safetensors\\) -> .*"
lines stderr 2

# Another output dtype: the bf16 copy is not comparable, and the summary says why.
expect 0 c --input "$tr/z2_untied/checkpoint-1" --output "$out/f32" --dtype fp32
last stderr "weld: cross-check: the HF safetensors weights beside the masters are bfloat16 and the output float32: not compared"

# Placeholders (what a ZeRO-3 module state holds when not gathered: every tensor empty) are skipped, saying so.
ph=$out/placeholder
cp -r "$tr/z3_gather/checkpoint-1" "$ph"
rewrite_st "$ph/model.safetensors" empty
expect 0 c --input "$ph" --output "$out/ph"
same "$out/ph/model.safetensors" "$tr/z3_gather/oracle/checkpoint-1.bf16.safetensors"
last stderr "weld: cross-check: the HF safetensors weights beside the masters are placeholders (ZeRO-3 saved without gathering 16-bit weights): not compared; 26 empty placeholders skipped"

# Unreadable 16-bit weights are a skipped cross-check, not a failed conversion of the masters.
truncate -s 100 "$ph/model.safetensors"
expect 0 c --input "$ph" --output "$out/ph2"
same "$out/ph2/model.safetensors" "$tr/z3_gather/oracle/checkpoint-1.bf16.safetensors"
tail -n 1 "$out/stderr" >"$out/final"
like final "weld: cross-check: the HF weights beside the masters could not be read: $ph/model.safetensors: .*"

# A whole Trainer run through batch: every checkpoint from its masters, cross-checked, the oracle's bytes.
cp -r "$tr/z2_untied" "$out/run" && rm -r "$out/run/oracle"
expect 0 "$weld" batch --input-dir "$out/run" --output-dir "$out/outs" --all-checkpoints --device cpu
for s in 1 2; do
	same "$out/outs/run_step_$s/model.safetensors" "$tr/z2_untied/oracle/checkpoint-$s.bf16.safetensors"
	has stderr "checkpoint-$s: cross-check: the HF safetensors weights beside the masters agree: 21 tensors"
done
lines stdout 0

# A .bin copy (save_safetensors=False) whose 2-D tensors are strided views: gathered and compared.
bin=$out/bin
cp -r "$tr/z2_untied/checkpoint-2" "$bin" && rm "$bin/model.safetensors"
cp "$tr/variants/checkpoint-2.views.bin" "$bin/pytorch_model.bin"
expect 0 c --input "$bin" --output "$out/bin-out"
same "$out/bin-out/model.safetensors" "$tr/z2_untied/oracle/checkpoint-2.bf16.safetensors"
last stderr "weld: cross-check: the HF torch-zip weights beside the masters agree: 21 tensors match the masters cast to bfloat16 (CRC-32)"
# ... damaged inside a zip record (its CRC-32 no longer matches): the copy differs; the masters still convert.
python3 - "$bin/pytorch_model.bin" <<'EOF2'
import sys, zipfile
path = sys.argv[1]
with zipfile.ZipFile(path) as z:
    info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
    at = info.header_offset + 30 + name_len + extra_len
with open(path, "r+b") as f:
    f.seek(at)
    b = f.read(1)
    f.seek(at)
    f.write(bytes([b[0] ^ 1]))
EOF2
expect 0 c --input "$bin" --output "$out/bin-bad"
same "$out/bin-bad/model.safetensors" "$tr/z2_untied/oracle/checkpoint-2.bf16.safetensors"
tail -n 1 "$out/stderr" >"$out/final"
like final "weld: warning: the HF torch-zip weights beside the masters DIFFER from the masters cast to bfloat16 in [0-9]+ of 21 tensors \\(first: [a-z0-9_.]+, unreadable: $bin/pytorch_model.bin: CRC-32 mismatch in record 'data/0' \\(stored 0x[0-9a-f]+, computed 0x[0-9a-f]+\\)\\)"

# A copy that lacks tensors agrees only on what it holds, and says what it lacks.
part=$out/part
cp -r "$tr/z2_untied/checkpoint-2" "$part"
rewrite_st "$part/model.safetensors" first5
expect 0 c --input "$part" --output "$out/part-out" --json
last stderr "weld: cross-check: the HF safetensors weights beside the masters agree: 5 tensors match the masters cast to bfloat16 (CRC-32); 16 output tensors not in the copy (first: model.layers.0.mlp.up_proj.weight)"
[ "$(json_field "$out/stdout" '["cross_check"]["missing"]')" = 16 ] || fail "--json cross_check.missing"

# The tag given itself, inside its Trainer folder: the copy one level up is still cross-checked.
expect 0 c --input "$tr/z2_tied/checkpoint-1/global_step1" --output "$out/tag"
same "$out/tag/model.safetensors" "$tr/z2_tied/oracle/checkpoint-1.bf16.safetensors"
last stderr "weld: cross-check: the HF safetensors weights beside the masters agree: 27 tensors match the masters cast to bfloat16 (CRC-32)"
# --type zero on the Trainer folder: no choice to note, but the copy is checked.
expect 0 c --input "$tr/z2_tied/checkpoint-1" --output "$out/zero" --type zero
grep -q "weld: note:" "$out/stderr" && fail "--type zero: a choice noted"
last stderr "weld: cross-check: the HF safetensors weights beside the masters agree: 27 tensors match the masters cast to bfloat16 (CRC-32)"

# Without `latest`, auto reads the Trainer's copy, and says where the masters are.
nol=$out/nolatest
cp -r "$tr/z2_untied/checkpoint-2" "$nol" && rm "$nol/latest"
expect 0 c --input "$nol" --output "$out/nol-out"
has stderr "weld: note: $nol: read the HF safetensors weights; global_step2/ holds DeepSpeed masters, but no 'latest' names it (--input $nol/global_step2 reads them)"
cp -r "$tr/z3_nogather/checkpoint-1" "$out/nol3" && rm "$out/nol3/latest"
expect 1 c --input "$out/nol3" --output "$out/nol3-out"
last stderr "weld: error: $out/nol3: no 'latest' names the DeepSpeed tag global_step1/ (--input $out/nol3/global_step1 reads it)"
# A broken tag where HF weights were passed over: the error says how to read those.
brk=$out/broken
cp -r "$tr/z2_untied/checkpoint-2" "$brk" && rm "$brk"/global_step2/bf16_zero_pp_rank_1_*
expect 1 c --input "$brk" --output "$out/brk-out"
tail -n 1 "$out/stderr" >"$out/final"
like final "weld: error: $brk/.*; --type hf reads the HF safetensors weights beside it"

# Slurm's time limit (SIGTERM) during the cross-check: the run stops, exit 143, nothing published.
if [ -n "$shim" ]; then
	WELD_FAULT_DIR=$alt WELD_FAULT_LOG=$out/calls LD_PRELOAD=$shim "$weld" convert --input "$alt" --output "$out/log-run" \
		--device cpu --quiet || fail "logging run failed"
	n=$(grep " $alt/model.safetensors\$" "$out/calls" | head -n 1 | cut -d' ' -f2)
	[ -n "$n" ] || fail "the cross-check never opened the copy"
	WELD_FAULT_DIR=$alt WELD_FAULT=open:$n:term LD_PRELOAD=$shim expect 143 c --input "$alt" --output "$out/term"
	last stderr "weld: interrupted by SIGTERM; the output folder is as it was"
	[ -z "$(ls -A "$out" | grep term)" ] || fail "SIGTERM in the cross-check left $(ls -A "$out" | grep term)"
fi

# --dry-run: the plan, by kind of file, and nothing written. The masters read are the fp32 of every
# tensor the oracle (bf16) holds: twice its tensor bytes.
st_bytes() { python3 -c 'import json,struct,sys; r=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",r[:8])[0]; h=json.loads(r[8:8+n]); print(sum(v["data_offsets"][1]-v["data_offsets"][0] for k,v in h.items() if k!="__metadata__"))' "$1"; }
oracle=$tr/z2_untied/oracle/checkpoint-2.bf16.safetensors
expect 0 c --input "$tr/z2_untied/checkpoint-2" --output "$out/dry" --dry-run --json
[ ! -e "$out/dry" ] && [ -z "$(ls -A "$out" | grep '^\.dry')" ] || fail "--dry-run wrote something"
[ "$(json_field "$out/stdout" '["reads"][0]["kind"]')" = bf16_zero_pp_rank_N_mp_rank_N_optim_states.pt ] &&
	[ "$(json_field "$out/stdout" '["reads"][0]["files"]')" = 2 ] &&
	[ "$(json_field "$out/stdout" '["reads"][0]["bytes"]')" = $((2 * $(st_bytes "$oracle"))) ] &&
	[ "$(json_field "$out/stdout" '["reads"][1]')" = "{'kind': 'mp_rank_N_model_states.pt', 'files': 1, 'bytes': 0}" ] &&
	[ "$(json_field "$out/stdout" '["reads"][2]["kind"]')" = "model.safetensors (16-bit copy, for the cross-check)" ] &&
	[ "$(json_field "$out/stdout" '["reads"][2]["bytes"]')" = "$(st_bytes "$tr/z2_untied/checkpoint-2/model.safetensors")" ] ||
	fail "--dry-run --json reads: $(cat "$out/stdout")"
[ "$(json_field "$out/stdout" '["bytes_written"]')" = "$(stat -c %s "$oracle")" ] &&
	[ "$(json_field "$out/stdout" '["dry_run"]')" = True ] || fail "--dry-run --json bytes_written"
expect 0 c --input "$tr/z2_untied/checkpoint-2" --output "$out/dry" --dry-run
[ ! -e "$out/dry" ] || fail "--dry-run wrote $out/dry"
has stdout "input  $tr/z2_untied/checkpoint-2 (deepspeed: ZeRO-2, 2 ranks, tag global_step2)"
has stdout "note   $tr/z2_untied/checkpoint-2: read the DeepSpeed fp32 master weights (tag global_step2)"
like stdout "read +[0-9.]+ kB +2  bf16_zero_pp_rank_N_mp_rank_N_optim_states.pt"
like stdout "read +0.0 kB +1  mp_rank_N_model_states.pt \\(headers and pickles only\\)"
like stdout "read +[0-9.]+ kB +1  model.safetensors \\(16-bit copy, for the cross-check\\)"
like stdout "write +[0-9.]+ kB +1  $out/dry/model.safetensors: 21 tensors"
like stdout "plan +[0-9.]+ kB of tables; peak memory [0-9]+ MB so far"
lines stdout 8
expect 0 c --input "$tr/z2_untied/checkpoint-2" --output "$out/dry" --dry-run --cross-check off
grep -q "cross-check" "$out/stdout" && fail "--dry-run --cross-check off still plans the copy's read"

# inspect names the choice too.
expect 0 "$weld" inspect "$tr/z2_tied/checkpoint-1"
has stdout "note: $tr/z2_tied/checkpoint-1: read the DeepSpeed fp32 master weights (tag global_step1), not the HF safetensors weights beside them (--type hf reads those)"

[ "$fails" -eq 0 ] && echo "trainer: all checks passed" || echo "$fails trainer check(s) failed"
[ "$fails" -eq 0 ]
