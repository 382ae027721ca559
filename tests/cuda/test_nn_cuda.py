"""fastnn.nn, fastnn.optim and fastnn.train with the model on the GPU (``model.to("cuda")``).

Every check runs the same model on the CPU and on the device and compares:
the device path must be the CPU path, step for step.  Models are tiny
(5 -> 7 -> 3, batches of 5, 2-3 steps): under the simulator every CUDA thread
is a Python thread.
"""
import copy

import numpy as np
import pytest

import fastnn._config as config
from fastnn import nn, optim, train
from tests.conftest import assert_close

DTYPES = [np.float32, np.float64]


@pytest.fixture
def big_blocks(_cuda_or_skip, monkeypatch):
    """16-thread blocks for the tests that run whole models.

    At the 8-thread blocks of the kernel tests (which exercise the tails and
    the multi-block launches) the simulated matmul runs 2 x 2 tiles; a
    training step at 16 threads takes ~30% less time.  The tests of this
    module's own kernels (activations, gradient sums, optimizer steps) keep
    the 8-thread blocks.
    """
    monkeypatch.setattr(config, "CUDA_THREADS_PER_BLOCK", 16)


def dev(a):
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(a))


def host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def is_dev(a):
    return hasattr(a, "copy_to_host")


def _model(dtype, p=0.3):
    # no bias before the batch norm: its gradient would be pure rounding noise, which Adam
    # amplifies to full-size steps that differ between any two summation orders
    return nn.Sequential(nn.Linear(5, 7, bias=False, rng=0, dtype=dtype),
                         nn.BatchNorm1d(7, dtype=dtype), nn.ReLU(), nn.Dropout(p, rng=1),
                         nn.Linear(7, 3, rng=2, dtype=dtype))


