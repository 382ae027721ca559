"""F.linear / F.linear_backward: reference, torch, gradients, properties, hostile inputs."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastnn.functional as F
from tests.conftest import assert_close, hostile_layouts
from tests.gradcheck import assert_grad_close, numerical_vjp
from tests.reference import linear as ref

ACTIVATIONS = [None, "relu", "leaky_relu", "tanh", "sigmoid"]
DTYPES = [np.float32, np.float64]
# (N, in, out): odd serial sizes, and N * out = 32768 to run the parallel twins.
SHAPES = {"small": (7, 5, 3), "parallel": (64, 9, 512)}


def make(n, n_in, n_out, dtype, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, n_in)) * scale).astype(dtype)
    w = (rng.standard_normal((n_out, n_in)) / np.sqrt(max(n_in, 1))).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    dy = rng.standard_normal((n, n_out)).astype(dtype)
    return x, w, b, dy


def grads_close(actual, expected, dtype):
    for a, e in zip(actual, expected):
        assert a.dtype == dtype and a.shape == e.shape
        assert_close(a, e, dtype, kind="reduction")


# --- reference ----------------------------------------------------------------

@pytest.mark.parametrize("size", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_backward_match_reference(activation, dtype, size):
    x, w, b, dy = make(*SHAPES[size], dtype)
    args = [a.copy() for a in (x, w, b, dy)]
    y = F.linear(x, w, b, activation=activation, negative_slope=0.1)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_close(y, ref.linear(x, w, b, activation, 0.1), dtype, kind="reduction")
    got = F.linear_backward(dy, x, w, y, activation=activation, negative_slope=0.1)
    grads_close(got, ref.linear_backward(dy, x, w, b, activation, 0.1), dtype)
    for before, after in zip(args, (x, w, b, dy)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_without_bias(activation):
    x, w, _, dy = make(6, 4, 5, np.float64, seed=1)
    y = F.linear(x, w, activation=activation)
    assert_close(y, ref.linear(x, w, None, activation), np.float64, kind="reduction")
    got = F.linear_backward(dy, x, w, y, activation=activation)
    grads_close(got, ref.linear_backward(dy, x, w, None, activation), np.float64)


def test_y_may_be_omitted_without_activation():
    x, w, b, dy = make(5, 3, 4, np.float64)
    full = F.linear_backward(dy, x, w, F.linear(x, w, b))
    for a, e in zip(F.linear_backward(dy, x, w, None), full):
        np.testing.assert_array_equal(a, e)


def test_kink_derivatives_at_zero():
    """y == 0 exactly: relu'(0) = 0, leaky_relu'(0) = negative_slope."""
    x = np.zeros((3, 4))
    w = np.ones((2, 4))
    dy = np.ones((3, 2))
    y = F.linear(x, w, activation="relu")
    dx, dw, db = F.linear_backward(dy, x, w, y, activation="relu")
    assert not dx.any() and not db.any()
    y = F.linear(x, w, activation="leaky_relu", negative_slope=0.25)
    dx, dw, db = F.linear_backward(dy, x, w, y, activation="leaky_relu", negative_slope=0.25)
    np.testing.assert_array_equal(db, [0.75, 0.75])
    np.testing.assert_array_equal(dx, np.full((3, 4), 0.5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_parallel_twins_match_serial(dtype):
    """The public functions run the serial twins; the parallel ones must agree."""
    import numba

    from fastnn._cpu import linear as K
    x, w, b, dy = make(*SHAPES["parallel"], dtype, seed=5)
    z = x @ w.T
    for act in (K.NONE, K.RELU, K.LEAKY_RELU, K.TANH, K.SIGMOID):
        ys, yp = z.copy(), z.copy()
        K.bias_activation_.serial(ys, b, act, dtype(0.1))
        K.bias_activation_.parallel(yp, b, act, dtype(0.1))
        np.testing.assert_array_equal(yp, ys)
        n_chunks = numba.get_num_threads() + 1  # uneven chunks
        ps, pp = np.zeros((1, w.shape[0])), np.zeros((n_chunks, w.shape[0]))
        if act == K.NONE:
            K.column_sum.serial(dy, ps)
            K.column_sum.parallel(dy, pp)
        else:
            dzs, dzp = np.empty_like(dy), np.empty_like(dy)
            K.activation_grad_bias_sum.serial(dy, ys, act, dtype(0.1), dzs, ps)
            K.activation_grad_bias_sum.parallel(dy, ys, act, dtype(0.1), dzp, pp)
            np.testing.assert_array_equal(dzp, dzs)
        assert_close(pp.sum(axis=0), ps[0], np.float64, kind="reduction")


# --- torch oracle -------------------------------------------------------------

def torch_linear(torch, x, w, b, dy, activation, slope):
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    z = torch.nn.functional.linear(tx, tw, tb)
    act = {None: lambda t: t, "relu": torch.relu, "tanh": torch.tanh,
           "sigmoid": torch.sigmoid,
           "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, slope)}[activation]
    y = act(z)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), (tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_matches_torch(torch, activation, dtype):
    x, w, b, dy = make(*SHAPES["parallel"], dtype, seed=2)
    y_t, grads_t = torch_linear(torch, x, w, b, dy, activation, 0.2)
    y = F.linear(x, w, b, activation=activation, negative_slope=0.2)
    assert_close(y, y_t, dtype, kind="reduction")
    got = F.linear_backward(dy, x, w, y, activation=activation, negative_slope=0.2)
    grads_close(got, grads_t, dtype)


# --- finite differences -------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_match_finite_differences(activation):
    # Inputs with every pre-activation at least 0.05 away from the relu kink.
    for seed in range(100):
        x, w, b, dy = make(4, 3, 5, np.float64, seed=seed)
        if np.abs(ref.pre_activation(x, w, b)).min() > 0.05:
            break
    else:
        pytest.fail("no seed gives pre-activations away from 0")
    y = F.linear(x, w, b, activation=activation, negative_slope=0.3)
    dx, dw, db = F.linear_backward(dy, x, w, y, activation=activation, negative_slope=0.3)

    def f(**kw):
        args = dict(x=x, weight=w, bias=b)
        args.update(kw)
        return F.linear(args["x"], args["weight"], args["bias"], activation=activation,
                        negative_slope=0.3)

    assert_grad_close(dx, numerical_vjp(lambda v: f(x=v), x, dy))
    assert_grad_close(dw, numerical_vjp(lambda v: f(weight=v), w, dy))
    assert_grad_close(db, numerical_vjp(lambda v: f(bias=v), b, dy))


# --- properties ---------------------------------------------------------------

def assert_within_bound(actual, expected, bound, dtype):
    """|actual - expected| <= c * eps * bound, ``bound`` a sum of |terms| (rounding-error model)."""
    c = 1e-5 if dtype == np.float32 else 1e-13
    err = np.abs(np.asarray(actual, np.float64) - expected)
    assert actual.shape == expected.shape and actual.dtype == dtype
    assert np.all(err <= c * bound + 1e-300), float(np.max(err - c * bound))


@given(n=st.integers(0, 9), n_in=st.integers(1, 9), n_out=st.integers(1, 9),
       dtype=st.sampled_from(DTYPES), activation=st.sampled_from(ACTIVATIONS),
       log_scale=st.sampled_from([-3, 0, 3]), seed=st.integers(0, 2**16))
def test_property_any_shape_matches_reference(n, n_in, n_out, dtype, activation,
                                              log_scale, seed):
    """Any shape and scale, within the rounding-error bound of the operation.

    A float32 result cannot be closer than eps times the sum of the magnitudes
    of its terms (and 1 - y**2 from a float32 y carries an absolute error of
    eps), so the tolerance is that bound, not a fixed relative one.
    """
    x, w, b, dy = make(n, n_in, n_out, dtype, seed=seed, scale=10.0 ** log_scale)
    ax, aw, ab, ady = (np.abs(a.astype(np.float64)) for a in (x, w, b, dy))
    y = F.linear(x, w, b, activation=activation)
    assert_within_bound(y, ref.linear(x, w, b, activation), ax @ aw.T + ab + np.abs(y), dtype)
    if activation in ("relu", "leaky_relu"):
        # A z within rounding of 0 may sit on the other side of the kink than
        # the float64 one: compare only where the sides agree.
        if np.any((ref.pre_activation(x, w, b) > 0) != (y > 0)):
            return
    dx, dw, db = F.linear_backward(dy, x, w, y, activation=activation)
    rdx, rdw, rdb = ref.linear_backward(dy, x, w, b, activation)
    assert_within_bound(dx, rdx, ady @ aw, dtype)
    assert_within_bound(dw, rdw, ady.T @ ax, dtype)
    assert_within_bound(db, rdb, ady.sum(axis=0), dtype)


# --- hostile inputs -----------------------------------------------------------

@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_any_layout_gives_the_same_result(activation):
    x, w, b, dy = make(8, 6, 5, np.float32, seed=3)
    y = F.linear(x, w, b, activation=activation)
    expected = F.linear_backward(dy, x, w, y, activation=activation)
    plain = dict(x=x, w=w, b=b, dy=dy, y=y)
    for name, base in plain.items():
        variants = hostile_layouts(base) if base.ndim == 2 else hostile_layouts(base[:, None])
        variants = [(layout, v if base.ndim == 2 else v[:, 0]) for layout, v in variants]
        variants.append(("broadcast", np.broadcast_to(base[:1], base.shape)))
        for _layout, v in variants:
            args = {**plain, name: v}
            contiguous = {**plain, name: np.ascontiguousarray(v)}
            want_y = F.linear(contiguous["x"], contiguous["w"], contiguous["b"], activation)
            assert_close(F.linear(args["x"], args["w"], args["b"], activation), want_y,
                         np.float32, kind="reduction")
            want = F.linear_backward(contiguous["dy"], contiguous["x"], contiguous["w"],
                                     contiguous["y"], activation)
            got = F.linear_backward(args["dy"], args["x"], args["w"], args["y"], activation)
            for a, e in zip(got, want):
                assert_close(a, e, np.float32, kind="reduction")
    # The baseline itself was not disturbed by the views' runs.
    for a, e in zip(F.linear_backward(dy, x, w, y, activation), expected):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_propagates(activation):
    x, w, b, dy = make(4, 3, 5, np.float64, seed=4)
    x[1, 2] = np.nan
    y = F.linear(x, w, b, activation=activation)
    assert np.isnan(y[1]).all() and not np.isnan(np.delete(y, 1, axis=0)).any()
    dy[2, 3] = np.nan
    dx, dw, db = F.linear_backward(dy, x, w, y, activation=activation)
    assert np.isnan(dx[2]).all() and np.isnan(db[3]) and np.isnan(dw[:, 2]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_saturating_activations_are_exact_for_huge_inputs(dtype):
    x = np.array([[1e4], [-1e4], [1e30]], dtype=dtype)
    w = np.ones((1, 1), dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            s = F.linear(x, w, activation="sigmoid")
            t = F.linear(x, w, activation="tanh")
            r = F.linear(x, w, activation="relu")
            ds = F.linear_backward(np.ones_like(s), x, w, s, activation="sigmoid")
            dt = F.linear_backward(np.ones_like(t), x, w, t, activation="tanh")
    np.testing.assert_array_equal(s[:, 0], [1, 0, 1])
    np.testing.assert_array_equal(t[:, 0], [1, -1, 1])
    np.testing.assert_array_equal(r[:, 0], [1e4, 0, dtype(1e30)])
    for dx, dw, db in (ds, dt):
        assert not dx.any() and not dw.any() and not db.any()
    inf = np.array([[np.inf], [-np.inf]], dtype=dtype)
    np.testing.assert_array_equal(F.linear(inf, w, activation="sigmoid")[:, 0], [1, 0])
    np.testing.assert_array_equal(F.linear(inf, w, activation="tanh")[:, 0], [1, -1])
    # Tiny inputs keep their relative precision.
    tiny = F.linear(np.array([[1e-30]], dtype=dtype), np.ones((1, 1), dtype=dtype),
                    activation="tanh")
    assert tiny[0, 0] == dtype(1e-30)


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("n, n_in", [(0, 4), (3, 0), (0, 0)])
def test_empty_dimensions(n, n_in, activation):
    x = np.zeros((n, n_in), dtype=np.float32)
    w = np.ones((5, n_in), dtype=np.float32)
    b = np.arange(5, dtype=np.float32)
    y = F.linear(x, w, b, activation=activation)
    assert y.shape == (n, 5) and y.dtype == np.float32
    np.testing.assert_array_equal(y, np.broadcast_to(b, (n, 5)))
    dx, dw, db = F.linear_backward(np.ones((n, 5), np.float32), x, w, y, activation=activation)
    assert dx.shape == (n, n_in) and dw.shape == (5, n_in) and db.shape == (5,)
    assert not dw.any()
    expected_db = np.full(5, n, np.float32)
    if activation == "relu":
        expected_db[0] = 0  # y[:, 0] = relu(0) = 0
    np.testing.assert_array_equal(db, expected_db)


def _bad_calls():
    """(valid arguments, [(change, exception, which functions)])."""
    x, w, b, dy = make(4, 3, 5, np.float64)
    y = F.linear(x, w, b, activation="relu")
    f32 = np.float32
    both, fwd, bwd = ("linear", "linear_backward"), ("linear",), ("linear_backward",)
    cases = [
        (dict(x=x[0]), ValueError, both),                       # 1-D x
        (dict(x=x[None]), ValueError, both),                    # 3-D x
        (dict(w=w[:, :2]), ValueError, both),                   # in mismatch
        (dict(w=w.astype(f32)), TypeError, both),               # mixed dtypes
        (dict(x=x.astype(f32)), TypeError, both),
        (dict(x=x.astype(np.float16), w=w.astype(np.float16)), TypeError, both),
        (dict(x=x.astype(int)), TypeError, both),
        (dict(activation="gelu"), ValueError, both),
        (dict(activation="ReLU"), ValueError, both),
        (dict(activation=1), ValueError, both),
        (dict(negative_slope=-0.1), ValueError, both),
        (dict(negative_slope=np.nan), ValueError, both),
        (dict(negative_slope=np.inf), ValueError, both),
        (dict(negative_slope="0.1"), TypeError, both),
        (dict(negative_slope=True), TypeError, both),
        (dict(b=b[:4]), ValueError, fwd),                       # bias length
        (dict(b=b[None]), ValueError, fwd),                     # 2-D bias
        (dict(b=b.astype(f32)), TypeError, fwd),
        (dict(dy=dy[:3]), ValueError, bwd),                     # batch mismatch
        (dict(dy=dy.T), ValueError, bwd),
        (dict(dy=dy.astype(f32)), TypeError, bwd),
        (dict(y=y[:, :4]), ValueError, bwd),
        (dict(y=y.astype(f32)), TypeError, bwd),
        (dict(y=None), ValueError, bwd),                        # needed by relu
    ]
    return dict(x=x, w=w, b=b, dy=dy, y=y), cases


def test_bad_arguments_raise_and_leave_arguments_unchanged():
    base, cases = _bad_calls()
    snapshot = {k: v.copy() for k, v in base.items()}
    for change, exc, functions in cases:
        a = {**base, "activation": "relu", "negative_slope": 0.01, **change}
        kw = dict(activation=a["activation"], negative_slope=a["negative_slope"])
        if "linear" in functions:
            with pytest.raises(exc):
                F.linear(a["x"], a["w"], a["b"], **kw)
        if "linear_backward" in functions:
            with pytest.raises(exc):
                F.linear_backward(a["dy"], a["x"], a["w"], a["y"], **kw)
    for k, v in base.items():
        np.testing.assert_array_equal(v, snapshot[k])


def test_error_messages_name_the_bad_value():
    x, w, b, _ = make(4, 3, 5, np.float64)
    with pytest.raises(ValueError, match="gelu"):
        F.linear(x, w, activation="gelu")
    with pytest.raises(ValueError, match=r"\(4,\)"):
        F.linear(x, w, b[:4])
    with pytest.raises(ValueError, match="negative_slope"):
        F.linear(x, w, negative_slope=-1)
    with pytest.raises(TypeError, match="float32"):
        F.linear(x, w.astype(np.float32))
