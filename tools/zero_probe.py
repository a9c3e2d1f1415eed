"""PyTorch probe of the grpo_zero task design (include/lmrl/train/task.hpp).

Same text formats, byte tokenizer ids and Qwen2-style model shape as the C++
flagship; pretrains a base on the corpus, measures the thinking rate and the
accuracy per mode on held-out problems, then runs a minimal on-policy GRPO
(group-normalized advantages, one iteration, so the PPO ratio is 1) and
measures again. Used to choose the defaults before the C++ trainer existed;
docs/r1_zero.md records the runs. Not part of the library or its tests.

  python tools/zero_probe.py --operands 4 --digits 2 --worked 0.25 --pretrain_steps 600 ...

--practice P: a fraction P of pretraining sequences are "practice packs", plain
text of two-operand additions in the step-line form ("\n147+38=185\n62+19=81\n..."),
loss on all tokens, about as many tokens as a templated example. --chain C: a
fraction C of those packs hold whole worked chains instead ("\n47+18+93+25\n47+18=65\n...").
"""
import argparse, hashlib, json, math, random, time
import torch, torch.nn as nn, torch.nn.functional as F

THINK, THINK_END, ANSWER, ANSWER_END, EOS, PAD = 256, 257, 258, 259, 260, 261
SPECIAL = {"<think>": THINK, "</think>": THINK_END, "<answer>": ANSWER, "</answer>": ANSWER_END,
           "<|endoftext|>": EOS, "<|pad|>": PAD}

