"""Signals sent to the process reach Python's handlers: the threads steplog starts block the
asynchronous signals, so the kernel never hands a SIGTERM or a Ctrl-C to a steplog thread
while the main thread sleeps in a wait that only a signal would interrupt (which left a
terminated DataLoader or multiprocessing worker alive)."""

from __future__ import annotations

import os
import signal

import pytest

import steplog

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/task"), reason="reads thread signal masks from /proc"
)


def _blocked_by_thread() -> dict[str, int]:
    out = {}
    for tid in os.listdir("/proc/self/task"):
        base = f"/proc/self/task/{tid}"
        with open(f"{base}/comm") as f:
            name = f.read().strip()
        with open(f"{base}/status") as f:
            mask = next(line for line in f if line.startswith("SigBlk:"))
        out[name] = int(mask.split()[1], 16)
    return out


def _bit(sig: int) -> int:
    return 1 << (sig - 1)


def test_the_writer_thread_blocks_asynchronous_signals_and_the_main_thread_does_not(tmp_path):
    run = steplog.init(dir=tmp_path)
    run.log({"x": 1.0})
    run.flush()
    masks = _blocked_by_thread()
    run.finish()
    writer = masks["steplog-writer"]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
        assert writer & _bit(sig), f"the writer thread does not block {sig.name}"
    assert not writer & _bit(signal.SIGSEGV)
    main = next(m for name, m in masks.items() if name not in ("steplog-writer",))
    assert not main & _bit(signal.SIGTERM)
