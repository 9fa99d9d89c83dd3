"""Reliability: overflow accounting under each policy, full and failing disks, a wedged disk at
finish, sync(), and names that must never become paths. A slow or failing disk is simulated
with the test-only hooks STEPLOG_TEST_SINK_DELAY_MS and STEPLOG_TEST_SINK_FAIL (see
rust/core/src/sink.rs); anything that can hang runs in a subprocess with a timeout."""

import os
import re
import warnings

import pytest

import steplog

from .conftest import run_python
from .decoder_shard import decode_shard as decode_independently


def shard_bytes(run_dir) -> bytes:
    [shard] = [f for f in os.listdir(run_dir) if f.endswith(".steplog")]
    with open(os.path.join(run_dir, shard), "rb") as f:
        return f.read()


def finish_warnings(run) -> tuple[dict, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = run.finish()
    assert all(issubclass(w.category, steplog.SteplogWarning) for w in caught)
    return stats, [str(w.message) for w in caught]


@pytest.mark.parametrize("policy", ["drop_new", "drop_oldest", "block"])
def test_overflow_accounting_is_exact_and_recorded(runs, monkeypatch, policy):
    # A tiny queue and a disk that takes 20 ms per write: rows are dropped under every policy
    # (under `block`, after waiting block_timeout_s), and each drop is counted exactly.
    monkeypatch.setenv("STEPLOG_TEST_SINK_DELAY_MS", "20")
    run = steplog.init(
        dir=runs, queue_capacity=8, overflow=policy, block_timeout_s=0.002, batch_max_rows=4
    )
    logged = 400
    for i in range(logged):
        run.log({"x": i})
    stats, messages = finish_warnings(run)
    reader = steplog.open(run.dir)
    steps, values = reader.scalars("x")
    persisted = len(steps)
    dropped = stats["rows_dropped"]
    assert dropped > 0
    assert logged - persisted == dropped == reader.dropped
    assert stats["rows_written"] == persisted and stats["rows_failed"] == 0
    assert values.tolist() == steps.tolist(), "each surviving row at its own step"
    assert reader.shards[0]["gaps"] and {r for _, r in reader.shards[0]["gaps"]} == {"queue_full"}
    assert len(messages) == 1 and f"{dropped} rows dropped (queue full)" in messages[0]


def test_block_waits_for_a_slow_disk_and_loses_nothing(runs, monkeypatch):
    monkeypatch.setenv("STEPLOG_TEST_SINK_DELAY_MS", "5")
    run = steplog.init(dir=runs, queue_capacity=8, batch_max_rows=4)
    for i in range(200):
        run.log({"x": i})
    stats = run.finish()
    assert (stats["rows_dropped"], stats["rows_written"]) == (0, 200)
    assert steplog.open(run.dir).scalars("x")[1].tolist() == list(range(200))


# A full disk (ENOSPC) is retried in smaller frames: tests/test_full_disk.py.
@pytest.mark.parametrize("errno_name, text", [("EIO", "Input/output error")])
def test_a_failing_disk_costs_only_the_failed_writes_and_logging_resumes(
    runs, monkeypatch, errno_name, text
):
    # Writes: 1 the header (at init), then one per flush. Writes 4 and 5 write half their
    # bytes and fail; the file is cut back, and write 6 records the lost rows.
    monkeypatch.setenv("STEPLOG_TEST_SINK_FAIL", f"3:2:{errno_name}")
    run = steplog.init(dir=runs, flush_interval_s=1000)
    for g in range(5):
        for i in range(g * 10, g * 10 + 10):
            run.log({"x": i})
        run.flush()  # never raises for the disk
    stats, messages = finish_warnings(run)
    assert (stats["rows_written"], stats["rows_failed"], stats["write_errors"]) == (30, 20, 2)
    assert text in stats["first_error"]
    assert len(messages) == 1, messages
    assert "20 rows not written (2 write errors" in messages[0] and text in messages[0]
    # The independent decoder sees whole frames only, with a gap record for the lost rows.
    s = decode_independently(shard_bytes(run.dir))
    assert not s.damage and not s.bad_frames and not s.missing
    assert s.gaps == [(20, "write_error")]
    assert s.close is not None and s.close["rows_failed"] == 20
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing damaged, so nothing to warn about
        reader = steplog.open(run.dir)
    assert not reader.problems and reader.dropped == 20
    assert reader.scalars("x")[1].tolist() == [*range(20), *range(40, 50)]


def test_a_bad_fault_setting_is_named(runs, monkeypatch):
    monkeypatch.setenv("STEPLOG_TEST_SINK_FAIL", "soon")
    with pytest.raises(ValueError, match="STEPLOG_TEST_SINK_FAIL"):
        steplog.init(dir=runs)


def test_finish_and_sync_with_a_wedged_disk_return_in_time(tmp_path):
    r = run_python(
        f"""
        import time, warnings, steplog
        run = steplog.init(dir={str(tmp_path)!r}, finish_timeout_s=0.5)
        for i in range(100):
            run.log({{"x": i}})
        t = time.monotonic()
        try:
            run.sync(timeout_s=0.3)
        except steplog.FlushTimeout as e:
            print("sync", round(time.monotonic() - t, 2), e)
        t = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stats = run.finish()
        print("finish", round(time.monotonic() - t, 2), stats["rows_unwritten"])
        print("warnings", len(caught), caught[0].message)
        """,
        env={"STEPLOG_TEST_SINK_DELAY_MS": "60000"},
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    out = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    took, _ = out["sync"].split(" ", 1)
    assert 0.25 <= float(took) < 5, out
    took, unwritten = out["finish"].split()
    assert 0.4 <= float(took) < 5 and int(unwritten) == 100, out
    assert out["warnings"].startswith("1 ") and "100 rows were not written" in out["warnings"]


def test_sync_writes_everything_logged_before_it(run):
    for i in range(1000):
        run.log({"x": i})
    run.sync()
    assert steplog.open(run.dir).scalars("x")[1].tolist() == list(range(1000))
    run.sync(timeout_s=10)
    run.finish()
    run.sync()  # finished: nothing to do


def tree(path) -> dict:
    """{relative path: bytes or None for directories} under `path`."""
    out = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path)] = None
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = fh.read()
    return out


