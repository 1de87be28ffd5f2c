"""Memory admission: a photo reserves its decode memory, estimated from its header, before any pixel is decoded.

ImageMagick's limits are process-wide: photos in work at once share them, and luck decided which ones failed when
several large photos met. Here a photo waits (first come, first served) until its estimate fits the budget, so
WORKER_CONCURRENCY photos of the largest allowed size cannot exhaust the task; a photo larger than the whole budget
never exists, because start-up refuses a budget that cannot hold one photo of MAX_PIXELS (`check_fits`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Peak bytes a pixel of one photo from decode to encode, detection pyramid included (its full-size copy, 3 bytes a
# pixel, lives one level at a time), measured on 49 MP JPEGs (bench/memory_admission.py, 2026-12-05): 20.4 for
# RGB, 19.4 for greyscale (ImageMagick's grey JPEG path holds the pixels twice while reading).
PIXEL_BYTES = 20
ENCODED_COPIES = 3  # the upload, the rebuilt container handed to the decoder, the encoded output
FIXED_BYTES = 48 * 2**20  # detector tiles, redaction strips, encoder buffers
BASELINE_BYTES = 512 * 2**20  # the process itself: Python, ONNX Runtime and the model, boto3, the HTTP server
BUDGET_SHARE = 0.8  # of what the task has beyond the baseline


def photo_bytes(width: int, height: int, encoded_bytes: int) -> int:
    """Estimated peak memory of one photo in work."""
    return width * height * PIXEL_BYTES + ENCODED_COPIES * encoded_bytes + FIXED_BYTES


def memory_limit(root: Path = Path("/sys/fs/cgroup"), meminfo: Path = Path("/proc/meminfo")) -> int:
    """The task's memory: the cgroup limit (v2 memory.max, v1 memory.limit_in_bytes) or, unlimited, the RAM."""
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            text = (root / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # v1 reports "unlimited" as a huge number, v2 as "max"
            return int(text)
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise OSError("cannot tell this machine's memory: set MEMORY_BUDGET")


def default_budget(limit: int) -> int:
    return max(0, int((limit - BASELINE_BYTES) * BUDGET_SHARE))


class BudgetTooSmall(ValueError):
    pass


def check_fits(budget: int, max_pixels: int, max_object_bytes: int) -> None:
    need = photo_bytes(max_pixels, 1, max_object_bytes)
    if need > budget:
        raise BudgetTooSmall(
            f"the memory budget ({budget / 2**20:.0f} MiB) cannot hold one photo of MAX_PIXELS ({max_pixels}) and "
            f"MAX_OBJECT_BYTES ({max_object_bytes}), which needs {need / 2**20:.0f} MiB: give the task more memory, "
            "set MEMORY_BUDGET, or lower MAX_PIXELS"
        )


class MemoryBudget:
    """Bytes reserved by photos in work, never above `total`; waiters are served in arrival order, so a large
    photo is not starved by a stream of small ones."""

    def __init__(
        self,
        total: int,
        on_change: Callable[[int], None] = lambda used: None,
        on_wait: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.total = total
        self.used = 0
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._on_change = on_change
        self._on_wait = on_wait

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        nbytes = min(nbytes, self.total)  # the largest allowed photo fits (check_fits); this only guards a bug
        ticket = object()
        start = time.monotonic()
        with self._cond:
            self._waiting.append(ticket)
            while self._waiting[0] is not ticket or self.used + nbytes > self.total:
                self._cond.wait()
            self._waiting.popleft()
            self.used += nbytes
            self._on_change(self.used)
            self._cond.notify_all()  # the next in line may fit too
        self._on_wait(time.monotonic() - start)
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self._on_change(self.used)
                self._cond.notify_all()
