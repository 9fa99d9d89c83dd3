"""Every kind of value round-trips through the reader; bad input fails with a clear error."""

import math

import numpy as np
import pytest

import steplog


def only(run, key):
    run.finish()
    return steplog.open(run.dir).history(key)


@pytest.mark.parametrize(
    "value, expected",
    [
        (1.5, 1.5),
        (-0.0, -0.0),
        (3, 3),
        (-(2**63), -(2**63)),
        (2**63 - 1, 2**63 - 1),
        (True, True),
        (False, False),
        ("hello ✓", "hello ✓"),
        (np.float64(0.25), 0.25),
        (np.float32(0.1), float(np.float32(0.1))),
        (np.float16(0.5), 0.5),
        (np.int64(7), 7),
        (np.uint8(200), 200),
        (np.bool_(True), True),
        (np.array([2.5]), 2.5),
        (np.array([[4]]), 4),
    ],
)
def test_scalar_and_text_values_round_trip_exactly(run, value, expected):
    run.log({"v": value})
    [(step, got)] = only(run, "v")
    assert step == 0
    assert got == expected and type(got) is type(expected)
    if isinstance(expected, float):
        assert math.copysign(1, got) == math.copysign(1, expected)


def test_ints_beyond_int64_become_floats(run):
    run.log({"v": 2**70})
    assert only(run, "v") == [(0, float(2**70))]


def test_nan_and_inf_are_kept_exactly_by_default(run):
    run.log({"a": float("nan"), "b": float("inf"), "c": float("-inf")})
    run.finish()
    r = steplog.open(run.dir)
    assert math.isnan(r.scalars("a")[1][0])
    assert r.scalars("b")[1][0] == math.inf and r.scalars("c")[1][0] == -math.inf


def test_nested_dicts_flatten_with_slashes(run):
    run.log({"train": {"loss": 1.0, "opt": {"lr": 0.1}}, "val/loss": 2.0})
    run.finish()
    r = steplog.open(run.dir)
    assert r.keys() == ["train/loss", "train/opt/lr", "val/loss"]
    assert r.history("train/opt/lr") == [(0, 0.1)]


def test_a_nested_key_that_repeats_a_flat_one_keeps_one_value_the_later(run):
    run.log({"a/b": 1.0, "a": {"b": 2.0}, "c": 3.0})
    run.log({"a": {"b": 4.0}, "a/b": 5.0})
    run.log({"a/b": 6.0, "c": 7.0}, commit=False)
    run.log({"a": {"b": 8.0}})
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("a/b") == [(0, 2.0), (1, 5.0), (2, 8.0)]
    assert r.history("c") == [(0, 3.0), (2, 7.0)]


@pytest.mark.parametrize("n", [2, 5, 32])
def test_small_arrays_become_lists(run, n):
    data = np.arange(n, dtype=np.float32) / 3
    run.log({"v": data})
    [(_, got)] = only(run, "v")
    assert got == data.astype(np.float64).tolist()


def test_python_lists_and_tuples_of_numbers_follow_the_tensor_rules(run):
    run.log({"one": [3], "few": (1, 2.5), "many": list(range(100))})
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("one") == [(0, 3)]
    assert r.history("few") == [(0, [1.0, 2.5])]
    assert r.histograms("many")[0][1].sum() == 100


def test_lists_keep_their_element_type(run):
    run.log({"i": np.array([1, 2, 3], dtype=np.int16), "b": np.array([True, False])})
    run.finish()
    r = steplog.open(run.dir)
    [(_, ints)] = r.history("i")
    [(_, bools)] = r.history("b")
    assert ints == [1, 2, 3] and all(type(x) is int for x in ints)
    assert bools == [True, False] and all(type(x) is bool for x in bools)


def test_small_arrays_keep_their_shape_and_int_type_as_in_wandb(run):
    run.log({"m": np.array([[1, 2], [3, 4]]), "f": np.arange(6.0).reshape(1, 2, 3)})
    run.log({"m": [[5, 6], [7, 8]], "f": ((0.5, 1), (2, 3))})
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("m") == [(0, [[1, 2], [3, 4]]), (1, [[5, 6], [7, 8]])]
    assert all(type(x) is int for _, m in r.history("m") for row in m for x in row)
    assert r.history("f") == [
        (0, [[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]]),
        (1, [[0.5, 1.0], [2.0, 3.0]]),
    ]
    assert type(r.history("f")[1][1][0][1]) is float


def test_uint64_lists_beyond_int64_become_floats(run):
    run.log({"u": np.array([2**64 - 1, 1], dtype=np.uint64), "k": np.array([7, 1], np.uint64)})
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("u") == [(0, [float(2**64 - 1), 1.0])]
    assert r.history("k") == [(0, [7, 1])] and type(r.history("k")[0][1][0]) is int


@pytest.mark.parametrize(
    "value", [[], (), np.array([]), np.zeros((0, 3)), np.zeros((5, 0), dtype=np.int64)]
)
def test_empty_arrays_and_lists_are_stored_as_empty_lists_as_in_wandb(run, value):
    run.log({"e": value, "x": 1.0})
    assert only(run, "e") == [(0, [])]


def test_large_arrays_become_64_bin_histograms_equal_to_numpy(run):
    data = np.random.default_rng(1).standard_normal(1000)
    run.log({"w": data})
    run.finish()
    [(step, counts, edges)] = steplog.open(run.dir).histograms("w")
    want_counts, want_edges = np.histogram(data, bins=64)
    assert step == 0
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(edges, want_edges)


