"""A disk that is completely full, on a real (small) tmpfs: `finish()` and every way out of a
process warn once and never raise, leave no temporary file, write what still fits, and the
shards' close frames tell the reader that the run ended. Also `init()` when run.json cannot be
written: it cleans up and raises an OSError naming the file."""

from __future__ import annotations

import errno
import glob
import os
import subprocess
import warnings

import pytest

import steplog
from steplog import _env

from .conftest import run_python
from .decoder_shard import decode_shard as decode_independently
from .test_reliability import shard_bytes


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs, unmounted afterwards; skipped where mounting is not permitted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; this test runs as a user")
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot run mount here: {e}")
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def fill(path) -> None:
    """Writes `path` until the disk holds not one more byte."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break


def steplog_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, steplog.SteplogWarning)]


def fill_before_writing_run_json(monkeypatch, filler) -> None:
    """Makes the disk full just before finish() writes run.json (the shard's kept room,
    given back when it closes, is taken too), then lets the real write run."""
    real = _env.write_json_atomic

    def write(path, data):
        fill(filler)
        real(path, data)

    monkeypatch.setattr(_env, "write_json_atomic", write)


def test_rows_that_do_not_fit_are_counted_and_the_close_frame_still_lands(small_disk):
    run = steplog.init(project="full", dir=small_disk / "runs")
    for i in range(2000):
        run.log({"x": i, "y": i * 0.5})
    run.flush()
    fill(small_disk / "filler")
    for i in range(2000, 60_000):
        run.log({"x": i, "y": i * 0.5})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = run.finish()
    messages = steplog_warnings(caught)
    assert len(messages) == 1, messages
    assert "rows not written" in messages[0] and "No space left" in messages[0]
    assert stats["rows_failed"] > 0
    assert stats["rows_written"] + stats["rows_failed"] == 60_000
    r = steplog.open(run.dir)
    xs = r.scalars("x")[1]
    assert len(xs) == stats["rows_written"]
    assert list(xs) == list(range(len(xs)))
    (shard,) = r.shards
    assert shard["closed"] and shard["close"]["rows_failed"] == stats["rows_failed"]
    # The room kept for the close frame came back when the shard closed: run.json fitted.
    assert r.meta["status"] == "finished" and "stats" in r.meta


def test_finish_when_run_json_cannot_be_written_warns_once_and_the_reader_sees_the_end(
    small_disk, monkeypatch
):
    run = steplog.init(project="full", dir=small_disk / "runs")
    for i in range(2000):
        run.log({"x": i})
    fill_before_writing_run_json(monkeypatch, small_disk / "filler")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = run.finish()
    messages = steplog_warnings(caught)
    assert len(messages) == 1, messages
    assert "run.json" in messages[0] and "No space left" in messages[0], messages[0]
    assert "No space left" in stats["run_json_error"]
    assert stats["write_errors"] == 1
    assert (stats["rows_written"], stats["rows_failed"]) == (2000, 0)
    assert glob.glob(os.path.join(run.dir, "run.json.tmp-*")) == []
    assert run.finish() is stats  # idempotent, and quiet the second time
    r = steplog.open(run.dir)
    assert r.meta["status"] == "finished"
    assert r.shards[0]["closed"]
    assert list(r.scalars("x")[1]) == list(range(2000))


EXIT_SCRIPT = """
import os, signal, sys
import steplog
from steplog import _env

def filled():
    with open({filler!r}, "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            while True:
                try:
                    f.write(b"\\0" * size)
                except OSError:
                    break

real = _env.write_json_atomic
def write(path, data):
    if data.get("status") != "running":  # only finish()'s write finds the disk full
        filled()
    real(path, data)
_env.write_json_atomic = write

how = {how!r}
if how == "with":
    with steplog.init(project="full", dir={runs!r}) as run:
        print(run.dir, flush=True)
        for i in range(500):
            run.log({{"x": i}})
    print("after with", flush=True)
else:
    run = steplog.init(project="full", dir={runs!r})
    print(run.dir, flush=True)
    for i in range(500):
        run.log({{"x": i}})
    run.flush()
    if how == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()
"""


@pytest.mark.parametrize(("how", "returncode"), [("atexit", 0), ("with", 0), ("sigterm", -15)])
def test_every_way_out_survives_a_full_disk(small_disk, how, returncode):
    runs = str(small_disk / "runs")
    code = EXIT_SCRIPT.format(filler=str(small_disk / "filler"), how=how, runs=runs)
    done = run_python(code, timeout=60)
    assert done.returncode == returncode, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "could not finish" not in done.stderr, done.stderr
    assert done.stderr.count("SteplogWarning") == 1, done.stderr
    assert "run.json" in done.stderr
    run_dir = done.stdout.splitlines()[0]
    assert glob.glob(os.path.join(run_dir, "run.json.tmp-*")) == []
    r = steplog.open(run_dir)
    assert r.meta["status"] == "finished"
    assert len(r.scalars("x")[1]) == 500
    if how == "with":
        assert "after with" in done.stdout


def test_init_on_a_full_disk_raises_naming_run_json_and_leaves_nothing(small_disk):
    runs = small_disk / "runs"
    runs.mkdir()
    fill(small_disk / "filler")
    with pytest.raises(OSError, match=r"run\.json: No space left") as e:
        steplog.init(project="full", dir=runs)
    assert e.value.errno == errno.ENOSPC
    assert os.listdir(runs) == []
    assert steplog.current() is None


def writer_threads() -> int:
    names = []
    for task in glob.glob("/proc/self/task/*/comm"):
        try:
            with open(task) as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return names.count("steplog-writer")


def test_init_that_cannot_write_run_json_stops_its_writer_and_removes_the_run(
    tmp_path, monkeypatch
):
    def refuse(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    runs = tmp_path / "runs"
    before = writer_threads()
    monkeypatch.setattr(_env, "write_json_atomic", refuse)
    with pytest.raises(PermissionError) as e:
        steplog.init(project="x", dir=runs)
    message = str(e.value)
    assert "run.json" in message and str(runs) in message and "Permission denied" in message
    assert os.listdir(runs) == []
    assert steplog.current() is None
    assert os.environ.get("STEPLOG_RUN_DIR") is None
    assert writer_threads() == before
    monkeypatch.undo()
    # The next init works as usual.
    run = steplog.init(project="x", dir=runs)
    run.log({"a": 1})
    run.finish()
    assert steplog.open(run.dir).meta["status"] == "finished"


def test_a_write_that_found_the_disk_full_is_retried_in_smaller_frames(tmp_path, monkeypatch):
    # Writes: 1 the header, then one per flush. Writes 4 and 5 find the disk full (they
    # write half their bytes, which the sink cuts back); the batch is then written again in
    # halves, which fit: nothing is lost, and only the two failed writes are counted.
    monkeypatch.setenv("STEPLOG_TEST_SINK_FAIL", "3:2:ENOSPC")
    run = steplog.init(dir=tmp_path / "runs", flush_interval_s=1000)
    for g in range(5):
        for i in range(g * 10, g * 10 + 10):
            run.log({"x": i})
        run.flush()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = run.finish()
    assert (stats["rows_written"], stats["rows_failed"], stats["write_errors"]) == (50, 0, 2)
    messages = steplog_warnings(caught)
    assert len(messages) == 1 and "0 rows not written (2 write errors" in messages[0]
    s = decode_independently(shard_bytes(run.dir))
    assert not s.damage and not s.bad_frames and not s.missing and s.gaps == []
    assert steplog.open(run.dir).scalars("x")[1].tolist() == list(range(50))
