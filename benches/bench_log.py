"""pytest-benchmark: the cost of `log()` next to the floor of a bare C call with the same dict.

Run: pytest benches/ --benchmark-only --benchmark-columns=median,iqr,ops
In CI these run once with --benchmark-disable so they cannot rot; quote medians from a real run.

Each floor and its steplog counterpart run the same loop function (`steplog._bench`, also used
by `steplog bench`), closed over a different callee: `len` or `run.log`. One benchmark round is
N calls; `extra_info["ns_per_call"]` holds the median per call.
"""

import math
import types

import pytest

import steplog
from steplog._bench import loop_handle, loop_one, loop_ten
from steplog._core import _EmptyCall

N = 1000


@pytest.fixture
def run(tmp_path):
    r = steplog.init(dir=tmp_path, project="bench")
    yield r
    r.finish()


def _bench(benchmark, loop):
    benchmark(loop, N)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["ns_per_call"] = round(benchmark.stats.stats.median / N * 1e9, 1)


def test_floor_one_scalar_c_call(benchmark):
    """`len` called with a freshly built one-key dict."""
    _bench(benchmark, loop_one(len))


def test_binding_one_scalar_empty_call(benchmark):
    """An empty method of the extension with `log()`'s signature, given the same dict: what
    calling into the binding costs before steplog does any work."""
    _bench(benchmark, loop_one(_EmptyCall().log))


def test_log_one_scalar(benchmark, run):
    _bench(benchmark, loop_one(run.log))


def test_module_level_log_one_scalar(benchmark, run):
    _bench(benchmark, loop_one(steplog.log))


def test_floor_ten_scalars_c_call(benchmark):
    """`len` called with a freshly built ten-key dict."""
    _bench(benchmark, loop_ten(len))


def test_log_ten_scalars(benchmark, run):
    _bench(benchmark, loop_ten(run.log))


def test_floor_handle_c_call(benchmark):
    """`h.log(x)` where `h.log` is a C builtin taking one float."""
    _bench(benchmark, loop_handle(types.SimpleNamespace(log=math.isfinite)))


def test_binding_handle_empty_call(benchmark):
    """`e.log(x)` on an empty method of the extension with the handle's signature."""
    _bench(benchmark, loop_handle(_EmptyCall()))


def test_handle_log(benchmark, run):
    _bench(benchmark, loop_handle(run.metric("loss")))
