"""Benchmarks: tools that measure armvision, not part of the library API.

scan, block, model (+ flops, machine), train_step, export: the `armvision bench NAME` benchmarks (their command
lines live in armvision.cli.bench); gpu_check: the one-command GPU check (`python -m armvision.bench.gpu_check`);
common: helpers they share. Results quoted in docs/performance.md; benchmarks/cpu_suite.sh runs the CPU set.
"""
