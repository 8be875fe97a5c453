#!/usr/bin/env python3
"""Writes tests/golden/st_fixture.safetensors with the reference safetensors
package (an implementation independent of formats/safetensors.c); the values
are pinned in tests/test_safetensors.c. Needs safetensors + numpy + torch
(torch only for bfloat16).

usage: python scripts/make_st_fixture.py [out_path]
"""
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        root, "tests", "golden", "st_fixture.safetensors")
    t = {
        # [2, 3] row-major
        "f32": torch.tensor([[0.0, 1.0, -2.5], [3.25, 1e-3, -1e9]], dtype=torch.float32),
        # bits 0x3800 0xBC00 0x7BFF 0x0400 (smallest normal)
        "f16": torch.tensor([0.5, -1.0, 65504.0, 2.0 ** -14], dtype=torch.float16),
        # bits 0x3F80 0xC000 0x4049
        "bf16": torch.tensor([1.0, -2.0, 3.140625], dtype=torch.bfloat16),
        "i32": torch.tensor([[1, -2], [2147483647, -2147483648]], dtype=torch.int32),
        "i64": torch.tensor([1 << 40, -5], dtype=torch.int64),
        "u8": torch.from_numpy(np.array([0, 128, 255], dtype=np.uint8)),
        "bool": torch.tensor([True, False, True]),
        "f64_scalar": torch.tensor(2.5, dtype=torch.float64),  # 0 dims
        "empty": torch.zeros((0,), dtype=torch.float32),
        "model.layers.0.w": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 8,
    }
    save_file(t, out, metadata={"format": "pt", "tis_fixture": "v1",
                                "note": "quote \" backslash \\ \u00e9"})
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
