"""pytest-benchmark: a 64-bin histogram of 1,000,000 float32 values, steplog next to numpy.

Target (issue 4): steplog <= 1/5 of numpy.histogram on the same array, counts identical.
"""

import numpy as np
import pytest

import steplog

DATA = np.random.default_rng(0).standard_normal(1_000_000).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return DATA


def test_numpy_histogram_1m_float32(benchmark, data):
    benchmark(np.histogram, data, bins=64)


def test_steplog_histogram_1m_float32(benchmark, data):
    h = benchmark(steplog.Histogram, data, num_bins=64)
    np.testing.assert_array_equal(h.counts, np.histogram(data, bins=64)[0])


def test_log_1m_float32_tensor(benchmark, tmp_path, data):
    run = steplog.init(dir=tmp_path)
    benchmark(lambda: run.log({"w": data}))
    run.finish()
