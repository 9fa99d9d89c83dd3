"""Runs: `init()`, the `Run` class, module-level `log`/`finish`, and finishing at exit."""

from __future__ import annotations

import atexit
import os
import secrets
import string
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from . import _core, _env

RUN_FILE = "run.json"
SHARD_SUFFIX = ".steplog"
_ID_ALPHABET = string.ascii_lowercase + string.digits

_live: list[Run] = []
_live_lock = threading.Lock()


def _new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def _config_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "__dict__"):  # argparse.Namespace and similar
        return dict(vars(config))
    raise TypeError(
        f"steplog.init: config must be a dict or an argparse.Namespace, got {type(config).__name__}"
    )


class Summary(MutableMapping):
    """A run's summary: the last value of each scalar or text key, or, for a key whose
    `define_metric` asks for statistics, a dict of them (`{"min": 0.1, "max": 2.0}`).
    `run.summary[key] = value` overrides a key until it is logged again. Reading flushes
    first, so it reflects every `log()` before it."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def _current(self) -> dict[str, Any]:
        return self._run._summary()

    def __getitem__(self, key: str) -> Any:
        return self._current()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"run.summary: keys must be str, got {type(key).__name__}")
        self._run._set_summary(key, value)

    def __delitem__(self, key: str) -> None:
        raise TypeError("run.summary: keys cannot be deleted; set another value instead")

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __repr__(self) -> str:
        return f"Summary({self._current()!r})"


class Run(_core.Run):
    """One experiment run. Create it with `steplog.init()`.

    >>> with steplog.init(project="demo") as run:
    ...     run.log({"loss": 0.5})
    """

    id: str
    name: str
    project: str
    dir: str
    config: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The Rust base class took the arguments in __new__.
        super().__init__()

    def _setup(self, meta: dict[str, Any], run_file: str) -> None:
        self.id = meta["id"]
        self.name = meta["name"]
        self.project = meta["project"]
        self.dir = os.path.dirname(run_file)
        self.config = meta["config"]
        self._meta = meta
        self._run_file = run_file
        self._owner_pid = os.getpid()
        self._final_stats: dict[str, Any] | None = None
        self._finish_lock = threading.Lock()

    @property
    def summary(self) -> Summary:
        """The run's summary as a dict-like view (see `Summary`)."""
        return Summary(self)

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        summary: str | None = None,
        goal: str | None = None,
    ) -> None:
        """Defines how the metrics matching `name` are summarised and plotted.

        `name` is a key or a pattern in which `*` matches any run of characters (`/`
        included) and `?` one character: `"val/*"`. A definition applies to matching keys
        logged before and after it; when several match a key, the most recent one wins, and
        defining the same `name` again replaces its earlier definition.

        - `summary`: a comma-separated subset of `min`, `max`, `mean`, `first`, `last`,
          `best`, or `"none"` to leave the key out of the summary. With statistics,
          `run.summary[key]` is a dict such as `{"min": 0.1, "max": 2.0}`; without `summary`
          it stays the plain last value. NaN is skipped by min, max, best and mean.
        - `goal`: `"minimize"` or `"maximize"` (`"min"`/`"max"` too); `best` needs it.
        - `step_metric`: another metric to use as this one's x-axis
          (`steplog.open(dir).scalars(key, x="auto")`).

        Bad values raise `ValueError` naming the argument; definitions are written into the
        run, so readers see them even after a crash.
        """
        self._define_metric(name, step_metric=step_metric, summary=summary, goal=goal)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)

    def finish(self, exit_code: int | None = None) -> dict[str, Any]:
        """Writes everything logged, closes the run and returns its counters. Idempotent."""
        with self._finish_lock:
            if self._final_stats is not None:
                return self._final_stats
            stats = self._finish()
            self._final_stats = stats
        with _live_lock:
            if self in _live:
                _live.remove(self)
        if os.getpid() == self._owner_pid:
            meta = dict(self._meta)
            meta.update(
                status="finished" if not exit_code else "failed",
                exit_code=exit_code,
                ended=time.time(),
                stats=stats,
            )
            _env.write_json_atomic(self._run_file, meta)
        lost = stats["rows_dropped"] + stats["rows_failed"]
        if lost or stats["write_errors"]:
            warnings.warn(
                f"steplog: run {self.id}: {stats['rows_dropped']} rows dropped (queue full), "
                f"{stats['rows_failed']} rows not written ({stats['write_errors']} write errors; "
                f"first: {stats['first_error']}). The counts are recorded in the run.",
                _core.SteplogWarning,
                stacklevel=2,
            )
        return stats

    def __repr__(self) -> str:
        state = "finished" if self.finished else "running"
        return f"<steplog.Run {self.id} name={self.name!r} dir={self.dir!r} {state}>"


