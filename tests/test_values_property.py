"""The property test of the hostile-value tests: random nested dicts/lists/tuples of every
kind of value (numpy scalars and arrays of every dtype, big ints, datetimes, bytes, sets,
None, self-references, deep nesting, hostile objects) are logged in a subprocess batch: the
child reports one JSON line per example, the parent asserts the child exited 0 and checks
every example against the run read back, as the README's Values table says.
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
from typing import Any

import numpy as np
import pytest

import steplog

from .hostile import HOSTILE, MAX_DEPTH, MAX_LIST, ROOT

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
        [sys.executable, "-c", "from tests.test_values_property import _child; _child()"],
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
