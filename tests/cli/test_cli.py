"""The command line: every bad argument of every command is one line on stderr with exit code 2, no traceback,
nothing written (issue 13 (3)); `armvision` alone prints help and exits 2, every flag has help text, and
--quiet / --verbose work through logging (issue 11 (5))."""
import importlib
import logging
import os
import subprocess
import sys

import pytest

from armvision.cli import COMMANDS, Parser, add_verbosity, main

TINY = ["--model", "tiny", "--embed-dim", "16", "--depth", "2", "--decoder-embed-dim", "16", "--decoder-depth",
        "2", "--img-size", "16", "--patch-size", "8", "--cluster-size", "1", "--num-workers", "0", "--no-progress",
        "--no-tensorboard", "--max-steps", "1", "--batch-size", "16"]
FT = ["--model", "tiny", "--embed-dim", "16", "--depth", "2", "--img-size", "16", "--patch-size", "8",
      "--num-workers", "0", "--no-progress", "--no-tensorboard", "--max-steps", "1", "--batch-size", "16"]

# (command line, text the one line must contain). FILE is an existing file, OUT a fresh path in the test folder.
BAD = [
    (["pretrain", *TINY, "--lr", "nan"], "--lr nan"),
    (["pretrain", *TINY, "--lr", "-1"], "--lr -1"),
    (["pretrain", *TINY, "--lr", "inf"], "--lr inf"),
    (["pretrain", *TINY, "--blr", "nan"], "--blr nan"),
    (["pretrain", *TINY, "--batch-size", "0"], "--batch-size 0"),
    (["pretrain", *TINY, "--batch-size", "-4"], "--batch-size -4"),
    (["pretrain", *TINY, "--batch-size", "two"], "--batch-size two"),
    (["pretrain", *TINY, "--accum-iter", "0"], "--accum-iter 0"),
    (["pretrain", *TINY, "--num-workers", "-1"], "--num-workers -1"),
    (["pretrain", *TINY, "--decoder-depth", "0"], "--decoder-depth 0"),
    (["pretrain", *TINY, "--mean", "0.5", "0.5"], "--mean 0.5 0.5"),
    (["pretrain", *TINY, "--std", "0", "0", "0"], "--std 0 0 0"),
    (["pretrain", *TINY, "--min-scale", "2"], "--min-scale 2"),
    (["pretrain", *TINY, "--device", "tpu"], "--device tpu"),
    (["pretrain", *TINY, "--epochs", "0"], "--epochs 0"),
    (["pretrain", *TINY, "--patch-size", "0"], "--patch-size 0"),
    (["pretrain", *TINY, "--img-size", "20"], "20"),  # not a multiple of the patch size
    (["pretrain", *TINY, "--ordering", "diagonal"], "--ordering"),
    (["pretrain", *TINY, "--betas", "0.9"], "--betas 0.9"),
    (["pretrain", *TINY, "--max-bad-steps", "-1"], "--max-bad-steps -1"),
    (["pretrain", *TINY, "--dist-timeout", "0"], "--dist-timeout 0"),
    (["pretrain", *TINY, "--max-image-pixels", "0"], "--max-image-pixels 0"),
    (["pretrain", *TINY, "--clip-grad", "-3"], "--clip-grad -3"),
    (["pretrain", *TINY, "--no-such-flag"], "--no-such-flag"),
    (["pretrain", *TINY, "--config", "YAML_BOOL"], "epochs=True"),  # `epochs: true` used to mean 1
    (["pretrain", *TINY, "--config", "YAML_NAN"], "lr=nan"),
    (["pretrain", *TINY, "--output", "FILE"], "is not a folder"),
    (["pretrain", *TINY, "--output", "/proc/armvision-test/run"], "/proc/armvision-test/run"),
    (["pretrain", *TINY, "--resume", "OUT/none.pth", "--output", "OUT/run"], "none.pth"),
    (["finetune", *FT, "--label-fraction", "0"], "--label-fraction 0"),
    (["finetune", *FT, "--ema-decay", "2"], "--ema-decay 2"),
    (["finetune", *FT, "--smoothing", "1.5"], "--smoothing 1.5"),
    (["finetune", *FT, "--mixup", "-1"], "--mixup -1"),
    (["finetune", *FT, "--layer-decay", "0"], "--layer-decay 0"),
    (["finetune", *FT, "--init", "OUT/missing.pth"], "missing.pth"),
    (["finetune", *FT, "--output", "FILE"], "is not a folder"),
    (["eval", "--checkpoint", "c.pth", "--batch-size", "0"], "--batch-size"),
    (["eval", "--checkpoint", "c.pth", "--crop-pct", "0"], "--crop-pct"),
    (["eval", "--checkpoint", "c.pth", "--img-size", "-224"], "--img-size"),
    (["eval", "--checkpoint", "c.pth", "--num-workers", "-1"], "--num-workers"),
    (["eval", "--checkpoint", "c.pth", "--device", "tpu"], "--device"),
    (["eval", "--checkpoint", "c.pth", "--model", "giant"], "--model"),
    (["eval", "--checkpoint", "c.pth", "--output-json", "/proc/armvision-test/r.json"], "--output-json"),
    (["eval", "--checkpoint", "c.pth", "--output-json", "OUT"], "is a folder"),
    (["eval", "--checkpoint", "c.pth", "--output-json", "FILE/r.json"], "is a file"),
    (["eval"], "--checkpoint"),
    (["probe", "--checkpoint", "c.pth", "--knn-k", "0"], "--knn-k"),
    (["probe", "--checkpoint", "c.pth", "--temperature", "0"], "--temperature"),
    (["probe", "--checkpoint", "c.pth", "--lr", "nan"], "--lr"),
    (["probe", "--checkpoint", "c.pth", "--output-json", "/proc/armvision-test/r.json"], "--output-json"),
    (["visualize", "--checkpoint", "c.pth", "--num-images", "0"], "--num-images"),
    (["visualize", "--checkpoint", "c.pth", "--device", "tpu"], "--device"),
    (["visualize", "--checkpoint", "c.pth", "--output", "FILE"], "is not a folder"),
    (["visualize", "--checkpoint", "c.pth", "--output", "/proc/armvision-test"], "/proc/armvision-test"),
    (["predict", "--checkpoint", "c.pth", "x.png", "--top-k", "0"], "--top-k"),
    (["predict", "--checkpoint", "c.pth", "x.png", "--batch-size", "0"], "--batch-size"),
    (["predict", "--checkpoint", "c.pth", "x.png", "--device", "tpu"], "--device"),
    (["predict", "x.png"], "--checkpoint"),
    (["predict", "--checkpoint", "c.pth"], "IMAGE"),
    (["predict", "--checkpoint", "OUT/none.pth", "OUT"], "none.pth"),
    (["plot", "run", "--smooth", "0"], "--smooth"),
    (["plot", "run", "--output", "FILE"], "is not a folder"),
    (["plot", "run", "--out", "FILE"], "is not a folder"),  # the old spelling, kept hidden
    (["convert", "c.pth", "OUT/conv", "--num-classes", "-5"], "--num-classes"),
    (["convert", "c.pth", "OUT/conv", "--img-size", "0"], "--img-size"),
    (["convert", "c.pth", "/proc/armvision-test/conv"], "/proc/armvision-test/conv"),
    (["convert", "c.pth", "FILE"], "is not a folder"),
    (["convert", "c.pth", "OUT/conv", "--kind", "vit"], "--kind"),
    (["demo", "--max-steps", "0"], "--max-steps"),
    (["demo", "--device", "tpu"], "--device"),
    (["demo", "--num-workers", "-1"], "--num-workers"),
    (["demo", "--output", "FILE"], "is not a folder"),
    (["study", "--seeds", "x"], "--seeds"),
    (["bench", "nosuch"], "nosuch"),
    (["nosuch"], "nosuch"),
    (["--bogus"], "--bogus"),
]


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


