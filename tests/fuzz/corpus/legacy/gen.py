#!/usr/bin/env python3
"""Seeds for fuzz_legacy: small torch.save files in the legacy (pre-1.6,
non-zip) format, each under 4 KiB so the fuzzer mutates the structure rather
than the tensor bytes. Run from anywhere: python3 gen.py (needs torch)."""
import collections
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def save(name, obj):
    path = os.path.join(HERE, name + ".pt")
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    assert os.path.getsize(path) < 4096, name


def main():
    torch.manual_seed(0)
    base = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    save("dtypes", {
        "f32": torch.randn(3), "f16": torch.randn(2, 2).half(), "bf16": torch.randn(4).bfloat16(),
        "f64": torch.randn(2).double(), "i64": torch.arange(3), "i32": torch.arange(3, dtype=torch.int32),
        "i8": torch.arange(3, dtype=torch.int8), "u8": torch.arange(3, dtype=torch.uint8),
        "b": torch.tensor([True, False]), "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
    })
    # One storage, many views: offsets, strides and the same tensor twice.
    save("shared_views", {"w": base, "t": base.t(), "row": base[1], "flat": base.view(-1),
                          "alias": base, "col": base[:, 2]})
    sd = collections.OrderedDict()
    sd["layer.0.weight"] = torch.randn(2, 3)
    sd["layer.0.bias"] = torch.zeros(2)
    sd["layer.1.weight"] = torch.randn(1, 2).half()
    sd._metadata = collections.OrderedDict({"": {"version": 1}})
    save("ordered_state_dict", sd)
    save("nested", {"model": {"enc": {"w": torch.ones(2)}, "dec": [torch.ones(1), (torch.zeros(2, 1),)]},
                    "step": 7, "lr": 1e-3, "name": "run-1", "flags": [True, None]})
    save("parameter", {"p": torch.nn.Parameter(torch.randn(2, 2)), "buf": torch.ones(1)})
    save("bare_tensor", torch.arange(5, dtype=torch.int16))
    save("no_tensors", {"epoch": 3, "best": 0.5})
    save("noncontiguous_untied", {"a": base[::2], "b": torch.randn(3, 2).t()})


if __name__ == "__main__":
    main()
