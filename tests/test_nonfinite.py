"""NaN and Inf: kept and counted by default; replaced when asked (per run or process-wide)."""

import math

import numpy as np
import pytest

import steplog


@pytest.fixture(autouse=True)
def reset_global_policy():
    yield
    steplog.set_reporting_nan_value(None)
    steplog.set_reporting_inf_value(None)


def values(run, key):
    run.finish()
    return steplog.open(run.dir).scalars(key)[1].tolist()


def test_kept_exactly_and_counted_per_key_by_default(run):
    run.log({"loss": math.nan, "acc": 1.0})
    run.log({"loss": math.inf, "grad": np.array([math.nan, -math.inf, 1.0])})
    run.log({"loss": -math.inf})
    counts = run.stats()["nonfinite"]
    assert counts == {
        "loss": {"nan": 1, "inf": 1, "-inf": 1},
        "grad": {"nan": 1, "inf": 0, "-inf": 1},
    }
    stats = run.finish()
    r = steplog.open(run.dir)
    loss = r.scalars("loss")[1]
    assert math.isnan(loss[0]) and loss[1] == math.inf and loss[2] == -math.inf
    assert r.nonfinite == counts == stats["nonfinite"]
    assert r.meta["stats"]["nonfinite"] == counts


def test_run_level_substitution_negates_for_minus_inf(runs):
    run = steplog.init(dir=runs, nan_value=0.0, inf_value=1e9)
    run.log({"x": math.nan})
    run.log({"x": math.inf})
    run.log({"x": -math.inf, "l": [math.nan, math.inf]})
    run.finish()
    r = steplog.open(run.dir)
    assert r.scalars("x")[1].tolist() == [0.0, 1e9, -1e9]
    assert r.history("l") == [(2, [0.0, 1e9])]
    assert r.nonfinite["x"] == {"nan": 1, "inf": 1, "-inf": 1}


def test_process_wide_setting_applies_unless_the_run_sets_its_own(runs):
    steplog.set_reporting_nan_value(-1.0)
    steplog.set_reporting_inf_value(7.0)
    plain = steplog.init(dir=runs)
    plain.log({"x": math.nan, "y": -math.inf})
    plain.finish()
    own = steplog.init(dir=runs, nan_value=5.0)
    own.log({"x": math.nan, "y": math.inf})
    own.finish()
    assert steplog.open(plain.dir).history("x") == [(0, -1.0)]
    assert steplog.open(plain.dir).history("y") == [(0, -7.0)]
    assert steplog.open(own.dir).history("x") == [(0, 5.0)]
    assert steplog.open(own.dir).history("y") == [(0, 7.0)]


def test_histograms_leave_non_finite_out_rather_than_substituting(runs):
    run = steplog.init(dir=runs, nan_value=0.0)
    a = np.arange(100.0)
    a[0] = math.nan
    run.log({"h": a})
    run.finish()
    [(_, h)] = steplog.open(run.dir).history("h")
    assert h["nan"] == 1 and h["counts"].sum() == 99


def test_environment_setting(runs, monkeypatch):
    monkeypatch.setenv("STEPLOG_NAN_VALUE", "-2")
    run = steplog.init(dir=runs)
    run.log({"x": math.nan})
    assert values(run, "x") == [-2.0]


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_replacements_must_be_finite(runs, bad):
    with pytest.raises(ValueError, match="finite"):
        steplog.set_reporting_nan_value(bad)
    with pytest.raises(ValueError, match="nan_value"):
        steplog.init(dir=runs, nan_value=bad)
