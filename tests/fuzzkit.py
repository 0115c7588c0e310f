"""Strategies and checks shared by the fuzz tests (tests/fuzz, issue 25 (6)); importable as `fuzzkit`.

Every property has the same shape: hostile input in, then either a result or one ArmVisionError whose message is one
line; never another exception (a traceback on the command line), never code from the input run, bounded time (the
hypothesis profile's deadline) and memory (`MemoryBound`)."""
import resource
import sys

import pytest

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

from armvision.errors import ArmVisionError  # noqa: E402

TRICKY_TEXT = ["", " ", "none", "null", "None", "16", "-5", "0", "1e9", "1e999", "nan", "inf", "true", "yes", "0x10",
               "tiny", "base", "giant", "vim", "row", "auto", "cpu", "cuda:7", "16 16", "1,2,3", "\x00", "a\nb",
               "../../etc/passwd", "é", "💥"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.text(max_size=12),
    st.sampled_from(TRICKY_TEXT),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                             max_size=4),
                      max_leaves=10)


def mappings(known_keys, max_size=8):
    """Dicts whose keys are mostly option names (with '-' or '_'), sometimes anything."""
    names = sorted(known_keys)
    key = st.one_of(st.sampled_from(names), st.sampled_from(names).map(lambda k: k.replace("_", "-")),
                    st.text(max_size=10))
    return st.dictionaries(key, values, max_size=max_size)


def one_line_error(e: BaseException) -> None:
    """The error a user sees: an ArmVisionError of one line (the CLI prints it as is)."""
    assert isinstance(e, ArmVisionError), f"{type(e).__name__}: {e}"
    text = str(e)
    assert text and "\n" not in text and len(text) < 2000, text


class MemoryBound:
    """The process's peak memory may grow by at most `mb` while the block runs (the peak can only go up, so this
    bounds every example of a property at once)."""

    def __init__(self, mb: int = 2048):
        self.mb = mb

    @staticmethod
    def peak_mb() -> float:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10

    def __enter__(self):
        self.start = self.peak_mb()
        return self

    def __exit__(self, *exc):
        grown = self.peak_mb() - self.start
        assert exc[0] is not None or grown < self.mb, f"peak memory grew by {grown:.0f} MB"
