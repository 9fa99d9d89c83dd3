"""Real PyTorch tensors through `log()`: every CPU dtype, 0-d and size-1 tensors, lists (≤ 32
elements) and histograms (more), `requires_grad` tensors and parameters, non-contiguous views,
tensors in nested dicts. The CUDA path runs only where a GPU is present.

What each dtype becomes: float32/float64/float16/bfloat16 → float (16-bit floats via float32),
bool → bool, integer dtypes → int (a 0-d or size-1 tensor) or numbers in a list; larger
tensors are 64-bin histograms (numpy.histogram's bins over the values, float16/bfloat16 after
widening to float32, integers and bools over their integer values). Complex tensors are
rejected with a TypeError naming the key, as complex numpy arrays are.
"""

import warnings

import numpy as np
import pytest

import steplog

torch = pytest.importorskip("torch")

FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
INTS = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
COMPLEX = [torch.complex64, torch.complex128]


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _sample(dtype, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return (torch.randn(n, generator=g, dtype=torch.float64) * 3).to(dtype)
    if dtype == torch.bool:
        return torch.rand(n, generator=g) > 0.3
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -1000), min(info.max, 1000)
    return torch.randint(lo, hi + 1, (n,), generator=g, dtype=torch.int64).to(dtype)


def _as_numpy(t) -> np.ndarray:
    """What the values are as numpy sees them (16-bit floats widened to float32)."""
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t.numpy()


def _read(run):
    run.finish()
    return steplog.open(run.dir)


def _flat(value) -> list:
    """A logged list, flattened (nested lists when a shape is kept, flat ones otherwise)."""
    return np.asarray(value, dtype=np.float64).ravel().tolist()


@pytest.mark.parametrize("dtype", FLOATS + INTS + [torch.bool], ids=_name)
def test_zero_d_and_size_one_tensors_are_scalars(run, dtype):
    zero_d = _sample(dtype, 1, seed=1)[0]
    assert zero_d.dim() == 0
    one = _sample(dtype, 1, seed=2)
    nested = _sample(dtype, 1, seed=3).reshape(1, 1, 1)
    run.log({"zero_d": zero_d, "one": one, "nested": nested})
    r = _read(run)
    for key, t in [("zero_d", zero_d), ("one", one), ("nested", nested)]:
        [(step, got)] = r.history(key)
        want = _as_numpy(t).reshape(()).item()
        assert step == 0
        if dtype == torch.bool:
            assert got is want, key
        elif dtype.is_floating_point:
            assert isinstance(got, float) and got == want, key
        else:
            assert isinstance(got, int) and got == want, key


@pytest.mark.parametrize("dtype", FLOATS + INTS + [torch.bool], ids=_name)
@pytest.mark.parametrize("n", [2, 32])
def test_small_tensors_are_lists(run, dtype, n):
    t = _sample(dtype, n)
    run.log({"t": t})
    [(_, got)] = _read(run).history("t")
    assert _flat(got) == _as_numpy(t).astype(np.float64).tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=_name)
@pytest.mark.parametrize("n", [33, 1000, 100_000])
def test_large_float_tensors_are_numpy_histograms(run, dtype, n):
    t = _sample(dtype, n)
    run.log({"t": t})
    [(_, counts, edges)] = _read(run).histograms("t")
    want_counts, want_edges = np.histogram(t.numpy(), bins=64)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_allclose(edges, want_edges, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=_name)
def test_large_half_tensors_are_binned_as_float32(run, dtype):
    t = _sample(dtype, 5000)
    run.log({"t": t})
    [(_, counts, edges)] = _read(run).histograms("t")
    want_counts, want_edges = np.histogram(t.float().numpy(), bins=64)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_allclose(edges, want_edges, rtol=1e-6)


