"""Suite-wide fixtures. Helpers shared by test modules live in tests/armtest.py (import armtest).

The suite must pass on a user's clone, which has nothing beside it: an audit hook makes any attempt to open a file
in a sibling of the repository (the folder that holds the clone, outside the clone itself) fail the test loudly.
"""
import os
import sys
from pathlib import Path

from armtest import fixtures_dir  # noqa: F401  (re-exported as a fixture)

_REPO = str(Path(__file__).resolve().parents[1])
_AROUND = os.path.dirname(_REPO)


def _refuse_outside(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, Path)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if path.startswith(_AROUND + os.sep) and not (path == _REPO or path.startswith(_REPO + os.sep)):
            raise RuntimeError(f"a test opened {path}, outside the repository; copy what it needs into tests/fixtures")


sys.addaudithook(_refuse_outside)
