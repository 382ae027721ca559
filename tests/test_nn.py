"""Layers and models: forward/backward, fusion, gradient checks, modes, state files."""
import numpy as np
import pytest

from fastnn import nn
from tests.conftest import assert_close
from tests.gradcheck import assert_grad_close, numerical_vjp

DTYPES = [np.float32, np.float64]


def _x(n, d, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


# -- Linear -------------------------------------------------------------------
@pytest.mark.parametrize("init, expected_std", [("he", np.sqrt(2 / 200)),
                                                ("xavier", np.sqrt(1 / 200)), ("normal", 0.05)])
def test_linear_init_statistics(init, expected_std):
    layer = nn.Linear(200, 300, init=init, std=0.05, rng=0)
    assert layer.weight.shape == (300, 200) and layer.bias.shape == (300,)
    assert layer.weight.dtype == np.float32
    assert abs(layer.weight.data.std() / expected_std - 1) < 0.02
    assert abs(layer.weight.data.mean()) < 0.05 * expected_std
    np.testing.assert_array_equal(layer.bias.data, 0)
    assert layer.weight.decay and not layer.bias.decay


def test_linear_zeros_and_seeds():
    np.testing.assert_array_equal(nn.Linear(5, 4, init="zeros").weight.data, 0)
    a, b = nn.Linear(5, 4, rng=3), nn.Linear(5, 4, rng=3)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, nn.Linear(5, 4, rng=4).weight.data)
    nob = nn.Linear(5, 4, bias=False, rng=0)
    assert nob.bias is None and len(nob.parameters()) == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [None, "relu", "leaky_relu", "tanh", "sigmoid"])
def test_linear_forward_matches_numpy(dtype, act):
    layer = nn.Linear(6, 5, activation=act, rng=1, dtype=dtype)
    layer.bias.data[:] = np.linspace(-1, 1, 5)
    x = _x(7, 6, dtype)
    z = x.astype(np.float64) @ layer.weight.data.T.astype(np.float64) + layer.bias.data
    ref = {None: z, "relu": np.maximum(z, 0), "leaky_relu": np.where(z > 0, z, 0.01 * z),
           "tanh": np.tanh(z), "sigmoid": 1 / (1 + np.exp(-z))}[act]
    y = layer(x)
    assert y.dtype == dtype
    assert_close(y, ref, dtype, kind="reduction")


@pytest.mark.parametrize("kw, exc", [
    (dict(init="uniform"), ValueError), (dict(activation="gelu"), ValueError),
    (dict(std=-1.0), ValueError), (dict(dtype=np.float16), TypeError),
    (dict(dtype=np.int32), TypeError)])
def test_linear_bad_arguments(kw, exc):
    with pytest.raises(exc):
        nn.Linear(3, 2, **kw)
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 2)


def test_backward_before_forward_raises():
    for layer in (nn.Linear(2, 2), nn.ReLU(), nn.BatchNorm1d(2), nn.Sequential(nn.Linear(2, 2))):
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.zeros((1, 2), np.float32))


# -- activations --------------------------------------------------------------
@pytest.mark.parametrize("layer, f", [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (nn.Tanh(), np.tanh),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x)))], ids=lambda v: type(v).__name__)
def test_activation_layers_forward_backward(layer, f):
    x = _x(4, 6, seed=2)
    assert_close(layer(x), f(x), np.float64)
    dy = _x(4, 6, seed=3)
    numeric = numerical_vjp(f, x, dy)
    layer(x)
    assert_grad_close(layer.backward(dy), numeric)
    # float32 in, float32 out; NaN propagates; huge inputs stay finite
    x32 = np.array([[np.nan, -1e30, 1e30, 0.0]], np.float32)
    y32 = layer(x32)
    assert y32.dtype == np.float32 and np.isnan(y32[0, 0])
    assert np.all(np.isfinite(y32[0, 2:])) or isinstance(layer, (nn.ReLU, nn.LeakyReLU))


def test_relu_derivative_at_zero_is_zero():
    r = nn.ReLU()
    r(np.zeros((1, 3)))
    np.testing.assert_array_equal(r.backward(np.ones((1, 3))), 0)


# -- fusion -------------------------------------------------------------------
def _unfused_forward_backward(model, x, dy):
    for layer in model:
        x = layer.forward(x)
    out = x
    for layer in reversed(list(model)):
        dy = layer.backward(dy)
    return out, dy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.Sigmoid, lambda: nn.LeakyReLU(0.2)])
