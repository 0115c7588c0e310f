"""One image file (or the bytes of one) as an 8-bit RGB PIL image, with the checks every data source shares.

Checked from the header, before decoding: an empty file, a size of 0, more pixels than the limit (named with its
size; Pillow's decompression-bomb threshold by default). Decoded: 16-bit and 32-bit grey scaled to 8 bits (Pillow's
convert("RGB") would clip them to white), float images refused with a reason. `check_files` runs the header check
(or, strict, the full decode with a few threads and a bound on the pixels in flight) over many files; `LoadFailures`
lets a dataset replace an image that fails to decode at load time by the next one, naming each bad file once across
DataLoader workers.
"""
from __future__ import annotations

import functools
import io
import logging
import multiprocessing as mp
import os
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Sequence, Union

import numpy as np
from PIL import Image

log = logging.getLogger("armvision.data")
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb threshold (about 9459 x 9459)
STRICT_THREADS = 4  # --strict-data decodes with at most this many threads ...
STRICT_PIXEL_BUDGET = 64_000_000  # ... and at most this many pixels in flight (about 200 MB of RGB)
MAX_NAMED = 20  # warnings name at most this many files, then give a count
ImageSource = Union[str, bytes]  # a path, or the encoded bytes of a shard member or an Arrow cell


class UnusableImage(Exception):
    """An image that opens but cannot be used (too many pixels, a pixel format without an RGB meaning)."""


def shown(text: str) -> str:
    """`text` (a file name, a line naming one) on one line: control characters such as a newline in a file name are
    written as escapes, so that a list of one file per line stays one."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _too_many(pixels: str, max_pixels: Optional[int]) -> str:
    return f"{pixels} pixels, more than the limit of {max_pixels:,} (raise it with --max-image-pixels)"


def _pixel_check(im: Image.Image, max_pixels: Optional[int]) -> None:
    w, h = im.size
    if w < 1 or h < 1:
        raise UnusableImage(f"invalid size {im.size}")
    if max_pixels and w * h > max_pixels:
        raise UnusableImage(_too_many(f"{w}x{h} = {w * h:,}", max_pixels))


def _bomb(e: Exception, max_pixels: Optional[int]) -> UnusableImage:
    """Pillow's decompression-bomb refusal (far above our limit), said with our limit and option."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    return UnusableImage(_too_many(f"{int(m.group(1)):,}" if m else "more", max_pixels or Image.MAX_IMAGE_PIXELS))


def to_rgb(im: Image.Image) -> Image.Image:
    """An 8-bit RGB image of `im`, scaling wide grey formats instead of clipping them.

    Pillow's own convert("RGB") clips 16-bit grey ("I;16", "I") at 255, so a 16-bit PNG turns almost white; here
    16-bit values are scaled by 255/65535 (and 32-bit integers by their own range when it exceeds 16 bits).
    Float images ("F") have no agreed range and are refused.
    """
    mode = im.mode
    if mode in ("RGB",):
        return im
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if a.min(initial=0) < 0 or a.max(initial=0) > 65535:
            lo, hi = a.min(), a.max()
            a, top = a - lo, max(1.0, hi - lo)
        grey = np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        raise UnusableImage("floating-point pixels (mode F) have no standard range; convert the file to 8-bit")
    return im.convert("RGB")


def _open(source: ImageSource):
    return Image.open(io.BytesIO(source)) if isinstance(source, (bytes, bytearray, memoryview)) else Image.open(source)


