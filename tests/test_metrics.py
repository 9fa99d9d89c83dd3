"""define_metric: summary statistics, globs, overrides, persistence and custom x-axes."""

import math
import os
import signal

import numpy as np
import pytest

import steplog

from .conftest import run_python


def is_nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def test_statistics_follow_the_definition_and_skip_nan(run):
    run.define_metric("loss", summary="min,max,mean,first,last")
    for v in [4.0, math.nan, 1.0, 2.5, math.nan]:
        run.log({"loss": v})
    got = run.summary["loss"]
    assert list(got) == ["min", "max", "mean", "first", "last"]
    assert (got["min"], got["max"], got["mean"], got["first"]) == (1.0, 4.0, 2.5, 4.0)
    assert is_nan(got["last"]), "first and last are the values as logged"
    run.finish()
    back = steplog.open(run.dir).summary["loss"]
    assert back["min"] == 1.0 and back["mean"] == 2.5 and is_nan(back["last"])


def test_a_key_with_only_nan_has_nan_statistics(run):
    run.define_metric("x", summary="min,max,mean,best", goal="max")
    run.log({"x": math.nan})
    assert all(is_nan(v) for v in run.summary["x"].values())


@pytest.mark.parametrize(
    ("goal", "best"),
    [
        ("minimize", 0.5),
        ("min", 0.5),
        ("maximize", 3.0),
        ("max", 3.0),
        ("Maximize", 3.0),
        (" MIN ", 0.5),
    ],
)
def test_best_follows_the_goal(run, goal, best):
    run.define_metric("acc", summary="best", goal=goal)
    for v in [1.0, 3.0, math.nan, 0.5, 2.0]:
        run.log({"acc": v})
    assert run.summary["acc"] == {"best": best}


def test_integers_keep_their_type(run):
    run.define_metric("n", summary="min,max,mean")
    for v in [5, 2, 9]:
        run.log({"n": v})
    got = run.summary["n"]
    assert got == {"min": 2, "max": 9, "mean": pytest.approx(16 / 3)}
    assert type(got["min"]) is int and type(got["mean"]) is float


def test_without_summary_statistics_the_value_stays_plain(run):
    run.define_metric("loss", step_metric="epoch")
    run.log({"loss": 2.0, "epoch": 0})
    run.log({"loss": 1.0, "other": "text"})
    assert dict(run.summary) == {"loss": 1.0, "epoch": 0, "other": "text"}


def test_none_removes_the_key(run):
    run.log({"noise": 1.0, "kept": 2.0})
    run.define_metric("noise", summary="none")
    run.log({"noise": 3.0})
    assert dict(run.summary) == {"kept": 2.0}
    run.finish()
    assert steplog.open(run.dir).summary == {"kept": 2.0}


def test_a_glob_applies_to_keys_logged_later(run):
    run.define_metric("val/*", summary="min")
    run.log({"val/loss": 2.0, "val/acc": 0.5, "train/loss": 9.0})
    run.log({"val/loss": 1.0, "val/acc": 0.7, "val/deep/x": 3, "train/loss": 8.0})
    assert dict(run.summary) == {
        "val/loss": {"min": 1.0},
        "val/acc": {"min": 0.5},
        "val/deep/x": {"min": 3},
        "train/loss": 8.0,
    }


def test_a_glob_applies_to_keys_already_logged_with_their_whole_history(run):
    for v in [3.0, 1.0, 2.0]:
        run.log({"val/loss": v, "train/loss": v})
    run.define_metric("val/*", summary="min,max,mean,first")
    assert run.summary["val/loss"] == {"min": 1.0, "max": 3.0, "mean": 2.0, "first": 3.0}
    assert run.summary["train/loss"] == 2.0
    run.define_metric("?rain/l*", summary="max")
    assert run.summary["train/loss"] == {"max": 3.0}


def test_the_most_recent_matching_definition_wins(run):
    run.define_metric("val/loss", summary="min")
    run.define_metric("val/*", summary="max")
    run.log({"val/loss": 1.0})
    run.log({"val/loss": 2.0})
    assert run.summary["val/loss"] == {"max": 2.0}
    run.define_metric("val/loss", summary="last")  # defining a name again makes it the newest
    assert run.summary["val/loss"] == {"last": 2.0}
    run.finish()
    r = steplog.open(run.dir)
    assert list(r.metrics) == ["val/*", "val/loss"]
    assert r.metrics["val/loss"] == {"step_metric": None, "summary": ["last"], "goal": None}
    assert r.definition("val/loss")["summary"] == ["last"]
    assert r.definition("val/acc")["summary"] == ["max"]
    assert r.definition("train/loss") is None


