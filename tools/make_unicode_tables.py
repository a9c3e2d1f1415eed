#!/usr/bin/env python3
"""Writes include/lmrl/model/tokenizer/unicode_tables.hpp: the Unicode data the
byte-level BPE pre-tokenizers and the NFC normalizer need, as compact sorted
step tables (the Unicode version is recorded in the header).

    pip install unicodedata2==16.0.0
    python3 tools/make_unicode_tables.py            # rewrites the header

The data must be Unicode 16.0: the version of the Oniguruma tables inside the
`tokenizers` library (0.23) whose regexes the pre-tokenizers reproduce. An
exhaustive check over every code point showed that Python 3.11's own
unicodedata (Unicode 14.0) misclassifies the code points added in 15.0-16.0
(Kaktovik numerals, new letters), so the script takes unicodedata2 pinned at
16.0.0 and refuses any other version.

The NFC data (decompositions, combining classes, compositions) is older in the
library (its unicode-normalization crate): the same check shows it agrees with
Unicode 14.0 (U+1E4EC, a Unicode 15 mark, is not reordered; U+16D67, a
Unicode 16 composite, is not composed), so that part comes from Python 3.11's
own unicodedata (14.0.0), also checked.

Tables
  char_flags   step table of (first_code_point << 8 | flags): the flags of every
               code point from `first` up to the next entry's first.
               bit 0 L (letter)   bit 1 M (mark)      bit 2 N (number)
               bit 3 P (punct.)   bit 4 S (symbol)    bit 5 white space as
               Oniguruma's Unicode \\s (U+0009-000D, U+0085, Zs, Zl, Zp)
               bit 6 word (Rust regex \\w approximated: L, M, Nd, Nl, Pc, U+200C/D)
               bit 7 nfc_check (NFC_Quick_Check No or Maybe, or ccc != 0: a
               string with none of these is already NFC)
  ccc          step table of (first << 8 | canonical combining class)
  decomp_index (code point, offset into decomp_data, length): the full
               canonical decomposition, Hangul syllables excluded (algorithmic)
  compose      sorted (first << 21 | second, composite) primary composites
"""
import sys
from pathlib import Path

import unicodedata as nfc_data  # Python 3.11's own: Unicode 14.0

try:
    import unicodedata2 as unicodedata
except ImportError:
    sys.exit("make_unicode_tables.py: needs unicodedata2==16.0.0 (pip install unicodedata2==16.0.0)")
if unicodedata.unidata_version != "16.0.0":
    sys.exit(f"make_unicode_tables.py: needs Unicode 16.0.0 data, unicodedata2 has {unicodedata.unidata_version}")
if nfc_data.unidata_version != "14.0.0":
    sys.exit(f"make_unicode_tables.py: needs Python 3.11 (unicodedata 14.0.0) for the NFC data, "
             f"this Python has {nfc_data.unidata_version}")

MAX = 0x110000
L, M, N, P, S, WS, WORD, NFC = 1, 2, 4, 8, 16, 32, 64, 128


def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def canonical_decomposition(cp):
    d = nfc_data.decomposition(chr(cp))
    if not d or d.startswith('<'):
        return None
    return [int(x, 16) for x in d.split()]


def full_decomposition(cp):
    d = canonical_decomposition(cp)
    if d is None:
        return [cp]
    out = []
    for c in d:
        out.extend(full_decomposition(c))
    return out


