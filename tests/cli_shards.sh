#!/usr/bin/env bash
# --max-shard-size (issue 17): every shard and the index byte for byte what
# transformers 5.24's save_pretrained(max_shard_size=...) wrote for the same
# model cast to bf16 (tests/fixtures/shards, make_shard_fixtures.py): tied and
# untied, natural order past layer 9, limits below the largest tensor, one that
# holds everything (one model.safetensors, no index); verify on the outputs, a
# stray shard refused, batch, and the SIZE strings transformers refuses.
# Usage: cli_shards.sh WELD SOURCE_DIR
set -u
weld=$1
fx=$2/tests/fixtures
fails=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
. "$(dirname "$0")/lib.sh"

# same_files OUTPUT ORACLE: every weights file and index of ORACLE in OUTPUT, and no other.
same_files() {
	local f
	for f in "$2"/*; do
		cmp -s "$f" "$1/${f##*/}" || fail "$1/${f##*/} differs from $f"
	done
	local got want
	got=$(cd "$1" && ls | grep -E '\.safetensors$|\.index\.json$' | tr '\n' ' ')
	want=$(cd "$2" && ls | tr '\n' ' ')
	[ "$got" = "$want" ] || fail "$1 holds '$got', transformers wrote '$want'"
}

while read -r name src sizes; do
	for size in $sizes; do
		o=$out/$name-$size
		expect 0 "$weld" convert --input "$fx/$src" --output "$o" --max-shard-size "$size" --device cpu --quiet
		same_files "$o" "$fx/shards/$name/$size"
		expect 0 "$weld" verify "$o"
		has stdout "0 failed"
	done
done <<'CASES'
llama arch/llama 1KB 3KB 0.005MB 1GB
gemma arch/gemma 1500 4kb 1GB
qwen2_tied qwen2_tied/st_single_fp32 50KB
llama12 shards/llama12_src 2KB 700
CASES

# The result names the index; weld.json lists each shard.
expect 0 "$weld" convert --input "$fx/arch/llama" --output "$out/j" --max-shard-size 3KB --device cpu --json --quiet
has stdout '"weights":"'"$out"'/j/model.safetensors.index.json"'
expect 0 python3 -c "import json,sys; m=json.load(open('$out/j/weld.json')); sys.exit(not (m['index']=='model.safetensors.index.json' and len(m['files'])==5 and all('file' in t for t in m['tensors'])))"
expect 0 "$weld" verify "$out/j"
has stdout "PASS  size            5 shards: "
has stdout "PASS  one_format      model.safetensors.index.json and its 5 shards only"

has stdout "PASS  index           model.safetensors.index.json lists every tensor of the 5 shards where it is, "
# The index must list every tensor where it is (loaders skip an unlisted one) and their total size.
cp -r "$out/j" "$out/j2" && cp -r "$out/j" "$out/j3"
python3 - "$out/j2/model.safetensors.index.json" "$out/j3/model.safetensors.index.json" <<'PY'
import json, sys
a, b = sys.argv[1], sys.argv[2]
j = json.load(open(a)); del j["weight_map"]["model.norm.weight"]; open(a, "w").write(json.dumps(j, indent=2))
j = json.load(open(b)); j["metadata"]["total_size"] += 2; open(b, "w").write(json.dumps(j, indent=2))
PY
expect 1 "$weld" verify "$out/j2"
like stdout "FAIL  index           model-0000[1-5]-of-00005\.safetensors holds 'model\.norm\.weight', which model\.safetensors\.index\.json does not list there: loaders would skip it"
expect 1 "$weld" verify "$out/j3"
like stdout "FAIL  index           model\.safetensors\.index\.json: metadata\.total_size is not [0-9]+, the tensors' bytes"

# A stray shard beside the index, and a flipped byte in a shard.
cp "$out/j/model-00001-of-00005.safetensors" "$out/j/model-00006-of-00006.safetensors"
expect 1 "$weld" verify "$out/j"
has stdout "FAIL  one_format      stale weight file beside model.safetensors.index.json: 'model-00006-of-00006.safetensors'"
rm "$out/j/model-00006-of-00006.safetensors"
s3=$out/j/model-00003-of-00005.safetensors
printf '\x55' | dd of="$s3" bs=1 seek=$(($(stat -c %s "$s3") - 2)) conv=notrunc status=none
expect 1 "$weld" verify "$out/j"
like stdout "FAIL  crc32           tensor '.*': CRC-32 0x[0-9a-f]{8}, weld.json says 0x[0-9a-f]{8}; model-00003-of-00005.safetensors: CRC-32 .*"

# batch takes the option too.
make_run "$out/run" arch/llama:checkpoint-1 2>/dev/null || { mkdir -p "$out/run/checkpoint-1" && cp "$fx/arch/llama/"* "$out/run/checkpoint-1/"; }
expect 0 "$weld" batch --input-dir "$out/run" --output-dir "$out/b" --max-shard-size 3KB --quiet
same_files "$out/b/run_step_1" "$fx/shards/llama/3KB"

# SIZE as huggingface_hub's parse_size_to_int reads it: what it refuses is a usage error.
bad() { # bad SIZE MESSAGE
	expect 2 "$weld" convert --input "$fx/arch/llama" --output "$out/bad" --max-shard-size "$1"
	has stderr "weld: convert: --max-shard-size: $2"
}
bad 5GiB "max_shard_size '5GiB': no unit TB, GB, MB or KB (powers of 1000, as transformers takes them; KiB, MiB, GiB are not) and not a plain number of bytes"
bad 5KiB "max_shard_size '5KiB': no unit TB, GB, MB or KB"
bad 1.5 "max_shard_size '1.5': no unit TB, GB, MB or KB"
bad xGB "max_shard_size 'xGB': 'x' is not a number"
bad 0x10KB "max_shard_size '0x10KB': '0x10' is not a number"
bad 1__0KB "max_shard_size '1__0KB': '1__0' is not a number"
bad infGB "max_shard_size 'infGB': not a finite size"
bad nanKB "max_shard_size 'nanKB': not a finite size"
[ -e "$out/bad" ] && fail "a refused SIZE left $out/bad"
expect 2 "$weld" convert --input "$fx/arch/llama" --output "$out/bad" --max-shard-size 5GB --pytorch-bin
has stderr "weld: convert: --max-shard-size shards safetensors only: transformers 5.24 writes no sharded pytorch_model.bin to match"
# Python's float() syntax, case and spaces, as transformers takes them: " 3 kb" and "3_0_00" bytes-free forms.
expect 0 "$weld" convert --input "$fx/arch/llama" --output "$out/sp" --max-shard-size " 0.003 mb " --device cpu --quiet
same_files "$out/sp" "$fx/shards/llama/3KB"

if [ "$fails" -ne 0 ]; then
	echo "$fails shard check(s) failed"
	exit 1
fi
echo "all shard checks passed"