@pytest.mark.parametrize("dtype", [*INTS, torch.bool], ids=_name)
def test_large_integer_and_bool_tensors_are_histograms_of_their_values(run, dtype):
    t = _sample(dtype, 5000)
    run.log({"t": t})
    [(_, counts, edges)] = _read(run).histograms("t")
    values = t.numpy().astype(np.int64)
    assert counts.sum() == t.numel()
    assert edges[0] == values.min() and edges[-1] >= values.max()
    # Every value falls in the bin its edges give (the last bin is closed).
    at = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(counts) - 1)
    np.testing.assert_array_equal(np.bincount(at, minlength=len(counts)), counts)


@pytest.mark.parametrize("dtype", COMPLEX, ids=_name)
@pytest.mark.parametrize("n", [1, 4, 100])
def test_complex_tensors_are_rejected_naming_the_key(run, dtype, n):
    t = torch.full((n,), 1 + 2j, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "discards the imaginary part" warning either
        with pytest.raises(TypeError, match=r"key 'c'.*complex"):
            run.log({"ok": 1.0, "c": t})
    run.log({"after": 2.0})
    r = _read(run)
    assert r.keys() == ["after"]  # nothing of the rejected call was logged


def test_rarer_dtypes(run):
    unsigned = [getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n)]
    f8 = [getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n)]
    values = torch.tensor([0.5, -1.25, 3.0, 448.0])
    logged = {_name(d): torch.tensor([1, 2, 60000]).to(d) for d in unsigned}
    logged.update({_name(d): values.to(d) for d in f8})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized dtypes are deprecated (torch 2.10+)
        logged["quint8"] = torch.quantize_per_tensor(values, 0.25, 10, torch.quint8)
    run.log(logged)
    r = _read(run)
    for d in unsigned:
        assert r.history(_name(d)) == [(0, [1, 2, 60000])]
    for d in f8:
        assert _flat(r.history(_name(d))[0][1]) == values.to(d).double().tolist()
    assert _flat(r.history("quint8")[0][1]) == logged["quint8"].dequantize().double().tolist()


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda: torch.ones(3).to_sparse(), "layout"),
        (lambda: torch.ones(40, 40).to_sparse_csr(), "layout"),
        (lambda: torch.ones(3, device="meta"), "meta"),
        (lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]), "nested"),
    ],
    ids=["sparse", "sparse_csr", "meta", "nested"],
)
def test_tensors_without_plain_values_are_rejected_naming_the_key(run, make, why):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nested tensors are a prototype feature
        t = make()
    with pytest.raises(TypeError, match=rf"key 'x'.*{why}"):
        run.log({"x": t})


