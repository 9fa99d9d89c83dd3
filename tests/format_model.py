"""Helpers of the format tests: a model of what a run should hold, runs written with steplog
to hold it, and comparisons of decoded values."""

from __future__ import annotations

import fnmatch
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

import steplog

from .decoder_frames import (
    SHARD_SUFFIX,
    STATS,
    encode_frame,
)
from .decoder_shard import (
    Hist,
    Shard,
    decode_run,
)


def bits(a: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64)).view(np.int64)


def only_shard(run_dir: str) -> tuple[dict[str, Any], str, Shard]:
    meta, shards = decode_run(run_dir)
    assert len(shards) == 1
    (name, shard), *_ = shards.items()
    return meta, name, shard


def expect_value(v: Any) -> tuple[str, Any]:
    """What steplog should store for a logged value: (kind, value)."""
    if isinstance(v, float):
        return "f64", float(v)
    if isinstance(v, bool):
        return "bool", v
    if isinstance(v, int):
        return ("i64", v) if -(2**63) <= v < 2**63 else ("f64", float(v))
    if isinstance(v, str):
        return "text", v
    if isinstance(v, steplog.Histogram):
        pos, neg = v.inf_count
        return "hist", Hist(v.counts.astype(np.uint64), v.edges, v.nan_count, pos, neg)
    arr = np.asarray(v)
    if arr.size == 1:
        return expect_value(arr.item())
    flat = arr.ravel().astype(np.float64)
    if arr.size == 0:
        return "list", flat
    if arr.size <= 32:
        # One-dimensional floats keep the `list` form; any other shape or element type is an
        # `array` of int64 (uint64 beyond int64: float64), float64 or bool, keeping its shape.
        if arr.dtype.kind == "f" and arr.ndim == 1:
            return "list", flat
        if arr.dtype.kind == "b":
            return "array", arr.astype(bool)
        if arr.dtype.kind in "iu" and (arr.dtype.kind == "i" or arr.max() < 2**63):
            return "array", arr.astype(np.int64)
        return "array", arr.astype(np.float64)
    assert np.isfinite(flat).all()
    counts, edges = np.histogram(flat, bins=64)
    return "hist", Hist(counts.astype(np.uint64), edges, 0, 0, 0)


def flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        name = f"{prefix}/{k}" if prefix else k
        out.extend(flatten(v, name) if isinstance(v, dict) else [(name, v)])
    return out


class Model:
    """The step rules (README), kept next to a real run: what should be in the file."""

    def __init__(self, run: steplog.Run) -> None:
        self.run = run
        self.step = 0
        self.open: dict[str, tuple[str, Any]] | None = None
        self.rows: list[tuple[int, dict[str, tuple[str, Any]]]] = []
        self.keys: list[str] = []  # every key interned, in order
        self.logged: list[str] = []  # keys that were logged (not only set in the summary)
        self.summary: dict[str, tuple[str, Any]] = {}  # last logged or set value
        self.history: dict[str, list[tuple[str, Any]]] = {}  # summary-able values, in order
        self.overridden: set[str] = set()  # set through run.summary since last logged
        self.defs: dict[str, dict[str, Any]] = {}  # definitions, oldest first

    def define_metric(self, name: str, step_metric=None, summary=None, goal=None) -> None:
        self.run.define_metric(name, step_metric=step_metric, summary=summary, goal=goal)
        stats = None
        if summary is not None:
            asked = {x.strip() for x in summary.split(",")} - {"none"}
            stats = [st for st in STATS if st in asked]
        self.defs.pop(name, None)
        goal = {"min": "minimize", "max": "maximize"}.get(goal, goal)
        self.defs[name] = {"step_metric": step_metric, "summary": stats, "goal": goal}

    def expected_summary(self) -> dict[str, Any]:
        """The summary the README promises: plain values, or statistics per definition."""
        out: dict[str, Any] = {}
        for k, (_kind, last) in self.summary.items():
            match = [d for name, d in self.defs.items() if fnmatch.fnmatchcase(k, name)]
            stats = match[-1]["summary"] if match else None
            if k in self.overridden or stats is None:
                out[k] = last
            elif stats:
                out[k] = {st: self._stat(k, st, match[-1]["goal"]) for st in stats}
        return out

    def _stat(self, key: str, stat: str, goal: str | None) -> Any:
        values = [v for _, v in self.history[key]]
        if stat in ("first", "last"):
            return values[0] if stat == "first" else values[-1]
        numbers = [  # NaN skipped
            v for kind, v in self.history[key] if kind != "text" and not math.isnan(v)
        ]
        if not numbers:
            return math.nan
        if stat == "mean":
            floats = [float(v) for v in numbers]
            finite = all(math.isfinite(x) for x in floats)
            return (math.fsum(floats) if finite else sum(floats)) / len(floats)
        if stat == "best":
            stat = "min" if goal == "minimize" else "max"
        best = numbers[0]
        for v in numbers[1:]:  # strictly better only: the first of equal values stays
            if (v < best) if stat == "min" else (v > best):
                best = v
        return best

    def log(self, data: dict[str, Any], step: int | None = None, commit: bool | None = None):
        self.run.log(data, step=step, commit=commit)
        cells = [(k, expect_value(v)) for k, v in flatten(data)]
        self.keys.extend(k for k, _ in cells if k not in self.keys)
        self.logged.extend(k for k, _ in cells if k not in self.logged)
        if step is not None and step > self.step:
            if self.open is not None:
                self._commit()
            self.step = step
        if self.open is None:
            self.open = {}
        self.open.update(cells)
        if commit if commit is not None else step is None:
            self._commit()

    def set_summary(self, key: str, value: Any) -> None:
        self.run.summary[key] = value
        if key not in self.keys:
            self.keys.append(key)
        self.summary[key] = expect_value(value)
        self.overridden.add(key)

    def _commit(self) -> None:
        assert self.open is not None
        if self.open:  # a row without cells (`log({})`) only advances the step
            self.rows.append((self.step, self.open))
        for k, (kind, v) in self.open.items():
            if kind not in ("list", "array", "hist"):
                self.summary[k] = (kind, v)
                self.history.setdefault(k, []).append((kind, v))
                self.overridden.discard(k)
        self.step += 1
        self.open = None

    def finish(self) -> None:
        self.run.finish()
        if self.open is not None:
            self._commit()