def test_names_and_keys_never_create_files_outside_the_run(tmp_path):
    root = tmp_path / "a" / "runs"
    (tmp_path / "x").write_text("keep me")
    (tmp_path / "a" / "y").parent.mkdir(parents=True)
    (tmp_path / "a" / "y").write_text("keep me too")
    before = tree(tmp_path)
    names = ["../x", "../../x", "/abs/x", str(tmp_path / "x"), "a\0b", "n" * 5000, "..", "."]
    keys = {"../x": 1, "/abs": 2, "a/../../x": 3, "k/..": 4, "..": 5, "x" * 1024: 6}
    for project, name in zip(names, reversed(names)):
        run = steplog.init(project=project, name=name, dir=root)
        run.log(keys)
        run.finish()
        assert os.path.dirname(run.dir) == str(root)
        assert re.fullmatch("[a-z0-9]{8}", os.path.basename(run.dir))
        files = os.listdir(run.dir)
        assert "run.json" in files and all(f == "run.json" or f.endswith(".steplog") for f in files)
        reader = steplog.open(run.dir)
        assert (reader.meta["project"], reader.meta["name"]) == (project, name)
        assert reader.keys() == list(keys)
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("a/runs")} == before


def test_an_existing_file_is_never_truncated(tmp_path):
    path = tmp_path / "taken.steplog"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        steplog._core.Run(str(path), {"run_id": "r", "shard": "taken"})
    assert path.read_bytes() == b"precious"