def test_histogram_objects(run):
    h = steplog.Histogram([1, 2, 2, 3, 3, 3], num_bins=3)
    assert h.counts.tolist() == [1, 2, 3]
    run.log({"h": h, "pre": steplog.Histogram(np_histogram=([1, 2], [0.0, 0.5, 1.0]))})
    run.finish()
    r = steplog.open(run.dir)
    [(_, counts, edges)] = r.histograms("pre")
    assert counts.tolist() == [1, 2] and edges.tolist() == [0.0, 0.5, 1.0]
    assert r.histograms("h")[0][1].tolist() == [1, 2, 3]


@pytest.mark.parametrize("bins", [0, 513, -1])
def test_histogram_bins_are_checked(bins):
    with pytest.raises(ValueError, match="num_bins"):
        steplog.Histogram([1.0, 2.0], num_bins=bins)


@pytest.mark.parametrize(
    "pair, message",
    [
        (([1, 2], [0.0, 1.0]), "one longer"),
        (([1, 2], [0.0, 2.0, 1.0]), "increasing"),
        (([1], [0.0, float("inf")]), "finite"),
        (([-1], [0.0, 1.0]), "non-negative"),
        ("nope", "pair"),
    ],
)
def test_np_histogram_is_checked(pair, message):
    with pytest.raises(ValueError, match=message):
        steplog.Histogram(np_histogram=pair)


@pytest.mark.parametrize(
    "value, type_name",
    [(object(), "object"), (["a", "b"], "list"), ({1}, "set"), (frozenset(), "frozenset")],
)
def test_unsupported_values_raise_type_error_naming_the_key(run, value, type_name):
    with pytest.raises(TypeError, match=rf"key 'bad'.*{type_name}"):
        run.log({"ok": 1.0, "bad": value})
    run.log({"ok": 2.0})
    assert only(run, "ok") == [(0, 2.0)], "a failed call logs nothing, not even its good keys"


def test_a_key_logged_as_none_is_left_out_of_the_row_as_wandb_shows_null(run):
    run.log({"a": 1.0, "b": None})
    run.log({"b": None})
    run.log({"a": 2.0, "b": 3.0})
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("a") == [(0, 1.0), (2, 2.0)]
    assert r.history("b") == [(2, 3.0)]
    assert r.rows == 2, "the call that logged only None advanced the step without a row"


def test_unsupported_nested_values_name_the_full_key(run):
    with pytest.raises(TypeError, match="key 'train/bad'"):
        run.log({"train": {"bad": object()}})


def test_non_string_keys_raise_type_error(run):
    with pytest.raises(TypeError, match="keys must be str"):
        run.log({1: 2.0})
    with pytest.raises(TypeError, match="keys must be str"):
        run.log({"a": {2: 2.0}})


def test_data_must_be_a_dict(run):
    with pytest.raises(TypeError, match="expected a dict"):
        run.log([("a", 1)])


@pytest.mark.parametrize("key", ["_step", "_timestamp", ""])
def test_reserved_and_empty_keys_are_refused(run, key):
    with pytest.raises(ValueError, match="reserved|empty"):
        run.log({key: 1.0})


def test_overlong_keys_are_refused(run):
    with pytest.raises(ValueError, match="1024 bytes"):
        run.log({"k" * 2000: 1.0})


def test_a_text_over_the_limit_is_refused_naming_the_key_by_log_and_by_a_handle(run):
    big = "x" * ((1 << 20) + 1)
    with pytest.raises(ValueError, match="key 'note'.*over the 1048576-byte limit"):
        run.log({"ok": 1.0, "note": big})
    with pytest.raises(ValueError, match="'note'.*over the 1048576-byte limit"):
        run.metric("note").log(big)
    run.log({"ok": 2.0, "note": "short"})
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("ok") == [(0, 2.0)], "nothing of a refused call was logged"
    assert r.history("note") == [(0, "short")]


def test_many_keys_fresh_key_objects_and_reused_addresses_all_land_under_their_names(run):
    # More distinct keys than the key-object cache has slots, keys built anew on every call
    # (f-strings: new objects, often at a freed object's address), and literal keys.
    names = [f"k{i}" for i in range(600)]
    for step in range(3):
        run.log({name: float(step * 1000 + i) for i, name in enumerate(names)})
        for j in range(50):
            run.log({f"dyn/{j % 7}": float(j), "lit": float(step)}, step=10 + step * 100 + j)
    run.finish()
    r = steplog.open(run.dir)
    for i in (0, 1, 255, 256, 599):
        assert [v for _, v in r.history(f"k{i}")] == [float(s * 1000 + i) for s in range(3)]
    for j in range(7):
        got = r.history(f"dyn/{j}")
        assert got and all(v % 7 == j for _, v in got)
    assert len(r.history("lit")) == 150


def test_to_pandas_keeps_list_keys_as_object_columns(run):
    pd = pytest.importorskip("pandas")
    run.log({"m": np.array([[1, 2], [3, 4]]), "x": 1.0})
    run.log({"m": [5, 6], "x": 2.0})
    run.log({"x": 3.0})
    run.finish()
    df = steplog.open(run.dir).to_pandas()
    assert df["m"].dtype == object
    assert df["m"].tolist()[:2] == [[[1, 2], [3, 4]], [5, 6]] and pd.isna(df["m"].iloc[2])
