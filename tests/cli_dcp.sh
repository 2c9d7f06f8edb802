#!/usr/bin/env bash
# PyTorch Distributed Checkpoints (tests/fixtures/dcp, written by torch and a
# real HF Trainer + FSDP2 run; make_dcp_fixtures.py): every conversion is
# byte for byte the oracle (torch's own dcp_to_torch_save, loaded into the
# model, cast by torch, saved by transformers); inspect, batch, verify, scan
# and the refusals (safetensors serialization, zstd extension, an optimizer's
# DCP, broken metadata). Usage: cli_dcp.sh WELD SOURCE_DIR
set -u
weld=$1
fx=$2/tests/fixtures/dcp
fails=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
. "$(dirname "$0")/lib.sh"

same() { # same OUTPUT_DIR ORACLE WHAT
	cmp -s "$1/model.safetensors" "$2" || fail "$3: model.safetensors differs from $2"
}

# HF Trainer + accelerate FSDP2, SHARDED_STATE_DICT: names lose accelerate's "model." group; the
# checkpoint holds no config, so the tie (and a servable folder) come from --side-files.
for c in 1 2; do
	ck=$fx/trainer_fsdp2/checkpoint-$c
	expect 0 "$weld" convert --input "$ck" --side-files "$fx/trainer_fsdp2/base" --output "$out/t$c" --device cpu
	same "$out/t$c" "$fx/trainer_fsdp2/oracle/checkpoint-$c.bf16.safetensors" "trainer checkpoint-$c"
	has stderr "(dcp: torch.distributed.checkpoint: 27 tensors of the model in 2 files)"
	has stderr "26 tensors (+1 tied alias written once)"
	expect 0 "$weld" verify "$out/t$c" --against "$ck"
	last stdout "weld verify: 17 checks: 17 passed, 0 warnings, 0 failed"
done
cmp -s "$out/t2/config.json" "$fx/trainer_fsdp2/base/config.json" && fail "config.json copied without its dtype"
grep -Eq '"(torch_)?dtype": "bfloat16"' "$out/t2/config.json" || fail "config.json does not say bfloat16"
# Without --side-files: every tensor, both names of the tie (no config says otherwise), and no config.
expect 0 "$weld" convert --input "$fx/trainer_fsdp2/checkpoint-1" --output "$out/noside" --quiet
[ ! -e "$out/noside/config.json" ] || fail "a config.json appeared from nowhere"
expect 0 "$weld" inspect --json "$out/noside/model.safetensors"
has stdout '"lm_head.weight"'
expect 1 "$weld" convert --input "$fx/trainer_fsdp2/checkpoint-1" --side-files "$out/none" --output "$out/x" --quiet
last stderr "weld: error: $out/none: --side-files is not a folder"

# GPT2 under FSDP2 with a bf16 MixedPrecisionPolicy, saved as accelerate does: the tied head is two
# entries (lm_head.weight, transformer.wte.weight), written once as transformers writes the tie.
g=$fx/gpt2_mp/pytorch_model_fsdp_0
expect 0 "$weld" convert --input "$g" --side-files "$fx/gpt2_mp/base" --output "$out/gpt2" --quiet
same "$out/gpt2" "$fx/gpt2_mp/oracle/pytorch_model_fsdp_0.bf16.safetensors" "gpt2_mp"
# --dtype keep: the stored dtype (fp32 masters, not the bf16 compute dtype), every element as stored.
expect 0 "$weld" convert --input "$g" --side-files "$fx/gpt2_mp/base" --dtype keep --output "$out/keep" --quiet
expect 0 "$weld" verify "$out/keep" --against "$g"
like stdout "transformer\.wte\.weight +F32 +F32 +0 +0 +0 +0 +yes"
last stdout "weld verify: 17 checks: 17 passed, 0 warnings, 0 failed"

