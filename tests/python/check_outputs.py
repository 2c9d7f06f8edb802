"""Optional tier: what weld writes, read back by the real libraries.

Run by ctest (test `python_tier`) when the interpreter in $WELD_PYTHON (default
python3) can import torch, safetensors and transformers; exits 77 (skipped)
otherwise. For each qwen2_tied input variant it runs `weld convert` and checks:
  - safetensors.safe_open reads model.safetensors, and every tensor equals the
    source tensor cast by torch (.to(torch.bfloat16)), NaNs aside;
  - transformers' AutoModelForCausalLM.from_pretrained loads the folder and
    its parameters equal the same cast source;
  - the --pytorch-bin output opens with torch.load(weights_only=True) and
    holds the same tensors.
Usage: check_outputs.py WELD SOURCE_DIR
"""
import os
import subprocess
import sys
import tempfile

try:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file
    import transformers
except ImportError as e:  # the tier is optional
    print(f"python tier skipped: {e}")
    sys.exit(77)

weld, src = sys.argv[1], sys.argv[2]
fx = os.path.join(src, "tests", "fixtures", "qwen2_tied")
source = load_file(os.path.join(fx, "st_single_fp32", "model.safetensors"))
expected = {k: v.to(torch.bfloat16) for k, v in source.items()}
failures = 0


def same(name, a, b, what):
    global failures
    if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
        print(f"FAIL {what}: {name}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}")
        failures += 1


with tempfile.TemporaryDirectory() as tmp:
    for variant in ("st_single_fp32", "st_sharded", "bin_single", "bin_sharded"):
        out = os.path.join(tmp, variant)
        subprocess.run([weld, "convert", "--input", os.path.join(fx, variant), "--output", out,
                        "--device", "cpu", "--quiet"], check=True)
        with safe_open(os.path.join(out, "model.safetensors"), framework="pt") as f:
            assert f.metadata() == {"format": "pt"}, f.metadata()
            keys = set(f.keys())
            if keys != set(expected):
                print(f"FAIL {variant}: names differ: {sorted(keys ^ set(expected))}")
                failures += 1
            for k in keys & set(expected):
                same(k, f.get_tensor(k), expected[k], f"safe_open {variant}")
        model = transformers.AutoModelForCausalLM.from_pretrained(out)
        assert model.dtype == torch.bfloat16, model.dtype
        params = dict(model.state_dict())
        for k, v in expected.items():
            same(k, params[k], v, f"transformers {variant}")
        # tied: the head is the embedding, as in the source model
        same("lm_head.weight", params["lm_head.weight"], expected["model.embed_tokens.weight"],
             f"transformers {variant} (tied head)")

    out = os.path.join(tmp, "bin")
    subprocess.run([weld, "convert", "--input", os.path.join(fx, "st_sharded"), "--output", out,
                    "--device", "cpu", "--pytorch-bin", "--quiet"], check=True)
    sd = torch.load(os.path.join(out, "pytorch_model.bin"), weights_only=True)
    if set(sd) != set(expected):
        print(f"FAIL pytorch-bin: names differ: {sorted(set(sd) ^ set(expected))}")
        failures += 1
    for k in set(sd) & set(expected):
        same(k, sd[k], expected[k], "torch.load(weights_only=True)")
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    for k, v in expected.items():
        same(k, dict(model.state_dict())[k], v, "transformers pytorch-bin")

print(f"python tier: torch {torch.__version__}, transformers {transformers.__version__}: "
      f"{'FAILED' if failures else 'all checks passed'}")
sys.exit(1 if failures else 0)
