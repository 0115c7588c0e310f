"""The `armvision` command line: one sub-command per module.

Each command module defines `add_arguments(parser)` and `run(args) -> int`; modules are imported only when
their command runs, so `armvision --help` stays fast and a missing optional dependency breaks one command only.

Mistakes end as one line on stderr and exit code 2, never a traceback: a bad flag or value (argparse and the
range checks of each command, at parse time), a missing or unusable file (ArmVisionError), an output that cannot be
written (OSError). Messages of the library go through `logging` (logger "armvision"): progress and notices to
stdout, warnings to stderr; `--quiet` keeps only warnings and errors, `--verbose` adds debug messages.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn, Optional, Sequence

# name -> (module, one-line help)
COMMANDS = {
    "pretrain": ("armvision.cli.pretrain", "pretrain a backbone (ARM, or the baselines --method mae | contrastive)"),
    "finetune": ("armvision.cli.finetune", "finetune a classifier from a pretraining checkpoint"),
    "eval": ("armvision.cli.evaluate", "top-1/top-5 and per-class accuracy of a classifier checkpoint on an "
             "ImageFolder or robustness set"),
    "predict": ("armvision.cli.predict", "the most probable classes of image files, by name (checkpoint or ONNX)"),
    "probe": ("armvision.cli.probe", "k-NN and linear-probe evaluation of frozen pretrained features"),
    "visualize": ("armvision.cli.visualize", "draw cluster order, targets and predictions of a pretrained model"),
    "plot": ("armvision.cli.plot", "loss / lr / accuracy curves from the log.jsonl of one or more runs"),
    "bench": ("armvision.cli.bench", "benchmarks: scan, block, model, train-step, export, scan-check"),
    "convert": ("armvision.cli.convert", "convert a reference .pth checkpoint to armvision's safetensors format"),
    "export": ("armvision.cli.export", "export a classifier or encoder to torch.export (.pt2) or ONNX, checked vs eager"),
    "study": ("armvision.cli.study", "the study of ARM's claims: 5 seeds, paired tests, Holm-corrected verdicts (--quick, --estimate, --curves)"),
    "demo": ("armvision.cli.demo", "pretrain then finetune a tiny model on the embedded data (make run)"),
}
VERBOSITY = {"-q": -1, "--quiet": -1, "-v": 1, "--verbose": 1}


def one_line(text: str) -> str:
    """`text` with control characters (a newline in a value or a file name) written as escapes: an error is one line."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`PROG: error: MESSAGE (see PROG --help)`) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors (no progress, notices)")
    group.add_argument("-v", "--verbose", action="store_true", help="also debug messages")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="armvision", description=__doc__.splitlines()[0])
    from ..version import __version__

    parser.add_argument("--version", action="version", version=f"armvision {__version__}")
    add_verbosity(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


class _Handler(logging.Handler):
    """INFO and DEBUG to stdout as they are; WARNING and up to stderr, prefixed. Streams are looked up at each
    message (so redirections made after setup, e.g. by pytest, are honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.levelno >= logging.WARNING:
                stream, msg = sys.stderr, f"{record.levelname.lower()}: {msg}"
            else:
                stream = sys.stdout
            stream.write(msg + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def setup_logging(verbosity: int = 0) -> None:
    """Show the library's messages (logger "armvision"): -1 warnings only, 0 info, 1 debug."""
    logger = logging.getLogger("armvision")
    for h in list(logger.handlers):
        if isinstance(h, _Handler):
            logger.removeHandler(h)
    logger.addHandler(_Handler())
    logger.setLevel({-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[max(-1, min(1, verbosity))])


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    verbosity = 0
    while argv and argv[0] in VERBOSITY:
        verbosity = VERBOSITY[argv.pop(0)]
    if not argv:  # no command: say what there is, and fail (a script calling `armvision` alone is a mistake)
        parser.print_help(sys.stderr)
        return 2
    if argv[0] in ("-h", "--help", "--version"):
        parser.parse_args(argv[:1])  # prints and exits 0
        return 0
    if argv[0] not in COMMANDS:
        what = f"unknown option {argv[0]}" if argv[0].startswith("-") else f"unknown command {argv[0]!r}"
        parser.error(f"{what}; choose one of: {', '.join(COMMANDS)}")
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    cmd_parser = Parser(prog=f"armvision {name}", description=COMMANDS[name][1])
    add_verbosity(cmd_parser)
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(rest)
    if args.quiet or args.verbose:
        verbosity = -1 if args.quiet else 1
    setup_logging(verbosity)
    if verbosity < 0 and any(a.dest == "progress" for a in cmd_parser._actions):  # no progress bars or lines
        args.progress = False
    from ..errors import ArmVisionError

    try:
        return int(module.run(args) or 0)
    except ArmVisionError as e:  # user mistakes: one clear line, no traceback wall
        print(f"armvision {name}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # an unwritable output, a full disk, ...: name the file, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"armvision {name}: error: {one_line(f'{where}{e.strerror or e}')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"armvision {name}: interrupted", file=sys.stderr)
        return 130

