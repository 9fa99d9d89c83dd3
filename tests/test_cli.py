"""The `steplog` command."""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

import steplog
from steplog._collector import CollectorProcess

from .conftest import run_python


def cli(*args, cwd=None, env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "STEPLOG_DIR"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "steplog", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=full_env,
    )


def test_demo_logs_reads_back_and_reports(tmp_path):
    r = cli("demo", "--steps", "20000", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for needle in (
        "ns per call",
        "bytes per scalar",
        "bit-identical",
        "train/loss",
        "dropped     0",
    ):
        assert needle in out, out
    [run_dir] = list(tmp_path.iterdir())
    reader = steplog.open(run_dir)
    assert reader.scalars("train/loss")[0].size == 20000
    assert len(reader.histograms("weights")) == 10
    # A plausible loss curve: positive throughout, decaying, noisy, ending near its floor.
    loss = reader.scalars("train/loss")[1]
    assert loss.min() > 0, loss.min()
    assert loss[:1000].mean() > 5 * loss[-1000:].mean()
    assert 0.05 < loss[-1000:].mean() < 0.15
    assert 0.02 < np.std(np.diff(np.log(loss[-1000:]))) < 0.2


def test_show_prints_metadata_keys_and_summary(run):
    run.log({"loss": 0.25, "note": "hello"})
    run.finish()
    r = cli("show", run.dir)
    assert r.returncode == 0, r.stderr
    assert run.id in r.stdout and "loss" in r.stdout and "0.25" in r.stdout
    assert "closed" in r.stdout


def test_show_prints_summary_statistics(run):
    run.define_metric("loss", summary="min,max")
    run.log({"loss": 0.25})
    run.log({"loss": 1 / 3})
    run.finish()
    r = cli("show", run.dir)
    assert r.returncode == 0, r.stderr
    assert "{min: 0.25, max: 0.333333}" in r.stdout, r.stdout


def test_show_on_a_missing_dir_fails_cleanly(tmp_path):
    r = cli("show", str(tmp_path / "nope"), cwd=tmp_path)
    assert r.returncode == 2 and "no run" in r.stderr and "steplog-runs" in r.stderr


def test_show_accepts_a_run_id_under_steplog_runs_and_steplog_dir(tmp_path):
    local = steplog.init(dir=tmp_path / "steplog-runs")
    local.log({"x": 1})
    local.finish()
    elsewhere = steplog.init(dir=tmp_path / "elsewhere")
    elsewhere.log({"y": 2})
    elsewhere.finish()
    env = {"STEPLOG_DIR": str(tmp_path / "elsewhere")}
    for run, prefix in ((local, local.id), (elsewhere, elsewhere.id[:5])):
        r = cli("show", prefix, cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"run {run.id}"), r.stdout
    r = cli("show", elsewhere.id, cwd=tmp_path)  # without STEPLOG_DIR: not found
    assert r.returncode == 2 and "STEPLOG_DIR" in r.stderr, r.stderr


def test_show_prints_dashes_for_missing_fields_and_histograms_as_histograms(run):
    for i in range(3):
        run.log({"w": steplog.Histogram(np.arange(100.0) * i, num_bins=16), "v": [1.0, 2.0]})
    run.log({"t": "text"})
    run.finish()
    r = cli("show", run.dir)
    assert r.returncode == 0, r.stderr
    assert "None" not in r.stdout, r.stdout
    assert "rank -" in r.stdout
    out = r.stdout.splitlines()
    keys = out[out.index("  keys") + 1 : out.index("  summary")]
    lines = {ln.split()[0]: ln for ln in keys}
    assert re.search(r"\b3 histograms \(16 bins\)$", lines["w"]), lines["w"]
    assert re.search(r"\b3 lists$", lines["v"]), lines["v"]
    assert re.search(r"\b1 text values$", lines["t"]), lines["t"]


def test_init_defaults_to_steplog_dir(tmp_path):
    r = run_python(
        f"""
        import os, steplog
        os.chdir({str(tmp_path)!r})  # where ./steplog-runs would go without STEPLOG_DIR
        run = steplog.init()
        run.finish()
        print(run.dir)
        """,
        env={"STEPLOG_DIR": str(tmp_path / "mine")},
    )
    assert r.returncode == 0, r.stderr
    assert os.path.dirname(r.stdout.strip()) == str(tmp_path / "mine")


def test_ls_lists_runs_as_an_aligned_table(tmp_path):
    root = tmp_path / "runs"
    a = steplog.init(project="proj-a", name="first", dir=root)
    for i in range(250):
        a.log({"x": i})
    a.finish()
    b = steplog.init(project="b", name="a-longer-name", dir=root)
    b.log({"x": 1})
    b.finish(exit_code=1)
    crash = run_python(
        f"""
        import os, signal, steplog
        run = steplog.init(project="c", dir={str(root)!r})
        for i in range(7):
            run.log({{"x": i}})
        run.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert crash.returncode == -signal.SIGKILL, crash.stderr
    r = cli("ls", cwd=tmp_path, env={"STEPLOG_DIR": str(root)})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4, r.stdout
    header = lines[0].split()
    assert header == ["ID", "PROJECT", "NAME", "STATUS", "START", "DURATION", "ROWS", "SIZE"]
    by_project = {ln.split()[1]: ln for ln in lines[1:]}
    assert set(by_project) == {"proj-a", "b", "c"}
    assert by_project["proj-a"].split()[:4] == [a.id, "proj-a", "first", "finished"]
    assert by_project["b"].split()[:4] == [b.id, "b", "a-longer-name", "failed"]
    assert by_project["c"].split()[3] == "crashed"
    rows = {p: ln.split()[-3] for p, ln in by_project.items()}
    assert rows == {"proj-a": "250", "b": "1", "c": "7"}
    assert "None" not in r.stdout
    # Aligned: every column starts where its header does.
    for col in ("PROJECT", "NAME", "STATUS", "START"):
        at = lines[0].index(col)
        assert all(ln[at - 2 : at] == "  " and ln[at] != " " for ln in lines[1:]), r.stdout
    for col in ("ROWS", "SIZE"):  # right-aligned numbers end where their header ends
        end = lines[0].index(col) + len(col)
        assert all(ln[end - 1] != " " and ln[end : end + 1] in ("", " ") for ln in lines[1:])
    # The same table from an explicit directory.
    assert cli("ls", str(root)).stdout == r.stdout
    missing = cli("ls", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such directory of runs" in missing.stderr
    (tmp_path / "none").mkdir()
    assert cli("ls", str(tmp_path / "none")).stdout == f"no runs in {tmp_path / 'none'}\n"


def test_push_of_an_offline_run_delivers_its_metadata(tmp_path):
    run = steplog.init(
        project="offline",
        name="pushed-run",
        dir=tmp_path / "local",
        config={"lr": 0.1, "layers": 3},
    )
    for i in range(500):
        run.log({"loss": 1.0 / (i + 1)})
    run.finish()
    c = CollectorProcess(tmp_path / "c", "push-token")
    try:
        for _ in range(2):  # twice: the collector keeps one copy of each frame
            r = cli("push", run.dir, "--sink", c.url, "--token-file", str(c.token_file))
            assert r.returncode == 0, r.stderr
            assert "and the run's run.json" in r.stdout, r.stdout
        meta = json.loads((c.run_dir(run.id) / "run.json").read_text())
        assert (meta["name"], meta["project"], meta["status"]) == (
            "pushed-run",
            "offline",
            "finished",
        )
        assert meta["config"] == {"lr": 0.1, "layers": 3}
        copy = steplog.open(c.run_dir(run.id))
        assert copy.meta["name"] == "pushed-run" and copy.problems == []
        np.testing.assert_array_equal(copy.scalars("loss")[1], run_reader_loss(run.dir))
        code, log = c.stop()
        assert code == 0 and "1 run.json written" in log, log
    finally:
        if c.alive():
            c.stop()


def run_reader_loss(run_dir):
    return steplog.open(run_dir).scalars("loss")[1]


def test_push_of_a_shard_that_is_not_closed_sends_rows_without_metadata(tmp_path):
    r = run_python(
        f"""
        import os, signal, steplog
        run = steplog.init(project="crashed", dir={str(tmp_path / "local")!r})
        for i in range(100):
            run.log({{"x": i}})
        run.flush()
        print(run.dir, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    run_dir = r.stdout.strip()
    c = CollectorProcess(tmp_path / "c", "push-token")
    try:
        r = cli("push", run_dir, "--sink", c.url, "--token-file", str(c.token_file))
        assert r.returncode == 0, r.stderr
        assert "run.json not sent: the shard is not closed" in r.stdout, r.stdout
        run_id = os.path.basename(run_dir)
        assert not (c.run_dir(run_id) / "run.json").exists()
        assert steplog.open(c.run_dir(run_id)).scalars("x")[1].tolist() == list(range(100))
    finally:
        c.stop()


def test_the_console_script_is_installed():
    import shutil

    exe = shutil.which("steplog")
    assert exe, "pip install should put the steplog command on PATH"
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "demo" in r.stdout


BENCH_ROW = re.compile(
    r"^(?P<label>.+?)\s{2,}.*?\s(?P<ratio>[\d.]+)x\s+(?:(?P<binding>[\d.]+)x\s+)?"
    r"<= (?P<target>[\d.]+)x$"
)


def _bench_rows(lines):
    rows = {}
    for line in lines:
        m = BENCH_ROW.match(line)
        if m:
            binding = float(m["binding"]) if m["binding"] else None
            rows[m["label"].split("  ")[0].strip()] = (
                float(m["ratio"]),
                float(m["target"]),
                binding,
            )
    return rows


def test_bench_quick_prints_every_row_with_numeric_ratios():
    r = cli("bench", "--quick")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    rows = _bench_rows(lines)
    assert rows.keys() == {"1 scalar", "10 scalars", "handle", "histogram"}, r.stdout
    for label, (ratio, target, binding) in rows.items():
        assert ratio > 0 and target > 0, (label, r.stdout)
        # Every call measure shows the binding's own share; the histogram has none.
        assert (binding is None) == (label == "histogram"), (label, r.stdout)
        if binding is not None:
            assert binding > 0, (label, r.stdout)
    assert "histogram counts identical to numpy: yes" in r.stdout
    assert "rows dropped: 0" in r.stdout


def test_bench_returns_steplog_floor_and_binding_per_call_measure():
    from steplog import _bench

    lines = []
    result = _bench.run_bench(quick=True, out=lines.append)
    for key in ("one", "ten", "handle"):
        steplog_ns, floor_ns, binding_ns = result["rows"][key]
        assert steplog_ns > 0 and floor_ns > 0 and binding_ns > 0, key
    assert result["rows"]["hist"][2] is None


def test_the_empty_call_takes_logs_arguments_and_checks_them_as_log_does():
    from steplog._core import _EmptyCall

    e = _EmptyCall()
    assert e.log({"loss": 0.5}) is None
    assert e.log(0.5, step=3, commit=False) is None
    with pytest.raises(TypeError):
        e.log(0.5, step="three")
    with pytest.raises(TypeError):
        e.log()