def encode(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "<":
            for t, k in SPECIAL.items():
                if s.startswith(t, i):
                    out.append(k); i += len(t); break
            else:
                out.append(ord(s[i])); i += 1
        else:
            out.append(ord(s[i])); i += 1
    return out

INV = {v: k for k, v in SPECIAL.items()}
def decode(ids):
    return "".join(INV.get(i, chr(i) if i < 256 else "?") for i in ids)

def is_test(expr, frac=0.1):
    h = int.from_bytes(hashlib.sha256(expr.encode()).digest()[:8], "little")
    return (h >> 11) * 2.0 ** -53 < frac

class Task:
    def __init__(self, a):
        self.n, self.d, self.system, self.fmt = a.operands, a.digits, a.system, a.steps
    def draw(self, rng, test):
        lo, hi = 10 ** (self.d - 1), 10 ** self.d - 1
        while True:
            xs = [rng.randint(lo, hi) for _ in range(self.n)]
            e = "+".join(map(str, xs))
            if is_test(e) == test:
                return xs, e
    def prompt(self, e):
        return f"{self.system} User: {e}. Assistant: <think>"
    def steps(self, xs):
        if self.fmt == "columns":  # units column first; each later column adds the carry
            lines, carry = [], 0
            for c in range(self.d):
                ds = [str(x // 10 ** c % 10) for x in xs] + ([str(carry)] if c else [])
                s = sum(map(int, ds)); carry = s // 10
                lines.append("+".join(ds) + f"={s}")
            return "\n".join(lines)
        t, lines = xs[0], []
        for x in xs[1:]:
            lines.append(f"{t}+{x}={t + x}"); t += x
        return "\n".join(lines)
    def practice(self, rng, target):
        # "Plain problems with answers": two-operand additions in the worked
        # step-line form, one per line, loss on every token. The first operand
        # is distributed like a running total (sum of 1..operands-1 numbers of
        # `digits` digits, so digits..digits+1 digits), the second has `digits`
        # digits. Lines are added while the pack stays within `target` tokens
        # (about the length of a templated example).
        lo, hi = 10 ** (self.d - 1), 10 ** self.d - 1
        text = "\n"
        while True:
            t = sum(rng.randint(lo, hi) for _ in range(rng.randint(1, self.n - 1)))
            x = rng.randint(lo, hi)
            line = f"{t}+{x}={t + x}\n"
            if len(text) > 1 and len(text) + len(line) > target: return text
            text += line
    def chain_pack(self, rng, target):
        # --chain: a practice pack of whole worked chains as plain text,
        # "\n47+18+93+25\n47+18=65\n65+93=158\n158+25=183\n...", no template
        text = "\n"
        while True:
            xs, e = self.draw(rng, False)
            block = e + "\n" + self.steps(xs) + "\n"
            if len(text) > 1 and len(text) + len(block) > target: return text
            text += block
    def completion(self, xs, worked):
        think = "\n" + self.steps(xs) + "\n" if worked else "\n"
        return think + f"</think>\n<answer>\n{sum(xs)}\n</answer><|endoftext|>"

class RMSNorm(nn.Module):
    def __init__(s, d): super().__init__(); s.w = nn.Parameter(torch.ones(d))
    def forward(s, x): return s.w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

def rope(x, pos, theta=10000.0):
    hd = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, device=x.device).float() / hd)
    f = pos[..., None].float() * inv
    emb = torch.cat([f, f], -1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin

class Block(nn.Module):
    def __init__(s, d, h, kv, ffn):
        super().__init__()
        s.h, s.kv, s.hd = h, kv, d // h
        s.n1, s.n2 = RMSNorm(d), RMSNorm(d)
        s.q = nn.Linear(d, h * s.hd); s.k = nn.Linear(d, kv * s.hd); s.v = nn.Linear(d, kv * s.hd)
        s.o = nn.Linear(h * s.hd, d, bias=False)
        s.g = nn.Linear(d, ffn, bias=False); s.u = nn.Linear(d, ffn, bias=False); s.dn = nn.Linear(ffn, d, bias=False)
    def forward(s, x, pos, mask):
        B, T, _ = x.shape
        y = s.n1(x)
        q = s.q(y).view(B, T, s.h, s.hd).transpose(1, 2)
        k = s.k(y).view(B, T, s.kv, s.hd).transpose(1, 2)
        v = s.v(y).view(B, T, s.kv, s.hd).transpose(1, 2)
        q, k = rope(q, pos), rope(k, pos)
        k = k.repeat_interleave(s.h // s.kv, 1); v = v.repeat_interleave(s.h // s.kv, 1)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + s.o(a.transpose(1, 2).reshape(B, T, -1))
        y = s.n2(x)
        return x + s.dn(F.silu(s.g(y)) * s.u(y))

class Model(nn.Module):
    def __init__(s, a):
        super().__init__()
        s.emb = nn.Embedding(512, a.d_model)
        s.blocks = nn.ModuleList([Block(a.d_model, a.heads, a.kv_heads, a.ffn) for _ in range(a.layers)])
        s.norm = RMSNorm(a.d_model)
        for p in s.parameters():
            if p.dim() == 2: nn.init.normal_(p, std=0.02)
            elif p.dim() == 1 and not isinstance(p, nn.Parameter): pass
        for m in s.modules():
            if isinstance(m, nn.Linear) and m.bias is not None: nn.init.zeros_(m.bias)
    def forward(s, ids, am):
        # left-padded batches: positions count real tokens; causal + padding mask
        pos = (am.cumsum(1) - 1).clamp(min=0)
        T = ids.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
        mask = causal[None, None] & am.bool()[:, None, None, :]
        mask = mask | torch.eye(T, dtype=torch.bool, device=ids.device)[None, None]
        x = s.emb(ids)
        for b in s.blocks: x = b(x, pos, mask)
        return s.norm(x) @ s.emb.weight.T

def pad_left(seqs, dev):
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), PAD, dtype=torch.long)
    am = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, T - len(s):] = torch.tensor(s); am[i, T - len(s):] = 1
    return ids.to(dev), am.to(dev)

@torch.no_grad()
def generate(model, prompts, max_new, temp, gen):
    ids, am = pad_left(prompts, next(model.parameters()).device)
    B = ids.shape[0]
    out = torch.full((B, max_new), PAD, dtype=torch.long, device=ids.device)
    done = torch.zeros(B, dtype=torch.bool, device=ids.device)
    for t in range(max_new):
        logits = model(ids, am)[:, -1].float()
        if temp == 0: nxt = logits.argmax(-1)
        else: nxt = torch.multinomial(F.softmax(logits / temp, -1), 1, generator=gen)[:, 0]
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        out[:, t] = nxt
        done |= nxt == EOS
        ids = torch.cat([ids, nxt[:, None]], 1); am = torch.cat([am, (~done | (nxt == EOS)).long()[:, None]], 1)
        if done.all(): break
    return out

def grade(text, gold):
    thinks = text.split("</think>")[0].strip() != ""
    fmt = text.startswith("\n") and "</think>\n<answer>\n" in text and text.rstrip().endswith("</answer><|endoftext|>") \
        and text.count("</think>") == 1 and text.count("<answer>") == 1
    ans = None
    if "<answer>" in text and "</answer>" in text:
        ans = text.split("<answer>")[-1].split("</answer>")[0].strip()
    return thinks, fmt, ans == str(gold)

