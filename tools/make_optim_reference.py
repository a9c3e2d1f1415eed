#!/usr/bin/env python3
"""Reference vectors for lmrl's train/ layer: torch.optim.AdamW, clip_grad_norm_
and the transformers learning-rate schedulers, run by torch and transformers themselves.

Usage (the virtualenv of tools/README.md: torch and transformers are enough):

    python tools/make_optim_reference.py tests/data/optim_reference.txt

Read by tests/train/test_reference_optim.cpp through lmrl::testing::load_reference.

Two families of cases:

optim     ~20 training steps on seeded random parameters and gradients. The
          parameter buffer is cut into four tensors (a weight matrix, a bias,
          a matrix, a norm weight); as HF's Trainer does, the bias and the norm
          weight form a second parameter group with weight_decay = 0, which is
          lmrl's no_weight_decay ranges. Each step does what HF's Trainer does:
              lr   = optimizer.param_groups[0]["lr"]        (recorded)
              norm = clip_grad_norm_(params, max_grad_norm)  (recorded, before clipping)
              optimizer.step(); scheduler.step()
          and records the parameters after the step. torch.optim.AdamW runs
          with foreach=False (the single-tensor path, torch's CPU default),
          in float32 and float64.
schedule  the multiplier lr_lambda(step) of get_constant_schedule,
          get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
          get_cosine_schedule_with_warmup and
          get_cosine_with_min_lr_schedule_with_warmup for every step of a run
          and a few past its end, and the lr LambdaLR gives for a base lr.

Fields (numbers; matrices flattened row-major, one row per step):
  optim:    n, steps, lr, beta1, beta2, eps, weight_decay, max_grad_norm,
            no_decay (offset, size pairs), num_warmup_steps, num_training_steps,
            num_cycles, min_lr_rate, params0 [n], grads [steps x n] (before
            clipping), lrs [steps], norms [steps], params [steps x n] (after
            each step), exp_avg [n], exp_avg_sq [n] (after the last step);
            str dtype float32|float64, str schedule <lr_scheduler_type>
  schedule: num_warmup_steps, num_training_steps, num_cycles, min_lr_rate,
            base_lr, multipliers [steps], lrs [steps]; str schedule <type>

Deterministic: fixed seed; the same versions give the same file byte for byte.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch
import transformers
from transformers import optimization as hf

SHAPES = [(5, 4), (4,), (3, 3), (6,)]  # weight, bias, weight, norm
NO_DECAY_TENSORS = [1, 3]


def fmt(values) -> str:
    values = [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]
    return f"{len(values)} " + " ".join(repr(v) for v in values)


def make_scheduler(optimizer, schedule: str, warmup: int, total: int, num_cycles: float, min_lr_rate: float):
    if schedule == "constant":
        return hf.get_constant_schedule(optimizer)
    if schedule == "constant_with_warmup":
        return hf.get_constant_schedule_with_warmup(optimizer, warmup)
    if schedule == "linear":
        return hf.get_linear_schedule_with_warmup(optimizer, warmup, total)
    if schedule == "cosine":
        return hf.get_cosine_schedule_with_warmup(optimizer, warmup, total, num_cycles=num_cycles)
    if schedule == "cosine_with_min_lr":
        return hf.get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, warmup, total, num_cycles=num_cycles, min_lr_rate=min_lr_rate
        )
    raise ValueError(schedule)


def optim_case(out, name, dtype, rng, *, lr, betas, eps, weight_decay, max_grad_norm, schedule, warmup, total,
               num_cycles=0.5, min_lr_rate=0.0, steps=20, grad_scales=None):
    sizes = [int(np.prod(s)) for s in SHAPES]
    offsets = np.cumsum([0] + sizes)[:-1]
    n = int(sum(sizes))
    params0 = rng.uniform(-1, 1, n)
    grads = rng.standard_normal((steps, n))
    if grad_scales is not None:
        grads *= np.asarray(grad_scales)[:, None]
    # The exact values the optimizer sees, so the C++ side reads the same numbers.
    params0 = torch.tensor(params0, dtype=dtype).double().numpy()
    grads = torch.tensor(grads, dtype=dtype).double().numpy()

    tensors = []
    for off, size, shape in zip(offsets, sizes, SHAPES):
        t = torch.tensor(params0[off : off + size].reshape(shape), dtype=dtype, requires_grad=True)
        tensors.append(t)
    decay = [t for k, t in enumerate(tensors) if k not in NO_DECAY_TENSORS]
    no_decay = [t for k, t in enumerate(tensors) if k in NO_DECAY_TENSORS]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False, fused=False)
    scheduler = make_scheduler(optimizer, schedule, warmup, total, num_cycles, min_lr_rate)

    lrs, norms, trajectory = [], [], []
    for s in range(steps):
        for off, size, shape, t in zip(offsets, sizes, SHAPES, tensors):
            t.grad = torch.tensor(grads[s, off : off + size].reshape(shape), dtype=dtype)
        lrs.append(optimizer.param_groups[0]["lr"])
        norm = torch.nn.utils.clip_grad_norm_(tensors, max_grad_norm, foreach=False)
        norms.append(float(norm))
        optimizer.step()
        scheduler.step()
        trajectory.append(torch.cat([t.detach().reshape(-1) for t in tensors]).double().numpy())

    exp_avg = torch.cat([optimizer.state[t]["exp_avg"].reshape(-1) for t in tensors]).double().numpy()
    exp_avg_sq = torch.cat([optimizer.state[t]["exp_avg_sq"].reshape(-1) for t in tensors]).double().numpy()
    no_decay_ranges = [v for k in NO_DECAY_TENSORS for v in (offsets[k], sizes[k])]

    out.append(f"case {name}")
    out.append("str family optim")
    out.append(f"str dtype {'float32' if dtype == torch.float32 else 'float64'}")
    out.append(f"str schedule {schedule}")
    for key, value in [("n", n), ("steps", steps), ("lr", lr), ("beta1", betas[0]), ("beta2", betas[1]),
                       ("eps", eps), ("weight_decay", weight_decay), ("max_grad_norm", max_grad_norm),
                       ("num_warmup_steps", warmup), ("num_training_steps", total), ("num_cycles", num_cycles),
                       ("min_lr_rate", min_lr_rate)]:
        out.append(f"{key} {fmt([value])}")
    out.append(f"no_decay {fmt(no_decay_ranges)}")
    out.append(f"params0 {fmt(params0)}")
    out.append(f"grads {fmt(grads)}")
    out.append(f"lrs {fmt(lrs)}")
    out.append(f"norms {fmt(norms)}")
    out.append(f"params {fmt(np.stack(trajectory))}")
    out.append(f"exp_avg {fmt(exp_avg)}")
    out.append(f"exp_avg_sq {fmt(exp_avg_sq)}")
    out.append("end")


def schedule_case(out, name, schedule, warmup, total, num_cycles=0.5, min_lr_rate=0.0, base_lr=3e-4):
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = make_scheduler(optimizer, schedule, warmup, total, num_cycles, min_lr_rate)
    steps = total + 4
    multipliers, lrs = [], []
    for s in range(steps):
        multipliers.append(float(scheduler.lr_lambdas[0](s)))
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    out.append(f"case {name}")
    out.append("str family schedule")
    out.append(f"str schedule {schedule}")
    for key, value in [("num_warmup_steps", warmup), ("num_training_steps", total), ("num_cycles", num_cycles),
                       ("min_lr_rate", min_lr_rate), ("base_lr", base_lr)]:
        out.append(f"{key} {fmt([value])}")
    out.append(f"multipliers {fmt(multipliers)}")
    out.append(f"lrs {fmt(lrs)}")
    out.append("end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output")
    parser.add_argument("--seed", type=int, default=20250301)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)

    out: list[str] = []
    # Gradient scales per step: some steps far above max_grad_norm so clipping acts, some below.
    scales = [0.05, 0.2, 1.0, 3.0, 0.1] * 4
    for dtype, tag in [(torch.float32, "f32"), (torch.float64, "f64")]:
        optim_case(out, f"adamw_torch_defaults_linear_{tag}", dtype, rng, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                   weight_decay=0.01, max_grad_norm=1.0, schedule="linear", warmup=3, total=20,
                   grad_scales=scales)
        optim_case(out, f"adamw_decay_cosine_clip_{tag}", dtype, rng, lr=3e-2, betas=(0.9, 0.999), eps=1e-8,
                   weight_decay=0.1, max_grad_norm=0.5, schedule="cosine", warmup=4, total=20,
                   grad_scales=scales)
        optim_case(out, f"adamw_no_decay_constant_warmup_{tag}", dtype, rng, lr=0.1, betas=(0.8, 0.95), eps=1e-6,
                   weight_decay=0.0, max_grad_norm=10.0, schedule="constant_with_warmup", warmup=5, total=20,
                   grad_scales=scales)
        # beta1 < 0.5: lerp's other branch (weight 1 - beta1 >= 0.5).
        optim_case(out, f"adamw_small_beta1_min_lr_{tag}", dtype, rng, lr=1e-2, betas=(0.3, 0.9), eps=1e-8,
                   weight_decay=0.05, max_grad_norm=2.0, schedule="cosine_with_min_lr", warmup=2, total=16,
                   min_lr_rate=0.1, grad_scales=scales)
        optim_case(out, f"adamw_constant_{tag}", dtype, rng, lr=5e-3, betas=(0.9, 0.999), eps=1e-8,
                   weight_decay=0.01, max_grad_norm=1.0, schedule="constant", warmup=0, total=20,
                   grad_scales=scales)

    for schedule in ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_min_lr"]:
        for warmup, total in [(0, 10), (3, 10), (10, 10), (7, 50), (0, 1)]:
            schedule_case(out, f"{schedule}_w{warmup}_t{total}", schedule, warmup, total,
                          min_lr_rate=0.1 if schedule == "cosine_with_min_lr" else 0.0)
    for cycles in [1.0, 1.5, 3.0]:
        schedule_case(out, f"cosine_cycles{cycles}_w2_t30", "cosine", 2, 30, num_cycles=cycles)
    schedule_case(out, "cosine_with_min_lr_0.25_cycles1_w5_t40", "cosine_with_min_lr", 5, 40, num_cycles=1.0,
                  min_lr_rate=0.25)

    n_optim = sum(1 for line in out if line == "str family optim")
    n_schedule = sum(1 for line in out if line == "str family schedule")
    header = [
        "# Reference vectors for lmrl's train/ layer: torch.optim.AdamW (foreach=False), clip_grad_norm_,",
        "# and the transformers schedulers. Generated by tools/make_optim_reference.py; do not edit by hand.",
        f"# torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}, seed {args.seed}",
        f"# {n_optim + n_schedule} cases: optim {n_optim}, schedule {n_schedule}",
    ]
    with open(args.output, "w") as f:
        f.write("\n".join(header + out) + "\n")
    print(f"wrote {args.output}: optim {n_optim}, schedule {n_schedule}")


if __name__ == "__main__":
    main()