# torchtitan's layout: 2x2 (dp, tp) mesh, every 2-D weight cut on both dimensions (row fragments),
# model keys beside optimizer, lr_scheduler, dataloader (bytes) and train_state entries.
expect 0 "$weld" convert --input "$fx/titan_2d/step-3" --output "$out/titan" --quiet
same "$out/titan" "$fx/titan_2d/oracle/step-3.bf16.safetensors" "titan_2d"
# FSDP2 over 4 ranks of a 2-row k_proj: ranks 2 and 3 hold empty chunks. --type dcp too.
expect 0 "$weld" convert --input "$fx/fsdp2_empty/checkpoint" --type dcp --output "$out/empty" --quiet
same "$out/empty" "$fx/fsdp2_empty/oracle/checkpoint.bf16.safetensors" "fsdp2_empty"
expect 0 "$weld" convert --input "$fx/fsdp2_empty/checkpoint" --type fsdp --dtype float32 --output "$out/f32" --quiet \
	--side-files "$fx/fsdp2_empty/base"
expect 0 "$weld" verify "$out/f32" --against "$fx/fsdp2_empty/checkpoint"
has stdout "PASS  against"

# inspect: global shapes, the model's names only (never the optimizer's or train_state's).
expect 0 "$weld" inspect "$fx/titan_2d/step-3"
like stdout "model\.embed_tokens\.weight +F32 +\[61, 21\] +__0_0\.distcp \(bytes [0-9]+-[0-9]+\)  \(data in 4 files\)"
grep -q "optimizer\|train_state\|dataloader" "$out/stdout" && fail "inspect lists training state"
expect 0 "$weld" inspect --json "$fx/trainer_fsdp2/checkpoint-2"
python3 - "$out/stdout" <<'PY' || fails=$((fails + 1))
import json, sys
o = json.load(open(sys.argv[1]))
names = [t["name"] for t in o["tensors"]]
assert o["format"] == "dcp", o["format"]
assert len(names) == 27 and "model.embed_tokens.weight" in names and "lm_head.weight" in names, names
assert not any(n.startswith("model.model.") for n in names), names
PY

# batch: a Trainer run's checkpoint-N and torchtitan's step-N folders are checkpoints; outputs as convert's.
mkdir -p "$out/titan_run"
cp -r "$fx/titan_2d/step-3" "$out/titan_run/step-3"
expect 0 "$weld" batch --input-dir "$out/titan_run" --output-dir "$out/tb" --all-checkpoints --quiet
cmp -s "$out/tb/titan_run_step_3/model.safetensors" "$fx/titan_2d/oracle/step-3.bf16.safetensors" ||
	fail "batch of the torchtitan run differs from the oracle"
expect 0 "$weld" batch --input-dir "$fx/trainer_fsdp2" --output-dir "$out/rb" --all-checkpoints \
	--side-files "$fx/trainer_fsdp2/base" --quiet
for c in 1 2; do
	cmp -s "$out/rb/trainer_fsdp2_step_$c/model.safetensors" "$fx/trainer_fsdp2/oracle/checkpoint-$c.bf16.safetensors" ||
		fail "batch checkpoint-$c differs from the oracle"
done

# Refused, naming the file and the reason; nothing written.
expect 1 "$weld" convert --input "$fx/safetensors_fmt/checkpoint" --output "$out/r1"
last stderr "weld: error: $fx/safetensors_fmt/checkpoint/__0_0.distcp: the chunk of 'model.embed_tokens.weight' at byte 0 is not a torch.save archive (the file is safetensors: a DCP saved with serialization_format SAFETENSORS, which weld does not read)"
expect 1 "$weld" convert --input "$fx/zstd/checkpoint" --output "$out/r2"
last stderr "weld: error: $fx/zstd/checkpoint/__0_0.distcp: the chunk of 'model.embed_tokens.weight' is stored through the extension 'stream.zstd/1' (a transform_descriptor), which weld does not read"
expect 1 "$weld" convert --input "$fx/trainer_fsdp2/checkpoint-1/optimizer_0" --output "$out/r3"
last stderr "weld: error: $fx/trainer_fsdp2/checkpoint-1/optimizer_0: the DCP holds no model tensors (78 other tensor entries: an optimizer state?)"
[ ! -e "$out/r1" ] && [ ! -e "$out/r2" ] && [ ! -e "$out/r3" ] || fail "a refused conversion left an output"

