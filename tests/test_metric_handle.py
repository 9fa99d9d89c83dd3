"""The pre-bound handle: `loss = run.metric("loss"); loss.log(x)` behaves like
`run.log({"loss": x})`, including the step rules."""

import numpy as np
import pytest

import steplog

from .conftest import run_python


def test_each_call_is_a_step_like_log(run):
    loss = run.metric("loss")
    for i in range(5):
        loss.log(i * 0.5)
    run.log({"acc": 1.0})
    loss.log(9.0)
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("loss") == [(0, 0.0), (1, 0.5), (2, 1.0), (3, 1.5), (4, 2.0), (6, 9.0)]
    assert r.history("acc") == [(5, 1.0)]


def test_explicit_steps_merge_with_dict_logs(run):
    loss, acc = run.metric("loss"), run.metric("acc")
    loss.log(1.0, step=10)
    acc.log(0.5, step=10)
    run.log({"lr": 0.1}, step=10)
    loss.log(0.9, step=11)
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("loss") == [(10, 1.0), (11, 0.9)]
    assert r.history("acc") == [(10, 0.5)] and r.history("lr") == [(10, 0.1)]


def test_commit_false_and_smaller_steps(run):
    m = run.metric("m")
    m.log(1.0, step=5)
    with pytest.warns(steplog.SteplogWarning, match="'m'"):
        m.log(2.0, step=1)
    assert run.stats()["steps_rejected"] == 1
    run.metric("a").log(1, commit=False)
    run.metric("b").log(2)
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("m") == [(5, 1.0)]
    assert r.history("a") == [(5, 1)] and r.history("b") == [(5, 2)]


def test_values_of_every_kind(run):
    h = run.metric("v")
    h.log(3)
    h.log(True)
    h.log(np.float32(0.25))
    h.log(np.arange(3.0))
    h.log(float("nan"))
    run.finish()
    r = steplog.open(run.dir)
    values = [v for _, v in r.history("v")]
    assert values[:4] == [3, True, 0.25, [0.0, 1.0, 2.0]] and np.isnan(values[4])
    assert r.nonfinite["v"]["nan"] == 1


def test_bad_names_and_values_are_named(run):
    with pytest.raises(ValueError, match="reserved"):
        run.metric("_step")
    with pytest.raises(TypeError, match="steplog.Metric\\('x'\\).log.*object"):
        run.metric("x").log(object())


def test_a_handle_made_before_a_fork_works_in_the_child(tmp_path):
    r = run_python(
        f"""
        import os, steplog
        run = steplog.init(dir={str(tmp_path)!r})
        loss = run.metric("loss")
        loss.log(1.0)
        pid = os.fork()
        if pid == 0:
            loss.log(2.0)
            os._exit(0)
        os.waitpid(pid, 0)
        loss.log(3.0)
        run.finish()
        print(run.dir)
        """
    )
    assert r.returncode == 0, r.stderr
    reader = steplog.open(r.stdout.strip().splitlines()[-1])
    assert sorted(reader.scalars("loss")[1].tolist()) == [1.0, 2.0, 3.0]
    assert len(reader.shards) == 2


def test_a_handle_after_finish_raises(run):
    loss = run.metric("loss")
    run.finish()
    with pytest.raises(steplog.ClosedError):
        loss.log(1.0)