def test_sequential_fuses_linear_and_activation(dtype, act):
    model = nn.Sequential(nn.Linear(6, 8, rng=0, dtype=dtype), act(),
                          nn.Linear(8, 3, rng=1, dtype=dtype))
    assert model._plan[0] == (0, model[1])  # the pair runs as one kernel call
    x, dy = _x(5, 6, dtype), _x(5, 3, dtype, seed=1)
    y = model(x)
    dx = model.backward(dy)
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    y2, dx2 = _unfused_forward_backward(model, x, dy)
    assert_close(y, y2, dtype, kind="reduction")
    assert_close(dx, dx2, dtype, kind="reduction")
    for g, p in zip(grads, model.parameters()):
        assert_close(g, p.grad, dtype, kind="reduction")


def test_fusion_plan_only_where_it_applies():
    model = nn.Sequential(nn.Linear(2, 2, activation="tanh"), nn.ReLU(), nn.LeakyReLU(0.3),
                          nn.Linear(2, 2), nn.LeakyReLU(0.3), nn.Linear(2, 2), nn.BatchNorm1d(2),
                          nn.ReLU(), nn.Linear(2, 2))
    assert model._plan == [(0, None), (1, None), (2, None), (3, model[4]), (5, None), (6, None),
                           (7, None), (8, None)]


# -- whole-model gradient check -------------------------------------------------
def _model64(drop_p=0.3):
    return nn.Sequential(
        nn.Linear(5, 7, rng=0, dtype=np.float64), nn.BatchNorm1d(7, dtype=np.float64), nn.ReLU(),
        nn.Dropout(drop_p, rng=0), nn.Linear(7, 6, rng=1, dtype=np.float64), nn.Tanh(),
        nn.Linear(6, 6, activation="sigmoid", rng=2, dtype=np.float64),
        nn.Linear(6, 6, rng=3, dtype=np.float64), nn.LeakyReLU(0.2),  # fused, slope 0.2
        nn.BatchNorm1d(6, dtype=np.float64), nn.Linear(6, 4, rng=4, dtype=np.float64))


@pytest.mark.parametrize("training", [True, False])
def test_whole_model_gradients_finite_difference(training):
    """d(loss)/d(input) and every parameter's gradient, through BN, dropout, fused pairs."""
    import fastnn.functional as F

    model = _model64()
    model.train(training)
    for bn in (model[1], model[9]):  # non-trivial scale/shift and running statistics
        rng = np.random.default_rng(bn.num_features)
        bn.weight.data[:] = rng.uniform(0.5, 1.5, bn.num_features)
        bn.bias.data[:] = rng.uniform(-0.5, 0.5, bn.num_features)
        bn.running_mean[:] = rng.uniform(-0.5, 0.5, bn.num_features)
        bn.running_var[:] = rng.uniform(0.5, 2.0, bn.num_features)
    x = _x(9, 5, seed=4)
    target = np.arange(9) % 4

    def loss(xin):
        model[3].rng = np.random.default_rng(7)  # the same dropout mask every call
        return F.cross_entropy(model.forward(xin), target)

    assert loss(x) == loss(x)
    model[3].rng = np.random.default_rng(7)
    out = model.forward(x)
    if training:
        assert 0 < np.count_nonzero(~F.dropout_mask((9, 7), 0.3, model[3].seed))
    _, dout = F.cross_entropy_with_grad(out, target)
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


# -- train / eval -----------------------------------------------------------------
def test_train_eval_switching():
    model = _model64(drop_p=0.5)
    assert all(m.training for m in model.modules())
    assert model.eval() is model and not any(m.training for m in model.modules())
    assert model.train() is model and all(m.training for m in model.modules())
    bn, drop = model[1], model[3]
    x = _x(16, 5, seed=5) * 3 + 2

    model.eval()
    y_eval = model(x)
    np.testing.assert_array_equal(bn.running_mean, 0)  # eval never updates running stats
    np.testing.assert_array_equal(model(x), y_eval)    # and dropout is the identity
    h = model[0](x)
    expected = ((h - bn.running_mean) / np.sqrt(bn.running_var + bn.eps) * bn.weight.data
                + bn.bias.data)
    assert_close(bn(h), expected, np.float64)

    model.train()
    y1, y2 = model(x), model(x)
    assert not np.array_equal(y1, y2)                  # a fresh dropout mask each forward
    assert not np.allclose(bn.running_mean, 0)         # running stats moved
    h = model[0](x)
    bn_out = bn(h)
    assert_close(bn_out.mean(axis=0), np.zeros(7), np.float64, kind="reduction")
    # biased std; eps shifts it a little
    np.testing.assert_allclose(bn_out.std(axis=0), 1, rtol=1e-4)
    d = drop(bn_out)
    kept = d != 0
    assert_close(d[kept], bn_out[kept] * 2, np.float64)