def test_overrides_persist_and_a_later_log_replaces_them(run):
    run.define_metric("loss", summary="min")
    run.log({"loss": 2.0, "acc": 0.1})
    run.summary["loss"] = "diverged"
    run.summary["acc"] = 0.9
    run.summary["extra"] = 7
    assert dict(run.summary) == {"loss": "diverged", "acc": 0.9, "extra": 7}
    run.flush()
    r = steplog.open(run.dir)
    assert r.summary == {"loss": "diverged", "acc": 0.9, "extra": 7}
    run.log({"loss": 3.0, "acc": 0.2})
    assert dict(run.summary) == {"loss": {"min": 2.0}, "acc": 0.2, "extra": 7}
    run.finish()
    assert steplog.open(run.dir).summary == {"loss": {"min": 2.0}, "acc": 0.2, "extra": 7}


def test_module_level_define_metric_acts_on_the_current_run(runs):
    run = steplog.init(dir=runs)
    steplog.define_metric("loss", summary="max")
    steplog.log({"loss": 1.0})
    steplog.log({"loss": 0.5})
    assert run.summary["loss"] == {"max": 1.0}
    steplog.finish()
    with pytest.raises(steplog.SteplogError, match="no active run"):
        steplog.define_metric("loss", summary="max")


@pytest.mark.parametrize(
    ("kwargs", "error", "arg"),
    [
        ({"summary": "avg"}, ValueError, "summary"),
        ({"summary": ""}, ValueError, "summary"),
        ({"summary": "min,,max"}, ValueError, "summary"),
        ({"summary": "min,none"}, ValueError, "summary"),
        ({"summary": "best"}, ValueError, "goal"),
        ({"summary": "min", "goal": "down"}, ValueError, "goal"),
        ({"step_metric": "ep*"}, ValueError, "step_metric"),
        ({"step_metric": ""}, ValueError, "step_metric"),
        ({"name": ""}, ValueError, "name"),
        ({"name": "a\0b"}, ValueError, "name"),
        ({"name": 3}, TypeError, "name"),
        ({"summary": ["min"]}, TypeError, "summary"),
        ({"goal": 1}, TypeError, "goal"),
        ({"step_metric": b"epoch"}, TypeError, "step_metric"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(run, kwargs, error, arg):
    kwargs = {"name": "loss", **kwargs}
    with pytest.raises(error, match=rf"^define_metric: {arg}\b"):
        run.define_metric(**kwargs)
    run.finish()
    assert steplog.open(run.dir).metrics == {}


def test_define_metric_after_finish_raises(run):
    run.finish()
    with pytest.raises(steplog.ClosedError):
        run.define_metric("loss", summary="min")


def test_summary_and_definitions_survive_sigkill_after_flush(tmp_path):
    r = run_python(
        f"""
        import math, os, signal, steplog
        run = steplog.init(dir={str(tmp_path)!r})
        run.define_metric("loss", summary="min,max,mean,last", step_metric="epoch")
        steplog.define_metric("val/*", summary="best", goal="maximize")
        for i in range(1000):
            run.log({{"loss": 1.0 / (i + 1), "val/acc": i % 7, "epoch": i // 100}})
        run.log({{"loss": math.nan}})
        run.flush()
        print(run.dir, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    reader = steplog.open(r.stdout.strip().splitlines()[-1])
    assert reader.meta["status"] == "running"
    assert not any(s["closed"] for s in reader.shards)
    s = reader.summary
    assert s["loss"]["min"] == 1.0 / 1000 and s["loss"]["max"] == 1.0
    assert s["loss"]["mean"] == pytest.approx(sum(1.0 / (i + 1) for i in range(1000)) / 1000)
    assert is_nan(s["loss"]["last"])
    assert s["val/acc"] == {"best": 6} and s["epoch"] == 9
    assert reader.metrics["loss"]["step_metric"] == "epoch"
    x, _ = reader.scalars("loss", x="auto")
    assert x.tolist()[:1000] == [i // 100 for i in range(1000)]


def test_definitions_from_another_shard_reach_the_reader(run):
    # A worker process writes its own shard of the run (as DataLoader workers will); its
    # definitions and summary are merged with the main process's.
    run.define_metric("loss", summary="min")
    run.log({"loss": 1.0})
    info = {"run_id": run.id, "shard": "p1-worker", "pid": os.getpid() + 1, "host": "h"}
    child = steplog._core.Run(os.path.join(run.dir, "p1-worker.steplog"), info)
    child._define_metric("worker/*", summary="max", step_metric="worker/batch")
    for i in range(3):
        child.log({"worker/batch": i, "worker/load": float(i * i)})
    child._finish()
    run.finish()
    r = steplog.open(run.dir)
    assert list(r.metrics) == ["worker/*", "loss"]
    assert r.summary == {
        "loss": {"min": 1.0},
        "worker/batch": {"max": 2},
        "worker/load": {"max": 4.0},
    }
    x, y = r.scalars("worker/load", x="auto")
    assert x.tolist() == [0.0, 1.0, 2.0] and y.tolist() == [0.0, 1.0, 4.0]


def test_a_shard_without_a_summary_frame_gets_its_summary_from_history(run):
    # A summary frame lost to damage: the reader recomputes the summary from the rows.
    run.define_metric("loss", summary="min,first,mean")
    run.define_metric("gone", summary="none")
    for v in [3.0, 1.0, math.nan, 2.0]:
        run.log({"loss": v, "gone": 1, "plain": v})
    run.finish()
    from .decoder_frames import KIND_SUMMARY, decode_payload
    from .decoder_shard import decode_shard
    from .format_model import renumber

    (path,) = [os.path.join(run.dir, f) for f in os.listdir(run.dir) if f.endswith(".steplog")]
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
    assert s["loss"] == {"min": 1.0, "first": 3.0, "mean": 2.0}
    assert "gone" not in s and s["plain"] == 2.0


# --- custom x-axes ------------------------------------------------------------------------------


def test_scalars_against_another_metric_forward_fills_and_drops_leading_steps(run):
    run.log({"loss": 5.0})  # step 0: before the first epoch value, dropped
    run.log({"loss": 4.0})  # step 1: dropped
    run.log({"loss": 3.0, "epoch": 0})  # step 2
    run.log({"loss": 2.0})  # step 3: epoch 0 carried forward
    run.log({"epoch": 1})  # step 4: no loss
    run.log({"loss": 1.0})  # step 5: epoch 1 carried forward
    run.log({"loss": 0.5, "epoch": 2})  # step 6
    run.finish()
    r = steplog.open(run.dir)
    steps, values = r.scalars("loss")
    assert steps.tolist() == [0, 1, 2, 3, 5, 6]
    x, y = r.scalars("loss", x="epoch")
    assert x.tolist() == [0.0, 0.0, 1.0, 2.0]
    assert y.tolist() == [3.0, 2.0, 1.0, 0.5]
    assert x.dtype == np.float64 and y.dtype == np.float64
    x, y = r.scalars("loss", x="_step")
    assert x.tolist() == steps.tolist() and y.tolist() == values.tolist()
    t, _ = r.scalars("loss", x="_timestamp")
    assert t.size == 6 and np.all(np.diff(t) >= 0)


def test_x_auto_uses_the_defined_step_metric(run):
    run.define_metric("val/*", step_metric="epoch")
    for epoch in range(3):
        run.log({"train/loss": 1.0, "epoch": epoch})
        run.log({"val/loss": 1.0 / (epoch + 1)})
    run.finish()
    r = steplog.open(run.dir)
    x, y = r.scalars("val/loss", x="auto")
    assert x.tolist() == [0.0, 1.0, 2.0] and y.tolist() == [1.0, 0.5, 1.0 / 3]
    assert r.metrics == {"val/*": {"step_metric": "epoch", "summary": None, "goal": None}}
    with pytest.raises(ValueError, match=r"train/loss.*step_metric"):
        r.scalars("train/loss", x="auto")
    with pytest.raises(KeyError, match="nope"):
        r.scalars("val/loss", x="nope")
    with pytest.raises(TypeError, match="x="):
        r.scalars("val/loss", x=3)  # type: ignore[arg-type]


def test_x_auto_with_a_step_metric_that_was_never_logged(run):
    run.define_metric("loss", step_metric="epoch")
    run.log({"loss": 1.0})
    run.finish()
    with pytest.raises(KeyError, match="epoch"):
        steplog.open(run.dir).scalars("loss", x="auto")


def test_statistic_names_and_goals_are_read_in_any_case(run):
    run.define_metric("acc", summary="MAX,Best", goal="Maximize")
    run.define_metric("loss", summary=" Min , LAST ")
    run.define_metric("debug", summary="None")
    for v in [0.5, 0.9, 0.7]:
        run.log({"acc": v, "loss": 1 - v, "debug": v})
    assert dict(run.summary) == {
        "acc": {"max": 0.9, "best": 0.9},
        "loss": {"min": pytest.approx(0.1), "last": pytest.approx(0.3)},
    }
    run.finish()
    m = steplog.open(run.dir).metrics
    assert m["acc"] == {"step_metric": None, "summary": ["max", "best"], "goal": "maximize"}
