#!/usr/bin/env python3
"""Writes tests/data/math_equivalence.txt: (gold, pred) answer pairs judged by HF math-verify.

Run with a Python that has math-verify installed, outside the source tree, e.g.
    /work/venv-ref/bin/pip install math-verify
    /work/venv-ref/bin/python tools/make_math_reference.py > tests/data/math_equivalence.txt

Each line: gold <TAB> pred <TAB> verify(parse(gold), parse(pred)) as 0/1 [<TAB> reason].
A reason marks a pair where lmrl::math_equal deliberately gives the other answer; the C++ test
(tests/reward/test_math_equal.cpp) requires agreement on every other pair and disagreement on these.
Escapes: '%' -> %25, tab -> %09, newline -> %0A, carriage return -> %0D.
"""
import random
from fractions import Fraction

from math_verify import parse, verify

random.seed(20250301)

pairs = []  # (gold, pred)


def add(gold, pred):
    pairs.append((gold, pred))


def fmt_thousands(n):
    return f"{n:,}"


# Integers in many written forms.
integers = [0, 7, 42, -15, 1234, 1000000, 987654321, -2500, 12345678901234567890123]
for n in integers:
    add(f"{n}", f"{n}")
    add(f"${n}$", f"${n}$")
    add(f"${n}$", f"\\boxed{{{n}}}")
    add(f"${n}$", f"${n}.0$")
    add(f"${n}$", f"${fmt_thousands(n)}$")
    add(f"{fmt_thousands(n)}", f"{n}")
    add(f"${n}$", f"${n + 1}$")
    add(f"${n}$", f"$\\text{{{n}}}$")
    add(f"${n}$", f"$\\mathrm{{{n}}}$")
    add(f"${n}$", f"$\\left({n}\\right)$")
    add(f"${n}$", f"$x = {n}$")
    add(f"${n}$", f"${n}.$")
    if n > 0:
        add(f"${n}$", f"${n}\\text{{ cm}}$")
        add(f"${n}$", f"${n} \\mathrm{{kg}}$")
        add(f"${n}$", f"$-{n}$")
        add(f"${n}$", f"$+{n}$")
        add(f"${n}$", f"$\\frac{{{2 * n}}}{{2}}$")

# Fractions: \frac, \dfrac, \tfrac, a/b, decimals at and below the rounding precision.
fractions = [Fraction(1, 2), Fraction(1, 3), Fraction(2, 3), Fraction(-3, 4), Fraction(7, 8), Fraction(5, 2),
             Fraction(22, 7), Fraction(1, 7), Fraction(-5, 6), Fraction(123, 1000)]
for _ in range(10):
    q = random.randint(2, 60)
    p = random.randint(-200, 200)
    if p != 0:
        fractions.append(Fraction(p, q))
for f in fractions:
    p, q = f.numerator, f.denominator
    sign = "-" if f < 0 else ""
    ap = abs(p)
    frac = f"{sign}\\frac{{{ap}}}{{{q}}}"
    add(f"${frac}$", f"${frac}$")
    add(f"${frac}$", f"${sign}\\dfrac{{{ap}}}{{{q}}}$")
    add(f"${frac}$", f"${sign}\\tfrac{{{ap}}}{{{q}}}$")
    add(f"${frac}$", f"${p}/{q}$")
    add(f"${frac}$", f"$\\frac{{{p}}}{{{q}}}$")
    add(f"${frac}$", f"$\\frac{{{2 * p}}}{{{2 * q}}}$")
    add(f"${frac}$", f"$\\frac{{{p + 1}}}{{{q}}}$")
    add(f"${frac}$", f"\\boxed{{{frac}}}")
    x = p / q
    add(f"${frac}$", f"${x:.6f}$")
    add(f"${frac}$", f"${x:.7f}$")
    add(f"${frac}$", f"${x:.3f}$")
    add(f"{p}/{q}", f"{x:.6f}")
    if f.denominator < 10 and 0 < abs(p) < 10:
        add(f"${sign}\\frac{ap}{q}$", f"${frac}$")

# Decimals: equal, trailing zeros, rounding at the sixth place, sign.
for _ in range(25):
    x = round(random.uniform(-1000, 1000), random.randint(1, 5))
    s = f"{x}"
    add(f"${s}$", f"${s}$")
    add(f"${s}$", f"${s}0$")
    add(f"${s}$", f"${x + 10 ** -random.randint(1, 3):.5f}$")
    add(f"{s}", f"{s}")
for g, p in [("0.333333", "\\frac{1}{3}"), ("0.3333333", "\\frac{1}{3}"), ("0.333334", "\\frac{1}{3}"),
             ("0.666667", "\\frac{2}{3}"), ("0.666666", "\\frac{2}{3}"), ("0.1234564", "0.123456"),
             ("0.1234566", "0.123457"), ("3.14", "3.14159"), ("2.50", "2.5"), (".5", "0.5"), ("2.5", "\\frac{5}{2}"),
             ("1.0000001", "1.0"), ("1.0000001", "1"), ("100.0000001", "100"), ("0.75", "\\frac{3}{4}"),
             ("1.5", "\\frac32"), ("0.1", "\\frac{1}{10}"), ("-0.25", "-\\frac{1}{4}"), ("0.2", "0.20000004")]:
    add(f"${g}$", f"${p}$")
    add(f"${p}$", f"${g}$")

