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
import math
import subprocess

import numpy as np
import pytest

import steplog

from .conftest import run_python
from .hostile import HOSTILE, MAX_DEPTH

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
