#!/usr/bin/env python3
"""Reference ids for the byte-level BPE tokenizer tests, from the Hugging Face
`tokenizers` library itself (the canonical implementation).

    /work/venv-ref/bin/python tools/make_tokenizer_reference.py          # writes tests/data/tokenizer_*.txt
    /work/venv-ref/bin/python tools/make_tokenizer_reference.py --bench  # the library's encode MB/s

The tokenizer files are read from ../shared/tokenizers (relative to the
repository root) or from --shared. Output format, one case per three lines:

    t <the text as a JSON string>
    n <the normalized text as a JSON string>      (only when the normalizer changes it)
    i <ids separated by spaces>

Lines starting with '#' are comments. The corpus is deterministic (seeded):
ASCII prose, code, numbers of every length, CJK, Cyrillic, Arabic, Devanagari,
emoji with ZWJ and skin tones, runs of white space, CRLF, leading and trailing
white space, long repeats, <think>/<answer> tags, the tokenizers' own special
tokens inside text, combining marks (NFC) and random code points from many
Unicode blocks.
"""
import argparse
import json
import random
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
    "We'll see; they've said they'd come, but I'm not sure. DON'T SHOUT! She'S here. You'RE late, aren'T you?",
    "Reinforcement learning from verifiable rewards (RLVR) trains the policy with GRPO: advantages are group-normalized.",
    "Q: What is 12 * 34? A: Let's think step by step. 12 * 34 = 408.",
    "Hello,world!How are you?I'm fine...thanks!!!   Really?!",
    "e-mail: someone@example.com, url: https://example.org/path?q=1&r=2#frag",
    "Mr. O'Neil's dog—a 3-year-old beagle—ran 5.5 km in 00:23:45.",
]

CODE = [
    "def f(x):\n    return x ** 2 + 1\n\nprint(f(3))\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "#include <vector>\nint main() { std::vector<int> v{1, 2, 3}; return v.size() == 3 ? 0 : 1; }",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name HAVING COUNT(*) > 1;",
    "const x = (a, b) => a?.b ?? `template ${b}`;\n// comment\n/* block */",
    "    if x:\n        pass\n    else:\n        raise ValueError('bad')\r\n",
    "<div class=\"a\">&nbsp;&lt;tag&gt;</div>\n<!-- html -->",
    "$$\\sum_{i=1}^{n} x_i^2 = \\frac{a}{b}$$ and \\(\\alpha + \\beta\\)",
]

SCRIPTS = [
    "你好，世界！今天天气很好。我们去公园散步吧。",
    "日本語のテキスト：ひらがな、カタカナ、漢字を含む。東京タワーは333メートルです。",
    "한국어 문장입니다. 안녕하세요!",
    "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "مرحبا بالعالم! هذا نص عربي مع أرقام ١٢٣٤٥ و 67890.",
    "नमस्ते दुनिया! यह हिन्दी में एक वाक्य है। संख्या १२३",
    "Ελληνικά: Γειά σου Κόσμε! שלום עולם. ไทย: สวัสดีชาวโลก",
    "Tiếng Việt có dấu: Xin chào thế giới. Ñandú, façade, naïve, Ærøskøbing.",
]

EMOJI = [
    "👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏿‍💻", "🇫🇷🇯🇵", "❤️", "🙂🙃😀", "1️⃣", "🧑‍🤝‍🧑",
]

WHITESPACE = [
    " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n ", "\u3000", "\u00a0", "\u2003",
    "\u2028", "\u0085", "\x0b", "\x0c", " \t\n", "\n   \n", "\r", "    \n\n\t",
]


def special_tokens(tok):
    return [t.content for t in tok.get_added_tokens_decoder().values()]