def _data(dtype, n=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype(dtype), rng.integers(0, 3, n)


def _assert_states(a, b, dtype, kind="reduction"):
    assert set(a) == set(b)
    for k in a:
        assert isinstance(a[k], np.ndarray) and isinstance(b[k], np.ndarray), k
        assert_close(a[k], b[k], dtype, kind)


# ------------------------------------------------------------------ moving

def test_to_and_back_is_bit_exact_and_idempotent(big_blocks):
    model = _model(np.float32)
    x, _ = _data(np.float32)
    model.zero_grad()
    model.backward(model(x))                  # grads to move along
    state = model.state_dict()
    grads = [p.grad.copy() for p in model.parameters()]
    assert model.to("cuda") is model and model.device == "cuda"
    arrays = [p.data for p in model.parameters()] + [model[1].running_mean]
    assert all(is_dev(a) for a in arrays)
    assert all(is_dev(p.grad) for p in model.parameters())
    assert model[1]._saved is None and model._ran is None      # backward state dropped
    model.to("cuda")                          # already there: the same arrays
    assert all(a is b for a, b in zip(arrays, [p.data for p in model.parameters()]
                                      + [model[1].running_mean]))
    assert "device='cuda'" in repr(model[0].weight)
    model.to("cpu")
    assert model.device == "cpu"
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
        assert v.dtype == state[k].dtype
    for p, g in zip(model.parameters(), grads):
        assert type(p.grad) is np.ndarray
        np.testing.assert_array_equal(p.grad, g)


def test_module_moved_piecewise_reports_mixed_devices():
    model = _model(np.float64)
    model[0].to("cuda")
    with pytest.raises(RuntimeError, match="both"):
        _ = model.device
    with pytest.raises(ValueError, match="different devices"):
        optim.SGD(model.parameters(), lr=0.1)
    model.to("cuda")
    assert model.device == "cuda"


def test_bad_device_string():
    with pytest.raises(ValueError, match="'cuda:0'"):
        _model(np.float32).to("cuda:0")


# ------------------------------------------------------------------ layers

def _layer_pair(make, dtype):
    cpu = make(dtype)
    return cpu, copy.deepcopy(cpu).to("cuda")


def _check_layer(make, dtype, x, train_mode=True):
    cpu, gpu = _layer_pair(make, dtype)
    cpu.train(train_mode)
    gpu.train(train_mode)
    y_cpu = cpu(x)
    y_gpu = gpu(dev(x))
    dy = np.random.default_rng(5).standard_normal(y_cpu.shape).astype(dtype)
    assert is_dev(y_gpu) and host(y_gpu).dtype == dtype
    assert_close(host(y_gpu), y_cpu, dtype, "reduction")
    for layer in (cpu, gpu):
        layer.zero_grad()
    dx_cpu = cpu.backward(dy)
    dx_gpu = gpu.backward(dev(dy))
    assert is_dev(dx_gpu)
    assert_close(host(dx_gpu), dx_cpu, dtype, "reduction")
    for pc, pg in zip(cpu.parameters(), gpu.parameters()):
        assert is_dev(pg.grad)
        assert_close(host(pg.grad), pc.grad, dtype, "reduction")
    _assert_states(gpu.state_dict(), cpu.state_dict(), dtype)


LAYERS = {
    "linear": lambda dt: nn.Linear(5, 3, rng=0, dtype=dt),
    "linear_tanh": lambda dt: nn.Linear(5, 3, activation="tanh", rng=0, dtype=dt),
    "batchnorm": lambda dt: nn.BatchNorm1d(5, dtype=dt),
    "layernorm": lambda dt: nn.LayerNorm(5, dtype=dt),
    "layernorm_plain": lambda dt: nn.LayerNorm(5, elementwise_affine=False, dtype=dt),
    "dropout": lambda dt: nn.Dropout(0.4, rng=3),
    "fused_seq": lambda dt: nn.Sequential(nn.Linear(5, 4, rng=0, dtype=dt), nn.LeakyReLU(0.2)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_forward_backward_matches_cpu(name, dtype, big_blocks):
    x, _ = _data(dtype, n=5)
    _check_layer(LAYERS[name], dtype, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_eval_matches_cpu(dtype):
    x, _ = _data(dtype, n=3)
    _check_layer(LAYERS["batchnorm"], dtype, x, train_mode=False)


ACTIVATIONS = [nn.ReLU, lambda: nn.LeakyReLU(0.2), nn.Tanh, nn.Sigmoid]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", ACTIVATIONS, ids=["relu", "leaky_relu", "tanh", "sigmoid"])
def test_activation_layers_match_cpu_with_nan_and_zero(make, dtype):
    x = np.array([[np.nan, 0.0, -0.0, 1.5, -2.0], [40.0, -40.0, 0.3, -0.7, np.inf]], dtype)
    dy = np.array([[1.0, 2.0, -1.0, 0.5, 3.0], [np.nan, 1.0, -2.0, 1.0, 0.25]], dtype)
    cpu, gpu = make(), make()
    y_gpu = gpu(dev(x))
    assert_close(host(y_gpu), cpu(x), dtype)
    dx_gpu = gpu.backward(dev(dy))
    dx_cpu = cpu.backward(dy)
    assert_close(host(dx_gpu), dx_cpu, dtype)
    if isinstance(cpu, nn.ReLU):
        assert host(dx_gpu)[0, 1] == 0 and host(dx_gpu)[0, 0] == 1   # 0 at 0; NaN lets g through


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "tanh", "sigmoid"])
def test_activation_launchers_match_the_cpu_backend(name, dtype):
    """backend.activation / activation_grad: one signature, the same numbers on both
    devices, for NaN/inf, a ragged size (tails of the grid) and a strided device view."""
    from fastnn._backend import cpu, cuda as cuda_backend
    from fastnn._validation import ACTIVATIONS
    cuda = cuda_backend()
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((7, 13)) * 5).astype(dtype)
    x[0, :6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 40.0]
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy[1, :2] = [np.nan, np.inf]
    code = ACTIVATIONS[name]
    y_cpu, dx_cpu = np.empty_like(x), np.empty_like(x)
    cpu.activation(x, code, 0.2, y_cpu)
    cpu.activation_grad(dy, y_cpu, code, 0.2, dx_cpu)
    y_gpu = cuda.empty(x.shape, x.dtype)
    cuda.activation(dev(x), code, 0.2, y_gpu)
    dx_gpu = cuda.empty(x.shape, x.dtype)
    cuda.activation_grad(dev(dy), y_gpu, code, 0.2, dx_gpu)
    assert_close(host(y_gpu), y_cpu, dtype, scale=1.0)
    assert_close(host(dx_gpu), dx_cpu, dtype, scale=1.0)
    # a non-contiguous device input (every other column) gives the contiguous result
    wide = np.repeat(x, 2, axis=1)
    y_view = cuda.empty(x.shape, x.dtype)
    cuda.activation(dev(wide)[:, ::2], code, 0.2, y_view)
    np.testing.assert_array_equal(host(y_view), host(y_gpu))


def test_parameter_accumulate_on_device():
    p = nn.Parameter(dev(np.arange(6.0).reshape(2, 3)))
    p.accumulate(dev(np.ones((2, 3))))
    p.accumulate(dev(np.full((2, 3), 2.0)))
    np.testing.assert_array_equal(host(p.grad), 3.0)
    with pytest.raises(ValueError, match="shape"):
        p.accumulate(dev(np.ones(6)))


# ------------------------------------------------------------------ optimizers

OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "sgd_momentum_wd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.8, nesterov=True),
    "adam_wd": lambda ps: optim.Adam(ps, lr=0.05, weight_decay=0.01),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.05, weight_decay=0.1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_steps_match_cpu(name, dtype):
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((3, 5)).astype(dtype)
    b0 = rng.standard_normal(3).astype(dtype)
    cpu = [nn.Parameter(w0.copy()), nn.Parameter(b0.copy(), decay=False)]
    gpu = [nn.Parameter(dev(w0)), nn.Parameter(dev(b0), decay=False)]
    oc, og = OPTIMIZERS[name](cpu), OPTIMIZERS[name](gpu)
    refs = [p.data for p in gpu]
    for _step in range(3):
        for pc, pg in zip(cpu, gpu):
            g = rng.standard_normal(pc.shape).astype(dtype)
            pc.grad, pg.grad = g, dev(g)
        oc.step()
        og.step()
        for pc, pg in zip(cpu, gpu):
            assert_close(host(pg.data), pc.data, dtype)
    assert all(a is p.data for a, p in zip(refs, gpu))             # updated in place
    for sc, sg in zip(oc.state, og.state):
        for k, v in sc.items():
            if isinstance(v, np.ndarray):
                assert is_dev(sg[k])
                assert_close(host(sg[k]), v, dtype)


def test_optimizer_refuses_parameters_moved_after_its_first_step(big_blocks):
    model = nn.Sequential(nn.Linear(5, 3, rng=0))
    opt = optim.Adam(model.parameters())
    x, _ = _data(np.float32, n=3)
    model.backward(model(x))
    opt.step()
    model.to("cuda")
    model.zero_grad()
    model.backward(model(dev(x)))
    with pytest.raises(RuntimeError, match=r"optimizer state.*model\.to"):
        opt.step()


# ------------------------------------------------------------------ training

@pytest.mark.parametrize("dtype, name, kw", [
    (np.float32, "nesterov", dict(l2=1e-3, max_norm=1.0)),
    (np.float64, "adamw", dict(l1=1e-3)),
], ids=["f32-nesterov-l2-maxnorm", "f64-adamw-l1"])
def test_fit_on_cuda_matches_cpu(dtype, name, kw, big_blocks):
    X, y = _data(dtype)
    cpu = _model(dtype)
    gpu = copy.deepcopy(cpu).to("cuda")
    hists = []
    for model in (cpu, gpu):
        hists.append(train.fit(model, X, y, optimizer=OPTIMIZERS[name](model.parameters()),
                               epochs=1, batch_size=5, validation=(X[:4], y[:4]), rng=0,
                               progress=False, **kw))
    assert gpu.device == "cuda"
    _assert_states(gpu.state_dict(), cpu.state_dict(), dtype)
    for key in ("train_loss", "step_loss", "train_accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(hists[1][key], hists[0][key],
                                   rtol=1e-4 if dtype == np.float32 else 1e-10)


def test_a_model_trained_by_the_engine_moves_and_trains_again(big_blocks):
    """A model trained by the compiled engine moves to("cuda") and back, and trains again."""
    X, y = _data(np.float64)
    model = _model(np.float64)
    assert train.fit(model, X, y, epochs=1, batch_size=5, progress=False)["engine"] == "compiled"
    state = model.state_dict()
    model.to("cuda")
    _assert_states(model.state_dict(), state, np.float64, "elementwise")
    hist = train.fit(model, X, y, optimizer=optim.Adam(model.parameters()), epochs=1,
                     batch_size=5, progress=False)
    assert hist["engine"].startswith("layers (the model is on the GPU")
    model.to("cpu")
    weight = model[0].weight.data
    hist = train.fit(model, X, y, optimizer=optim.Adam(model.parameters()), epochs=1,
                     batch_size=5, progress=False)
    assert hist["engine"] == "compiled" and model[0].weight.data is weight


def test_regression_trains_on_cuda(big_blocks):
    X, _ = _data(np.float64)
    target, loss = X[:, :3], "mse"    # float targets (N, 3) on the device
    cpu = _model(np.float64, p=0.0)
    gpu = copy.deepcopy(cpu).to("cuda")
    for model in (cpu, gpu):
        train.fit(model, X, target, loss=loss, optimizer=optim.SGD(model.parameters(), lr=0.1),
                  epochs=1, batch_size=5, rng=0, progress=False)
    _assert_states(gpu.state_dict(), cpu.state_dict(), np.float64)


def test_predict_evaluate_return_host_arrays(big_blocks):
    X, y = _data(np.float32, n=7)
    cpu = _model(np.float32)
    gpu = copy.deepcopy(cpu).to("cuda")
    for fn in (train.predict, train.predict_proba):
        got = fn(gpu, X, batch_size=3)                # 3 chunks, the last one short
        assert type(got) is np.ndarray
        assert_close(got, fn(cpu, X), np.float32, "reduction")
    res_g, res_c = train.evaluate(gpu, X, y), train.evaluate(cpu, X, y)
    assert res_g["accuracy"] == res_c["accuracy"]
    assert abs(res_g["loss"] - res_c["loss"]) < 1e-5
    with pytest.raises(TypeError, match="host"):
        train.predict(gpu, dev(X))


def test_divergence_on_cuda_restores_running_stats(big_blocks):
    X, y = _data(np.float32, n=4)
    X[2, 2] = np.inf                    # the first batch's loss is NaN
    model = nn.Sequential(nn.Linear(5, 3, bias=False, rng=0), nn.BatchNorm1d(3)).to("cuda")
    with pytest.raises(train.DivergenceError) as info:
        train.fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=0.1), epochs=1,
                  batch_size=4, progress=False)
    assert info.value.step == 1 and np.isnan(info.value.loss)
    state = model.state_dict()
    np.testing.assert_array_equal(state["1.running_mean"], 0)   # the NaN batch left no trace
    np.testing.assert_array_equal(state["1.running_var"], 1)


