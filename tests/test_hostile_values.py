"""No value crashes the interpreter: each is stored as the README's Values table says, or
`log()` raises TypeError/ValueError naming the key and logs nothing of that call.

The crash cases run in subprocesses (on the old build they killed the interpreter). The
property test generates random nested dicts/lists/tuples of every kind of value (numpy
scalars and arrays of every dtype, big ints, datetimes, bytes, sets, None, self-references,
deep nesting, objects whose `__array__`/`__float__`/`__getattr__` raise or return garbage)
and logs them in a subprocess batch: the child reports one JSON line per example, the parent
asserts the child exited 0 and checks every example against the run read back.
`STEPLOG_HYPOTHESIS_EXAMPLES` sets the number of examples (default 300),
`STEPLOG_HYPOTHESIS_SEED` the seed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import steplog

from .conftest import run_python

ROOT = Path(__file__).resolve().parent.parent
MAX_DEPTH = 32  # dict levels below the top-level dict (README)
MAX_LIST = 32


# --- crash cases, each in its own interpreter --------------------------------------------------


def _survives(body: str) -> subprocess.CompletedProcess:
    code = f"""
        import sys, tempfile
        import numpy as np
        import steplog
        run = steplog.init(project="hostile", dir=tempfile.mkdtemp())
        run.log({{"before": 1.0}})
        try:
{body}
        except (TypeError, ValueError) as e:
            print("raised", type(e).__name__, e)
        else:
            print("stored")
        run.log({{"after": 2.0}})
        step = run.step
        run.finish()
        r = steplog.open(run.dir)
        print("keys", sorted(r.keys()), "step", step)
    """
    return run_python(code)


def _check(p: subprocess.CompletedProcess, outcome: str, keys: list[str], step: int) -> str:
    assert p.returncode == 0, f"the interpreter died ({p.returncode}): {p.stderr[-2000:]}"
    first, last = p.stdout.strip().splitlines()
    assert first.startswith(outcome), first
    assert last == f"keys {sorted(keys)} step {step}", last
    return first


def test_a_dict_that_contains_itself_raises_naming_the_key_instead_of_crashing():
    p = _survives('            d = {}; d["a"] = d\n            run.log(d)')
    first = _check(p, "raised ValueError", ["after", "before"], 2)
    assert "key 'a/a/a" in first and "nested deeper than 32 levels" in first


def test_a_plain_dict_nested_deeper_than_the_limit_is_refused_on_the_fast_path_too():
    body = (
        "            d = x = {}\n"
        "            for _ in range(40):\n"
        "                x['k'] = {}; x = x['k']\n"
        "            x['v'] = 1.0\n"
        "            run.log(d)"
    )
    first = _check(_survives(body), "raised ValueError", ["after", "before"], 2)
    assert "key 'k/k/k" in first


def test_dicts_exactly_at_the_depth_limit_are_stored_on_both_paths(run):
    for general in (False, True):
        d = x = {}
        for _ in range(MAX_DEPTH):
            x["k"] = {}
            x = x["k"]
        x["v"] = np.float32(0.5) if general else 0.5  # a numpy value takes the general path
        run.log(d)
    run.finish()
    name = "/".join(["k"] * MAX_DEPTH + ["v"])
    assert steplog.open(run.dir).history(name) == [(0, 0.5), (1, 0.5)]


@pytest.mark.parametrize(
    "value, expected",
    [("np.longdouble(1.5)", "1.5"), ("np.longdouble('1e4000')", "inf")],
)
def test_numpy_longdouble_is_rounded_to_float_instead_of_crashing(value, expected):
    # In a child: on a build without the fix this overflowed the stack.
    body = (
        f'            run.log({{"x": {value}}})\n'
        f'            sys.stderr.write(repr(run.summary["x"]))'
    )
    p = _survives(body)
    _check(p, "stored", ["after", "before", "x"], 3)
    assert p.stderr.endswith(expected), p.stderr[-500:]


def test_longdouble_arrays_are_rounded_without_a_warning(run):
    # filterwarnings=error: numpy's overflow warning would be raised from log().
    run.log({"a": np.array([1e4000, -1e4000, 1.5], dtype=np.longdouble)})
    run.log({"a": np.full(40, "1e4000", dtype=np.longdouble)})
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("a")[0] == (0, [math.inf, -math.inf, 1.5])
    assert r.histograms("a")[0][1].sum() == 0


@pytest.mark.parametrize("value", ["np.clongdouble(1 + 2j)", "np.complex64(1j)", "1j"])
def test_complex_values_raise_type_error_instead_of_crashing(value):
    p = _survives(f'            run.log({{"x": {value}}})')
    first = _check(p, "raised TypeError", ["after", "before"], 2)
    assert "key 'x'" in first and "complex" in first


# --- the documented conversions, one by one -----------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), 1577836800.0),
        (dt.datetime(2020, 1, 1, 0, 0, 1, 500000, tzinfo=dt.timezone.utc), 1577836801.5),
        (dt.date(2020, 1, 2), 1577923200.0),
        (dt.timedelta(minutes=2, microseconds=5), 120.000005),
        (np.datetime64("2020-01-01T00:00:01"), 1577836801.0),
        (np.datetime64("2020-03", "M"), 1583020800.0),
        (np.timedelta64(1500, "ms"), 1.5),
        (b"caf\xc3\xa9", "café"),
        (np.bytes_(b"ok"), "ok"),
        (np.str_("s"), "s"),
        (np.float16(0.5), 0.5),
        (np.uint64(2**64 - 1), float(2**64 - 1)),
        (2**64, float(2**64)),
    ],
)
def test_documented_conversions(run, value, expected):
    run.log({"v": value})
    run.finish()
    [(step, got)] = steplog.open(run.dir).history("v")
    assert step == 0 and type(got) is type(expected) and got == expected


def test_ml_dtypes_scalars_and_arrays_are_numbers(run):
    ml = pytest.importorskip("ml_dtypes")
    run.log({"b": ml.bfloat16(1.5), "f8": ml.float8_e4m3fn(2.0), "i4": ml.int4(3)})
    run.log({"b": np.array([[1, 2]], dtype=ml.bfloat16), "i4": np.arange(40).astype(ml.int4)})
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("b") == [(0, 1.5), (1, [[1.0, 2.0]])]
    assert r.history("f8") == [(0, 2.0)]
    assert r.history("i4")[0] == (0, 3) and r.histograms("i4")[0][1].sum() == 40


def test_naive_datetimes_are_local_time_as_python_has_it(run):
    when = dt.datetime(2021, 6, 1, 12, 30)
    run.log({"t": when})
    run.finish()
    assert steplog.open(run.dir).history("t") == [(0, when.timestamp())]


def test_not_a_time_is_nan(run):
    run.log({"t": np.datetime64("NaT"), "d": np.timedelta64("NaT")})
    run.finish()
    r = steplog.open(run.dir)
    assert math.isnan(r.history("t")[0][1]) and math.isnan(r.history("d")[0][1])


def test_time_arrays_become_seconds(run):
    a = np.array(["1970-01-01T00:00:02", "NaT"], dtype="datetime64[s]")
    run.log({"a": a, "d": np.array([1, 2], dtype="timedelta64[m]")})
    # 0-d time arrays, in calendar and fixed units, are scalars.
    run.log({"a": np.array(np.datetime64(1, "Y")), "d": np.array(np.timedelta64(3, "s"))})
    run.finish()
    r = steplog.open(run.dir)
    [(_, got), second] = r.history("a")
    assert got[0] == 2.0 and math.isnan(got[1]) and second == (1, 31536000.0)
    assert r.history("d") == [(0, [60.0, 120.0]), (1, 3.0)]


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


@pytest.mark.parametrize("cls", HOSTILE, ids=lambda c: c.__name__)
def test_hostile_objects_raise_type_error_naming_the_key_and_log_nothing(run, cls):
    with pytest.raises(TypeError, match=rf"key 'bad'.*{cls.__name__}"):
        run.log({"ok": 1.0, "bad": cls()})
    with pytest.raises(TypeError, match=r"key 'nested/bad'"):
        run.log({"nested": {"bad": [1.0, cls()]}})
    assert run.step == 0
    run.log({"ok": 2.0})
    run.finish()
    r = steplog.open(run.dir)
    assert r.keys() == ["ok"] and r.history("ok") == [(0, 2.0)]


def test_a_list_that_contains_itself_raises_type_error():
    p = _survives("            l = [1.0]; l.append(l)\n            run.log({'l': l})")
    first = _check(p, "raised TypeError", ["after", "before"], 2)
    assert "key 'l'" in first


@pytest.mark.parametrize(
    "value, error",
    [
        (10**400, ValueError),
        (b"\xff\xfe", ValueError),
        ("\ud800", ValueError),
        ({1, 2}, TypeError),
        (frozenset([1]), TypeError),
        (np.void((1, 2.0), dtype="i4,f8"), TypeError),
        (np.array([1, 2], dtype="i4,f8"), TypeError),
        (np.array([None, 1], dtype=object), TypeError),
        (np.void(b"\x01"), TypeError),
        (np.array([np.void(b"\x01")] * 2), TypeError),
        (np.timedelta64(5), ValueError),  # no unit: no seconds
        ((np.timedelta64("NaT"), 5), ValueError),  # numpy makes that a unitless timedelta64
    ],
)
def test_values_that_cannot_be_stored_raise_naming_the_key(run, value, error):
    with pytest.raises(error, match="key 'v'"):
        run.log({"x": 1.0, "v": value})
    assert run.step == 0


def test_a_surrogate_in_a_key_raises_value_error(run):
    with pytest.raises(ValueError, match="not valid text"):
        run.log({"\ud800": 1.0})
    with pytest.raises(ValueError, match="under 'a'"):
        run.log({"a": {"\udfff": 1.0}})
    assert run.step == 0


def test_a_handle_logs_none_as_nothing_and_keeps_the_error_type(run):
    m = run.metric("m")
    m.log(None)
    with pytest.raises(ValueError, match="Metric\\('m'\\)"):
        m.log(10**400)
    m.log(1.0)
    assert run.step == 2
    run.finish()
    assert steplog.open(run.dir).history("m") == [(1, 1.0)]


# --- the property test ---------------------------------------------------------------------


class Absent:
    """The key is left out of the row (a None)."""


class Raise(Exception):
    """The model's verdict: log() must raise TypeError/ValueError."""