def random_code_point(rng):
    blocks = [
        (0x20, 0x7E), (0xA0, 0x24F), (0x250, 0x2FF), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
        (0x530, 0x58F), (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0x980, 0x9FF), (0xE00, 0xE7F),
        (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x20A0, 0x20CF),
        (0x2100, 0x214F), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2460, 0x24FF), (0x2500, 0x257F),
        (0x2600, 0x26FF), (0x2700, 0x27BF), (0x3000, 0x303F), (0x3040, 0x30FF), (0x3130, 0x318F),
        (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xF900, 0xFAFF), (0xFB00, 0xFB4F), (0xFE00, 0xFE6F),
        (0xFF00, 0xFFEF), (0x10000, 0x1007F), (0x1D400, 0x1D7FF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF),
        (0x20000, 0x2A6DF), (0xE0000, 0xE007F), (0x0, 0x1F),
    ]
    while True:
        lo, hi = rng.choice(blocks)
        cp = rng.randint(lo, hi)
        if not (0xD800 <= cp <= 0xDFFF):
            return chr(cp)


def corpus(tok, rng):
    cases = []
    specials = special_tokens(tok)
    cases += PROSE + CODE + SCRIPTS + EMOJI + WHITESPACE
    # Numbers of every length, with and without separators.
    for n in range(1, 41):
        digits = "".join(rng.choice("0123456789") for _ in range(n))
        cases += [digits, " " + digits, "x" + digits + "y", digits + "." + digits[::-1], "-" + digits + "e10"]
    cases += ["١٢٣٤٥٦٧", "१२३४५", "½¾²³", "Ⅻ ⅻ", "①②③", "𝟘𝟙𝟚𝟛"]
    # Contractions and case: the (?i:...) part of the Qwen regex.
    for c in ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL", "'d", "'D",
              "'ſ", "'x", "'", "''s", " 's", "'st"]:
        cases += [c, "it" + c, "it" + c + " go", c + "abc"]
    # White space runs in context, CRLF, leading/trailing white space.
    for w in WHITESPACE:
        cases += ["a" + w + "b", w + "a", "a" + w, w + "!" + w, "x" + w + w + "y", w + "1" + w, "." + w + "\n" + w]
    cases += ["line1\r\nline2\r\n\r\n  line3", "  leading", "trailing  ", "\n\nboth\n\n", " \t mixed \t "]
    # Long repeats.
    for unit in ["a", "ab", " ", "\n", "=", "-", "0", "ha", "的", "😀", "abc ", "\t "]:
        for n in (7, 33, 200):
            cases.append(unit * n)
    # Tags and special tokens inside text.
    for sp in specials[:40] + ["<think>", "</think>", "<answer>", "</answer>", "<think", "think>", "<|im_end|",
                                "<|endoftext|>"]:
        cases += [sp, "a" + sp + "b", " " + sp + " ", sp + sp, "\n" + sp + "\n", "x " + sp + "y", "<" + sp + ">"]
    cases.append("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n2+2=4\n</think>\n\n"
                  "<answer>4</answer><|im_end|>")
    cases.append("<｜begin▁of▁sentence｜><｜User｜>Solve x^2=4<｜Assistant｜><think>x=±2</think>")
    # NFC: decomposed letters, Hangul jamo, combining sequences out of order.
    cases += ["e\u0301", "Cafe\u0301 de\u0301ja\u0300", "\u1100\u1161\u11a8", "a\u0323\u0302", "a\u0302\u0323",
              "\u212b", "\u2126", "\u00c5", "A\u030a", "\u0958", "q\u0307\u0323", "\u1e0b\u0323", "\u0344",
              "\u0301 leading mark", "ﬁ ﬂ ﬀ", "Ｆｕｌｌｗｉｄｔｈ １２３", "ǅ ǉ", "\u0340\u0341"]
    # Mixtures.
    pools = [PROSE, CODE, SCRIPTS, EMOJI, WHITESPACE]
    for _ in range(1200):
        parts = []
        for _ in range(rng.randint(1, 6)):
            pool = rng.choice(pools)
            text = rng.choice(pool)
            if len(text) > 20 and rng.random() < 0.5:
                a = rng.randint(0, len(text) - 1)
                text = text[a:a + rng.randint(1, 40)]
            parts.append(text)
        if rng.random() < 0.2:
            parts.insert(rng.randint(0, len(parts)), rng.choice(specials + ["<think>", "</answer>"]))
        cases.append("".join(parts))
    # Random code points from many blocks, alone and mixed with ASCII.
    for _ in range(1500):
        n = rng.randint(1, 24)
        s = "".join(random_code_point(rng) if rng.random() < 0.7 else rng.choice("ab1 .\n'") for _ in range(n))
        cases.append(s)
    # Every code point class boundary: each block start, single.
    for cp in range(0x80, 0x3000, 7):
        if unicodedata.category(chr(cp)) != "Cn":
            cases.append("a" + chr(cp) + chr(cp) + " " + chr(cp) + "1")
    seen = set()
    out = []
    for c in cases:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def write(name, path, out_path, seed):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(path))
    rng = random.Random(seed)
    cases = corpus(tok, rng)
    lines = [f"# Generated by tools/make_tokenizer_reference.py from {name}/tokenizer.json with tokenizers "
             f"{__import__('tokenizers').__version__}; {len(cases)} cases.",
             "# t <text as JSON>, n <normalized text as JSON> (only when it differs), i <ids>"]
    for s in cases:
        lines.append("t " + json.dumps(s, ensure_ascii=False))
        if tok.normalizer is not None:
            norm = tok.normalizer.normalize_str(s)
            if norm != s:
                lines.append("n " + json.dumps(norm, ensure_ascii=False))
        ids = tok.encode(s, add_special_tokens=False).ids
        lines.append("i " + " ".join(map(str, ids)))
    out_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{out_path}: {len(cases)} cases, {out_path.stat().st_size} bytes", file=sys.stderr)


