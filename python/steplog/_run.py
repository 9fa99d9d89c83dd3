"""Runs: `init()`, the `Run` class, module-level `log`/`finish`, and finishing at exit."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import string
import sys
import threading
import time
import warnings
from typing import Any

from . import _core, _env, _init_args
from ._summary import Summary

RUN_FILE = "run.json"
SHARD_SUFFIX = ".steplog"
#: Set by `init()` so that workers started with spawn/forkserver find the run.
RUN_DIR_ENV = "STEPLOG_RUN_DIR"
#: The collector's token, for runs that stream to one.
TOKEN_ENV = "STEPLOG_TOKEN"
#: Where runs go when `init(dir=)` is not given (else `DEFAULT_DIR`); `steplog show` and
#: `steplog ls` look there too.
DIR_ENV = "STEPLOG_DIR"
DEFAULT_DIR = "steplog-runs"
_ID_ALPHABET = string.ascii_lowercase + string.digits

_live: list[Run] = []
_live_lock = threading.RLock()  # re-entrant: signal handlers finish runs


def _new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


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

    def _setup(self, meta: dict[str, Any], run_file: str, owner: bool = True) -> None:
        self.id = meta["id"]
        self.name = meta["name"]
        self.project = meta["project"]
        self.dir = os.path.dirname(run_file)
        self.config = meta.get("config", {})
        self._meta = meta
        self._run_file = run_file
        # The process that created the run writes run.json; forked or attached processes
        # only write their own shard.
        self._owner_pid = os.getpid() if owner else None
        self._final_stats: dict[str, Any] | None = None
        # Re-entrant: a SIGTERM handler may finish the run while finish() is running.
        self._finish_lock = threading.RLock()
        self._definitions: list[tuple[Any, Any, Any, Any]] = []
        # Summary reads (see `Summary`): the version the writer was last flushed for, and the
        # last whole copy with its version.
        self._summary_flushed: tuple[int, int, int] | None = None
        self._summary_cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._exported_token: str | None = None

    def _open_process_shard(self) -> None:
        """Opens this process's shard (called at the first `log()` of a forked child)."""
        from . import _process

        path, info = _shard_for(self.id, self.dir)
        self._attach_shard(path, info)
        for args in self._definitions:
            self._define_metric(*args)
        _process.install_exit_hooks()

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
          `best`, or `"none"` to leave the key out of the summary, in any case (`"MAX,Best"`).
          With statistics, `run.summary[key]` is a dict such as `{"min": 0.1, "max": 2.0}`;
          without `summary` it stays the plain last value. NaN is skipped by min, max, best
          and mean.
        - `goal`: `"minimize"` or `"maximize"` (`"min"`/`"max"` too, in any case); `best`
          needs it.
        - `step_metric`: another metric to use as this one's x-axis
          (`steplog.open(dir).scalars(key, x="auto")`).

        Bad values raise `ValueError` naming the argument; definitions are written into the
        run, so readers see them even after a crash.
        """
        self._define_metric(name, step_metric=step_metric, summary=summary, goal=goal)
        self._definitions.append((name, step_metric, summary, goal))

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)

    def finish(self, exit_code: int | None = None) -> dict[str, Any]:
        """Writes everything logged, closes the run and returns its counters. Idempotent.

        Returns within `finish_timeout_s` even when the disk is wedged; `rows_unwritten` in the
        result then says how many rows did not make it (a warning says so too). In a forked or
        attached worker it closes that process's shard only.
        """
        with self._finish_lock:
            if self._final_stats is not None:
                return self._final_stats
            if os.getpid() == self._owner_pid and self._networked and not self.finished:
                final = dict(self._meta, status="finished" if not exit_code else "failed")
                final.update(exit_code=exit_code, ended=time.time())
                try:
                    self._put_run_meta(json.dumps(final, default=str))
                except _core.SteplogError as e:  # the queue is wedged: finish anyway
                    warnings.warn(
                        f"steplog: run {self.id}: could not queue run.json for the collector: {e}",
                        _core.SteplogWarning,
                        stacklevel=2,
                    )
            stats = self._finish()  # idempotent: a nested call returns at once
            if self._final_stats is not None:  # a signal handler finished it meanwhile
                return self._final_stats
            self._final_stats = stats
        with _live_lock:
            if self in _live:
                _live.remove(self)
        if os.getpid() == self._owner_pid:
            if os.environ.get(RUN_DIR_ENV) == os.path.abspath(self.dir):
                del os.environ[RUN_DIR_ENV]
            if self._exported_token is not None and os.environ.get(TOKEN_ENV) == (
                self._exported_token
            ):
                del os.environ[TOKEN_ENV]
            meta = dict(self._meta)
            meta.update(
                status="finished" if not exit_code else "failed",
                exit_code=exit_code,
                ended=time.time(),
                stats=stats,
            )
            try:
                _env.write_json_atomic(self._run_file, meta)
            except OSError as e:
                # A full disk never raises here: counted, warned below, and the shards' close
                # frames still tell readers that the run ended.
                problem = f"could not write {self._run_file}: {e.strerror or e}"
                stats["write_errors"] += 1
                stats["first_error"] = stats["first_error"] or problem
                stats["run_json_error"] = problem
        if stats.get("writer_panic"):
            warnings.warn(
                f"steplog: run {self.id}: the writer thread stopped with a panic "
                f"({stats['writer_panic']}); {stats['rows_unwritten']} rows were not written. "
                "Please report this as a steplog bug.",
                _core.SteplogWarning,
                stacklevel=2,
            )
        elif stats["rows_unwritten"]:
            warnings.warn(
                f"steplog: run {self.id}: the writer did not finish within finish_timeout_s; "
                f"{stats['rows_unwritten']} rows were not written (first error: "
                f"{stats['first_error']}).",
                _core.SteplogWarning,
                stacklevel=2,
            )
        if stats["rows_unacked"]:
            spill = stats["spill_path"]
            sink = self._meta.get("settings", {}).get("sink") or os.environ.get("STEPLOG_SINK")
            warnings.warn(
                f"steplog: run {self.id}: {stats['rows_unacked']} rows were not acknowledged by "
                f"the collector {sink} (first network error: {stats['first_net_error']}). They "
                f"are kept in {spill}; send them with `steplog push {spill} --sink {sink}`.",
                _core.SteplogWarning,
                stacklevel=2,
            )
        lost = stats["rows_dropped"] + stats["rows_failed"]
        if lost or stats["write_errors"]:
            warnings.warn(
                f"steplog: run {self.id}: {stats['rows_dropped']} rows dropped (queue full), "
                f"{stats['rows_failed']} rows not written ({stats['write_errors']} write errors; "
                f"first: {stats['first_error']}). The counts are recorded in the run."
                + (
                    f" run.json still says 'running' ({stats['run_json_error']}); readers see"
                    " that the run ended from its shards."
                    if stats.get("run_json_error")
                    else ""
                ),
                _core.SteplogWarning,
                stacklevel=2,
            )
        return stats

    def __repr__(self) -> str:
        state = "finished" if self.finished else "running"
        return f"<steplog.Run {self.id} name={self.name!r} dir={self.dir!r} {state}>"


def _shard_for(
    run_id: str, run_dir: str, started: float | None = None
) -> tuple[str, dict[str, Any]]:
    """A new shard's path and header fields for this process."""
    ident = _env.identity()
    shard = f"p{ident['pid']}-{secrets.token_hex(3)}"
    versions = _env.versions()
    info = {
        **ident,
        "run_id": run_id,
        "shard": shard,
        "started": time.time() if started is None else started,
        "writer": f"steplog {versions['steplog']} python {versions['python']}",
    }
    return os.path.join(run_dir, shard + SHARD_SUFFIX), info


