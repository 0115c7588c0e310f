"""Suite-wide fixtures. Helpers shared by test modules live in tests/armtest.py (import armtest).

The suite must pass on a user's clone, which has nothing beside it: an audit hook makes any attempt to open a file
in a sibling of the repository (the folder that holds the clone, outside the clone itself) fail the test loudly.
Places every machine has are exempt, wherever the clone sits (a clone in /tmp or in $HOME is common): the temp
folder (pytest's tmp_path), the Python installation, and the caches (~/.cache, $XDG_CACHE_HOME, $ARMVISION_CACHE...).
"""
import os
import site
import sys
import tempfile
from pathlib import Path

from armtest import fixtures_dir  # noqa: F401  (re-exported as a fixture)

_REPO = str(Path(__file__).resolve().parents[1])
_AROUND = os.path.dirname(_REPO)
_CACHE_VARS = ("XDG_CACHE_HOME", "ARMVISION_CACHE", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "HF_HOME",
               "MPLCONFIGDIR", "TMPDIR")


def _exempt_roots() -> tuple:
    roots = {_REPO, tempfile.gettempdir(), sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path.home() / ".cache"),
             *site.getsitepackages(), site.getusersitepackages(), *(os.environ.get(v) for v in _CACHE_VARS)}
    out = set()
    for r in filter(None, roots):
        out.update({os.path.abspath(r), os.path.realpath(r)})
    return tuple(sorted(out))


_EXEMPT = _exempt_roots()


def _refuse_outside(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, Path)):
        path = os.path.abspath(os.fsdecode(args[0]))
        inside = any(path == r or path.startswith(r + os.sep) for r in _EXEMPT)
        if path.startswith(_AROUND + os.sep) and not inside:
            raise RuntimeError(f"a test opened {path}, outside the repository; copy what it needs into tests/fixtures")


sys.addaudithook(_refuse_outside)


def _hypothesis_profiles():
    """The fuzz tests (tests/fuzz) run a few seconds per property in CI ("ci", the default) and as long as one wants
    with HYPOTHESIS_PROFILE=long (README: "When things go wrong")."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # the fuzz tests skip themselves
        return
    slow = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
    settings.register_profile("ci", max_examples=30, deadline=20_000, suppress_health_check=slow, database=None,
                              print_blob=True)
    settings.register_profile("long", max_examples=3_000, deadline=60_000, suppress_health_check=slow)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_hypothesis_profiles()