def same_other(kind: str, got: Any, want: Any) -> bool:
    if kind == "list":
        return np.array_equal(bits(got), bits(want))
    if kind == "array":
        return (
            got.shape == want.shape
            and got.dtype.kind == want.dtype.kind
            and np.array_equal(bits(got), bits(want))
        )
    if kind == "hist":
        return (
            np.array_equal(got.counts, want.counts)
            and np.array_equal(bits(got.edges), bits(want.edges))
            and (got.nan, got.pos_inf, got.neg_inf) == (want.nan, want.pos_inf, want.neg_inf)
        )
    if kind == "f64":
        return bits(got) == bits(want)
    return type(got) is type(want) and got == want


def write_mixed_run(tmp_path: Path) -> tuple[Model, str, float, float]:
    """A run with every kind of value, step rule and several batches."""
    rng = np.random.default_rng(1234)
    t0 = time.time()
    run = steplog.init(dir=tmp_path, project="format", config={"lr": 0.1}, batch_max_rows=7)
    m = Model(run)
    m.define_metric("model/*", summary="min,max,mean,first,last")  # before its keys exist
    m.define_metric("note", summary="first")
    extremes = [0.0, -0.0, 5e-324, -2.2250738585072014e-308, 1.7976931348623157e308]
    extremes += [float("inf"), float("-inf"), float("nan"), 1 / 3, -1e-300]
    for i in range(25):
        x = extremes[i] if i < len(extremes) else float(rng.standard_normal() * 1e3)
        m.log(
            {
                "loss": x,
                "epoch": int(rng.integers(-(2**62), 2**62)),
                "flag": bool(i % 3 == 0),
                "model": {"lr": 0.1 / (i + 1), "layer": {"w_norm": float(rng.random())}},
            }
        )
    # After their keys were logged: they cover the whole history.
    m.define_metric("loss", summary="min,max,mean,best", goal="min", step_metric="epoch")
    m.define_metric("epoch", summary="best", goal="maximize")
    m.define_metric("f*", summary="mean, last")
    m.log({"note": "héllo ✓ \x00 tab\t", "empty": ""})
    m.log({"a": 1.0}, commit=False)
    m.log({"b": 2, "epoch": -1}, commit=False)
    m.log({"a": 3.0, "c": "merged"})
    m.log({"loss": 0.125}, step=100)
    m.log({"acc": 0.9, "loss": 0.25}, step=100)
    m.set_summary("best", 0.5)
    m.set_summary("loss", -1.0)  # replaced by the next logged loss
    m.log({"loss": 0.0625}, step=105)
    m.log({"vec": np.arange(2.0)})
    for n in (2, 3, 17, 32):
        m.log({"vec": rng.standard_normal(n), "ints": np.arange(n, dtype=np.int32)})
    m.log({"vec": rng.standard_normal((4, 8)).astype(np.float32)})
    m.log({"vec": [1, 2.5, 3], "pair": (True, False)})  # lists and tuples are tensors too
    m.log({"dist": rng.standard_normal(33)})
    m.log({"dist": rng.standard_normal(1000) * 7 + 3})
    data = rng.standard_normal(500)
    m.log({"h": steplog.Histogram(data, num_bins=10)})
    m.log({"h": steplog.Histogram([1.0, 2.0, np.nan, np.inf, -np.inf, 2.0], num_bins=3)})
    m.log({"h": steplog.Histogram(np_histogram=(np.array([3, 0, 5]), [0.0, 0.5, 1.5, 4.0]))})
    m.log({"h": steplog.Histogram([np.nan, np.nan])})
    m.log({"np": {"f32": np.float32(0.1), "i64": np.int64(-7), "b": np.bool_(True)}})
    m.log({"np": {"one": np.array([[2.5]]), "big": 2**70, "neg": -(2**63)}})
    m.log({})  # a step without a row
    m.log({"grid": np.array([[1, 2], [3, 4]]), "nothing": [], "mask": np.eye(2, dtype=bool)})
    m.log({"grid": np.arange(6.0).reshape(3, 2), "nothing": np.zeros((0, 4))})
    m.define_metric("mixed", summary="first,max,min,last")
    m.define_metric("note", summary="none")  # replaces the earlier definition of "note"
    m.log({"mixed": 1})
    m.log({"mixed": 1.5, "flag": False})
    m.log({"mixed": True})
    m.set_summary("model/lr", "done")  # an override of a defined key
    m.log({"final": 1.0, "text_last": "bye"}, step=200)  # left open: finish() commits it
    m.finish()
    return m, run.dir, t0, time.time()


def small_run(tmp_path: Path, rows: int = 40, batch_max_rows: int = 10) -> tuple[str, Path]:
    run = steplog.init(dir=tmp_path, batch_max_rows=batch_max_rows)
    for i in range(rows):
        run.log({"loss": float(i), "step_sq": i * i})
    run.finish()
    (path,) = Path(run.dir).glob("*" + SHARD_SUFFIX)
    return run.dir, path


def renumber(frames: list[tuple[int, int, bytes]]) -> bytes:
    return b"".join(
        encode_frame(kind, seq, raw, codec) for seq, (kind, codec, raw) in enumerate(frames)
    )
