"""pytest-benchmark: the cost of `log()` next to the floor of a bare C call with the same dict.

Run: pytest benches/ --benchmark-only --benchmark-columns=median,iqr,ops
In CI these run once with --benchmark-disable so they cannot rot; quote medians from a real run.
"""

import pytest

import steplog

KEYS10 = [f"metric_{i}" for i in range(10)]


@pytest.fixture
def run(tmp_path):
    r = steplog.init(dir=tmp_path, project="bench")
    yield r
    r.finish()


def _loop(fn, n=1000):
    def body():
        for _ in range(n):
            fn()

    return body


def test_floor_one_scalar_c_call(benchmark):
    """A C builtin called with a freshly built one-key dict."""
    f = len
    x = 0.5
    benchmark(_loop(lambda: f({"loss": x})))


def test_log_one_scalar(benchmark, run):
    log = run.log
    x = 0.5
    benchmark(_loop(lambda: log({"loss": x})))


def test_floor_ten_scalars_c_call(benchmark):
    f = len
    x = 0.5
    k = KEYS10
    benchmark(
        _loop(
            lambda: f(
                {
                    k[0]: x,
                    k[1]: x,
                    k[2]: x,
                    k[3]: x,
                    k[4]: x,
                    k[5]: x,
                    k[6]: x,
                    k[7]: x,
                    k[8]: x,
                    k[9]: x,
                }
            )
        )
    )


def test_log_ten_scalars(benchmark, run):
    log = run.log
    x = 0.5
    k = KEYS10
    benchmark(
        _loop(
            lambda: log(
                {
                    k[0]: x,
                    k[1]: x,
                    k[2]: x,
                    k[3]: x,
                    k[4]: x,
                    k[5]: x,
                    k[6]: x,
                    k[7]: x,
                    k[8]: x,
                    k[9]: x,
                }
            )
        )
    )


def test_module_level_log_one_scalar(benchmark, run):
    log = steplog.log
    x = 0.5
    benchmark(_loop(lambda: log({"loss": x})))
