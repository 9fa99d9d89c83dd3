"""Values that fight back, shared by the hostile-value tests and their property test: objects
whose `__array__`, `__float__`, `__getattr__`, `__array_interface__` or `__dlpack__` raise or
return garbage, and the limits the README states."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MAX_DEPTH = 32  # dict levels below the top-level dict (README)
MAX_LIST = 32


class ArrayRaises:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("no array today")


class ArrayReturnsStr:
    def __array__(self, *args, **kwargs):
        return "not an array"


class ArrayReturnsSelf:
    def __array__(self, *args, **kwargs):
        return self


class ArrayReturnsItself:
    def __array__(self, *args, **kwargs):
        a = np.empty(2, dtype=object)
        a[0], a[1] = self, a
        return a


class FloatReturnsStr:
    def __float__(self):
        return "1.0"


class FloatRaises:
    def __float__(self):
        raise ZeroDivisionError("no float")


class GetattrRaises:
    def __getattr__(self, name):
        raise RuntimeError(f"no attribute {name} for you")


class InterfaceGarbage:
    @property
    def __array_interface__(self):
        return {"shape": "wide", "typestr": 5}


class DLPackRaises:
    def __dlpack__(self, **kwargs):
        raise RuntimeError("no dlpack")

    def __dlpack_device__(self):
        raise RuntimeError("no device")


HOSTILE = [
    ArrayRaises,
    ArrayReturnsStr,
    ArrayReturnsSelf,
    ArrayReturnsItself,
    FloatReturnsStr,
    FloatRaises,
    GetattrRaises,
    InterfaceGarbage,
    DLPackRaises,
]