def bench_text(reference_file, target_bytes=4 << 20):
    texts = []
    for line in Path(reference_file).read_text(encoding="utf-8").split("\n"):
        if line.startswith("t "):
            texts.append(json.loads(line[2:]))
    one = "\n".join(texts)
    return (one + "\n") * max(1, target_bytes // len(one.encode("utf-8")))


def bench(shared):
    from tokenizers import Tokenizer
    for name in ("qwen3", "deepseek_v3"):
        tok = Tokenizer.from_file(str(shared / name / "tokenizer.json"))
        text = bench_text(ROOT / "tests/data" / f"tokenizer_{name}.txt")
        size = len(text.encode("utf-8"))
        tok.encode(text[:100000], add_special_tokens=False)
        best = 1e9
        for _ in range(3):
            t0 = time.perf_counter()
            tok.encode(text, add_special_tokens=False)
            best = min(best, time.perf_counter() - t0)
        print(f"{name}: tokenizers {__import__('tokenizers').__version__} encode of {size / 1e6:.1f} MB: "
              f"{size / best / 1e6:.1f} MB/s (best of 3, one call on the whole text)")
        lines = text.split("\n")
        t0 = time.perf_counter()
        for line in lines:
            tok.encode(line, add_special_tokens=False)
        per_line = time.perf_counter() - t0
        print(f"{name}: tokenizers encode line by line ({len(lines)} calls): {size / per_line / 1e6:.1f} MB/s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "tokenizers"))
    ap.add_argument("--bench", action="store_true")
    args = ap.parse_args()
    shared = Path(args.shared)
    if args.bench:
        bench(shared)
        return
    write("qwen3", shared / "qwen3/tokenizer.json", ROOT / "tests/data/tokenizer_qwen3.txt", 3)
    write("deepseek_v3", shared / "deepseek_v3/tokenizer.json", ROOT / "tests/data/tokenizer_deepseek_v3.txt", 4)


if __name__ == "__main__":
    main()