def test_dropout_keeps_a_seed_not_a_mask():
    drop = nn.Dropout(0.5, rng=0)
    x = np.ones((64, 32), np.float32)
    y = drop(x)
    seed = drop.seed
    arrays = [k for k, v in vars(drop).items() if isinstance(v, np.ndarray)]
    assert arrays == []
    dx = drop.backward(np.full_like(x, 3.0))
    np.testing.assert_array_equal(dx, 3 * y)  # the same mask, regenerated
    drop(x)
    assert drop.seed != seed
    drop.eval()
    assert drop(x) is x and drop.backward(x) is x
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


# -- Sequential container ------------------------------------------------------------
def test_sequential_container():
    layers = [nn.Linear(3, 4, rng=0), nn.ReLU(), nn.Linear(4, 2, rng=1)]
    model = nn.Sequential(*layers)
    assert len(model) == 3 and model[0] is layers[0] and model[-1] is layers[2]
    assert list(model) == layers
    assert isinstance(model[:2], nn.Sequential) and len(model[:2]) == 2
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias",
                                                              "2.weight", "2.bias"]
    assert model.parameters()[0] is layers[0].weight
    assert "Linear(3, 4" in repr(model)
    with pytest.raises(TypeError, match="layer 1"):
        nn.Sequential(nn.ReLU(), np.zeros(3))
    nested = nn.Sequential(model, nn.BatchNorm1d(2))
    assert "0.2.weight" in nested.state_dict() and "1.running_var" in nested.state_dict()


def test_mixed_dtype_input_is_refused():
    model = nn.Sequential(nn.Linear(3, 2, rng=0))  # float32
    with pytest.raises(TypeError):
        model(np.ones((2, 3), np.float64))


# -- state dicts and files ----------------------------------------------------------------
def _bn_model(seed):
    return nn.Sequential(nn.Linear(4, 6, rng=seed), nn.BatchNorm1d(6), nn.ReLU(),
                         nn.Linear(6, 3, rng=seed + 1))


def _trained(seed=0):
    model = _bn_model(seed)
    x = _x(8, 4, np.float32, seed=seed)
    for _ in range(3):
        model(x)  # moves the running statistics
    for p in model.parameters():
        p.data += 0.1
    return model


def _snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def _assert_state_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_state_dict_round_trip():
    src, dst = _trained(0), _bn_model(5)
    state = src.state_dict()
    assert set(state) == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                          "1.running_var", "3.weight", "3.bias"}
    state["0.weight"][:] = 123  # a copy: the model is not affected
    assert not np.any(src[0].weight.data == 123)
    refs = [p.data for p in dst.parameters()]
    dst.load_state_dict(src.state_dict())
    _assert_state_equal(src.state_dict(), dst.state_dict())
    # in place: optimizers still hold the same arrays
    assert all(p.data is r for p, r in zip(dst.parameters(), refs))
    x = _x(5, 4, np.float32, seed=9)
    np.testing.assert_array_equal(src.eval()(x), dst.eval()(x))


def test_save_load_round_trip(tmp_path):
    src, dst = _trained(0), _bn_model(5)
    path = tmp_path / "model.npz"
    src.save(path)
    with np.load(path, allow_pickle=False) as f:
        assert set(f.files) == set(src.state_dict())
    dst.load(path)
    _assert_state_equal(src.state_dict(), dst.state_dict())
    dst.load(str(path))  # str paths work too
    plain = tmp_path / "weights"  # no extension is appended
    src.save(plain)
    assert plain.exists()


