#!/usr/bin/env python3
"""GPT-2's own encoder (openai/gpt-2 encoder.py: bytes_to_unicode, the regex, lowest-rank merges
first) on ASCII text, printing one id per line: an independent reference for `deltashard
tokenize`. Python's `re` has no \\p{L}, so the text must be ASCII, where [A-Za-z] and [0-9] are
exactly \\p{L} and \\p{N}.
With --vocabulary instead of a text file, writes every id's bytes in id order (added tokens as
their text) to stdout: the reference for decoding.
usage: bpe_reference.py TOKENIZER_JSON (TEXT_FILE | --vocabulary)"""
import json
import re
import sys

tok = json.load(open(sys.argv[1], encoding="utf-8"))
vocab = tok["model"]["vocab"]
merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tok["model"]["merges"]]
ranks = {m: i for i, m in enumerate(merges)}

bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b)
        cs.append(256 + n)
        n += 1
byte_char = {b: chr(c) for b, c in zip(bs, cs)}
pattern = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""", re.ASCII)


def bpe(word):
    w = list(word)
    while len(w) > 1:
        rank, at = min((ranks.get((w[i], w[i + 1]), float("inf")), i) for i in range(len(w) - 1))
        if rank == float("inf"):
            break
        a, b = w[at], w[at + 1]
        out, i = [], 0
        while i < len(w):
            if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(w[i])
                i += 1
        w = out
    return w


if sys.argv[2] == "--vocabulary":
    char_byte = {c: b for b, c in byte_char.items()}
    added = {a["id"]: a["content"] for a in tok.get("added_tokens", [])}
    token = {i: t for t, i in vocab.items()}
    out = bytearray()
    for i in range(max(list(token) + list(added)) + 1):
        if i in added:
            out += added[i].encode()
        elif i in token:
            out += bytes(char_byte[c] for c in token[i])
    sys.stdout.buffer.write(bytes(out))
    sys.exit(0)

text = open(sys.argv[2], encoding="ascii").read()
for piece in pattern.findall(text):
    for t in bpe("".join(byte_char[b] for b in piece.encode())):
        print(vocab[t])