def main():
    out_path = Path(__file__).resolve().parent.parent / 'include/lmrl/model/tokenizer/unicode_tables.hpp'

    # Primary composites: canonical pairs whose NFC is the composite again
    # (this drops the composition exclusions and singletons).
    compose = {}
    for cp in range(MAX):
        if is_surrogate(cp):
            continue
        d = canonical_decomposition(cp)
        if d is not None and len(d) == 2 and nfc_data.normalize('NFC', chr(d[0]) + chr(d[1])) == chr(cp):
            compose[(d[0], d[1])] = cp
    second_of_pair = {b for (_, b) in compose}

    flags = [0] * MAX
    ccc = [0] * MAX
    for cp in range(MAX):
        if is_surrogate(cp):
            continue
        ch = chr(cp)
        cat = unicodedata.category(ch)
        f = 0
        if cat[0] == 'L':
            f |= L | WORD
        elif cat[0] == 'M':
            f |= M | WORD
        elif cat[0] == 'N':
            f |= N
            if cat in ('Nd', 'Nl'):
                f |= WORD
        elif cat[0] == 'P':
            f |= P
            if cat == 'Pc':
                f |= WORD
        elif cat[0] == 'S':
            f |= S
        if (0x09 <= cp <= 0x0D) or cp == 0x85 or cat in ('Zs', 'Zl', 'Zp'):
            f |= WS
        if cp in (0x200C, 0x200D):
            f |= WORD
        c = nfc_data.combining(ch)
        ccc[cp] = c
        if c != 0 or nfc_data.normalize('NFC', ch) != ch or cp in second_of_pair:
            f |= NFC
        # Hangul vowel and trailing jamo combine with a preceding syllable/lead.
        if 0x1161 <= cp <= 0x1175 or 0x11A8 <= cp <= 0x11C2:
            f |= NFC
        flags[cp] = f

    def steps(values):
        table = []
        prev = None
        for cp in range(MAX):
            v = values[cp]
            if v != prev:
                table.append((cp << 8) | v)
                prev = v
        return table

    flag_steps = steps(flags)
    ccc_steps = steps(ccc)

    decomp = []
    for cp in range(MAX):
        if is_surrogate(cp) or 0xAC00 <= cp <= 0xD7A3:
            continue
        full = full_decomposition(cp)
        if full != [cp]:
            decomp.append((cp, full))
    decomp_data = []
    decomp_index = []
    for cp, full in decomp:
        decomp_index.append((cp, len(decomp_data), len(full)))
        decomp_data.extend(full)

    compose_sorted = sorted(((a << 21) | b, c) for (a, b), c in compose.items())

    def fmt(values, per_line=8, hexa=True):
        lines = []
        for i in range(0, len(values), per_line):
            chunk = values[i:i + per_line]
            lines.append('    ' + ', '.join((f'0x{v:x}' if hexa else str(v)) for v in chunk) + ',')
        return '\n'.join(lines)

    text = f'''// Generated by tools/make_unicode_tables.py: character classes from unicodedata2
// (Unicode {unicodedata.unidata_version}), NFC data from Python's unicodedata (Unicode {nfc_data.unidata_version}). Do not edit; rerun the script.
//
// char_flags: step table (first code point << 8 | flags), flags as in
// unicode.hpp (L M N P S white word nfc_check). ccc: step table (first << 8 |
// canonical combining class). decomp_index: (code point, offset, length) of the
// full canonical decomposition in decomp_data (Hangul is algorithmic).
// compose: sorted (first << 21 | second) -> primary composite.
#pragma once

#include <cstdint>

namespace lmrl::unicode::tables {{

inline constexpr const char* unicode_version = "{unicodedata.unidata_version}";

inline constexpr std::uint32_t char_flags[] = {{
{fmt(flag_steps)}
}};

inline constexpr std::uint32_t ccc[] = {{
{fmt(ccc_steps)}
}};

struct decomposition {{
  std::uint32_t code_point;
  std::uint16_t offset;
  std::uint16_t length;
}};

inline constexpr decomposition decomp_index[] = {{
{chr(10).join(f'    {{0x{cp:x}, {o}, {n}}},' for cp, o, n in decomp_index)}
}};

inline constexpr std::uint32_t decomp_data[] = {{
{fmt(decomp_data)}
}};

struct composition {{
  std::uint64_t pair;  // first << 21 | second
  std::uint32_t composite;
}};

inline constexpr composition compose[] = {{
{chr(10).join(f'    {{0x{k:x}, 0x{c:x}}},' for k, c in compose_sorted)}
}};

}}  // namespace lmrl::unicode::tables
'''
    out_path.write_text(text)
    print(f'{out_path}: {len(flag_steps)} flag steps, {len(ccc_steps)} ccc steps, '
          f'{len(decomp_index)} decompositions, {len(compose_sorted)} compositions', file=sys.stderr)


if __name__ == '__main__':
    main()
