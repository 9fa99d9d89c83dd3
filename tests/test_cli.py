"""The `steplog` command."""

import re
import subprocess
import sys

import pytest

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