def init(
    project: str | None = None,
    name: str | None = None,
    dir: str | os.PathLike[str] | None = None,
    config: Any = None,
    sink: str | None = None,
    token: str | None = None,
    **settings: Any,
) -> Run:
    """Starts a run in `<dir>/<run id>/` and makes it the target of `steplog.log()`.

    `dir` defaults to `$STEPLOG_DIR`, else `steplog-runs` (in the working directory).

    `sink`: where the shards go. The default (or `"file"`) writes them into the run
    directory; `"tcp://HOST:PORT"` (or `"tls://HOST:PORT"`) streams them to a collector,
    `steplog serve`, which writes the same files on its side, while the local run directory
    keeps `run.json` and any frames the collector has not acknowledged. `token` is the
    collector's token (else `STEPLOG_TOKEN`; it is exported to worker processes through that
    variable and never written to disk). `sink` also comes from `STEPLOG_SINK`.

    Settings (keyword arguments, else `STEPLOG_<NAME>` environment variables, else defaults):
    `flush_interval_s`, `batch_max_rows`, `batch_max_bytes`, `zstd_level`, `queue_capacity`,
    `overflow`, `block_timeout_s`, `fsync_interval_s`, `finish_timeout_s`, `nan_value`,
    `inf_value`; for network sinks `net_buffer_bytes`, `net_timeout_s`, `tls_ca`.
    """
    shown = _init_args.short_repr
    if dir is None:
        dir = os.environ.get(DIR_ENV) or DEFAULT_DIR
    for arg, v in (("project", project), ("name", name), ("sink", sink)):
        if v is not None and not isinstance(v, str):
            raise TypeError(f"steplog.init: {arg} must be str, got {type(v).__name__} {shown(v)}")
    if not isinstance(dir, (str, os.PathLike)):
        raise TypeError(f"steplog.init: dir must be a path, got {type(dir).__name__} {shown(dir)}")
    if token is not None and not isinstance(token, str):  # NOTE: a token is never shown
        raise TypeError(f"steplog.init: token must be str, got {type(token).__name__}")
    _init_args.check_settings(settings)
    if sink is not None:
        settings["sink"] = sink
    root = os.fspath(dir)
    if root == "":
        raise ValueError("steplog.init: dir must not be empty")
    if os.path.exists(root) and not os.path.isdir(root):
        raise NotADirectoryError(f"steplog.init: dir={root!r} exists and is not a directory")
    cfg = _init_args.config_dict(config)
    _init_args.make_dir(root, root, exist_ok=True)
    for _ in range(100):
        run_id = _new_id()
        run_dir = os.path.join(root, run_id)
        try:
            _init_args.make_dir(run_dir, root, exist_ok=False)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 36**8 ids
        raise FileExistsError(f"steplog.init: could not create a new run directory in {root!r}")
    ident = _env.identity()
    started = time.time()
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
    shard_path, info = _shard_for(run_id, run_dir, started)
    # NOTE: the token reaches the Rust side but never run.json.
    run_settings = dict(settings, token=token) if token is not None else settings
    try:
        run = Run(shard_path, info, run_settings)
    except BaseException:
        # Nothing was logged; leave no empty run behind.
        for leftover in os.listdir(run_dir):
            os.unlink(os.path.join(run_dir, leftover))
        os.rmdir(run_dir)
        raise
    try:
        _env.write_json_atomic(run_file, meta)
    except OSError as e:
        _abandon(run, run_dir)
        reason = e.strerror or str(e)
        raise OSError(e.errno, f"steplog.init: could not write {run_file}: {reason}") from e
    run._setup(meta, run_file)
    if run._networked:
        run._put_run_meta(json.dumps(meta, default=str))
        if token is not None and os.environ.get(TOKEN_ENV) != token:
            os.environ[TOKEN_ENV] = token  # spawned workers authenticate with it
            run._exported_token = token
    with _live_lock:
        _live.append(run)
    run._make_current()
    os.environ[RUN_DIR_ENV] = os.path.abspath(run_dir)
    from . import _process

    _process.install_owner_hooks()
    _warn_if_another_run_is_open(run)
    return run


