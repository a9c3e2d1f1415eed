#!/usr/bin/env python3
"""Communication against compute per GRPO optimizer step, data-parallel lmrl.

Every figure this prints is a MODEL computed from the stated assumptions (the
command-line options and the constants below), not a measurement. It answers one
question: for the small and Qwen2.5-0.5B presets on 8, 64 and 512 GPUs, does the
gradient all-reduce of one optimizer step fit inside the backward pass of that
step (so that bucketed overlap could hide it), or is it exposed?

  N            parameters, counted from the shapes as a Llama/Qwen2 model
  grad bytes   N * 4 (lmrl all-reduces its float32 gradient buffer), N * 2 (bf16)
  all-reduce   2 (P-1)/P * bytes / busbw + 2 (P-1) * alpha   (flat ring)
  compute      (6 N + 12 layers d seq_len) * tokens_per_gpu / (MFU * peak)
  backward     2/3 of compute; ratio = all-reduce / backward window, where the
               window is the whole per-GPU backward, or with --micro-seqs only
               the last micro-batch's (accumulated gradients are final only then)

Strong scaling holds the global batch; weak scaling holds the per-GPU batch at
its value on the smallest cluster (8 GPUs by default). Sequences are whole: a GPU holds ceil(sequences / P) of them
(the busiest rank sets the step time) and, when P > sequences, some GPUs idle.
Rollout-side traffic per step, for completeness: (a) the all-gather of the
sampled token ids and log-probs, 4 + 4 bytes per completion token; (c) each
all-gather of recomputed log-prob rows (old / reference), 4 bytes per padded
token; (b) a bf16 weight broadcast, N * 2 bytes, only if rollout and training
ran on separate GPUs (lmrl's replicas each generate, so today they do not).
Stdlib only; run `python3 tools/comm_model.py [--help]`.
"""
import argparse
import math

PRESETS = {  # lmrl's transformer_config presets (include/lmrl/model/config.hpp)
    "small": dict(vocab=8192, d=512, layers=8, heads=8, kv_heads=4, ffn=1376, tied=False, bias=False),
    "qwen2.5-0.5b": dict(vocab=151936, d=896, layers=24, heads=14, kv_heads=2, ffn=4864, tied=True, bias=True),
}


def param_count(vocab, d, layers, heads, kv_heads, ffn, tied, bias):
    kv = kv_heads * d // heads
    per_layer = (d * d + (d if bias else 0)            # q
                 + 2 * (d * kv + (kv if bias else 0))  # k, v
                 + d * d                               # o
                 + 3 * d * ffn                         # gate, up, down
                 + 2 * d)                              # two RMSNorm weights
    return vocab * d + layers * per_layer + d + (0 if tied else vocab * d)


def allreduce_s(nbytes, p, busbw, alpha):
    return 2 * (p - 1) / p * nbytes / busbw + 2 * (p - 1) * alpha


def verdict(ratio, margin):
    return "hidden (margin)" if ratio < margin else "hidden (tight)" if ratio < 1 else "exposed"


def ms(seconds):
    x = 1e3 * seconds
    return f"{x:,.0f}" if x >= 1000 else f"{x:.3g}"


