"""The pure-Python GPT-2 BPE and WordPiece tokenizers that vadd used before its tokenizers became Hugging
Face ``tokenizers`` objects: the reference the tests hold the new ones to, id for id."""
from __future__ import annotations

import json
import os
import unicodedata
from functools import lru_cache
from pathlib import Path

# GPT-2's pre-tokenisation pattern (contractions, letters, numbers, other, whitespace)
_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@lru_cache(maxsize=1)
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


class ReferenceGPT2:
    """Byte-level BPE (GPT-2). ``<|endoftext|>`` (50256) is both BOS and EOS, as in GPT-2 / OpenWebText."""

    name = "gpt2"

    def __init__(self, root: str | os.PathLike | None = None):
        import regex

        root = Path(root)
        with open(root / "encoder.json", encoding="utf-8") as f:
            self.encoder: dict[str, int] = json.load(f)
        with open(root / "vocab.bpe", encoding="utf-8") as f:
            lines = [ln for ln in f.read().split("\n")[1:] if ln]
        self.ranks = {tuple(ln.split()): i for i, ln in enumerate(lines)}
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.b2u = _byte_to_unicode()
        self.u2b = {v: k for k, v in self.b2u.items()}
        self.pattern = regex.compile(_GPT2_PATTERN)
        self.vocab_size = len(self.encoder)
        self.eos_id = self.bos_id = self.encoder["<|endoftext|>"]
        self.pad_id = None
        self._cache: dict[str, list[int]] = {}

    def _bpe(self, word: str) -> list[int]:
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            # the lowest-ranked adjacent pair is merged everywhere it occurs, left to right
            rank, first, second = min((self.ranks.get(pair, 1 << 30), *pair) for pair in zip(parts, parts[1:]))
            if rank == 1 << 30:
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.encoder[p] for p in parts]
        if len(self._cache) < 200_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for piece in self.pattern.findall(text):
            out.extend(self._bpe("".join(self.b2u[b] for b in piece.encode("utf-8"))))
        return out

    def decode(self, ids) -> str:
        data = bytearray()
        for i in ids:
            tok = self.decoder.get(int(i))
            if tok is None:
                raise ValueError(f"token id {int(i)} is outside the GPT-2 vocabulary [0, {self.vocab_size})")
            data.extend(self.u2b[c] for c in tok)
        return data.decode("utf-8", errors="replace")


class ReferenceBert:
    """Uncased WordPiece (bert-base-uncased): lower-case, strip accents, split on whitespace and
    punctuation, then greedy longest-match subwords with ``##`` continuations. ``[CLS]``/``[SEP]`` are
    BOS/EOS and ``[PAD]`` pads, as in MDLM's LM1B setup."""

    name = "bert-base-uncased"

    def __init__(self, vocab_file: str | os.PathLike | None = None, max_chars_per_word: int = 100):
        vocab_file = Path(vocab_file)
        with open(vocab_file, encoding="utf-8") as f:
            tokens = [ln.rstrip("\n") for ln in f]
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.inv = tokens
        self.vocab_size = len(tokens)
        self.unk_id = self.vocab["[UNK]"]
        self.bos_id, self.eos_id, self.pad_id = self.vocab["[CLS]"], self.vocab["[SEP]"], self.vocab["[PAD]"]
        self.max_chars = max_chars_per_word

    @staticmethod
    def _is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def _basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words, cur = [], []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if ch.isspace():
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif self._is_punct(ch) or 0x4E00 <= cp <= 0x9FFF:
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > self.max_chars:
            return [self.unk_id]
        out, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.vocab:
                    out.append(self.vocab[sub])
                    break
                end -= 1
            else:
                return [self.unk_id]
            start = end
        return out

    def encode(self, text: str) -> list[int]:
        return [i for w in self._basic(text) for i in self._wordpiece(w)]

    def decode(self, ids) -> str:
        words: list[str] = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the BERT vocabulary [0, {self.vocab_size})")
            if i == self.pad_id:
                continue
            tok = self.inv[i]
            if tok.startswith("##") and words:
                words[-1] += tok[2:]
            else:
                words.append(tok)
        return " ".join(words)
