"""A ZeRO-3 checkpoint of a large world size, converted within a small open-files limit.

Issue 13: 1100 ranks (2200 files) failed under the usual soft limit of 1024
open files. This writes a tiny two-layer model as a ZeRO-3 checkpoint of
WORLD ranks (default 2048: 4096 files) in the layout and classes
scripts/bench-zero writes (DeepSpeed's ZeroStageEnum and LossScaler, from
deepspeed when it imports, else look-alikes of the same module and name),
then, under `ulimit -n 256`:
  - `weld inspect` lists every parameter;
  - `weld convert` (bfloat16, small chunks in four threads) gives exactly
    the fp32 values the generator drew, cast by torch (.to(torch.bfloat16));
  - `weld verify --against` passes the output against the checkpoint.
Exits 77 (skipped) where torch does not import.

Usage: zero_world.py WELD [--world N] [--limit N] [--keep DIR]
  --keep DIR   write the checkpoint into DIR (kept; reused when complete)
"""
import argparse
import enum
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import types
from collections import OrderedDict

try:
    import torch
except ImportError as e:
    print(f"zero_world skipped: {e}")
    sys.exit(77)


def deepspeed_classes():
    """ZeroStageEnum and LossScaler: DeepSpeed's own, else classes that pickle the same way."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        from deepspeed.runtime.zero.config import ZeroStageEnum
        from deepspeed.runtime.fp16.loss_scaler import LossScaler
        return ZeroStageEnum, LossScaler, "deepspeed"
    except Exception:  # not installed, or fails to import: pickles only need the names
        pass
    zc = types.ModuleType("deepspeed.runtime.zero.config")
    ls = types.ModuleType("deepspeed.runtime.fp16.loss_scaler")

    class ZeroStageEnum(int, enum.Enum):
        disabled = 0
        optimizer_states = 1
        gradients = 2
        weights = 3
        max_stage = 3

    class LossScaler:
        def __init__(self, scale=1):
            self.cur_scale = scale
            self.dynamic = False

    ZeroStageEnum.__module__, LossScaler.__module__ = zc.__name__, ls.__name__
    zc.ZeroStageEnum, ls.LossScaler = ZeroStageEnum, LossScaler
    for name in ("deepspeed", "deepspeed.runtime", "deepspeed.runtime.zero", "deepspeed.runtime.fp16"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[zc.__name__], sys.modules[ls.__name__] = zc, ls
    return ZeroStageEnum, LossScaler, "look-alike classes"


CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
          "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
          "vocab_size": 128, "tie_word_embeddings": False, "torch_dtype": "float32"}


def shapes_of_model():
    h, ff, vocab = CONFIG["hidden_size"], CONFIG["intermediate_size"], CONFIG["vocab_size"]
    shapes = OrderedDict([("model.embed_tokens.weight", torch.Size([vocab, h]))])
    for i in range(2):
        p = f"model.layers.{i}."
        for n, s in [("self_attn.q_proj.weight", (h, h)), ("self_attn.k_proj.weight", (h, h)),
                     ("self_attn.v_proj.weight", (h, h)), ("self_attn.o_proj.weight", (h, h)),
                     ("mlp.gate_proj.weight", (ff, h)), ("mlp.up_proj.weight", (ff, h)),
                     ("mlp.down_proj.weight", (h, ff)), ("input_layernorm.weight", (h,)),
                     ("post_attention_layernorm.weight", (h,))]:
            shapes[p + n] = torch.Size(s)
    shapes["model.norm.weight"] = torch.Size([h])
    shapes["lm_head.weight"] = torch.Size([vocab, h])
    return shapes


def generate(ck, W):
    """The checkpoint under CK; returns the fp32 values by name."""
    ZeroStageEnum, LossScaler, origin = deepspeed_classes()
    shapes = shapes_of_model()
    g = torch.Generator().manual_seed(13)
    full = OrderedDict((k, torch.randn(s.numel(), generator=g)) for k, s in shapes.items())
    tag = os.path.join(ck, "global_step100")
    done = os.path.join(ck, "complete")
    if os.path.exists(done) and open(done).read() == str(W):
        return full, origin
    shutil.rmtree(ck, ignore_errors=True)
    os.makedirs(tag)
    with open(os.path.join(ck, "latest"), "w") as f:
        f.write("global_step100")
    with open(os.path.join(ck, "config.json"), "w") as f:  # beside the tag, as the HF Trainer saves it
        json.dump(CONFIG, f, indent=2)
    # Rank r's flat fp32 partition: slice r of every parameter padded to W * ceil(n / W), as bench-zero writes.
    flats = [[] for _ in range(W)]
    for name, v in full.items():
        n = v.numel()
        p = math.ceil(n / W)
        padded = torch.cat([v, torch.full((p * W - n,), float("nan"))])
        for r in range(W):
            flats[r].append(padded[r * p:(r + 1) * p])
    cfg = {"zero_optimization": {"stage": 3}, "bf16": {"enabled": True}}
    for r in range(W):
        flat = torch.cat(flats[r])
        module = OrderedDict((k, torch.empty(0, dtype=torch.bfloat16)) for k in shapes)
        ms = {"module": module, "buffer_names": [], "optimizer": None, "param_shapes": [shapes],
              "frozen_param_shapes": OrderedDict(), "frozen_param_fragments": OrderedDict(),
              "shared_params": {}, "lr_scheduler": None, "sparse_tensor_module_names": set(),
              "skipped_steps": 0, "global_steps": 100, "global_samples": 800, "dp_world_size": W,
              "mp_world_size": 1, "ds_config": cfg, "ds_version": "0.19.8"}
        torch.save(ms, os.path.join(tag, f"zero_pp_rank_{r}_mp_rank_00_model_states.pt"))
        osd = {"zero_stage": ZeroStageEnum.weights, "loss_scaler": LossScaler(1.0), "dynamic_loss_scale": False,
               "overflow": False, "partition_count": W,
               "optimizer_state_dict": {"state": {0: {"step": torch.tensor(100.0), "exp_avg": torch.zeros_like(flat),
                                                      "exp_avg_sq": torch.zeros_like(flat)}},
                                        "param_groups": [{"lr": 1e-5, "params": [0]}]},
               "fp32_flat_groups": [flat]}
        torch.save({"optimizer_state_dict": osd, "ds_config": cfg, "ds_version": "0.19.8"},
                   os.path.join(tag, f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt"))
    with open(done, "w") as f:
        f.write(str(W))
    return full, origin


def read_safetensors(path):
    """name -> tensor, from the file's own header (no safetensors module needed)."""
    dtypes = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = OrderedDict()
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[8 + n + a:8 + n + b]), dtype=dtypes[e["dtype"]])
        out[name] = t.reshape(e["shape"])
    return out


