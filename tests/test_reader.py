"""Reading runs back: the summary of a crashed run, `to_pandas` with every kind of key, and
`steplog.open` on a directory that holds runs rather than being one."""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest

import steplog

from .conftest import run_python
from .decoder_frames import KIND_SUMMARY, walk


def _plain(v):
    """A summary value with NaN made comparable (NaN != NaN) and types kept."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return (type(v).__name__, v)


def test_a_run_killed_before_its_summary_reads_back_the_live_summary(tmp_path):
    # The child logs, flushes once (one write: batch, metrics and summary frames), prints the
    # live summary and is SIGKILLed. Cutting the file inside its summary frame is the write
    # torn by the kill: the reader must recompute what the live summary showed.
    r = run_python(
        f"""
        import json, math, os, signal, steplog
        run = steplog.init(dir={str(tmp_path)!r}, flush_interval_s=600)
        run.define_metric("val/*", summary="min,max,mean,first,last")
        run.define_metric("acc", summary="best", goal="maximize")
        run.define_metric("loss", summary="best,last", goal="minimize")
        run.define_metric("hidden", summary="none")
        run.define_metric("phase", summary="first,last,min")
        run.define_metric("*/count", summary="max")
        for i in range(3000):
            row = {{
                "loss": math.nan if i % 7 == 0 else 1.0 / (i + 1),
                "acc": math.sin(i / 3000),
                "val/loss": 2.0 - i / 1500,
                "val/n": i * 3 - 4000,
                "a/count": i % 17,
                "epoch": i // 100,
                "ok": i % 2 == 0,
                "hidden": float(i),
                "small": [float(i), 1.0],
            }}
            if i % 500 == 0:
                row["phase"] = f"phase-{{i // 500}}"
                row["note"] = "plain text"
            run.log(row)
        run.log({{"weights": steplog.Histogram(list(range(100)), num_bins=8)}})
        run.flush()
        print(json.dumps(dict(run.summary)))
        print(run.dir, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    live_text, run_dir = r.stdout.strip().splitlines()[-2:]
    live = json.loads(live_text)
    assert "phase" in live and "note" in live and "hidden" not in live
    (shard,) = [os.path.join(run_dir, f) for f in os.listdir(run_dir) if f.endswith(".steplog")]
    with open(shard, "rb") as f:
        data = f.read()
    summaries = [fr for fr in walk(data) if getattr(fr, "header", None)]
    summaries = [fr for fr in summaries if fr.header.kind == KIND_SUMMARY]
    assert len(summaries) == 1, "one write: one summary frame"
    with open(shard, "r+b") as f:
        f.truncate(summaries[0].offset + 40)

    reader = steplog.open(run_dir)
    assert [p["torn_tail"] for p in reader.problems] == [True]
    assert reader.rows == 3001
    got = reader.summary
    assert list(got) == list(live)
    assert _plain(got) == _plain(live)
    assert got["phase"]["first"] == "phase-0" and got["note"] == "plain text"
    # One implementation, in Rust: the Python one is gone.
    assert not hasattr(steplog._reader, "_stats_from_history")
    assert not hasattr(steplog._reader, "_pattern")
    assert reader.definition("b/count")["summary"] == ["max"]
    assert reader.definition("val/a/b")["summary"] == ["min", "max", "mean", "first", "last"]
    assert reader.definition("valx") is None


def test_an_empty_summary_frame_is_a_summary_not_a_lost_one(run):
    # Every key has summary="none": the persisted summary is empty, and stays so.
    run.define_metric("*", summary="none")
    run.log({"x": 1.0, "t": "text"})
    run.finish()
    assert steplog.open(run.dir).summary == {}


def test_to_pandas_keeps_lists_and_histograms_as_object_columns(run):
    pd = pytest.importorskip("pandas")
    run.log({"loss": 1.0, "vec": [1.0, 2.0, 3.0], "note": "a"})
    run.log({"loss": 0.5, "h": steplog.Histogram(np.arange(10.0), num_bins=4)})
    run.log({"vec": [4.0, 5.0, 6.0]})
    run.finish()
    df = steplog.open(run.dir).to_pandas()
    assert list(df.columns) == ["_timestamp", "loss", "vec", "note", "h"]
    assert df["loss"].dtype == np.float64
    assert df["vec"].dtype == object and df["h"].dtype == object
    assert df.loc[0, "vec"] == [1.0, 2.0, 3.0] and df.loc[2, "vec"] == [4.0, 5.0, 6.0]
    assert pd.isna(df.loc[1, "vec"])
    h = df.loc[1, "h"]
    counts, edges = np.histogram(np.arange(10.0), bins=4)
    np.testing.assert_array_equal(h["counts"], counts)
    np.testing.assert_array_equal(h["edges"], edges)
    assert df.loc[0, "note"] == "a"


def test_opening_a_directory_of_runs_says_so_and_lists_them(runs):
    ids = []
    for _ in range(3):
        r = steplog.init(dir=runs)
        r.log({"x": 1})
        r.finish()
        ids.append(r.id)
    with pytest.raises(IsADirectoryError, match="is a directory of 3 runs, not a run") as e:
        steplog.open(runs)
    for run_id in ids:
        assert run_id in str(e.value)
    (runs / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no steplog run in"):
        steplog.open(runs / "empty")


def test_a_recomputed_shard_summary_follows_the_runs_definitions(run):
    # A worker's shard lost its summary frames; its keys are summarised under the definitions
    # the main process made (the run's), as the reader lists them in `metrics`.
    from .decoder_frames import decode_payload
    from .decoder_shard import decode_shard
    from .format_model import renumber

    run.define_metric("worker/*", summary="max,first")
    run.log({"main": 1.0})
    path = os.path.join(run.dir, "p1-worker.steplog")
    info = {"run_id": run.id, "shard": "p1-worker", "pid": os.getpid() + 1, "host": "h"}
    child = steplog._core.Run(path, info)
    for i in range(5):
        child.log({"worker/load": float(i * i), "worker/state": f"s{i}", "other": i})
    child._finish()
    run.finish()
    with open(path, "rb") as f:
        frames = decode_shard(f.read()).frames
    kept = [
        (fr.header.kind, fr.header.codec, decode_payload(fr.header, fr.payload))
        for fr in frames
        if fr.header.kind != KIND_SUMMARY
    ]
    with open(path, "wb") as f:
        f.write(renumber(kept))
    s = steplog.open(run.dir).summary
    assert s == {
        "worker/load": {"max": 16.0, "first": 0.0},
        "worker/state": {"max": s["worker/state"]["max"], "first": "s0"},
        "other": 4,
        "main": 1.0,
    }
    assert math.isnan(s["worker/state"]["max"])  # text has no maximum, as in the live one