_PER_S = {"ms": 10**3, "us": 10**6, "ns": 10**9, "ps": 10**12, "fs": 10**15, "as": 10**18}
_UNIT_S = {"W": 7 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


def _time_seconds(v: Any) -> float:
    """The documented seconds of one datetime64/timedelta64 value (computed apart from
    steplog's own code: calendar arithmetic for years and months, exact fractions else)."""
    unit, step = np.datetime_data(v.dtype)
    n = int(np.asarray(v).view(np.int64))
    if n == np.iinfo(np.int64).min:
        return math.nan
    n *= step
    if unit in _PER_S:
        return n / _PER_S[unit]
    if unit in _UNIT_S:
        return float(n * _UNIT_S[unit])
    if unit not in ("Y", "M"):  # the generic unit (numpy makes it from NaT and ints)
        raise Raise("a time without a unit")
    year = 365.2425 * 86400
    if isinstance(v, np.timedelta64):
        return n * (year if unit == "Y" else year / 12)
    months = n * 12 if unit == "Y" else n
    y, m = divmod(months, 12)
    return float((dt.date(1970 + y, m + 1, 1) - dt.date(1970, 1, 1)).days * 86400)


def _approx(x: float) -> Any:
    return {"approx": x}


def _expect_array(a: np.ndarray) -> Any:
    if a.size == 0:
        return []
    kind = a.dtype.kind
    if kind in "Mm":
        flat = [_time_seconds(x) for x in a.ravel()]
        vals = np.array(flat, dtype=np.float64).reshape(a.shape)
        timed = True
    elif kind in "fiub":
        vals, timed = a, False
    else:
        raise Raise(f"dtype {a.dtype}")
    if vals.dtype.kind == "f" or (vals.dtype.kind == "u" and int(vals.max()) >= 2**63):
        vals = vals.astype(np.float64)
    if a.size == 1:
        x = vals.ravel()[0].item()
        return _approx(x) if timed else x
    if a.size <= MAX_LIST:
        if a.ndim > 32:
            vals = vals.ravel()
        out = vals.tolist()
        return {"approx_list": out} if timed else out
    f = vals.astype(np.float64).ravel()
    return {
        "hist": int(np.isfinite(f).sum()),
        "nan": int(np.isnan(f).sum()),
        "pos_inf": int((f == np.inf).sum()),
        "neg_inf": int((f == -np.inf).sum()),
    }


def expect_leaf(v: Any) -> Any:
    """What the README says `v` is stored as (`Absent`, a value), or `Raise`."""
    if v is None:
        return Absent
    if isinstance(v, tuple(HOSTILE)):
        raise Raise(type(v).__name__)
    if isinstance(v, (np.datetime64, np.timedelta64)):  # timedelta64 is a numpy integer
        return _approx(_time_seconds(v))
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, (int, np.integer)):
        n = int(v)
        if -(2**63) <= n < 2**63:
            return n
        try:
            return float(n)
        except OverflowError:
            raise Raise("int too large") from None
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise Raise("surrogate") from None
        return str(v)
    if isinstance(v, bytes):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise Raise("not utf-8") from None
    if isinstance(v, (set, frozenset)):
        raise Raise("set")
    if isinstance(v, dt.datetime):
        try:
            return _approx(v.timestamp())
        except (OverflowError, OSError, ValueError):
            raise Raise("no timestamp") from None
    if isinstance(v, dt.date):
        return _approx(float((v - dt.date(1970, 1, 1)).days * 86400))
    if isinstance(v, dt.timedelta):
        return _approx(v.total_seconds())
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.generic):  # complex, void
        raise Raise(type(v).__name__)
    if isinstance(v, np.ndarray):
        return _expect_array(v)
    if isinstance(v, (list, tuple)):
        try:
            a = np.asarray(v)
        except Exception:
            raise Raise("asarray") from None
        return _expect_array(a)
    raise Raise(type(v).__name__)