# Percentages: math-verify's X% == X/100, and X% == X for integers.
for g, p in [("50\\%", "0.5"), ("50\\%", "50"), ("50\\%", "\\frac{1}{2}"), ("0.5", "50\\%"), ("50", "50\\%"),
             ("12.5\\%", "0.125"), ("12.5\\%", "12.5"), ("25\\%", "25\\%"), ("25\\%", "0.25"), ("25\\%", "26"),
             ("3\\%", "0.03"), ("3\\%", "3"), ("0.5\\%", "0.005"), ("150\\%", "1.5"), ("40\\%", "\\frac{2}{5}"),
             ("40\\%", "0.4"), ("40\\%", "40"), ("40\\%", "4"), ("40", "0.4"), ("7\\%", "0.7")]:
    add(f"${g}$", f"${p}$")
add("50%", "0.5")
add("50%", "50")
add("50%", "1/2")

# Huge numbers: beyond 64 and 128 bits.
big = 12345678901234567890123456789012345678901234567890
add(f"${big}$", f"${big}$")
add(f"${big}$", f"${big + 1}$")
add(f"{big}", f"{big}")
add(f"$340282366920938463463374607431768211457$", f"$340282366920938463463374607431768211457$")
add(f"$1{'0' * 30}$", f"$1{'0' * 29}$")

# Not numbers: tuples, symbols, expressions (symbolic equivalence is math-verify's, not ours).
for g, p in [("(1,2)", "(1, 2)"), ("(1,2)", "(2,1)"), ("\\sqrt{2}", "\\sqrt{2}"), ("\\pi", "\\pi"),
             ("x+1", "x+1"), ("x+1", "1+x"), ("\\sqrt{4}", "2"), ("2\\sqrt{2}", "\\sqrt{8}"), ("\\frac{1}{0}", "1"),
             ("\\text{yes}", "\\text{yes}"), ("x^2", "x^{2}"), ("1,2", "1,2")]:
    add(f"${g}$", f"${p}$")

# Bare answers (no $...$), as datasets often store the gold.
for g, p in [("\\frac{1}{2}", "0.5"), ("\\frac12", "0.5"), ("\\dfrac{1}{2}", "1/2"), ("- 3", "-3"), ("+3", "3"),
             ("50\\%", "0.5"), ("50\\%", "50"), ("1,234", "1.234"), ("3.", "3"), ("\\boxed{7}", "7"),
             ("\\text{7}", "7"), ("7 apples", "7"), ("\\$5", "5"), ("5", "5 dollars"), ("1 234", "1234")]:
    add(g, p)

# Pairs where lmrl::math_equal deliberately disagrees with math-verify, with the reason.
REASONS = {
    ("$x+1$", "$1+x$"): "symbolic equivalence: math_equal compares non-numbers as strings",
    ("$\\sqrt{4}$", "$2$"): "symbolic evaluation: math_equal does not evaluate \\sqrt",
    ("$2\\sqrt{2}$", "$\\sqrt{8}$"): "symbolic equivalence: math_equal compares non-numbers as strings",
    ("$x^2$", "$x^{2}$"): "symbolic equivalence: math_equal compares non-numbers as strings",
}
QUIRK_FLOAT_VS_INTEGER = ("math-verify quirk: a decimal that rounds to an integer at 6 places never equals an "
                          "Integer (sympy Float.round keeps binary noise); math_equal rounds both sides")
BARE = "bare LaTeX outside $...$: math-verify's default parse does not read it as LaTeX; math_equal does"
for g, p in [("\\frac12", "0.5"), ("\\dfrac{1}{2}", "1/2"), ("50\\%", "0.5"), ("\\text{7}", "7"), ("\\$5", "5")]:
    REASONS[(g, p)] = BARE
REASONS[("- 3", "-3")] = "math-verify's plain-text extraction drops a sign separated by a space; math_equal keeps it"
REASONS[("+3", "3")] = "math-verify's plain-text extraction does not read a leading '+'; math_equal does"
for g, p in [("$1.0000001$", "$1$"), ("$1$", "$1.0000001$"), ("$100.0000001$", "$100$"), ("$100$", "$100.0000001$")]:
    REASONS[(g, p)] = QUIRK_FLOAT_VS_INTEGER


def escape(s):
    return s.replace("%", "%25").replace("\t", "%09").replace("\n", "%0A").replace("\r", "%0D")


seen = set()
print("# gold<TAB>pred<TAB>math_verify.verify(parse(gold), parse(pred))<TAB>[reason lmrl deliberately differs]")
print("# written by tools/make_math_reference.py; escapes: %25 = '%', %09 = tab, %0A = newline, %0D = CR")
for gold, pred in pairs:
    if (gold, pred) in seen:
        continue
    seen.add((gold, pred))
    result = int(bool(verify(parse(gold), parse(pred))))
    reason = REASONS.get((gold, pred), "")
    fields = [escape(gold), escape(pred), str(result)] + ([escape(reason)] if reason else [])
    print("\t".join(fields))
