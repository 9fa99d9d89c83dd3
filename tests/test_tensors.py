"""Tensors: numpy of every numeric dtype, DLPack and __array__ producers, torch and jax when
installed. size 1 → scalar, ≤ 32 → list, larger → 64-bin histogram."""

import numpy as np
import pytest

import steplog


def logged(run, value):
    run.log({"v": value})
    run.finish()
    [(_, got)] = steplog.open(run.dir).history("v")
    return got


class DLPackOnly:
    """Exposes a numpy array through the DLPack protocol only."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class ArrayOnly:
    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


@pytest.mark.parametrize(
    "dtype",
    [
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
    ],
)
@pytest.mark.parametrize("size", [1, 7, 32, 33, 1000])
def test_every_numeric_dtype_follows_the_size_rules(run, dtype, size):
    a = (np.arange(size) % 3).astype(dtype)
    got = logged(run, a)
    if size == 1:
        assert got == a[0].item()
    elif size <= 32:
        assert got == a.tolist()
        want = float if a.dtype.kind == "f" else bool if a.dtype.kind == "b" else int
        assert all(type(x) is want for x in got)
    else:
        assert int(got["counts"].sum()) == size
        assert got["counts"].size == 64


def test_non_contiguous_views_become_lists_in_order_and_shape(run):
    a = np.arange(40.0).reshape(8, 5)[::2, ::2]  # 4x3, strided
    assert logged(run, a) == a.tolist()


def test_fortran_order_arrays_read_back_in_row_major_order(run):
    a = np.asfortranarray(np.arange(6).reshape(2, 3))
    assert logged(run, a) == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("dtype", [">i4", ">f8", ">u2", "<i8"])
def test_arrays_in_either_byte_order(run, dtype):
    a = np.array([[1, 2], [3, 4]], dtype=dtype)
    assert logged(run, a) == a.tolist()


def test_dlpack_producers(run):
    a = np.linspace(0, 1, 100, dtype=np.float32)
    got = logged(run, DLPackOnly(a))
    want, _ = np.histogram(a, bins=64)
    np.testing.assert_array_equal(got["counts"], want)


def test_array_protocol_objects(run):
    assert logged(run, ArrayOnly(np.array([1.5, 2.5]))) == [1.5, 2.5]


def test_zero_dim_arrays_and_numpy_scalars_are_scalars(run):
    run.log({"a": np.array(3.5), "b": np.float32(0.25), "c": np.int8(-3), "d": np.bool_(False)})
    run.finish()
    r = steplog.open(run.dir)
    assert [r.history(k)[0][1] for k in "abcd"] == [3.5, 0.25, -3, False]


def test_unsupported_dtypes_name_the_key(run):
    with pytest.raises(TypeError, match="key 'c'.*complex"):
        run.log({"c": np.array([1 + 2j, 3j])})
    for dtype in ["U3", "S2", "O", "i4,f8"]:
        with pytest.raises(TypeError, match="key 'x'.*dtype"):
            run.log({"x": np.zeros(3, dtype=dtype)})


def _torch():
    return pytest.importorskip("torch")


def test_torch_cpu_tensors(run):
    torch = _torch()
    w = torch.randn(1000, requires_grad=True)
    run.log({"w": w, "s": torch.tensor(2.5), "l": torch.arange(4), "b": torch.ones(40).bfloat16()})
    run.finish()
    r = steplog.open(run.dir)
    want, _ = np.histogram(w.detach().numpy(), bins=64)
    np.testing.assert_array_equal(r.histograms("w")[0][1], want)
    assert r.history("s") == [(0, 2.5)] and r.history("l") == [(0, [0, 1, 2, 3])]
    assert r.histograms("b")[0][1].sum() == 40


def test_torch_cuda_tensors_are_binned_on_the_device(run):
    torch = _torch()
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    w = torch.randn(100_000, device="cuda")
    run.log({"w": w})
    run.finish()
    want, edges = np.histogram(w.cpu().numpy(), bins=64)
    [(_, counts, got_edges)] = steplog.open(run.dir).histograms("w")
    np.testing.assert_array_equal(counts, want)
    np.testing.assert_allclose(got_edges, edges, rtol=1e-6)


def test_jax_arrays(run):
    jnp = pytest.importorskip("jax.numpy")
    run.log({"a": jnp.arange(3.0), "b": jnp.ones(100)})
    run.finish()
    r = steplog.open(run.dir)
    assert r.history("a") == [(0, [0.0, 1.0, 2.0])]
    assert r.histograms("b")[0][1].sum() == 100
