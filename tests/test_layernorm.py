"""Layer normalization: forward, backward, N-D inputs, torch as the oracle, hostile inputs."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastnn.functional as F
from fastnn._cpu import layernorm as _ln
from tests.conftest import assert_close, hostile_layouts
from tests.gradcheck import assert_grad_close, numerical_vjp
from tests.reference import layernorm as ref

DTYPES = [np.float32, np.float64]
# (5, 3): the serial twin; (64, 512) = 32768 elements: the parallel twins.
SHAPES = [(5, 3), (64, 512)]


def make(shape, ns, dtype, seed=0, offset=0.0, scale=1.0):
    """x, dy of ``shape``; weight, bias of the trailing ``ns``."""
    rng = np.random.default_rng(seed)
    x = (offset + scale * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    weight = rng.uniform(0.5, 2.0, ns).astype(dtype)
    bias = rng.standard_normal(ns).astype(dtype)
    return x, dy, weight, bias


def conditioning(x, invstd):
    """How much rounding of x is amplified by the normalization (as in test_batchnorm)."""
    if x.size == 0:
        return 1.0
    return max(1.0, 1e-5 * float(np.abs(x).max()) * float(np.max(invstd)))


def check_forward(x, ns, weight, bias, eps=1e-5):
    y, mean, invstd = F.layer_norm(x, ns, weight, bias, eps=eps)
    ry, rmean, rinvstd = ref.layer_norm(x, ns, weight, bias, eps)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert mean.dtype == invstd.dtype == np.float64 and mean.shape == rmean.shape
    gain = 1.0 if weight is None else float(np.abs(weight).max(initial=1.0))
    scale = max(1.0, float(np.abs(ry).max(initial=0))) * conditioning(x, rinvstd) * gain
    assert_close(y, ry, x.dtype, kind="reduction", scale=scale)
    assert_close(mean, rmean, np.float64, kind="reduction")
    assert_close(invstd, rinvstd, x.dtype, kind="reduction")
    return y, mean, invstd


def check_backward(dy, x, ns, mean, invstd, weight):
    got = F.layer_norm_backward(dy, x, ns, mean, invstd, weight)
    want = ref.layer_norm_backward(dy, x, ns, mean, invstd, weight)
    k = conditioning(x, invstd)
    for g, w, name in zip(got, want, ("dx", "dweight", "dbias")):
        assert g.dtype == x.dtype and g.shape == w.shape, name
        assert_close(g, w, x.dtype, kind="reduction", scale=k * max(1.0, np.abs(w).max(initial=0)))
    return got


# ---------------------------------------------------------------- reference

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_reference(dtype, shape):
    ns = shape[-1]
    x, dy, w, b = make(shape, ns, dtype, offset=3.0, scale=2.0)
    for weight, bias in ((w, b), (w, None), (None, b), (None, None)):
        _, mean, invstd = check_forward(x, ns, weight, bias)
        check_backward(dy, x, ns, mean, invstd, weight)
    check_forward(x, ns, w, b, eps=1e-2)


@pytest.mark.parametrize("shape, ns", [((2, 3, 4, 5), (4, 5)), ((2, 3, 4, 5), (3, 4, 5)),
                                       ((2, 3, 4), 4), ((6,), (6,)), ((3, 1, 5), (1, 5))],
                         ids=str)
def test_n_dimensional_inputs_normalize_the_trailing_dims(shape, ns):
    x, dy, w, b = make(shape, ns, np.float64, seed=1, offset=-1.0)
    y, mean, invstd = check_forward(x, ns, w, b)
    k = 1 if isinstance(ns, int) else len(ns)
    assert mean.shape == shape[:len(shape) - k]
    check_backward(dy, x, ns, mean, invstd, w)
    # The same numbers as the 2-D call on the flattened rows.
    d = int(np.prod(shape[len(shape) - k:]))
    y2, m2, s2 = F.layer_norm(x.reshape(-1, d), d, w.reshape(d), b.reshape(d))
    np.testing.assert_array_equal(y.reshape(-1, d), y2)
    np.testing.assert_array_equal(mean.reshape(-1), m2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_parallel_twins_equal_the_serial_ones(dtype):
    x, dy, w, b = make((64, 512), 512, dtype, seed=2, offset=5.0)
    outs = []
    for twin in ("serial", "parallel"):
        y, mean, invstd = np.empty_like(x), np.empty(64), np.empty(64)
        getattr(_ln.layer_norm_forward, twin)(x, w, b, True, True, 1e-5, y, mean, invstd)
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(w)
        getattr(_ln.layer_norm_backward, twin)(dy, x, mean, invstd, w, True,
                                               1 if twin == "serial" else 8, dx, dw, db)
        outs.append((y, mean, invstd, dx, dw, db))
    # Equal up to rounding: the column sums of dweight/dbias merge 8 chunks
    # instead of 1, and LLVM may vectorize a row's sums differently in the
    # two compilations (it did under NUMBA_BOUNDSCHECK=1: last-bit differences).
    for a, b_ in zip(outs[0], outs[1]):
        assert_close(a, b_, dtype, kind="reduction", scale=np.abs(a).max())


# ---------------------------------------------------------------- torch oracle

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape, ns", [((64, 512), (512,)), ((4, 6, 7), (6, 7))], ids=str)
def test_matches_torch(torch, dtype, affine, shape, ns):
    x, dy, w, b = make(shape, ns, dtype, seed=3, offset=1.5, scale=0.7)
    w, b = (w, b) if affine else (None, None)
    y, mean, invstd = F.layer_norm(x, ns, w, b, eps=1e-4)
    dx, dw, db = F.layer_norm_backward(dy, x, ns, mean, invstd, w)

    tx = torch.tensor(x, requires_grad=True)
    # without affine, torch's gradients of the implicit gamma = 1, beta = 0
    tw = torch.tensor(w if affine else np.ones(ns, dtype), requires_grad=True)
    tb = torch.tensor(b if affine else np.zeros(ns, dtype), requires_grad=True)
    if affine:
        ty = torch.nn.functional.layer_norm(tx, ns, tw, tb, eps=1e-4)
    else:
        ty = torch.nn.functional.layer_norm(tx, ns, None, None, eps=1e-4) * tw + tb
    ty.backward(torch.tensor(dy))
    # torch works in x's precision; fastnn's statistics are float64.
    assert_close(y, ty.detach().numpy(), dtype, kind="reduction")
    assert_close(dx, tx.grad.numpy(), dtype, kind="reduction", scale=np.abs(dx).max())
    assert_close(dw, tw.grad.numpy(), dtype, kind="reduction", scale=np.abs(dw).max())
    assert_close(db, tb.grad.numpy(), dtype, kind="reduction", scale=np.abs(db).max())


def test_nan_and_inf_rows_match_torch(torch):
    x, dy, w, b = make((6, 5), 5, np.float64, seed=4)
    x[1, 2] = np.nan
    x[3, 0] = np.inf
    x[4, 4] = -np.inf
    y, mean, invstd = F.layer_norm(x, 5, w, b)
    dx, dw, db = F.layer_norm_backward(dy, x, 5, mean, invstd, w)
    tx = torch.tensor(x, requires_grad=True)
    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.layer_norm(tx, (5,), tw, tb)
    ty.backward(torch.tensor(dy))
    for got, want in ((y, ty), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        want = want.detach().numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert_close(got[np.isfinite(want)], want[np.isfinite(want)], np.float64,
                     kind="reduction")
    bad = [1, 3, 4]
    assert np.isnan(y[bad]).all() and np.isnan(dx[bad]).all() and np.isnan(mean[bad]).all()
    good = [0, 2, 5]
    assert np.isfinite(y[good]).all() and np.isfinite(dx[good]).all()


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("shape, ns", [((4, 5), 5), ((2, 3, 4), (3, 4))], ids=str)
def test_finite_differences(shape, ns):
    x, dy, w, b = make(shape, ns, np.float64, seed=5, offset=0.5, scale=1.5)

    def fwd(xv, wv, bv):
        return F.layer_norm(xv, ns, wv, bv)[0]

    _, mean, invstd = F.layer_norm(x, ns, w, b)
    dx, dw, db = F.layer_norm_backward(dy, x, ns, mean, invstd, w)
    assert_grad_close(dx, numerical_vjp(lambda v: fwd(v, w, b), x, dy))
    assert_grad_close(dw, numerical_vjp(lambda v: fwd(x, v, b), w, dy))
    assert_grad_close(db, numerical_vjp(lambda v: fwd(x, w, v), b, dy))
    # Without weight/bias: the gradients of an implicit gamma = 1, beta = 0.
    _, mean, invstd = F.layer_norm(x, ns)
    dx, dw, db = F.layer_norm_backward(dy, x, ns, mean, invstd)
    ones, zeros = np.ones_like(w), np.zeros_like(b)
    assert_grad_close(dx, numerical_vjp(lambda v: fwd(v, None, None), x, dy))
    assert_grad_close(dw, numerical_vjp(lambda v: fwd(x, v, zeros), ones, dy))
    assert_grad_close(db, numerical_vjp(lambda v: fwd(x, ones, v), zeros, dy))


# ---------------------------------------------------------------- properties

@given(lead=st.lists(st.integers(0, 6), min_size=0, max_size=2),
       trail=st.lists(st.integers(1, 9), min_size=1, max_size=2),
       offset=st.floats(-1e4, 1e4), log_scale=st.floats(-3, 3), affine=st.booleans(),
       seed=st.integers(0, 2**16))
def test_property_matches_reference(lead, trail, offset, log_scale, affine, seed):
    shape, ns = tuple(lead) + tuple(trail), tuple(trail)
    x, dy, w, b = make(shape, ns, np.float64, seed, offset, 10.0 ** log_scale)
    w, b = (w, b) if affine else (None, None)
    _, mean, invstd = check_forward(x, ns, w, b)
    check_backward(dy, x, ns, mean, invstd, w)


@given(n=st.integers(1, 16), d=st.integers(2, 64), offset=st.floats(-1e8, 1e8),
       log_scale=st.floats(-1, 2), seed=st.integers(0, 2**16))
def test_property_rows_are_standardized(n, d, offset, log_scale, seed):
    x, _, _, _ = make((n, d), d, np.float64, seed, offset, 10.0 ** log_scale)
    y, _, _ = F.layer_norm(x, d, eps=1e-12)
    # the rounding of x itself (ulp(offset)) is amplified by 1 / (the row's spread)
    tol = 1e-9 + 1e-15 * float(np.abs(x).max()) / float(x.std(axis=1).min())
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=tol)
    var = x.var(axis=1)
    np.testing.assert_allclose(y.var(axis=1), var / (var + 1e-12), rtol=1e-8 + 10 * tol)


# ---------------------------------------------------------------- hostile inputs

@pytest.mark.parametrize("dtype", DTYPES)
def test_a_huge_offset_loses_no_precision(dtype):
    rng = np.random.default_rng(6)
    offset = 1e8 if dtype == np.float64 else 1e4   # float32 cannot hold 1e8 + N(0, 1)
    x = (offset + rng.standard_normal((32, 256))).astype(dtype)
    y, mean, invstd = F.layer_norm(x, 256)
    y64 = y.astype(np.float64)
    np.testing.assert_allclose(y64.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(y64.var(axis=1), 1.0, rtol=1e-4)
    ry, rmean, rinvstd = ref.layer_norm(x, 256)
    assert_close(y, ry, dtype, scale=1.0 if dtype == np.float32 else 1e3)
    np.testing.assert_allclose(mean, rmean, rtol=1e-15)   # fsum-exact means
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx, dw, db = F.layer_norm_backward(dy, x, 256, mean, invstd)
    rdx, rdw, _ = ref.layer_norm_backward(dy, x, 256, rmean, rinvstd)
    assert_close(dx, rdx, dtype, scale=1.0 if dtype == np.float32 else 1e3)
    assert_close(dw, rdw, dtype, kind="reduction", scale=np.abs(rdw).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_rows_and_one_feature_give_the_bias(dtype):
    x = np.full((3, 4), 7.25, dtype=dtype)
    x[1] = -1e4
    b = np.array([1.0, 2.0, 3.0, 4.0], dtype=dtype)
    w = np.full(4, 3.0, dtype=dtype)
    y, mean, invstd = F.layer_norm(x, 4, w, b)
    np.testing.assert_array_equal(y, np.broadcast_to(b, y.shape))
    assert np.all(np.isfinite(invstd))
    dy = np.random.default_rng(7).standard_normal(x.shape).astype(dtype)
    dx, dw, db = F.layer_norm_backward(dy, x, 4, mean, invstd, w)
    assert np.all(np.isfinite(dx)) and np.all(dw == 0)
    rdx, _, _ = ref.layer_norm_backward(dy, x, 4, mean, invstd, w)
    assert_close(dx, rdx, dtype, kind="reduction", scale=np.abs(rdx).max())
    # One feature: every row is constant; y is the bias, dx is 0 up to the
    # rounding of invstd * (g - mean(g)) with invstd = 1 / sqrt(eps).
    x1 = np.random.default_rng(8).standard_normal((5, 1)).astype(dtype)
    y, mean, invstd = F.layer_norm(x1, 1, w[:1], b[:1])
    np.testing.assert_array_equal(y, np.full((5, 1), b[0]))
    dx, dw, db = F.layer_norm_backward(x1, x1, 1, mean, invstd, w[:1])
    assert_close(dx, np.zeros_like(dx), dtype, scale=float(invstd[0] * np.abs(x1).max()))
    assert_close(db, x1.sum(keepdims=True)[0], dtype, kind="reduction")


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_and_tiny_values(dtype):
    big = 1e18 if dtype == np.float32 else 1e100
    for scale in (big, 1.0 / big):
        x, _, w, b = make((16, 4), 4, dtype, seed=9, scale=scale)
        x[:, 0] += np.asarray(scale * 1e3, dtype)
        check_forward(x, 4, w, b)


def test_empty_batch():
    for shape in ((0, 3), (2, 0, 3)):
        x = np.empty(shape, np.float32)
        y, mean, invstd = F.layer_norm(x, 3)
        assert y.shape == shape and mean.shape == invstd.shape == shape[:-1]
        dx, dw, db = F.layer_norm_backward(x, x, 3, mean, invstd, np.ones(3, np.float32))
        assert dx.shape == shape and np.all(dw == 0) and np.all(db == 0)


def test_hostile_layouts():
    x, dy, w, b = make((9, 6), 6, np.float64, seed=10, offset=2.0)
    y0, m0, s0 = F.layer_norm(x, 6, w, b)
    g0 = F.layer_norm_backward(dy, x, 6, m0, s0, w)
    for (name, hx), (_, hdy), (_, hw) in zip(hostile_layouts(x), hostile_layouts(dy),
                                            hostile_layouts(np.tile(w, (2, 1)))):
        hw = hw[0]
        before = hx.copy()
        y, m, s = F.layer_norm(hx, 6, hw, b[::-1].copy()[::-1])
        np.testing.assert_array_equal(y, y0, err_msg=name)
        np.testing.assert_array_equal(hx, before, err_msg=name)
        g = F.layer_norm_backward(hdy, hx, 6, m, s, hw)
        for a, a0 in zip(g, g0):
            np.testing.assert_array_equal(a, a0, err_msg=name)
    # statistics in any layout too (a strided view of a (2, N) array)
    g = F.layer_norm_backward(dy, x, 6, np.stack([m0, m0])[:, 0:9][1], s0[::-1][::-1], w)
    np.testing.assert_array_equal(g[0], g0[0])


def test_backward_accepts_stats_in_x_dtype():
    x, dy, w, _ = make((6, 4), 4, np.float32, seed=11)
    _, mean, invstd = F.layer_norm(x, 4)
    g64 = F.layer_norm_backward(dy, x, 4, mean, invstd, w)
    g32 = F.layer_norm_backward(dy, x, 4, mean.astype(np.float32), invstd.astype(np.float32), w)
    for a, b in zip(g32, g64):
        assert_close(a, b, np.float32, kind="reduction")


# ---------------------------------------------------------------- bad arguments

_x32 = np.random.default_rng(12).standard_normal((5, 4)).astype(np.float32)


@pytest.mark.parametrize("overrides, exc, match", [
    (dict(x=np.ones((5, 4), np.int64)), TypeError, "^x must be float32 or float64"),
    (dict(x=_x32.astype(np.float16)), TypeError, "^x must be"),
    (dict(x=_x32[:, :3]), ValueError, r"^x of shape \(5, 3\) does not end in normalized_shape"),
    (dict(x=_x32[0, :2]), ValueError, "^x of shape"),
    (dict(normalized_shape=()), ValueError, "^normalized_shape must be one or more"),
    (dict(normalized_shape=(0,)), ValueError, "^normalized_shape must be one or more"),
    (dict(normalized_shape=4.0), TypeError, "^normalized_shape"),
    (dict(normalized_shape=(3, 4)), ValueError, "does not end in normalized_shape"),
    (dict(normalized_shape=-1), ValueError, "^normalized_shape entry must be >= 0"),
    (dict(weight=np.ones(5, np.float32)), ValueError, r"^weight must have shape \(4,\)"),
    (dict(weight=np.ones(4, np.float64)), TypeError, "^weight has dtype float64"),
    (dict(bias=np.ones((1, 4), np.float32)), ValueError, "^bias must have shape"),
    (dict(bias=[0.0] * 4), TypeError, "^bias has dtype float64"),
    (dict(eps=0.0), ValueError, "^eps must be > 0"),
    (dict(eps=float("nan")), ValueError, "^eps must not be NaN"),
    (dict(eps="1e-5"), TypeError, "^eps must be a real number"),
], ids=["x int", "x float16", "x width", "x too few dims", "ns empty", "ns zero", "ns float",
        "ns too long", "ns negative", "weight shape", "weight dtype", "bias shape", "bias list",
        "eps 0", "eps nan", "eps str"])
def test_bad_forward_arguments_name_the_argument(overrides, exc, match):
    args = dict(x=_x32.copy(), normalized_shape=4, weight=np.ones(4, np.float32),
                bias=np.zeros(4, np.float32))
    args.update(overrides)
    with pytest.raises(exc, match=match):
        F.layer_norm(**args)


@pytest.mark.parametrize("overrides, exc, match", [
    (dict(dy=np.ones((5, 5), np.float32)), ValueError, "^dy must have shape"),
    (dict(dy=np.ones((5, 4), np.float64)), TypeError, "^dy has dtype float64"),
    (dict(x=np.ones((5, 4), np.int64)), TypeError, "^x must be"),
    (dict(mean=np.zeros(4)), ValueError, r"^mean must have shape \(5,\)"),
    (dict(invstd=np.ones(5, np.int64)), TypeError, "^invstd must be float32 or float64"),
    (dict(invstd=np.ones(5, np.float16)), TypeError, "^invstd must be"),
    (dict(weight=np.ones(4, np.float64)), TypeError, "^weight has dtype"),
    (dict(weight=np.ones(3, np.float32)), ValueError, "^weight must have shape"),
    (dict(normalized_shape=3), ValueError, "does not end in normalized_shape"),
], ids=["dy shape", "dy dtype", "x int", "mean shape", "invstd int", "invstd float16",
        "weight dtype", "weight shape", "ns"])
def test_bad_backward_arguments_name_the_argument(overrides, exc, match):
    args = dict(dy=np.ones((5, 4), np.float32), x=_x32.copy(), normalized_shape=4,
                mean=np.zeros(5), invstd=np.ones(5), weight=np.ones(4, np.float32))
    args.update(overrides)
    with pytest.raises(exc, match=match):
        F.layer_norm_backward(**args)


def test_float32_statistics_of_float64_data_are_refused_by_name():
    x = np.ones((5, 4))
    with pytest.raises(TypeError, match=r"^mean must be float64, got float32$"):
        F.layer_norm_backward(x, x, 4, np.zeros(5, np.float32), np.ones(5))


def test_out_buffers():
    x, dy, w, b = make((6, 5), 5, np.float32, seed=13)
    y0, m, s = F.layer_norm(x, 5, w, b)
    dx0, dw0, db0 = F.layer_norm_backward(dy, x, 5, m, s, w)
    buf = np.full_like(x, np.nan)
    y, _, _ = F.layer_norm(x, 5, w, b, out=buf)
    assert y is buf
    np.testing.assert_array_equal(y, y0)
    buf2 = np.full_like(x, np.nan)
    dx, dw, db = F.layer_norm_backward(dy, x, 5, m, s, w, out=buf2)
    assert dx is buf2
    np.testing.assert_array_equal(dx, dx0)
    np.testing.assert_array_equal(dw, dw0)


@pytest.mark.parametrize("bad, exc", [
    (lambda x: list(x), TypeError),
    (lambda x: x.astype(np.float64), TypeError),
    (lambda x: np.empty((x.shape[0] + 1, x.shape[1]), x.dtype), ValueError),
    (lambda x: np.asfortranarray(x.copy()), ValueError),
    (lambda x: x, ValueError),                    # the input itself
    (lambda x: (lambda r: r.setflags(write=False) or r)(x.copy()), ValueError),
], ids=["list", "dtype", "shape", "fortran", "aliases x", "read-only"])
def test_bad_out_raises_and_changes_nothing(bad, exc):
    x, dy, w, b = make((6, 5), 5, np.float32, seed=14)
    saved = x.copy(), dy.copy()
    with pytest.raises(exc):
        F.layer_norm(x, 5, w, b, out=bad(x))
    with pytest.raises(exc):
        F.layer_norm_backward(dy, x, 5, np.zeros(6), np.ones(6), w, out=bad(x))
    with pytest.raises(ValueError, match="out"):   # dx over dy: backward reads dy twice
        F.layer_norm_backward(dy, x, 5, np.zeros(6), np.ones(6), w, out=dy)
    np.testing.assert_array_equal(x, saved[0])
    np.testing.assert_array_equal(dy, saved[1])
