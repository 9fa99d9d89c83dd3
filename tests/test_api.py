"""The API users call: init, log, finish, summary, errors, module-level functions."""

import json
import os
import sys

import numpy as np
import pytest

import steplog


def test_init_creates_the_run_and_its_metadata(runs):
    run = steplog.init(project="proj", name="first", dir=runs, config={"lr": 0.1, "layers": 4})
    assert os.path.isdir(run.dir)
    assert os.path.dirname(run.dir) == os.fspath(runs)
    assert os.path.basename(run.dir) == run.id
    with open(os.path.join(run.dir, "run.json")) as f:
        meta = json.load(f)
    assert meta["id"] == run.id and meta["name"] == "first" and meta["project"] == "proj"
    assert meta["config"] == {"lr": 0.1, "layers": 4}
    assert meta["status"] == "running"
    assert meta["pid"] == os.getpid()
    for field in ("created", "host", "argv", "python", "steplog"):
        assert meta[field], field
    run.finish()
    with open(os.path.join(run.dir, "run.json")) as f:
        meta = json.load(f)
    assert meta["status"] == "finished" and meta["ended"] >= meta["created"]


def test_defaults_name_the_run_by_its_id(runs):
    run = steplog.init(dir=runs)
    assert run.name == run.id and run.project == "default" and run.config == {}
    run.finish()


def test_config_accepts_an_argparse_namespace(runs):
    import argparse

    ns = argparse.Namespace(lr=0.5, name="x")
    run = steplog.init(dir=runs, config=ns)
    run.finish()
    assert steplog.open(run.dir).config == {"lr": 0.5, "name": "x"}


def test_context_manager_finishes_and_finish_is_idempotent(runs):
    with steplog.init(dir=runs) as run:
        run.log({"a": 1})
    assert run.finished
    first = run.finish()
    assert run.finish() == first
    assert first["rows_written"] == 1


def test_exception_in_with_block_marks_the_run_failed_and_keeps_data(runs):
    with pytest.raises(RuntimeError), steplog.init(dir=runs) as run:
        run.log({"a": 1})
        raise RuntimeError("boom")
    r = steplog.open(run.dir)
    assert r.meta["status"] == "failed"
    assert r.history("a") == [(0, 1)]


def test_logging_after_finish_raises(run):
    run.finish()
    with pytest.raises(steplog.ClosedError, match=r"steplog\.init"):
        run.log({"a": 1})


def test_module_level_log_and_finish_use_the_current_run(runs):
    run = steplog.init(dir=runs)
    assert steplog.current() is run
    steplog.log({"loss": 1.0})
    steplog.log({"loss": 0.5})
    stats = steplog.finish()
    assert stats["rows_written"] == 2
    assert steplog.current() is None
    assert steplog.open(run.dir).scalars("loss")[1].tolist() == [1.0, 0.5]
    with pytest.raises(steplog.SteplogError, match="no active run"):
        steplog.log({"loss": 1.0})
    assert steplog.finish() is None


def test_a_new_init_becomes_current_and_warns_once_that_another_is_open(runs, monkeypatch):
    monkeypatch.setattr(steplog._run, "_warned_open_runs", False)
    a = steplog.init(dir=runs)
    with pytest.warns(steplog.SteplogWarning, match=rf"run\(s\) {a.id} are still open.*new run"):
        b = steplog.init(dir=runs)
    c = steplog.init(dir=runs)  # once per process: no second warning (warnings are errors)
    c.log({"c": 1})
    c.finish()
    assert steplog.current() is None, "finishing the current run leaves none current"
    b._make_current()
    steplog.log({"x": 1})
    a.finish()
    assert steplog.current() is b
    b.finish()
    assert steplog.open(b.dir).keys() == ["x"]
    assert steplog.open(a.dir).keys() == []


def test_summary_is_the_last_value_unless_overridden(run):
    run.log({"loss": 3.0, "acc": 0.1})
    run.log({"loss": 2.0})
    assert run.summary["loss"] == 2.0
    run.summary["best_loss"] = 2.0
    run.summary.update({"note": "ok", "loss": 99.0})
    assert dict(run.summary) == {"loss": 99.0, "acc": 0.1, "best_loss": 2.0, "note": "ok"}
    run.log({"loss": 1.0})  # a later log replaces an override, as in wandb
    assert run.summary["loss"] == 1.0
    assert "acc" in run.summary and len(run.summary) == 4
    run.finish()
    assert steplog.open(run.dir).summary == {
        "loss": 1.0,
        "acc": 0.1,
        "best_loss": 2.0,
        "note": "ok",
    }


def test_summary_rejects_bad_values_and_keys(run):
    with pytest.raises(TypeError, match="best"):
        run.summary["best"] = object()
    with pytest.raises(TypeError, match="keys must be str"):
        run.summary[1] = 2.0


def test_stats_count_rows(run):
    for i in range(10):
        run.log({"x": i})
    run.flush()
    s = run.stats()
    assert s["rows_written"] == 10 and s["rows_dropped"] == 0 and s["scalars_written"] == 10


def test_a_million_scalars_read_back_complete(run):
    log = run.log
    for i in range(1_000_000):
        log({"loss": i * 0.5})
    stats = run.finish()
    assert stats["rows_written"] == 1_000_000
    steps, values = steplog.open(run.dir).scalars("loss")
    assert steps.dtype == np.int64 and values.dtype == np.float64
    np.testing.assert_array_equal(steps, np.arange(1_000_000))
    np.testing.assert_array_equal(values, np.arange(1_000_000) * 0.5)


def test_repr_is_informative(run):
    assert run.id in repr(run) and "running" in repr(run)