def evaluate(model, task, probs, temp, gen, max_new, force=False):
    # force: the completion is started as a worked one ("\n{first operand}+"),
    # which measures the worked mode under greedy decoding too
    res = []
    for i in range(0, len(probs), 500):
        chunk = probs[i:i + 500]
        pre = [f"\n{xs[0]}+" if force else "" for xs, _ in chunk]
        out = generate(model, [encode(task.prompt(e) + f) for (_, e), f in zip(chunk, pre)], max_new, temp, gen)
        for (xs, e), f, o in zip(chunk, pre, out.tolist()):
            o = [t for t in o if t != PAD]
            res.append(grade(f + decode(o), sum(xs)) + (len(o),))
    n = len(res)
    th = [r for r in res if r[0]]; di = [r for r in res if not r[0]]
    return dict(acc=sum(r[2] for r in res) / n, fmt=sum(r[1] for r in res) / n, think=len(th) / n,
                acc_think=sum(r[2] for r in th) / max(1, len(th)), acc_direct=sum(r[2] for r in di) / max(1, len(di)),
                len=sum(r[3] for r in res) / n)

def step_eval(model, task, gen, n=500):
    # greedy accuracy of one step line "t+x=" inside a practice pack (the step skill alone)
    rng = random.Random(777); lo, hi = 10 ** (task.d - 1), 10 ** task.d - 1
    prompts, gold = [], []
    for _ in range(n):
        t = sum(rng.randint(lo, hi) for _ in range(rng.randint(1, task.n - 1))); x = rng.randint(lo, hi)
        prompts.append(encode(task.practice(rng, 40) + f"{t}+{x}=")); gold.append(f"{t + x}\n")
    out = generate(model, prompts, len(gold[0]) + 2, 0, gen).tolist()
    return sum(decode(o).startswith(g) for o, g in zip(out, gold)) / n

