"""The GRPO-shaped step of benchmarks/bench_model_step.cpp in eager PyTorch, on the CPU.

Same shapes, same phases, same token counts, so the two can run side by side on
one machine and their ratio is a measurement, not a comparison with figures
from another day:

    generation   P prompts x G sequences, KV-cache decoding (each prompt
                 prefilled once, its cache repeated for the group), temperature 1,
                 no EOS;                                  tokens/s = B * completion / s
    ref + old    2 forward passes under no_grad;          tokens/s = 2 * B * (prompt + completion) / s
    training     forward + backward + torch.optim.AdamW;  tokens/s = B * (prompt + completion) / s

The model is a Qwen2-style decoder written out in plain torch (RMSNorm, RoPE,
grouped-query attention through scaled_dot_product_attention, SwiGLU, tied
embeddings, q/k/v bias): the eager PyTorch a user would write. Log-probs of the
targets come from log_softmax over the full vocabulary, as TRL computes them.

    python tools/bench_torch_step.py [tiny|small] [--threads 2]

Each phase is timed once after an untimed warm-up, like the C++ benchmark.
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPES = {
    # name: vocab, d, layers, heads, kv heads, ffn, prompts, group, prompt, completion
    "tiny": (512, 256, 4, 4, 2, 688, 8, 8, 32, 96),
    "small": (8192, 512, 8, 8, 4, 1376, 4, 8, 64, 192),
}


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def rope(x, pos, theta=10000.0):  # x [B, h, T, hd], pos [T]
    hd = x.shape[-1]
    inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = pos[:, None].float() * inv[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Block(nn.Module):
    def __init__(self, d, h, kv, ffn):
        super().__init__()
        self.h, self.kv, self.hd = h, kv, d // h
        self.ln1, self.ln2 = RMSNorm(d), RMSNorm(d)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, kv * self.hd)
        self.v = nn.Linear(d, kv * self.hd)
        self.o = nn.Linear(d, d, bias=False)
        self.gate = nn.Linear(d, ffn, bias=False)
        self.up = nn.Linear(d, ffn, bias=False)
        self.down = nn.Linear(ffn, d, bias=False)

    def forward(self, x, pos, cache=None):
        B, T, _ = x.shape
        a = self.ln1(x)
        q = rope(self.q(a).view(B, T, self.h, self.hd).transpose(1, 2), pos)
        k = rope(self.k(a).view(B, T, self.kv, self.hd).transpose(1, 2), pos)
        v = self.v(a).view(B, T, self.kv, self.hd).transpose(1, 2)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        rep = self.h // self.kv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1 and k.shape[2] == T)
        x = x + self.o(y.transpose(1, 2).reshape(B, T, -1))
        b = self.ln2(x)
        return x + self.down(F.silu(self.gate(b)) * self.up(b))


class Model(nn.Module):
    def __init__(self, vocab, d, layers, h, kv, ffn):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, h, kv, ffn) for _ in range(layers))
        self.norm = RMSNorm(d)

    def forward(self, ids, start=0, caches=None):
        x = self.embed(ids)
        pos = torch.arange(start, start + ids.shape[1])
        for i, blk in enumerate(self.blocks):
            x = blk(x, pos, None if caches is None else caches[i])
        return self.norm(x) @ self.embed.weight.T  # tied lm_head


def token_logprobs(model, ids):
    logits = model(ids)[:, :-1]
    return torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)


@torch.no_grad()
def generate(model, prompts, group, new_tokens, gen):
    P = prompts.shape[0]
    caches = [{} for _ in model.blocks]
    logits = model(prompts, 0, caches)[:, -1]
    for c in caches:  # each prompt prefilled once, its cache repeated for the group
        c["k"], c["v"] = c["k"].repeat_interleave(group, 0), c["v"].repeat_interleave(group, 0)
    logits = logits.repeat_interleave(group, 0)
    out = []
    for t in range(new_tokens):
        tok = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
        out.append(tok)
        logits = model(tok, prompts.shape[1] + t, caches)[:, -1]
    return torch.cat(out, 1)


def run(name):
    vocab, d, layers, h, kv, ffn, P, G, Lp, Lc = SHAPES[name]
    torch.manual_seed(1)
    model = Model(vocab, d, layers, h, kv, ffn)
    gen = torch.Generator().manual_seed(2024)
    prompts = torch.randint(0, vocab, (P, Lp), generator=gen)
    B, L = P * G, Lp + Lc
    print(f"== {name}: vocab {vocab}, d {d}, {layers} layers, {h} heads, {kv} kv heads, ffn {ffn}; "
          f"{P} prompts x group {G}, prompt {Lp} + completion {Lc}")

    generate(model, prompts, G, 4, gen)  # warm-up
    t0 = time.perf_counter()
    completions = generate(model, prompts, G, Lc, gen)
    t_gen = time.perf_counter() - t0
    batch = torch.cat([prompts.repeat_interleave(G, 0), completions], 1)

    with torch.no_grad():
        token_logprobs(model, batch)  # warm-up
        t0 = time.perf_counter()
        token_logprobs(model, batch)  # reference
        token_logprobs(model, batch)  # old policy
        t_ref = time.perf_counter() - t0

    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
    adv = torch.tensor([-1.0 if b % 2 == 0 else 1.0 for b in range(B)])[:, None]

    def train_step():
        opt.zero_grad()
        logp = token_logprobs(model, batch)[:, Lp - 1:]  # the completion's tokens
        loss = -(adv * logp).sum() / (B * Lc)
        loss.backward()
        opt.step()

    train_step()  # warm-up
    t0 = time.perf_counter()
    train_step()
    t_train = time.perf_counter() - t0

    print(f"  {'phase':34s} {'seconds':>10s} {'tokens/s':>12s}")
    print(f"  {'generation (KV cache)':34s} {t_gen:10.3f} {B * Lc / t_gen:12.0f}")
    print(f"  {'reference + old log-probs (2 fwd)':34s} {t_ref:10.3f} {2 * B * L / t_ref:12.0f}")
    print(f"  {'training (fwd + bwd + AdamW)':34s} {t_train:10.3f} {B * L / t_train:12.0f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shape", nargs="?", choices=sorted(SHAPES), help="one shape (default: both)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    n = 2048
    x, y = torch.rand(n, n), torch.rand(n, n)
    x @ y
    best = min((lambda t0: (x @ y, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(3))
    print(f"bench_torch_step: torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"2048^3 float GEMM {2 * n ** 3 / best * 1e-9:.1f} GFLOP/s")
    for name in [a.shape] if a.shape else SHAPES:
        run(name)


if __name__ == "__main__":
    main()