def fmt_bytes(b):
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= k:
            return f"{b / k:.3g} {unit}"
    return f"{b:.0f} B"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpus", type=int, nargs="+", default=[8, 64, 512], help="cluster sizes (default 8 64 512)")
    ap.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per NVLink node (default 8)")
    ap.add_argument("--nvlink-gbs", type=float, default=360.0,
                    help="assumed NCCL bus bandwidth inside one node, GB/s (default 360, H100 SXM NVLink 4)")
    ap.add_argument("--net-gbs", type=float, default=40.0,
                    help="assumed bus bandwidth across nodes, GB/s (default 40: 400 Gb/s IB/RoCE per GPU = 50 GB/s)")
    ap.add_argument("--alpha-us", type=float, default=5.0, help="assumed per-hop ring latency, us (default 5)")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="assumed peak dense bf16 TFLOP/s per GPU (default 989, H100 SXM)")
    ap.add_argument("--mfu", type=float, default=0.40, help="assumed model FLOPs utilization (default 0.40)")
    ap.add_argument("--margin", type=float, default=0.7,
                    help="ratio below which the all-reduce is 'hidden (margin)' (default 0.7)")
    ap.add_argument("--micro-seqs", type=int, default=0,
                    help="gradient accumulation: sequences per micro-batch; only the last micro-batch's backward "
                         "can hide the all-reduce (default 0: one backward over the whole per-GPU batch, the best case)")
    ap.add_argument("--small-seqs", type=int, default=32, help="small: sequences per step (default 4 x 8 = 32)")
    ap.add_argument("--small-prompt", type=int, default=64, help="small: prompt tokens (default 64)")
    ap.add_argument("--small-completion", type=int, default=192, help="small: completion tokens (default 192)")
    ap.add_argument("--qwen-seqs", type=int, default=512, help="qwen2.5-0.5b: sequences per step (default 512)")
    ap.add_argument("--qwen-seq-len", type=int, default=1024,
                    help="qwen2.5-0.5b: tokens per sequence (default 1024; rollout bytes count all as completion)")
    a = ap.parse_args()

    batches = {  # (sequences, sequence length, completion tokens per sequence)
        "small": (a.small_seqs, a.small_prompt + a.small_completion, a.small_completion),
        "qwen2.5-0.5b": (a.qwen_seqs, a.qwen_seq_len, a.qwen_seq_len),
    }
    flops_per_s = a.mfu * a.peak_tflops * 1e12
    alpha = a.alpha_us * 1e-6
    base_p = min(a.gpus)

    print("**lmrl data-parallel GRPO: modelled communication vs compute per optimizer step.**", end=" ")
    print(f"Model, not measurement. Assumptions: peak {a.peak_tflops:g} TFLOP/s x MFU {a.mfu:g}; bus bandwidth "
          f"{a.nvlink_gbs:g} GB/s within one node of {a.gpus_per_node} GPUs, {a.net_gbs:g} GB/s across nodes; "
          f"alpha {a.alpha_us:g} us per ring hop; flat ring; backward window = "
          f"{'last micro-batch of %d sequences' % a.micro_seqs if a.micro_seqs > 0 else 'whole per-GPU backward'}. "
          f"1 MB = 1e6 bytes.\n")

    print("**Per preset**: gradients per optimizer step; (a)-(c) per generation round (the whole batch)\n")
    print("| preset | N (params) | grad fp32 | grad bf16 | batch / step | tokens / step "
          "| (a) rollout all-gather | (c) log-prob row all-gather, each | (b) weight broadcast (bf16, split roles) |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    ns = {}
    for name, shape in PRESETS.items():
        n = ns[name] = param_count(**shape)
        seqs, seq_len, comp = batches[name]
        print(f"| {name} | {n:,} | {fmt_bytes(4 * n)} | {fmt_bytes(2 * n)} | {seqs} x {seq_len} | {seqs * seq_len:,} "
              f"| {fmt_bytes(8 * seqs * comp)} | {fmt_bytes(4 * seqs * seq_len)} | {fmt_bytes(2 * n)} |")

    print("\n**Gradient all-reduce vs backward window, per optimizer step**\n")
    print("| preset | GPUs | scaling | seq / GPU | tokens / GPU | step compute ms | backward window ms "
          "| all-reduce fp32 ms | ratio fp32 | verdict fp32 | all-reduce bf16 ms | ratio bf16 | verdict bf16 |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|")
    for name, shape in PRESETS.items():
        n = ns[name]
        seqs, seq_len, _ = batches[name]
        flops_per_token = 6 * n + 12 * shape["layers"] * shape["d"] * seq_len
        for p in a.gpus:
            busbw = (a.nvlink_gbs if p <= a.gpus_per_node else a.net_gbs) * 1e9
            ar32, ar16 = allreduce_s(4 * n, p, busbw, alpha), allreduce_s(2 * n, p, busbw, alpha)
            for scaling in ("strong", "weak"):
                if scaling == "strong":
                    per_gpu = math.ceil(seqs / p)
                    idle = max(0, p - seqs)
                else:
                    per_gpu, idle = math.ceil(seqs / base_p), 0
                tokens = per_gpu * seq_len
                step = flops_per_token * tokens / flops_per_s
                window = min(per_gpu, a.micro_seqs) if a.micro_seqs > 0 else per_gpu
                bwd = 2 / 3 * step * window / per_gpu
                seq_col = f"{per_gpu}" + (f" ({idle} idle)" if idle else "")
                print(f"| {name} | {p} | {scaling} | {seq_col} | {tokens:,} | {ms(step)} | {ms(bwd)} "
                      f"| {ms(ar32)} | {ar32 / bwd:.2f} | {verdict(ar32 / bwd, a.margin)} "
                      f"| {ms(ar16)} | {ar16 / bwd:.2f} | {verdict(ar16 / bwd, a.margin)} |")


if __name__ == "__main__":
    main()
