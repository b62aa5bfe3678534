"""``vadd compare``: the token statistics (exact values), the reading over seeds (verdicts, intervals,
sentences that match the tables), data resolution, and an end-to-end run whose numbers do not move with
the number of workers."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vadd.compare import Target, sentences, spread, summarize
from vadd.errors import ConfigError
from vadd.metrics.tokens import position_pairs, primary_stat, token_stats

VADD_BIN = str(Path(sys.executable).with_name("vadd"))


def test_token_stats_see_the_correlation_that_marginals_miss():
    copies = np.array([[0, 0], [1, 1]] * 500)                     # x1 = x2, a fair bit
    product = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 250)    # the same marginals, independent
    same = token_stats(copies, copies, 2)
    assert same == {"marginal_js": 0.0, "pair_js": 0.0, "joint_js": 0.0}
    got = token_stats(product, copies, 2)
    # JS([1/2, 0, 0, 1/2], [1/4] * 4) = (ln(4/3) + (ln 2 - ln(3/2)) / 2 ... ) / 2, by hand
    m = np.array([3, 1, 1, 3]) / 8
    want = 0.5 * (2 * 0.5 * math.log(0.5 / m[0])) + 0.5 * (2 * 0.25 * math.log(0.25 / m[0]) + 2 * 0.25 * math.log(0.25 / m[1]))
    assert got["marginal_js"] == 0.0
    assert got["pair_js"] == pytest.approx(want, rel=1e-12) and got["joint_js"] == pytest.approx(want, rel=1e-12)


def test_pairs_and_the_primary_statistic():
    assert len(position_pairs(5)) == 10 and (position_pairs(5)[:, 0] < position_pairs(5)[:, 1]).all()
    many = position_pairs(100, max_pairs=50, seed=1)
    assert len(many) == 50 and np.array_equal(many, position_pairs(100, max_pairs=50, seed=1))
    assert primary_stat(4, 8) == "joint_js"          # 4^8 = 65,536 sequences: enumerable
    assert primary_stat(8, 16) == "pair_js"
    assert primary_stat(50_000, 16) == "marginal_js"  # 2.5e9 cells per pair: too sparse to mean anything
    assert "joint_js" not in token_stats(np.zeros((3, 9), int), np.zeros((3, 9), int), 4)  # 4^9 > 2^16


def test_spread_is_the_t_interval_of_the_mean():
    s = spread([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0 and s["ci95"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t_0.975, 2 dof
    assert spread(np.arange(12.0))["ci95"] == pytest.approx(2.200985 * np.arange(12.0).std(ddof=1) / math.sqrt(12), rel=1e-6)
    assert spread([5.0]) == {"mean": 5.0, "std": None, "ci95": None, "n": 1}


def _results(stat_by_seed, bounds_by_seed=None):
    """A results dict as run_compare collects it: ``stat_by_seed[seed][method][T] = value``."""
    per = {}
    for seed, methods in stat_by_seed.items():
        per[seed] = {"train": {}, "stats": {m: {T: {"js": v, "nfe": 1, "wall_s": 0.0} for T, v in byT.items()}
                                            for m, byT in methods.items()},
                     "bounds": (bounds_by_seed or {}).get(seed, {})}
    return {"seeds": [int(s) for s in per], "statistic": "js", "per_seed": per, "steps": [1, 2]}


def _bounds(mdm, vadd):
    rec = lambda b, T, K, v: {"bound": b, "steps": T, "K": K, "nats_per_example": v}  # noqa: E731
    return {"mdm": [rec("continuous", None, 1, mdm), rec("steps", 1, 1, mdm + 1.0)],
            "vadd": [rec("continuous", None, 1, vadd + 0.1), rec("continuous", None, 10, vadd),
                     rec("steps", 1, 1, vadd + 0.3), rec("steps", 1, 10, vadd + 0.2)]}


def test_reading_over_seeds_names_wins_spread_and_bounds():
    # VADD lower at every seed at T = 1 (a clear win); at T = 2 lower at two seeds of three (within spread);
    # VADD-CS higher at every seed at T = 2
    stats = {"0": {"mdm": {"1": 0.20, "2": 0.10}, "vadd": {"1": 0.010, "2": 0.09}, "vadd-cs": {"1": 0.010, "2": 0.2}},
             "1": {"mdm": {"1": 0.22, "2": 0.10}, "vadd": {"1": 0.011, "2": 0.11}, "vadd-cs": {"1": 0.011, "2": 0.3}},
             "2": {"mdm": {"1": 0.21, "2": 0.10}, "vadd": {"1": 0.012, "2": 0.08}, "vadd-cs": {"1": 0.012, "2": 0.25}}}
    res = _results(stats, {s: _bounds(5.0, 5.0 + 0.01 * (i + 1)) for i, s in enumerate(("0", "1", "2"))})
    S = res["summary"] = summarize(res)
    p = S["paired"]["vadd"]["mdm"]
    assert p["1"]["wins"] == 3 and p["2"]["wins"] == 2
    assert p["1"]["ratio_mdm_over"] == pytest.approx(math.exp(np.mean(np.log([20, 20, 17.5]))))
    assert p["1"]["diff"]["mean"] == pytest.approx(np.mean([0.01 - 0.2, 0.011 - 0.22, 0.012 - 0.21]))
    assert S["stats"]["mdm"]["1"]["js"]["mean"] == pytest.approx(0.21)
    b = S["bounds_paired"]["mdm"]["continuous"]
    assert b["K"] == 10 and b["diff"]["mean"] == pytest.approx(0.02) and b["lower_at"] == 0
    assert b["relative"] == pytest.approx(0.02 / 5.0)
    lines = sentences(res)
    assert lines[0].startswith("VADD against MDM (js, lower is better; 3 training seeds): lower at every seed at T = 1;")
    assert "20.0x lower" not in lines[0] and "19.1x lower" in lines[0]
    assert lines[0].endswith("not lower at every seed (or within the interval) at T = 2.")
    assert lines[1].startswith("VADD-CS against MDM") and "higher at every seed at T = 2" in lines[1]
    assert "0.40% above MDM's" in lines[2] and "lower at 0 of 3 seeds" in lines[2]
    assert "below MDM's at every seed at no T (of T = 1)" not in lines[3] and "at T = 1 (of T = 1)" in lines[3]


def test_one_seed_says_it_has_no_interval():
    res = _results({"0": {"mdm": {"1": 0.2}, "vadd": {"1": 0.01}}})
    res["summary"] = summarize(res)
    assert "1 training seed, so no interval" in sentences(res)[0] and "lower at every seed at T = 1" in sentences(res)[0]


def test_data_resolution(tmp_path):
    """``--data`` picks the modality: toys and 2D points, token arrays (numeric text too), images (a folder of
    PNG files, a uint8 array of images, a named set) and text (a corpus name, a prose .txt, .jsonl, a folder of
    .txt files)."""
    from PIL import Image
    pts = tmp_path / "pts.npy"
    np.save(pts, np.random.default_rng(0).normal(size=(100, 2)))
    tok = tmp_path / "tok.npy"
    np.save(tok, np.zeros((10, 3), dtype=np.int64))
    imgs = tmp_path / "imgs.npy"
    np.save(imgs, np.zeros((10, 8, 8), dtype=np.uint8))
    (tmp_path / "pngs").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "pngs" / "a.png")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("Some prose.\n")
    (tmp_path / "numbers.txt").write_text("0 1 2\n2 1 0\n")
    (tmp_path / "prose.txt").write_text("It was a bright cold day in April.\n")
    (tmp_path / "c.jsonl").write_text('{"text": "hi"}\n')
    want = {str(pts): "toy2d", "swissroll": "toy2d", str(tok): "tokens", str(tmp_path / "numbers.txt"): "tokens",
            str(imgs): "images", str(tmp_path / "pngs"): "images", "fashion-mnist": "images",
            "brown": "text", str(tmp_path / "prose.txt"): "text", str(tmp_path / "c.jsonl"): "text",
            str(tmp_path / "docs"): "text"}
    for data, kind in want.items():
        t = Target.resolve(data)
        assert t.kind == kind, data
        assert Target.from_spec(t.spec()).spec() == t.spec()
    assert Target.resolve(str(tok)).label == "tok" and Target.resolve(str(tmp_path / "pngs")).label == "pngs"
    with pytest.raises(ConfigError, match="not a 2D toy"):
        Target.resolve(str(tmp_path / "missing.npy"))


def test_matched_entropy_temperature_and_mauve():
    """The temperature search lands within the tolerance where the target is reachable, says None where it
    is not, and reuses the untempered draw when that already matches; MAUVE is near 1 for one distribution
    and near 0 for two far apart."""
    from vadd.metrics.genppl import match_temperature, mauve_score
    calls = []

    def entropy_at(tau):  # increasing and saturating, like a sample's unigram entropy
        calls.append(tau)
        return 5.0 + math.tanh(tau - 1.0), f"draw at {tau}"
    for target in (5.7, 5.5, 4.5):
        calls.clear()
        tau, ent, payload = match_temperature(entropy_at, target, tol=0.001)
        assert abs(ent - target) <= 0.001 and payload == f"draw at {tau}" and abs(math.tanh(tau - 1) + 5 - target) <= 1e-3
        assert len(calls) <= 12
    assert match_temperature(entropy_at, 6.5) is None and match_temperature(entropy_at, 3.0) is None
    calls.clear()
    assert match_temperature(entropy_at, 5.0)[0] == 1.0 and calls == [1.0]
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    assert mauve_score(a, b) > 0.9 and mauve_score(a, b + 4.0) < 0.1


def _modes(path, n=3000, L=6, V=3, seed=0):
    """Rows that copy one of V global modes with 10% noise: strongly correlated positions."""
    rng = np.random.default_rng(seed)
    mode = rng.integers(0, V, n)
    x = np.where(rng.random((n, L)) < 0.1, rng.integers(0, V, (n, L)), (mode[:, None] * (1 + np.arange(L))) % V)
    np.save(path, x.astype(np.int64))


def _numbers(res):
    """Everything but wall times and the run's own stamps."""
    drop = {"wall_s", "versions", "git_commit", "hardware", "workers"}

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if k not in drop}
        return [clean(v) for v in o] if isinstance(o, list) else o
    return clean(res)