def _write_npz(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("corrupt, match", [
    (lambda s: s.pop("1.running_var"), "missing.*1.running_var"),
    (lambda s: s.update(extra=np.zeros(2)), "unexpected.*extra"),
    (lambda s: s.update({"0.weight": np.zeros((4, 6), np.float32)}), r"0.weight.*\(4, 6\)"),
    (lambda s: s.update({"3.bias": np.zeros((3, 1), np.float32)}), "3.bias"),
    (lambda s: s.update({"0.bias": np.array(["a"] * 6)}), "0.bias"),
])
def test_bad_files_are_refused_and_model_unchanged(tmp_path, corrupt, match):
    src, dst = _trained(0), _trained(7)
    state = src.state_dict()
    corrupt(state)
    path = tmp_path / "bad.npz"
    _write_npz(path, state)
    before = _snapshot(dst)
    with pytest.raises(ValueError, match=match):
        dst.load(path)
    _assert_state_equal(before, dst.state_dict())


def test_unreadable_files_are_refused(tmp_path):
    dst = _trained(7)
    before = _snapshot(dst)
    text = tmp_path / "text.npz"
    text.write_text("not a model")
    objects = tmp_path / "objects.npz"
    state = dst.state_dict()
    state["0.bias"] = np.array([object()] * 6, dtype=object)
    with open(objects, "wb") as f:
        np.savez(f, **state)
    for path in (text, objects):
        with pytest.raises(ValueError, match=r"cannot load|0\.bias"):
            dst.load(path)
    with pytest.raises(FileNotFoundError):
        dst.load(tmp_path / "missing.npz")
    _assert_state_equal(before, dst.state_dict())
    with pytest.raises(KeyError, match="missing"):
        dst.load_state_dict({})
    _assert_state_equal(before, dst.state_dict())


def _compressed_bomb(path, state, name, shape):
    """A small file whose member ``name`` declares (and inflates to) a huge array."""
    state = dict(state)
    state[name] = np.zeros(shape, np.float32)
    with open(path, "wb") as f:
        np.savez_compressed(f, **state)


@pytest.mark.parametrize("name, shape", [("extra", (4096, 4096)), ("0.weight", (4096, 4096))])
def test_load_checks_headers_before_inflating_any_data(tmp_path, monkeypatch, name, shape):
    # a 64 MiB array compresses to ~65 KB: it must be refused from its name or
    # its header, with nothing of that size ever read
    dst = _trained(7)
    path = tmp_path / "bomb.npz"
    _compressed_bomb(path, dst.state_dict(), name, shape)
    assert path.stat().st_size < 200_000
    reads = []
    real = np.lib.format.read_array

    def counting(fp, *args, **kwargs):
        a = real(fp, *args, **kwargs)
        reads.append(a.nbytes)
        return a
    monkeypatch.setattr(np.lib.format, "read_array", counting)
    before = _snapshot(dst)
    with pytest.raises(ValueError, match=name):
        dst.load(path)
    assert reads == []                      # refused before any member's data was read
    _assert_state_equal(before, dst.state_dict())


def test_load_reads_at_most_the_models_size(tmp_path, monkeypatch):
    src = _trained(0)
    path = tmp_path / "m.npz"
    src.save(path)
    reads = []
    real = np.lib.format.read_array
    monkeypatch.setattr(np.lib.format, "read_array",
                        lambda fp, *a, **k: reads.append(1) or real(fp, *a, **k))
    _trained(7).load(path)
    assert len(reads) == len(src.state_dict())


def test_float64_values_beyond_float32_range_are_refused():
    dst = _trained(7)
    state = {k: v.astype(np.float64) for k, v in dst.state_dict().items()}
    state["0.weight"][1, 2] = 1e39                     # finite in float64, inf in float32
    before = _snapshot(dst)
    with pytest.raises(ValueError, match=r"0.weight.*1e\+39.*float32"):
        dst.load_state_dict(state)
    _assert_state_equal(before, dst.state_dict())
    state["0.weight"][1, 2] = np.inf                   # inf itself is carried over as it is
    dst.load_state_dict(state)
    assert dst[0].weight.data[1, 2] == np.inf


def test_load_converts_dtype():
    src = _trained(0)
    dst = nn.Sequential(nn.Linear(4, 6, rng=0, dtype=np.float64),
                        nn.BatchNorm1d(6, dtype=np.float64), nn.ReLU(),
                        nn.Linear(6, 3, rng=1, dtype=np.float64))
    dst.load_state_dict(src.state_dict())
    assert dst[0].weight.dtype == np.float64
    np.testing.assert_array_equal(dst[0].weight.data, src[0].weight.data.astype(np.float64))


def test_linear_leaky_slope_option():
    layer = nn.Linear(3, 4, activation="leaky_relu", negative_slope=0.25, rng=0, dtype=np.float64)
    x = _x(5, 3)
    z = x @ layer.weight.data.T
    assert_close(layer(x), np.where(z > 0, z, 0.25 * z), np.float64, kind="reduction")
    with pytest.raises(ValueError, match="negative_slope"):
        nn.LeakyReLU(-0.1)


def test_preserved_restores_modes_buffers_rngs_and_grads():
    model = nn.Sequential(nn.Linear(4, 6, rng=0), nn.BatchNorm1d(6), nn.ReLU(),
                          nn.Dropout(0.5, rng=1), nn.Linear(6, 2, rng=2))
    model.train()
    model[1].eval()
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    grads = [np.ones_like(p.data) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        p.grad = g
    buffers = {k: v.copy() for k, v in model.named_buffers()}
    rng_state = model[3].rng.bit_generator.state
    modes = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError):
        with model.preserved(training=True) as m:
            assert m is model and all(mod.training for mod in model.modules())
            model(x)
            model.zero_grad()
            raise RuntimeError
    assert [m.training for m in model.modules()] == modes
    assert all(np.array_equal(v, buffers[k]) for k, v in model.named_buffers())
    assert model[3].rng.bit_generator.state == rng_state
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))
    with model.preserved():
        assert not any(m.training for m in model.modules())


