"""The service process's C allocator (glibc malloc): request bodies reuse freed memory instead of fresh pages.

A 4 MB OTLP request passes through several buffers of its size (uvicorn's body chunks, the joined body, the
decompressed one). With glibc's defaults a buffer that size is mapped on its own (``mmap``), or, once the
dynamic threshold has risen past it, trimmed off the heap as soon as a few of them are freed together (8
concurrent requests free ~34 MB): every request then pays a page fault per 4 KiB of each buffer (measured:
the body's join at 0.22 us a record with the faults, 0.06 without; ~8,500 faults for 8 requests of 4.3 MB).
:func:`keep_request_memory` fixes both thresholds, so freed bodies stay in the process's heaps for the next
requests. What the process keeps is bounded by what it held at once (the requests in flight, which
``--max-body`` and the connection cap bound), plus :data:`TRIM_BYTES` of free memory at the top of a heap.
The engine (chDB) allocates with its own allocator and is not affected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["MMAP_BYTES", "TRIM_BYTES", "keep_request_memory"]

logger = logging.getLogger("auditrail.store")
M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_BYTES = 32 << 20  # the largest threshold glibc takes on 64-bit (HEAP_MAX_SIZE / 2): larger buffers are mapped
TRIM_BYTES = 64 << 20  # free memory a heap keeps at its top before giving it back (8 requests of 4 MB in flight)


def keep_request_memory() -> bool:
    """Fix glibc malloc's mmap and trim thresholds for this process; False where the C library is not glibc's
    (nothing changed)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) == 1
    if not done:
        logger.debug("mallopt refused the request-memory thresholds")
    return done
