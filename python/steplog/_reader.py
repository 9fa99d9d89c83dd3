"""Reading runs back: `steplog.open(run_dir)` merges every shard of a run into numpy arrays."""

from __future__ import annotations

import builtins
import glob
import json
import math
import os
import re
import warnings
from typing import Any

import numpy as np

from . import _core
from ._run import RUN_FILE, SHARD_SUFFIX

TIMESTAMP = "_timestamp"
STEP = "_step"


def _pattern(name: str) -> re.Pattern[str]:
    """A `define_metric` name as a regex: `*` any run of characters, `?` one character."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in name)
    return re.compile("".join(parts), re.DOTALL)


def _stats_from_history(values: np.ndarray, definition: dict[str, Any] | None) -> Any:
    """A key's summary recomputed from its values in step order, as the writer keeps it:
    the plain last value, a dict of statistics, or `_OMIT` for `summary="none"`."""
    last = values[-1].item()
    stats = definition["summary"] if definition else None
    if stats is None:
        return last
    if not stats:
        return _OMIT
    numbers = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    out: dict[str, Any] = {}
    for stat in stats:
        if stat == "best":
            stat_of = "min" if definition and definition["goal"] == "minimize" else "max"
        else:
            stat_of = stat
        if stat_of == "first":
            out[stat] = values[0].item()
        elif stat_of == "last":
            out[stat] = last
        elif not numbers.size:
            out[stat] = math.nan
        elif stat_of == "mean":
            out[stat] = float(numbers.astype(np.float64).mean())
        else:
            out[stat] = (numbers.min() if stat_of == "min" else numbers.max()).item()
    return out


_OMIT = object()
# Kinds of non-scalar values that `to_pandas` keeps, one cell each.
_CELLS = ("text", "list")


class RunReader:
    """A finished, running or crashed run, decoded.

    Damage is skipped and listed in `problems` (a torn last frame after a crash is normal and
    marked `torn_tail`); with `strict=True` any damage raises `CorruptRunError` instead.
    """

    def __init__(self, path: str | os.PathLike[str], strict: bool = False) -> None:
        path = os.fspath(path)
        if os.path.isfile(path) and os.path.basename(path) == RUN_FILE:
            path = os.path.dirname(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"steplog.open: {path!r} is not a run directory")
        self.path = path
        run_file = os.path.join(path, RUN_FILE)
        self.meta: dict[str, Any] = {}
        if os.path.exists(run_file):
            with builtins.open(run_file, encoding="utf-8") as f:
                self.meta = json.load(f)
        files = sorted(glob.glob(os.path.join(glob.escape(path), "*" + SHARD_SUFFIX)))
        if not files and not self.meta:
            raise FileNotFoundError(f"steplog.open: no steplog run in {path!r}")
        self._shards = [(f, _core.read_shard(f)) for f in files]
        self.problems: list[dict[str, Any]] = []
        for f, s in self._shards:
            for p in s["problems"]:
                self.problems.append({"shard": os.path.basename(f), **p})
            for first, last in s["missing_frames"]:
                self.problems.append(
                    {
                        "shard": os.path.basename(f),
                        "reason": f"frames {first}..{last} are missing",
                        "torn_tail": False,
                    }
                )
        if strict and self.problems:
            raise _core.CorruptRunError(f"steplog.open({path!r}): {self.problems}")
        serious = [p for p in self.problems if not p["torn_tail"]]
        if serious:
            warnings.warn(
                f"steplog.open: {len(serious)} damaged part(s) in {path!r} were skipped; "
                f"see RunReader.problems",
                _core.SteplogWarning,
                stacklevel=2,
            )
        self._index()

    def _index(self) -> None:
        self._series: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._others: dict[str, list[tuple[int, str, Any]]] = {}
        keys: dict[str, None] = {}
        for _, s in self._shards:
            for k in s["keys"]:
                keys[k] = None
            for key, _dtype, steps, values in s["series"]:
                self._series.setdefault(key, []).append((steps, values))
            for step, key, kind, value in s["others"]:
                self._others.setdefault(key, []).append((step, kind, value))
        self._keys = list(keys)
        # Definitions from every shard, the main process's last; a later definition of a name
        # replaces the earlier one and becomes the most recent.
        self._metrics: dict[str, dict[str, Any]] = {}
        for _, s in self._main_last():
            for name, definition in s["metrics"]:
                self._metrics.pop(name, None)
                self._metrics[name] = definition

    def select(
        self,
        *,
        pid: int | None = None,
        rank: int | None = None,
        host: str | None = None,
        worker: int | None = None,
        shard: str | None = None,
    ) -> RunReader:
        """A reader over the shards that match every given field (see `shards`): the data
        one process, rank, host or DataLoader worker logged. Raises ValueError if none match.

        >>> steplog.open(run_dir).select(rank=0).scalars("loss")
        """
        want = {
            k: v
            for k, v in dict(pid=pid, rank=rank, host=host, worker=worker, shard=shard).items()
            if v is not None
        }
        chosen = [
            (f, s) for f, s in self._shards if all(s["info"].get(k) == v for k, v in want.items())
        ]
        if not chosen:
            raise ValueError(f"steplog: no shard of {self.path!r} matches {want}")
        sub = object.__new__(RunReader)
        sub.__dict__.update(self.__dict__)
        sub._shards = chosen
        sub._index()
        return sub

    def _main_last(self) -> list[tuple[str, dict[str, Any]]]:
        main_pid = self.meta.get("pid")
        return sorted(self._shards, key=lambda fs: fs[1]["info"].get("pid") == main_pid)

    # --- what was logged -------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Every logged key, in first-logged order (`_timestamp` excluded)."""
        return list(self._keys)

    def _check_key(self, key: str) -> None:
        if key not in self._series and key not in self._others:
            raise KeyError(f"steplog: no key {key!r} in run {self.path!r}; keys: {self._keys}")

    def scalars(self, key: str, x: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`(steps, values)` of a scalar key as int64 / float64 arrays, ordered by step.

        With `x`, returns `(x_values, values)` instead: `x="auto"` uses the key's
        `step_metric` from `define_metric` (`ValueError` if it has none); any other `x` names
        the metric to use (`"_step"` for the steps). Each value is paired with that metric's
        value at the same step or, when it has none there, its most recent earlier value;
        values from before its first value are dropped.
        """
        steps, values = self._scalars(key)
        if x is None:
            return steps, values
        if not isinstance(x, str):
            raise TypeError(f"steplog: scalars(x=...) must be a key name or 'auto', got {x!r}")
        if x == "auto":
            definition = self.definition(key)
            if definition is None or definition["step_metric"] is None:
                raise ValueError(
                    f"steplog: scalars({key!r}, x='auto'): no define_metric gives {key!r} a "
                    "step_metric; pass x='<key>' instead"
                )
            x = definition["step_metric"]
        if x == STEP:
            return steps.copy(), values
        x_steps, x_values = self._scalars(x)
        at = np.searchsorted(x_steps, steps, side="right") - 1
        keep = at >= 0
        return x_values[at[keep]], values[keep]

    def _scalars(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        self._check_key(key)
        parts = self._series.get(key, [])
        if not parts:
            raise TypeError(f"steplog: key {key!r} holds no scalars; use history({key!r})")
        if len(parts) == 1:
            steps, values = parts[0]
            values = values.astype(np.float64, copy=False)
        else:
            steps = np.concatenate([p[0] for p in parts])
            values = np.concatenate([p[1].astype(np.float64, copy=False) for p in parts])
        if steps.size > 1 and not bool(np.all(steps[1:] >= steps[:-1])):
            order = np.argsort(steps, kind="stable")
            steps, values = steps[order], values[order]
        return steps, values

    def history(self, key: str) -> list[tuple[int, Any]]:
        """Every `(step, value)` of a key, any kind of value, ordered by step."""
        self._check_key(key)
        items: list[tuple[int, Any]] = []
        for steps, values in self._series.get(key, []):
            items.extend(zip(steps.tolist(), values.tolist()))
        for step, _kind, value in self._others.get(key, []):
            items.append((step, value))
        items.sort(key=lambda sv: sv[0])
        return items

    def histograms(self, key: str) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """`(step, counts, edges)` of a histogram key, ordered by step."""
        self._check_key(key)
        out = [
            (step, value["counts"], value["edges"])
            for step, kind, value in self._others.get(key, [])
            if kind == "hist"
        ]
        out.sort(key=lambda t: t[0])
        return out

    # --- about the run ---------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.meta.get("config", {}))

    @property
    def summary(self) -> dict[str, Any]:
        """Final summary values, shaped like `run.summary`: a key's last value, or a dict of
        the statistics its `define_metric` asked for. Shards' persisted summaries are merged
        (the main process's last); a shard that never wrote one contributes what its scalar
        history gives under the run's definitions."""
        out: dict[str, Any] = {}
        for _, s in self._main_last():
            if s["summary"]:
                out.update(s["summary"])
                continue
            parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
            for key, _dtype, steps, values in s["series"]:
                if key != TIMESTAMP and steps.size:
                    parts.setdefault(key, []).append((steps, values))
            for key, ps in parts.items():
                steps = np.concatenate([p[0] for p in ps])
                kinds = {p[1].dtype for p in ps}
                values = np.concatenate(
                    [p[1] if len(kinds) == 1 else p[1].astype(np.float64) for p in ps]
                )
                values = values[np.argsort(steps, kind="stable")]
                value = _stats_from_history(values, self.definition(key))
                if value is not _OMIT:
                    out[key] = value
        return out

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """The run's `define_metric` definitions, oldest first: name or pattern →
        `{"step_metric": str | None, "summary": list of statistics | None, "goal": str | None}`.
        `summary` is None when the call gave none and `[]` for `summary="none"`; `goal` is
        `"minimize"` or `"maximize"`."""
        return {k: dict(v) for k, v in self._metrics.items()}

    def definition(self, key: str) -> dict[str, Any] | None:
        """The definition that applies to `key`: the most recent one whose name matches."""
        for name in reversed(self._metrics):
            if _pattern(name).fullmatch(key):
                return dict(self._metrics[name])
        return None

    @property
    def shards(self) -> list[dict[str, Any]]:
        """Who wrote each shard (pid, host, ranks) and how it ended."""
        out = []
        for f, s in self._shards:
            out.append(
                {
                    "file": os.path.basename(f),
                    **s["info"],
                    "rows": s["rows"],
                    "closed": s["close"] is not None,
                    "close": s["close"],
                    "gaps": s["gaps"],
                }
            )
        return out

    @property
    def nonfinite(self) -> dict[str, dict[str, int]]:
        """NaN, +Inf and -Inf values logged per key (before any substitution), summed over
        shards: `{"loss": {"nan": 2, "inf": 0, "-inf": 1}}`. Shards that did not close cleanly
        do not contribute (the counts are written when a shard closes)."""
        out: dict[str, dict[str, int]] = {}
        for _, s in self._shards:
            for key, counts in s["nonfinite"].items():
                total = out.setdefault(key, {"nan": 0, "inf": 0, "-inf": 0})
                for k, v in counts.items():
                    total[k] += v
        return out

    @property
    def dropped(self) -> int:
        """Rows that never reached the files (queue full, write errors), as recorded."""
        return sum(rows for _, s in self._shards for rows, _reason in s["gaps"])

    @property
    def rows(self) -> int:
        """Committed rows (steps) read."""
        return sum(s["rows"] for _, s in self._shards)

    def to_pandas(self) -> Any:
        """A DataFrame indexed by `_step` with one column per scalar, text or list key and
        `_timestamp`; a list key is an object column of (nested) Python lists. Histograms
        are left out (use `histograms`)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("RunReader.to_pandas needs pandas: pip install pandas") from e
        columns: dict[str, Any] = {}
        for key in [TIMESTAMP, *self._keys]:
            if key in self._series:
                steps, values = self.scalars(key)
                s = pd.Series(values, index=steps)
            elif key in self._others:
                texts = [(st, v) for st, kind, v in self._others[key] if kind in _CELLS]
                if not texts:
                    continue
                s = pd.Series([v for _, v in texts], index=[st for st, _ in texts], dtype=object)
            else:
                continue
            columns[key] = s[~s.index.duplicated(keep="last")]
        df = pd.DataFrame(columns)
        df.index.name = "_step"
        return df.sort_index()

    def __repr__(self) -> str:
        return f"<steplog.RunReader {self.path!r} keys={len(self._keys)} rows={self.rows}>"


def open(path: str | os.PathLike[str], strict: bool = False) -> RunReader:
    """Opens a run directory for reading (see `RunReader`)."""
    return RunReader(path, strict=strict)
