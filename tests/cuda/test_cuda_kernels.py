"""The CUDA twins against the CPU kernels and the float64 references.

Shapes are tiny and never multiples of the (shrunk) block: batch 1, odd
widths, C = 1.  Device arrays go through the PUBLIC functions of
fastnn.functional, so the dispatch is tested with every kernel.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn.functional as F
from tests.conftest import assert_close
from tests.reference import (
    batchnorm as ref_bn,
    dropout as ref_do,
    layernorm as ref_ln,
    linear as ref_li,
    losses as ref_lo,
    regularization as ref_re,
    softmax as ref_sm,
)

DTYPES = [np.float32, np.float64]


def dev(a):
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(a))


def host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else a


def same(gpu, cpu, dtype, kind="elementwise"):
    """GPU result close to the CPU kernel's (the CPU kernel is itself tested
    against the references in tests/test_*.py)."""
    assert_close(host(gpu), cpu, dtype, kind)


# ---------------------------------------------------------------- linear

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 3, 4), (3, 7, 1)], ids=str)
@pytest.mark.parametrize("act", [None, "relu", "leaky_relu", "tanh", "sigmoid"])
def test_linear_forward_backward(dtype, shape, act):
    n, k, m = shape
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, k)).astype(dtype)
    w = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    y = F.linear(x, w, b, act)
    yg = F.linear(dev(x), dev(w), dev(b), act)
    same(yg, y, dtype, "reduction")
    assert_close(host(yg), ref_li.linear(x, w, b, act), dtype, "reduction")
    dy = rng.standard_normal((n, m)).astype(dtype)
    got = F.linear_backward(dev(dy), dev(x), dev(w), yg, act)
    want = F.linear_backward(dy, x, w, y, act)
    refs = ref_li.linear_backward(dy, x, w, b, act)
    for g, c, r in zip(got, want, refs):
        assert host(g).dtype == dtype
        same(g, c, dtype, "reduction")
        assert_close(host(g), r, dtype, "reduction")


def test_linear_strided_weight_and_no_bias():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5))
    w = rng.standard_normal((5, 4))     # w.T is a non-contiguous (4, 5) view
    yg = F.linear(dev(x), dev(w).T, activation="relu")
    same(yg, F.linear(x, w.T, activation="relu"), np.float64, "reduction")


# ---------------------------------------------------------------- layer norm

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, ns", [((1, 1), 1), ((7, 3), 3), ((19, 2), 2), ((5, 40), 40),
                                       ((2, 3, 5), (3, 5))], ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_forward_backward(dtype, shape, ns, affine):
    rng = np.random.default_rng(9)
    x = (1e3 + rng.standard_normal(shape)).astype(dtype)   # a large offset
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(0.5, 2.0, ns).astype(dtype) if affine else None
    b = rng.standard_normal(ns).astype(dtype) if affine else None

    def to(a):
        return None if a is None else dev(a)
    y, mean, invstd = F.layer_norm(x, ns, w, b)
    yg, meang, invstdg = F.layer_norm(dev(x), ns, to(w), to(b))
    scale = max(1.0, 1e-5 * 1e3 * float(np.max(invstd)))   # conditioning of the offset
    assert_close(host(yg), y, dtype, "reduction", scale=scale)
    same(meang, mean, np.float64, "reduction")
    assert_close(host(invstdg), invstd, dtype, "reduction")
    assert_close(host(yg), ref_ln.layer_norm(x, ns, w, b)[0], dtype, "reduction", scale=scale)
    got = F.layer_norm_backward(dev(dy), dev(x), ns, meang, invstdg, to(w))
    want = F.layer_norm_backward(dy, x, ns, mean, invstd, w)
    refs = ref_ln.layer_norm_backward(dy, x, ns, mean, invstd, w)
    for g, cpu, rf in zip(got, want, refs):
        k = scale * max(1.0, float(np.abs(rf).max()))
        assert_close(host(g), cpu, dtype, "reduction", scale=k)
        assert_close(host(g), rf, dtype, "reduction", scale=k)


def test_layer_norm_empty_batch_nan_row_and_out():
    x = np.empty((0, 3))
    yg, mg, sg = F.layer_norm(dev(x), 3)
    assert host(yg).shape == (0, 3) and host(mg).shape == (0,)
    dx, dw, db = F.layer_norm_backward(dev(x), dev(x), 3, mg, sg, dev(np.ones(3)))
    assert host(dx).shape == (0, 3) and np.all(host(dw) == 0) and np.all(host(db) == 0)
    x = np.random.default_rng(10).standard_normal((4, 3))
    x[2, 1] = np.nan
    y, _, _ = F.layer_norm(x, 3)
    buf = dev(np.zeros((4, 3)))
    got = F.layer_norm(dev(x), 3, out=buf)
    assert got[0] is buf
    np.testing.assert_array_equal(np.isnan(host(buf)), np.isnan(y))
    assert np.isnan(host(buf)[2]).all()

# ---------------------------------------------------------------- batch norm

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 1), (7, 3), (19, 2), (150, 3)], ids=str)
def test_batch_norm_train_and_backward(dtype, shape):
    rng = np.random.default_rng(3)
    x = (1e3 + rng.standard_normal(shape)).astype(dtype)   # a large offset
    c = shape[1]
    w = rng.standard_normal(c).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    rmg, rvg = dev(rm), dev(rv)
    y, mean, invstd = F.batch_norm(x, rm, rv, w, b, training=True)
    yg, meang, invstdg = F.batch_norm(dev(x), rmg, rvg, dev(w), dev(b), training=True)
    same(yg, y, dtype)
    same(meang, mean, np.float64, "reduction")
    assert_close(host(invstdg), invstd, dtype, "reduction")
    same(rmg, rm, dtype, "reduction")
    same(rvg, rv, dtype, "reduction")
    r = ref_bn.batch_norm(x, np.zeros(c), np.ones(c), w, b, training=True)
    assert_close(host(yg), r[0], dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    for training in (True, False):
        got = F.batch_norm_backward(dev(dy), dev(x), meang, invstdg, dev(w), training=training)
        want = F.batch_norm_backward(dy, x, mean, invstd, w, training=training)
        refs = ref_bn.batch_norm_backward(dy, x, mean, invstd, w, training=training)
        for g, cpu, rf in zip(got, want, refs):
            same(g, cpu, dtype, "reduction")
            assert_close(host(g), rf, dtype, "reduction")


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_eval_mode(dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3)).astype(dtype)
    rm = rng.standard_normal(3).astype(dtype)
    rv = (1 + rng.random(3)).astype(dtype)
    y, mean, invstd = F.batch_norm(x, rm, rv, training=False)
    yg, meang, invstdg = F.batch_norm(dev(x), dev(rm), dev(rv), training=False)
    same(yg, y, dtype)
    same(invstdg, invstd, np.float64)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_out_matches_fresh_result(training):
    from numba import cuda
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    w, b = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    dy = rng.standard_normal((6, 3)).astype(np.float32)
    rm = rng.standard_normal(3).astype(np.float32)
    rv = (1 + rng.random(3)).astype(np.float32)
    # fresh running statistics per call: training updates them in place
    y, mean, invstd = F.batch_norm(dev(x), dev(rm), dev(rv), dev(w), dev(b), training=training)
    buf = dev(np.full((6, 3), np.nan, np.float32))
    got = F.batch_norm(dev(x), dev(rm), dev(rv), dev(w), dev(b), training=training, out=buf)
    assert got[0] is buf
    assert np.array_equal(host(buf), host(y))
    assert np.array_equal(host(got[1]), host(mean))
    dx, dw, db = F.batch_norm_backward(dev(dy), dev(x), mean, invstd, dev(w), training=training)
    dbuf = dev(np.full((6, 3), np.nan, np.float32))
    got = F.batch_norm_backward(dev(dy), dev(x), mean, invstd, dev(w), training=training,
                                out=dbuf)
    assert got[0] is dbuf
    assert np.array_equal(host(dbuf), host(dx))
    for g, want in zip(got[1:], (dw, db)):
        assert np.array_equal(host(g), host(want))
    with pytest.raises(ValueError, match="shape"):
        F.batch_norm(dev(x), dev(rm), dev(rv), training=training,
                     out=cuda.device_array((3, 6), np.float32))


def test_batch_norm_refuses_one_sample_in_training():
    with pytest.raises(ValueError, match="more than 1 sample"):
        F.batch_norm(dev(np.ones((1, 3))), None, None, training=True)


_X, _V = np.ones((4, 3)), np.ones(3)


@pytest.mark.parametrize("call", [
    lambda to: F.batch_norm(to(_X), to(_V), None, training=True),
    lambda to: F.batch_norm(to(_X), None, None, training=False),
    lambda to: F.batch_norm(to(_X), to(_V), to(_V), training="yes"),
    lambda to: F.batch_norm(to(_X), to(_V), to(_V), momentum=1.5),
    lambda to: F.batch_norm(to(_X), to(_V), to(_V), eps=0.0),
    lambda to: F.batch_norm(to(_X), to(_V), to(_V), weight=to(np.ones(4))),
    lambda to: F.batch_norm(to(_X), to(np.ones(4)), to(np.ones(4)), training=True),
    lambda to: F.batch_norm(to(_X), to(_V.astype(np.float32)), to(_V), training=False),
    lambda to: F.batch_norm_backward(to(_X), to(_X), to(_V.astype(np.float32)), to(_V)),
    lambda to: F.batch_norm_backward(to(np.ones((4, 2))), to(_X), to(_V), to(_V)),
    lambda to: F.batch_norm_backward(to(_X), to(_X), to(np.ones(2)), to(_V)),
    lambda to: F.batch_norm(to(_X), to(_V.astype(np.float32)), to(_V), training=True),
    lambda to: F.batch_norm(to(_X), to(np.ones(4)), to(_V.astype(np.float32)),
                            weight=to(np.ones(2)), momentum=2.0, training=True),
    lambda to: F.batch_norm_backward(to(_X), to(_X), to(_V.astype(np.float32)), to(_V),
                                     weight=to(np.ones(2)), training="yes"),
], ids=["one running stat", "eval without stats", "training not bool", "momentum",
        "eps", "weight shape", "running stat shape", "running stat dtype", "mean dtype",
        "dy shape", "mean shape", "training running stat dtype", "several faults (forward)",
        "several faults (backward)"])
def test_batch_norm_argument_errors_are_the_cpu_ones(call):
    """One set of argument rules serves both devices: same exception, same message
    (several faults in one call: the same one is reported first)."""
    with pytest.raises((TypeError, ValueError)) as cpu:
        call(lambda a: a)
    with pytest.raises(cpu.type) as gpu:
        call(dev)
    assert str(gpu.value) == str(cpu.value)


@pytest.mark.parametrize("share", ["weight", "bias", "running_var", "x"])
def test_batch_norm_running_stats_sharing_memory_are_refused_as_on_the_cpu(share):
    def call(to):
        x = to(np.arange(12.0).reshape(4, 3))
        args = dict(running_mean=to(np.zeros(3)), running_var=to(np.ones(3)),
                    weight=to(np.ones(3)), bias=to(np.zeros(3)))
        if share == "x":
            args["running_mean"] = x[1]          # a row of x: contiguous, writeable
        else:
            args[share] = args["running_mean"]
        return F.batch_norm(x, training=True, **args)
    with pytest.raises(ValueError) as cpu:
        call(lambda a: a)
    with pytest.raises(ValueError) as gpu:
        call(dev)
    assert str(gpu.value) == str(cpu.value)
    assert "shares memory" in str(cpu.value)


def test_hinge_nan_row_matches_cpu():
    s = np.array([[1.0, np.nan, 0.0], [1.0, 2.0, 0.0]])
    t = np.array([0, 0])
    lg, gg = F.hinge_loss_with_grad(dev(s), dev(t), reduction="none")
    lc, gc = F.hinge_loss_with_grad(s, t, reduction="none")
    np.testing.assert_array_equal(host(lg), lc)      # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(host(gg), gc)
    assert np.isnan(gc[0]).all() and np.isfinite(gc[1]).all()


# ---------------------------------------------------------------- dropout

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (3, 7), (2, 3, 5)], ids=str)
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_bit_identical_to_cpu(dtype, shape, p):
    x = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    yg = host(F.dropout(dev(x), p, seed=2**64 - 1))
    y = F.dropout(x, p, seed=2**64 - 1)
    assert yg.dtype == dtype and yg.shape == shape
    assert np.array_equal(yg, y)            # bit for bit, not merely close
    assert np.array_equal(host(F.dropout_backward(dev(x), p, 2**64 - 1)),
                          F.dropout_backward(x, p, 2**64 - 1))


def test_dropout_mask_matches_cpu_and_reference():
    from fastnn._backend import cuda
    gpu = cuda()
    shape, p, seed = (3, 5), 0.4, 123
    m = gpu.empty(shape, np.bool_)
    gpu.dropout_mask(m, seed, np.int64(round(p * 2.0 ** 32)))   # the threshold of p
    m = host(m)
    assert np.array_equal(m, F.dropout_mask(shape, p, seed))
    assert np.array_equal(m, ref_do.dropout_mask(shape, p, seed))


@pytest.mark.parametrize("start", [0, 2**32 - 7])   # the second crosses a 2**32 block
def test_generator_bit_identical_to_cpu(start):
    from numba import cuda

    from fastnn._cpu.rng import random_uint32, seed_key
    from fastnn._cuda import rng as gpu_rng
    out = cuda.device_array(13, dtype=np.uint32)
    gpu_rng.fill_uint32[2, 8](out, seed_key(77), np.int64(start))
    assert np.array_equal(out.copy_to_host(), random_uint32(77, 13, start))


def test_dropout_in_place_and_eval_identity():
    x = np.arange(9.0)
    xg = dev(x)
    out = F.dropout(xg, 0.5, seed=3, out=xg)
    assert out is xg
    assert np.array_equal(host(xg), F.dropout(x, 0.5, seed=3))
    assert np.array_equal(host(F.dropout(dev(x), 0.5, training=False)), x)


# ---------------------------------------------------------------- softmax / CE

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (5, 4), (2, 11)], ids=str)
def test_softmax_rows(dtype, shape):
    x = (np.random.default_rng(6).standard_normal(shape) * 30).astype(dtype)
    same(F.softmax(dev(x)), F.softmax(x), dtype)
    same(F.log_softmax(dev(x)), F.log_softmax(x), dtype)
    assert_close(host(F.softmax(dev(x))), ref_sm.softmax(x.astype(np.float64)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((2, 3, 5), 0), ((2, 3, 5), 1), ((2, 3, 5), -3),
                                        ((3, 1), 0), ((1, 4, 2), 1)], ids=str)
def test_softmax_along_any_axis(dtype, shape, axis):
    x = (np.random.default_rng(6).standard_normal(shape) * 30).astype(dtype)
    x.flat[-1] = np.nan                              # its slice becomes NaN, the rest not
    same(F.softmax(dev(x), axis=axis), F.softmax(x, axis=axis), dtype)
    same(F.log_softmax(dev(x), axis=axis), F.log_softmax(x, axis=axis), dtype)
    assert host(F.softmax(dev(x), axis=axis)).shape == shape
    with pytest.raises(ValueError, match="out of bounds"):
        F.softmax(dev(x), axis=len(shape))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_with_grad(dtype, reduction, smoothing):
    rng = np.random.default_rng(7)
    logits = (rng.standard_normal((6, 5)) * 4).astype(dtype)
    logits[0, 2] = 1e4                               # huge logit: still exact
    target = np.array([2, 0, -100, 4, 1, 3])
    weight = rng.random(5).astype(dtype) + 0.5
    kw = dict(weight=weight, reduction=reduction, label_smoothing=smoothing)
    loss, grad = F.cross_entropy_with_grad(logits, target, **kw)
    lg, gg = F.cross_entropy_with_grad(dev(logits), dev(target), **{**kw, "weight": dev(weight)})
    same(lg, loss, dtype, "reduction")
    same(gg, grad, dtype, "reduction")
    rl, rg = ref_sm.cross_entropy(logits, target, **kw)
    assert_close(host(lg), rl, dtype, "reduction")
    assert_close(host(gg), rg, dtype, "reduction")


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_subnormal_class_weights_match_cpu(smoothing):
    """The "mean" gradient divides each weight by the subnormal target-weight sum:
    1 / sum was inf and the gradient NaN (on the GPU as on the CPU)."""
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((5, 4))
    target = np.array([2, 0, -100, 3, 1])
    weight = np.full(4, 1e-310)
    kw = dict(weight=weight, label_smoothing=smoothing)
    loss, grad = F.cross_entropy_with_grad(logits, target, **kw)
    lg, gg = F.cross_entropy_with_grad(dev(logits), dev(target), **{**kw, "weight": dev(weight)})
    assert np.isfinite(host(gg)).all()
    same(gg, grad, np.float64)
    same(gg, ref_sm.cross_entropy(logits, target, label_smoothing=smoothing)[1], np.float64)
    assert host(lg) == pytest.approx(loss, rel=1e-12)


def test_confident_logits_and_huge_offsets_match_cpu():
    """The formulas that the CPU's fastmath flags broke agree on both devices:
    BCE of x = +-50 (loss and gradient 1.9e-22 on both sides) and log_softmax
    around a max of 1e16."""
    x = np.array([50.0, 30.0, -50.0, -30.0])
    t = np.array([1.0, 1.0, 0.0, 0.0])
    lg, gg = F.binary_cross_entropy_with_logits_with_grad(dev(x), dev(t), reduction="none")
    lc, gc = F.binary_cross_entropy_with_logits_with_grad(x, t, reduction="none")
    np.testing.assert_array_equal(host(lg), lc)
    np.testing.assert_array_equal(host(gg), gc)
    a = np.abs(x)
    np.testing.assert_allclose(lc, np.log1p(np.exp(-a)), rtol=1e-12, atol=0)
    np.testing.assert_allclose(gc, np.sign(x) * -1.0 / (1.0 + np.exp(a)), rtol=1e-12, atol=0)
    z = np.array([[1e16, 1e16, 1e16 + 4.0]])
    want = ref_sm.log_softmax(z)
    same(F.log_softmax(dev(z)), F.log_softmax(z), np.float64)
    assert_close(F.log_softmax(z), want, np.float64)


def test_cross_entropy_gradient_in_place_over_logits():
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((3, 4))
    target = np.array([1, 0, 3])
    loss, grad = F.cross_entropy_with_grad(logits, target)
    lg = dev(logits)
    lossg, gg = F.cross_entropy_with_grad(lg, dev(target), out=lg)
    assert gg is lg
    same(lg, grad, np.float64)
    assert abs(lossg - loss) <= 1e-12 * abs(loss)


def test_cross_entropy_single_class_and_all_ignored():
    logits = np.array([[0.5], [-2.0]])
    target = np.array([0, 0])
    assert host(F.cross_entropy(dev(logits), dev(target))) == F.cross_entropy(logits, target)
    assert np.isnan(F.cross_entropy(dev(logits), dev(np.array([-100, -100]))))


# ---------------------------------------------------------------- hinge / MSE / MAE

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hinge_with_grad(dtype, reduction):
    rng = np.random.default_rng(9)
    s = rng.standard_normal((5, 3)).astype(dtype)
    t = np.array([0, 2, 1, 1, 0])
    loss, grad = F.hinge_loss_with_grad(s, t, reduction=reduction)
    lg, gg = F.hinge_loss_with_grad(dev(s), dev(t), reduction=reduction)
    same(lg, loss, dtype, "reduction")
    same(gg, grad, dtype)
    rl, rg = ref_lo.hinge(s, t, reduction=reduction)
    assert_close(host(lg), rl, dtype, "reduction")
    assert_close(host(gg), rg, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", ["mse", "l1"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(dtype, which, reduction):
    rng = np.random.default_rng(10)
    p = rng.standard_normal((3, 7)).astype(dtype)
    t = rng.standard_normal((3, 7)).astype(dtype)
    t[0, 0] = p[0, 0]                     # a zero residual: subgradient 0
    fn = F.mse_loss_with_grad if which == "mse" else F.l1_loss_with_grad
    loss, grad = fn(p, t, reduction=reduction)
    lg, gg = fn(dev(p), dev(t), reduction=reduction)
    same(lg, loss, dtype, "reduction")
    same(gg, grad, dtype)
    ref = ref_lo.mse if which == "mse" else ref_lo.mae
    rl, rg = ref(p, t, reduction=reduction)
    assert_close(host(lg), rl, dtype, "reduction")
    if reduction != "none":
        assert_close(host(gg), rg, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(1,), (3, 7), (2, 3, 5)], ids=str)
def test_bce_with_logits(dtype, reduction, shape):
    rng = np.random.default_rng(12)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.flat[0] = 1e4                       # extreme logits: no overflow on either device
    x.flat[-1] = -1e4
    t = rng.random(shape).astype(dtype)
    t.flat[::2] = 1.0
    loss, grad = F.binary_cross_entropy_with_logits_with_grad(x, t, reduction=reduction)
    lg, gg = F.binary_cross_entropy_with_logits_with_grad(dev(x), dev(t), reduction=reduction)
    same(lg, loss, dtype, "reduction")
    same(gg, grad, dtype)
    rl, rg = ref_lo.bce_with_logits(x, t, reduction=reduction)
    assert_close(host(lg), rl, dtype, "reduction")
    assert_close(host(gg), rg, dtype)
    assert host(F.binary_cross_entropy_with_logits(dev(x), dev(t), reduction)) == \
        pytest.approx(F.binary_cross_entropy_with_logits(x, t, reduction), rel=1e-12)


def test_bce_nan_logit_and_bad_target_match_cpu():
    x = np.array([[np.nan, 1.0], [-2.0, 0.5]])
    t = np.array([[0.0, 1.0], [0.0, 0.5]])
    lg, gg = F.binary_cross_entropy_with_logits_with_grad(dev(x), dev(t), reduction="none")
    lc, gc = F.binary_cross_entropy_with_logits_with_grad(x, t, reduction="none")
    same(lg, lc, np.float64)               # NaN where the CPU has NaN, and only there
    same(gg, gc, np.float64)
    assert np.isnan(lc[0, 0]) and np.isfinite(lc.flat[1:]).all()
    t[1, 0] = np.nan
    t[1, 1] = 2.0
    with pytest.raises(ValueError, match=r"target\[1, 0\] = nan") as gpu:
        F.binary_cross_entropy_with_logits(dev(x), dev(t))
    with pytest.raises(ValueError) as cpu:
        F.binary_cross_entropy_with_logits(x, t)
    assert str(gpu.value) == str(cpu.value)


# ---------------------------------------------------------------- regularization

@pytest.mark.parametrize("dtype", DTYPES)
def test_penalties_and_max_norm(dtype):
    rng = np.random.default_rng(11)
    w = rng.standard_normal((4, 3)).astype(dtype)
    w[0, 0] = 0.0
    for fn, ref in ((F.l2_penalty, ref_re.l2_penalty), (F.l1_penalty, ref_re.l1_penalty)):
        v, g = fn(dev(w), 0.3)
        rv, rg = ref(w, 0.3)
        assert_close(v, fn(w, 0.3)[0], dtype, "reduction")
        assert_close(v, rv, dtype, "reduction")
        assert_close(host(g), rg, dtype)
    w[1] *= 10
    wg = dev(w)
    assert F.max_norm_(wg, 2.0) is wg
    want = F.max_norm_(w.copy(), 2.0)
    got = host(wg)
    same(got, want, dtype)
    inside = np.linalg.norm(w.astype(np.float64), axis=1) <= 2.0
    assert np.array_equal(got[inside], w[inside])       # untouched rows: bit for bit


@pytest.mark.parametrize("c", [1.0, 1e-300])
def test_max_norm_huge_row(c):
    w = np.array([[1e200, 1e200, 0.0], [0.1, 0.2, 0.3], [3e300, 4e300, 0.0],
                  [1.7e308, 1.7e308, 0.0], [3e-170, 4e-170, 0.0], [0.0, 0.0, 0.0]])
    wg = dev(w)
    F.max_norm_(wg, c)
    same(wg, F.max_norm_(w.copy(), c), np.float64)
    assert np.all(host(wg)[:5, :2] != 0.0)              # tiny c: scaled, not zeroed


# ---------------------------------------------------------------- dispatch and errors

def test_mixed_host_and_device_operands_raise_type_error():
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match="weight is a host array"):
        F.linear(dev(x), np.ones((4, 3)))
    with pytest.raises(TypeError, match="x is a host array"):
        F.linear(x, dev(np.ones((4, 3))))


def test_device_validation_matches_cpu_messages():
    with pytest.raises(IndexError, match=r"target\[1\] = 4 is out of range for 4 classes"):
        F.cross_entropy(dev(np.zeros((2, 4))), dev(np.array([0, 4])))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.dropout(dev(np.ones(3, np.int32)))
    with pytest.raises(TypeError, match="convert explicitly"):
        F.mse_loss(dev(np.ones(3)), dev(np.ones(3, np.float32)))
    with pytest.raises(ValueError, match="p must be"):
        F.dropout(dev(np.ones(3)), p=1.5)
    with pytest.raises(ValueError, match="unknown activation"):
        F.linear(dev(np.ones((2, 3))), dev(np.ones((4, 3))), activation="gelu")


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="simulator only")
def test_simulator_is_not_picked_as_a_device():
    from fastnn._cuda import is_available
    assert is_available() is False
    assert is_available(allow_simulator=True) is True


@pytest.mark.no_device
def test_import_fastnn_does_not_import_numba_cuda():
    code = ("import sys, fastnn, fastnn.functional as F, numpy as np; "
            "F.linear(np.ones((2, 2)), np.ones((2, 2))); "
            "assert 'numba.cuda' not in sys.modules, 'numba.cuda imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.no_device
def test_device_array_without_driver_is_a_clear_error():
    # a fake device array in a process without the simulator and (on CI) without a GPU
    code = (
        "import fastnn.functional as F, numpy as np\n"
        "from fastnn._cuda import is_available\n"
        "if is_available(): raise SystemExit(0)\n"
        "class Dev:\n    __cuda_array_interface__ = {}\n"
        "try:\n    F.dropout(Dev())\n"
        "except RuntimeError as e:\n    assert 'CUDA' in str(e) or 'numba' in str(e), e\n"
        "else:\n    raise SystemExit('no error')\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.no_device
def test_a_numba_cuda_that_cannot_compile_with_this_numpy_is_named(monkeypatch):
    # numba-cuda 0.30.4 with numpy 2.5 failed at the first launch with
    # "module 'numpy' has no attribute 'row_stack'"; require_cuda says why
    import builtins

    import fastnn._cuda as fc
    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "numba.cuda.np.arrayobj":
            raise AttributeError("module 'numpy' has no attribute 'row_stack'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(RuntimeError, match=r"a GPU array was given, but this numba-cuda cannot "
                                           r"compile kernels with numpy .*row_stack.*numpy<2.5"):
        fc._check_compiler_imports("a GPU array was given")


# ---------------------------------------------------------------- one set of argument rules

def test_both_backends_have_one_interface():
    """Same names, same signatures: fastnn.functional calls either without asking which."""
    import inspect

    from fastnn._backend import cpu, cuda
    gpu = cuda()
    assert gpu.__all__ == cpu.__all__
    for name in cpu.__all__:
        if name != "NAME":
            assert (inspect.signature(getattr(gpu, name))
                    == inspect.signature(getattr(cpu, name))), name


class _ReadOnlyDevice:
    """A device array seen through an interface that marks it read-only (as CuPy could)."""

    def __init__(self, a):
        self._a = a

    @property
    def __cuda_array_interface__(self):
        iface = dict(self._a.__cuda_array_interface__)
        iface["data"] = (iface["data"][0], True)
        return iface


def _read_only(to, a):
    arr = to(np.array(a))
    if hasattr(arr, "__cuda_array_interface__"):       # a real GPU
        return _ReadOnlyDevice(arr)
    arr.setflags(write=False)       # numpy, or the host array a simulator array wraps
    return arr


def _overlapping(to, shape):
    """(input, out): two C-contiguous views of one buffer, shifted by one row/element."""
    base = to(np.zeros((shape[0] + 1,) + shape[1:]))
    return base[:-1], base[1:]


_W, _B, _T = np.ones((2, 3)), np.ones(2), np.array([0, 1, 2, 1])
_I = np.ones((4, 3), np.int64)
_ALL_OPS = {
    # linear
    "linear x 1-D": lambda to: F.linear(to(np.ones(3)), to(_W)),
    "linear x int": lambda to: F.linear(to(_I), to(_W)),
    "linear weight dtype": lambda to: F.linear(to(_X), to(_W.astype(np.float32))),
    "linear weight shape": lambda to: F.linear(to(_X), to(np.ones((2, 4)))),
    "linear bias shape": lambda to: F.linear(to(_X), to(_W), to(np.ones(3))),
    "linear activation": lambda to: F.linear(to(_X), to(_W), activation="gelu"),
    "linear slope": lambda to: F.linear(to(_X), to(_W), activation="leaky_relu",
                                        negative_slope=-1.0),
    "linear_backward dy shape": lambda to: F.linear_backward(to(np.ones((4, 3))), to(_X),
                                                             to(_W), None),
    "linear_backward y missing": lambda to: F.linear_backward(to(np.ones((4, 2))), to(_X),
                                                              to(_W), None, "relu"),
    "linear_backward y shape": lambda to: F.linear_backward(to(np.ones((4, 2))), to(_X),
                                                            to(_W), to(_X), "tanh"),
    # batch norm: out= (the other argument rules are in the test above)
    "batch_norm out is x": lambda to: (lambda x: F.batch_norm(x, None, None, training=True,
                                                              out=x))(to(_X)),
    "batch_norm out overlap": lambda to: (lambda xo: F.batch_norm(
        xo[0], None, None, training=True, out=xo[1]))(_overlapping(to, (4, 3))),
    "batch_norm out read-only": lambda to: F.batch_norm(to(_X), None, None, training=True,
                                                        out=_read_only(to, _X)),
    "batch_norm out dtype": lambda to: F.batch_norm(to(_X), None, None, training=True,
                                                    out=to(_X.astype(np.float32))),
    "batch_norm running stat read-only": lambda to: F.batch_norm(
        to(_X), _read_only(to, _V), to(_V), training=True),
    "batch_norm_backward out is dy": lambda to: (lambda d: F.batch_norm_backward(
        d, to(_X), to(_V), to(_V), out=d))(to(_X)),
    "batch_norm_backward out shape": lambda to: F.batch_norm_backward(
        to(_X), to(_X), to(_V), to(_V), out=to(np.ones((3, 4)))),
    # layer norm
    "layer_norm x shape": lambda to: F.layer_norm(to(_X), 4),
    "layer_norm normalized_shape": lambda to: F.layer_norm(to(_X), ()),
    "layer_norm x int": lambda to: F.layer_norm(to(_I), 3),
    "layer_norm weight shape": lambda to: F.layer_norm(to(_X), 3, to(np.ones(4))),
    "layer_norm bias dtype": lambda to: F.layer_norm(to(_X), 3, None,
                                                     to(np.ones(3, np.float32))),
    "layer_norm eps": lambda to: F.layer_norm(to(_X), 3, eps=0.0),
    "layer_norm out is x": lambda to: (lambda x: F.layer_norm(x, 3, out=x))(to(_X)),
    "layer_norm out overlap": lambda to: (lambda xo: F.layer_norm(xo[0], 3, out=xo[1]))(
        _overlapping(to, (4, 3))),
    "layer_norm out read-only": lambda to: F.layer_norm(to(_X), 3, out=_read_only(to, _X)),
    "layer_norm_backward dy shape": lambda to: F.layer_norm_backward(
        to(np.ones((4, 2))), to(_X), 3, to(np.zeros(4)), to(np.ones(4))),
    "layer_norm_backward mean shape": lambda to: F.layer_norm_backward(
        to(_X), to(_X), 3, to(np.zeros(3)), to(np.ones(4))),
    "layer_norm_backward invstd dtype": lambda to: F.layer_norm_backward(
        to(_X), to(_X), 3, to(np.zeros(4)), to(np.ones(4, np.float32))),
    "layer_norm_backward out is dy": lambda to: (lambda d: F.layer_norm_backward(
        d, to(_X), 3, to(np.zeros(4)), to(np.ones(4)), out=d))(to(_X)),
    # dropout
    "dropout x int": lambda to: F.dropout(to(_I)),
    "dropout p": lambda to: F.dropout(to(_X), p=1.5),
    "dropout training": lambda to: F.dropout(to(_X), training="yes"),
    "dropout seed": lambda to: F.dropout(to(_X), seed=-1),
    "dropout out shape": lambda to: F.dropout(to(_X), out=to(np.ones((3, 4)))),
    "dropout out dtype": lambda to: F.dropout(to(_X), out=to(_X.astype(np.float32))),
    "dropout out overlap": lambda to: (lambda xo: F.dropout(xo[0], out=xo[1]))(
        _overlapping(to, (8,))),
    "dropout out read-only": lambda to: F.dropout(to(_X), out=_read_only(to, _X)),
    "dropout_backward seed": lambda to: F.dropout_backward(to(_X), 0.5, 2**64),
    "dropout_backward out overlap": lambda to: (lambda xo: F.dropout_backward(
        xo[0], 0.5, 1, out=xo[1]))(_overlapping(to, (4, 3))),
    # softmax and cross-entropy
    "softmax axis": lambda to: F.softmax(to(_X), axis=2),
    "softmax axis type": lambda to: F.softmax(to(_X), axis=1.0),
    "softmax x int": lambda to: F.softmax(to(_I)),
    "log_softmax axis": lambda to: F.log_softmax(to(_X), axis=-3),
    "cross_entropy label": lambda to: F.cross_entropy(to(_X), to(np.array([0, 1, 3, 0]))),
    "cross_entropy label dtype": lambda to: F.cross_entropy(to(_X), to(_T.astype(float))),
    "cross_entropy target shape": lambda to: F.cross_entropy(to(_X), to(_T[:3])),
    "cross_entropy no class": lambda to: F.cross_entropy(to(np.ones((4, 0))), to(_T)),
    "cross_entropy weight shape": lambda to: F.cross_entropy(to(_X), to(_T),
                                                             weight=to(np.ones(4))),
    "cross_entropy reduction": lambda to: F.cross_entropy(to(_X), to(_T), reduction="avg"),
    "cross_entropy smoothing": lambda to: F.cross_entropy(to(_X), to(_T),
                                                          label_smoothing=2.0),
    "cross_entropy ignore_index": lambda to: F.cross_entropy(to(_X), to(_T),
                                                             ignore_index="a"),
    "cross_entropy_with_grad out overlap": lambda to: (lambda xo: F.cross_entropy_with_grad(
        xo[0], to(_T), out=xo[1]))(_overlapping(to, (4, 3))),
    "cross_entropy_with_grad out read-only": lambda to: F.cross_entropy_with_grad(
        to(_X), to(_T), out=_read_only(to, _X)),
    # hinge, MSE, MAE
    "hinge_loss margin": lambda to: F.hinge_loss(to(_X), to(_T), margin=np.inf),
    "hinge_loss label": lambda to: F.hinge_loss(to(_X), to(np.array([0, -1, 0, 0]))),
    "hinge_loss scores 1-D": lambda to: F.hinge_loss(to(np.ones(4)), to(_T)),
    "hinge_loss_with_grad out overlap": lambda to: (lambda xo: F.hinge_loss_with_grad(
        xo[0], to(_T), out=xo[1]))(_overlapping(to, (4, 3))),
    "mse_loss target shape": lambda to: F.mse_loss(to(_X), to(np.ones((3, 4)))),
    "mse_loss target dtype": lambda to: F.mse_loss(to(_X), to(_X.astype(np.float32))),
    "mse_loss reduction": lambda to: F.mse_loss(to(_X), to(_X), reduction="max"),
    "mse_loss_with_grad out overlap": lambda to: (lambda xo: F.mse_loss_with_grad(
        to(np.ones(8)), xo[0], out=xo[1]))(_overlapping(to, (8,))),
    "l1_loss pred int": lambda to: F.l1_loss(to(_I), to(_X)),
    "l1_loss_with_grad out read-only": lambda to: F.l1_loss_with_grad(
        to(_X), to(_X), out=_read_only(to, _X)),
    "binary_cross_entropy_with_logits target range": lambda to: (
        F.binary_cross_entropy_with_logits(to(_X), to(np.full((4, 3), 1.5)))),
    "binary_cross_entropy_with_logits target shape": lambda to: (
        F.binary_cross_entropy_with_logits(to(_X), to(np.ones(3)))),
    "binary_cross_entropy_with_logits logits int": lambda to: (
        F.binary_cross_entropy_with_logits(to(_I), to(_X))),
    "binary_cross_entropy_with_logits_with_grad out overlap": lambda to: (
        lambda xo: F.binary_cross_entropy_with_logits_with_grad(
            to(np.zeros(8)), xo[0], out=xo[1]))(_overlapping(to, (8,))),
    "binary_cross_entropy_with_logits_with_grad out read-only": lambda to: (
        F.binary_cross_entropy_with_logits_with_grad(to(_X), to(np.zeros((4, 3))),
                                                     out=_read_only(to, _X))),
    # regularization
    "l2_penalty lam": lambda to: F.l2_penalty(to(_X), -1.0),
    "l2_penalty lam inf": lambda to: F.l2_penalty(to(_X), np.inf),
    "l2_penalty out overlap": lambda to: (lambda xo: F.l2_penalty(xo[0], 0.1, out=xo[1]))(
        _overlapping(to, (8,))),
    "l1_penalty lam nan": lambda to: F.l1_penalty(to(_X), np.nan),
    "l1_penalty out read-only": lambda to: F.l1_penalty(to(_X), 0.1, out=_read_only(to, _X)),
    "max_norm_ c": lambda to: F.max_norm_(to(_X.copy()), 0.0),
    "max_norm_ 1-D": lambda to: F.max_norm_(to(np.ones(3)), 1.0),
    "max_norm_ int": lambda to: F.max_norm_(to(_I), 1.0),
    "max_norm_ read-only": lambda to: F.max_norm_(_read_only(to, _X), 1.0),
}


def test_the_parity_table_covers_every_public_op():
    # dropout_mask takes no array, so it has no device twin to compare
    covered = {name.split()[0] for name in _ALL_OPS} | {"dropout_mask"}
    assert covered == set(F.__all__)


@pytest.mark.parametrize("call", list(_ALL_OPS.values()), ids=list(_ALL_OPS))
def test_argument_errors_are_the_cpu_ones_for_every_op(call):
    """The checks are written once, in fastnn.functional: the same bad input gives the same
    exception and message on both devices, out= overlap and writeability included."""
    with pytest.raises((TypeError, ValueError, IndexError)) as cpu:
        call(lambda a: a)
    with pytest.raises(cpu.type) as gpu:
        call(dev)
    assert str(gpu.value) == str(cpu.value)
