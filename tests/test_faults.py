"""The fault table: bad inputs and faults through the CLI, each one line on stderr and exit status 2, with
nothing written outside the run's own folder and no earlier run altered. Then the promises the table cannot
show: a second writer is locked out, a folder holding another run is moved aside only on --overwrite, and a
programming error is a traceback (exit 1), never a one-line "user error"."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vadd import cli, runs
from vadd.config import compose
from vadd.train import train

TINY = ["model.denoiser.hidden=32", "model.denoiser.depth=1", "model.denoiser.embed_dim=8",
        "model.denoiser.cond_dim=16", "model.encoder.hidden=32", "model.encoder.depth=1",
        "model.encoder.embed_dim=8", "trainer.progress=false", "trainer.log_every=5", "trainer.warmup_steps=2",
        "data.n_train=2000", "data.n_test=100", "trainer.batch_size=64", "trainer.ckpt_every=0"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two finished runs (VADD, MDM) and a folder of bad inputs, built once."""
    w = tmp_path_factory.mktemp("faults")
    train(compose([*TINY, "algo=vadd", "trainer.max_steps=3", f"run_dir={w / 'vadd'}"]))
    train(compose([*TINY, "algo=mdm", "trainer.max_steps=2", f"run_dir={w / 'mdm'}"]))
    d = w / "in"
    d.mkdir()
    np.save(d / "oov.npy", np.array([[0, 1, 2], [3, 99, 1]]))
    np.save(d / "huge_id.npy", np.array([[0, 1, 2], [3, 10**9, 1]] * 8))
    np.save(d / "float.npy", np.array([[0.5, 1.5], [1.0, 2.0]]))
    np.save(d / "one.npy", np.array([[1, 2, 3]]))
    np.save(d / "len3.npy", np.array([[1, 2, 3], [3, 2, 1]]))
    np.save(d / "neg.npy", np.array([[1, -2], [3, 2]] * 8))
    np.save(d / "ok4.npy", np.random.default_rng(0).integers(0, 5, size=(64, 4)))
    np.save(d / "ok5.npy", np.random.default_rng(0).integers(0, 5, size=(64, 5)))
    np.save(d / "pts3d.npy", np.zeros((100, 3)))
    np.save(d / "nanpts.npy", np.full((100, 2), np.nan))
    np.save(d / "fewpts.npy", np.zeros((5, 2)))
    (d / "junk.npy").write_bytes(b"not a numpy file")
    (d / "nothing").mkdir()
    (d / "prose.txt").write_text("".join(f"Document {i} says a few words about the weather on day {i}, then more "
                                         "words follow so that rows of tokens fill up.\n" for i in range(40)))
    (d / "nothing" / "notes.bin").write_bytes(b"neither images nor text")
    (d / "junk.ckpt").write_bytes(b"not a checkpoint")
    (d / "empty.ckpt").write_bytes(b"")
    (d / "bad.jsonl").write_text('{"text": "fine"}\n{not json\n')
    (d / "afile").write_text("x")
    os.mkfifo(d / "fifo.npy")
    os.mkdir(d / "folder.npy")
    os.symlink(d / "loop", d / "loop")  # a link to itself
    # model folders that must not load: truncated, bit-flipped, NaN weights, another model's weights, bad JSON
    for name in ("trunc", "flip", "nan", "other", "badjson"):
        (w / name / "model").mkdir(parents=True)
        for f in ("config.json", "model.safetensors"):
            (w / name / "model" / f).write_bytes((w / "vadd" / "model" / f).read_bytes())
    raw = (w / "vadd" / "model" / "model.safetensors").read_bytes()
    (w / "trunc" / "model" / "model.safetensors").write_bytes(raw[: len(raw) // 3])
    flipped = bytearray(raw)
    flipped[-5] ^= 0x10  # a bit in the last tensor's data: safetensors still parses it
    (w / "flip" / "model" / "model.safetensors").write_bytes(bytes(flipped))
    state = load_file(w / "vadd" / "model" / "model.safetensors")
    state = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v) for k, v in state.items()}
    save_file(state, w / "nan" / "model" / "model.safetensors", metadata={"format": "pt"})
    (w / "other" / "model" / "model.safetensors").write_bytes((w / "mdm" / "model" / "model.safetensors").read_bytes())
    (w / "badjson" / "model" / "config.json").write_text("{not json")
    (w / "newer" / "model").mkdir(parents=True)  # a model folder written by a later release
    (w / "newer" / "model" / "model.safetensors").write_bytes((w / "vadd" / "model" / "model.safetensors").read_bytes())
    spec = json.loads((w / "vadd" / "model" / "config.json").read_text())
    (w / "newer" / "model" / "config.json").write_text(json.dumps(dict(spec, vadd_format=99)))
    # a checkpoint with a flipped bit (its checksum sidecar intact)
    train(compose([*TINY, "algo=mdm", "trainer.max_steps=2", "trainer.ckpt_every=2", f"run_dir={w / 'flipck'}"]))
    ck = bytearray((w / "flipck" / "checkpoints" / "last.ckpt").read_bytes())
    ck[len(ck) // 2] ^= 0x01
    (w / "flipck" / "checkpoints" / "last.ckpt").write_bytes(bytes(ck))
    # model folders whose config.json a newer, another or a broken writer made
    for name, change in (("extrakey", {"flux": 1}), ("speclist", None), ("negvocab", {"vocab_size": -3}),
                         ("hugelen", {"seq_len": 10**12}), ("strdim", {"latent_dim": "8"}),
                         ("hugehidden", {"denoiser": dict(spec["model"]["denoiser"], hidden=10**9)})):
        (w / name / "model").mkdir(parents=True)
        (w / name / "model" / "model.safetensors").write_bytes(raw)
        model = [1, 2] if change is None else dict(spec["model"], **change)
        (w / name / "model" / "config.json").write_text(json.dumps(dict(spec, model=model)))
    (w / "nogeom" / "model").mkdir(parents=True)  # toy data info without its grid
    (w / "nogeom" / "model" / "model.safetensors").write_bytes(raw)
    (w / "nogeom" / "model" / "config.json").write_text(json.dumps(dict(spec, data={"kind": "toy2d", "name": "swissroll"})))
    # token and point files that only look like data
    np.save(d / "f20.npy", np.array([[0.0, 1.0], [1e20, 3.0]] * 4))
    np.save(d / "u64max.npy", np.array([[0, 1], [2**64 - 1, 3]] * 4, dtype=np.uint64))
    (d / "empty.txt").write_text("")
    np.savez(d / "none.npz")
    np.savez(d / "two.npz", a=np.zeros((8, 2), dtype=np.int64), b=np.zeros((8, 2), dtype=np.int64))
    for name, shape in (("forged.npy", (10, 2)), ("forged2d.npy", (50, 2))):
        np.save(d / name, np.zeros(shape, dtype=np.int64))
        raw_npy = (d / name).read_bytes()
        (d / name).write_bytes(raw_npy.replace(f"({shape[0]}, 2)".encode(), b"(999999999999, 2)"))
    # samples drawn earlier into a folder, and sample files that no sample.json describes
    assert cli.main(["sample", str(w / "vadd"), "--steps", "1", "--num-samples", "8", "--out", str(w / "samps")]) == 0
    (w / "loose").mkdir()
    np.save(w / "loose" / "vadd_T1.npy", np.zeros((2, 2), dtype=np.int64))
    # a run folder holding a half-written (zero-byte) checkpoint
    (w / "zero" / "checkpoints").mkdir(parents=True)
    (w / "zero" / "checkpoints" / "last.ckpt").write_bytes(b"")
    return w


def cases(w: Path):
    """(id, argv, text the one line must hold). ``R`` is the case's own run folder (``{R}`` in argv)."""
    d, V, M = w / "in", str(w / "vadd"), str(w / "mdm")
    tr = ["train", *TINY, "run_dir={R}"]
    txt = ["train", "data=text", "model=dit", "trainer.max_steps=2", "trainer.progress=false", "run_dir={R}"]
    tok = ["train", "data=tokens", "trainer.max_steps=2", "trainer.batch_size=8", "trainer.progress=false",
           "run_dir={R}"]
    return [
        # configuration
        ("unknown-key", [*tr, "trainer.nope=1"], "unknown key trainer.nope"),
        ("plus-misspelt-key", [*tr, "+trainer.lrr=1"], "did you mean trainer.lr"),
        ("plus-unknown-group-key", [*tr, "+foo.bar=1"], "unknown key foo.bar"),
        ("type", [*tr, "trainer.max_steps=abc"], "max_steps"),
        ("zero-batch", [*tr, "trainer.batch_size=0"], "batch_size must be > 0"),
        ("negative-batch", [*tr, "trainer.batch_size=-4"], "batch_size must be > 0"),
        ("negative-lr", [*tr, "trainer.lr=-1"], "lr must be > 0"),
        ("zero-steps", [*tr, "trainer.max_steps=0"], "max_steps must be > 0"),
        ("ema", [*tr, "trainer.ema_decay=1.5"], "ema_decay"),
        ("grad-clip", [*tr, "trainer.grad_clip=-1"], "grad_clip"),
        ("weight-decay", [*tr, "trainer.weight_decay=-0.1"], "weight_decay"),
        ("lr-schedule", [*tr, "trainer.lr_schedule=linear"], "lr_schedule"),
        ("min-lr", [*tr, "trainer.min_lr_ratio=2"], "min_lr_ratio"),
        ("matmul", [*tr, "trainer.float32_matmul_precision=ultra"], "float32_matmul_precision"),
        ("threads", [*tr, "trainer.num_threads=-1"], "num_threads"),
        ("devices", [*tr, "trainer.devices=0"], "devices"),
        ("precision", [*tr, "trainer.precision=fp8"], "fp8"),
        ("strategy", [*tr, "trainer.strategy=nope"], "nope"),
        ("global-batch", [*tr, "trainer.global_batch_size=100"], "not a multiple"),
        ("vocab-float", [*tr, "data.vocab_size=12.5"], "vocab_size"),
        ("seed-type", [*tr, "seed=abc"], "seed"),
        ("seed-negative", [*tr, "seed=-1"], "seed must be in [0, 2^32 - 1]"),
        ("seed-huge", [*tr, f"seed={2**40}"], "seed must be in [0, 2^32 - 1]"),
        ("betas", [*tr, "trainer.betas=[2,3]"], "trainer.betas must be two numbers in [0, 1)"),
        ("betas-one", [*tr, "trainer.betas=[0.9]"], "trainer.betas must be two numbers"),
        ("algo", [*tr, "algo=vae"], "available: ar, mdm, vadd"),
        ("experiment", [*tr, "experiment=nope"], "no experiment 'nope'"),
        ("latent-dim", [*tr, "algo.latent_dim=0"], "latent_dim"),
        ("kl-warmup", [*tr, "algo.kl_warmup=-1"], "kl_warmup"),
        ("iw-k", [*tr, "algo.iw_k=0"], "iw_k"),
        ("objective", [*tr, "algo.objective=elbo"], "objective"),
        ("objective-iw", [*tr, "algo.objective=fixed_z", "algo.iw_k=4", "algo.iw_from=0.9"], "objective=fixed_z"),
        ("schedule", [*tr, "model.schedule.name=sqrt"], "unknown schedule"),
        ("estimator", [*tr, "model.estimator=exact"], "unknown ELBO estimator"),
        ("backbone", [*tr, "model.denoiser.name=resnet9000"], "unknown denoiser"),
        ("backbone-key", [*tok, "model=dit", "model.denoiser.size=null", "model.encoder.size=null", "data=tokens",
                          f"data.train={d / 'ok4.npy'}", "model.denoiser.width=30", "model.denoiser.heads=4"],
         "width 30 must split"),
        ("negative-size", [*tr, "model.denoiser.hidden=-3"], "hidden must be an integer >= 1"),
        ("unet-on-toys", [*tr, "model.denoiser.name=unet"], "needs image data"),
        ("bins", [*tr, "data.bins=1"], "data.bins must be >= 2"),
        ("tokenisation", [*tr, "data.tokens=onehot"], "data.tokens must be one of bins, binary"),
        ("toy-count", [*tr, "data.n_train=-5"], "data.n_train must be > 0"),
        ("data-kind", [*tr, "data.kind=graph"], "data.kind must be one of"),
        ("image-levels", [*tr, "data=images", "data.levels=300"], "data.levels must be <= 256"),
        ("image-name", [*tr, "data=images", "data.name=svhn"], "data.name must be one of"),
        ("text-tokenizer", [*txt, "data.tokenizer=llama"], "data.tokenizer must be one of"),
        ("text-convention", [*txt, "data.convention=stack"], "data.convention must be one of pack, pad"),
        ("tokens-fraction", [*tok, f"data.train={d / 'ok4.npy'}", "data.test_fraction=1"], "data.test_fraction must be < 1"),
        # data
        ("toy-name", [*tr, "data.name=moons"], "moons"),
        ("toy-3d", [*tr, f"data.name={d / 'pts3d.npy'}"], "shape (N, 2)"),
        ("toy-nan", [*tr, f"data.name={d / 'nanpts.npy'}"], "finite"),
        ("toy-few", [*tr, f"data.name={d / 'fewpts.npy'}"], "too few points"),
        ("tokens-none", [*tr, "data=tokens"], "data.train"),
        ("tokens-missing", [*tok, f"data.train={d / 'missing.npy'}"], "no such data file"),
        ("tokens-fifo", [*tok, f"data.train={d / 'fifo.npy'}"], "not a regular file"),
        ("tokens-folder", [*tok, f"data.train={d / 'folder.npy'}"], "not a regular file"),
        ("tokens-oov", [*tok, f"data.train={d / 'oov.npy'}", "data.vocab_size=10"], "outside the vocabulary"),
        ("tokens-huge-id", [*tok, f"data.train={d / 'huge_id.npy'}"], "implies a vocabulary"),
        ("tokens-negative", [*tok, f"data.train={d / 'neg.npy'}"], "negative token id"),
        ("tokens-float", [*tok, f"data.train={d / 'float.npy'}"], "must be integers"),
        ("tokens-one-row", [*tok, f"data.train={d / 'one.npy'}"], "too little data"),
        ("tokens-junk", [*tok, f"data.train={d / 'junk.npy'}"], "junk.npy"),
        ("tokens-test-length", [*tok, f"data.train={d / 'ok4.npy'}", f"data.test={d / 'ok5.npy'}"],
         "differs from train"),
        ("text-jsonl", ["train", "data=text", "model=dit", "run_dir={R}", "data.corpus=user", f"data.path={d / 'bad.jsonl'}"], "is not JSON"),
        ("text-corpus-file", ["train", "data=text", "model=dit", "run_dir={R}", f"data.path={d / 'bad.jsonl'}"],
         "use data.corpus=user"),
        ("images-no-path", ["train", "run_dir={R}", "data=images", "data.name=cifar10", "model=unet"], "data.path"),
        # checkpoints and run folders
        ("resume-missing", [*tr, f"resume={d / 'none.ckpt'}"], "no such checkpoint"),
        ("resume-junk", [*tr, f"resume={d / 'junk.ckpt'}"], "not a readable vadd training checkpoint"),
        ("zero-byte-last-ckpt", ["train", *TINY, f"run_dir={w / 'zero'}"], "not a readable vadd training checkpoint"),
        ("ckpt-bitflip", ["train", *TINY, "algo=mdm", "trainer.max_steps=2", "trainer.ckpt_every=2",
                          f"run_dir={w / 'flipck'}"], "does not match its checksum"),
        ("run-dir-is-file", ["train", *TINY, f"run_dir={d / 'afile'}"], "run_dir is a file"),
        ("another-seed", ["train", *TINY, "algo=vadd", "trainer.max_steps=3", "seed=7", f"run_dir={V}"],
         "holds another run"),
        ("another-algo", ["train", *TINY, "algo=mdm", "trainer.max_steps=3", f"run_dir={V}"], "holds another run"),
        ("auto-resume-off", ["train", *TINY, "algo=vadd", "trainer.max_steps=3", "trainer.auto_resume=false",
                             f"run_dir={V}"], "holds another run"),
        ("nan-loss", [*tr, "trainer.max_steps=30", "trainer.lr=1e30", "trainer.warmup_steps=0"],
         "non-finite training loss"),
        # sample / eval
        ("sample-steps", ["sample", V, "--steps", "0", "--out", "{R}"], "sampling steps"),
        ("sample-count", ["sample", V, "--num-samples", "0", "--out", "{R}"], "num_samples >= 1"),
        ("sample-memory", ["sample", V, "--num-samples", str(10**13), "--out", "{R}"], "more than half"),
        ("sample-sampler", ["sample", M, "--sampler", "vadd", "--out", "{R}"], "needs a model with a latent"),
        ("sample-grid", ["sample", V, "--grid", "spiral"], "invalid choice"),
        ("sample-temperature", ["sample", V, "--temperature", "0", "--out", "{R}"], "temperature must be a number"),
        ("sample-temperature-nan", ["sample", V, "--temperature", "nan", "--out", "{R}"], "temperature must be a number"),
        ("sample-nowhere", ["sample", str(w / "nowhere")], "not a saved vadd model"),
        ("sample-out-file", ["sample", V, "--out", str(d / "afile")], "is a file"),
        ("load-truncated", ["sample", str(w / "trunc"), "--out", "{R}"], "truncated"),
        ("load-bitflip", ["sample", str(w / "flip"), "--out", "{R}"], "checksum"),
        ("load-nan", ["sample", str(w / "nan"), "--out", "{R}"], "NaN"),
        ("load-other", ["sample", str(w / "other"), "--out", "{R}"], "another model"),
        ("load-badjson", ["sample", str(w / "badjson"), "--out", "{R}"], "not valid JSON"),
        ("eval-k0", ["eval", V, "-K", "0"], "K (importance samples)"),
        ("eval-k-huge", ["eval", V, "-K", str(10**9)], "beyond what this evaluation supports"),
        ("eval-k-type", ["eval", V, "-K", "abc"], "invalid int value"),
        ("eval-num-t0", ["eval", V, "--num-t", "0"], "Monte-Carlo draws"),
        ("eval-num-t-neg", ["eval", V, "--num-t", "-2"], "Monte-Carlo draws"),
        ("eval-steps0", ["eval", V, "--steps", "0"], "sampling steps"),
        ("eval-oov", ["eval", V, "--data", str(d / "oov.npy")], "outside the vocabulary"),
        ("eval-length", ["eval", V, "--data", str(d / "len3.npy")], "sequence length"),
        ("eval-missing", ["eval", V, "--data", str(d / "missing.npy")], "no such data file"),
        ("eval-fifo", ["eval", V, "--data", str(d / "fifo.npy")], "not a regular file"),
        ("eval-out-dir", ["eval", V, "--out", str(d)], "is a directory"),
        ("eval-out-under-file", ["eval", V, "--out", str(d / "afile" / "x.json")], "cannot write there"),
        ("eval-latent-gap-mdm", ["eval", M, "--latent-gap"], "needs a VADD model"),
        ("eval-cs-mdm", ["eval", M, "--sampler", "vadd-cs"], "needs a VADD model"),
        ("eval-sampler-name", ["eval", V, "--sampler", "mdm"], "needs an MDM model"),
        ("demo-data", ["demo", "--data", "spirals", "--out", "{R}"], "spirals"),
        ("demo-workers", ["demo", "--workers", "-2", "--out", "{R}"], "argument --workers: must be an integer >= 1"),
        ("demo-num-samples", ["demo", "--num-samples", "0", "--out", "{R}"], "argument --num-samples: must be an integer >= 1"),
        ("sample-seed-huge", ["sample", V, "--seed", "1" * 25, "--out", "{R}"], "a seed must be in [0, 2^32 - 1]"),
        ("sample-seed-negative", ["sample", V, "--seed", "-3", "--out", "{R}"], "must be an integer >= 0"),
        ("eval-max-examples", ["eval", V, "--max-examples", "-5"], "argument --max-examples: must be an integer >= 1"),
        ("fit-prior-components", ["fit-prior", V, "--components", "0", "--out", "{R}"], "must be an integer >= 1"),
        ("load-newer-format", ["sample", str(w / "newer"), "--out", "{R}"], "model format 99, written by a newer vadd"),
        ("compare-data", ["compare", "--data", str(d / "missing.npy"), "--out", "{R}"], "not a 2D toy"),
        ("compare-junk", ["compare", "--data", str(d / "junk.npy"), "--out", "{R}"], "not a readable .npy array"),
        ("compare-judge", ["compare", "--data", str(d / "prose.txt"), "--judge", str(d / "no-judge"), "--out", "{R}"],
         "choose auto, smollm2, none or a local causal-LM folder"),
        ("compare-judge-folder", ["compare", "--data", str(d / "prose.txt"), "--judge", str(d / "nothing"), "--quick",
                                  "--out", "{R}"], "not a causal LM folder"),
        ("compare-folder", ["compare", "--data", str(d / "nothing"), "--out", "{R}"], "found neither"),
        ("compare-seeds", ["compare", "--data", "swissroll", "--seeds", "-1", "--out", "{R}"], "must be an integer >= 0"),
        ("compare-steps", ["compare", "--data", "swissroll", "--steps", "0", "--out", "{R}"], "--steps must be positive"),
        ("compare-workers", ["compare", "--data", "swissroll", "--workers", "0", "--out", "{R}"], "must be an integer >= 1"),
        ("bench-images-experiment", ["bench-images", "--experiment", "nope", "--out", "{R}"], "no experiment"),
        ("bench-text-experiment", ["bench-text", "--experiment", "nope", "--out", "{R}"], "no experiment"),
        ("unknown-flag", ["train", "--bogus"], "unrecognized arguments"),
        # checked before the first step: a failed start leaves no run behind
        ("batch-over-data", [*tr, "trainer.batch_size=5000"], "fewer than one global batch"),
        ("gmm-too-few-rows", [*tr, "algo.prior=gmm", "algo.prior_components=1500"], "needs at least 3000"),
        ("run-dir-link-loop", ["train", *TINY, f"run_dir={d / 'loop'}"], "a symbolic link to nothing"),
        # the memory budget: user-sized requests refused before they are allocated
        ("sample-steps-huge", ["sample", V, "--steps", str(10**12), "--out", "{R}"], "lower --steps"),
        ("eval-steps-huge", ["eval", V, "--steps", str(10**12)], "lower --steps"),
        ("latent-huge", [*tr, f"algo.latent_dim={10**9}"], "lower algo.latent_dim"),
        ("compare-num-samples-huge", ["compare", "--data", "swissroll", "--num-samples", str(10**12), "--out", "{R}"],
         "lower --num-samples"),
        ("compare-steps-huge", ["compare", "--data", "swissroll", "--steps", str(10**12), "--out", "{R}"], "lower --steps"),
        ("demo-num-samples-huge", ["demo", "--num-samples", str(10**12), "--out", "{R}"], "lower --num-samples"),
        ("eval-num-t-huge", ["eval", V, "--num-t", str(10**9)], "(--num-t) is beyond what this evaluation supports"),
        ("load-huge-seq-len", ["sample", str(w / "hugelen"), "--out", "{R}"], "lower the sequence length"),
        ("load-huge-hidden", ["sample", str(w / "hugehidden"), "--out", "{R}"], "lower the model's sizes"),
        ("hidden-huge", [*tr, f"model.denoiser.hidden={10**9}"], "lower the model's sizes"),
        ("tokens-forged-header", [*tok, f"data.train={d / 'forged.npy'}"], "the header describes an array"),
        ("toy-forged-header", [*tr, f"data.name={d / 'forged2d.npy'}"], "the header describes an array"),
        ("compare-forged-header", ["compare", "--data", str(d / "forged.npy"), "--out", "{R}"], "header describes"),
        # files that only look like data
        ("tokens-empty-txt", [*tok, f"data.train={d / 'empty.txt'}"], "holds no tokens"),
        ("tokens-npz-empty", [*tok, f"data.train={d / 'none.npz'}"], "holds no arrays"),
        ("tokens-npz-two", [*tok, f"data.train={d / 'two.npz'}"], "holds 2 arrays (a, b)"),
        ("tokens-float-1e20", [*tok, f"data.train={d / 'f20.npy'}"], "token id 1e+20 is beyond any vocabulary"),
        ("tokens-uint64-max", [*tok, f"data.train={d / 'u64max.npy'}"], "18446744073709551615 is beyond any"),
        ("eval-empty-txt", ["eval", V, "--data", str(d / "empty.txt")], "holds no tokens"),
        # model folders from another writer
        ("load-unknown-spec-key", ["sample", str(w / "extrakey"), "--out", "{R}"], "unknown keys flux"),
        ("load-spec-list", ["sample", str(w / "speclist"), "--out", "{R}"], "must be a mapping, got list"),
        ("load-negative-vocab", ["sample", str(w / "negvocab"), "--out", "{R}"], "vocab_size must be an integer >= 2"),
        ("load-string-latent", ["sample", str(w / "strdim"), "--out", "{R}"], "latent_dim must be an integer"),
        ("load-no-geometry", ["sample", str(w / "nogeom"), "--out", "{R}"], "cannot rebuild how samples are decoded"),
        ("eval-no-geometry", ["eval", str(w / "nogeom")], "cannot rebuild how samples are decoded"),
        # outputs are owned: never into another run, never over other outputs
        ("sample-into-other-run", ["sample", V, "--out", str(w / "mdm" / "samples")], "inside the run folder"),
        ("sample-other-settings", ["sample", V, "--steps", "1", "--num-samples", "9", "--out", str(w / "samps")],
         "holds samples drawn with other settings (num_samples)"),
        ("sample-loose-files", ["sample", V, "--steps", "1", "--out", str(w / "loose")], "that no sample.json describes"),
        ("fit-prior-into-other-run", ["fit-prior", V, "--out", str(w / "mdm" / "model")], "inside the run folder"),
        ("fit-prior-other-run-root", ["fit-prior", V, "--out", M], "inside the run folder"),
        ("fit-prior-not-empty", ["fit-prior", V, "--out", str(w / "samps")], "is not empty"),
        ("fit-prior-own-model", ["fit-prior", V, "--out", str(w / "vadd" / "model")], "the run's own model"),
        ("eval-out-into-other-run", ["eval", V, "--out", str(w / "mdm" / "eval.json")], "inside the run folder"),
        ("fit-prior-mdm", ["fit-prior", M, "--out", "{R}"], "needs a VADD model"),
        ("fit-prior-not-a-run", ["fit-prior", str(w / "trunc"), "--out", "{R}"], "is not a run folder"),
        ("eval-npz-two", ["eval", V, "--data", str(d / "two.npz")], "holds 2 arrays"),
        ("eval-float-1e20", ["eval", V, "--data", str(d / "f20.npy")], "is beyond any vocabulary"),
    ]


def _tree(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            p = Path(dirpath) / f
            if p.is_symlink() or p.is_fifo() or p.name == runs.LOCK:  # the lock file holds the pid of its last holder, no run data
                continue
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        for dn in dirnames:
            out[str(Path(dirpath) / dn) + "/"] = ""
    return out


def test_fault_table(world, tmp_path, monkeypatch, capsys):
    """Every case: exit 2, one line naming the problem, and the world unchanged outside the case's run folder."""
    monkeypatch.chdir(tmp_path)  # default outputs (runs/train, samples/) would land here, and be caught
    table = cases(world)
    assert len(table) >= 140 and len({c[0] for c in table}) == len(table)
    failures = []
    for name, argv, needle in table:
        own = world / "cases" / name
        argv = [a.replace("{R}", str(own)) for a in argv]
        before_w, before_cwd = _tree(world), _tree(tmp_path)
        try:
            code = cli.main(argv)
        except SystemExit as e:  # argparse
            code = e.code
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        after_w = _tree(world)
        changed = {p for p in set(before_w) | set(after_w)  # (cases/ itself: the parent of every case's folder)
                   if not p.startswith(str(own)) and p != f"{world / 'cases'}/" and before_w.get(p) != after_w.get(p)}
        changed |= set(_tree(tmp_path)) ^ set(before_cwd)
        if code != 2 or len(lines) != 1 or "Traceback" in err or needle not in (lines or [""])[0] or changed:
            failures.append((name, code, lines[-3:], sorted(changed)[:3]))
    assert not failures, "\n".join(map(str, failures))


def test_a_second_writer_is_locked_out(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with runs.lock(run):  # another process holds the run (flock is per open file, so this process counts)
        code = cli.main(["train", *TINY, "trainer.max_steps=2", f"run_dir={run}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"is in use by another vadd process (pid {os.getpid()})" in err[0]
    assert not (run / "run.json").exists() and not (run / "checkpoints").exists()


def test_overwrite_moves_the_old_run_aside_and_never_deletes_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "algo=mdm", "trainer.max_steps=2", f"run_dir={run}"]) == 0
    old = (run / "model" / "model.safetensors").read_bytes()
    assert cli.main(["train", *TINY, "algo=vadd", "trainer.max_steps=2", f"run_dir={run}"]) == 2
    assert (run / "model" / "model.safetensors").read_bytes() == old
    capsys.readouterr()
    assert cli.main(["train", *TINY, "algo=vadd", "trainer.max_steps=2", f"run_dir={run}", "--overwrite"]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and (aside[0] / "model" / "model.safetensors").read_bytes() == old
    assert json.loads((run / "run.json").read_text())["identity"]["algo"]["name"] == "vadd"
    assert "moved the earlier run to" in capsys.readouterr().err


def test_resuming_with_a_changed_setting_warns_per_key(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "algo=mdm", "trainer.max_steps=2", f"run_dir={run}"]) == 0
    capsys.readouterr()
    assert cli.main(["train", *TINY, "algo=mdm", "trainer.max_steps=3", "trainer.lr=0.003", f"run_dir={run}"]) == 0
    err = capsys.readouterr().err
    assert "changed trainer.max_steps: 2 -> 3" in err and "changed trainer.lr: 0.002 -> 0.003" in err


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert cli.main(["train", *TINY, "algo=mdm", "trainer.max_steps=2", "trainer.ckpt_every=1",
                         f"run_dir={tmp_path / 'run'}"]) == 0
    finally:
        os.umask(old)
    for f in ("model/model.safetensors", "model/config.json", "manifest.json", "run.json", "checkpoints/last.ckpt"):
        assert (tmp_path / "run" / f).stat().st_mode & 0o777 == 0o644, f


def test_a_programming_error_is_a_traceback_with_status_1(tmp_path):
    """A bug inside training (here a ZeroDivisionError in the loss) is not dressed up as a user error."""
    code = ("import sys\nimport vadd.algorithms as a\n"
            "def boom(self, *args, **kw):\n    return 1 / 0\n"
            "a.MaskedDiffusion.loss = boom\nfrom vadd import cli\n"
            f"sys.exit(cli.main(['train', *{TINY!r}, 'algo=mdm', 'trainer.max_steps=2', 'run_dir={tmp_path / 'r'}']))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert p.returncode == 1, p.stderr[-2000:]
    assert "Traceback" in p.stderr and "ZeroDivisionError" in p.stderr


def test_the_python_api_checks_what_the_cli_checks(world):
    """The API twins of CLI cases: a bad K is an error (it was K = 1 in silence), a newer model format refuses."""
    import vadd
    from vadd.errors import CheckpointError, ConfigError
    x = np.random.default_rng(0).integers(0, 64, size=(4, 2))
    for run in ("vadd", "mdm"):
        pipe = vadd.load(world / run)
        for k in (0, -2):
            with pytest.raises(ConfigError, match="K \\(importance samples\\) must be integers >= 1"):
                pipe.nll_bound(x, num_samples=k)
        assert pipe.nll_bound(x, num_samples=2).shape == (4,)
    with pytest.raises(CheckpointError, match="model format 99, written by a newer vadd; this one reads format 1"):
        vadd.load(world / "newer")


def test_the_python_api_refuses_what_it_used_to_truncate(world):
    """Float tokens are not cut to integers, an infill mask must match the tokens, decode checks its ids."""
    import vadd
    from vadd.errors import CheckpointError, DataError
    pipe = vadd.load(world / "vadd")
    x = np.random.default_rng(0).integers(0, 64, size=(4, 2))
    for bad, needle in ((x + 0.5, "whole numbers"), (np.full((4, 2), np.nan), "whole numbers"),
                        (np.full((4, 2), 1e20), "1e\\+20 is beyond any vocabulary")):
        with pytest.raises(DataError, match=needle):
            pipe.nll_bound(bad)
        with pytest.raises(DataError, match=needle):
            pipe.sample(x_init=bad, steps=2)
    assert np.array_equal(pipe.nll_bound(x.astype(np.float64)), pipe.nll_bound(x))  # whole floats are fine
    with pytest.raises(DataError, match="given_mask must be booleans of the tokens' shape \\(4, 2\\)"):
        pipe.infill(x, np.ones(4, dtype=bool))
    with pytest.raises(DataError, match="given_mask must be booleans"):
        pipe.infill(x, np.full((4, 2), 0.5))
    with pytest.raises(DataError, match="outside the vocabulary"):
        pipe.decode(np.array([[0, 10**6]]))
    assert pipe.decode(x).shape == (4, 2)
    out = pipe.infill(x, np.array([[True, False]] * 4), steps=2)
    assert np.array_equal(out[:, 0], x[:, 0])
    for name, needle in (("extrakey", "unknown keys flux"), ("hugelen", "lower the sequence length"),
                         ("nogeom", "cannot rebuild how samples are decoded")):
        with pytest.raises(CheckpointError, match=needle):
            vadd.load(world / name)


def test_a_failed_start_leaves_the_folder_free_for_the_fixed_config(tmp_path, monkeypatch):
    """The run is claimed with its first step: a start that fails before it blocks no retry."""
    from vadd import lit
    from vadd.errors import DataError, RunError
    run = tmp_path / "run"

    def broken(self, batch, batch_idx):
        raise DataError("a bad batch")

    with monkeypatch.context() as m:
        m.setattr(lit.LitDiffusion, "training_step", broken)
        with pytest.raises(DataError, match="a bad batch"):
            train(compose([*TINY, "algo=mdm", "trainer.max_steps=2", "seed=3", f"run_dir={run}"]))
    assert run.is_dir() and not runs.holds_run(run)
    # the fixed config (another seed: another identity) trains into the same folder, no --overwrite
    train(compose([*TINY, "algo=mdm", "trainer.max_steps=2", "seed=4", f"run_dir={run}"]))
    assert json.loads((run / "run.json").read_text())["identity"]["seed"] == 4
    # once a step has trained, the folder is that run's
    with pytest.raises(RunError, match="holds another run"):
        train(compose([*TINY, "algo=mdm", "trainer.max_steps=2", "seed=5", f"run_dir={run}"]))


def test_a_prior_fit_that_fails_after_training_keeps_the_model(tmp_path, monkeypatch):
    from vadd import train as train_mod
    from vadd.errors import ConfigError, RunError

    def failing(*a, **k):
        raise ConfigError("EM diverged")

    monkeypatch.setattr(train_mod, "fit_mixture_prior", failing)
    run = tmp_path / "run"
    with pytest.raises(RunError, match=f"fit it with: vadd fit-prior {run} --out {run / 'model-gmm'}"):
        train(compose([*TINY, "algo=vadd", "algo.prior=gmm", "algo.prior_components=2", "trainer.max_steps=2",
                       f"run_dir={run}"]))
    manifest = json.loads((run / "manifest.json").read_text())
    assert "EM diverged" in manifest["metrics"]["prior_fit_failed"] and manifest["metrics"]["steps"] == 2
    import vadd
    assert vadd.load(run).model.spec.get("prior") is None  # saved with N(0, I): it loads and samples


def test_checkpoint_cleanup_deletes_only_its_own_temporary_files(tmp_path):
    store = tmp_path / "store"  # a user's folder, linked in as the run's checkpoints
    store.mkdir()
    (store / ".notes.tmp").write_text("mine")
    (store / ".last.ckpt.vadd-tmp-abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "run").mkdir()
    os.symlink(store, tmp_path / "run" / "checkpoints")
    assert cli.main(["train", *TINY, "algo=mdm", "trainer.max_steps=2", f"run_dir={tmp_path / 'run'}"]) == 0
    assert (store / ".notes.tmp").read_text() == "mine"
    assert not (store / ".last.ckpt.vadd-tmp-abc123.tmp").exists() and (store / "last.ckpt").is_file()


def test_sample_outputs_are_owned_and_an_interrupted_sampling_resumes(world, tmp_path, monkeypatch, capsys):
    from vadd.api import Pipeline
    V = str(world / "vadd")
    args = ["sample", V, "--steps", "1", "2", "--num-samples", "16", "--sampler", "vadd"]
    # a second writer into the same --out stops with one line
    out = tmp_path / "locked"
    out.mkdir()
    with runs.lock(out):
        assert cli.main([*args, "--out", str(out)]) == 2
    assert "in use by another vadd process" in capsys.readouterr().err and not list(out.glob("*.npy"))
    # stopped between writing the T = 2 files and their record: only what sample.json describes stays
    ref, part = tmp_path / "ref", tmp_path / "part"
    assert cli.main([*args, "--out", str(ref)]) == 0
    real = Pipeline.save_samples

    def interrupted(self, tokens, folder, stem):
        paths = real(self, tokens, folder, stem)
        if stem.endswith(stop_at):
            raise KeyboardInterrupt
        return paths

    stop_at = "T1"  # the first T: no record yet, the folder is left empty
    with monkeypatch.context() as m:
        m.setattr(Pipeline, "save_samples", interrupted)
        assert cli.main([*args, "--out", str(part)]) == 130
    assert not [p for p in part.iterdir() if not p.name.startswith(".")]
    stop_at = "T2"
    with monkeypatch.context() as m:
        m.setattr(Pipeline, "save_samples", interrupted)
        assert cli.main([*args, "--out", str(part)]) == 130
    assert "the (sampler, T) files in sample.json are kept" in capsys.readouterr().err
    record = json.loads((part / "sample.json").read_text())
    described = {f for r in record["runs"] for f in r["files"]}
    assert described == {"vadd_T1.npy", "vadd_T1_decoded.npy"}
    assert {p.name for p in part.iterdir() if not p.name.startswith(".")} == described | {"sample.json"}
    # the rerun keeps T = 1 and draws T = 2: the same files as one uninterrupted sampling
    assert cli.main([*args, "--out", str(part)]) == 0
    assert "resuming" in capsys.readouterr().out
    for f in ("vadd_T1.npy", "vadd_T2.npy", "vadd_T2_decoded.npy"):
        assert np.array_equal(np.load(part / f), np.load(ref / f)), f
    assert [r["steps"] for r in json.loads((part / "sample.json").read_text())["runs"]] == [1, 2]
    # other settings are refused; --overwrite replaces exactly the files the old record describes
    (part / "notes.md").write_text("kept")
    assert cli.main([*args[:-4], "--num-samples", "4", "--sampler", "vadd", "--out", str(part)]) == 2
    assert cli.main([*args[:-4], "--num-samples", "4", "--sampler", "vadd", "--out", str(part), "--overwrite"]) == 0
    assert np.load(part / "vadd_T1.npy").shape[0] == 4 and (part / "notes.md").read_text() == "kept"


def test_eval_of_a_token_file_run_rebuilds_its_held_out_split(tmp_path, capsys):
    """`vadd eval RUN` on a run trained from a token file: the run's own test split (it used to ask for --data)."""
    from vadd.data import build_data
    data = tmp_path / "tok.npy"
    np.save(data, np.random.default_rng(0).integers(0, 5, size=(300, 6)))
    run = tmp_path / "run"
    assert cli.main(["train", "data=tokens", f"data.train={data}", "trainer.max_steps=2", "trainer.batch_size=8",
                     "trainer.progress=false", *TINY[:7], f"run_dir={run}"]) == 0
    assert cli.main(["eval", str(run / "model"), "-K", "1", "--out", str(tmp_path / "e.json")]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    assert res["num_examples"] == len(build_data(manifest["config"]["data"], seed=manifest["seed"]).test) == 30


def test_overwrite_never_moves_the_folder_the_command_runs_in(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "algo=mdm", "trainer.max_steps=2", f"run_dir={run}"]) == 0
    monkeypatch.chdir(run)
    capsys.readouterr()
    assert cli.main(["train", *TINY, "algo=vadd", "trainer.max_steps=2", "run_dir=.", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would move the folder this command runs in" in err[0]
    assert json.loads((run / "run.json").read_text())["identity"]["algo"]["name"] == "mdm"
