"""argparse `type=` adapters over the library's value checks: a bad flag ends at parse time with one line naming the
flag and the value (exit 2)."""
from __future__ import annotations

import argparse
from typing import Any, Callable, Optional

from ..argcheck import Check, device, number


def argtype(kind: type, check: Optional[Check] = None) -> Callable[[str], Any]:
    """argparse `type=`: convert with `kind`, then apply `check`; errors name the value."""
    def convert(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        why = check(v) if check else None
        if why:
            raise argparse.ArgumentTypeError(f"{text!r}: {why}")
        return v
    convert.__name__ = kind.__name__  # argparse names the type in its own messages
    return convert


POS_INT = argtype(int, number(1))
NONNEG_INT = argtype(int, number(0))
POS_FLOAT = argtype(float, number(0, lo_open=True))
NONNEG_FLOAT = argtype(float, number(0))
FRACTION = argtype(float, number(0, 1, lo_open=True))  # (0, 1]
DEVICE = argtype(str, device)
