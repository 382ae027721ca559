"""Tests for the multiclass hinge, MSE and MAE losses and their fused gradients."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastnn.functional as F
from tests.conftest import assert_close, hostile_layouts, tolerances
from tests.gradcheck import assert_grad_close, numerical_vjp
from tests.reference import losses as ref

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]
REGRESSION = [(F.mse_loss, F.mse_loss_with_grad, ref.mse),
              (F.l1_loss, F.l1_loss_with_grad, ref.mae)]


def _check_loss(loss, expected, dtype, reduction):
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == dtype
        assert_close(loss, expected, dtype)
    else:
        assert isinstance(loss, float)
        # float64 accumulation: float32 inputs give float64-accurate sums
        assert_close(loss, expected, np.float64, "reduction")


def _scores(n, c, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)).astype(dtype), rng.integers(0, c, n)


# ---------------------------------------------------------------- hinge

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n,c", [(1, 1), (1, 2), (5, 3), (17, 10), (64, 512)])
def test_hinge_matches_reference(dtype, reduction, n, c):
    s, y = _scores(n, c, dtype)
    exp_loss, exp_grad = ref.hinge(s, y, 1.0, reduction)
    loss, grad = F.hinge_loss_with_grad(s, y, reduction=reduction)
    _check_loss(loss, exp_loss, dtype, reduction)
    assert grad.dtype == dtype and grad.shape == s.shape
    assert_close(grad, exp_grad, dtype)
    # the forward-only kernel may sum in another order: equal to rounding
    _check_loss(F.hinge_loss(s, y, reduction=reduction), exp_loss, dtype, reduction)


def test_hinge_lesson_example():
    # CS231n's example: scores (3.2, 5.1, -1.7), correct class 0:
    # max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1) = 2.9
    loss, grad = F.hinge_loss_with_grad(np.array([[3.2, 5.1, -1.7]]), [0])
    assert loss == pytest.approx(2.9, rel=1e-15)
    np.testing.assert_array_equal(grad, [[-1.0, 1.0, 0.0]])


@pytest.mark.parametrize("margin", [1.0, 0.5, 0.0, -0.3])
def test_hinge_ties_count_only_strictly_positive_margins(margin):
    # s_j - s_y + margin == 0 exactly for class 1: not counted, zero gradient.
    s = np.array([[1.0, 1.0 - margin, 5.0], [2.0, 2.0 - margin, 2.0 - margin]])
    y = np.array([0, 0])
    loss, grad = F.hinge_loss_with_grad(s, y, margin=margin, reduction="none")
    exp_loss, exp_grad = ref.hinge(s, y, margin, "none")
    np.testing.assert_array_equal(loss, exp_loss)
    np.testing.assert_array_equal(grad, exp_grad)
    assert grad[1, 1] == 0.0 and loss[1] == 0.0


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hinge_gradient_finite_difference(reduction):
    s, y = _scores(6, 5, np.float64, seed=1)
    s = np.round(s, 1) + 0.0123  # margins away from 0 (the kinks): at least ~0.01
    # for "none" the returned gradient is that of the sum: unit weights
    weights = np.ones(6) if reduction == "none" else 1.0
    numeric = numerical_vjp(lambda v: F.hinge_loss(v, y, reduction=reduction), s, weights)
    _, grad = F.hinge_loss_with_grad(s, y, reduction=reduction)
    assert_grad_close(grad, numeric)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [1.0, 0.25])
def test_hinge_against_torch_multi_margin_loss(torch, dtype, reduction, margin):
    n, c = 64, 512
    s, y = _scores(n, c, dtype, seed=3)
    t = torch.from_numpy(s.copy()).requires_grad_(True)
    # torch divides each sample's sum by C: multiply back.
    tl = torch.nn.functional.multi_margin_loss(t, torch.from_numpy(y), margin=margin,
                                               reduction=reduction) * c
    tl.sum().backward()
    loss, grad = F.hinge_loss_with_grad(s, y, margin=margin, reduction=reduction)
    expected = tl.detach().numpy().astype(np.float64)
    if reduction == "none":
        assert_close(loss, expected, dtype)
    else:
        # torch accumulates float32 in float32; ours in float64
        assert_close(loss, float(expected), np.float64 if dtype == np.float64 else np.float32,
                     "reduction")
    assert_close(grad, t.grad.numpy(), dtype)  # the "* c" above is in the graph


@pytest.mark.parametrize("dtype", DTYPES)
def test_hinge_any_layout(dtype):
    s, y = _scores(12, 7, dtype, seed=4)
    loss, grad = F.hinge_loss_with_grad(s, y, reduction="none")
    for name, view in hostile_layouts(s):
        l2, g2 = F.hinge_loss_with_grad(view, y, reduction="none")
        np.testing.assert_array_equal(l2, loss, err_msg=name)
        np.testing.assert_array_equal(g2, grad, err_msg=name)
    # labels as a strided int32 view, a list and a read-only array
    y32 = np.repeat(y.astype(np.int32), 2)[::2]
    ro = y.copy()
    ro.setflags(write=False)
    for labels in (y32, y.tolist(), ro, y.astype(np.uint8)):
        np.testing.assert_array_equal(F.hinge_loss_with_grad(s, labels, reduction="none")[0], loss)


def test_hinge_hostile_values():
    # huge scores: exact in float64
    s = np.array([[1e15, 1e15 + 2.0, -1e15], [-1e300, 0.0, 1e300]])
    y = np.array([0, 2])
    loss, grad = F.hinge_loss_with_grad(s, y, reduction="none")
    exp_loss, exp_grad = ref.hinge(s, y, 1.0, "none")
    np.testing.assert_array_equal(loss, exp_loss)
    np.testing.assert_array_equal(grad, exp_grad)
    # float32 scores near the float32 limit are widened, not overflowed
    s32 = np.array([[3e38, -3e38, 0.0]], dtype=np.float32)
    assert F.hinge_loss(s32, [1], reduction="sum") == pytest.approx(9e38, rel=1e-6)  # 6e38 + 3e38
    # NaN in a score: that sample's loss and gradient are NaN, the others are not
    s = np.array([[1.0, np.nan, 0.0], [1.0, 2.0, 0.0]])
    loss, grad = F.hinge_loss_with_grad(s, [0, 0], reduction="none")
    assert np.isnan(loss[0]) and np.isnan(grad[0]).all()
    assert loss[1] == 2.0 and np.all(np.isfinite(grad[1]))
    assert math.isnan(F.hinge_loss(s, [0, 0]))
    # an infinite correct-class score: zero loss
    assert F.hinge_loss(np.array([[np.inf, 1.0, 2.0]]), [0]) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_hinge_empty_batch(dtype):
    s = np.zeros((0, 4), dtype)
    y = np.zeros(0, np.int64)
    loss, grad = F.hinge_loss_with_grad(s, y)
    assert math.isnan(loss) and grad.shape == (0, 4)
    assert F.hinge_loss(s, y, reduction="sum") == 0.0
    out = F.hinge_loss(s, y, reduction="none")
    assert out.shape == (0,) and out.dtype == dtype
    assert math.isnan(F.hinge_loss(np.zeros((0, 0)), y))


@pytest.mark.parametrize("target,exc", [
    ([0, 3], IndexError), ([0, -1], IndexError), ([0, 1, 2], ValueError), ([[0, 1]], ValueError),
    ([0.0, 1.0], TypeError), (np.array([0, 2**40]), IndexError),
])
def test_hinge_bad_labels(target, exc):
    s = np.ones((2, 3))
    before = s.copy()
    with pytest.raises(exc):
        F.hinge_loss_with_grad(s, target)
    np.testing.assert_array_equal(s, before)


@pytest.mark.parametrize("kwargs,exc", [
    (dict(reduction="avg"), ValueError), (dict(reduction=None), ValueError),
    (dict(margin=float("nan")), ValueError), (dict(margin=float("inf")), ValueError),
    (dict(margin="1"), TypeError),
])
def test_hinge_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        F.hinge_loss(np.ones((2, 3)), [0, 1], **kwargs)


@pytest.mark.parametrize("scores,exc", [
    (np.ones(3), ValueError), (np.ones((2, 3, 1)), ValueError),
    (np.ones((2, 3), np.int64), TypeError),
    (np.ones((2, 3), np.float16), TypeError),
])
def test_hinge_bad_scores(scores, exc):
    with pytest.raises(exc):
        F.hinge_loss(scores, [0, 1])


@given(n=st.integers(0, 8), c=st.integers(1, 8), margin=st.floats(-2, 3),
       dtype=st.sampled_from(DTYPES), reduction=st.sampled_from(REDUCTIONS),
       scale=st.sampled_from([1e-3, 1.0, 1e4]), seed=st.integers(0, 100))
def test_property_hinge(n, c, margin, dtype, reduction, scale, seed):
    s, y = _scores(n, c, np.float64, seed)
    s = (s * scale).astype(dtype)
    loss, grad = F.hinge_loss_with_grad(s, y, margin=margin, reduction=reduction)
    exp_loss, exp_grad = ref.hinge(s, y, margin, reduction)
    if reduction == "mean" and n == 0:
        assert math.isnan(loss)
    else:
        assert_close(loss, exp_loss, dtype if reduction == "none" else np.float64,
                     "elementwise" if reduction == "none" else "reduction")
        assert np.all(np.asarray(loss) >= 0)
    assert_close(grad, exp_grad, dtype)
    # every row of the gradient sums to zero (the correct class balances the rest)
    assert_close(grad.astype(np.float64).sum(axis=1), np.zeros(n), dtype)


# ---------------------------------------------------------------- MSE / MAE

@pytest.mark.parametrize("fn,fn_grad,reference", REGRESSION)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 4), (64, 512)])
def test_regression_matches_reference(fn, fn_grad, reference, dtype, reduction, shape):
    rng = np.random.default_rng(0)
    pred = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    target.flat[0] = pred.flat[0]  # a zero residual: subgradient 0
    exp_loss, exp_grad = reference(pred, target, reduction)
    loss, grad = fn_grad(pred, target, reduction)
    _check_loss(loss, exp_loss, dtype, reduction)
    assert grad.dtype == dtype and grad.shape == shape
    assert_close(grad, exp_grad, dtype)
    assert grad.flat[0] == 0.0
    _check_loss(fn(pred, target, reduction), exp_loss, dtype, reduction)


@pytest.mark.parametrize("fn,fn_grad,reference", REGRESSION)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_gradient_finite_difference(fn, fn_grad, reference, reduction):
    rng = np.random.default_rng(1)
    pred = rng.standard_normal((4, 5))
    target = pred + rng.choice([-1, 1], (4, 5)) * rng.uniform(0.1, 1.0, (4, 5))  # away from 0
    weights = 1.0 if reduction != "none" else np.ones((4, 5))
    numeric = numerical_vjp(lambda v: fn(v, target, reduction), pred, weights)
    assert_grad_close(fn_grad(pred, target, reduction)[1], numeric)


@pytest.mark.parametrize("fn,fn_grad,reference", REGRESSION)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_against_torch(torch, fn, fn_grad, reference, dtype, reduction):
    rng = np.random.default_rng(2)
    pred = rng.standard_normal((64, 512)).astype(dtype)
    target = rng.standard_normal((64, 512)).astype(dtype)
    target[0, :7] = pred[0, :7]  # zero residuals: torch's subgradient is 0 too
    tfn = torch.nn.functional.mse_loss if fn is F.mse_loss else torch.nn.functional.l1_loss
    t = torch.from_numpy(pred.copy()).requires_grad_(True)
    tl = tfn(t, torch.from_numpy(target), reduction=reduction)
    tl.sum().backward()
    loss, grad = fn_grad(pred, target, reduction)
    expected = tl.detach().numpy().astype(np.float64)
    if reduction == "none":
        assert_close(loss, expected, dtype)
    else:
        assert_close(loss, float(expected), dtype, "reduction")
    assert_close(grad, t.grad.numpy(), dtype)


@pytest.mark.parametrize("fn,fn_grad,reference", REGRESSION)
@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_any_layout(fn, fn_grad, reference, dtype):
    rng = np.random.default_rng(3)
    pred = rng.standard_normal((10, 6)).astype(dtype)
    target = rng.standard_normal((10, 6)).astype(dtype)
    loss, grad = fn_grad(pred, target, "sum")
    for name, view in hostile_layouts(pred):
        for tname, tview in hostile_layouts(target):
            l2, g2 = fn_grad(view, tview, "sum")
            assert l2 == pytest.approx(loss, rel=1e-12), (name, tname)
            np.testing.assert_array_equal(g2, grad, err_msg=f"{name} {tname}")
    bcast = np.broadcast_to(target[:1], target.shape)
    l3, g3 = fn_grad(pred, bcast, "none")
    e3, eg3 = reference(pred, bcast, "none")
    assert_close(l3, e3, dtype)
    assert_close(g3, eg3, dtype)


@pytest.mark.parametrize("fn,fn_grad,reference", REGRESSION)
def test_regression_hostile_values(fn, fn_grad, reference):
    pred = np.array([np.nan, 1.0, np.inf, 1e300, -1e-300, 2.0])
    target = np.array([0.0, np.nan, np.inf, -1e300, 1e-300, 2.0])
    loss, grad = fn_grad(pred, target, "none")
    with np.errstate(over="ignore", invalid="ignore"):
        exp_loss, exp_grad = reference(pred, target, "none")
    np.testing.assert_array_equal(loss, exp_loss)  # NaN, NaN, NaN (inf - inf), ...
    np.testing.assert_array_equal(grad, exp_grad)
    assert math.isnan(fn(pred, target))
    # float32 residuals are formed in float64: no overflow of 3e38 - (-3e38)
    p32 = np.array([3e38], np.float32)
    t32 = np.array([-3e38], np.float32)
    assert fn(p32, t32, "sum") == pytest.approx(reference(p32, t32, "sum")[0], rel=1e-6)


@pytest.mark.parametrize("fn,fn_grad,reference", REGRESSION)
@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_empty(fn, fn_grad, reference, dtype):
    e = np.zeros((0, 3), dtype)
    loss, grad = fn_grad(e, e)
    assert math.isnan(loss) and grad.shape == (0, 3) and grad.dtype == dtype
    assert fn(e, e, "sum") == 0.0
    assert fn(e, e, "none").shape == (0, 3)


@pytest.mark.parametrize("fn,fn_grad,reference", REGRESSION)
@pytest.mark.parametrize("pred,target,exc", [
    (np.ones(3), np.ones(4), ValueError), (np.ones((3, 1)), np.ones(3), ValueError),
    (np.ones((1, 3)), np.ones(3), ValueError), (np.ones(3), np.ones(3, np.float32), TypeError),
    (np.ones(3, np.int64), np.ones(3, np.int64), TypeError),
    (np.ones(3, np.float16), np.ones(3, np.float16), TypeError),
])
def test_regression_bad_inputs(fn, fn_grad, reference, pred, target, exc):
    before = (pred.copy(), target.copy())
    with pytest.raises(exc):
        fn_grad(pred, target)
    with pytest.raises(exc):
        fn(pred, target)
    np.testing.assert_array_equal(pred, before[0])
    np.testing.assert_array_equal(target, before[1])


@pytest.mark.parametrize("fn,fn_grad,reference", REGRESSION)
@pytest.mark.parametrize("reduction", ["avg", "", None, 1])
def test_regression_bad_reduction(fn, fn_grad, reference, reduction):
    with pytest.raises(ValueError):
        fn(np.ones(3), np.ones(3), reduction)


@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=3).map(tuple),
       dtype=st.sampled_from(DTYPES), reduction=st.sampled_from(REDUCTIONS),
       scale=st.sampled_from([1e-10, 1.0, 1e8]), seed=st.integers(0, 100))
def test_property_regression(shape, dtype, reduction, scale, seed):
    rng = np.random.default_rng(seed)
    pred = (rng.standard_normal(shape) * scale).astype(dtype)
    target = (rng.standard_normal(shape) * scale).astype(dtype)
    for _fn, fn_grad, reference in REGRESSION:
        loss, grad = fn_grad(pred, target, reduction)
        exp_loss, exp_grad = reference(pred, target, reduction)
        if reduction == "mean" and pred.size == 0:
            assert math.isnan(loss)
            continue
        if reduction == "none":
            assert_close(loss, exp_loss, dtype,
                         scale=max(float(np.max(exp_loss, initial=0)), 1e-300))
        else:
            assert_close(loss, exp_loss, np.float64, "reduction", scale=max(abs(exp_loss), 1e-300))
        assert_close(grad, exp_grad, dtype,
                     scale=max(float(np.max(np.abs(exp_grad), initial=0)), 1e-300))
        assert np.all(np.asarray(loss) >= 0)


# ---------------------------------------------------------------- out=

def test_out_buffers_and_in_place():
    s, y = _scores(64, 512, np.float32, seed=6)
    loss, grad = F.hinge_loss_with_grad(s, y)
    buf = np.empty_like(s)
    l2, g2 = F.hinge_loss_with_grad(s, y, out=buf)
    assert g2 is buf and l2 == loss
    np.testing.assert_array_equal(buf, grad)
    s2 = s.copy()
    l3, g3 = F.hinge_loss_with_grad(s2, y, out=s2)
    assert g3 is s2 and l3 == pytest.approx(loss, rel=1e-12)  # summation order may differ
    np.testing.assert_array_equal(s2, grad)
    t = np.random.default_rng(7).standard_normal(s.shape).astype(np.float32)
    for fn_grad in (F.mse_loss_with_grad, F.l1_loss_with_grad):
        for reduction in REDUCTIONS:
            loss, grad = fn_grad(s, t, reduction)
            p2, t2 = s.copy(), t.copy()
            for dest in (np.empty_like(s), p2, t2):
                l4, g4 = fn_grad(p2 if dest is not t2 else s, t2 if dest is t2 else t, reduction,
                                 out=dest)
                assert g4 is dest
                np.testing.assert_array_equal(g4, grad)
                np.testing.assert_allclose(l4, loss, rtol=1e-12)
                p2, t2 = s.copy(), t.copy()
    with pytest.raises(ValueError):
        F.mse_loss_with_grad(s, t, out=s[:, :-1])
    with pytest.raises(ValueError):
        F.hinge_loss_with_grad(s, y, out=np.empty((512, 64), np.float32))


# ---------------------------------------------------------------- BCE with logits

BCE = F.binary_cross_entropy_with_logits
BCE_GRAD = F.binary_cross_entropy_with_logits_with_grad


def _bce_data(shape, dtype, seed=0, scale=3.0):
    """Logits and targets in [0, 1], with exact 0 and 1 targets among the soft ones."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    t = rng.random(shape)
    t.flat[::3] = 0.0
    t.flat[1::3] = 1.0
    return x, t.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 4), (64, 512)])