def limited(cmd, limit):
    """CMD under `ulimit -n LIMIT` (soft and hard), as a shell runs it."""
    r = subprocess.run(["bash", "-c", f'ulimit -n {limit} && exec "$@"', "weld"] + cmd,
                       capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weld")
    ap.add_argument("--world", type=int, default=2048)
    ap.add_argument("--limit", type=int, default=256)
    ap.add_argument("--keep")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="weld-zero-world-")
    failures = []
    try:
        ck = a.keep or os.path.join(tmp, "ckpt")
        t0 = time.monotonic()
        full, origin = generate(ck, a.world)
        shapes = shapes_of_model()
        print(f"zero_world: {a.world} ranks ({2 * a.world} files, {origin}) written in {time.monotonic() - t0:.1f} s")

        t0 = time.monotonic()
        rc, out, errs = limited([a.weld, "inspect", ck], a.limit)
        if rc != 0:
            failures.append(f"inspect exited {rc}: {errs.strip()}")
        elif f"world size {a.world}" not in out or any(k not in out for k in shapes):
            failures.append(f"inspect does not list the {a.world} ranks and every parameter:\n{out}{errs}")

        dst = os.path.join(tmp, "out")
        # 4 KiB chunks in 4 threads: several readers reopening rank files at once.
        rc, out, errs = limited([a.weld, "convert", "--input", ck, "--output", dst, "--device", "cpu", "--quiet",
                                 "--chunk-bytes", "4096", "--threads", "4"], a.limit)
        if rc != 0:
            failures.append(f"convert exited {rc}: {errs.strip()}")
        else:
            got = read_safetensors(os.path.join(dst, "model.safetensors"))
            if sorted(got) != sorted(shapes):  # safetensors' order: by dtype, then name
                failures.append(f"names differ: {sorted(set(got) ^ set(shapes))}")
            for k, s in shapes.items():
                want = full[k].reshape(s).to(torch.bfloat16)
                if k in got and (got[k].dtype != want.dtype or got[k].shape != want.shape or not torch.equal(got[k], want)):
                    failures.append(f"{k}: differs from the generated values cast by torch")
            rc, out, errs = limited([a.weld, "verify", dst, "--against", ck], a.limit)
            if rc != 0:
                failures.append(f"verify --against exited {rc}: {(out + errs).strip()}")
        print(f"zero_world: inspect, convert and verify --against under ulimit -n {a.limit} in "
              f"{time.monotonic() - t0:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL", f)
    print("zero_world:", "FAILED" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
