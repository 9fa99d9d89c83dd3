"""run.summary: reads reflect every earlier log() yet flush only when something changed,
whole-mapping reads copy once, and keys can be deleted (in the run's files too)."""

import os
import signal
import threading

import pytest

import steplog

from .conftest import run_python


def count_flushes(run, monkeypatch) -> list[int]:
    """Counts the writer flushes that summary reads ask for."""
    calls = [0]
    flush = run.flush

    def counting(*args, **kwargs):
        calls[0] += 1
        return flush(*args, **kwargs)

    monkeypatch.setattr(run, "flush", counting)
    return calls


def test_a_whole_read_flushes_once_and_later_reads_not_at_all(run, monkeypatch):
    run.log({f"k{i}": float(i) for i in range(500)})
    flushes = count_flushes(run, monkeypatch)
    assert dict(run.summary) == {f"k{i}": float(i) for i in range(500)}
    assert flushes[0] == 1
    # Nothing changed: iteration, items, len, single keys and another dict() read no more.
    assert len(run.summary) == 500 and run.summary["k7"] == 7.0
    assert sorted(run.summary.items())[:2] == [("k0", 0.0), ("k1", 1.0)]
    assert list(run.summary)[:3] == ["k0", "k1", "k2"]
    assert dict(run.summary)["k499"] == 499.0
    assert flushes[0] == 1
    # A log() makes the next read flush again, once, and see it.
    run.log({"k7": -1.0})
    assert run.summary["k7"] == -1.0
    assert dict(run.summary)["k7"] == -1.0
    assert flushes[0] == 2


@pytest.mark.parametrize("edit", ["set", "delete", "define"])
def test_every_summary_edit_is_seen_by_the_next_read(run, edit):
    run.log({"a": 1.0, "b": 2.0})
    run.log({"a": 3.0})
    assert dict(run.summary) == {"a": 3.0, "b": 2.0}  # cached from here
    if edit == "set":
        run.summary["b"] = 9
        want = {"a": 3.0, "b": 9}
    elif edit == "delete":
        del run.summary["b"]
        want = {"a": 3.0}
    else:
        run.define_metric("a", summary="min,max")
        want = {"a": {"min": 1.0, "max": 3.0}, "b": 2.0}
    assert dict(run.summary) == want
    assert run.summary["a"] == want["a"]


def test_a_read_reflects_logs_from_other_threads(run):
    assert dict(run.summary) == {}
    t = threading.Thread(target=lambda: [run.log({"t": float(i)}) for i in range(100)])
    t.start()
    t.join()
    assert run.summary["t"] == 99.0
    assert dict(run.summary) == {"t": 99.0}


def test_an_open_row_is_not_in_the_summary_until_committed(run):
    run.log({"x": 1.0}, step=0)
    assert "x" not in run.summary
    run.log({"x": 2.0}, step=1)  # commits step 0
    assert dict(run.summary) == {"x": 1.0}
    run.finish()  # commits step 1
    assert dict(run.summary) == {"x": 2.0}


def test_returned_values_are_copies(run):
    run.define_metric("loss", summary="min,max")
    run.log({"loss": 1.0})
    got = run.summary["loss"]
    got["min"] = 99.0
    dict(run.summary)["loss"]["max"] = 99.0
    for _, v in run.summary.items():
        v["min"] = -5.0
    assert run.summary["loss"] == {"min": 1.0, "max": 1.0}
    assert run.summary == {"loss": {"min": 1.0, "max": 1.0}}


def test_reads_after_finish_need_no_writer(run):
    run.log({"a": 1})
    run.finish()
    assert dict(run.summary) == {"a": 1} and run.summary["a"] == 1
    with pytest.raises(KeyError):
        run.summary["missing"]


def test_del_removes_the_key_from_the_live_and_the_read_summary(run):
    run.log({"loss": 0.5, "acc": 0.9})
    run.summary["note"] = "only set"
    del run.summary["loss"]
    del run.summary["note"]
    assert "loss" not in run.summary and "note" not in run.summary
    assert dict(run.summary) == {"acc": 0.9}
    with pytest.raises(KeyError):
        del run.summary["loss"]
    with pytest.raises(KeyError):
        del run.summary["never"]
    assert run.summary.pop("acc") == 0.9
    assert run.summary.pop("acc", None) is None
    run.finish()
    r = steplog.open(run.dir)
    assert r.summary == {}, "an empty last summary means no keys, not 'recompute'"
    assert r.history("loss") == [(0, 0.5)], "deleting touches the summary only"


def test_a_deleted_key_logged_again_comes_back_with_fresh_statistics(run):
    run.define_metric("loss", summary="min,max,last")
    for v in [5.0, 1.0]:
        run.log({"loss": v, "other": v})
    del run.summary["loss"]
    assert dict(run.summary) == {"other": 1.0}
    run.log({"loss": 3.0})
    want = {"min": 3.0, "max": 3.0, "last": 3.0}
    assert run.summary["loss"] == want
    run.finish()
    assert steplog.open(run.dir).summary == {"loss": want, "other": 1.0}


def test_a_deletion_survives_sigkill_after_flush(tmp_path):
    r = run_python(
        f"""
        import os, signal, steplog
        run = steplog.init(dir={str(tmp_path)!r})
        run.log({{"gone": 1.0, "kept": 2.0}})
        del run.summary["gone"]
        run.flush()
        print(run.dir, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    run_dir = r.stdout.strip().splitlines()[-1]
    assert os.path.isdir(run_dir)
    assert steplog.open(run_dir).summary == {"kept": 2.0}


def test_summary_keys_must_be_strings(run):
    run.log({"a": 1})
    assert 1 not in run.summary
    with pytest.raises(KeyError):
        del run.summary[1]
    with pytest.raises(KeyError):
        run.summary[1]
