"""Settings: keyword, then STEPLOG_* environment, then default; bad ones named clearly."""

import pytest

import steplog


def test_unknown_setting_is_named(runs):
    with pytest.raises(ValueError, match="flush_interval.*unknown setting"):
        steplog.init(dir=runs, flush_interval=1)


def test_bad_setting_value_is_named(runs):
    with pytest.raises(ValueError, match="queue_capacity=.*integer"):
        steplog.init(dir=runs, queue_capacity=1.5)
    with pytest.raises(ValueError, match="overflow=.*block, drop_new, drop_oldest"):
        steplog.init(dir=runs, overflow="sometimes")


def test_bad_environment_value_names_the_variable(runs, monkeypatch):
    monkeypatch.setenv("STEPLOG_FLUSH_INTERVAL_S", "ten")
    with pytest.raises(ValueError, match='STEPLOG_FLUSH_INTERVAL_S="ten": expected seconds'):
        steplog.init(dir=runs)


def test_a_failed_init_leaves_no_run_behind(runs):
    with pytest.raises(ValueError):
        steplog.init(dir=runs, zstd_level=99)
    assert list(runs.iterdir()) == []


def test_keyword_beats_environment(runs, monkeypatch):
    monkeypatch.setenv("STEPLOG_ZSTD_LEVEL", "99")
    run = steplog.init(dir=runs, zstd_level=1)
    run.log({"a": 1})
    run.finish()
    assert steplog.open(run.dir).history("a") == [(0, 1)]


def test_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        steplog.init(dir=f)


@pytest.mark.parametrize("bad", [3, None, ["x"]])
def test_dir_of_the_wrong_type_is_refused(bad):
    with pytest.raises(TypeError, match="dir must be a path"):
        steplog.init(dir=bad)


def test_project_and_name_must_be_strings(runs):
    with pytest.raises(TypeError, match="project"):
        steplog.init(dir=runs, project=3)
    with pytest.raises(TypeError, match="name"):
        steplog.init(dir=runs, name=3)
    with pytest.raises(TypeError, match="config"):
        steplog.init(dir=runs, config=3)
