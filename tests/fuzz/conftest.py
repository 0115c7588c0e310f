import pytest

from armvision.models import budget

SMALL_MACHINE = 512 * 2**20  # bytes


@pytest.fixture(autouse=True, scope="module")
def small_machine():
    """The fuzz tests run as on a machine with 512 MB of memory: the library refuses (by its up-front size check)
    any model larger than that, so the models it does build from fuzzed configs are built in moments."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(budget, "memory_limit", lambda: SMALL_MACHINE)
        yield
