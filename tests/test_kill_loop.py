"""SIGKILL at random moments (seeded; STEPLOG_KILL_SEED picks another seed): a child logs as
fast as it can with a short flush interval and prints how many rows its writer has written;
it is killed after a random number of those reports (counted from the first that is not 0).
What is read back must be a gap-free prefix of the steps with exact values, covering at least
every row the child had reported written, with nothing worse than a torn tail. Each child runs
under a watchdog."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings

import steplog

SEED = int(os.environ.get("STEPLOG_KILL_SEED", "1234"))
ITERATIONS = 10

CHILD = """
import sys, steplog
run = steplog.init(dir=sys.argv[1], flush_interval_s=0.01)
print(run.dir, flush=True)
every = int(sys.argv[2])
i = 0
while True:
    run.log({"x": i, "y": i * 0.25, "tag": "t%d" % i} if i % 1000 == 0 else {"x": i, "y": i * 0.25})
    i += 1
    if i % every == 0:
        print(run.stats()["rows_written"], flush=True)
"""


def kill_once(tmp_path, rng: random.Random) -> tuple[str, int]:
    """Runs a child until its k-th report, SIGKILLs it; returns (run dir, rows it reported)."""
    every = rng.choice([1000, 5000, 20000])
    reports = rng.randint(0, 20)  # counted from the first report of written rows
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(every)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        run_dir = proc.stdout.readline().strip()
        written = 0
        while reports >= 0:
            line = proc.stdout.readline()
            if not line:
                break
            written = int(line)
            reports -= written > 0
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err
    assert run_dir, err
    return run_dir, written


def test_sigkill_at_random_moments_keeps_a_gap_free_prefix(tmp_path):
    rng = random.Random(SEED)
    for n in range(ITERATIONS):
        run_dir, written = kill_once(tmp_path, rng)
        context = f"seed {SEED}, iteration {n}, {written} rows reported written"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a torn tail is expected and quiet; damage is not
            reader = steplog.open(run_dir)
        assert all(p["torn_tail"] for p in reader.problems), (context, reader.problems)
        assert reader.meta["status"] == "running", context
        assert written > 0 and "x" in reader.keys(), context
        steps, x = reader.scalars("x")
        rows = len(steps)
        assert steps.tolist() == list(range(rows)), f"not a gap-free prefix ({context})"
        assert x.tolist() == list(range(rows)), context
        assert reader.scalars("y")[1].tolist() == [i * 0.25 for i in range(rows)], context
        assert reader.history("tag") == [(i, f"t{i}") for i in range(0, rows, 1000)], context
        assert rows >= written, f"{rows} rows read back ({context})"
        assert reader.rows == rows and reader.dropped == 0, context


OPEN_ROW_CHILD = """
import sys, steplog
run = steplog.init(dir=sys.argv[1], flush_interval_s=0.2)
run.define_metric("x", summary="mean,first,last")
print(run.dir, flush=True)
for i in range(10_000):
    run.log({"x": i, "y": i * 0.5}, step=i)
print(run.step, flush=True)  # still 9999: the row of step 9999 is open
sys.stdin.readline()  # killed while waiting here
"""


def test_the_open_row_survives_sigkill_after_the_flush_interval(tmp_path):
    # With step=, the last row stays open (nothing commits it but a larger step or finish);
    # the writer writes it provisionally within the flush interval, so a SIGKILL after that
    # loses nothing, and the summary counts it once.
    proc = subprocess.Popen(
        [sys.executable, "-c", OPEN_ROW_CHILD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        run_dir = proc.stdout.readline().strip()
        step = proc.stdout.readline().strip()
        assert run_dir and step, proc.stderr.read() if proc.poll() is not None else ""
        # Poll the shard file (bounded) until the last step is in it, provisionally.
        deadline = time.monotonic() + 30
        rows = 0
        while time.monotonic() < deadline:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a write may be under way: a torn tail
                rows = steplog.open(run_dir).rows
            if rows == 10_000:
                break
            time.sleep(0.02)  # ok-sleep: polling the file
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert int(step) == 9_999, "the last row was still open when the child was killed"
    assert rows == 10_000, f"the open row never reached the file ({rows} rows)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reader = steplog.open(run_dir)
    assert all(p["torn_tail"] for p in reader.problems), reader.problems
    steps, x = reader.scalars("x")
    assert steps.tolist() == list(range(10_000)) and x.tolist() == list(range(10_000))
    assert reader.scalars("y")[1].tolist() == [i * 0.5 for i in range(10_000)]
    assert reader.rows == 10_000
    assert reader.summary["x"] == {"mean": 4999.5, "first": 0, "last": 9999}
