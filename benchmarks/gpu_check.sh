#!/usr/bin/env bash
# GPU check in one command (see src/armvision/bench/gpu_check/): scan correctness per backend, scan speed,
# ARM-B vs ViT-B, a short ARM-B pretraining run; writes report.json + report.md.
#   benchmarks/gpu_check.sh [OUT_DIR] [extra options, e.g. --dry-run]      (default OUT_DIR: runs/gpu_check)
# Uses .venv/bin/python when it exists, else $PYTHON or python3, with this checkout's src/ first on the path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-runs/gpu_check}"
[ $# -gt 0 ] && shift
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" -m armvision.bench.gpu_check --out "$OUT_DIR" "$@"
