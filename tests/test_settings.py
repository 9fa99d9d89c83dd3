"""Settings: keyword, then STEPLOG_* environment, then default; bad ones named clearly."""

import pytest

import steplog


def test_unknown_setting_is_named_with_its_value_and_the_closest_setting(runs):
    with pytest.raises(TypeError, match="flush_interval=1: unknown keyword") as e:
        steplog.init(dir=runs, flush_interval=1)
    assert "did you mean 'flush_interval_s'?" in str(e.value)
    assert "the settings queue_capacity, " in str(e.value)
    with pytest.raises(TypeError, match=r"foo=None: unknown keyword"):
        steplog.init(dir=runs, foo=None)
    with pytest.raises(TypeError, match=r"qeue_capacity='8'.*did you mean 'queue_capacity'"):
        steplog.init(dir=runs, qeue_capacity="8")
    with pytest.raises(TypeError, match=r"projct='p'.*did you mean 'project'"):
        steplog.init(dir=runs, projct="p")
    assert not runs.exists() or list(runs.iterdir()) == []


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("tags", ["a"]),
        ("notes", "hi"),
        ("group", "g"),
        ("job_type", "train"),
        ("mode", "offline"),
        ("reinit", True),
        ("id", "abc"),
        ("resume", "allow"),
    ],
)
def test_wandb_keywords_say_they_are_not_supported_yet(runs, keyword, value):
    with pytest.raises(TypeError) as e:
        steplog.init(dir=runs, **{keyword: value})
    msg = str(e.value)
    assert msg.startswith(f"steplog.init: {keyword}={value!r}: "), msg
    assert "not supported by steplog yet" in msg


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("queue_capacity", True, "expected a number, not a bool"),
        ("overflow", True, "expected a string, got bool"),
        ("tls_ca", 5, "expected a string, got int"),
        ("flush_interval_s", [1], "expected a number or a string, got list"),
        ("zstd_level", "fast", "expected an integer"),
        ("nan_value", "zero", "expected a finite number"),
        ("block_timeout_s", -1, "expected seconds"),
    ],
)
def test_a_bad_value_names_the_setting_and_the_value(runs, setting, value, expected):
    with pytest.raises(ValueError) as e:
        steplog.init(dir=runs, **{setting: value})
    msg = str(e.value)
    shown = f'"{value}"' if isinstance(value, str) or setting == "block_timeout_s" else repr(value)
    assert f"{setting}={shown}" in msg, msg
    assert expected in msg, msg


def test_a_runs_directory_that_cannot_be_created_is_named_with_the_cause(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        steplog.init(dir="/proc/steplog-cannot-exist/runs")
    msg = str(e.value)
    assert "could not create the runs directory dir='/proc/steplog-cannot-exist/runs'" in msg
    assert e.value.errno is not None and e.value.filename
    assert isinstance(e.value.__cause__, OSError)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError) as e:
        steplog.init(dir=blocker / "runs")
    assert str(blocker / "runs") in str(e.value)
    assert isinstance(e.value.__cause__, NotADirectoryError)


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


@pytest.mark.parametrize("bad", [3, 2.5, ["x"]])  # None means $STEPLOG_DIR or the default
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


def test_a_token_of_the_wrong_type_is_refused_without_showing_it(runs):
    with pytest.raises(TypeError, match="token must be str, got int$"):
        steplog.init(dir=runs, token=123456)
    # The binding's own check, for callers that bypass init.
    with pytest.raises(ValueError, match=r"^token=\.\.\.: expected a string, got int$"):
        steplog._core.Run(str(runs / "x.steplog"), {}, {"token": 123456})
