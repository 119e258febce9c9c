"""The native core (``native/``, a Rust extension) for the SDK's drain, when it is built.

Each function it provides has a Python twin that stays the definition (the tests hold them byte-equal);
without the extension, or with ``AUDITRAIL_NATIVE=0`` in the environment (a switch for operators), the
Python code runs.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["ENV", "native_function"]

ENV = "AUDITRAIL_NATIVE"


def native_function(name: str) -> Any:
    """The native core's function `name`, or None (not built, built before it had that function, or off)."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        module = importlib.import_module("auditrail_native")
    except ImportError:
        return None
    return getattr(module, name, None)
