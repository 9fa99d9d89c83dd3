"""The step rules (wandb's): each log() is a step; step= merges; a larger step commits."""

import pytest

import steplog


def rows(run, *keys):
    run.finish()
    r = steplog.open(run.dir)
    out = {}
    for k in keys:
        for step, value in r.history(k):
            out.setdefault(step, {})[k] = value
    return out


def test_each_call_is_a_new_step(run):
    run.log({"a": 1})
    run.log({"a": 2})
    run.log({"b": 3})
    assert run.step == 3
    assert rows(run, "a", "b") == {0: {"a": 1}, 1: {"a": 2}, 2: {"b": 3}}


def test_same_explicit_step_merges_and_a_larger_one_commits(run):
    run.log({"a": 1}, step=5)
    run.log({"b": 2}, step=5)
    run.flush()
    assert run.stats()["rows_written"] == 0, "step 5 stays open until a larger step"
    run.log({"a": 3}, step=8)
    run.flush()
    assert run.stats()["rows_written"] == 1
    assert rows(run, "a", "b") == {5: {"a": 1, "b": 2}, 8: {"a": 3}}


def test_commit_false_accumulates_and_later_values_win(run):
    run.log({"a": 1}, commit=False)
    run.log({"b": 2, "a": 10}, commit=False)
    run.log({"c": 3})
    run.log({"a": 4})
    assert rows(run, "a", "b", "c") == {0: {"a": 10, "b": 2, "c": 3}, 1: {"a": 4}}


def test_commit_true_with_a_step_commits_at_once(run):
    run.log({"a": 1}, step=3, commit=True)
    assert run.step == 4
    run.log({"a": 2})
    assert rows(run, "a") == {3: {"a": 1}, 4: {"a": 2}}


def test_a_stepless_log_after_an_explicit_step_joins_that_step(run):
    run.log({"a": 1}, step=7)
    run.log({"b": 2})
    run.log({"a": 3})
    assert rows(run, "a", "b") == {7: {"a": 1, "b": 2}, 8: {"a": 3}}


def test_a_smaller_step_warns_once_names_the_key_and_is_counted(run):
    run.log({"a": 1}, step=10)
    with pytest.warns(steplog.SteplogWarning, match=r"step 3 .*current step 10.*'late'"):
        run.log({"late": 1}, step=3)
    run.log({"late": 2}, step=4)  # counted, not warned again (filterwarnings=error)
    assert run.stats()["steps_rejected"] == 2
    assert rows(run, "a") == {10: {"a": 1}}
    assert "late" not in steplog.open(run.dir).keys()


def test_finish_commits_the_open_row(run):
    run.log({"a": 1}, step=2)
    assert rows(run, "a") == {2: {"a": 1}}


def test_an_empty_log_advances_the_step_without_writing_a_row_as_in_wandb(run):
    run.log({})
    run.log({"a": 1})
    assert run.step == 2
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("a") == [(1, 1)]
    assert r.scalars("_timestamp")[0].tolist() == [1]
    assert r.rows == 1


def test_an_empty_log_commits_the_open_row_and_an_empty_step_log_only_moves_the_step(run):
    run.log({"a": 1}, commit=False)
    run.log({})  # commits the open row (step 0): {} is a committing call
    run.log({}, commit=False)  # nothing to add: the row of step 1 stays empty
    run.log({}, step=5)  # moves to step 5 (the empty row of step 1 is not written)
    run.log({"b": 2})  # merges into step 5 and commits it
    run.log({}, step=9)
    run.finish()  # step 9 holds nothing: no row
    r = steplog.open(run.dir)
    assert r.history("a") == [(0, 1)] and r.history("b") == [(5, 2)]
    assert r.scalars("_timestamp")[0].tolist() == [0, 5]


def test_rows_carry_a_timestamp(run):
    import time

    before = time.time()
    run.log({"a": 1})
    run.log({"a": 2})
    run.finish()
    steps, ts = steplog.open(run.dir).scalars("_timestamp")
    assert steps.tolist() == [0, 1]
    assert before <= ts[0] <= ts[1] <= time.time()
