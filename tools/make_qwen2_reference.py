#!/usr/bin/env python3
"""Small random Qwen2 checkpoints and their outputs, for lmrl's parity test.

Usage (in the reference virtualenv, see tools/README.md):

    python tools/make_qwen2_reference.py tests/data

Builds two tiny Qwen2ForCausalLM models with transformers (vocab 64, hidden 32,
2 layers, 4 attention heads sharing 2 key/value heads, SwiGLU width 48, q/k/v
biases as Qwen2 always has; one with tied embeddings, one untied), float32,
weights ~ N(0, 0.2^2) so logits are far from uniform, biases and norm weights
random too (a fresh model has them 0 and 1, which would hide a swapped or
missing tensor). Each is written with save_pretrained (config.json +
model.safetensors) into <out>/qwen2_tied/ and <out>/qwen2_untied/, and
<out>/qwen2_<kind>/reference.txt records, in the format of
lmrl::testing::load_reference:

  case plain     2 sequences of 12 tokens, no padding
  case padded    3 sequences of 12 tokens, two of them left-padded
                 (attention_mask 0 in front, position_ids = cumsum(mask) - 1)
      tokens, attention_mask, position_ids   [B x T]
      logits     [B*T x V]  (rows of padded positions are whatever HF computes;
                             only rows with mask 1 are meaningful)
      logp       [B x T-1]  log_softmax(logits[:, :-1]).gather(tokens[:, 1:])
      entropy    [B x T-1]  entropy of softmax(logits[:, :-1]) (the
                             distribution that produced tokens[:, 1:])
      w, u       [B x T-1]  loss weights, 0 where tokens[:, t] or tokens[:, t+1]
                             is padding
  case gradients
      grad.<HF name>   dL/dparameter of
                       L = sum(w_plain * logp_plain)
                         + sum(w_padded * logp_padded) + sum(u_padded * entropy_padded)
                       (one gradient over both batches keeps the file small; a
                       model that accumulates gradients runs backward on each
                       batch and compares the sum)

Everything is computed in float32 on the CPU with the eager attention
implementation, as lmrl computes it. Seeds are fixed: same library versions,
same files.
"""

from __future__ import annotations

import argparse
import os

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

V, D, LAYERS, HEADS, KV_HEADS, FFN, T = 64, 32, 2, 4, 2, 48, 12


def build(tied: bool, seed: int) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=V,
        hidden_size=D,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        intermediate_size=FFN,
        max_position_embeddings=64,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tied,
        initializer_range=0.2,
        hidden_act="silu",
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).float()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    model.eval()
    return model


def batches(seed: int):
    g = torch.Generator().manual_seed(seed)
    plain_tokens = torch.randint(0, V, (2, T), generator=g)
    plain_mask = torch.ones(2, T, dtype=torch.long)
    padded_tokens = torch.randint(0, V, (3, T), generator=g)
    padded_mask = torch.ones(3, T, dtype=torch.long)
    padded_mask[0, :4] = 0  # 4 pads in front
    padded_mask[2, :1] = 0  # 1 pad in front; row 1 has none
    padded_tokens[padded_mask == 0] = 0  # the pad id; never looked at
    return {"plain": (plain_tokens, plain_mask), "padded": (padded_tokens, padded_mask)}


def forward(model, tokens, mask):
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=tokens, attention_mask=mask, position_ids=position_ids, use_cache=False)
    logits = out.logits.float()
    logsm = torch.log_softmax(logits[:, :-1], dim=-1)
    logp = logsm.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    entropy = -(logsm.exp() * logsm).sum(-1)
    return position_ids, logits, logp, entropy


def fmt(values, digits: int = 9) -> str:
    # 9 significant digits round-trip a float32; gradients get 7 (the test's
    # tolerance is far looser) to keep the file small.
    flat = [float(v) for v in torch.as_tensor(values).flatten().tolist()]
    return f"{len(flat)} " + " ".join(f"{v:.{digits}g}" for v in flat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the tests/data directory")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    for kind, tied, seed in (("tied", True, 1234), ("untied", False, 5678)):
        model = build(tied, seed)
        directory = os.path.join(args.out, f"qwen2_{kind}")
        os.makedirs(directory, exist_ok=True)
        model.save_pretrained(directory, safe_serialization=True)
        g = torch.Generator().manual_seed(seed + 2)
        lines = [
            f"# written by tools/make_qwen2_reference.py with torch {torch.__version__}, "
            f"transformers {__import__('transformers').__version__}",
        ]
        model.zero_grad()
        loss = torch.zeros(())
        for name, (tokens, mask) in batches(seed + 3).items():
            position_ids, logits, logp, entropy = forward(model, tokens, mask)
            active = (mask[:, :-1] * mask[:, 1:]).float()  # context and target both real
            w = torch.randn(logp.shape, generator=g) * active
            u = torch.randn(logp.shape, generator=g) * active if name == "padded" else torch.zeros(logp.shape)
            loss = loss + (w * logp).sum() + (u * entropy).sum()
            b = tokens.shape[0]
            lines.append(f"case {name}")
            lines.append(f"shape 2 {b} {T}")
            lines.append(f"tokens {fmt(tokens)}")
            lines.append(f"attention_mask {fmt(mask)}")
            lines.append(f"position_ids {fmt(position_ids)}")
            lines.append(f"logits {fmt(logits.detach())}")
            lines.append(f"logp {fmt(logp.detach())}")
            lines.append(f"entropy {fmt(entropy.detach())}")
            lines.append(f"w {fmt(w)}")
            lines.append(f"u {fmt(u)}")
            lines.append("end")
        loss.backward()
        lines.append("case gradients")
        lines.append(f"loss 1 {loss.item():.9g}")
        for pname, p in model.named_parameters():
            # tied: lm_head.weight is the same tensor as embed_tokens and not listed
            lines.append(f"grad.{pname} {fmt(p.grad, 7)}")
        lines.append("end")
        with open(os.path.join(directory, "reference.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print(directory, sorted(os.listdir(directory)))


if __name__ == "__main__":
    main()
