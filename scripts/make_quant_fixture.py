#!/usr/bin/env python3
"""make_quant_fixture: golden dequantisation results from gguf-py (an
independent implementation) for tests/test_quant.c.

Run:  /tmp/gold/bin/python scripts/make_quant_fixture.py [tests/golden/quant_blocks.bin]
Needs numpy and the `gguf` package (gguf.quants.dequantize).

For each type, a few blocks of deterministic pseudo-random bytes are taken
as raw ggml blocks; fp16 scale fields are overwritten with sane finite
values so every result is finite; gguf-py dequantises them.

File layout (all little-endian):
    char[8]  magic "TISQFX01"
    u32      n_records
    n_records x {
        u32  ggml type id
        u32  n_elems      (dequantised f32 values)
        u32  n_bytes      (raw block bytes)
        u8   raw[n_bytes]
        f32  expected[n_elems]
    }
"""
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

# (type, block elements, block bytes, byte offsets of the f16 scale fields)
TYPES = [
    (T.F32, 1, 4, []),
    (T.F16, 1, 2, []),
    (T.BF16, 1, 2, []),
    (T.Q8_0, 32, 34, [0]),
    (T.Q4_0, 32, 18, [0]),
    (T.Q4_1, 32, 20, [0, 2]),
    (T.Q5_0, 32, 22, [0]),
    (T.Q5_1, 32, 24, [0, 2]),
    (T.Q4_K, 256, 144, [0, 2]),
    (T.Q6_K, 256, 210, [208]),
]

# Half-precision edge cases for the F16 record: zeros, the smallest and
# largest subnormals, the smallest normal, the largest finite, infinities.
F16_SPECIAL = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF,
               0x7C00, 0xFC00, 0x3C00, 0x3555, 0x0200, 0x83FF]


def record(rng, qtype, block_elems, block_bytes, scale_offs):
    n_blocks = 64 if block_elems == 1 else (2 if block_elems == 256 else 4)
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    if qtype == T.F32:
        # random finite floats of varied magnitude (random bits could be nan)
        vals = (rng.standard_normal(n_blocks) * 10.0 ** rng.integers(-30, 30, n_blocks))
        raw = vals.astype(np.float32).view(np.uint8).reshape(n_blocks, 4)
    elif qtype == T.F16:
        bits = raw.view(np.uint16).reshape(-1).copy()
        bits[(bits & 0x7C00) == 0x7C00] &= 0xBFFF  # random nan -> finite
        bits[: len(F16_SPECIAL)] = F16_SPECIAL
        raw = bits.view(np.uint8).reshape(n_blocks, 2)
    elif qtype == T.BF16:
        bits = raw.view(np.uint16).reshape(-1).copy()
        bits[(bits & 0x7F80) == 0x7F80] &= 0xBFFF  # random nan -> finite
        bits[:4] = [0x0001, 0x8000, 0x7F80, 0xFF80]  # subnormal, -0, +-inf
        raw = bits.view(np.uint8).reshape(n_blocks, 2)
    for off in scale_offs:
        mag = rng.uniform(1e-3, 0.25, n_blocks)
        sign = np.where(rng.integers(0, 2, n_blocks) == 1, -1.0, 1.0)
        if qtype in (T.Q4_K,):
            sign = 1.0  # d and dmin are non-negative in real files
        h = (mag * sign).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
        raw[:, off:off + 2] = h
    raw = np.ascontiguousarray(raw)
    expected = np.asarray(dequantize(raw, qtype), dtype=np.float32).reshape(-1)
    assert expected.size == n_blocks * block_elems, (qtype, expected.shape)
    assert qtype in (T.F16, T.BF16) or np.all(np.isfinite(expected)), qtype
    rb = raw.tobytes()
    return (struct.pack("<III", int(qtype), expected.size, len(rb)) + rb +
            expected.astype("<f4").tobytes())


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/golden/quant_blocks.bin"
    rng = np.random.default_rng(20240601)
    recs = [record(rng, *t) for t in TYPES]
    data = b"TISQFX01" + struct.pack("<I", len(recs)) + b"".join(recs)
    with open(out, "wb") as f:
        f.write(data)
    print(f"{out}: {len(recs)} records, {len(data)} bytes")


if __name__ == "__main__":
    main()
