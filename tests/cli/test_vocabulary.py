"""One vocabulary across commands (issue 23, item 7): one spelling per option (the old one kept as a hidden alias),
the same defaults for --device and --num-workers, --progress everywhere something long runs, help text without
glitches, progress bars only on a terminal and plain lines elsewhere."""
import argparse
import importlib
import re

import pytest

from armvision.cli import COMMANDS, Parser, add_verbosity
from armvision.cli.bench import BENCHMARKS

OLD = {"--amp": "--precision", "--out": "--output", "--batch": "--batch-size", "--workers": "--num-workers",
       "--key": "--ema", "--json FILE": "--output-json"}


def _parser(module_name, prog):
    parser = Parser(prog=prog)
    add_verbosity(parser)
    importlib.import_module(module_name).add_arguments(parser)
    return parser


ALL = [(name, module) for name, (module, _) in COMMANDS.items()] + \
      [(f"bench {name}", module) for name, (module, _) in BENCHMARKS.items()]


@pytest.mark.parametrize("name,module", ALL, ids=[n for n, _ in ALL])
def test_help_has_no_glitches_and_no_old_spellings(name, module):
    parser = _parser(module, f"armvision {name}")
    text = parser.format_help()
    assert "(default: None)" not in text and "==SUPPRESS==" not in text
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            assert action.help.count("(default") <= 1 and action.help.count("default:") <= 1, action.help
    shown = {s for a in parser._actions if a.help is not argparse.SUPPRESS for s in a.option_strings}
    for old in ("--amp", "--out", "--batch", "--workers", "--key", "--no-progress"):
        if old == "--no-progress" and "--progress" in shown:
            continue  # the two spellings of one BooleanOptionalAction
        assert old not in shown, f"armvision {name} shows {old}; the common spelling is {OLD.get(old, '--progress')}"


@pytest.mark.parametrize("command", ["eval", "probe", "predict", "visualize", "demo"])
def test_shared_options_have_one_default(command):
    parser = _parser(COMMANDS[command][0], f"armvision {command}")
    defaults = {a.dest: a.default for a in parser._actions}
    assert defaults["device"] == "auto"
    if command != "visualize":
        assert defaults["num_workers"] is None  # the CPU count decides (data.loading.default_num_workers)
        assert defaults["progress"] is True


def test_old_spellings_still_work():
    ev = _parser(COMMANDS["eval"][0], "armvision eval")
    assert ev.parse_args(["--checkpoint", "c", "--amp"]).precision == "bf16"
    assert ev.parse_args(["--checkpoint", "c", "--no-progress"]).progress is False
    assert _parser(COMMANDS["plot"][0], "plot").parse_args(["r", "--out", "d"]).output == "d"
    assert _parser(COMMANDS["export"][0], "export").parse_args(["c", "o.pt2", "--batch", "3"]).batch_size == 3
    vis = _parser(COMMANDS["visualize"][0], "visualize")
    assert vis.parse_args(["--checkpoint", "c", "--key", "model_ema"]).key == "model_ema"
    assert vis.parse_args(["--checkpoint", "c", "--ema"]).key == "model_ema"
    ts = _parser(BENCHMARKS["train-step"][0], "ts")
    assert ts.parse_args(["--workers", "0", "1"]).workers == [0, 1]
    assert ts.parse_args(["--json", "x.json"]).json == "x.json"


def test_default_workers_never_exceed_the_cpus(monkeypatch):
    from armvision.data import loading

    monkeypatch.setattr(loading, "usable_cpus", lambda: 2)
    assert loading.default_num_workers(1) == 1 and loading.default_num_workers(2) == 0
    monkeypatch.setattr(loading, "usable_cpus", lambda: 64)
    assert loading.default_num_workers(1) == 8 and loading.default_num_workers(8) == 7
    assert loading.resolve_num_workers(3) == 3


def test_progress_is_plain_lines_off_a_terminal(caplog, capsys):
    import logging

    from armvision.progress import track

    with caplog.at_level(logging.INFO, logger="armvision"):
        assert list(track(range(20), "eval model.pth")) == list(range(20))  # stderr is not a terminal here
    out, err = capsys.readouterr()
    assert "\r" not in out + err + caplog.text
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10 and lines[0].startswith("eval model.pth batch 2/20") and lines[-1].startswith(
        "eval model.pth batch 20/20")
    assert all(re.search(r"eta \d+:\d\d:\d\d$", line) for line in lines)
