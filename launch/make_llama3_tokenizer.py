#!/usr/bin/env python3
"""Rebuilds LLaMA 3's Hugging Face tokenizer.json from npm's llama3-tokenizer-js.

The package bakes LLaMA 3's tokenizer into its JavaScript source (src/data-converted.js, or the
bundle): `llama_vocab_base64` is the 128,000 byte-level tokens (GPT-2's printable stand-ins, `Ġ`
for a space) joined by newlines, in id order; `llama_merges_binary` is the merges, in rank order,
as pairs of token ids packed in 17 bits each (its src/data-conversion.py). The 256 special tokens
(128000..128255) are the package's list: LLaMA 3.1's names.

usage: launch/make_llama3_tokenizer.py OUT.json [PACKAGE_DIR]
PACKAGE_DIR: the unpacked package (default: ./node_modules/llama3-tokenizer-js, then npm's global
root). Get it with `npm install llama3-tokenizer-js` or `npm pack llama3-tokenizer-js` + tar.
"""
import base64
import json
import os
import re
import subprocess
import sys

REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
         "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")

SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
           "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
           "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
SPECIAL += [f"<|reserved_special_token_{i}|>" for i in range(3, 248)]


def find_package(given):
    candidates = [given] if given else []
    candidates.append(os.path.join("node_modules", "llama3-tokenizer-js"))
    try:
        root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, check=True).stdout.strip()
        candidates.append(os.path.join(root, "llama3-tokenizer-js"))
    except (OSError, subprocess.CalledProcessError):
        pass
    for c in candidates:
        for rel in ("src/data-converted.js", "bundle/llama3-tokenizer-with-baked-data.js"):
            if os.path.isfile(os.path.join(c, rel)):
                return os.path.join(c, rel)
    sys.exit("make_llama3_tokenizer: llama3-tokenizer-js not found (tried %s); "
             "npm install llama3-tokenizer-js, or give its directory" % ", ".join(candidates))


def js_string(source, name):
    m = re.search(r'\b%s\s*=\s*"([A-Za-z0-9+/=]*)"' % name, source)
    if not m:
        sys.exit("make_llama3_tokenizer: no %s in the package's source" % name)
    return base64.b64decode(m.group(1))


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.strip().splitlines()[-4])
    out = sys.argv[1]
    data_file = find_package(sys.argv[2] if len(sys.argv) == 3 else None)
    source = open(data_file, encoding="utf-8").read()

    vocab_list = js_string(source, "llama_vocab_base64").decode("utf-8").split("\n")
    bits = js_string(source, "llama_merges_binary")
    n_ids = len(bits) * 8 // 17  # the rest is padding
    bits += b"\0\0"
    ids = []
    for k in range(n_ids):  # 17 bits from bit 17k on, big-endian: within the 3 bytes from byte 17k // 8
        at = 17 * k
        word = int.from_bytes(bits[at // 8:at // 8 + 3], "big")
        ids.append((word >> (24 - 17 - at % 8)) & 0x1FFFF)
    if len(vocab_list) != 128000 or n_ids % 2:
        sys.exit("make_llama3_tokenizer: unexpected data: %d tokens, %d merge ids" % (len(vocab_list), n_ids))
    merges = [vocab_list[ids[k]] + " " + vocab_list[ids[k + 1]] for k in range(0, n_ids, 2)]
    vocab = {}
    for i, t in enumerate(vocab_list):
        if t in vocab:
            sys.exit("make_llama3_tokenizer: token %r twice" % t)
        vocab[t] = i
    for m in merges:
        left, right = m.split(" ")
        if left + right not in vocab:
            sys.exit("make_llama3_tokenizer: merge %r makes no token" % m)

    added = [{"id": 128000 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(SPECIAL)]
    bos = {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": REGEX}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000],
                                                      "tokens": ["<|begin_of_text|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": merges},
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False, indent=2)
        f.write("\n")
    print("%s: %d tokens + %d added, %d merges, %d bytes (from %s)"
          % (out, len(vocab), len(added), len(merges), os.path.getsize(out), data_file))


if __name__ == "__main__":
    main()
