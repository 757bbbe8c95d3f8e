"""Give freed heap memory back to the system after a large work unit.

glibc's malloc keeps what a thread frees in that thread's arena; after a Whisper window or a long
Kokoro unit that is a few hundred MiB of free pages the process still holds (measured: 0.49 GiB
RSS after one Whisper base transcription, 0.30 GiB after `malloc_trim(0)`). Trimming after each
large unit keeps the resident set near what the loaded models need, so the peak of the whole
workload is one unit's working memory on top of the models rather than every unit's leftovers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)


def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Return free heap pages of every malloc arena to the system (glibc); else nothing."""
    if _TRIM is not None:
        _TRIM(0)
