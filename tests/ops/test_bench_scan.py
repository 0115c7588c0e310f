"""Smoke tests of `armvision bench scan` (tiny shape, seconds) and of the bench command's dispatch."""
import pytest
import torch

from armvision import cli
from armvision.cli import bench as bench_cli
from armvision.bench import scan as bench_scan
from armvision.errors import ConfigError
from armvision.ops import selective_scan_ref


def test_mambapy_baseline_computes_the_same_scan():
    inputs = bench_scan.make_inputs(2, 6, 11, 4)  # L = 11: pscan pads to 16 internally
    args = [inputs[k] for k in bench_scan.ARGS]
    want = selective_scan_ref(*args, delta_softplus=True)
    torch.testing.assert_close(bench_scan.mambapy_scan(*args), want, rtol=1e-4, atol=1e-5)


def test_peak_extra_bytes_counts_live_allocations():
    def f():
        a = torch.ones(1000, 1000)  # 4 MB
        b = a * 2  # 4 MB more while a is alive
        del a
        return (b + 1).sum()  # a freed before this 4 MB: peak stays 8 MB

    peak = bench_scan.peak_extra_bytes(f, "cpu")
    assert 8_000_000 <= peak < 8_100_000


def test_quick_run_prints_table_and_ratios(capsys):
    assert cli.main(["bench", "scan", "--quick"]) == 0
    text = capsys.readouterr().out
    assert "tiny: batch 2, D 16, L 24, N 4" in text
    for name in ("fast: fused CPU kernel", "torch chunked (eager)", "reference (ours)", "mambapy pscan",
                 "mamba_ssm selective_scan_ref"):
        assert f"| {name}" in text
    assert "fast: fused CPU kernel vs torch chunked (eager): fwd" in text
    assert "fast: fused CPU kernel vs reference (ours): fwd" in text
    assert "not installed" in text  # mamba_ssm is not a dependency
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    col = [c.strip() for c in header.split("|")].index("err vs ref")
    errs = [float(line.split("|")[col]) for line in text.splitlines()
            if line.startswith(("| fast", "| torch", "| mambapy"))]
    assert errs and max(errs) < 1e-5


def test_bench_command_runs_scan_through_main_cli(capsys):
    assert cli.main(["bench", "scan", "--quick", "--skip", "pscan", "reference"]) == 0
    out = capsys.readouterr().out
    assert "| fast: fused CPU kernel" in out and "| torch chunked (eager)" in out and "skipped" in out


def test_missing_benchmark_module_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(bench_cli.BENCHMARKS, "nope", ("armvision.bench.does_not_exist", "not written"))
    with pytest.raises(ConfigError, match="armvision.bench.does_not_exist is not available"):
        bench_cli.load("nope")
    assert set(bench_cli.BENCHMARKS) >= {"scan", "model", "train-step"}
