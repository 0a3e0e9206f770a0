"""Handing freed memory back to the operating system, and reading what a process holds."""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path


def return_free_memory() -> None:
    """Give freed memory back to the OS (after streams close, after quantizing weights).

    glibc keeps freed blocks in per-thread arenas; with one engine thread per
    stream, a day of rooms connecting and leaving leaves hundreds of MB
    cached (measured: 770 MB after 50 clients churning, 248 MB after a trim).
    Not glibc (musl, macOS): nothing to do.
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(None)  # the process's own symbols: libc's on Linux
    except OSError:
        return None


def process_memory_kb(pid: int | str = "self", keys: tuple[str, ...] = ("VmRSS", "VmHWM")) -> dict[str, int]:
    """Fields of /proc/PID/status, in kB (Linux): VmRSS / VmHWM (resident now / at most), RssAnon (the
    process's own memory), RssFile (mapped files' pages: the page cache, which the kernel can take back)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            fields[key] = int(value.split()[0])
    return fields
