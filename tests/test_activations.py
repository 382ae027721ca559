"""The activation layers run the backend's activation kernels (fastnn._cpu.activations).

Checked against the numpy formulas the layers used before (in float64),
against torch's functions and autograd, on NaN/inf, on every memory layout,
and through both kernel twins.  The fused linear layer uses the same scalar
definitions (tests/test_linear.py checks it against its own reference).
"""
import numpy as np
import pytest

from fastnn import nn
from fastnn._backend import cpu
from fastnn._cpu import activations as act_kernels
from fastnn._validation import ACTIVATIONS
from tests.conftest import assert_close, hostile_layouts

DTYPES = [np.float32, np.float64]
SLOPE = 0.2
LAYERS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(SLOPE), "tanh": nn.Tanh,
          "sigmoid": nn.Sigmoid}
NAMES = list(LAYERS)


def numpy_forward(name, x):
    """The layers' former numpy definitions (what the kernels must reproduce)."""
    if name == "relu":
        return np.maximum(x, 0)
    if name == "leaky_relu":
        return np.where(x > 0, x, x * SLOPE)
    if name == "tanh":
        return np.tanh(x)
    return 0.5 * (1 + np.tanh(0.5 * x))


def numpy_backward(name, dy, y):
    if name == "relu":
        return np.where(y <= 0, 0, dy)
    if name == "leaky_relu":
        return np.where(y > 0, dy, dy * SLOPE)
    if name == "tanh":
        return dy * (1 - y * y)
    return dy * y * (1 - y)


def hostile(dtype, seed=0):
    """(x, dy): random values plus NaN, +-inf, +-0, saturating and huge inputs."""
    rng = np.random.default_rng(seed)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 40.0, -40.0, 1e30, -1e30, 1e-30,
                        -1e-30, 0.625, -0.625, 20.0, -20.0, 1.0])
    x = np.concatenate([special, rng.standard_normal(64) * 4]).reshape(8, 10).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy[0, :3] = [np.nan, np.inf, -np.inf]   # against y = NaN, 1 or 0, -1 or 0
    dy[1, 2] = np.nan
    return x, dy


def run(name, x, dy):
    layer = LAYERS[name]()
    y = layer(x)
    return y, layer.backward(dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")   # inf * 0 in the formulas
def test_layers_match_the_numpy_formulas_in_float64(name, dtype):
    x, dy = hostile(dtype)
    y, dx = run(name, x, dy)
    assert type(y) is np.ndarray and y.dtype == dtype and dx.dtype == dtype
    want_y = numpy_forward(name, x.astype(np.float64))
    # saturated outputs (1e30 through relu) are judged relatively, not by the largest value
    assert_close(y, want_y, dtype, scale=1.0)
    want_dx = numpy_backward(name, dy.astype(np.float64), y.astype(np.float64))
    assert_close(dx, want_dx, dtype, scale=1.0)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))   # NaN in, NaN out, nowhere else


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_layers_match_torch(torch, name, dtype):
    x, dy = hostile(dtype, seed=1)
    y, dx = run(name, x, dy)
    tx = torch.tensor(x, requires_grad=True)
    f = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
         "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, SLOPE)}[name]
    ty = f(tx)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), dtype, scale=1.0)
    assert_close(dx, tx.grad.numpy(), dtype, scale=1.0)


def test_special_values_exactly():
    x = np.array([np.nan, 0.0, -0.0, np.inf, -np.inf, 1e30, -1e30])
    relu = nn.ReLU()
    y = relu(x)
    np.testing.assert_array_equal(y, [np.nan, 0, 0, np.inf, 0, 1e30, 0])
    # the derivative at 0 is 0, and a NaN output lets the gradient through
    np.testing.assert_array_equal(relu.backward(np.full(7, 2.0)), [2, 0, 0, 2, 0, 2, 0])
    np.testing.assert_array_equal(nn.Tanh()(x), [np.nan, 0, -0.0, 1, -1, 1, -1])
    assert np.signbit(nn.Tanh()(x)[2])
    np.testing.assert_array_equal(nn.Sigmoid()(x), [np.nan, 0.5, 0.5, 1, 0, 1, 0])
    np.testing.assert_array_equal(nn.LeakyReLU(0.5)(x), [np.nan, 0, -0.0, np.inf, -np.inf,
                                                         1e30, -5e29])
    with np.errstate(over="raise"):        # never overflows in float32 either
        assert np.isfinite(nn.Sigmoid()(np.float32([-1e30, 1e30, -100, 100]))).all()


