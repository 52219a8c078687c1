"""Keep the C allocator from handing a training step's large temporaries back to the OS.

On the CPU, torch allocates every tensor with the C library's ``malloc``. glibc returns freed
memory at the top of its heap to the OS once more than its trim threshold (by default about twice
the largest freed block) is free there, and serves blocks above its mmap threshold with fresh
mappings. Under enumeration a step creates and frees dozens of (slots x batch x pixels) tensors
(8 MB each in Willetts' Table II MNIST setting), so a step could fault the same pages in again: an
elementwise op into a fresh tensor of that size took up to 7 ms on a quiet core, and 16-22 ms with
other runs beside it, where writing into an existing one took 1 (docs/PERFORMANCE.md).
:func:`retain_freed_memory` raises both thresholds so that freed blocks are reused instead.

It changes a setting of the whole process, so the library never calls it on import: the
``pyro-sus`` command and the sweep's job processes, which own their process, call it; a user of
:func:`pyro_sus.fit` may call it first. It changes no number a model computes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["retain_freed_memory"]

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's largest allowed mmap threshold on 64-bit systems: blocks up to this size come from the heap.
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def retain_freed_memory(keep_bytes: int = 1 << 30) -> bool:
    """Keep up to ``keep_bytes`` of freed heap memory for reuse (glibc only); whether it applied.

    Blocks up to 32 MiB then come from the heap rather than from their own mappings. The cost is
    that the process keeps up to ``keep_bytes`` more memory than it uses at its low points.
    """
    if keep_bytes < 0:
        raise ValueError(f"keep_bytes must be non-negative, got {keep_bytes}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt takes an int: cap at its range. It returns 1 on success, 0 on a rejected value.
    keep = min(keep_bytes, 2**31 - 1)
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, keep))
