"""`armvision bench BENCHMARK [options]`: one sub-command per module of this package, imported only when it runs.

A benchmark's command module defines `add_arguments(parser)` and `run(args) -> int` and calls its benchmark in
armvision.bench with plain arguments; register it in BENCHMARKS.
"""
from __future__ import annotations

import argparse
import importlib
from types import ModuleType

from ...errors import ConfigError

# name -> (module, one-line help)
BENCHMARKS = {
    "scan": ("armvision.cli.bench.scan", "selective scan: fast path vs reference, mambapy pscan, mamba_ssm"),
    "block": ("armvision.cli.bench.block", "one MambaMLP block, fwd+bwd, per scan backend and without the scan"),
    "model": ("armvision.cli.bench.model", "whole models: forward / forward+backward time and memory"),
    "vs-vit": ("armvision.cli.bench.vs_vit", "ARM vs ViT of the same size, interleaved: fp32 / bf16, image sizes, "
               "batch sizes, forward / train step"),
    "train-step": ("armvision.cli.bench.train_step", "one optimizer step of pretraining / finetuning"),
    "export": ("armvision.cli.bench.export", "exported ARM (onnxruntime) and torch.compile vs eager and a ViT, CPU"),
    "gpu-check": ("armvision.cli.bench.gpu_check", "scan checks and scan / model / pretraining speed on a GPU "
                  "(= python -m armvision.bench.gpu_check)"),
    "scan-check": ("armvision.cli.bench.scan_check", "one scan backend against the sequential reference, values "
                   "and all gradients"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    lines = "\n".join(f"  {name:<11} {help_text}" for name, (_, help_text) in BENCHMARKS.items())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = f"benchmarks:\n{lines}\n\n'armvision bench BENCHMARK --help' lists its options."
    parser.add_argument("benchmark", choices=list(BENCHMARKS), metavar="BENCHMARK", help="one of: "
                        + ", ".join(BENCHMARKS))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of that benchmark")


def load(name: str) -> ModuleType:
    """The command module of benchmark `name`, with a clear error when it is not registered or not written."""
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}")
    module_name = BENCHMARKS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:  # a missing dependency inside the module: show it as it is
            raise
        raise ConfigError(f"benchmark {name!r} is registered but its module {module_name} is not available in "
                          f"this installation; choose one of the others") from None


def run(args: argparse.Namespace) -> int:
    module = load(args.benchmark)
    parser = argparse.ArgumentParser(prog=f"armvision bench {args.benchmark}", description=BENCHMARKS[args.benchmark][1])
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(args.options)) or 0)
