#!/usr/bin/env bash
# Install the optional benchmark baselines beside the project (never a dependency of armvision):
#   mamba_ssm (CPU-only build, for its sequential `selective_scan_ref`) into .bench-deps/
# Then: PYTHONPATH=.bench-deps armvision bench scan ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .bench-deps
MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE "$PY" -m pip install -q --no-build-isolation --no-deps \
  --target .bench-deps "mamba-ssm==2.3.2.post1"
echo "installed mamba_ssm into .bench-deps; run: PYTHONPATH=.bench-deps $PY -m armvision.cli bench scan"
