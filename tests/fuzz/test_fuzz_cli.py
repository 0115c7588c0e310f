"""Fuzzing the command line (issue 25 (6)): random argv from the commands' own flags, hostile values (empty,
non-finite, huge, negative, non-UTF-8-ish text) and hostile files (random bytes, a folder, a YAML list, a checkpoint
that runs code). Every run ends with exit code 0 or 2; a 2 is one line on stderr; never a traceback. Training and
studies are replaced by a stub that receives the resolved config (the part that reads hostile input); reading
checkpoints, configs and data runs for real. Run longer with HYPOTHESIS_PROFILE=long."""
import contextlib
import io
import os

import pytest
import torch

from fuzzkit import TRICKY_TEXT, MemoryBound, hypothesis, st
from armvision.cli import main

given = hypothesis.given
COMMANDS = ["pretrain", "finetune", "eval", "export", "convert", "probe", "visualize", "plot"]
FLAGS = {  # flags of each command that the strategies know values for (others get random values too)
    "pretrain": ["--config", "--output", "--data", "--resume", "--embed-dim", "--depth", "--img-size", "--patch-size",
                 "--cluster-size", "--method", "--lr", "--batch-size", "--epochs", "--model", "--mean", "--betas",
                 "--max-image-pixels", "--device", "--overwrite", "--no-tensorboard", "--temperature"],
    "finetune": ["--config", "--output", "--init", "--num-classes", "--label-fraction", "--img-size", "--ema-decay",
                 "--auto-augment", "--drop-path", "--model", "--data"],
    "eval": ["--checkpoint", "--data", "--img-size", "--batch-size", "--num-classes", "--model", "--output-json",
             "--dataset", "--crop-pct", "--ema"],
    "export": ["--img-size", "--batch", "--opset", "--format", "--features", "--tolerance"],
    "convert": ["--kind", "--num-classes", "--img-size", "--global-pool", "--ema"],
    "probe": ["--checkpoint", "--data", "--knn-k", "--lr", "--epochs", "--output-json"],
    "visualize": ["--checkpoint", "--output", "--num-images", "--model", "--images"],
    "plot": ["--out", "--smooth"],
}
HOSTILE = ("random.pth", "list.yaml", "bad.yaml", "empty.json", "folder", "saved", "cfg.pth", "missing.pth")
NUMBERS = ["0", "-1", "1", "3", "16", "1e9", "nan", "inf", "-inf", "0.5", "2", "99999999999999999999", "1e-30"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Hostile files the argv can name: FILE -> path."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "random.pth").write_bytes(os.urandom(512))
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "bad.yaml").write_bytes(b"\xff\xfeepochs: [1\n")
    (root / "empty.json").write_text("")
    (root / "folder").mkdir()
    (root / "saved").mkdir()
    (root / "saved" / "config.json").write_text('{"model_config": {"kind": "classifier", "depth": 10000000}}')
    (root / "saved" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    torch.save({"model": {"w": torch.ones(1)}, "model_config": {"kind": "mae", "embed_dim": -5}}, root / "cfg.pth")
    return root


def values(root):
    paths = [str(root / n) for n in HOSTILE]
    return st.one_of(st.sampled_from(NUMBERS), st.sampled_from(TRICKY_TEXT), st.sampled_from(paths),
                     st.text(max_size=8))


NEEDS = {  # what each command is always given, so that the random options meet the code that reads files
    "pretrain": lambda f: ["--config", f], "finetune": lambda f: ["--init", f], "eval": lambda f: ["--checkpoint", f],
    "probe": lambda f: ["--checkpoint", f], "visualize": lambda f: ["--checkpoint", f], "export": lambda f: [f, "o.pt2"],
    "convert": lambda f: [f, "converted"], "plot": lambda f: [f],
}


def argvs(root):
    def for_command(cmd):
        flag = st.one_of(st.sampled_from(FLAGS[cmd]), st.sampled_from(["--help", "--bogus", "-q", "-v"]))
        option = st.tuples(flag, st.lists(values(root), max_size=2)).map(lambda fv: [fv[0], *fv[1]])
        needed = st.sampled_from(HOSTILE).map(lambda name: NEEDS[cmd](str(root / name)))
        return st.tuples(needed, st.lists(option, max_size=4)).map(
            lambda no: [cmd, *no[0], *[tok for opt in no[1] for tok in opt]])
    return st.sampled_from(COMMANDS).flatmap(for_command)


@pytest.fixture
def no_training(monkeypatch):
    """Training commands resolve and check their config, then a stub stands for the (long) training run."""
    from armvision.train import distributed

    seen = []
    monkeypatch.setattr(distributed, "run_distributed", lambda train, cfg: seen.append(cfg))
    return seen


def test_random_argv_ends_in_exit_0_or_one_line_exit_2(files, no_training, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))

    @given(argvs(files))
    def run(argv):
        out, err = io.StringIO(), io.StringIO()
        with MemoryBound(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:  # argparse: --help (0) and usage errors (2)
                rc = e.code
        text = err.getvalue()
        assert "Traceback" not in text, (argv, text)
        assert rc in (0, 2), (argv, rc, text[-2000:])
        if rc == 2:
            lines = [line for line in text.splitlines() if line.strip()]
            assert len(lines) == 1, (argv, text)

    run()
    assert not (files / "ran").exists()
