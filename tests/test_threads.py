"""Threads: a `log()` waiting for a slow disk under the default `block` policy releases the GIL
and the run's lock, so other Python threads keep running, and rows keep their order through
the wait; rows logged while another thread finishes are all written; a panic on the writer
thread is reported by `finish()`. A slow disk is the test-only hook STEPLOG_TEST_SINK_DELAY_MS
(rust/core/src/sink.rs), a panic STEPLOG_TEST_WRITER_PANIC (rust/core/src/writer/thread.rs)."""

import threading
import time
import warnings

import pytest

import steplog

from .conftest import run_python

# Every write but the shard header's takes this long, so a caller that needs ring space
# waits up to that long; a ticker frozen by such a wait misses ticks for as long.
DELAY_S = 0.5
# A ticker that ticks every 5 ms must never miss this much while a caller waits.
FROZEN_S = 0.25
# How long the callers log: several slow writes.
LOGGING_S = 2.5


class Ticker(threading.Thread):
    """Ticks every 5 ms and records the longest time between two ticks."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.longest = 0.0
        self.ticks = 0

    def run(self) -> None:
        last = time.monotonic()
        while not self.stop.is_set():
            time.sleep(0.005)  # ok-sleep: the ticker's period, not a synchronisation
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now


def slow_run(runs, monkeypatch):
    monkeypatch.setenv("STEPLOG_TEST_SINK_DELAY_MS", str(int(DELAY_S * 1000)))
    # A ring of 4 chunks of 2 rows, which the callers fill within one slow write; the writer
    # writes whatever it has at each of its ticks.
    return steplog.init(dir=runs, queue_capacity=8, block_timeout_s=60, flush_interval_s=0.01)


@pytest.mark.parametrize("path", ["dict", "handle"])
def test_a_log_waiting_for_a_slow_disk_never_freezes_other_threads(runs, monkeypatch, path):
    run = slow_run(runs, monkeypatch)
    x = run.metric("x")
    ticker = Ticker()
    ticker.start()
    # The writer takes rows as fast as they come until its first write; from then on each
    # write takes DELAY_S, during which the callers fill the ring and wait.
    longest_call, n = 0.0, 0
    end = time.monotonic() + LOGGING_S
    while time.monotonic() < end:
        t = time.monotonic()
        if path == "dict":
            run.log({"x": n})
        else:
            x.log(n)
        longest_call = max(longest_call, time.monotonic() - t)
        n += 1
    ticker.stop.set()
    ticker.join()
    stats = run.finish()
    assert longest_call >= DELAY_S / 2, f"log() never waited ({longest_call:.3f} s)"
    assert ticker.longest < FROZEN_S, f"the ticker froze for {ticker.longest:.3f} s"
    assert stats["rows_dropped"] == 0 and stats["rows_written"] == n
    steps, values = steplog.open(run.dir).scalars("x")
    assert steps.tolist() == list(range(n)) and values.tolist() == list(range(n))


def test_threads_waiting_together_keep_their_rows_in_order(runs, monkeypatch):
    run = slow_run(runs, monkeypatch)
    handle = run.metric("b")
    end = time.monotonic() + LOGGING_S
    counts = {}

    def by_dict() -> None:
        i = 0
        while time.monotonic() < end:
            run.log({"a": i})
            i += 1
        counts["a"] = i

    def by_handle() -> None:
        i = 0
        while time.monotonic() < end:
            handle.log(i)
            i += 1
        counts["b"] = i

    ticker = Ticker()
    ticker.start()
    workers = [threading.Thread(target=f) for f in (by_dict, by_handle)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ticker.stop.set()
    ticker.join()
    stats = run.finish()
    assert ticker.longest < FROZEN_S, f"the ticker froze for {ticker.longest:.3f} s"
    total = counts["a"] + counts["b"]
    assert stats["rows_dropped"] == 0 and stats["rows_written"] == total
    reader = steplog.open(run.dir)
    a_steps, a = reader.scalars("a")
    b_steps, b = reader.scalars("b")
    assert a.tolist() == list(range(counts["a"])), "the dict thread's rows, in order"
    assert b.tolist() == list(range(counts["b"])), "the handle thread's rows, in order"
    assert sorted([*a_steps.tolist(), *b_steps.tolist()]) == list(range(total)), "once each"


def test_rows_logged_while_another_thread_finishes_are_all_written(runs):
    run = steplog.init(dir=runs, flush_interval_s=0.001)
    wide = {f"k{j}": float(j) for j in range(200)}  # a long call: finish() meets it mid-way
    accepted = [0, 0, 0]
    started = threading.Barrier(4)

    def work(t: int) -> None:
        started.wait()
        while True:
            try:
                run.log({**wide, "t": t})
            except steplog.ClosedError:
                return
            accepted[t] += 1

    workers = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for w in workers:
        w.start()
    started.wait()
    deadline = time.monotonic() + 30
    while sum(accepted) < 50 and time.monotonic() < deadline:
        time.sleep(0.001)  # ok-sleep: polling the workers' progress
    stats = run.finish()
    for w in workers:
        w.join()
    assert stats["rows_unwritten"] == 0 and stats["rows_dropped"] == 0
    reader = steplog.open(run.dir)
    assert reader.rows == stats["rows_written"] == sum(accepted)
    _, t = reader.scalars("t")
    assert [int((t == k).sum()) for k in range(3)] == accepted


def test_a_panic_on_the_writer_thread_is_reported_by_finish(tmp_path):
    r = run_python(
        f"""
        import warnings, steplog
        run = steplog.init(dir={str(tmp_path)!r})
        for i in range(10):
            run.log({{"x": i}})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stats = run.finish()
        print(stats["writer_panic"])
        print(stats["rows_unwritten"])
        for w in caught:
            print(w.category.__name__, w.message)
        """,
        env={"STEPLOG_TEST_WRITER_PANIC": "1"},
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    panic, unwritten, *caught = r.stdout.strip().splitlines()
    assert "STEPLOG_TEST_WRITER_PANIC" in panic
    assert unwritten == "10"
    assert len(caught) == 1 and caught[0].startswith("SteplogWarning"), caught
    assert "writer thread stopped with a panic" in caught[0] and "10 rows" in caught[0]


def test_no_panic_is_reported_normally(run):
    run.log({"x": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = run.finish()
    assert stats["writer_panic"] is None