# -- devices (what needs no GPU; the GPU paths are in tests/cuda/test_nn_cuda.py) --------
@pytest.mark.parametrize("device", ["gpu", "cuda:0", "CPU", None, 0])
def test_to_refuses_unknown_devices(device):
    model = nn.Sequential(nn.Linear(3, 2, rng=0), nn.BatchNorm1d(2))
    with pytest.raises(ValueError, match="device"):
        model.to(device)
    assert model.device == "cpu"


def test_to_cpu_is_a_no_op_keeping_the_arrays():
    model = nn.Sequential(nn.Linear(3, 2, rng=0), nn.BatchNorm1d(2), nn.ReLU())
    arrays = [p.data for p in model.parameters()] + [model[1].running_mean]
    assert model.to("cpu") is model and model.device == "cpu" and model[2].device == "cpu"
    assert all(a is b for a, b in zip(arrays, [p.data for p in model.parameters()]
                                      + [model[1].running_mean]))


def test_to_cuda_without_cuda_is_a_clear_runtime_error():
    from fastnn._cuda import is_available, simulator_enabled
    if simulator_enabled() or is_available():
        pytest.skip("a CUDA device (or the simulator) is present")
    model = nn.Sequential(nn.Linear(3, 2, rng=0))
    with pytest.raises(RuntimeError, match=r"model.to\('cuda'\)"):
        model.to("cuda")
    assert model.device == "cpu" and type(model[0].weight.data) is np.ndarray


@pytest.mark.parametrize("build, where", [
    (lambda act: nn.Sequential(nn.Linear(3, 4), act, nn.BatchNorm1d(4), nn.Linear(4, 2), act),
     "layer 1 and at layer 4"),
    (lambda lin: nn.Sequential(lin, nn.ReLU(), nn.Sequential(nn.Tanh(), lin)),
     "layer 0 and at layer 2.1"),
])
def test_a_layer_instance_used_twice_is_refused_by_name(build, where):
    # each layer keeps what its backward needs per instance: a second use
    # would overwrite the first one's and give wrong gradients silently
    shared = nn.ReLU() if "4" in where else nn.Linear(4, 4)
    with pytest.raises(ValueError, match=f"same {type(shared).__name__} instance is used at "
                                         f"{where}"):
        build(shared)


def test_infer_is_the_eval_output_and_changes_nothing():
    model = nn.Sequential(nn.Linear(4, 6, rng=0), nn.BatchNorm1d(6), nn.ReLU(),
                          nn.Dropout(0.5, rng=1), nn.Linear(6, 3, rng=2), nn.Tanh())
    x = _x(8, 4, np.float32, seed=3)
    model(x)                                            # training mode, running stats moved
    before = _snapshot(model)
    rng_state = model[3].rng.bit_generator.state
    saved = [(m, dict(vars(m))) for m in model.modules()]
    y = model.infer(x)
    assert all(m.training for m in model.modules())
    _assert_state_equal(before, model.state_dict())
    assert model[3].rng.bit_generator.state == rng_state
    for m, attrs in saved:                             # nothing saved for backward either
        assert all(vars(m)[k] is v for k, v in attrs.items()), type(m).__name__
    with model.preserved(training=False):
        want = model.forward(x)
    np.testing.assert_array_equal(y, want)


def test_sequential_layers_are_fixed_at_construction():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    with pytest.raises(AttributeError):
        model.layers.append(nn.ReLU())     # a tuple: no reuse slips past the check
    with pytest.raises(TypeError):
        model.layers[1] = model.layers[0]
