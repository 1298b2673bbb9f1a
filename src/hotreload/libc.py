"""The C library's functions that Python does not wrap (glibc's heap controls, Linux's
``sync_file_range``), looked up once and typed; None where the C library has none."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any


def c_function(name: str, argtypes: list[Any], restype: Any) -> Any:
    """The C library's function ``name``, typed; None when there is none."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        function = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = restype
    return function