def test_requires_grad_tensors_are_detached(run):
    w = torch.randn(1000, requires_grad=True)
    loss = (w * 2).sum()  # a non-leaf with a grad_fn
    small = w[:3] * 1.5
    p = torch.nn.Parameter(torch.randn(4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run.log({"w": w, "loss": loss, "small": small, "p": p, "pb": p.bfloat16()})
    assert w.requires_grad and w.grad is None and loss.requires_grad
    loss.backward()  # the graph is intact after logging
    assert torch.equal(w.grad, torch.full_like(w, 2.0))
    r = _read(run)
    assert r.history("loss") == [(0, pytest.approx(loss.item()))]
    assert _flat(r.history("small")[0][1]) == small.detach().double().tolist()
    want, _ = np.histogram(w.detach().numpy(), bins=64)
    np.testing.assert_array_equal(r.histograms("w")[0][1], want)
    assert _flat(r.history("p")[0][1]) == p.detach().double().flatten().tolist()
    assert _flat(r.history("pb")[0][1]) == p.detach().bfloat16().double().flatten().tolist()


@pytest.mark.parametrize("kind", ["requires_grad", "bfloat16"])
def test_lists_of_tensors_are_converted_like_tensors(run, kind):
    a = torch.tensor(1.5, requires_grad=True)
    items = [a * 2, a * 3] if kind == "requires_grad" else [a.detach().bfloat16(), a.detach()]
    run.log({"losses": items})
    assert _flat(_read(run).history("losses")[0][1]) == [t.detach().double().item() for t in items]


def test_non_contiguous_tensors_read_in_logical_order(run):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    transposed = base.t()
    strided = torch.arange(100, dtype=torch.int64)[::7]
    big = torch.randn(300, 200).t()[:, ::3]
    expanded = torch.tensor([1.5, -2.0]).expand(8, 2)
    assert not transposed.is_contiguous() and not big.is_contiguous()
    run.log({"transposed": transposed, "strided": strided, "big": big, "expanded": expanded})
    r = _read(run)
    assert _flat(r.history("transposed")[0][1]) == transposed.flatten().double().tolist()
    assert _flat(r.history("strided")[0][1]) == strided.double().tolist()
    assert _flat(r.history("expanded")[0][1]) == expanded.flatten().double().tolist()
    want, _ = np.histogram(big.numpy(), bins=64)
    np.testing.assert_array_equal(r.histograms("big")[0][1], want)


def test_tensors_in_nested_dicts(run):
    w = torch.randn(500)
    run.log(
        {
            "model": {
                "layer1": {"weight": w, "bias": torch.zeros(3)},
                "scale": torch.tensor(0.25),
            },
            "step_loss": torch.tensor(1.5, dtype=torch.float64),
        }
    )
    r = _read(run)
    assert set(r.keys()) == {"model/layer1/weight", "model/layer1/bias", "model/scale", "step_loss"}
    np.testing.assert_array_equal(
        r.histograms("model/layer1/weight")[0][1], np.histogram(w.numpy(), bins=64)[0]
    )
    assert _flat(r.history("model/layer1/bias")[0][1]) == [0.0, 0.0, 0.0]
    assert r.history("model/scale") == [(0, 0.25)]
    assert r.history("step_loss") == [(0, 1.5)]


def test_tensors_over_many_steps_are_scalars(run):
    x = torch.linspace(0, 1, 100)
    for i, v in enumerate(x):
        run.log({"x": v, "i": torch.tensor(i)})
    r = _read(run)
    steps, values = r.scalars("x")
    np.testing.assert_array_equal(steps, np.arange(100))
    np.testing.assert_array_equal(values, x.double().numpy())
    assert r.scalars("i")[1].tolist() == list(range(100))


def test_histogram_of_tensors(run):
    t = torch.randn(10_000, dtype=torch.float64)
    run.log({"h": steplog.Histogram(t, num_bins=16), "hb": steplog.Histogram(t.bfloat16())})
    r = _read(run)
    np.testing.assert_array_equal(r.histograms("h")[0][1], np.histogram(t.numpy(), bins=16)[0])
    assert r.histograms("hb")[0][1].sum() == t.numel()


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=_name)
def test_cuda_tensors_match_their_cpu_copies(run, dtype):
    big = _sample(dtype, 100_000).cuda()
    small = _sample(dtype, 8).cuda()
    scalar = _sample(dtype, 1)[0].cuda().requires_grad_(dtype.is_floating_point)
    run.log({"big": big, "small": small, "scalar": scalar})
    r = _read(run)
    want, edges = np.histogram(_as_numpy(big.cpu()), bins=64)
    [(_, counts, got_edges)] = r.histograms("big")
    np.testing.assert_array_equal(counts, want)
    np.testing.assert_allclose(got_edges, edges, rtol=1e-6)
    assert _flat(r.history("small")[0][1]) == _as_numpy(small.cpu()).astype(np.float64).tolist()
    assert r.history("scalar") == [(0, _as_numpy(scalar.cpu()).item())]


@cuda
def test_cuda_complex_tensors_are_rejected_naming_the_key(run):
    with pytest.raises(TypeError, match=r"key 'c'.*complex"):
        run.log({"c": torch.ones(1000, dtype=torch.complex64, device="cuda")})


def test_a_list_of_tensors_that_do_not_stack_is_refused_naming_the_key(run):
    with pytest.raises(TypeError, match="key 'ragged'.*do not stack"):
        run.log({"ragged": [torch.zeros(2), torch.zeros(3)]})
    run.log({"ok": 1.0})
    assert _read(run).keys() == ["ok"]
