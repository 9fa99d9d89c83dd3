"""pytest-benchmark: reading `run.summary` of 500 keys.

Run: pytest benches/bench_summary.py --benchmark-only --benchmark-columns=median,iqr,ops

- `after_log`: one `log()` of one key, then `dict(run.summary)`: the read must reflect the log,
  so it waits for the writer once (a flush) and copies the summary once.
- `unchanged`: `dict(run.summary)` again with nothing logged since: no flush, no copy from the
  writer's summary, only the mapping protocol over the last copy.
- `one_key_after_log`: `run.summary["k0"]` after a `log()`: one flush, one key looked up.
"""

import pytest

import steplog

KEYS = 500


@pytest.fixture
def run(tmp_path):
    r = steplog.init(dir=tmp_path, project="bench")
    r.log({f"k{i}": float(i) for i in range(KEYS)})
    yield r
    r.finish()


def test_dict_of_summary_after_log(benchmark, run):
    def read():
        run.log({"k0": 1.0})
        return dict(run.summary)

    assert len(benchmark(read)) == KEYS


def test_dict_of_summary_unchanged(benchmark, run):
    assert len(dict(run.summary)) == KEYS
    assert len(benchmark(lambda: dict(run.summary))) == KEYS


def test_one_key_of_summary_after_log(benchmark, run):
    def read():
        run.log({"k0": 1.0})
        return run.summary["k0"]

    assert benchmark(read) == 1.0