@pytest.mark.parametrize("name", NAMES)
def test_any_layout_and_shape_gives_the_contiguous_result(name):
    x, dy = hostile(np.float32)
    x3, dy3 = x.reshape(2, 4, 10), dy.reshape(2, 4, 10)
    for shape_x, shape_dy in ((x, dy), (x3, dy3)):
        y, dx = run(name, shape_x, shape_dy)
        assert y.shape == shape_x.shape and y.flags.c_contiguous
        for (lname, xv), (_, dyv) in zip(hostile_layouts(shape_x), hostile_layouts(shape_dy)):
            yv, dxv = run(name, xv, dyv)
            np.testing.assert_array_equal(yv, y, err_msg=lname)
            np.testing.assert_array_equal(dxv, dx, err_msg=lname)
    # transposed and negatively strided views
    y, dx = run(name, np.ascontiguousarray(x.T), np.ascontiguousarray(dy.T))
    yt, dxt = run(name, x.T, dy.T)
    np.testing.assert_array_equal(yt, y)
    np.testing.assert_array_equal(dxt, dx)
    yr, _ = run(name, x[::-1, ::-1], dy[::-1, ::-1])
    np.testing.assert_array_equal(yr, run(name, x, dy)[0][::-1, ::-1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_serial_and_parallel_twins_agree_exactly(name, dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(10_007).astype(dtype) * 5
    dy = rng.standard_normal(x.size).astype(dtype)
    code, slope = ACTIVATIONS[name], dtype(SLOPE)
    outs = []
    for twin, chunks in ((act_kernels.activation_forward.serial, 1),
                         (act_kernels.activation_forward.parallel, 1),
                         (act_kernels.activation_forward.parallel, 7)):
        y = np.full_like(x, np.nan)
        twin(x, y, code, slope, chunks)
        outs.append(y)
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])
    grads = []
    for twin, chunks in ((act_kernels.activation_backward.serial, 1),
                         (act_kernels.activation_backward.parallel, 5)):
        dx = np.full_like(x, np.nan)
        twin(dy, outs[0], code, slope, dx, chunks)
        grads.append(dx)
    np.testing.assert_array_equal(grads[1], grads[0])
    assert_close(grads[0], numpy_backward(name, dy.astype(np.float64), outs[0].astype(np.float64)),
                 dtype)


def test_layer_and_fused_linear_give_the_same_numbers():
    """One definition: the layer after an identity Linear is the fused epilogue."""
    x, _ = hostile(np.float64)
    x = np.nan_to_num(x, posinf=50.0, neginf=-50.0)
    for name in NAMES:
        lin = nn.Linear(10, 10, bias=False, activation=name, negative_slope=SLOPE,
                        dtype=np.float64)
        lin.weight.data[...] = np.eye(10)
        np.testing.assert_array_equal(lin(x), LAYERS[name]()(x), err_msg=name)


def test_large_inputs_take_the_parallel_path_and_match():
    x = np.random.default_rng(3).standard_normal((256, 512)).astype(np.float32)
    for name in NAMES:
        y, dx = run(name, x, x)
        assert_close(y, numpy_forward(name, x.astype(np.float64)), np.float32)
        assert_close(dx, numpy_backward(name, x.astype(np.float64), y.astype(np.float64)),
                     np.float32)


def test_empty_and_list_inputs():
    for name in NAMES:
        y, dx = run(name, np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32))
        assert y.shape == dx.shape == (0, 4) and y.dtype == np.float32
    np.testing.assert_array_equal(nn.ReLU()([[-1.0, 2.0]]), [[0.0, 2.0]])


def test_bad_inputs_are_refused_before_any_work():
    relu = nn.ReLU()
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        relu(np.arange(3))
    relu(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="dy has dtype float64"):
        relu.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="dy"):
        relu.backward(np.ones((3, 2), np.float32))


def test_backend_launchers_write_into_the_given_output():
    x, dy = hostile(np.float64)
    y = np.empty_like(x)
    cpu.activation(x, ACTIVATIONS["tanh"], 0.0, y)
    np.testing.assert_array_equal(y, nn.Tanh()(x))
    dx = np.empty_like(x)
    cpu.activation_grad(dy, y, ACTIVATIONS["tanh"], 0.0, dx)
    assert_close(dx, numpy_backward("tanh", dy, y), np.float64)
