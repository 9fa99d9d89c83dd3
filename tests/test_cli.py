"""The `steplog` command."""

import re
import subprocess
import sys

import steplog


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "steplog", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
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
    r = cli("show", str(tmp_path / "nope"))
    assert r.returncode == 2 and "not a run directory" in r.stderr


def test_the_console_script_is_installed():
    import shutil

    exe = shutil.which("steplog")
    assert exe, "pip install should put the steplog command on PATH"
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "demo" in r.stdout


BENCH_ROW = re.compile(r"^(?P<label>.+?)\s{2,}.*\s(?P<ratio>\S+)x\s+<= (?P<target>[\d.]+)x$")


def _bench_rows(lines):
    rows = {}
    for line in lines:
        m = BENCH_ROW.match(line)
        if m:
            rows[m["label"].split("  ")[0].strip()] = (float(m["ratio"]), float(m["target"]))
    return rows


def test_bench_quick_prints_every_row_with_numeric_ratios():
    r = cli("bench", "--quick")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    rows = _bench_rows(lines)
    assert {"1 scalar", "10 scalars", "histogram"} <= rows.keys(), r.stdout
    for label, (ratio, target) in rows.items():
        assert ratio > 0 and target > 0, (label, r.stdout)
    [handle] = [line for line in lines if line.startswith("handle")]
    if hasattr(steplog.Run, "metric"):
        assert "handle" in rows, r.stdout
    else:
        assert handle.endswith("n/a (not available in this version)"), r.stdout
    assert "histogram counts identical to numpy: yes" in r.stdout
    assert "rows dropped: 0" in r.stdout


def test_bench_measures_the_handle_when_run_has_metric(monkeypatch):
    from steplog import _bench

    class Handle:
        def log(self, x):
            return None

    monkeypatch.setattr(steplog.Run, "metric", lambda self, key: Handle(), raising=False)
    lines = []
    result = _bench.run_bench(quick=True, out=lines.append)
    rows = _bench_rows(lines)
    assert "handle" in rows, "\n".join(lines)
    steplog_ns, floor_ns = result["rows"]["handle"]
    assert steplog_ns > 0 and floor_ns > 0