def init(
    project: str | None = None,
    name: str | None = None,
    dir: str | os.PathLike[str] = "steplog-runs",
    config: Any = None,
    **settings: Any,
) -> Run:
    """Starts a run in `<dir>/<run id>/` and makes it the target of `steplog.log()`.

    Settings (keyword arguments, else `STEPLOG_<NAME>` environment variables, else defaults):
    `flush_interval_s`, `batch_max_rows`, `batch_max_bytes`, `zstd_level`, `queue_capacity`,
    `overflow`, `block_timeout_s`, `fsync_interval_s`, `finish_timeout_s`.
    """
    if project is not None and not isinstance(project, str):
        raise TypeError(f"steplog.init: project must be str, got {type(project).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"steplog.init: name must be str, got {type(name).__name__}")
    if not isinstance(dir, (str, os.PathLike)):
        raise TypeError(f"steplog.init: dir must be a path, got {type(dir).__name__}")
    root = os.fspath(dir)
    if root == "":
        raise ValueError("steplog.init: dir must not be empty")
    if os.path.exists(root) and not os.path.isdir(root):
        raise NotADirectoryError(f"steplog.init: dir={root!r} exists and is not a directory")
    os.makedirs(root, exist_ok=True)
    cfg = _config_dict(config)
    for _ in range(100):
        run_id = _new_id()
        run_dir = os.path.join(root, run_id)
        try:
            os.mkdir(run_dir)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 36**8 ids
        raise FileExistsError(f"steplog.init: could not create a new run directory in {root!r}")
    ident = _env.identity()
    started = time.time()
    shard = f"p{ident['pid']}-{secrets.token_hex(3)}"
    meta: dict[str, Any] = {
        "format": "steplog-run",
        "format_version": _core.FORMAT_VERSION,
        "id": run_id,
        "name": name or run_id,
        "project": project or "default",
        "config": cfg,
        "created": started,
        "created_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "status": "running",
        "argv": _env.argv(),
        **_env.versions(),
        **ident,
        "settings": {k: v for k, v in settings.items() if v is not None},
    }
    run_file = os.path.join(run_dir, RUN_FILE)
    info = {
        **ident,
        "run_id": run_id,
        "shard": shard,
        "started": started,
        "writer": f"steplog {meta['steplog']} python {meta['python']}",
    }
    try:
        run = Run(os.path.join(run_dir, shard + SHARD_SUFFIX), info, settings)
    except BaseException:
        # Nothing was logged; leave no empty run behind.
        for leftover in os.listdir(run_dir):
            os.unlink(os.path.join(run_dir, leftover))
        os.rmdir(run_dir)
        raise
    _env.write_json_atomic(run_file, meta)
    run._setup(meta, run_file)
    with _live_lock:
        _live.append(run)
    run._make_current()
    return run


def current() -> Run | None:
    """The run `steplog.log()` writes to, if any."""
    run = _core.current_run()
    return run  # type: ignore[return-value]


def define_metric(
    name: str,
    step_metric: str | None = None,
    summary: str | None = None,
    goal: str | None = None,
) -> None:
    """`Run.define_metric` on the current run."""
    run = current()
    if run is None:
        raise _core.SteplogError("steplog.define_metric: no active run; call steplog.init() first")
    run.define_metric(name, step_metric=step_metric, summary=summary, goal=goal)


def finish(exit_code: int | None = None) -> dict[str, Any] | None:
    """Finishes the current run (see `Run.finish`). Does nothing without one."""
    run = current()
    if run is None:
        return None
    return run.finish(exit_code=exit_code)


def _finish_all_at_exit() -> None:
    with _live_lock:
        runs = [r for r in _live if r._owner_pid == os.getpid()]
    for run in runs:
        try:
            run.finish()
        except Exception as e:
            print(f"steplog: could not finish run {run.id} at exit: {e}")


atexit.register(_finish_all_at_exit)
