"""Tests for the L2/L1 penalties and the max-norm projection."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastnn.functional as F
from tests.conftest import assert_close, hostile_layouts
from tests.gradcheck import assert_grad_close, numerical_vjp
from tests.reference import regularization as ref

DTYPES = [np.float32, np.float64]
PENALTIES = [(F.l2_penalty, ref.l2_penalty), (F.l1_penalty, ref.l1_penalty)]
SHAPES = [(1,), (7,), (3, 5), (2, 3, 4), (64, 512)]


def _weights(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- penalties

@pytest.mark.parametrize("fn,reference", PENALTIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_penalty_matches_reference(fn, reference, dtype, shape):
    w = _weights(shape, dtype)
    loss, grad = fn(w, 0.3)
    ref_loss, ref_grad = reference(w, 0.3)
    assert isinstance(loss, float)
    assert grad.dtype == dtype and grad.shape == shape
    assert_close(loss, ref_loss, np.float64, "reduction")  # float64 accumulation even for float32
    assert_close(grad, ref_grad, dtype)


@pytest.mark.parametrize("fn,reference", PENALTIES)
def test_penalty_gradient_finite_difference(fn, reference):
    w = _weights((4, 6), np.float64, seed=1)
    w[np.abs(w) < 0.05] = 0.5  # away from the kink of |w|
    numeric = numerical_vjp(lambda v: fn(v, 0.7)[0], w, 1.0)
    assert_grad_close(fn(w, 0.7)[1], numeric)


def test_penalty_values_by_hand():
    w = np.array([[1.0, -2.0], [0.0, 3.0]])
    loss, grad = F.l2_penalty(w, 0.5)
    assert loss == 7.0
    np.testing.assert_array_equal(grad, [[1.0, -2.0], [0.0, 3.0]])
    loss, grad = F.l1_penalty(w, 0.5)
    assert loss == 3.0
    np.testing.assert_array_equal(grad, [[0.5, -0.5], [0.0, 0.5]])  # sign(0) = 0


@pytest.mark.parametrize("fn,reference", PENALTIES)
def test_penalty_against_torch(torch, fn, reference):
    w = _weights((64, 512), np.float64, seed=2)
    lam = 1e-3
    t = torch.from_numpy(w.copy()).requires_grad_(True)
    if fn is F.l2_penalty:
        tl = lam * (t ** 2).sum()
    else:
        tl = lam * t.abs().sum()
    tl.backward()
    loss, grad = fn(w, lam)
    assert_close(loss, tl.item(), np.float64, "reduction")
    assert_close(grad, t.grad.numpy(), np.float64)


@pytest.mark.parametrize("fn,reference", PENALTIES)
def test_float32_loss_accumulates_in_float64(fn, reference):
    # 2**24 + many ones: a float32 accumulator would stall at 2**24.
    w = np.ones(1 << 17, dtype=np.float32)
    w[0] = 4096.0  # 4096**2 = 2**24
    loss, _ = fn(w, 1.0)
    expected = reference(w.astype(np.float64), 1.0)[0]
    assert loss == expected


@pytest.mark.parametrize("fn,reference", PENALTIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_penalty_any_layout_any_ndim(fn, reference, dtype):
    w = _weights((12, 7), dtype, seed=3)
    loss, grad = fn(w, 0.2)
    for name, view in hostile_layouts(w):
        l2, g2 = fn(view, 0.2)
        assert l2 == pytest.approx(loss, rel=1e-12), name
        np.testing.assert_array_equal(g2, grad, err_msg=name)
    bcast = np.broadcast_to(w[:1], w.shape)
    assert_close(fn(bcast, 0.2)[1], reference(bcast, 0.2)[1], dtype)
    assert fn(np.float64(2.0), 1.0)[0] == reference(2.0, 1.0)[0]  # 0-d


@pytest.mark.parametrize("fn,reference", PENALTIES)
def test_penalty_special_values(fn, reference):
    w = np.array([np.nan, 1.0, -2.0])
    loss, grad = fn(w, 0.5)
    assert np.isnan(loss) and np.isnan(grad[0]) and np.all(np.isfinite(grad[1:]))
    loss, grad = fn(np.array([1e300, -1e-300, 0.0]), 0.5)
    with np.errstate(over="ignore"):
        ref_loss, ref_grad = reference(np.array([1e300, -1e-300, 0.0]), 0.5)
    assert loss == ref_loss  # inf for L2 (the penalty overflows), as numpy
    np.testing.assert_array_equal(grad, ref_grad)
    loss, grad = fn(np.zeros((0, 3), np.float32), 0.5)
    assert loss == 0.0 and grad.shape == (0, 3)
    loss, grad = fn(np.ones(5), 0.0)
    assert loss == 0.0 and np.all(grad == 0)


@pytest.mark.parametrize("fn,reference", PENALTIES)
@pytest.mark.parametrize("lam,exc", [(-1.0, ValueError), (float("nan"), ValueError),
                                     (float("inf"), ValueError), ("1", TypeError),
                                     (None, TypeError)])
def test_penalty_bad_lambda(fn, reference, lam, exc):
    w = _weights((3, 3), np.float64)
    before = w.copy()
    with pytest.raises(exc):
        fn(w, lam)
    np.testing.assert_array_equal(w, before)


@pytest.mark.parametrize("fn,reference", PENALTIES)
@pytest.mark.parametrize("w", [np.ones(3, np.int32), np.ones(3, np.float16), "w",
                               [[1.0], [1.0, 2.0]]])
def test_penalty_bad_weights(fn, reference, w):
    with pytest.raises(TypeError):
        fn(w, 0.1)


@given(shape=st.lists(st.integers(0, 8), min_size=1, max_size=3).map(tuple),
       lam=st.floats(0.0, 10.0), dtype=st.sampled_from(DTYPES),
       scale=st.sampled_from([1e-20, 1.0, 1e10]))
def test_property_penalties_match_reference(shape, lam, dtype, scale):
    w = (_weights(shape, np.float64) * scale).astype(dtype)
    for fn, reference in PENALTIES:
        loss, grad = fn(w, lam)
        ref_loss, ref_grad = reference(w, lam)
        assert_close(loss, ref_loss, np.float64, "reduction", scale=max(abs(ref_loss), 1e-300))
        assert_close(grad, ref_grad, dtype)
        assert loss >= 0.0


# ---------------------------------------------------------------- max norm

def _rows_with_norms(norms, n_in, dtype, seed=0):
    w = np.random.default_rng(seed).standard_normal((len(norms), n_in))
    w *= (np.asarray(norms) / np.linalg.norm(w, axis=1))[:, None]
    return w.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (64, 512)])
def test_max_norm_matches_reference(dtype, shape):
    norms = np.random.default_rng(1).uniform(0.1, 4.0, shape[0])
    w = _rows_with_norms(norms, shape[1], dtype)
    before = w.copy()
    expected = ref.max_norm(w, 2.0)
    out = F.max_norm_(w, 2.0)
    assert out is w
    assert_close(w, expected, dtype)
    row_norms = np.linalg.norm(w.astype(np.float64), axis=1)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    assert np.all(row_norms <= 2.0 * (1 + rtol))
    within = np.linalg.norm(before.astype(np.float64), axis=1) <= 2.0
    np.testing.assert_array_equal(w[within], before[within])  # bit-for-bit
    np.testing.assert_allclose(row_norms[~within], 2.0, rtol=rtol)


def test_max_norm_rows_within_bound_are_not_rewritten():
    # values whose (norm-rescaled) round trip would not be exact
    w = np.array([[0.1, 0.2, 0.3], [np.nextafter(1.0, 0), 0.0, 0.0], [1.0, 0.0, 0.0]])
    before = w.copy()
    F.max_norm_(w, 1.0)  # norms 0.37.., just below 1, exactly 1: all within
    assert np.array_equal(w.view(np.int64), before.view(np.int64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_norm_in_place_on_non_contiguous_views(dtype):
    base = _rows_with_norms(np.linspace(0.5, 3.0, 12), 10, dtype, seed=2)
    expected = ref.max_norm(base, 1.5)
    for name, view in hostile_layouts(base):
        if not view.flags.writeable:
            continue
        parent = view.base if view.base is not None else view
        snapshot = parent.copy()
        out = F.max_norm_(view, 1.5)
        assert out is view, name
        assert_close(view, expected, dtype)
        if name == "strided":  # the interleaved rows of the parent stay untouched
            np.testing.assert_array_equal(parent[1::2], snapshot[1::2])
    # a column slice: strided in both dimensions
    big = np.zeros((12, 20), dtype=dtype)
    big[:, ::2] = base
    F.max_norm_(big[:, ::2], 1.5)
    assert_close(big[:, ::2], expected, dtype)
    assert np.all(big[:, 1::2] == 0)


def test_max_norm_against_torch_renorm(torch):
    w = _rows_with_norms(np.linspace(0.5, 3.0, 64), 512, np.float64, seed=3)
    t = torch.from_numpy(w.copy())
    # torch.renorm scales by maxnorm / (norm + 1e-7): equal to ours to ~1e-7.
    expected = torch.renorm(t, p=2, dim=0, maxnorm=1.5).numpy()
    F.max_norm_(w, 1.5)
    np.testing.assert_allclose(w, expected, rtol=1e-6, atol=1e-12)


def test_max_norm_special_values():
    w = np.array([[np.nan, 1e3], [3.0, 4.0], [1e200, 1e200], [np.inf, 1.0]])
    F.max_norm_(w, 1.0)
    assert np.isnan(w[0, 0]) and w[0, 1] == 1e3  # a NaN row is left alone
    np.testing.assert_array_equal(w[3], [np.inf, 1.0])  # so is an inf row
    np.testing.assert_allclose(w[1], [0.6, 0.8], rtol=1e-15)
    np.testing.assert_allclose(w[2], [0.5 ** 0.5] * 2, rtol=1e-15)  # squares overflow float64
    empty = np.zeros((0, 4))
    assert F.max_norm_(empty, 1.0) is empty
    e2 = np.zeros((3, 0), np.float32)
    F.max_norm_(e2, 1.0)
    w = np.full((2, 2), 10.0)
    F.max_norm_(w, np.inf)
    assert np.all(w == 10.0)


# Rows whose plain sum of squares overflows or underflows float64, with a
# bound c of their own scale: each must come out with norm c (issue 10).
EXTREME_ROWS = [([3e300, 4e300], 1e300), ([1.7e308, 1.7e308], 1.0), ([1.7e308, 1.7e308], 1e308),
                ([3e-170, 4e-170], 1e-170), ([3e-160, 4e-160], 1e-300), ([3e300, 4e300], 1e-300)]


def _scaled_norm(row):
    big = np.max(np.abs(row))
    return big * np.linalg.norm(row / big) if big else 0.0


@pytest.mark.parametrize("row,c", EXTREME_ROWS)
def test_max_norm_extreme_float64_rows_get_norm_c(row, c):
    w = np.array([row, [0.6, 0.8]])
    F.max_norm_(w, c)
    assert np.all(np.isfinite(w[0]))
    np.testing.assert_allclose(_scaled_norm(w[0]), c, rtol=1e-15)
    np.testing.assert_allclose(w[0] / np.max(np.abs(w[0])), np.array(row) / max(row), rtol=1e-15)


def test_max_norm_extreme_float32_rows_get_norm_c():
    w = np.array([[3e38, 3e38], [3e-38, 4e-38], [1e-45, 1e-45]], np.float32)
    F.max_norm_(w, 1e-40)                # float32 subnormal bound and entries
    norms = [_scaled_norm(r.astype(np.float64)) for r in w[:2]]
    np.testing.assert_allclose(norms, 1e-40, rtol=1e-4)   # subnormal float32 keeps ~4 digits
    w = np.array([[3e38, 3e38]], np.float32)
    F.max_norm_(w, 3e38)
    np.testing.assert_allclose(_scaled_norm(w[0].astype(np.float64)), 3e38, rtol=1e-6)


def test_max_norm_zero_row_and_tiny_bound():
    w = np.zeros((2, 3))
    F.max_norm_(w, 1e-300)
    assert np.all(w == 0.0)


@pytest.mark.parametrize("weight,c,exc", [
    (np.ones((2, 2)), 0.0, ValueError), (np.ones((2, 2)), -1.0, ValueError),
    (np.ones((2, 2)), float("nan"), ValueError), (np.ones((2, 2)), "1", TypeError),
    (np.ones(4), 1.0, ValueError), (np.ones((2, 2, 2)), 1.0, ValueError),
    (np.ones((2, 2), np.int64), 1.0, TypeError), (np.ones((2, 2), np.float16), 1.0, TypeError),
    ([[1.0, 2.0]], 1.0, TypeError),
])
def test_max_norm_bad_arguments(weight, c, exc):
    before = np.array(weight, copy=True)
    with pytest.raises(exc):
        F.max_norm_(weight, c)
    np.testing.assert_array_equal(np.asarray(weight), before)


def test_max_norm_read_only_raises_before_anything():
    w = np.full((3, 3), 5.0)
    w.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        F.max_norm_(w, 1.0)
    assert np.all(w == 5.0)
    with pytest.raises(ValueError, match="read-only"):
        F.max_norm_(np.broadcast_to(np.ones(3), (2, 3)), 1.0)


@given(rows=st.integers(0, 6), cols=st.integers(1, 9), c=st.floats(0.01, 10.0),
       dtype=st.sampled_from(DTYPES), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_property_max_norm(rows, cols, c, dtype, scale):
    w = (_weights((rows, cols), np.float64) * scale).astype(dtype)
    before = w.copy()
    F.max_norm_(w, c)
    assert_close(w, ref.max_norm(before, c), dtype)
    within = np.linalg.norm(before.astype(np.float64), axis=1) <= c
    np.testing.assert_array_equal(w[within], before[within])


@pytest.mark.parametrize("fn,reference", PENALTIES)
def test_penalty_out_buffer_and_in_place(fn, reference):
    w = _weights((64, 512), np.float32, seed=5)
    loss, grad = fn(w, 0.1)
    buf = np.empty_like(w)
    loss2, grad2 = fn(w, 0.1, out=buf)
    assert grad2 is buf and loss2 == loss
    np.testing.assert_array_equal(buf, grad)
    w2 = w.copy()
    loss3, grad3 = fn(w2, 0.1, out=w2)  # the gradient overwrites the weights
    assert grad3 is w2 and loss3 == pytest.approx(loss, rel=1e-12)  # summation order may differ
    np.testing.assert_array_equal(w2, grad)
    with pytest.raises(ValueError):
        fn(w, 0.1, out=np.empty((64, 511), np.float32))
    with pytest.raises(TypeError):
        fn(w, 0.1, out=np.empty((64, 512), np.float64))
