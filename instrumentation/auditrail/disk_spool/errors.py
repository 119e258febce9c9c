"""The errors the on-disk spool raises."""

from __future__ import annotations


class SpoolWriteError(OSError):
    """An event could not be recorded in the spool (the message names the path and the OS error)."""


class SpoolFullError(SpoolWriteError):
    """The spool reached its disk cap (`max_bytes`); see DiskSpool.wait_for_space."""

