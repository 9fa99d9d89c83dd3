"""How runs end: normal exit, crashes, damaged files. Each case runs in its own interpreter."""

import json
import os
import pathlib
import signal

import numpy as np
import pytest

import steplog

from .conftest import run_python


def run_dir_of(result) -> str:
    assert result.returncode in (0, -signal.SIGKILL), result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_interpreter_exit_finishes_an_unfinished_run(tmp_path):
    r = run_python(
        f"""
        import steplog
        run = steplog.init(dir={str(tmp_path)!r})
        for i in range(1000):
            steplog.log({{"x": i}})
        print(run.dir)
        """
    )
    reader = steplog.open(run_dir_of(r))
    assert reader.meta["status"] == "finished"
    assert reader.scalars("x")[1].tolist() == list(range(1000))
    assert all(s["closed"] for s in reader.shards)
    assert reader.summary == {"x": 999}


def test_sigkill_after_flush_keeps_data_metadata_and_summary(tmp_path):
    r = run_python(
        f"""
        import os, signal, steplog
        run = steplog.init(project="crash", dir={str(tmp_path)!r}, config={{"lr": 0.5}})
        for i in range(5000):
            run.log({{"loss": 1.0 / (i + 1), "step_count": i}})
        run.summary["best"] = 0.1
        run.flush()
        print(run.dir, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert r.returncode == -signal.SIGKILL
    reader = steplog.open(run_dir_of(r))
    assert reader.meta["status"] == "running", "the run never finished"
    assert reader.config == {"lr": 0.5} and reader.meta["project"] == "crash"
    steps, _ = reader.scalars("loss")
    np.testing.assert_array_equal(steps, np.arange(5000))
    assert reader.summary == {"loss": 1.0 / 5000, "step_count": 4999, "best": 0.1}
    assert not any(s["closed"] for s in reader.shards)


def test_sigkill_without_flush_keeps_what_the_flush_interval_covered(tmp_path):
    # The writer writes every batch older than flush_interval_s; wait for that in the child by
    # watching the file grow (no sleeping on a guess), then kill it.
    r = run_python(
        f"""
        import os, signal, time, glob, steplog
        run = steplog.init(dir={str(tmp_path)!r}, flush_interval_s=0.05)
        for i in range(100):
            run.log({{"x": i}})
        shard = glob.glob(os.path.join(run.dir, "*.steplog"))[0]
        deadline = time.monotonic() + 30
        while run.stats()["rows_written"] < 100 and time.monotonic() < deadline:
            time.sleep(0.01)  # ok-sleep: polling a condition, bounded
        print(run.dir, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    reader = steplog.open(run_dir_of(r))
    assert reader.scalars("x")[1].tolist() == list(range(100))


def test_a_torn_tail_is_reported_not_raised_and_strict_mode_raises(run):
    for i in range(100):
        run.log({"x": i})
    run.flush()
    for i in range(100, 200):
        run.log({"x": i})
    run.finish()
    shard = next(p for p in os.listdir(run.dir) if p.endswith(".steplog"))
    path = os.path.join(run.dir, shard)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 20)  # cut into the close frame
    reader = steplog.open(run.dir)
    assert reader.scalars("x")[1].tolist() == list(range(200))
    assert [p["torn_tail"] for p in reader.problems] == [True]
    with pytest.raises(steplog.CorruptRunError):
        steplog.open(run.dir, strict=True)


def test_a_damaged_middle_frame_costs_only_that_frame(run):
    run.log({"x": 0})
    run.flush()
    for i in range(1, 50):
        run.log({"x": i})
    run.flush()
    run.log({"x": 50})
    run.finish()
    shard = next(p for p in os.listdir(run.dir) if p.endswith(".steplog"))
    path = os.path.join(run.dir, shard)
    data = bytearray(pathlib.Path(path).read_bytes())
    starts = [i for i in range(len(data)) if data[i : i + 4] == b"SLG1"]
    # frames: header, batch(0), summary, batch(1..49), summary, ... ; damage the second batch
    data[starts[3] + 40] ^= 0xFF
    pathlib.Path(path).write_bytes(bytes(data))
    with pytest.warns(steplog.SteplogWarning, match="damaged"):
        reader = steplog.open(run.dir)
    assert reader.scalars("x")[1].tolist() == [0, 50]
    [problem] = reader.problems
    assert not problem["torn_tail"] and problem["lost_frames"] == (3, 3)


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        steplog.open(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no steplog run"):
        steplog.open(tmp_path)


def test_open_accepts_the_run_json_path(run):
    run.log({"x": 1})
    run.finish()
    assert steplog.open(os.path.join(run.dir, "run.json")).keys() == ["x"]
    with open(os.path.join(run.dir, "run.json")) as f:
        assert json.load(f)["stats"]["rows_written"] == 1


def test_threads_logging_at_once_lose_nothing(run):
    import threading

    def work(t):
        for i in range(5000):
            run.log({f"t{t}": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = run.finish()
    assert stats["rows_written"] == 20_000
    reader = steplog.open(run.dir)
    for t in range(4):
        steps, values = reader.scalars(f"t{t}")
        assert sorted(values.tolist()) == list(range(5000))
        assert len(set(steps.tolist())) == 5000