def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(steps="columns", operands=4, digits=2, worked=0.25, practice=0.0, chain=0.0, pretrain_steps=600, batch=64, lr=3e-3, d_model=64, layers=4,
                     heads=4, kv_heads=2, ffn=172, grpo_steps=150, prompts=16, group=8, grpo_lr=1e-3, beta=0.0,
                     seed=0, max_new=48, heldout=500, loss_all=0, system="Think in <think> </think>, then answer in <answer> </answer>.",
                     eval_every=50, tag="").items():
        ap.add_argument("--" + k, type=type(v), default=v)
    a = ap.parse_args()
    torch.manual_seed(a.seed); rng = random.Random(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    task = Task(a)
    hrng = random.Random(12345); held = []
    seen = set()
    while len(held) < a.heldout:
        xs, e = task.draw(hrng, True)
        if e not in seen: seen.add(e); held.append((xs, e))
    model = Model(a).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0, betas=(0.9, 0.95))
    t0 = time.time(); toks = 0
    for step in range(a.pretrain_steps):
        lr = a.lr * min(1, (step + 1) / 50) * (0.5 * (1 + math.cos(math.pi * step / a.pretrain_steps)) * 0.9 + 0.1)
        for g in opt.param_groups: g["lr"] = lr
        seqs, lm = [], []
        for _ in range(a.batch):
            xs, e = task.draw(rng, False)
            p = encode(task.prompt(e)); c = encode(task.completion(xs, rng.random() < a.worked))
            if rng.random() < a.practice:  # a practice pack instead, about as long as this example
                pack = task.chain_pack if rng.random() < a.chain else task.practice
                c = encode(pack(rng, len(p) + len(c))); p = []
            seqs.append(p + c); lm.append([a.loss_all] * len(p) + [1] * len(c))
        T = max(map(len, seqs))
        ids = torch.full((len(seqs), T), PAD, dtype=torch.long); am = torch.zeros_like(ids); lmask = torch.zeros(len(seqs), T)
        for i, (s, m) in enumerate(zip(seqs, lm)):
            ids[i, :len(s)] = torch.tensor(s); am[i, :len(s)] = 1; lmask[i, :len(s)] = torch.tensor(m, dtype=torch.float)
        ids, am, lmask = ids.to(dev), am.to(dev), lmask.to(dev)
        toks += int(am.sum())
        logits = model(ids, am)[:, :-1]
        nll = F.cross_entropy(logits.reshape(-1, 512), ids[:, 1:].reshape(-1), reduction="none").view(len(seqs), -1)
        m = lmask[:, 1:]
        loss = (nll * m).sum() / m.sum()
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
        if step % 200 == 0 or step == a.pretrain_steps - 1:
            print(json.dumps(dict(phase="pretrain", step=step, loss=round(loss.item(), 4))), flush=True)
    gen = torch.Generator(device=dev); gen.manual_seed(a.seed)
    base_g = evaluate(model, task, held, 0, gen, a.max_new); base_s = evaluate(model, task, held, 1.0, gen, a.max_new)
    base_f = evaluate(model, task, held, 0, gen, a.max_new, force=True)
    print(json.dumps(dict(phase="base", params=nparams, pretrain_tokens=toks, greedy=base_g, sampled=base_s,
                          forced_greedy_acc=base_f["acc"], step_acc=step_eval(model, task, gen),
                          t=round(time.time() - t0, 1))), flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.grpo_lr, weight_decay=0.0, betas=(0.9, 0.99))
    ref = None
    if a.beta > 0:
        import copy; ref = copy.deepcopy(model).eval()
    gtoks = 0
    for step in range(a.grpo_steps):
        probs = [task.draw(rng, False) for _ in range(a.prompts)]
        prompts = [encode(task.prompt(e)) for _, e in probs for _ in range(a.group)]
        out = generate(model, prompts, a.max_new, 1.0, gen).tolist()
        comps, rewards = [], []
        for k, o in enumerate(out):
            o = [t for t in o if t != PAD]
            xs, _ = probs[k // a.group]
            th, fmt, ok = grade(decode(o), sum(xs))
            rewards.append(float(ok) + 0.1 * float(fmt))
            comps.append(o if o else [EOS])
        r = torch.tensor(rewards).view(a.prompts, a.group)
        adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1).to(dev)
        seqs = [p + c for p, c in zip(prompts, comps)]
        T = max(map(len, seqs))
        ids = torch.full((len(seqs), T), PAD, dtype=torch.long); am = torch.zeros_like(ids); cm = torch.zeros(len(seqs), T)
        for i, (p, c) in enumerate(zip(prompts, comps)):
            s = p + c; ids[i, :len(s)] = torch.tensor(s); am[i, :len(s)] = 1; cm[i, len(p):len(s)] = 1
        ids, am, cm = ids.to(dev), am.to(dev), cm.to(dev)
        gtoks += int(am.sum())
        logp = -F.cross_entropy(model(ids, am)[:, :-1].reshape(-1, 512), ids[:, 1:].reshape(-1), reduction="none").view(len(seqs), -1)
        m = cm[:, 1:]
        per_tok = -adv[:, None] * logp  # ratio 1 on-policy: grad of -A * ratio = -A * grad logp
        if ref is not None:
            with torch.no_grad():
                rl = -F.cross_entropy(ref(ids, am)[:, :-1].reshape(-1, 512), ids[:, 1:].reshape(-1), reduction="none").view(len(seqs), -1)
            d = rl - logp
            per_tok = per_tok + a.beta * (torch.exp(d) - d - 1)
        loss = ((per_tok * m).sum(1) / m.sum(1).clamp(min=1)).mean()  # TRL loss_type="grpo"-style per-sequence mean
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
        if step % 10 == 0:
            print(json.dumps(dict(phase="grpo", step=step, reward=round(r.mean().item(), 3),
                                  think=round(sum(1 for c in comps if decode(c).split("</think>")[0].strip()) / len(comps), 3),
                                  len=round(sum(map(len, comps)) / len(comps), 1))), flush=True)
        if (step + 1) % a.eval_every == 0 and step + 1 < a.grpo_steps:
            print(json.dumps(dict(phase="eval", step=step + 1, greedy=evaluate(model, task, held, 0, gen, a.max_new))), flush=True)
    after_g = evaluate(model, task, held, 0, gen, a.max_new); after_s = evaluate(model, task, held, 1.0, gen, a.max_new)
    after_f = evaluate(model, task, held, 0, gen, a.max_new, force=True)
    print(json.dumps(dict(phase="final", tag=a.tag, params=nparams, pretrain_tokens=toks, grpo_tokens=gtoks, base_greedy=base_g,
                          base_sampled=base_s, base_forced_greedy_acc=base_f["acc"], greedy=after_g, sampled=after_s,
                          forced_greedy_acc=after_f["acc"],
                          lift_greedy=round(after_g["acc"] - base_g["acc"], 3), t=round(time.time() - t0, 1))), flush=True)

if __name__ == "__main__":
    main()
