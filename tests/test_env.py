"""armvision.env: each ARMVISION_* variable's default, its values, and one clear error naming it for a bad value."""
import pytest

from armvision import env
from armvision.errors import ConfigError


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for name in env.NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_when_unset():
    assert env.scan_backend() is None
    assert env.triton_directions() is None
    assert env.scan_compile() is False
    assert env.cpu_kernel_enabled() is True
    assert env.cache_dir() is None
    assert env.cpu_cflags() == []
    assert env.cpu_fwd_order() == "auto"


def test_values(monkeypatch):
    monkeypatch.setenv(env.SCAN_BACKEND, " Torch ")
    monkeypatch.setenv(env.TRITON_DIRECTIONS, "on")
    monkeypatch.setenv(env.SCAN_COMPILE, "yes")
    monkeypatch.setenv(env.CPU_KERNEL, "0")
    monkeypatch.setenv(env.CACHE, "/tmp/k")
    monkeypatch.setenv(env.CPU_CFLAGS, "-DW=8  -O2")
    monkeypatch.setenv(env.CPU_FWD_ORDER, " Blocks")
    assert env.cpu_fwd_order() == "blocks"
    assert env.scan_backend() == "torch" and env.triton_directions() is True and env.scan_compile() is True
    assert env.cpu_kernel_enabled() is False and env.cache_dir() == "/tmp/k" and env.cpu_cflags() == ["-DW=8", "-O2"]
    monkeypatch.setenv(env.SCAN_BACKEND, "")  # empty: unset
    assert env.scan_backend() is None


@pytest.mark.parametrize("name,read,allowed", [
    (env.SCAN_BACKEND, env.scan_backend, "choose one of auto, ref, torch, cpu, triton, cuda"),
    (env.TRITON_DIRECTIONS, env.triton_directions, "use 1 (or true/yes/on) or 0 (or false/no/off)"),
    (env.SCAN_COMPILE, env.scan_compile, "use 1 (or true/yes/on) or 0"),
    (env.CPU_KERNEL, env.cpu_kernel_enabled, "use 1 (or true/yes/on) or 0"),
    (env.CPU_FWD_ORDER, env.cpu_fwd_order, "choose one of auto, steps, blocks"),
])
def test_a_bad_value_is_one_error_naming_the_variable(monkeypatch, name, read, allowed):
    monkeypatch.setenv(name, "banana")
    with pytest.raises(ConfigError) as e:
        read()
    assert str(e.value).startswith(f"environment variable {name} is 'banana'; ") and allowed in str(e.value)
    assert "\n" not in str(e.value)


def test_every_variable_is_listed():
    assert set(env.NAMES) == {v for k, v in vars(env).items() if k.isupper() and isinstance(v, str)
                              and v.startswith("ARMVISION_")}


def _thp_after_import(*, first: str = "", extra_env=None) -> str:
    """THP_MEM_ALLOC_ENABLE as a fresh interpreter sees it after `import armvision` (after `first` was imported)."""
    import os
    import subprocess
    import sys
    environ = {k: v for k, v in os.environ.items() if k not in (env.HUGE_PAGES, env.TORCH_THP)}
    environ.update(extra_env or {})
    code = f"{first}\nimport os, armvision\nprint(os.environ.get('{env.TORCH_THP}', 'unset'))"
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="transparent huge pages are Linux's")
def test_huge_pages_asked_of_torch_only_where_it_can_take_effect():
    assert _thp_after_import() == "1"  # armvision first: torch reads the switch at its first allocation
    assert _thp_after_import(first="import torch") == "unset"  # too late: armvision does not pretend
    assert _thp_after_import(extra_env={env.HUGE_PAGES: "0"}) == "unset"  # opted out
    assert _thp_after_import(extra_env={env.TORCH_THP: "0"}) == "0"  # the user's own choice stands


def test_huge_pages_flag(monkeypatch):
    assert env.huge_pages() is True
    monkeypatch.setenv(env.HUGE_PAGES, "off")
    assert env.huge_pages() is False


_FAULTS = """
import resource, sys
import armvision, torch
def faults(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(n).fill_(1.0)  # a first write to every page
    del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(6 << 20)  # 24 MiB, freed
print(faults(5 << 20))  # then 20 MiB: a page fault per page unless the freed memory is reused
"""


def _faults_after_free(extra_env) -> int:
    import os
    import subprocess
    import sys
    environ = {k: v for k, v in os.environ.items() if k not in (env.MALLOC, env.TORCH_THP) + env.GLIBC_MALLOC_VARS}
    environ.update(extra_env, **{env.HUGE_PAGES: "0"})  # 4 KiB pages: a fault per page
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=environ, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's malloc is Linux's")
def test_freed_buffers_are_reused_without_page_faults():
    import platform
    if platform.libc_ver()[0] != "glibc":  # musl and others: nothing is set, and the call says so
        assert env.reuse_freed_memory() is False
        return
    tuned, plain = _faults_after_free({}), _faults_after_free({env.MALLOC: "0"})
    assert plain > 1000, plain  # glibc's default: the 24 MiB buffer was unmapped, the 20 MiB one is new memory
    assert tuned < plain / 10, (tuned, plain)


def test_malloc_settings_left_to_the_user(monkeypatch):
    monkeypatch.setenv(env.MALLOC, "0")
    assert env.malloc_tuning() is False and env.reuse_freed_memory() is False
    monkeypatch.setenv(env.MALLOC, "maybe")
    with pytest.raises(ConfigError, match=env.MALLOC):
        env.malloc_tuning()
    monkeypatch.delenv(env.MALLOC)
    monkeypatch.setenv(env.GLIBC_MALLOC_VARS[1], "1000000")  # the user's own glibc setting stands
    assert env.reuse_freed_memory() is False
    monkeypatch.delenv(env.GLIBC_MALLOC_VARS[1])
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")  # ... given as a tunable too
    assert env.reuse_freed_memory() is False
