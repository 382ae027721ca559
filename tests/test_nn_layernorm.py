"""nn.LayerNorm on the layer path: parameters, forward/backward against torch, state, fit."""
import numpy as np
import pytest

import fastnn.functional as F
from fastnn import nn, optim
from fastnn.train import fit
from tests.conftest import assert_close
from tests.gradcheck import assert_grad_close, numerical_vjp


def _x(shape, dtype=np.float64, seed=0, offset=0.0):
    return (offset + np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for p in layer.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape)
    return layer


def test_parameters_have_torchs_names_and_initial_values():
    ln = nn.LayerNorm(4)
    assert ln.normalized_shape == (4,) and ln.eps == 1e-5
    assert [name for name, _ in ln.named_parameters()] == ["weight", "bias"]
    np.testing.assert_array_equal(ln.weight.data, np.ones(4, np.float32))
    np.testing.assert_array_equal(ln.bias.data, np.zeros(4, np.float32))
    assert not ln.weight.decay and not ln.bias.decay   # like batch norm's gamma/beta
    no_bias = nn.LayerNorm((2, 3), bias=False, dtype=np.float64)
    assert no_bias.bias is None and no_bias.weight.shape == (2, 3)
    assert list(no_bias.state_dict()) == ["weight"]
    plain = nn.LayerNorm(3, elementwise_affine=False)
    assert plain.weight is None and plain.bias is None and plain.parameters() == []
    assert plain.state_dict() == {}
    assert repr(plain) == "LayerNorm((3,), eps=1e-05, elementwise_affine=False)"


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(normalized_shape=0), ValueError, "^normalized_shape must be one or more"),
    (dict(normalized_shape=()), ValueError, "^normalized_shape must be one or more"),
    (dict(normalized_shape="4"), TypeError, "^normalized_shape"),
    (dict(normalized_shape=4, eps=0.0), ValueError, "^eps must be > 0"),
    (dict(normalized_shape=4, elementwise_affine=1), TypeError, "^elementwise_affine"),
    (dict(normalized_shape=4, bias="no"), TypeError, "^bias must be True or False"),
    (dict(normalized_shape=4, dtype=np.int32), TypeError, "^dtype must be float32"),
])
def test_bad_arguments_name_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nn.LayerNorm(**kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs, shape, ns", [
    (dict(), (7, 5), 5),
    (dict(bias=False), (7, 5), 5),
    (dict(elementwise_affine=False), (7, 5), 5),
    (dict(), (3, 4, 5), (4, 5)),
], ids=["affine", "no bias", "no affine", "3-D"])
def test_forward_backward_match_torch(torch, dtype, kwargs, shape, ns):
    ln = _randomize(nn.LayerNorm(ns, dtype=dtype, **kwargs))
    ref = torch.nn.LayerNorm(ns, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        for name, p in ln.named_parameters():
            getattr(ref, name).copy_(torch.tensor(p.data))
    x, dy = _x(shape, dtype, offset=3.0), _x(shape, dtype, seed=2)
    y = ln(x)
    dx = ln.backward(dy)
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.tensor(dy.astype(np.float64)))
    assert y.dtype == dx.dtype == dtype
    assert_close(y, ty.detach().numpy(), dtype, kind="reduction")
    assert_close(dx, tx.grad.numpy(), dtype, kind="reduction", scale=np.abs(dx).max())
    for name, p in ln.named_parameters():
        want = getattr(ref, name).grad.numpy()
        assert_close(p.grad, want, dtype, kind="reduction", scale=np.abs(want).max())


def test_training_and_evaluation_compute_the_same_and_infer_saves_nothing():
    ln = _randomize(nn.LayerNorm(6, dtype=np.float64))
    x = _x((4, 6))
    y_train = ln.train()(x)
    saved = ln._saved
    np.testing.assert_array_equal(ln.infer(x), y_train)
    assert ln._saved is saved
    np.testing.assert_array_equal(ln.eval()(x), y_train)
    with pytest.raises(RuntimeError, match=r"LayerNorm\.backward called before forward"):
        nn.LayerNorm(3).backward(np.ones((1, 3), np.float32))


def test_whole_model_gradients_finite_difference():
    model = nn.Sequential(nn.Linear(5, 7, rng=0, dtype=np.float64),
                          _randomize(nn.LayerNorm(7, dtype=np.float64)), nn.Tanh(),
                          nn.Linear(7, 4, rng=1, dtype=np.float64),
                          nn.LayerNorm(4, elementwise_affine=False, dtype=np.float64))
    x = _x((6, 5), seed=3)
    target = np.arange(6) % 4

    def loss(xin):
        return F.cross_entropy(model.forward(xin), target)

    _, dout = F.cross_entropy_with_grad(model.forward(x), target)
    model.zero_grad()
    dx = model.backward(dout)
    assert_grad_close(dx, numerical_vjp(loss, x, 1.0))
    for name, p in model.named_parameters():
        def loss_p(value, p=p):
            saved = p.data.copy()
            p.data[...] = value
            try:
                return loss(x)
            finally:
                p.data[...] = saved
        assert_grad_close(p.grad, numerical_vjp(loss_p, p.data, 1.0)), name


def _model(seed):
    return nn.Sequential(nn.Linear(4, 6, rng=seed), nn.LayerNorm(6), nn.ReLU(),
                         nn.Linear(6, 3, rng=seed + 1))


def test_state_dict_save_and_load(tmp_path):
    src, dst = _model(0), _model(5)
    _randomize(src[1])
    state = src.state_dict()
    assert set(state) == {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"}
    refs = [p.data for p in dst.parameters()]
    dst.load_state_dict(state)
    assert all(p.data is r for p, r in zip(dst.parameters(), refs))
    x = _x((5, 4), np.float32, seed=9)
    np.testing.assert_array_equal(src(x), dst(x))
    path = tmp_path / "ln.npz"
    src.save(path)
    other = _model(7)
    other.load(path)
    np.testing.assert_array_equal(src(x), other(x))
    with pytest.raises(ValueError, match=r"1\.weight"):
        other.load_state_dict({**state, "1.weight": np.ones(5, np.float32)})


def test_to_cpu_is_a_no_op_and_to_cuda_without_cuda_is_clear():
    model = _model(0)
    w = model[1].weight.data
    assert model.to("cpu") is model and model[1].weight.data is w
    from fastnn._cuda import is_available
    if not is_available(allow_simulator=True):
        with pytest.raises(RuntimeError):
            model.to("cuda")


def test_layer_path_fit_trains_a_model_with_layer_norm():
    rng = np.random.default_rng(0)
    X = (100.0 + 10 * rng.standard_normal((256, 4))).astype(np.float32)  # far from zero
    y = (X[:, 0] - X[:, 1] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(4, 16, rng=0), nn.LayerNorm(16), nn.ReLU(),
                          nn.Linear(16, 2, rng=1))
    hist = fit(model, X, y, loss="cross_entropy", optimizer=optim.Adam(model.parameters(),
               lr=3e-2), epochs=20, batch_size=32, rng=0, progress=False, engine="layers")
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    assert hist["train_accuracy"][-1] > 0.9


def test_fit_names_a_width_mismatch_at_a_leading_layer_norm():
    model = nn.Sequential(nn.LayerNorm(3), nn.Linear(3, 2, rng=0))
    with pytest.raises(ValueError, match=r"X has 4 features .* the model expects 3"):
        fit(model, np.ones((8, 4), np.float32), np.zeros(8, np.int64), epochs=1,
            progress=False, engine="layers")
