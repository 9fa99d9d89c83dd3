"""Histograms equal numpy.histogram's for finite data; NaN/Inf are left out and counted."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import steplog


def numpy_hist(data, bins):
    finite = data[np.isfinite(data)]
    return np.histogram(finite, bins=bins)


def check_equal(data, bins):
    want_counts, want_edges = numpy_hist(data, bins)
    h = steplog.Histogram(data, num_bins=bins)
    np.testing.assert_array_equal(h.counts, want_counts)
    np.testing.assert_array_equal(h.edges, want_edges.astype(np.float64))
    return h


def float_arrays(dtype):
    width = 32 if dtype == np.float32 else 64
    return arrays(
        dtype,
        st.integers(1, 400),
        elements=st.floats(allow_nan=False, allow_infinity=False, width=width),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=300, deadline=None)
@given(data=st.data(), bins=st.integers(1, 512))
def test_counts_and_edges_equal_numpy(dtype, data, bins):
    a = data.draw(float_arrays(dtype))
    try:
        with np.errstate(all="ignore"):
            want_counts, want_edges = np.histogram(a, bins=bins)
    except (ValueError, IndexError):
        # numpy refuses this range/bins combination (too many bins), or fails on a range that
        # overflows the dtype (numpy 2.x: IndexError for [1.8e308, -3e292] in 1 bin).
        assume(False)
    assume(np.all(np.isfinite(want_edges)))  # a range that overflows the dtype
    h = steplog.Histogram(a, num_bins=bins)
    np.testing.assert_array_equal(h.counts, want_counts)
    np.testing.assert_array_equal(h.edges, want_edges.astype(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=200, deadline=None)
@given(data=st.data(), bins=st.integers(1, 512))
def test_clustered_values_near_edges_equal_numpy(dtype, data, bins):
    # Values on a coarse grid land exactly on (or one ulp from) bin edges far more often.
    ints = data.draw(arrays(np.int64, st.integers(2, 300), elements=st.integers(-50, 50)))
    scale = data.draw(st.sampled_from([1.0, 0.1, 1e-7, 3.0e5]))
    a = (ints * scale).astype(dtype)
    try:
        np.histogram(a, bins=bins)
    except ValueError:
        assume(False)
    check_equal(a, bins)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "values",
    [
        [3.0] * 10,  # all equal: numpy widens the range by 0.5 each way
        [0.0, 1.0, 2.0, 3.0],  # the maximum sits exactly on the last edge
        [1.0, 1.0 + 1e-6, 1.0 + 2e-6],  # tiny range
        [-1e30, 0.0, 1e30],  # huge range
        [0.0, 5e-324, 1e-300],  # subnormals
        [-0.0, 0.0],
    ],
)
@pytest.mark.parametrize("bins", [1, 7, 64, 512])
def test_edge_cases_equal_numpy(dtype, values, bins):
    a = np.array(values, dtype=dtype)
    try:
        with np.errstate(all="ignore"):
            _, edges = np.histogram(a, bins=bins)
    except ValueError:
        pytest.skip("numpy refuses this case")
    if not np.all(np.isfinite(edges)):
        pytest.skip("the range overflows the dtype")
    check_equal(a, bins)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "lo, hi",
    [
        (0.0, 1.0),
        (-5.3, 5.4),
        (-0.0, 1.0),
        (-0.0, 0.0),
        (1e6, 1e6 + 1.0),  # a huge offset with a tiny range: edges coarser than the data
        (1.0, 1.0 + 1e-6),
        (1e-40, 3e-38),  # subnormal for float32
        (1e-310, 3e-308),  # subnormal for float64 (zero for float32)
        (1e30, 2e30),
        (0.0, 1e38),  # n / range is subnormal for float32 with 1 to 3 bins
        (0.0, 1e308),  # likewise for float64 (float32 overflows: skipped)
        (-7.0, -2.0),
    ],
)
@pytest.mark.parametrize("bins", [1, 2, 3, 7, 64, 333, 512])
def test_values_on_and_next_to_every_edge_equal_numpy(dtype, lo, hi, bins):
    # The fast path skips numpy's edge corrections away from edges; here every edge and its
    # 20 neighbours each way are in the data, shuffled among values inside the bins.
    with np.errstate(over="ignore"):
        lo, hi = dtype(lo), dtype(hi)
    if not np.isfinite(hi):
        pytest.skip("the range overflows the dtype")
    try:
        _, edges = np.histogram(np.array([lo, hi], dtype=dtype), bins=bins)
    except ValueError:
        pytest.skip("numpy refuses this case (too many bins for the range)")
    near, up, down = [edges], edges, edges
    for _ in range(20):
        up, down = np.nextafter(up, dtype(np.inf)), np.nextafter(down, dtype(-np.inf))
        near += [up, down]
    rng = np.random.default_rng(bins)
    inside = lo + (hi - lo) * rng.random(1000).astype(dtype)
    a = np.concatenate([[lo, hi], *near, inside]).astype(dtype)
    a = a[(a >= min(lo, hi)) & (a <= max(lo, hi))]
    rng.shuffle(a)
    check_equal(a, bins)


def test_non_finite_elements_are_left_out_and_counted():
    a = np.array([np.nan, 1.0, np.inf, 2.0, -np.inf, np.nan, 3.0], dtype=np.float32)
    h = check_equal(a, 4)
    assert h.nan_count == 2 and h.inf_count == (1, 1)


def test_all_non_finite_gives_an_empty_histogram_with_counts(run):
    a = np.full(100, np.nan)
    a[:3] = np.inf
    run.log({"w": a})
    run.finish()
    [(_, value)] = steplog.open(run.dir).history("w")
    assert value["counts"].size == 0 and value["edges"].size == 0
    assert (value["nan"], value["pos_inf"], value["neg_inf"]) == (97, 3, 0)


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
)
def test_integer_arrays_equal_numpy(dtype):
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    a = rng.integers(max(info.min, -1000), min(info.max, 1000), size=500).astype(dtype)
    for bins in (1, 10, 64, 333):
        check_equal(a, bins)


def test_views_are_read_in_place_whatever_the_layout():
    base = np.random.default_rng(4).standard_normal((40, 30))
    for view in (base[::2, ::3], base.T, np.asfortranarray(base), base[:, 5]):
        check_equal(view, 64)


def test_float16_and_bool_arrays_are_accepted():
    h = steplog.Histogram(np.linspace(0, 1, 100).astype(np.float16), num_bins=4)
    assert h.counts.sum() == 100
    b = steplog.Histogram(np.array([True, False, True] * 20), num_bins=2)
    assert b.counts.tolist() == [20, 40]


def test_large_arrays_are_binned_with_identical_counts():
    a = np.random.default_rng(5).standard_normal(1_000_000).astype(np.float32)
    check_equal(a, 64)
