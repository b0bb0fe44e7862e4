#!/usr/bin/env python3
"""Differential check of DeltaShard's hand-written pre-tokenizers against a regex engine: Python's
`re` runs GPT-2's and LLaMA 3's patterns, with \\p{L}, \\p{N} and \\s spelled out as explicit
classes (Unicode categories L*, N* and White_Space), over a text file and over seeded random
strings built to hit the tricky cases (contractions in any case, whitespace runs before words,
newlines, digits of other scripts, marks, emoji). Prints how many pieces agree; exits 1 on the
first disagreement.  usage: check_pretokenizer.py DELTASHARD_BINARY [TEXT_FILE...]"""
import json
import random
import subprocess
import sys
import tempfile
import unicodedata


def char_class(pred):
    ranges, start = [], None
    for cp in range(0x110000):
        if pred(cp):
            if start is None:
                start = cp
        elif start is not None:
            ranges.append((start, cp - 1))
            start = None
    esc = lambda cp: f"\\U{cp:08x}"
    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


L = char_class(lambda cp: unicodedata.category(chr(cp)).startswith("L"))
N = char_class(lambda cp: unicodedata.category(chr(cp)).startswith("N"))
WHITE = [0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
S = "".join(f"\\U{cp:08x}" for cp in WHITE)
import re  # noqa: E402

PATTERNS = {
    "gpt2": rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])|[{S}]+",
    "llama3": rf"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n{L}{N}]?[{L}]+|[{N}]{{1,3}}| ?[^{S}{L}{N}]+[\r\n]*"
              rf"|[{S}]*[\r\n]+|[{S}]+(?![^{S}])|[{S}]+",
}


def random_text(rng, n):
    pool = (["'s", "'S", "'\u017f", "'t", "'RE", "'ve", "'m", "'ll", "'D", "'x", "'"] + list("abcXYZ0123456789") +
            ["é", "ß", "日本", "Ω", "٣", "½", "Ⅻ", "\u0301", "🙂", "—", "!!", "?", ".", ",", "(", ")"] +
            [" ", "  ", "\t", "\n", "\r\n", "\n\n", " \n", "\u00a0", "\u3000", "\u2003", "\x0b", "\x1c"])
    return "".join(rng.choice(pool) for _ in range(n))


def deltashard_pieces(binary, pre, text):
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", delete=False) as f:
        f.write(text)
    out = subprocess.run([binary, "tokenize", "--pieces", pre, "--file", f.name], check=True, capture_output=True)
    return json.loads(out.stdout)["pieces"]


def main():
    binary, files = sys.argv[1], sys.argv[2:]
    texts = []
    for path in files:
        raw = open(path, "rb").read()
        texts.append((path, "".join(l for l in raw.decode("utf-8", "replace").splitlines(True) if "\ufffd" not in l)))
    rng = random.Random(0)
    texts += [(f"random string {i}", random_text(rng, 400)) for i in range(200)]
    joined = "\x00".join(t for _, t in texts)  # one run of the binary; NUL is an "other" piece in both
    for pre, pattern in PATTERNS.items():
        rx = re.compile(pattern)
        ours = deltashard_pieces(binary, pre, joined)
        ref = rx.findall(joined)
        if ours != ref:
            for i, (a, b) in enumerate(zip(ours, ref)):
                if a != b:
                    print(f"{pre}: piece {i} differs: deltashard {a!r}, re {b!r}")
                    break
            else:
                print(f"{pre}: {len(ours)} pieces from deltashard, {len(ref)} from re")
            sys.exit(1)
        print(f"{pre}: {len(ref)} pieces over {len(joined)} characters agree with Python's re")


main()