def test_bce_matches_reference(dtype, reduction, shape):
    x, t = _bce_data(shape, dtype)
    exp_loss, exp_grad = ref.bce_with_logits(x, t, reduction)
    loss, grad = BCE_GRAD(x, t, reduction)
    _check_loss(loss, exp_loss, dtype, reduction)
    assert grad.dtype == dtype and grad.shape == shape
    assert_close(grad, exp_grad, dtype)
    _check_loss(BCE(x, t, reduction), exp_loss, dtype, reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_gradient_finite_difference(reduction):
    x, t = _bce_data((4, 5), np.float64, seed=1)
    weights = 1.0 if reduction != "none" else np.ones((4, 5))
    numeric = numerical_vjp(lambda v: BCE(v, t, reduction), x, weights)
    assert_grad_close(BCE_GRAD(x, t, reduction)[1], numeric)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_against_torch(torch, dtype, reduction):
    x, t = _bce_data((64, 512), dtype, seed=2, scale=5.0)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tl = torch.nn.functional.binary_cross_entropy_with_logits(tx, torch.from_numpy(t),
                                                              reduction=reduction)
    tl.sum().backward()
    loss, grad = BCE_GRAD(x, t, reduction)
    expected = tl.detach().numpy().astype(np.float64)
    if reduction == "none":
        assert_close(loss, expected, dtype)
    else:
        assert_close(loss, float(expected), dtype, "reduction")
    assert_close(grad, tx.grad.numpy(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_extreme_logits(dtype):
    # +-1e4 (and float32's limit): exp(-|x|) underflows to 0, nothing overflows
    big = 3e38 if dtype == np.float32 else 1e300
    x = np.array([1e4, 1e4, 1e4, -1e4, -1e4, -1e4, big, -big, 40.0, -40.0], dtype)
    t = np.array([1.0, 0.0, 0.5, 1.0, 0.0, 0.5, 1.0, 0.0, 0.0, 1.0], dtype)
    loss, grad = BCE_GRAD(x, t, "none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(loss[:8], np.array([0, 1e4, 5e3, 1e4, 0, 5e3, 0, 0], dtype))
    np.testing.assert_array_equal(grad[:8], [0, 1, 0.5, -1, 0, -0.5, 0, 0])
    # at +-40 the loss is 40 + exp(-40) and the gradient 1 - sigmoid(-40) to rounding
    exp_loss, exp_grad = ref.bce_with_logits(x64[8:], t[8:], "none")
    assert_close(loss[8:], exp_loss, dtype)
    assert_close(grad[8:], exp_grad, dtype)
    # tiny logits: log1p keeps log(2) - x t + x/2 accurate
    tiny = np.array([1e-12, -1e-12], dtype)
    assert_close(BCE(tiny, np.array([1.0, 1.0], dtype), "none"),
                 ref.bce_with_logits(tiny, [1.0, 1.0], "none")[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_confident_logits_keep_their_tiny_loss_and_gradient(dtype, torch):
    """x = 50 with target 1 mirrors x = -50 with target 0: both lose softplus(-50) = 1.9e-22.

    Under the reassociation flag the positive side added log1p(exp(-x)) to x
    before the cancelling x t and gave 0 (x = 30: 9.2371e-14 instead of
    9.3576e-14); its gradient sigmoid(x) - 1 was 0 instead of -sigmoid(-x).
    """
    a = np.array([50.0, 30.0, 20.0, 36.0, 80.0])
    x = np.concatenate([a, -a]).astype(dtype)
    t = np.concatenate([np.ones(5), np.zeros(5)]).astype(dtype)
    # Independent float64 references, exact for these signs: softplus(-a), sigmoid(-a).
    tiny = np.log1p(np.exp(-a))
    sig = 1.0 / (1.0 + np.exp(a))
    rtol = tolerances(dtype)[0]
    loss, grad = BCE_GRAD(x, t, "none")
    np.testing.assert_allclose(loss, np.concatenate([tiny, tiny]), rtol=rtol, atol=0)
    np.testing.assert_allclose(grad, np.concatenate([-sig, sig]), rtol=rtol, atol=0)
    assert BCE(x[:1], t[:1], "sum") == pytest.approx(tiny[0], rel=1e-12, abs=0)
    assert BCE(x, t, "mean") == pytest.approx(2 * tiny.sum() / 10, rel=1e-12, abs=0)
    # torch gets the positive side right (its mirror side rounds to 0)
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(x[:5]), torch.from_numpy(t[:5]), reduction="none").numpy()
    np.testing.assert_allclose(loss[:5], want, rtol=rtol, atol=0)


def test_bce_nan_logit_propagates_to_its_element_only():
    x = np.array([[np.nan, 1.0], [-2.0, 0.5]])
    t = np.array([[0.0, 1.0], [0.0, 0.5]])
    loss, grad = BCE_GRAD(x, t, "none")
    assert np.isnan(loss[0, 0]) and np.isnan(grad[0, 0])
    assert np.all(np.isfinite(loss.flat[1:])) and np.all(np.isfinite(grad.flat[1:]))
    for reduction in ("mean", "sum"):
        value, g = BCE_GRAD(x, t, reduction)
        assert math.isnan(value) and np.isnan(g[0, 0]) and np.all(np.isfinite(g.flat[1:]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_any_layout(dtype):
    x, t = _bce_data((10, 6), dtype, seed=3)
    loss, grad = BCE_GRAD(x, t, "sum")
    for name, view in hostile_layouts(x):
        for tname, tview in hostile_layouts(t):
            l2, g2 = BCE_GRAD(view, tview, "sum")
            assert l2 == pytest.approx(loss, rel=1e-12), (name, tname)
            np.testing.assert_array_equal(g2, grad, err_msg=f"{name} {tname}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_empty(dtype):
    e = np.zeros((0, 3), dtype)
    loss, grad = BCE_GRAD(e, e)
    assert math.isnan(loss) and grad.shape == (0, 3) and grad.dtype == dtype
    assert BCE(e, e, "sum") == 0.0
    assert BCE(e, e, "none").shape == (0, 3)


@pytest.mark.parametrize("bad,where", [
    (-0.25, "target[1, 2] = -0.25"), (1.5, "target[1, 2] = 1.5"),
    (np.nan, "target[1, 2] = nan"), (np.inf, "target[1, 2] = inf"),
    (-1e-300, "target[1, 2] = -1e-300"),
])
def test_bce_target_outside_unit_interval_is_named(bad, where):
    x, t = _bce_data((3, 4), np.float64)
    t[1, 2] = bad
    t[2, 3] = 7.0                            # a later bad value: the first one is named
    before = (x.copy(), t.copy())
    out = np.zeros_like(x)
    for call in (lambda: BCE(x, t), lambda: BCE_GRAD(x, t, out=out),
                 lambda: BCE_GRAD(x, t, "none")):
        with pytest.raises(ValueError, match=r"\[0, 1\]") as err:
            call()
        assert where in str(err.value)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(t, before[1])
    assert not out.any()                     # raised before the kernel wrote anything


@pytest.mark.parametrize("logits,target,exc", [
    (np.ones(3), np.ones(4), ValueError), (np.ones((3, 1)), np.ones(3), ValueError),
    (np.ones(3), np.ones(3, np.float32), TypeError),
    (np.ones(3, np.int64), np.ones(3, np.int64), TypeError),
    (np.ones(3, np.float16), np.ones(3, np.float16), TypeError),
    (np.ones(3), np.ones(3, bool), TypeError),
])
def test_bce_bad_inputs(logits, target, exc):
    with pytest.raises(exc):
        BCE_GRAD(logits, target)
    with pytest.raises(exc):
        BCE(logits, target)
    with pytest.raises(ValueError):
        BCE(np.ones(3), np.ones(3), "avg")


def test_bce_out_buffers_and_overlap():
    x, t = _bce_data((16, 9), np.float32, seed=5)
    for reduction in REDUCTIONS:
        loss, grad = BCE_GRAD(x, t, reduction)
        for dest_is in ("new", "logits", "target"):
            x2, t2 = x.copy(), t.copy()
            dest = {"new": np.empty_like(x), "logits": x2, "target": t2}[dest_is]
            l2, g2 = BCE_GRAD(x2, t2, reduction, out=dest)
            assert g2 is dest
            np.testing.assert_array_equal(g2, grad)
            np.testing.assert_allclose(l2, loss, rtol=1e-12)
    base = np.zeros(10)
    with pytest.raises(ValueError, match="out overlaps logits"):
        BCE_GRAD(base[:-1], np.zeros(9), out=base[1:])
    with pytest.raises(ValueError, match="out overlaps target"):
        BCE_GRAD(np.zeros(9), base[:-1], out=base[1:])
    ro = np.empty_like(x)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        BCE_GRAD(x, t, out=ro)
    with pytest.raises(ValueError):
        BCE_GRAD(x, t, out=np.empty((9, 16), np.float32))


@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=3).map(tuple),
       dtype=st.sampled_from(DTYPES), reduction=st.sampled_from(REDUCTIONS),
       scale=st.sampled_from([1e-6, 1.0, 30.0, 1e4]), seed=st.integers(0, 100))
def test_property_bce(shape, dtype, reduction, scale, seed):
    x, t = _bce_data(shape, dtype, seed, scale)
    loss, grad = BCE_GRAD(x, t, reduction)
    exp_loss, exp_grad = ref.bce_with_logits(x, t, reduction)
    if reduction == "mean" and x.size == 0:
        assert math.isnan(loss)
        return
    if reduction == "none":
        assert_close(loss, exp_loss, dtype)
    else:
        assert_close(loss, exp_loss, np.float64, "reduction")
    assert_close(grad, exp_grad, dtype)
    assert np.all(np.asarray(loss) >= 0) and np.all(np.abs(grad) <= 1)