def expect_call(data: dict[str, Any]) -> dict[str, Any]:
    """The cells a `log(data)` stores, by flattened key (a later duplicate wins)."""
    out: dict[str, Any] = {}

    def walk(d: dict[Any, Any], prefix: str | None, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Raise("depth")
        for k, v in list(d.items()):
            if not isinstance(k, str):
                raise Raise("key")
            name = k if prefix is None else f"{prefix}/{k}"
            if isinstance(v, dict):
                walk(v, name, depth + 1)
                continue
            got = expect_leaf(v)
            if got is not Absent:
                out.pop(name, None)
                out[name] = got
            else:
                # NOTE: a None never replaces a value staged earlier in the call.
                pass

    walk(data, None, 0)
    return out


def _child() -> None:
    """Runs in the subprocess: logs N random examples, one JSON line each."""
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    n = int(os.environ["STEPLOG_HYPOTHESIS_EXAMPLES"])
    out = open(os.environ["HOSTILE_OUT"], "w")  # noqa: SIM115 - kept open for the run
    run = steplog.init(project="hostile", dir=os.environ["HOSTILE_DIR"])
    counter = [0]

    dtypes = st.sampled_from(
        ["?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "g"]
        + [">i4", ">f8", "c8", "c16", "G", "U3", "S3", "O", "i4,f8", "V4"]
        + [f"M8[{u}]" for u in "YMWDhms"]
        + ["M8[us]", "M8[ns]"]
        + [f"m8[{u}]" for u in "WDhms"]
        + ["m8[us]", "m8[ns]"]
    )

    @st.composite
    def arrays(draw: Any) -> np.ndarray:
        dtype = np.dtype(draw(dtypes))
        shape = draw(
            st.one_of(
                hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
                st.sampled_from([(1,) * 34 + (2,), (40,), (2, 0, 3), (1, 1), (6, 6)]),
            )
        )
        if dtype.kind == "O":
            return np.full(shape, draw(st.sampled_from([None, "s", 1, 2**70])), dtype=object)
        if dtype.kind == "M":
            # Within numpy's and Python's calendars (years 1..9999) so the model can compute
            # the documented seconds; NaT included.
            elements = st.integers(-(10**4), 10**4).map(lambda y: np.datetime64(y, "D"))
            values = draw(hnp.arrays("M8[D]", shape, elements=elements))
            return values.astype(dtype)
        if dtype.kind == "m":
            return draw(hnp.arrays(dtype, shape, elements=st.integers(-(10**9), 10**9)))
        if dtype == np.dtype("V4"):  # unstructured bytes: hypothesis has no strategy
            raw = draw(st.binary(min_size=4 * math.prod(shape), max_size=4 * math.prod(shape)))
            return np.frombuffer(raw, dtype="V4").reshape(shape)
        return draw(hnp.arrays(dtype, shape))

    def scalar_of(dtype: str) -> Any:
        return hnp.from_dtype(np.dtype(dtype)).map(lambda x: np.asarray(x, dtype=dtype)[()])

    numpy_scalars = st.one_of(
        *[scalar_of(d) for d in ["?", "i1", "u2", "i8", "u8", "f2", "f4", "f8", "g", "c8"]],
        *[scalar_of(d) for d in ["c16", "G", "U2", "S2", "i4,f8"]],
        st.integers(-(10**5), 10**5).map(lambda d: np.datetime64(d, "D")),
        st.sampled_from([np.datetime64("NaT"), np.timedelta64("NaT"), np.datetime64(5, "Y")]),
        st.integers(-(10**12), 10**12).map(lambda x: np.timedelta64(x, "us")),
        st.integers(-12 * 1960, 12 * 8000).map(lambda x: np.datetime64(x, "M")),
        st.sampled_from([np.longdouble("1e4000"), np.longdouble(1.5), np.clongdouble(1j)]),
        st.binary(min_size=1, max_size=4).map(np.void),
    )
    plain = st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(),
        st.integers(min_value=2**63 - 3, max_value=2**64 + 3),
        st.sampled_from([10**400, -(10**309), 2**1023, "\ud800", b"\xff", b"ok"]),
        st.text(max_size=8),
        st.binary(max_size=6),
        st.sets(st.integers(), max_size=3),
        st.frozensets(st.integers(), max_size=3),
        st.datetimes(timezones=st.sampled_from([None, dt.timezone.utc])),
        st.dates(),
        st.timedeltas(),
    )
    hostile = st.sampled_from(HOSTILE).map(lambda cls: cls())
    leaves = st.one_of(plain, numpy_scalars, arrays(), hostile)
    keys = st.one_of(st.text("ab", min_size=1, max_size=2), st.integers(0, 2))

    def selfref(x: Any) -> Any:
        if isinstance(x, dict):
            x["self"] = x
        elif isinstance(x, list):
            x.append(x)
        return x

    trees = st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.lists(kids, max_size=4),
            st.lists(kids, max_size=3).map(tuple),
            st.dictionaries(keys, kids, max_size=4),
            st.lists(kids, max_size=3).map(selfref),
            st.dictionaries(keys, kids, max_size=3).map(selfref),
        ),
        max_leaves=12,
    )

    @st.composite
    def deep(draw: Any) -> Any:
        levels = draw(st.integers(MAX_DEPTH - 2, MAX_DEPTH + 8))
        leaf = draw(st.one_of(st.floats(), st.integers(-5, 5), numpy_scalars))
        kind = draw(st.sampled_from(["dict", "list"]))
        for _ in range(levels):
            leaf = {"d": leaf} if kind == "dict" else [leaf]
        return leaf

    examples = st.one_of(trees, trees, deep())

    @seed(int(os.environ["STEPLOG_HYPOTHESIS_SEED"]))
    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(examples)
    def body(tree: Any) -> None:
        i = counter[0]
        counter[0] += 1
        data = {f"e{i}": tree}
        try:
            want: Any = expect_call(data)
        except Raise as e:
            want = {"raise": str(e)}
        before = run.step
        try:
            run.log(data)
        except (TypeError, ValueError) as e:
            line = {"i": i, "outcome": type(e).__name__, "error": str(e)[:300]}
        else:
            line = {"i": i, "outcome": "stored"}
        line.update(step=before, after=run.step, want=want)
        out.write(json.dumps(line) + "\n")
        out.flush()

    body()
    run.finish()
    out.close()


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, dict) and "approx" in want:
        w = want["approx"]
        return type(got) is float and (
            (math.isnan(w) and math.isnan(got)) or math.isclose(got, w, rel_tol=1e-12, abs_tol=1e-6)
        )
    if isinstance(want, dict) and "approx_list" in want:
        g, w = np.asarray(got, dtype=np.float64), np.asarray(want["approx_list"], dtype=np.float64)
        return g.shape == w.shape and bool(
            np.all(np.isclose(g, w, rtol=1e-12, atol=1e-6) | (np.isnan(g) & np.isnan(w)))
        )
    if isinstance(want, dict) and "hist" in want:
        return (
            isinstance(got, dict)
            and int(got["counts"].sum()) == want["hist"]
            and [got["nan"], got["pos_inf"], got["neg_inf"]]
            == [want["nan"], want["pos_inf"], want["neg_inf"]]
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(_same(g, w) for g, w in zip(got, want))
        )
    if isinstance(want, float):
        return type(got) is float and (
            (math.isnan(want) and math.isnan(got))
            or (got == want and math.copysign(1, got) == math.copysign(1, want))
        )
    return type(got) is type(want) and got == want