def load_rgb(source: ImageSource, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (a path or encoded bytes), check the pixel count against `max_pixels` (from the header, before
    decoding), decode, to RGB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies, named per file
        try:
            im = _open(source)
        except Image.DecompressionBombError as e:
            raise _bomb(e, max_pixels) from None
        with im:
            _pixel_check(im, max_pixels)
            im.load()
            return to_rgb(im)


def allow_pixels(max_pixels: Optional[int]) -> None:
    """Let Pillow open images up to our limit (it refuses above twice its own threshold)."""
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


class _PixelBudget:
    """A counting semaphore in pixels: at most `total` pixels decoded at once (one big image may exceed it alone)."""

    def __init__(self, total: int):
        self.total, self.used, self.cond = total, 0, threading.Condition()

    def acquire(self, n: int) -> int:
        n = min(n, self.total)
        with self.cond:
            self.cond.wait_for(lambda: self.used + n <= self.total)
            self.used += n
        return n

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


def check_image(source: ImageSource, full: bool, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                budget: Optional[_PixelBudget] = None) -> Optional[str]:
    """Return why `source` (a path or encoded bytes) is unusable, or None. `full` decodes the pixels, otherwise only
    the header is read."""
    try:
        if (len(source) if isinstance(source, (bytes, bytearray, memoryview)) else os.path.getsize(source)) == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(source) as im:
                _pixel_check(im, max_pixels)
                if im.mode == "F":
                    to_rgb(im)
                if full:
                    n = budget.acquire(im.size[0] * im.size[1]) if budget is not None else 0
                    try:
                        im.load()
                        to_rgb(im)
                    finally:
                        if budget is not None:
                            budget.release(n)
    except UnusableImage as e:
        return str(e)
    except Image.DecompressionBombError as e:
        return str(_bomb(e, max_pixels))
    except Exception as e:  # PIL raises many types for bad files
        return f"{type(e).__name__}: {e}"
    return None


def check_files(sources: Sequence[ImageSource], strict: bool = False, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                threads: int = 16) -> list[Optional[str]]:
    """Why each source is unusable (None: usable): headers only, or with `strict` full decodes on at most
    STRICT_THREADS threads and STRICT_PIXEL_BUDGET pixels in flight."""
    if strict:
        budget = _PixelBudget(max(STRICT_PIXEL_BUDGET, max_pixels or 0) if max_pixels else STRICT_PIXEL_BUDGET)
        threads = max(1, min(threads, STRICT_THREADS, os.cpu_count() or 1))
        check = functools.partial(check_image, full=True, max_pixels=max_pixels, budget=budget)
    else:
        threads = max(1, threads)
        check = functools.partial(check_image, full=False, max_pixels=max_pixels)
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(check, sources))


def name_skipped(skipped: Sequence[tuple[str, str]], where: str, strict: bool) -> None:
    """Warn about the skipped files (each named, up to MAX_NAMED); with `strict` raise one DataError listing them."""
    from ..errors import DataError

    if not skipped:
        return
    lines = [shown(f"  {p}: {r}") for p, r in skipped[:MAX_NAMED]]
    if len(skipped) > MAX_NAMED:
        lines.append(f"  ... and {len(skipped) - MAX_NAMED} more")
    if strict:
        raise DataError(f"{len(skipped)} unreadable file(s) in {where} (--strict-data):\n" + "\n".join(lines)
                        + "\nremove or fix them, or run without --strict-data to skip them")
    if os.environ.get("RANK", "0") == "0":  # every torchrun process scans; one of them tells
        log.warning("skipping %d unreadable file(s) in %s:\n%s", len(skipped), where, "\n".join(lines))


def image_file_filter(skipped: list[tuple[str, str]]) -> Callable[[str], bool]:
    """accept(path) for a folder walk: image extensions only; hidden files ignored, other files added to `skipped`
    (they are named with the unreadable ones)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    def accept(path: str) -> bool:
        if os.path.basename(path).startswith("."):
            return False
        if not path.lower().endswith(IMG_EXTENSIONS):
            skipped.append((path, "not an image file extension"))
            return False
        return True

    return accept


class CountsLoadFailures:
    """For datasets that keep a LoadFailures as `self.failures`: how many samples failed to decode so far."""

    failures: "LoadFailures"

    @property
    def load_failures(self) -> int:
        return int(self.failures.count.value)


class LoadFailures:
    """Which samples failed to decode at load time (each named once) and how many, shared with DataLoader workers
    (inherited when they start)."""

    def __init__(self, n: int):
        self.count = mp.Value("i", 0)
        self.failed = mp.Array("b", max(1, n), lock=False)

    def load(self, n: int, index: int, load: Callable[[int], Image.Image], name: Callable[[int], str], where: str):
        """(j, image) of the first sample from `index` on (wrapping around) that decodes; failures are named once."""
        from ..errors import DataError

        for attempt in range(n):
            j = (index + attempt) % n
            if self.failed[j]:
                continue  # failed before (and was named then): go straight to the next image
            try:
                return j, load(j)
            except Exception as e:  # PIL raises many types for bad files
                with self.count.get_lock():
                    first = not self.failed[j]
                    self.failed[j] = 1
                    if first:
                        self.count.value += 1
                if first:
                    log.warning("%s", shown(f"skipping unreadable image {name(j)} ({type(e).__name__}: {e}); "
                                            "using the next image"))
        raise DataError(f"no image of {where} could be decoded")
