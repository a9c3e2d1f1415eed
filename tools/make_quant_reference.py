"""Writes tests/data/quant_reference.txt: FP8 and ggml block-quantization vectors from ml_dtypes, gguf-py and ggml.

Usage (in a virtualenv outside the source tree; GGML is the ggml/ folder of a llama.cpp source tree,
tools/README.md says which one):
    python -m venv /tmp/vq && /tmp/vq/bin/pip install ml_dtypes gguf numpy
    /tmp/vq/bin/python tools/make_quant_reference.py tests/data/quant_reference.txt --ggml GGML

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
  q4_k_input / q4_k_bytes / q4_k_dequant   ggml's own quantize_row_q4_K_ref and dequantize_row_q4_K
                                           (gguf-py has no Q4_K quantizer): tools/ggml_q4_k_reference.c
                                           compiled with the system cc against GGML/src/ggml-quants.c;
                                           the dequantized floats also checked against gguf.quants Q4_K;
                                           13 chosen blocks, then 3 random ones whose bytes change when ggml
                                           is built with fused multiply-adds
"""
import argparse
import hashlib
import os
import re
import subprocess
import tempfile
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


def q4_k_blocks():
    """13 blocks of 256: Gaussians at several scales, one-signed blocks, special sub-blocks, an outlier, tiny values."""
    rng = np.random.default_rng(20250302)  # its own stream: the lines above stay as they were
    n = rng.standard_normal

    def f32(a):
        return np.asarray(a, dtype=np.float32)

    blocks = [n(256) * s for s in (1.0, 0.02, 30.0, 1000.0)]
    blocks.append(np.abs(n(256)) + rng.uniform(0, 2, 256) * (np.arange(256) >= 128))  # all positive: lo starts at 0
    blocks.append(-np.abs(n(256)) * 3 - 0.5)  # all negative
    sub = [np.abs(n(32)) + 5, -np.abs(n(32)) - 5, np.zeros(32), np.full(32, -2.5), np.full(32, 2.5),
           np.arange(32) * 0.1 - 1.2, np.where(rng.uniform(size=32) < 0.15, n(32), 0.0), n(32)]
    blocks.append(np.concatenate(sub))  # offset sub-blocks, a zero one, constant ones, a ramp, a sparse one
    blocks.append(np.zeros(256))  # all zero: d = dmin = 0
    outlier = n(256)
    outlier[77] = 2000.0  # every other sub-block's 6-bit scale rounds to 0: the fit's codes stay
    blocks.append(outlier)
    blocks += [n(256) * s for s in (1e-4, 3e-6, 1e-7)]  # d in half's subnormals, and d rounding to 0
    mixed = n(256) * np.repeat(10.0 ** rng.uniform(-3, 2, 8), 32)
    mixed[::3] = rng.laplace(0, 1, size=mixed[::3].size) * np.repeat(10.0 ** rng.uniform(-3, 2, 8), 32)[::3]
    blocks.append(mixed)  # sub-block scales across 5 decades, heavy tails
    return f32(np.stack([f32(b) for b in blocks]))


def fma_sensitive_blocks(ggml, count=3):
    """The first `count` of 1000 random blocks whose bytes change when ggml is built with fused multiply-adds
    (about 3 in 100 do): a quantizer that lets the compiler fuse a*b+c fails on these. Needs a CPU with FMA."""
    rng = np.random.default_rng(20250303)
    n = 1000
    x = rng.standard_normal((n, 256)) * 10.0 ** rng.uniform(-5, 3, (n, 1))
    x *= np.repeat(10.0 ** rng.uniform(-1.5, 0, (n, 8)), 32, axis=1)  # sub-block scales up to 30x apart
    shift = rng.uniform(size=(n, 1)) < 0.3
    x = np.where(shift, x + np.abs(x).max(axis=1, keepdims=True) * rng.uniform(-2, 2, (n, 1)), x)  # offsets
    x = x.astype(np.float32)
    plain, _ = ggml_q4_k(ggml, x)
    fused, _ = ggml_q4_k(ggml, x, fused=True)
    differ = np.flatnonzero((plain != fused).any(axis=1))
    assert len(differ) >= count, f"only {len(differ)} of {n} blocks change with fused multiply-adds"
    return x[differ[:count]]


def ggml_q4_k(ggml, x, fused=False):
    """ggml's bytes and dequantized floats for x (blocks of 256), from tools/ggml_q4_k_reference.c.

    fused: ggml built with -mfma -ffp-contract=fast (a*b+c rounded once), only to find the blocks below."""
    harness = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ggml_q4_k_reference.c")
    flags = ["-mfma", "-ffp-contract=fast"] if fused else ["-ffp-contract=off"]
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "ggml_q4_k_reference")
        subprocess.run(["cc", "-O2", *flags, "-I", os.path.join(ggml, "include"), "-I", os.path.join(ggml, "src"),
                        harness, os.path.join(ggml, "src", "ggml-quants.c"), "-lm", "-o", exe], check=True)
        raw = subprocess.run([exe], input=np.ascontiguousarray(x, dtype="<f4").tobytes(), capture_output=True,
                             check=True).stdout
    nb = x.shape[0]
    assert len(raw) == nb * 144 + x.size * 4, len(raw)
    packed = np.frombuffer(raw[:nb * 144], dtype=np.uint8).reshape(nb, 144)
    back = np.frombuffer(raw[nb * 144:], dtype="<f4").astype(np.float32).reshape(x.shape)
    if fused:
        return packed, back
    # gguf-py's Q4_K dequantizer (it has no quantizer) reads the same floats from ggml's bytes
    assert np.array_equal(quants.Q4_K.dequantize_blocks(packed).astype(np.float32).view(np.uint32),
                          back.view(np.uint32)), "ggml's and gguf-py's Q4_K dequantization differ"
    return packed, back


def ggml_version(ggml):
    """ggml's version (ggml/CMakeLists.txt), the llama-cpp-python sdist's if GGML sits in one, ggml-quants.c's hash."""
    with open(os.path.join(ggml, "CMakeLists.txt")) as f:
        text = f.read()
    parts = [re.search(rf"set\(GGML_VERSION_{p} (\d+)\)", text).group(1) for p in ("MAJOR", "MINOR", "PATCH")]
    with open(os.path.join(ggml, "src", "ggml-quants.c"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    desc = f"ggml {'.'.join(parts)} (ggml-quants.c sha256 {digest}"
    pkg = os.path.join(ggml, "..", "..", "..", "PKG-INFO")
    if os.path.exists(pkg):
        with open(pkg) as f:
            v = re.search(r"^Version: (\S+)", f.read(), re.M)
        desc += f", llama-cpp-python {v.group(1)} sdist" if v else ""
    return desc + ")"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--ggml", required=True, help="a llama.cpp source tree's ggml/ folder (for Q4_K)")
    args = parser.parse_args()
    out = args.out
    rng = np.random.default_rng(20250301)
    lines = [f"# ml_dtypes {ml_dtypes.__version__}, gguf {version('gguf')}, numpy {np.__version__}, "
             f"{ggml_version(args.ggml)}"]
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
    x = np.concatenate([q4_k_blocks(), fma_sensitive_blocks(args.ggml)])
    packed, back = ggml_q4_k(args.ggml, x)
    lines.append("q4_k_input: " + hexes(x))
    lines.append("q4_k_bytes: " + hexes(packed))
    lines.append("q4_k_dequant: " + hexes(back))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