def test_compare_cli_end_to_end_and_the_same_numbers_with_any_number_of_workers(tmp_path):
    data = tmp_path / "modes.npy"
    _modes(data)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    args = ["compare", "--data", str(data), "--quick", "--seeds", "0", "1", "--steps", "1", "3",
            "--num-samples", "500", "--bound-examples", "16"]
    one = subprocess.run([VADD_BIN, *args, "--workers", "1", "--out", str(tmp_path / "a")], capture_output=True,
                         text=True, env=env, timeout=900)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([VADD_BIN, *args, "--workers", "2", "--out", str(tmp_path / "b")], capture_output=True,
                         text=True, env=env, timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert _numbers(a) == _numbers(b)   # the same command: bit for bit, whatever the workers
    assert a["statistic"] == "joint_js" and a["kind"] == "tokens" and a["seeds"] == [0, 1]
    assert set(a["per_seed"]["0"]["stats"]) == {"mdm", "mdm-matched", "vadd", "vadd-cs"}
    cm = a["compute_matching"]
    assert cm["ratio"] > 1.0 and cm["matched_steps"] == math.ceil(20 * cm["ratio"]) and cm["mdm_steps"] == 20
    assert a["per_seed"]["1"]["train"]["mdm-matched"]["steps"] == cm["matched_steps"]
    for seed in ("0", "1"):
        for m, byT in a["per_seed"][seed]["stats"].items():
            assert set(byT) == {"1", "3"} and all(0 <= r["joint_js"] <= math.log(2) for r in byT.values())
            assert np.load(tmp_path / "a" / "samples" / f"seed{seed}" / f"{m}_T3.npy").shape == (500, 6)
        assert {r["K"] for r in a["per_seed"][seed]["bounds"]["vadd"]} == {1, 4}
    # the entropy of the data bounds every valid bound from below (in expectation; a loose tiny model here)
    for recs in a["per_seed"]["0"]["bounds"].values():
        assert all(r["nats_per_example"] > 0 for r in recs)
    assert a["sentences"] == sentences(a) and len(a["sentences"]) == 2 * 2 + 2 * 2
    tables = (tmp_path / "a" / "tables.md").read_text()
    assert all(line in tables for line in a["sentences"]) and (tmp_path / "a" / "compare.png").stat().st_size > 0
    assert "seed 1: MDM-matched trained to step" in one.stdout and "compute matching:" in one.stdout
    # the same command again on the same folder: every job is read back from its record in OUT/jobs/ (a stopped
    # comparison redoes only what did not finish), the numbers unchanged; a record is what the rerun reports
    rec = tmp_path / "a" / "jobs" / "seed1-vadd-sample-vadd-cs.json"
    saved = json.loads(rec.read_text())
    saved["result"]["stats"]["3"]["joint_js"] = 0.123
    rec.write_text(json.dumps(saved))
    again = subprocess.run([VADD_BIN, *args, "--workers", "1", "--out", str(tmp_path / "a")], capture_output=True,
                           text=True, env=env, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    c = json.loads((tmp_path / "a" / "results.json").read_text())
    assert c["per_seed"]["1"]["stats"]["vadd-cs"]["3"]["joint_js"] == 0.123
    c["per_seed"]["1"]["stats"]["vadd-cs"]["3"]["joint_js"] = a["per_seed"]["1"]["stats"]["vadd-cs"]["3"]["joint_js"]
    assert {k: v for k, v in _numbers(c).items() if k not in ("summary", "sentences")} == \
        {k: v for k, v in _numbers(a).items() if k not in ("summary", "sentences")}
    assert c["per_seed"]["0"]["train"]["vadd"]["wall_s"] == a["per_seed"]["0"]["train"]["vadd"]["wall_s"]
    assert again.stdout.count("(kept from an earlier run)") == 2 * (3 + 4 + 3)


def test_compare_refuses_bad_requests_with_one_line(tmp_path):
    for args, msg in ((["--data", "nowhere.npy"], "not a 2D toy"), (["--data", "swissroll", "--seeds", "-1"], "seeds"),
                      (["--data", "swissroll", "--steps", "0"], "steps")):
        r = subprocess.run([VADD_BIN, "compare", *args, "--out", str(tmp_path / "o")], capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_compare_on_an_image_folder_scores_fid_and_pixels(tmp_path):
    """A folder of PNG files runs the image recipe end to end: FID against held-out images (here on the fixed
    random features, which exercise the path and measure nothing) as the primary statistic, the pixel-pair
    statistic beside it, sample grids saved, sentences that match the tables."""
    from PIL import Image
    folder = tmp_path / "digits"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        img = np.zeros((8, 8), dtype=np.uint8)
        img[:, rng.integers(1, 7)] = 255  # one bright column per image: positions correlated within a column
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    out = tmp_path / "cmp"
    r = subprocess.run([VADD_BIN, "compare", "--data", str(folder), "--quick", "--steps", "1", "--workers", "1",
                        "--fid-features", "random", "--no-matched-mdm", "--out", str(out)], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "images" and res["statistic"] == "fid" and res["secondary"] == ["pair_js"]
    assert "random features" in res["note"] and res["floor"]["fid"] >= 0
    for m in ("mdm", "vadd", "vadd-cs"):
        for T in ("1",):
            row = res["per_seed"]["0"]["stats"][m][T]
            assert row["fid"] >= 0 and 0 <= row["pair_js"] <= math.log(2)
            assert (out / "samples" / "seed0" / f"{m}_T{T}.png").stat().st_size > 0
            assert np.load(out / "samples" / "seed0" / f"{m}_T{T}.npy").shape == (16, 64)
    tables = (out / "tables.md").read_text()
    assert res["sentences"] == sentences(res) and all(line in tables for line in res["sentences"])
    assert "pair_js (lower is better)" in tables


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    """A one-layer GPT-2 with random weights and the real GPT-2 tokenizer (the offline asset), saved as a
    local causal-LM folder: a judge that runs in a second and exercises every path of the real one."""
    transformers = pytest.importorskip("transformers")
    import torch

    from vadd.assets import asset_path
    enc = asset_path("gpt2-tokenizer")
    vocab = json.loads((enc / "encoder.json").read_text(encoding="utf-8"))
    lines = (enc / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]
    tok = transformers.GPT2TokenizerFast(vocab=vocab, merges=[tuple(ln.split()) for ln in lines if ln.strip()])
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=256,
                                                                  vocab_size=len(tok)))
    path = tmp_path_factory.mktemp("judge")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_compare_on_a_text_corpus_scores_with_the_judge(tmp_path, tiny_judge):
    """A prose file runs the text recipe end to end with a judge: gen-PPL at the sampler's temperature, at
    matched entropy where a temperature reaches the held-out rows' entropy (else None, said in the tables),
    MAUVE on the judge's features, the entropy and the token statistic; texts saved beside the tokens."""
    pytest.importorskip("mauve")
    from vadd.compare import run_compare
    from vadd.metrics.genppl import unigram_entropy
    words = "the a cat dog sat ran on under mat tree and then quickly slowly red big".split()
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words, 30)) for _ in range(80)) + "\n")
    out = tmp_path / "cmp"
    res = run_compare(str(corpus), out=out, quick=True, steps=(1, 2), workers=1, matched_mdm=False, judge=tiny_judge,
                      overrides=["data.test_fraction=0.3"], log=lambda *a: None)
    assert res["kind"] == "text" and res["statistic"] == "gen_ppl_matched" and "judge:" in res["note"]
    assert res["floor"]["gen_ppl"] > 1 and 0 <= res["floor"]["mauve"] <= 1
    for m in ("mdm", "vadd", "vadd-cs"):
        for T in ("1", "2"):
            row = res["per_seed"]["0"]["stats"][m][T]
            assert row["gen_ppl"] > 1 and 0 <= row["mauve"] <= 1 and row["entropy"] > 0
            tokens = np.load(out / "samples" / "seed0" / f"{m}_T{T}.npy")
            assert row["entropy"] == pytest.approx(unigram_entropy(tokens))
            assert len(json.loads((out / "samples" / "seed0" / f"{m}_T{T}.json").read_text())) == len(tokens)
            if row["temperature_matched"] is None:
                assert row["gen_ppl_matched"] is None
            else:
                assert 0.25 <= row["temperature_matched"] <= 4.0 and row["gen_ppl_matched"] > 1
                assert abs(row["entropy_matched"] - res["floor"]["entropy"]) <= 0.01 or row["temperature_matched"] in (0.25, 4.0)
    tables = (out / "tables.md").read_text()
    assert res["sentences"] == sentences(res) and all(line in tables for line in res["sentences"])
    assert "MAUVE" in tables and "Unigram entropy" in tables
