"""Writes tests/data/quant_reference.txt: FP8 and ggml block-quantization vectors from ml_dtypes and gguf-py.

Usage (in a virtualenv outside the source tree):
    python -m venv /tmp/vq && /tmp/vq/bin/pip install ml_dtypes gguf numpy
    /tmp/vq/bin/python tools/make_quant_reference.py tests/data/quant_reference.txt

Every float is written as the hex of its IEEE-754 bits, so the C++ test compares bits, not decimals.
Lines: `name: hex hex ...`; tests/quant/test_*.cpp read them by name.
  fp8_e4m3_decode / fp8_e5m2_decode    float32 bits of each of the 256 codes (ml_dtypes float8_e4m3fn / float8_e5m2)
  fp8_inputs                           float32 inputs: every rounding boundary (midpoints between neighbours,
                                       and one ulp either side) of both formats, plus random normals at many scales
  fp8_e4m3_encode / fp8_e5m2_encode    ml_dtypes' code for each input (round to nearest even, no saturation)
  fp16_inputs / fp16_encode            numpy float32 -> float16 (round to nearest even)
  q8_0_input / q8_0_bytes / q8_0_dequant   gguf.quants Q8_0, bit-exact with ggml-quants.c
  q4_0_input / q4_0_bytes / q4_0_dequant   gguf.quants Q4_0
  tq2_0_* / tq1_0_*                        gguf.quants TQ2_0 and TQ1_0 (ternary, 256 values a block)
"""
import sys
from importlib.metadata import version

import ml_dtypes
import numpy as np
from gguf import quants


def hexes(a):
    a = np.ascontiguousarray(a)
    if a.dtype == np.float32:
        a = a.view(np.uint32)
    return " ".join(f"{int(v):x}" for v in a.ravel())


def boundaries(dtype):
    """Each finite code's value, the midpoints between neighbours, and one float32 ulp either side of those."""
    codes = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float32)
    finite = np.unique(codes[np.isfinite(codes) & (codes >= 0)])
    mids = (finite[:-1].astype(np.float64) + finite[1:]) / 2
    mids = mids.astype(np.float32)
    top = np.float32(finite[-1])
    extra = np.array([top * 1.03, top * 1.07, top * 1.2, top * 4, finite[1] / 2, finite[1] / 4], dtype=np.float32)
    pts = np.concatenate([finite, mids, extra])
    pts = np.concatenate([pts, np.nextafter(pts, np.float32(np.inf)), np.nextafter(pts, np.float32(0))])
    return np.concatenate([pts, -pts]).astype(np.float32)


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(20250301)
    lines = [f"# ml_dtypes {ml_dtypes.__version__}, gguf {version('gguf')}, numpy {np.__version__}"]
    e4, e5 = ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2
    lines.append("fp8_e4m3_decode: " + hexes(np.arange(256, dtype=np.uint8).view(e4).astype(np.float32)))
    lines.append("fp8_e5m2_decode: " + hexes(np.arange(256, dtype=np.uint8).view(e5).astype(np.float32)))
    scales = rng.choice([1e-8, 1e-5, 1e-3, 0.1, 1.0, 30.0, 400.0, 5e4], size=400)
    randoms = (rng.standard_normal(400) * scales).astype(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 3e38, -3e38], dtype=np.float32)
    inputs = np.concatenate([boundaries(e4), boundaries(e5), randoms, specials]).astype(np.float32)
    lines.append("fp8_inputs: " + hexes(inputs))
    with np.errstate(over="ignore", invalid="ignore"):
        lines.append("fp8_e4m3_encode: " + hexes(inputs.astype(e4).view(np.uint8)))
        lines.append("fp8_e5m2_encode: " + hexes(inputs.astype(e5).view(np.uint8)))
        halves = np.concatenate([randoms, (rng.standard_normal(200) * 7e4).astype(np.float32),
                                 np.array([65504, 65519.99, 65520, 6.1e-5, 5.96e-8, 2.98e-8, 2.99e-8], dtype=np.float32),
                                 specials]).astype(np.float32)
        lines.append("fp16_inputs: " + hexes(halves))
        lines.append("fp16_encode: " + hexes(halves.astype(np.float16).view(np.uint16)))

    def blocks(n, size=32):
        x = rng.standard_normal((n, size)).astype(np.float32) * rng.choice([1e-3, 1.0, 50.0], size=(n, 1)).astype(np.float32)
        x[0] = 0  # an all-zero block: scale 0
        x[1, 5] = -np.abs(x[1]).max() * 3  # the largest magnitude negative (Q4_0 keeps its sign)
        x[2, :] = np.float32(1.5)  # every value at the maximum
        return x.astype(np.float32)

    for name, q, n, size in (("q8_0", quants.Q8_0, 24, 32), ("q4_0", quants.Q4_0, 24, 32),
                             ("tq2_0", quants.TQ2_0, 6, 256), ("tq1_0", quants.TQ1_0, 6, 256)):
        x = blocks(n, size)
        packed = q.quantize_blocks(x)
        back = q.dequantize_blocks(packed).astype(np.float32)
        lines.append(f"{name}_input: " + hexes(x))
        lines.append(f"{name}_bytes: " + hexes(packed.astype(np.uint8)))
        lines.append(f"{name}_dequant: " + hexes(back))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