# Broken: a chunk's bytes changed (CRC), a truncated .distcp, a missing one, chunks that do not tile.
cp -r "$fx/fsdp2_empty/checkpoint" "$out/bad"
python3 - "$out/bad/__1_0.distcp" <<'PY'
import io, struct, sys, zipfile
p = sys.argv[1]
data = bytearray(open(p, "rb").read())
# The first chunk archive (at byte 0): flip one byte of its tensor data, so its CRC-32 disagrees.
# Its end record is the first one in the file; the archive ends 22 bytes after it (no comment).
end = data.find(b"PK\x05\x06") + 22
z = zipfile.ZipFile(io.BytesIO(bytes(data[:end])))
info = [i for i in z.infolist() if i.filename.endswith("/data/0")][0]
name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
data[info.header_offset + 30 + name_len + extra_len] ^= 0x40
open(p, "wb").write(data)
PY
expect 1 "$weld" convert --input "$out/bad" --output "$out/r4" --quiet
like stderr "weld: error: $out/bad/__1_0\.distcp \(bytes 0-[0-9]+\): CRC-32 mismatch in record 'data/0' .*"
[ ! -e "$out/r4" ] || fail "a CRC mismatch left an output"
rm -rf "$out/bad" && cp -r "$fx/fsdp2_empty/checkpoint" "$out/bad" && rm "$out/bad/__2_0.distcp"
expect 1 "$weld" convert --input "$out/bad" --output "$out/r5" --quiet
last stderr "weld: error: $out/bad/__2_0.distcp: cannot open: No such file or directory"
rm -rf "$out/bad" && cp -r "$fx/fsdp2_empty/checkpoint" "$out/bad" && truncate -s 5000 "$out/bad/__3_0.distcp"
expect 1 "$weld" convert --input "$out/bad" --output "$out/r5" --quiet
like stderr "weld: error: $out/bad/__3_0\.distcp: bytes [0-9]+ to [0-9]+ lie past its end \(5000 bytes\)"
[ ! -e "$out/r5" ] || fail "a broken input left an output"
# (these copies are made with torch's own classes: skipped without torch)
if python3 -c "import torch" 2>/dev/null; then
	python3 - "$fx/fsdp2_empty/checkpoint/.metadata" "$out" <<'PY'
# Two broken copies of a torch-written .metadata: a chunk with no storage entry, and a chunk
# moved (with its storage entry) one element onto its neighbour: the runs then overlap.
import pickle, sys
from torch.distributed.checkpoint.metadata import MetadataIndex
src, out = sys.argv[1], sys.argv[2]
def load():
    return pickle.loads(open(src, "rb").read())  # a fixture torch wrote; this test's own file
m = load()
m.state_dict_metadata["model.norm.weight"].chunks[1].offsets = (5,)
open(out + "/nostorage.metadata", "wb").write(pickle.dumps(m, protocol=2))
m = load()
c = m.state_dict_metadata["model.norm.weight"].chunks[1]
old = [k for k in m.storage_data if k.fqn == "model.norm.weight" and tuple(k.offset) == tuple(c.offsets)][0]
c.offsets = (c.offsets[0] - 1,)
m.storage_data[MetadataIndex(old.fqn, c.offsets, old.index)] = m.storage_data.pop(old)
open(out + "/overlap.metadata", "wb").write(pickle.dumps(m, protocol=2))
PY
	for b in nostorage overlap; do
		rm -rf "$out/bad" && cp -r "$fx/fsdp2_empty/checkpoint" "$out/bad" && cp "$out/$b.metadata" "$out/bad/.metadata"
		expect 1 "$weld" convert --input "$out/bad" --output "$out/r6" --quiet
		[ ! -e "$out/r6" ] || fail "$b: a refused conversion left an output"
		cp "$out/stderr" "$out/$b.err"
	done
	out_err() { tail -1 "$out/$1.err"; }
	[ "$(out_err nostorage)" = "weld: error: $out/bad/.metadata: chunk 1 of 'model.norm.weight' has no storage_data entry" ] ||
		fail "no storage entry: $(out_err nostorage)"
	[ "$(out_err overlap)" = "weld: error: $out/bad/.metadata: the chunks of 'model.norm.weight' overlap at element 6" ] ||
		fail "overlap: $(out_err overlap)"
	# Hostile .metadata (torchtitan fixture): a chunk reading another tensor's bytes, a NUL in a file
	# name, an offset past 2^63, and a byte item that is a protocol-0 pickle calling print (torch's
	# loader would run it: scan must call it unsafe).
	python3 - "$fx/titan_2d/step-3" "$out/h" <<'PY'