def test_summary_refuses_arrays_and_stays_readable(run):
    run.log({"loss": 1.0})
    with pytest.raises(TypeError, match=r"run.summary\['arr'\].*not arrays"):
        run.summary["arr"] = np.arange(5.0)
    run.summary["best"] = 0.5
    run.finish()
    r = steplog.open(run.dir)
    assert r.problems == []
    assert r.summary == {"loss": 1.0, "best": 0.5}


def test_oversized_text_is_refused_and_logging_goes_on(run):
    with pytest.raises(ValueError, match="key 'note'.*limit"):
        run.log({"note": "x" * (2 << 20)})
    run.log({"note": "short"})
    assert only_history(run, "note") == [(0, "short")]


def test_keys_lists_only_keys_with_data(run):
    run.log({"a": 1}, step=5)
    with pytest.warns(steplog.SteplogWarning):
        run.log({"rejected": 1}, step=1)
    with pytest.raises(ValueError):
        run.log({"half": 1, "_step": 2})
    run.summary["summary_only"] = 3
    run.finish()
    r = steplog.open(run.dir)
    assert r.keys() == ["a"]
    assert r.summary["summary_only"] == 3
    for k in r.keys():
        r.history(k)


def only_history(run, key):
    run.finish()
    return steplog.open(run.dir).history(key)


def test_a_finished_earlier_run_does_not_warn(runs, monkeypatch):
    monkeypatch.setattr(steplog._run, "_warned_open_runs", False)
    steplog.init(dir=runs).finish()
    steplog.init(dir=runs).finish()  # a warning would fail the test (warnings are errors)
    assert steplog._run._warned_open_runs is False


def test_config_numpy_values_are_stored_as_numbers_and_lists(runs):
    config = {
        "lr": np.float32(0.5),
        "wd": np.float64(1e-4),
        "long": np.longdouble(0.25),
        "layers": np.int64(4),
        "flag": np.bool_(True),
        "name": np.str_("resnet"),
        "sizes": np.array([[1, 2], [3, 4]]),
        "betas": (0.9, np.float32(0.999)),
        "tags": {"b", "a"},
        "nested": {"opt": {"lr": np.float16(0.125), "m": [np.int8(1)]}, "empty": {}},
        "none": None,
    }
    run = steplog.init(dir=runs, config=config)
    run.finish()
    want = {
        "lr": 0.5,
        "wd": 1e-4,
        "long": 0.25,
        "layers": 4,
        "flag": True,
        "name": "resnet",
        "sizes": [[1, 2], [3, 4]],
        "betas": [0.9, pytest.approx(0.999)],
        "tags": ["a", "b"],
        "nested": {"opt": {"lr": 0.125, "m": [1]}, "empty": {}},
        "none": None,
    }
    got = steplog.open(run.dir).config
    assert got == want
    assert type(got["layers"]) is int and type(got["lr"]) is float and got["flag"] is True
    assert run.config == got


def test_config_tensors_become_lists(runs, monkeypatch):
    class FakeTensor:  # what steplog uses of a torch.Tensor
        def detach(self):
            return self

        def cpu(self):
            return self

        def tolist(self):
            return [[1.5, 2.0]]

    fake_torch = type(sys)("torch")
    fake_torch.Tensor = FakeTensor
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    run = steplog.init(dir=runs, config={"w": FakeTensor(), "x": {"t": FakeTensor()}})
    run.finish()
    assert steplog.open(run.dir).config == {"w": [[1.5, 2.0]], "x": {"t": [[1.5, 2.0]]}}


def test_config_with_a_real_torch_tensor(runs):
    torch = pytest.importorskip("torch")
    run = steplog.init(dir=runs, config={"w": torch.tensor([1, 2]), "s": torch.tensor(0.5)})
    run.finish()
    assert steplog.open(run.dir).config == {"w": [1, 2], "s": 0.5}


def test_a_config_that_contains_itself_is_refused_by_name(runs):
    config: dict = {"a": 1}
    config["self"] = config
    with pytest.raises(ValueError, match=r"config\['self'\]\['self'\].*contain itself"):
        steplog.init(dir=runs, config=config)
    assert not runs.exists() or list(runs.iterdir()) == []


@pytest.mark.parametrize("where", ["run.log", "steplog.log", "steplog.Metric.log"])
@pytest.mark.parametrize(
    ("step", "error", "shown"),
    [
        ("3", TypeError, "step='3' (str): expected an int or None"),
        (1.5, TypeError, "step=1.5 (float): expected an int or None"),
        (2**70, ValueError, f"step={2**70} is out of range: steps are 64-bit integers"),
    ],
)
def test_a_bad_step_is_named_with_its_value(run, where, step, error, shown):
    log = {
        "run.log": lambda: run.log({"x": 1.0}, step=step),
        "steplog.log": lambda: steplog.log({"x": 1.0}, step=step),
        "steplog.Metric.log": lambda: run.metric("x").log(1.0, step=step),
    }[where]
    with pytest.raises(error) as e:
        log()
    assert str(e.value) == f"{where}: {shown}"
    run.log({"x": 2.0}, step=np.int64(4))  # numpy ints are ints
    run.finish()
    assert steplog.open(run.dir).history("x") == [(4, 2.0)], "the bad call logged nothing"


@pytest.mark.parametrize("which", ["nan", "inf"])
def test_a_bad_reporting_value_is_named(which):
    setter = getattr(steplog, f"set_reporting_{which}_value")
    with pytest.raises(TypeError, match=rf"^set_reporting_{which}_value: value='zero' \(str\)"):
        setter("zero")
    with pytest.raises(TypeError, match=r"value=True \(bool\)"):
        setter(True)
    with pytest.raises(ValueError, match=r"value=inf: expected a finite number"):
        setter(float("inf"))
    setter(np.float32(0.5))
    setter(None)