EXAMPLES = int(os.environ.get("STEPLOG_HYPOTHESIS_EXAMPLES", "300"))


@pytest.mark.timeout(max(120, EXAMPLES // 5))
def test_random_values_are_stored_as_documented_or_refused_naming_the_key(tmp_path):
    n = EXAMPLES
    seed_ = int(os.environ.get("STEPLOG_HYPOTHESIS_SEED", "11"))
    out = tmp_path / "examples.jsonl"
    env = dict(
        os.environ,
        STEPLOG_HYPOTHESIS_EXAMPLES=str(n),
        STEPLOG_HYPOTHESIS_SEED=str(seed_),
        HOSTILE_OUT=str(out),
        HOSTILE_DIR=str(tmp_path / "runs"),
    )
    p = subprocess.run(
        [sys.executable, "-c", "from tests.test_hostile_values import _child; _child()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=max(100, n // 10),
    )
    lines = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    assert p.returncode == 0, (
        f"the child died or failed ({p.returncode}) after {len(lines)} examples "
        f"(seed {seed_}); last: {lines[-1:]}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    )
    assert len(lines) >= n // 2, "hypothesis ran far fewer examples than asked"
    [run_dir] = (tmp_path / "runs").iterdir()
    r = steplog.open(run_dir)
    keys = r.keys()
    by_example: dict[str, list[str]] = {}
    for k in keys:
        by_example.setdefault(k.split("/", 1)[0], []).append(k)
    bad = []
    tally = {"stored": 0, "TypeError": 0, "ValueError": 0}
    for line in lines:
        i, outcome, want = line["i"], line["outcome"], line["want"]
        tally[outcome] = tally.get(outcome, 0) + 1
        mine = by_example.get(f"e{i}", [])
        if outcome != "stored":
            if "raise" not in want:
                bad.append((i, "raised but should be stored", line["error"], want))
            elif f"'e{i}" not in line["error"]:
                bad.append((i, "the error does not name the key", line["error"]))
            elif mine or line["after"] != line["step"]:
                bad.append((i, "a refused call logged something", mine, line))
            continue
        if "raise" in want:
            bad.append((i, "stored but should raise", want["raise"]))
            continue
        if line["after"] != line["step"] + 1 or sorted(mine) != sorted(want):
            bad.append((i, "wrong keys or steps", sorted(mine), sorted(want), line))
            continue
        for k, w in want.items():
            got = r.history(k)
            if len(got) != 1 or got[0][0] != line["step"] or not _same(got[0][1], w):
                bad.append((i, k, got, w))
    assert not bad, f"{len(bad)} of {len(lines)} examples wrong (seed {seed_}): {bad[:5]}"
    # The examples reach both verdicts (the generator is not degenerate).
    assert tally["stored"] > n // 10 and len(lines) - tally["stored"] > n // 10
    print(f"{len(lines)} examples: {tally}")
