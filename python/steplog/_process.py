"""Processes: forked children, spawn/forkserver workers, and every way a process ends.

- fork: before it, each run hands its committed rows to its writer; in the child, each run
  forgets the parent's shard without touching it (its locks and writer thread belong to the
  parent) and opens its own shard at its first `log()`.
- A child or attached worker finishes its shard at normal exit (atexit), at the end of a
  multiprocessing child (its finalizers run before `os._exit`), and on a direct `os._exit`
  (wrapped in such processes only).
- SIGTERM: when no handler is installed, the process that created a run finishes everything
  and then dies of SIGTERM as it would have (children inherit this). A PyTorch DataLoader
  worker (whose C handler steplog replaces) finishes its shard and exits 0 instead, as torch's
  handler does when the loader ends its workers with SIGTERM at interpreter exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any

from . import _env, _run

_exit_hooks_pid: int | None = None
_owner_hooks_installed = False


def _before_fork() -> None:
    for run in list(_run._live):
        with contextlib.suppress(Exception):  # never stop a fork
            run._hand_over()


def _after_fork_in_child() -> None:
    global _exit_hooks_pid
    _exit_hooks_pid = None
    # Locks the parent's other threads may have held at the fork are replaced, not waited on.
    _run._live_lock = threading.RLock()
    for run in list(_run._live):
        run._after_fork_child()
        run._finish_lock = threading.RLock()


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def finish_process_shards() -> None:
    """Finishes this process's shards of runs it did not create (never raises)."""
    for run in list(_run._live):
        if run._owner_pid == os.getpid() or not run._has_shard:
            continue
        try:
            run.finish()
        except Exception as e:
            print(f"steplog: could not finish shard of run {run.id}: {e}", file=sys.stderr)


def _wrap_os_exit() -> None:
    real = os._exit
    if getattr(real, "_steplog", False):
        return

    def _exit(code: int) -> None:  # type: ignore[misc]
        try:
            finish_process_shards()
        finally:
            real(code)

    _exit._steplog = True  # type: ignore[attr-defined]
    _exit.__wrapped__ = real  # type: ignore[attr-defined]
    _exit.__doc__ = real.__doc__
    os._exit = _exit  # type: ignore[assignment]


def install_exit_hooks() -> None:
    """In a forked child or attached worker, once: make every way out finish its shard."""
    global _exit_hooks_pid
    if _exit_hooks_pid == os.getpid():
        return
    _exit_hooks_pid = os.getpid()
    mp_util: Any = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        # multiprocessing children run their finalizers, then call os._exit.
        mp_util.Finalize(None, finish_process_shards, exitpriority=100)
    _wrap_os_exit()
    # Pool.terminate() and DataLoader shutdown end workers with SIGTERM.
    _install_sigterm()


def _on_sigterm(signum: int, frame: Any) -> None:
    _run.finish_all(exit_code=128 + signum)
    if _env._dataloader_worker() is not None:
        # What torch's own handler (which this one replaced) does when the DataLoader ends
        # its workers with SIGTERM: exit 0, so that the loader's SIGCHLD handler does not
        # raise "worker ... is killed by signal" in the main process.
        getattr(os._exit, "__wrapped__", os._exit)(0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_sigterm() -> None:
    """Finish on SIGTERM when no Python code handles it (main thread only).

    Python's record of the handler can be stale: a forked child inherits the parent's
    `_on_sigterm` while C code (torch's DataLoader workers) has since installed its own, which
    `_exit`s without flushing anything, so an inherited `_on_sigterm` is installed again."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None, _on_sigterm):
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def install_owner_hooks() -> None:
    """In the process that creates a run: finish on SIGTERM when nobody else handles it."""
    global _owner_hooks_installed
    if not _owner_hooks_installed:
        _owner_hooks_installed = True
        _install_sigterm()
