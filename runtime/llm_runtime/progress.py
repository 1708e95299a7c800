"""Download progress: pure formatting, plus a thread that watches a directory grow."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units, one decimal)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    value = float(n)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """75 -> '1m15s'; 3725 -> '1h02m'."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def progress_line(done: int, total: int, elapsed: float, done_at_start: int = 0) -> str:
    """'Downloaded 12.0 MiB of 40.0 MiB (30%) at 5.1 MiB/s, ETA 6s'.

    The rate counts only bytes fetched by this run (`done - done_at_start`) over `elapsed`.
    """
    done = max(0, min(done, total)) if total else max(0, done)
    rate = (done - done_at_start) / elapsed if elapsed > 0 else 0.0
    line = f"Downloaded {human_bytes(done)}"
    if total:
        line += f" of {human_bytes(total)} ({100 * done // total}%)"
    line += f" at {human_bytes(max(rate, 0))}/s"
    if total and rate > 0:
        line += f", ETA {human_duration((total - done) / rate)}"
    elif total and done < total:
        line += ", ETA unknown"
    return line


def dir_size(path: str) -> int:
    """Bytes of all regular files under path (SDK temporary files included); 0 if it is missing."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total


class ProgressWatcher:
    """Logs a progress line every `interval` seconds by measuring the download directory."""

    def __init__(self, path: str, total: int, log: Callable[[str], None], interval: float = 5.0) -> None:
        self.path, self.total, self.log, self.interval = path, total, log, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._start = time.monotonic()
        self._at_start = 0

    def __enter__(self) -> ProgressWatcher:
        self._start = time.monotonic()
        self._at_start = min(dir_size(self.path), self.total) if self.total else dir_size(self.path)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def line(self) -> str:
        return progress_line(dir_size(self.path), self.total, time.monotonic() - self._start, self._at_start)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.log(self.line())