import os, pickle, shutil, sys
from torch.distributed.checkpoint.filesystem import _StorageInfo
src, out = sys.argv[1], sys.argv[2]
def fresh(name):
    d = os.path.join(out, name)
    shutil.copytree(src, d)
    return d, pickle.loads(open(os.path.join(d, ".metadata"), "rb").read())  # torch wrote it; our copy
def save(d, m):
    open(os.path.join(d, ".metadata"), "wb").write(pickle.dumps(m, protocol=2))
def key(m, fqn):
    return [k for k in m.storage_data if k.fqn == fqn][0]
d, m = fresh("cross")  # norm's first chunk points at a layer norm's bytes in the same file
a, b = key(m, "model.norm.weight"), key(m, "model.layers.0.input_layernorm.weight")
va, vb = m.storage_data[a], m.storage_data[b]
m.storage_data[a] = _StorageInfo(vb.relative_path, vb.offset, vb.length); save(d, m)
d, m = fresh("nul")
k = key(m, "model.norm.weight"); v = m.storage_data[k]
m.storage_data[k] = _StorageInfo(v.relative_path + "\0/../../etc/passwd", v.offset, v.length); save(d, m)
d, m = fresh("hugeoff")
k = key(m, "model.norm.weight"); v = m.storage_data[k]
m.storage_data[k] = _StorageInfo(v.relative_path, 2**64 - 10, 100); save(d, m)
d, m = fresh("p0")
payload = b"cbuiltins\nprint\n(S'PWNED'\ntR."
f = os.path.join(d, "__0_0.distcp"); at = os.path.getsize(f)
open(f, "ab").write(payload)
k = key(m, "dataloader.dp_rank_0"); v = m.storage_data[k]
m.storage_data[k] = _StorageInfo("__0_0.distcp", at, len(payload)); save(d, m)
PY
	expect 1 "$weld" convert --input "$out/h/cross" --output "$out/r7" --quiet
	like stderr "weld: error: $out/h/cross/\.metadata: the stored chunks of '.*' and '.*' overlap in __[0-9]_0\.distcp at byte [0-9]+"
	expect 1 "$weld" convert --input "$out/h/nul" --output "$out/r7" --quiet
	last stderr "weld: error: $out/h/nul/.metadata: a storage_data entry is not a MetadataIndex and a _StorageInfo"
	expect 1 "$weld" convert --input "$out/h/hugeoff" --output "$out/r7" --quiet
	last stderr "weld: error: $out/h/hugeoff/.metadata: the storage of a chunk of 'model.norm.weight' has an offset or length out of range"
	[ ! -e "$out/r7" ] || fail "a hostile .metadata left an output"
	expect 1 "$weld" scan "$out/h/p0"
	has stdout "  builtins.print at offset 0 of pickle 1"
	like stdout "unsafe +$out/h/p0/__0_0\.distcp .*"
else
	echo "skipped: the broken-.metadata checks need python3 with torch"
fi
# A .distcp that no .metadata entry names is not scanned, and scan says so.
cp -r "$fx/fsdp2_empty/checkpoint" "$out/unnamed" && cp "$out/unnamed/__0_0.distcp" "$out/unnamed/__9_0.distcp"
expect 1 "$weld" scan "$out/unnamed"
has stdout "$out/unnamed/__9_0.distcp: not named in $out/unnamed/.metadata, so not scanned"

# scan: the .metadata and every chunk of every .distcp are safe.
expect 0 "$weld" scan "$fx/trainer_fsdp2" "$fx/titan_2d" "$fx/fsdp2_empty"
grep -q "^safe .*__0_0.distcp" "$out/stdout" || fail "scan does not list the .distcp files"

if [ "$fails" -ne 0 ]; then
	echo "$fails DCP check(s) failed"
	exit 1
fi
echo "all DCP checks passed"
