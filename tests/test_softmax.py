"""softmax, log_softmax and the fused softmax-cross-entropy."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastnn.functional as F
from fastnn._cpu import softmax as kernels
from tests.conftest import assert_close, hostile_layouts, tolerances
from tests.gradcheck import assert_grad_close, numerical_vjp
from tests.reference import softmax as ref

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]


def logits_and_target(n, c, dtype, seed=0, scale=3.0, ignored=True):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * scale).astype(dtype)
    y = rng.integers(0, c, n)
    if ignored and n > 2:
        y[1::3] = -100
    return x, y


def class_weights(c, dtype, seed=1):
    return np.random.default_rng(seed).uniform(0.2, 2.0, c).astype(dtype)


# --- softmax / log_softmax -------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis", [((1,), 0), ((1, 1), -1), ((3, 5), -1), ((3, 5), 0),
                                         ((7, 33), 1), ((2, 3, 4), 0), ((2, 3, 4), 1),
                                         ((2, 3, 4), -1), ((64, 1024), -1)])
def test_softmax_matches_reference(dtype, shape, axis):
    x = (np.random.default_rng(0).standard_normal(shape) * 4).astype(dtype)
    p = F.softmax(x, axis=axis)
    lp = F.log_softmax(x, axis=axis)
    assert p.dtype == dtype and lp.dtype == dtype and p.shape == shape
    assert p.flags.c_contiguous and lp.flags.c_contiguous
    assert_close(p, ref.softmax(x, axis), dtype)
    assert_close(lp, ref.log_softmax(x, axis), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_matches_torch(dtype, torch):
    x = (np.random.default_rng(2).standard_normal((4, 6, 5)) * 5).astype(dtype)
    for axis in (0, 1, 2, -1):
        t = torch.from_numpy(x)
        assert_close(F.softmax(x, axis), torch.softmax(t, axis).numpy(), dtype)
        assert_close(F.log_softmax(x, axis), torch.log_softmax(t, axis).numpy(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_hostile_values(dtype, torch):
    x = np.array([[1e4, -1e4, 0.0],          # huge logits: exact
                  [5.0, 5.0, 5.0],           # all equal: exactly uniform
                  [np.nan, 1.0, 2.0],        # NaN: whole row NaN
                  [-np.inf, 0.0, 1.0],       # -inf: probability 0, log -inf
                  [-np.inf, -np.inf, -np.inf],
                  [np.inf, 0.0, 1.0],
                  [-1e4, -1e4 + 1, -1e4]], dtype=dtype)
    p, lp = F.softmax(x), F.log_softmax(x)
    np.testing.assert_array_equal(p[0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(lp[0], [0.0, -2e4, -1e4])
    np.testing.assert_array_equal(p[1], np.full(3, dtype(1) / dtype(3)))
    assert np.isnan(p[2]).all() and np.isnan(lp[2]).all()
    assert p[3, 0] == 0.0 and lp[3, 0] == -np.inf
    # rows 4 and 5 are NaN in torch; every row agrees with torch
    t = torch.from_numpy(x)
    np.testing.assert_allclose(p, torch.softmax(t, 1).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(lp, torch.log_softmax(t, 1).numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_keeps_log_sum_next_to_a_huge_max(dtype, torch):
    """(x - m) - log_s, never x - (m + log_s): under the reassociation flag
    log_softmax([1e16, 1e16]) was [0, 0] instead of [-log 2, -log 2]."""
    big, step = (1e16, 4.0) if dtype == np.float64 else (1e8, 16.0)   # step: a few ulp of big
    x = np.array([[big, big, big], [big, big, big + step], [-big, -big - step, -big]], dtype)
    want = ref.log_softmax(x.astype(np.float64))
    lp = F.log_softmax(x)
    assert_close(lp, want, dtype)
    assert_close(F.log_softmax(x.T.copy(), axis=0).T, want, dtype)
    np.testing.assert_allclose(lp, torch.log_softmax(torch.from_numpy(x), 1).numpy(),
                               rtol=tolerances(dtype)[0])
    # the fused cross-entropy's loss, log_s - (x_t - m), stays exact too
    target = np.array([0, 2, 1])
    loss = F.cross_entropy(x, target, reduction="none")
    assert_close(loss, -want[np.arange(3), target], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_layouts_and_no_mutation(dtype):
    x = (np.random.default_rng(3).standard_normal((6, 9)) * 3).astype(dtype)
    expected = F.softmax(x), F.log_softmax(x), F.softmax(x, axis=0)
    for name, h in hostile_layouts(x) + [("transposed", x.T.copy().T),
                                          ("broadcast", np.broadcast_to(x[:1], (6, 9)))]:
        base = x if name != "broadcast" else np.broadcast_to(x[:1], (6, 9)).copy()
        before = h.copy()
        np.testing.assert_array_equal(F.softmax(h), F.softmax(base), err_msg=name)
        if name != "broadcast":
            np.testing.assert_array_equal(F.softmax(h), expected[0], err_msg=name)
            np.testing.assert_array_equal(F.log_softmax(h), expected[1], err_msg=name)
            np.testing.assert_array_equal(F.softmax(h, axis=0), expected[2], err_msg=name)
        np.testing.assert_array_equal(h, before)


def test_softmax_empty():
    for shape in [(0, 5), (3, 0), (0,), (2, 0, 3)]:
        x = np.zeros(shape, np.float32)
        assert F.softmax(x).shape == shape and F.log_softmax(x, axis=0).shape == shape


def test_softmax_bad_arguments():
    with pytest.raises(TypeError, match="int64"):
        F.softmax(np.arange(6).reshape(2, 3))
    with pytest.raises(TypeError, match="float16"):
        F.log_softmax(np.ones((2, 3), np.float16))
    with pytest.raises(ValueError, match="0-d"):
        F.softmax(np.float64(1.0))
    with pytest.raises(ValueError, match="axis 2"):
        F.softmax(np.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="axis -3"):
        F.log_softmax(np.ones((2, 3)), axis=-3)
    with pytest.raises(TypeError, match="axis"):
        F.softmax(np.ones((2, 3)), axis=1.0)


@given(n=st.integers(1, 6), c=st.integers(1, 40), scale=st.sampled_from([1e-3, 1.0, 30.0, 1e3]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16), axis=st.sampled_from([0, 1]))
def test_softmax_property(n, c, scale, dtype, seed, axis):
    x = (np.random.default_rng(seed).standard_normal((n, c)) * scale).astype(dtype)
    p = F.softmax(x, axis=axis)
    assert (p >= 0).all() and (p <= 1).all()
    assert_close(p.sum(axis=axis, dtype=np.float64), np.ones(x.shape[1 - axis]), dtype, "reduction")
    assert_close(p, ref.softmax(x, axis), dtype)
    assert_close(F.log_softmax(x, axis=axis), ref.log_softmax(x, axis), dtype)
    # shifting all logits by a constant changes nothing (up to rounding)
    assert_close(F.softmax(x + dtype(7), axis=axis), p, dtype)


# --- cross-entropy: reference, torch, gradient -----------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_reference(dtype, reduction, smoothing, weighted):
    x, y = logits_and_target(10, 7, dtype)
    w = class_weights(7, dtype) if weighted else None
    kw = dict(weight=w, reduction=reduction, label_smoothing=smoothing)
    loss, grad = F.cross_entropy_with_grad(x, y, **kw)
    want_loss, want_grad = ref.cross_entropy(x, y, **kw)
    assert grad.dtype == dtype and grad.shape == x.shape
    if reduction == "none":
        assert loss.dtype == dtype and loss.shape == (10,)
    else:
        assert isinstance(loss, float)
    assert_close(loss, want_loss, dtype, "reduction")
    assert_close(grad, want_grad, dtype)
    assert_close(F.cross_entropy(x, y, **kw), loss, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_parallel_size_matches_reference(dtype, reduction):
    x, y = logits_and_target(64, 1024, dtype, scale=5.0)
    w = class_weights(1024, dtype)
    loss, grad = F.cross_entropy_with_grad(x, y, weight=w, reduction=reduction,
                                           label_smoothing=0.2)
    want_loss, want_grad = ref.cross_entropy(x, y, weight=w, reduction=reduction,
                                             label_smoothing=0.2)
    assert_close(loss, want_loss, dtype, "reduction")
    assert_close(grad, want_grad, dtype)
    loss0, grad0 = F.cross_entropy_with_grad(x, y)
    want_loss0, want_grad0 = ref.cross_entropy(x, y)
    assert_close(loss0, want_loss0, dtype, "reduction")
    assert_close(grad0, want_grad0, dtype)


def torch_cross_entropy(torch, x, y, weight=None, **kw):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    wt = None if weight is None else torch.from_numpy(weight)
    loss = torch.nn.functional.cross_entropy(xt, torch.from_numpy(np.asarray(y, np.int64)),
                                             weight=wt, **kw)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_cross_entropy_matches_torch(dtype, reduction, smoothing, weighted, ignore_index, torch):
    x, y = logits_and_target(12, 5, dtype, seed=4)
    y = np.where(y == -100, ignore_index, y)    # ignore_index=2 also ignores real 2s
    w = class_weights(5, dtype) if weighted else None
    kw = dict(reduction=reduction, label_smoothing=smoothing, ignore_index=ignore_index)
    loss, grad = F.cross_entropy_with_grad(x, y, weight=w, **kw)
    t_loss, t_grad = torch_cross_entropy(torch, x, y, weight=w, **kw)
    assert_close(loss, t_loss, dtype, "reduction")
    assert_close(grad, t_grad, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing, weighted", [(0.0, False), (0.0, True), (0.25, False),
                                                 (0.25, True), (1.0, True)])
def test_cross_entropy_gradient_finite_differences(reduction, smoothing, weighted):
    x, y = logits_and_target(6, 4, np.float64, seed=5)    # rows 1 and 4 ignored
    w = class_weights(4, np.float64) if weighted else None
    kw = dict(weight=w, reduction=reduction, label_smoothing=smoothing)
    _, grad = F.cross_entropy_with_grad(x, y, **kw)
    numeric = numerical_vjp(lambda z: F.cross_entropy(z, y, **kw), x,
                            np.ones(6) if reduction == "none" else 1.0)
    assert_grad_close(grad, numeric)
    assert (grad[[1, 4]] == 0).all()


# --- cross-entropy: hostile inputs -----------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_huge_and_equal_logits(dtype):
    x = np.array([[1e4, -1e4], [1e4, -1e4], [3.0, 3.0]], dtype=dtype)
    loss, grad = F.cross_entropy_with_grad(x, [0, 1, 0], reduction="none")
    np.testing.assert_array_equal(loss[:2], [0.0, 2e4])
    np.testing.assert_allclose(loss[2], np.log(2), rtol=1e-6)
    np.testing.assert_array_equal(grad, [[0.0, 0.0], [1.0, -1.0], [-0.5, 0.5]])


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("scale", [1e-320, 1e-310])
def test_cross_entropy_subnormal_class_weights_keep_a_finite_gradient(smoothing, scale):
    """"mean" divides by the target-weight sum, here subnormal: under the reciprocal
    flag 1 / sum was inf and the whole gradient NaN (torch's is NaN too)."""
    x, y = logits_and_target(7, 4, np.float64)
    w = np.full(4, scale)
    for out_is_x in (False, True):
        xs = x.copy()
        _, g = F.cross_entropy_with_grad(xs, y, weight=w, label_smoothing=smoothing,
                                         out=xs if out_is_x else None)
        # equal weights: the weighted mean is the unweighted one, and so is its gradient
        assert_close(g, ref.cross_entropy(x, y, label_smoothing=smoothing)[1], np.float64)
    # the loss itself is finite; subnormal weights carry few digits (1e-320: 11 bits)
    value = F.cross_entropy(x, y, weight=w, label_smoothing=smoothing)
    assert value == pytest.approx(ref.cross_entropy(x, y, label_smoothing=smoothing)[0],
                                  rel=1e-2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_nonfinite_logits_match_torch(dtype, torch):
    inf, nan = np.inf, np.nan
    x = np.array([[-inf, 0.0, 1.0],      # -inf on a non-target: finite
                  [-inf, 0.0, 1.0],      # -inf on the target: infinite loss
                  [nan, 0.0, 1.0],       # NaN: NaN loss and NaN gradient row
                  [0.5, -1.0, 2.0]], dtype=dtype)
    y = np.array([1, 0, 2, 1])
    for kw in [dict(reduction="none"), dict(reduction="sum", label_smoothing=0.2),
               dict(reduction="none", label_smoothing=1.0)]:
        loss, grad = F.cross_entropy_with_grad(x, y, **kw)
        t_loss, t_grad = torch_cross_entropy(torch, x, y, **kw)
        np.testing.assert_allclose(loss, t_loss, rtol=1e-5)
        np.testing.assert_allclose(grad, t_grad, rtol=1e-5, atol=1e-6)
    loss, grad = F.cross_entropy_with_grad(x, y, reduction="none")
    assert loss[1] == np.inf and np.isnan(loss[2]) and np.isfinite(loss[[0, 3]]).all()
    assert np.isnan(grad[2]).all() and np.isfinite(grad[[0, 1, 3]]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_nan_in_ignored_row(dtype):
    # torch gives a NaN gradient row here (0 * NaN in log_softmax's backward);
    # fastnn gives what ignoring means: loss 0 and gradient 0 for that row.
    x = np.array([[np.nan, 1.0], [0.0, 1.0]], dtype=dtype)
    loss, grad = F.cross_entropy_with_grad(x, [-100, 1], label_smoothing=0.1)
    assert np.isfinite(loss) and (grad[0] == 0).all() and np.isfinite(grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_degenerate_batches_match_torch(dtype, reduction, torch):
    cases = [(np.zeros((0, 3), dtype), np.zeros(0, np.int64)),        # empty batch
             (np.ones((3, 4), dtype), np.full(3, -100)),               # every row ignored
             (np.array([[2.0], [-5.0]], dtype), np.array([0, 0]))]     # C = 1
    for x, y in cases:
        for smoothing in (0.0, 0.5):
            loss, grad = F.cross_entropy_with_grad(x, y, reduction=reduction,
                                                   label_smoothing=smoothing)
            t_loss, t_grad = torch_cross_entropy(torch, x, y, reduction=reduction,
                                                 label_smoothing=smoothing)
            np.testing.assert_allclose(loss, t_loss, atol=1e-7)
            np.testing.assert_allclose(grad, t_grad, atol=1e-7)
            assert grad.shape == x.shape
    assert np.isnan(F.cross_entropy(np.zeros((0, 3), dtype), np.zeros(0, int)))
    assert F.cross_entropy(np.zeros((0, 3), dtype), np.zeros(0, int), reduction="sum") == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_zero_weight_targets_match_torch(dtype, torch):
    # the "mean" denominator is 0 although rows are not ignored: NaN, as torch
    x, y = logits_and_target(4, 3, dtype, ignored=False)
    w = np.array([0.0, 0.0, 0.0], dtype)
    loss, grad = F.cross_entropy_with_grad(x, y, weight=w)
    t_loss, t_grad = torch_cross_entropy(torch, x, y, weight=w)
    assert np.isnan(loss) and np.isnan(t_loss)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(t_grad))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_layouts_and_no_mutation(dtype):
    x, y = logits_and_target(8, 6, dtype)
    w = class_weights(6, dtype)
    want_loss, want_grad = F.cross_entropy_with_grad(x, y, weight=w, label_smoothing=0.1)
    for name, h in hostile_layouts(x):
        ys = np.zeros(16, np.int32)
        ys[::2] = y
        wb = np.zeros(12, dtype)
        wb[::2] = w
        before = h.copy(), ys.copy(), wb.copy()
        loss, grad = F.cross_entropy_with_grad(h, ys[::2], weight=wb[::2], label_smoothing=0.1)
        assert loss == want_loss, name
        np.testing.assert_array_equal(grad, want_grad, err_msg=name)
        for a, b in zip((h, ys, wb), before):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_out(dtype):
    x, y = logits_and_target(9, 5, dtype)
    loss, grad = F.cross_entropy_with_grad(x, y, label_smoothing=0.1)
    out = np.full_like(x, 7.0)
    loss2, grad2 = F.cross_entropy_with_grad(x, y, label_smoothing=0.1, out=out)
    assert grad2 is out and loss2 == loss
    np.testing.assert_array_equal(out, grad)
    inplace = x.copy()
    loss3, grad3 = F.cross_entropy_with_grad(inplace, y, label_smoothing=0.1, out=inplace)
    assert grad3 is inplace and loss3 == loss
    np.testing.assert_array_equal(inplace, grad)


def bad_calls(x, y, w):
    """(exception, match, kwargs) for calls that must raise before touching anything."""
    big = np.zeros((2 * x.shape[0], x.shape[1]), x.dtype)
    return [
        (IndexError, r"target\[0\] = 5", dict(target=np.array([5, 0, 1, 2]))),
        (IndexError, r"target\[2\] = -1", dict(target=np.array([0, 1, -1, 2]))),
        (IndexError, r"target\[3\] = -100", dict(target=np.array([0, 1, 2, -100]),
                                                 ignore_index=-1)),
        (TypeError, "integer class", dict(target=y.astype(np.float64))),
        (ValueError, r"shape \(4,\)", dict(target=y[:3])),
        (ValueError, "2 dimension", dict(logits=x[0])),
        (ValueError, "2 dimension", dict(logits=x[None])),
        (TypeError, "int64", dict(logits=np.zeros((4, 5), np.int64))),
        (TypeError, "float16", dict(logits=x.astype(np.float16))),
        (ValueError, "at least one class", dict(logits=x[:, :0], target=np.full(4, -100))),
        (ValueError, r"weight must have shape \(5,\)", dict(weight=w[:4])),
        (TypeError, "weight has dtype", dict(weight=w.astype(
            np.float64 if x.dtype == np.float32 else np.float32))),
        (ValueError, "reduction 'avg'", dict(reduction="avg")),
        (ValueError, "label_smoothing", dict(label_smoothing=1.5)),
        (ValueError, "label_smoothing", dict(label_smoothing=-0.1)),
        (ValueError, "label_smoothing", dict(label_smoothing=float("nan"))),
        (TypeError, "label_smoothing", dict(label_smoothing="0.1")),
        (TypeError, "ignore_index", dict(ignore_index=1.5)),
        (ValueError, "out must have shape", dict(out=np.zeros((4, 6), x.dtype))),
        (TypeError, "out must have dtype", dict(out=np.zeros((4, 5), np.float16))),
        (ValueError, "C-contiguous", dict(out=np.zeros((5, 4), x.dtype).T)),
        (ValueError, "overlaps", dict(logits=big[:4], out=big[2:6])),
        (TypeError, "numpy ndarray", dict(out=[[0.0] * 5] * 4)),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_bad_arguments_raise_and_touch_nothing(dtype):
    x, y = logits_and_target(4, 5, dtype, ignored=False)
    w = class_weights(5, dtype)
    for exc, match, kw in bad_calls(x, y, w):
        args = dict(logits=x, target=y, weight=w)
        args.update(kw)
        before = {k: np.array(v, copy=True) for k, v in args.items() if hasattr(v, "shape")}
        for fn in (F.cross_entropy_with_grad, F.cross_entropy):
            if "out" in args and fn is F.cross_entropy:
                continue
            with pytest.raises(exc, match=match):
                fn(**args)
        for k, v in before.items():
            np.testing.assert_array_equal(args[k], v, err_msg=k)
    ro = np.zeros_like(x)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        F.cross_entropy_with_grad(x, y, out=ro)


@given(n=st.integers(0, 8), c=st.integers(1, 12), scale=st.sampled_from([1e-2, 1.0, 20.0, 1e3]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16),
       reduction=st.sampled_from(REDUCTIONS), smoothing=st.sampled_from([0.0, 0.1, 0.7, 1.0]),
       weighted=st.booleans())
def test_cross_entropy_property(n, c, scale, dtype, seed, reduction, smoothing, weighted):
    x, y = logits_and_target(n, c, dtype, seed=seed, scale=scale)
    w = class_weights(c, dtype, seed=seed) if weighted else None
    kw = dict(weight=w, reduction=reduction, label_smoothing=smoothing)
    loss, grad = F.cross_entropy_with_grad(x, y, **kw)
    want_loss, want_grad = ref.cross_entropy(x, y, **kw)
    assert_close(loss, want_loss, dtype, "reduction")
    assert_close(grad, want_grad, dtype)
    # each gradient row sums to 0: probabilities and targets have the same mass
    assert_close(grad.sum(axis=1, dtype=np.float64), np.zeros(n), dtype, "reduction",
                 scale=max(1.0, float(np.abs(grad).max(initial=0.0))) * c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [9, 33, 300])
def test_row_kernels_do_not_depend_on_where_the_output_lies(dtype, c):
    # LLVM guards a vectorized load-store loop with a runtime overlap check and
    # falls back to a scalar loop (another summation order) when the output
    # lies just after the input: the last bits of a row's sum then depended
    # on the heap's layout (seen as a layout test failing by test order).
    n = 6
    x = (np.random.default_rng(3).standard_normal((n, c)) * 3).astype(dtype)
    t = np.arange(n) % c
    w = np.ones(c, dtype)

    def run(out):
        res = []
        for kern in (kernels.softmax_rows.serial, kernels.log_softmax_rows.serial):
            kern(xx, out)
            res.append(out.copy())
        losses = np.empty(n)
        kernels.cross_entropy_rows.serial(xx, t, w, -100, 0.1, True, losses, out, True)
        return res + [out.copy(), losses]

    xx = x.copy()
    want = run(np.empty_like(x))
    for gap in range(0, 80, 3):        # outputs at every distance just past the input
        buf = np.empty(2 * n * c + gap, dtype)
        xx = buf[:n * c].reshape(n, c)
        xx[:] = x
        got = run(buf[n * c + gap:].reshape(n, c))
        for g, e in zip(got, want):
            np.testing.assert_array_equal(g, e, err_msg=f"gap {gap}")