def _call(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse errors exit from inside the parser
        return e.code


@pytest.mark.parametrize("argv,expect", BAD, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD])
def test_bad_arguments_are_one_line_exit_2_and_nothing_written(argv, expect, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("a file where a folder is expected")
    (tmp_path / "YAML_BOOL").write_text("epochs: true\n")
    (tmp_path / "YAML_NAN").write_text("lr: .nan\n")
    (tmp_path / "OUT").mkdir()
    argv = [str(tmp_path / a) if a in ("FILE", "YAML_BOOL", "YAML_NAN", "OUT") else
            a.replace("OUT/", str(tmp_path / "OUT") + "/").replace("FILE/", str(tmp_path / "FILE") + "/")
            for a in argv]
    before = _snapshot(tmp_path)
    capsys.readouterr()
    rc = _call(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expect in lines[0], lines[0]
    assert _snapshot(tmp_path) == before  # nothing written (no run folder, no lock, no partial file)


def _subprocess(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "armvision.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_real_processes_exit_2_with_one_line(tmp_path):
    """The same through a real process: the exit code is 2 and stderr one line (no traceback) for a bad value, an
    unwritable output and `armvision` with no command (which prints the help)."""
    p = _subprocess(["pretrain", *TINY, "--lr", "nan", "--output", str(tmp_path / "run")], tmp_path)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "--lr nan" in p.stderr, p.stderr
    p = _subprocess(["eval", "--checkpoint", "c.pth", "--output-json", "/proc/armvision-test/r.json"], tmp_path)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "--output-json" in p.stderr, p.stderr
    p = _subprocess([], tmp_path)
    assert p.returncode == 2 and "usage: armvision" in p.stderr and "pretrain" in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == []


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "usage: armvision" in err and all(name in err for name in COMMANDS)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0


@pytest.mark.parametrize("name", [n for n in COMMANDS])
def test_every_flag_has_help_text(name):
    module = importlib.import_module(COMMANDS[name][0])
    parser = Parser(prog=f"armvision {name}")
    add_verbosity(parser)
    module.add_arguments(parser)
    missing = [a.option_strings or [a.dest] for a in parser._actions
               if not a.help or not a.help.strip()]
    assert not missing, f"armvision {name}: flags without help: {missing}"


def test_quiet_and_verbose_set_the_log_level(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", *TINY, "--log-every", "1", "--output", str(out)]) == 0
    normal = capsys.readouterr().out
    assert "pretrain: " in normal and "images" in normal  # the run's notice (through logging)
    assert main(["-q", "pretrain", *TINY, "--output", str(tmp_path / "quiet")]) == 0
    quiet = capsys.readouterr().out
    assert "pretrain: " not in quiet and "pretraining done" in quiet  # only the command's result
    assert logging.getLogger("armvision").level == logging.WARNING
    assert main(["pretrain", *TINY, "--output", str(tmp_path / "verbose"), "--verbose"]) == 0
    assert logging.getLogger("armvision").level == logging.DEBUG
    capsys.readouterr()
    logging.getLogger("armvision").setLevel(logging.NOTSET)  # leave no trace for the following tests
