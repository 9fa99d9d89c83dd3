"""Values that are neither numbers, text nor numeric arrays, called from the Rust side of
`log()` only after its own checks failed (never on the scalar hot path).

`convert(v)` returns a plain `float`, `int`, `str` or a numeric numpy array, which the Rust
side stores without calling back here, or raises `TypeError`/`ValueError` saying what was
wrong. What each type becomes is the README's "Values" table:

- `datetime.datetime` → seconds since the Unix epoch (`datetime.timestamp()`: a naive
  datetime is local time, as Python has it); `datetime.date` → seconds at its midnight UTC;
  `datetime.timedelta` → seconds (`total_seconds()`).
- numpy `datetime64` → seconds since the epoch (numpy datetimes are UTC), `timedelta64` →
  seconds, `NaT` → NaN; arrays of them alike, element by element.
- `bytes` (and `numpy.bytes_`) → text, decoded as UTF-8 (as wandb does).
- longdouble arrays → float64, rounded (±inf beyond its range).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

_EPOCH_DAY = _dt.date(1970, 1, 1)

# Seconds per numpy time unit; a year and a month are the Gregorian averages numpy itself
# uses when it converts timedelta64 of years or months to days.
_UNIT_S = {
    "Y": 365.2425 * 86400,
    "M": 365.2425 * 86400 / 12,
    "W": 7 * 86400,
    "D": 86400,
    "h": 3600,
    "m": 60,
    "s": 1,
}
# Units finer than a second, as the divisor that gives seconds (exact integer division).
_PER_S = {"ms": 10**3, "us": 10**6, "ns": 10**9, "ps": 10**12, "fs": 10**15, "as": 10**18}


def _seconds(counts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float64 seconds of the int64 counts of a datetime64/timedelta64 dtype (NaT → NaN)."""
    unit, step = np.datetime_data(dtype)
    shape = counts.shape
    counts = counts.reshape(-1)  # a 0-d array's arithmetic would give numpy scalars
    nat = counts == np.iinfo(np.int64).min
    if unit in _PER_S:
        out = counts.astype(np.float64) * (step / _PER_S[unit])
    elif unit in _UNIT_S:
        out = counts.astype(np.float64) * (step * _UNIT_S[unit])
    else:  # the generic unit holds only NaT
        out = np.zeros(counts.shape)
        if not bool(np.all(nat)):
            raise ValueError(f"a {dtype} value without a time unit")
    out[nat] = np.nan
    return out.reshape(shape)


def _dates(a: np.ndarray) -> np.ndarray:
    """Seconds since the epoch of a datetime64 array (calendar units through days)."""
    unit, _ = np.datetime_data(a.dtype)
    if unit in ("Y", "M"):
        # Years and months have no fixed length: go through days (exact where numpy is).
        a = a.astype("datetime64[D]")
    return _seconds(a.view(np.int64), a.dtype)


def convert(v: Any) -> Any:
    """A storable form of `v` (see the module docstring), or TypeError/ValueError."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "f":
            # longdouble: rounded to float64 (±inf out of range) like a longdouble scalar,
            # without numpy's overflow warning (which `-W error` would make an exception).
            with np.errstate(over="ignore"):
                return v.astype(np.float64)
        if v.dtype.kind == "M":
            return _dates(v)
        if v.dtype.kind == "m":
            return _seconds(v.view(np.int64), v.dtype)
        raise TypeError(f"an array of dtype {v.dtype}")
    if isinstance(v, np.datetime64):
        return float(_dates(np.asarray(v).reshape(1))[0])
    if isinstance(v, np.timedelta64):
        a = np.asarray(v).reshape(1)
        return float(_seconds(a.view(np.int64), a.dtype)[0])
    if isinstance(v, _dt.datetime):
        try:
            t = _dt.datetime.timestamp(v)
        except (OverflowError, OSError, ValueError) as e:
            raise ValueError(f"datetime {v!s} has no Unix timestamp: {e}") from None
        return float(t)
    if isinstance(v, _dt.date):
        days = _dt.date.toordinal(v) - _EPOCH_DAY.toordinal()
        return float(days * 86400)
    if isinstance(v, _dt.timedelta):
        return float(_dt.timedelta.total_seconds(v))
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"bytes that are not UTF-8 ({e.reason} at {e.start})") from None
    if isinstance(v, (set, frozenset)):
        raise TypeError(
            f"a {type(v).__name__} has no order, so no list of it reads back the same; "
            f"log sorted(...) or a list"
        )
    if v is None:
        raise TypeError("None is not a value (a key logged as None in a dict is left out)")
    return NotImplemented
