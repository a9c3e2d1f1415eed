#!/usr/bin/env python3
"""Reference vectors for lmrl's samplers, computed by transformers' own logits warpers.

Usage (the virtualenv of tools/README.md; transformers and torch are enough):

    python tools/make_sampling_reference.py tests/data/sampling_reference.txt

For seeded random float32 logits (vocabularies of 50..1000 tokens, several
scales so that both flat and peaked distributions occur) and several decoding
settings, the script builds the warpers exactly as
GenerationMixin._get_logits_processor does for do_sample=True (temperature
when != 1, then top-k when != 0, top-p when < 1, min-p when set), applies them
in that order to the logits as a [1 x V] float32 tensor, and writes
log_softmax of the result: the surviving tokens with their renormalized
log-probs, -inf for the removed ones. It also writes the chi-square bound the
C++ statistical test uses (see `chi2_bound`).

A draw whose top-p or min-p decision lies within 1e-4 (relative) of its
threshold is redrawn, so float rounding cannot flip which tokens survive.

Output format (read by lmrl::testing::load_reference in tests/support/testing.hpp):

    case <name>
    logits <V> ...          float32 values, printed with 9 significant digits (exact round trip)
    temperature 1 <t>       top_k 1 <k>     top_p 1 <p>     min_p 1 <m>  (0 = min-p off)
    logprobs <V> ...        log_softmax of the warped scores (float32), -inf where removed
    end
"""

from __future__ import annotations

import argparse
import math

import torch
import transformers
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# (name, vocab, logit scale, temperature, top_k, top_p, min_p)
SETTINGS = [
    ("plain", 50, 1.0, 1.0, 0, 1.0, 0.0),
    ("temperature_only", 300, 2.0, 0.7, 0, 1.0, 0.0),
    ("top_k_50", 1000, 3.0, 0.7, 50, 1.0, 0.0),
    ("top_k_1", 200, 1.0, 1.0, 1, 1.0, 0.0),
    ("top_k_above_vocab", 80, 1.0, 1.2, 100, 1.0, 0.0),
    ("top_p_0.9", 1000, 2.5, 1.0, 0, 0.9, 0.0),
    ("top_p_0.95_r1", 500, 1.5, 0.6, 0, 0.95, 0.0),  # DeepSeek-R1's recommended decoding
    ("top_p_0.5_flat", 120, 0.5, 1.0, 0, 0.5, 0.0),
    ("top_p_small", 400, 2.5, 1.0, 0, 0.05, 0.0),
    ("min_p_0.1", 700, 3.0, 1.0, 0, 1.0, 0.1),
    ("min_p_0.02_hot", 256, 2.0, 1.5, 0, 1.0, 0.02),
    ("top_k_top_p", 1000, 1.5, 0.8, 100, 0.8, 0.0),
    ("all_warpers", 900, 1.5, 0.8, 20, 0.8, 0.05),
    ("top_k_200_top_p_0.5", 640, 2.0, 1.3, 200, 0.5, 0.0),
    ("top_p_min_p", 333, 0.8, 0.3, 0, 0.99, 0.2),
    ("cold", 150, 2.0, 0.05, 10, 0.9, 0.0),
]


def warpers(temperature: float, top_k: int, top_p: float, min_p: float) -> LogitsProcessorList:
    """The do_sample branch of GenerationMixin._get_logits_processor (min_tokens_to_keep = 1)."""
    processors = LogitsProcessorList()
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k != 0:
        processors.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    if min_p > 0.0:  # GRPOConfig's None
        processors.append(MinPLogitsWarper(min_p=min_p, min_tokens_to_keep=1))
    return processors


def near_threshold(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, min_p: float) -> bool:
    """True when a top-p or min-p decision is within 1e-4 of its threshold (float64 check)."""
    z = logits.double() / temperature
    if top_k:
        kth = torch.topk(z, min(top_k, z.numel())).values[-1]
        z = torch.where(z < kth, torch.tensor(-math.inf, dtype=z.dtype), z)
    if top_p < 1.0:
        p = torch.sort(torch.softmax(z, -1), descending=False).values
        p = p[p > 0]
        c = torch.cumsum(p, 0)
        if torch.any(torch.abs(c - (1 - top_p)) < 1e-4):
            return True
    if min_p > 0.0:
        p = torch.softmax(z, -1)
        ratio = p[p > 0] / p.max()
        if torch.any(torch.abs(ratio - min_p) < 1e-4 * min_p):
            return True
    return False


def fmt(values) -> str:
    out = []
    for v in values:
        v = float(v)
        out.append("-inf" if v == -math.inf else "inf" if v == math.inf else "nan" if v != v else f"{v:.9g}")
    return " ".join(out)


def chi2_upper_quantile(df: int, tail: float) -> float:
    """x with P(chi2_df > x) = tail, by bisection on torch.special.gammaincc in float64."""
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        q = torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(mid / 2, dtype=torch.float64))
        if q.item() > tail:
            lo = mid
        else:
            hi = mid
    return hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    args = parser.parse_args()
    lines = [
        "# Reference log-probabilities of transformers' logits warpers, by tools/make_sampling_reference.py",
        f"# transformers {transformers.__version__}, torch {torch.__version__}; order: temperature, top-k, top-p, min-p",
    ]
    generator = torch.Generator().manual_seed(20250407)
    for name, vocab, scale, temperature, top_k, top_p, min_p in SETTINGS:
        while True:
            logits = (torch.randn(vocab, generator=generator, dtype=torch.float64) * scale).float()
            if not near_threshold(logits, temperature, top_k, top_p, min_p):
                break
        scores = warpers(temperature, top_k, top_p, min_p)(None, logits.clone().unsqueeze(0))
        logprobs = torch.log_softmax(scores, dim=-1)[0]
        lines += [
            f"case {name}",
            f"logits {vocab} {fmt(logits.tolist())}",
            f"temperature 1 {temperature!r}",
            f"top_k 1 {top_k}",
            f"top_p 1 {top_p!r}",
            f"min_p 1 {min_p!r}",
            f"logprobs {vocab} {fmt(logprobs.tolist())}",
            "end",
        ]
    # Top-k keeps every logit tied with the k-th (scores < topk[-1] are removed).
    ties = torch.tensor([1.0, 3.0, 2.0, 3.0, 2.0, 0.0, 2.0, 3.0, -1.0, 2.0], dtype=torch.float32)
    scores = warpers(1.0, 4, 1.0, 0.0)(None, ties.clone().unsqueeze(0))
    lines += [
        "case top_k_ties",
        f"logits {ties.numel()} {fmt(ties.tolist())}",
        "temperature 1 1.0",
        "top_k 1 4",
        "top_p 1 1.0",
        "min_p 1 0.0",
        f"logprobs {ties.numel()} {fmt(torch.log_softmax(scores, -1)[0].tolist())}",
        "end",
    ]
    # The statistical test: 4 degrees of freedom (5 outcomes), tail 1e-9.
    lines += ["case chi2_bound", "df 1 4", "tail 1 1e-9", f"bound 1 {chi2_upper_quantile(4, 1e-9)!r}", "end"]
    with open(args.output, "w") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
