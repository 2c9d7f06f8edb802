"""Optional tier: weld's DCP conversions against torch's own consolidation, for every dtype.

Run by ctest (test `dcp_casts`) when $WELD_PYTHON imports torch and safetensors; exits
77 (skipped) otherwise. For each fixture in tests/fixtures/dcp with an oracle, torch's
dcp_to_torch_save gives the state dict (the "model" group when accelerate saved one);
weld converts with --dtype float16, float32 and keep, and every tensor weld wrote must
equal torch's `.to(dtype)` of the same tensor, bit for bit (NaNs aside: there are none),
and no tensor of the model may be missing but the tied head weld writes once.
Usage: dcp_casts.py WELD SOURCE_DIR
"""
import os
import subprocess
import sys
import tempfile

try:
    import torch
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
except ImportError as e:  # the tier is optional
    print(f"dcp casts skipped: {e}")
    sys.exit(77)

weld, src = sys.argv[1], sys.argv[2]
fx = os.path.join(src, "tests", "fixtures", "dcp")
CASES = [("trainer_fsdp2", "checkpoint-2/pytorch_model_fsdp_0"), ("gpt2_mp", "pytorch_model_fsdp_0"),
         ("titan_2d", "step-3"), ("fsdp2_empty", "checkpoint")]
DTYPES = {"float16": torch.float16, "float32": torch.float32, "keep": None}
fails = 0
with tempfile.TemporaryDirectory() as tmp:
    for run, rel in CASES:
        pt = os.path.join(tmp, run + ".pt")
        dcp_to_torch_save(os.path.join(fx, run, rel), pt)
        sd = torch.load(pt, weights_only=False)  # torch wrote it just now, from a fixture
        sd = sd["model"] if isinstance(sd.get("model"), dict) else {k: v for k, v in sd.items() if torch.is_tensor(v)}
        for name, dt in DTYPES.items():
            out = os.path.join(tmp, f"{run}-{name}")
            subprocess.run([weld, "convert", "--input", os.path.join(fx, run, rel), "--output", out, "--dtype", name,
                            "--side-files", os.path.join(fx, run, "base"), "--quiet", "--device", "cpu"], check=True)
            got = load_file(os.path.join(out, "model.safetensors"))
            missing = set(sd) - set(got) - {"lm_head.weight"}
            if missing or set(got) - set(sd):
                print(f"FAIL {run} {name}: names differ: missing {sorted(missing)}, extra {sorted(set(got) - set(sd))}")
                fails += 1
            for k, v in got.items():
                want = v.new_empty(0) if k not in sd else (sd[k] if dt is None else sd[k].to(dt))
                if want.dtype != v.dtype or want.shape != v.shape or not torch.equal(
                        want.contiguous().view(torch.uint8), v.contiguous().view(torch.uint8)):
                    print(f"FAIL {run} {name}: {k} differs from torch's cast")
                    fails += 1
        print(f"{run}: float16, float32 and keep equal torch's casts")
sys.exit(1 if fails else 0)