# ------------------------------------------------------------------ state and errors

def test_state_dict_save_and_load_with_a_cuda_model(tmp_path, big_blocks):
    src = _model(np.float64)
    src.train()
    src(_data(np.float64)[0])                          # non-trivial running statistics
    gpu = copy.deepcopy(src).to("cuda")
    state = gpu.state_dict()
    _assert_states(state, src.state_dict(), np.float64, "elementwise")
    gpu.save(tmp_path / "m.npz")
    dst = _model(np.float64).to("cuda")
    weight_ref = dst[0].weight.data
    dst.load(tmp_path / "m.npz")
    assert dst[0].weight.data is weight_ref and is_dev(dst[1].running_var)   # copied in place
    _assert_states(dst.state_dict(), src.state_dict(), np.float64, "elementwise")
    before = dst.state_dict()
    bad = dict(state, **{"4.weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"4\.weight"):
        dst.load_state_dict(bad)
    with pytest.raises(TypeError, match="GPU array"):
        dst.load_state_dict(dict(state, **{"4.bias": dev(state["4.bias"])}))
    _assert_states(dst.state_dict(), before, np.float64, "elementwise")


def test_optimizer_state_dict_moves_between_devices(big_blocks):
    """A GPU optimizer's state_dict holds host copies; it loads onto either device, and
    the next steps there agree with the uninterrupted GPU optimizer's."""
    rng = np.random.default_rng(3)
    w0, b0 = rng.standard_normal((3, 5)), rng.standard_normal(3)
    grads = [(rng.standard_normal((3, 5)), rng.standard_normal(3)) for _ in range(4)]

    def run(opt, steps, on_device):
        for gw, gb in steps:
            w, b = opt.params
            w.grad, b.grad = (dev(gw), dev(gb)) if on_device else (gw, gb)
            opt.step()
    gpu = optim.Adam([nn.Parameter(dev(w0)), nn.Parameter(dev(b0), decay=False)], lr=0.01)
    run(gpu, grads[:2], True)
    saved = gpu.state_dict()
    assert all(type(v) is np.ndarray for s in saved["state"].values() for k, v in s.items()
               if k != "step")
    cpu = optim.Adam([nn.Parameter(host(p.data)) for p in gpu.params], lr=1.0)
    cpu.params[1].decay = False
    again = optim.Adam([nn.Parameter(dev(host(p.data))) for p in gpu.params], lr=1.0)
    again.params[1].decay = False
    cpu.load_state_dict(saved)
    again.load_state_dict(saved)
    assert is_dev(again.state[0]["exp_avg"]) and again.state[0]["step"] == 2
    run(gpu, grads[2:], True)
    run(cpu, grads[2:], False)
    run(again, grads[2:], True)
    for p, q, r in zip(gpu.params, cpu.params, again.params):
        assert_close(host(q.data), host(p.data), np.float64)
        np.testing.assert_array_equal(host(r.data), host(p.data))


def test_a_cuda_fit_keeps_the_gradient_arrays_held_before_it(big_blocks):
    """(The layer path: a GPU model is not the compiled engine's.)"""
    X, y = _data(np.float64)
    model = _model(np.float64).to("cuda")
    for p in model.parameters():
        p.grad = dev(np.zeros(p.shape))
    held = [p.grad for p in model.parameters()]
    train.fit(model, X, y, epochs=1, batch_size=5, progress=False)
    assert all(p.grad is g for p, g in zip(model.parameters(), held))
    assert any(np.any(host(g) != 0) for g in held)


def test_host_input_to_a_cuda_model_is_a_type_error_naming_the_fix(big_blocks):
    model = _model(np.float32).to("cuda")
    x, _ = _data(np.float32, n=3)
    with pytest.raises(TypeError, match=r"to_device.*model.to\('cpu'\)"):
        model(x)
    cpu_model = _model(np.float32)
    with pytest.raises(TypeError, match=r"model.to\('cuda'\)"):
        cpu_model(dev(x))
    relu = nn.ReLU()
    relu(dev(x))
    with pytest.raises(TypeError, match="device array"):
        relu.backward(x)
