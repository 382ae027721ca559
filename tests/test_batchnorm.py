"""Batch normalization: forward (train/eval), running statistics, backward."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastnn.functional as F
from tests.conftest import assert_close, hostile_layouts
from tests.gradcheck import assert_grad_close, numerical_vjp
from tests.reference import batchnorm as ref

DTYPES = [np.float32, np.float64]
# (5, 3): serial twin; (64, 512) = 32768 elements: the parallel twin.
SHAPES = [(5, 3), (64, 512)]


def make(n, c, dtype, seed=0, offset=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = (offset + scale * rng.standard_normal((n, c))).astype(dtype)
    dy = rng.standard_normal((n, c)).astype(dtype)
    weight = rng.uniform(0.5, 2.0, c).astype(dtype)
    bias = rng.standard_normal(c).astype(dtype)
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2.0, c).astype(dtype)
    return x, dy, weight, bias, rm, rv


def conditioning(x, invstd):
    """How much rounding of x is amplified by the normalization.

    Subtracting the mean loses about unit roundoff * max|x| * invstd of
    the unit-scale result (large offsets, small spreads): the tolerance
    scale grows with it.  1e-5 / 1e-6 relative to the float64 / float32
    tolerance leaves room for ~10 ulp of intrinsic error.
    """
    if x.size == 0:
        return 1.0
    return max(1.0, 1e-5 * float(np.abs(x).max()) * float(np.max(invstd)))


def check_forward(x, rm, rv, weight, bias, training, momentum=0.1, eps=1e-5):
    """Run the kernel and the reference on copies of the running stats; compare all."""
    krm = None if rm is None else rm.copy()
    krv = None if rv is None else rv.copy()
    y, mean, invstd = F.batch_norm(x, krm, krv, weight, bias, training=training,
                                   momentum=momentum, eps=eps)
    ry, rmean, rinvstd, new_rm, new_rv = ref.batch_norm(x, rm, rv, weight, bias, training,
                                                        momentum, eps)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert mean.dtype == np.float64 and invstd.dtype == np.float64
    # y is a normalized quantity: judge its error on the unit scale.
    gain = 1.0 if weight is None else float(np.abs(weight).max(initial=1.0))
    scale = max(1.0, float(np.abs(ry).max(initial=0))) * conditioning(x, rinvstd) * gain
    # y depends on the batch reductions (mean, var): reduction tolerance.
    assert_close(y, ry, x.dtype, kind="reduction", scale=scale)
    assert_close(mean, rmean, x.dtype, kind="reduction")
    assert_close(invstd, rinvstd, x.dtype, kind="reduction")
    if rm is not None:
        assert krm.dtype == rm.dtype and krv.dtype == rv.dtype
        assert_close(krm, new_rm, x.dtype, kind="reduction")
        assert_close(krv, new_rv, x.dtype, kind="reduction")
    return y, mean, invstd


# ---------------------------------------------------------------- reference

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_forward_matches_reference(dtype, shape, training):
    x, _, w, b, rm, rv = make(*shape, dtype, offset=3.0, scale=2.0)
    check_forward(x, rm, rv, w, b, training)
    check_forward(x, rm, rv, None, None, training, momentum=0.3, eps=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_backward_matches_reference(dtype, shape, training):
    x, dy, w, b, rm, rv = make(*shape, dtype, seed=1, offset=-2.0, scale=3.0)
    for weight in (w, None):
        _, mean, invstd = F.batch_norm(x, rm.copy(), rv.copy(), weight, b, training=training)
        dx, dw, db = F.batch_norm_backward(dy, x, mean, invstd, weight, training=training)
        rdx, rdw, rdb = ref.batch_norm_backward(dy, x, mean, invstd, weight, training)
        assert dx.dtype == dw.dtype == db.dtype == x.dtype
        assert dx.shape == x.shape and dw.shape == db.shape == (shape[1],)
        assert_close(dx, rdx, dtype, kind="reduction")
        assert_close(dw, rdw, dtype, kind="reduction")
        assert_close(db, rdb, dtype, kind="reduction")


def test_momentum_edges():
    x, _, _, _, rm, rv = make(6, 4, np.float64)
    for momentum in (0.0, 1.0):
        check_forward(x, rm, rv, None, None, True, momentum=momentum)
    krm, krv = rm.copy(), rv.copy()
    F.batch_norm(x, krm, krv, training=True, momentum=0.0)
    np.testing.assert_array_equal(krm, rm)  # momentum 0 keeps the running stats exactly
    F.batch_norm(x, krm, krv, training=True, momentum=1.0)
    assert_close(krm, x.mean(axis=0), np.float64, kind="reduction")
    assert_close(krv, x.var(axis=0, ddof=1), np.float64, kind="reduction")


# ---------------------------------------------------------------- torch oracle

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_matches_torch(torch, dtype, training):
    x, dy, w, b, rm, rv = make(64, 512, dtype, seed=2, offset=1.5, scale=0.7)
    krm, krv = rm.copy(), rv.copy()
    y, mean, invstd = F.batch_norm(x, krm, krv, w, b, training=training, momentum=0.2, eps=1e-4)
    dx, dw, db = F.batch_norm_backward(dy, x, mean, invstd, w, training=training)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty = torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=training,
                                        momentum=0.2, eps=1e-4)
    ty.backward(torch.tensor(dy))
    # torch works in x's precision throughout; fastnn in float64, so the
    # float32 comparison carries torch's own rounding as well.
    assert_close(y, ty.detach().numpy(), dtype)
    assert_close(krm, trm.numpy(), dtype, kind="reduction")
    assert_close(krv, trv.numpy(), dtype, kind="reduction")
    assert_close(dx, tx.grad.numpy(), dtype, kind="reduction")
    assert_close(dw, tw.grad.numpy(), dtype, kind="reduction", scale=np.abs(dw).max())
    assert_close(db, tb.grad.numpy(), dtype, kind="reduction", scale=np.abs(db).max())


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("training", [True, False])
def test_finite_differences(training):
    x, dy, w, b, rm, rv = make(5, 3, np.float64, seed=3, offset=0.5, scale=1.5)

    def fwd(xv, wv, bv):
        return F.batch_norm(xv, rm.copy(), rv.copy(), wv, bv, training=training)[0]

    _, mean, invstd = F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training)
    dx, dw, db = F.batch_norm_backward(dy, x, mean, invstd, w, training=training)
    assert_grad_close(dx, numerical_vjp(lambda v: fwd(v, w, b), x, dy))
    assert_grad_close(dw, numerical_vjp(lambda v: fwd(x, v, b), w, dy))
    assert_grad_close(db, numerical_vjp(lambda v: fwd(x, w, v), b, dy))
    # Without weight/bias the gradients are those of an implicit gamma = 1, beta = 0.
    _, mean, invstd = F.batch_norm(x, rm.copy(), rv.copy(), training=training)
    dx, dw, db = F.batch_norm_backward(dy, x, mean, invstd, training=training)
    ones, zeros = np.ones(3), np.zeros(3)
    assert_grad_close(dx, numerical_vjp(lambda v: fwd(v, None, None), x, dy))
    assert_grad_close(dw, numerical_vjp(lambda v: fwd(x, v, zeros), ones, dy))
    assert_grad_close(db, numerical_vjp(lambda v: fwd(x, ones, v), zeros, dy))


# ---------------------------------------------------------------- properties

@given(n=st.integers(2, 40), c=st.integers(1, 12),
       offset=st.floats(-1e4, 1e4), log_scale=st.floats(-3, 3),
       training=st.booleans(), seed=st.integers(0, 2**16))
def test_property_matches_reference(n, c, offset, log_scale, training, seed):
    x, dy, w, b, rm, rv = make(n, c, np.float64, seed, offset, 10.0 ** log_scale)
    _, mean, invstd = check_forward(x, rm, rv, w, b, training)
    dx, dw, db = F.batch_norm_backward(dy, x, mean, invstd, w, training=training)
    rdx, rdw, rdb = ref.batch_norm_backward(dy, x, mean, invstd, w, training)
    # Gradients grow with invstd and with the conditioning of the data.
    k = conditioning(x, invstd)
    assert_close(dx, rdx, np.float64, kind="reduction", scale=k * max(1.0, np.abs(rdx).max()))
    assert_close(dw, rdw, np.float64, kind="reduction", scale=k * max(1.0, np.abs(rdw).max()))
    assert_close(db, rdb, np.float64, kind="reduction")


@given(n=st.integers(2, 64), c=st.integers(1, 8), offset=st.floats(-1e4, 1e4),
       log_scale=st.floats(-1, 2), seed=st.integers(0, 2**16))
def test_property_training_output_is_standardized(n, c, offset, log_scale, seed):
    x, _, _, _, _, _ = make(n, c, np.float64, seed, offset, 10.0 ** log_scale)
    y, _, _ = F.batch_norm(x, None, None, training=True, eps=1e-12)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-9)
    var = x.var(axis=0)
    np.testing.assert_allclose(y.var(axis=0), var / (var + 1e-12), rtol=1e-8)


# ---------------------------------------------------------------- hostile inputs

def test_large_offset_float32_normalizes_to_unit_variance():
    rng = np.random.default_rng(4)
    x = (1e4 + rng.standard_normal((4096, 8))).astype(np.float32)
    y, mean, invstd = F.batch_norm(x, None, None, training=True)
    y64 = y.astype(np.float64)
    np.testing.assert_allclose(y64.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y64.var(axis=0), 1.0, rtol=1e-4)
    ry, rmean, rinvstd, _, _ = ref.batch_norm(x, None, None, training=True)
    assert_close(y, ry, np.float32, scale=1.0)
    assert_close(mean, rmean, np.float64, kind="reduction")
    assert_close(invstd, rinvstd, np.float32, kind="reduction")
    # The float64 statistics keep backward exact for this data too.
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dw, db = F.batch_norm_backward(dy, x, mean, invstd)
    rdx, rdw, rdb = ref.batch_norm_backward(dy, x, rmean, rinvstd)
    assert_close(dx, rdx, np.float32, scale=1.0)
    assert_close(dw, rdw, np.float32, kind="reduction", scale=np.abs(rdw).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_columns_are_finite(dtype):
    x = np.full((8, 3), 7.25, dtype=dtype)
    x[:, 1] = -1e4
    b = np.array([1.0, 2.0, 3.0], dtype=dtype)
    y, mean, invstd = F.batch_norm(x, None, None, None, b, training=True)
    np.testing.assert_array_equal(y, np.broadcast_to(b, y.shape))
    assert np.all(np.isfinite(invstd))
    dy = np.random.default_rng(5).standard_normal(x.shape).astype(dtype)
    dx, dw, db = F.batch_norm_backward(dy, x, mean, invstd)
    assert np.all(np.isfinite(dx)) and np.all(dw == 0)
    rdx, _, _ = ref.batch_norm_backward(dy, x, mean, invstd)
    assert_close(dx, rdx, dtype, kind="reduction", scale=np.abs(rdx).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_and_tiny_values(dtype):
    big = 1e18 if dtype == np.float32 else 1e100
    for scale in (big, 1.0 / big):
        x, _, w, b, rm, rv = make(16, 4, dtype, seed=6, scale=scale)
        x[:, 0] += np.asarray(scale * 1e3, dtype)  # offset far above the spread
        check_forward(x, rm, rv, w, b, True)


@pytest.mark.parametrize("training", [True, False])
def test_nan_propagates_to_its_column_only(training):
    x, dy, w, b, rm, rv = make(10, 4, np.float32, seed=7)
    x[3, 2] = np.nan
    krm, krv = rm.copy(), rv.copy()
    y, mean, invstd = F.batch_norm(x, krm, krv, w, b, training=training)
    dx, dw, db = F.batch_norm_backward(dy, x, mean, invstd, w, training=training)
    if training:  # the batch statistics of column 2 are NaN: the whole column is
        assert np.all(np.isnan(y[:, 2])) and np.isnan(krm[2]) and np.isnan(krv[2])
        assert np.all(np.isnan(dx[:, 2]))
    else:  # eval normalizes elementwise: only the NaN element
        assert np.isnan(y[3, 2]) and np.isfinite(np.delete(y[:, 2], 3)).all()
        np.testing.assert_array_equal(krm, rm)
    assert np.isnan(dw[2])
    keep = [0, 1, 3]
    assert np.all(np.isfinite(y[:, keep])) and np.all(np.isfinite(dx[:, keep]))
    assert np.all(np.isfinite(krm[keep])) and np.all(np.isfinite(dw[keep]))


@pytest.mark.parametrize("training", [True, False])
def test_hostile_layouts(training):
    x, dy, w, b, rm, rv = make(9, 6, np.float64, seed=8, offset=2.0)
    y0, m0, s0 = F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training)
    g0 = F.batch_norm_backward(dy, x, m0, s0, w, training=training)
    for (name, hx), (_, hdy), (_, hw) in zip(hostile_layouts(x), hostile_layouts(dy),
                                            hostile_layouts(np.tile(w, (2, 1)))):
        hw = hw[0]  # a (C,) view of the hostile (2, C) array
        before = hx.copy()
        krm, krv = rm.copy(), rv.copy()
        y, m, s = F.batch_norm(hx, krm, krv, hw, b[::-1].copy()[::-1], training=training)
        np.testing.assert_array_equal(y, y0, err_msg=name)
        np.testing.assert_array_equal(hx, before, err_msg=name)
        g = F.batch_norm_backward(hdy, hx, m, s, hw, training=training)
        for a, a0 in zip(g, g0):
            np.testing.assert_array_equal(a, a0, err_msg=name)
    if not training:  # eval only reads the running stats: any layout works
        for name, hrm in hostile_layouts(np.tile(rm, (2, 1))):
            y, _, _ = F.batch_norm(x, hrm[1], rv, w, b)
            np.testing.assert_array_equal(y, y0, err_msg=name)


def test_empty_batch():
    x = np.empty((0, 3), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    y, mean, invstd = F.batch_norm(x, rm, rv, training=False)
    assert y.shape == (0, 3) and np.all(mean == 0) and np.allclose(invstd, 1 / np.sqrt(1 + 1e-5))
    y, mean, invstd = F.batch_norm(x, rm, rv, training=True)
    assert y.shape == (0, 3) and np.all(np.isnan(mean)) and np.all(np.isnan(invstd))
    np.testing.assert_array_equal(rm, 0)  # as torch: an empty batch updates nothing
    np.testing.assert_array_equal(rv, 1)
    for training in (True, False):
        dx, dw, db = F.batch_norm_backward(x, x, np.zeros(3), np.ones(3), training=training)
        assert dx.shape == (0, 3) and np.all(dw == 0) and np.all(db == 0)


def test_training_without_running_stats():
    x, _, w, b, rm, rv = make(7, 5, np.float32, seed=9)
    y, mean, invstd = F.batch_norm(x, None, None, w, b, training=True)
    y2, mean2, invstd2 = F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=True)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(mean, mean2)


def test_backward_accepts_stats_in_x_dtype():
    x, dy, w, _, _, _ = make(6, 4, np.float32, seed=10)
    _, mean, invstd = F.batch_norm(x, None, None, training=True)
    g64 = F.batch_norm_backward(dy, x, mean, invstd, w)
    g32 = F.batch_norm_backward(dy, x, mean.astype(np.float32), invstd.astype(np.float32), w)
    for a, b in zip(g32, g64):
        assert_close(a, b, np.float32, kind="reduction")


def test_train_eval_switching():
    """Train on batches from one distribution, then eval uses what was learned."""
    rng = np.random.default_rng(11)
    c = 4
    rm, rv = np.zeros(c), np.ones(c)
    true_mean, true_std = np.array([5.0, -3.0, 0.0, 100.0]), np.array([2.0, 0.5, 1.0, 10.0])
    for _ in range(200):
        batch = true_mean + true_std * rng.standard_normal((64, c))
        F.batch_norm(batch, rm, rv, training=True, momentum=0.1)
    assert np.all(np.abs(rm - true_mean) < 0.2 * true_std), rm
    np.testing.assert_allclose(np.sqrt(rv), true_std, rtol=0.2)

    # Eval: the running stats only, unchanged, and each sample independent of the batch.
    x = true_mean + true_std * rng.standard_normal((3, c))
    saved = rm.copy(), rv.copy()
    y, mean, invstd = F.batch_norm(x, rm, rv, training=False)
    np.testing.assert_array_equal(rm, saved[0])
    np.testing.assert_array_equal(rv, saved[1])
    assert_close(y, (x - rm) / np.sqrt(rv + 1e-5), np.float64)
    y_one, _, _ = F.batch_norm(x[:1], rm, rv, training=False)  # batch size 1 is fine in eval
    np.testing.assert_array_equal(y_one, y[:1])
    mean[:] = 0  # the returned mean is a copy, not a view of running_mean
    np.testing.assert_array_equal(rm, saved[0])

    # Back to training: the batch statistics again, and the running stats move.
    y_train, _, _ = F.batch_norm(x, rm, rv, training=True)
    assert not np.allclose(y_train, y)
    assert not np.array_equal(rm, saved[0])


# ---------------------------------------------------------------- bad arguments

C = 4
_x32 = np.random.default_rng(12).standard_normal((5, C)).astype(np.float32)


def _bad_forward_calls():
    f32, f64 = np.float32, np.float64
    ro = np.ones(C, f32)
    ro.setflags(write=False)
    strided = np.ones(2 * C, f32)[::2]
    v = np.ones(C, f32)
    shared, shared2, both = np.ones(C, f32), np.zeros(C, f32), np.ones(C + 1, f32)
    xs = _x32.copy()
    return [
        ("x 1-D", dict(x=_x32[0]), ValueError),
        ("x 3-D", dict(x=_x32[None]), ValueError),
        ("x int", dict(x=np.ones((5, C), np.int64)), TypeError),
        ("x float16", dict(x=_x32.astype(np.float16)), TypeError),
        ("weight shape", dict(weight=np.ones(C + 1, f32)), ValueError),
        ("weight dtype", dict(weight=np.ones(C, f64)), TypeError),
        ("bias shape", dict(bias=np.ones((C, 1), f32)), ValueError),
        ("bias dtype", dict(bias=np.ones(C, f64)), TypeError),
        ("running_mean shape", dict(running_mean=np.zeros(C - 1, f32)), ValueError),
        ("running_var dtype", dict(running_var=np.ones(C, f64)), TypeError),
        ("running_var int", dict(running_var=np.ones(C, np.int32)), TypeError),
        ("batch size 1", dict(x=_x32[:1]), ValueError),
        ("eps 0", dict(eps=0.0), ValueError),
        ("eps negative", dict(eps=-1e-5), ValueError),
        ("eps nan", dict(eps=float("nan")), ValueError),
        ("momentum negative", dict(momentum=-0.1), ValueError),
        ("momentum > 1", dict(momentum=1.5), ValueError),
        ("momentum nan", dict(momentum=float("nan")), ValueError),
        ("momentum str", dict(momentum="0.1"), TypeError),
        ("momentum None", dict(momentum=None), TypeError),
        ("training str", dict(training="yes"), TypeError),
        ("eval without stats", dict(training=False, running_mean=None, running_var=None), ValueError),
        ("only running_var", dict(running_mean=None), ValueError),
        ("only running_mean", dict(running_var=None), ValueError),
        ("read-only running_var", dict(running_var=ro), ValueError),
        ("strided running_mean", dict(running_mean=strided), ValueError),
        ("list running_mean", dict(running_mean=[0.0] * C), TypeError),
        ("same array twice", dict(running_mean=v, running_var=v), ValueError),
        # the running stats are updated before y is computed: no overlap with what is read
        ("running_mean is weight", dict(running_mean=shared, weight=shared), ValueError),
        ("running_var is bias", dict(running_var=shared2, bias=shared2), ValueError),
        ("running_mean is a row of x", dict(x=xs, running_mean=xs[2]), ValueError),
        ("running_var overlaps running_mean", dict(running_mean=both[:C], running_var=both[1:]),
         ValueError),
    ]


@pytest.mark.parametrize("case", _bad_forward_calls(), ids=lambda c: c[0])
def test_bad_forward_arguments_raise_and_change_nothing(case):
    _, overrides, exc = case
    args = dict(x=_x32.copy(), running_mean=np.zeros(C, np.float32),
                running_var=np.ones(C, np.float32), weight=np.ones(C, np.float32),
                bias=np.zeros(C, np.float32), training=True)
    args.update(overrides)
    before = {k: np.array(v, copy=True) for k, v in args.items() if isinstance(v, np.ndarray)}
    with pytest.raises(exc):
        F.batch_norm(**args)
    for k, v in before.items():
        np.testing.assert_array_equal(args[k], v, err_msg=k)


def test_float32_statistics_of_float64_data_are_refused_by_name():
    x = np.ones((5, C))
    with pytest.raises(TypeError, match="^mean must be float64, got float32$"):
        F.batch_norm_backward(x, x, np.zeros(C, np.float32), np.ones(C))


@pytest.mark.parametrize("overrides, exc", [
    (dict(dy=np.ones((5, C + 1), np.float32)), ValueError),
    (dict(dy=np.ones((5, C), np.float64)), TypeError),
    (dict(x=np.ones((5, C), np.int64)), TypeError),
    (dict(mean=np.zeros(C + 1)), ValueError),
    (dict(invstd=np.ones(C, np.int64)), TypeError),
    (dict(invstd=np.ones(C, np.float16)), TypeError),
    (dict(weight=np.ones(C, np.float64)), TypeError),
    (dict(weight=np.ones(C - 1, np.float32)), ValueError),
    (dict(training=1), TypeError),
], ids=["dy shape", "dy dtype", "x int", "mean shape", "invstd int", "invstd float16",
        "weight dtype", "weight shape", "training int"])
def test_bad_backward_arguments_raise(overrides, exc):
    args = dict(dy=np.ones((5, C), np.float32), x=_x32.copy(), mean=np.zeros(C),
                invstd=np.ones(C), weight=np.ones(C, np.float32), training=True)
    args.update(overrides)
    before = {k: np.array(v, copy=True) for k, v in args.items() if isinstance(v, np.ndarray)}
    with pytest.raises(exc):
        F.batch_norm_backward(**args)
    for k, v in before.items():
        np.testing.assert_array_equal(args[k], v, err_msg=k)


@pytest.mark.parametrize("training", [True, False])
def test_out_buffers(training):
    x, dy, w, b, rm, rv = make(6, 5, np.float32, seed=13)
    y0, m, s = F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training)
    dx0, dw0, db0 = F.batch_norm_backward(dy, x, m, s, w, training=training)
    buf = np.full_like(x, np.nan)
    y, _, _ = F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training, out=buf)
    assert y is buf
    np.testing.assert_array_equal(y, y0)
    buf2 = np.full_like(x, np.nan)
    dx, dw, db = F.batch_norm_backward(dy, x, m, s, w, training=training, out=buf2)
    assert dx is buf2
    np.testing.assert_array_equal(dx, dx0)
    np.testing.assert_array_equal(dw, dw0)


@pytest.mark.parametrize("bad, exc", [
    (lambda x: list(x), TypeError),
    (lambda x: x.astype(np.float64), TypeError),
    (lambda x: np.empty((x.shape[0] + 1, x.shape[1]), x.dtype), ValueError),
    (lambda x: np.asfortranarray(x.copy()), ValueError),
    (lambda x: x, ValueError),  # the input itself
], ids=["list", "dtype", "shape", "fortran", "aliases x"])
def test_bad_out_raises_and_changes_nothing(bad, exc):
    x, dy, w, b, rm, rv = make(6, 5, np.float32, seed=14)
    saved = x.copy(), rm.copy(), rv.copy()
    with pytest.raises(exc):
        F.batch_norm(x, rm, rv, w, b, training=True, out=bad(x))
    with pytest.raises(exc):
        F.batch_norm_backward(dy, x, np.zeros(5), np.ones(5), w, out=bad(x))
    for a, a0 in zip((x, rm, rv), saved):
        np.testing.assert_array_equal(a, a0)