#: Whether the warning about a second open run was shown (once per process).
_warned_open_runs = False


def _warn_if_another_run_is_open(new: Run) -> None:
    global _warned_open_runs
    if _warned_open_runs:
        return
    pid = os.getpid()
    with _live_lock:
        others = [r for r in _live if r is not new and r._owner_pid == pid and not r.finished]
    if not others:
        return
    _warned_open_runs = True
    names = ", ".join(r.id for r in others)
    warnings.warn(
        f"steplog.init: run(s) {names} are still open; the new run {new.id} is now the one "
        "steplog.log() writes to (each open run's own run.log() still writes to it). Call "
        "run.finish() when a run is done. This warning is shown once per process.",
        _core.SteplogWarning,
        stacklevel=3,
    )


def _abandon(run: Run, run_dir: str) -> None:
    """Undoes a run that `init()` could not complete: stops its writer and removes its
    directory (nothing was logged into it yet)."""
    with contextlib.suppress(Exception):  # discarded either way; the caller raises
        run._finish()
    shutil.rmtree(run_dir, ignore_errors=True)


def _attach_from_env() -> Run | None:
    """In a worker started with spawn or forkserver: the run named by `STEPLOG_RUN_DIR`,
    attached as a new shard of this process (called by the first module-level `log()`)."""
    existing = current()
    if existing is not None:
        return existing
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        return None
    run_file = os.path.join(run_dir, RUN_FILE)
    try:
        with open(run_file, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise _core.SteplogError(
            f"steplog.log: {RUN_DIR_ENV}={run_dir!r} does not name a readable run ({e})"
        ) from e
    if meta.get("status") != "running":
        return None
    shard_path, info = _shard_for(meta["id"], run_dir)
    run = Run(shard_path, info, meta.get("settings") or {})
    run._setup(meta, run_file, owner=False)
    with _live_lock:
        _live.append(run)
    run._make_current()
    from . import _process

    _process.install_exit_hooks()
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


def finish_all(exit_code: int | None = None) -> None:
    """Finishes every run this process writes: whole runs it created, its own shard of runs
    it forked from or attached to. Never raises (it runs at exit)."""
    for run in list(_live):
        if run._owner_pid != os.getpid() and not run._has_shard:
            continue
        try:
            run.finish(exit_code=exit_code)
        except Exception as e:
            print(f"steplog: could not finish run {run.id} at exit: {e}", file=sys.stderr)


atexit.register(finish_all)
