#!/usr/bin/env bash
# timm's own model tests (its repository's tests/test_models.py) on armvision's arm_* entries, run from outside
# this repository: timm's file is copied into WORK (never into the repo), only its family lists are adapted, the
# official weights are stand-ins in an offline huggingface_hub cache (tools/timm_standins.py), TorchScript is waived.
#
#   tools/timm_model_tests.sh TIMM_CHECKOUT WORK [pytest args]     (docs/timm.md)
set -euo pipefail
timm_repo=$(cd "$1" && pwd); work=$2; shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python}
mkdir -p "$work/tests"
work=$(cd "$work" && pwd)
cp "$timm_repo/tests/test_models.py" "$work/tests/test_models.py"
# the family lists: our module with the forward_intermediates families, arm_* with the token-output ("non-standard")
# ones (forward_features gives (B, 1+N, D) tokens, as ViTs do)
sed -i -e "s/^FEAT_INTER_FILTERS = \[/FEAT_INTER_FILTERS = ['registry', /" \
       -e "s/^NON_STD_FILTERS = \[/NON_STD_FILTERS = ['arm_*', /" "$work/tests/test_models.py"
grep -q "^FEAT_INTER_FILTERS = \['registry', " "$work/tests/test_models.py" &&
  grep -q "^NON_STD_FILTERS = \['arm_\*', " "$work/tests/test_models.py" ||
  { echo "timm's test_models.py has no FEAT_INTER_FILTERS / NON_STD_FILTERS lists to adapt" >&2; exit 2; }
export HF_HOME="$work/hf" HF_HUB_OFFLINE=1
PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}" "$py" "$here/tools/timm_standins.py" "$HF_HOME/hub"
cd "$work"  # -p armvision: imported before collection, so timm's lists see the arm_* models
PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m pytest -p armvision tests/test_models.py \
  -k "arm_ and not torchscript" -p no:cacheprovider -W ignore::pytest.PytestUnknownMarkWarning "$@"
