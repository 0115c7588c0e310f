#!/usr/bin/env bash
# The CPU benchmarks of docs/performance.md, with the settings quoted there, one after the other:
#   selective scan (pretrain-B, finetune-B), one MambaMLP block, whole models (ARM vs ViT, tiny and base),
#   one pretraining step vs data loading. One thread and, where the docs use it, process CPU time (robust to
#   other jobs on a shared machine). About an hour on a 2-core machine; --quick: a smoke run in about a minute.
#
#   benchmarks/cpu_suite.sh OUT_DIR [--quick]
#
# Writes OUT_DIR/{scan,block,model,train_step}.txt (the printed tables) and OUT_DIR/{model,train_step}.json.
# Uses .venv/bin/python when it exists, else $PYTHON or python3, with this checkout's src/ first on the path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: $0 OUT_DIR [--quick]" >&2
  exit 2
fi
OUT="$1"
QUICK="${2:-}"
if [ -n "$QUICK" ] && [ "$QUICK" != "--quick" ]; then
  echo "$0: unknown option $QUICK (only --quick)" >&2
  exit 2
fi
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"

bench() {  # bench NAME ARGS...: `armvision bench NAME ARGS` (+ --quick), printed and saved to OUT/NAME.txt
  local name="$1"; shift
  echo "== armvision bench $name $* $QUICK"
  "$PY" -m armvision.cli bench "$name" "$@" $QUICK | tee "$OUT/${name//-/_}.txt"
}

if [ -n "$QUICK" ]; then SCAN_SHAPES=(); else SCAN_SHAPES=(--shapes pretrain-B finetune-B); fi
bench scan "${SCAN_SHAPES[@]}" --threads 1 --clock cpu --repeats 3
bench block --threads 1 --clock cpu --repeats 3
bench model --sizes tiny base --batch-size 8 --warmup 1 --repeats 3 --threads 1 --json "$OUT/model.json"
bench train-step --sizes tiny base --threads 1 --repeats 2 --workers 0 1 2 --json "$OUT/train_step.json"
echo "== wrote $OUT/{scan,block,model,train_step}.txt and $OUT/{model,train_step}.json"
