"""ndarray subclasses (np.matrix, whose ravel() stays 2-D) as inputs and as ``out=``.

np.matrix passed as ``out=`` (or used in place) once made the kernels write
far past the buffer (SIGSEGV, heap corruption, hangs).  Inputs are now read
through a plain view of the same memory; an ``out=`` that is not a plain
ndarray is refused with a TypeError before anything is written.  Models
whose parameters are memmaps copy out and load in like any other.
"""
import numpy as np
import pytest

import fastnn.functional as F
from fastnn import nn, optim
from fastnn._backend import assign, host_copy, to_device
from fastnn.callbacks import EarlyStopping
from fastnn.train import fit

pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")

RNG = np.random.default_rng(0)
A = RNG.standard_normal((64, 10)).astype(np.float32)
T = np.arange(64) % 10
P = RNG.random((64, 10)).astype(np.float32)      # probabilities, for the BCE targets

# name -> (call with the array under test as x, the index of the output that
# out= replaces, or None for functions without out=)
CALLS = {
    "dropout": lambda x, **kw: F.dropout(x, 0.5, seed=1, **kw),
    "dropout_backward": lambda x, **kw: F.dropout_backward(x, 0.5, seed=1, **kw),
    "mse_loss_with_grad": lambda x, **kw: F.mse_loss_with_grad(x, A, **kw),
    "l1_loss_with_grad": lambda x, **kw: F.l1_loss_with_grad(x, A, **kw),
    "l2_penalty": lambda x, **kw: F.l2_penalty(x, 0.1, **kw),
    "l1_penalty": lambda x, **kw: F.l1_penalty(x, 0.1, **kw),
    "cross_entropy_with_grad": lambda x, **kw: F.cross_entropy_with_grad(x, T, **kw),
    "hinge_loss_with_grad": lambda x, **kw: F.hinge_loss_with_grad(x, T, **kw),
    "binary_cross_entropy_with_logits_with_grad":
        lambda x, **kw: F.binary_cross_entropy_with_logits_with_grad(x, P, **kw),
}
NO_OUT = {
    "softmax": F.softmax,
    "log_softmax axis 0": lambda x: F.log_softmax(x, axis=0),
    "linear": lambda x: F.linear(x, np.ones((3, 10), np.float32), activation="relu"),
    "batch_norm": lambda x: F.batch_norm(x, np.zeros(10, np.float32), np.ones(10, np.float32),
                                         training=True),
    "max_norm_": lambda x: F.max_norm_(x.copy(), 1.0),
}


def _tuple(r):
    return r if isinstance(r, tuple) else (r,)


@pytest.mark.parametrize("name", sorted(CALLS) + sorted(NO_OUT))
def test_matrix_inputs_give_the_plain_arrays_results(name):
    fn = CALLS.get(name) or NO_OUT[name]
    got, want = _tuple(fn(np.matrix(A))), _tuple(fn(A.copy()))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.mark.parametrize("name", sorted(CALLS))
def test_matrix_out_is_refused_before_anything_is_written(name):
    out = np.matrix(np.full(A.shape, 7.0, np.float32))
    with pytest.raises(TypeError, match=r"out must be a plain numpy\.ndarray, got the subclass "
                                        r"numpy\.matrix"):
        CALLS[name](A, out=out)
    assert np.all(out == 7.0)


def test_matrix_used_in_place_is_refused_and_untouched():
    m = np.matrix(A.copy())
    with pytest.raises(TypeError, match=r"pass out=np\.asarray"):
        F.dropout(m, 0.5, seed=1, out=m)
    np.testing.assert_array_equal(np.asarray(m), A)
    # the advertised way: a plain view of the same memory, written in place
    view = np.asarray(m)
    assert F.dropout(view, 0.5, seed=1, out=view) is view
    np.testing.assert_array_equal(np.asarray(m), F.dropout(A, 0.5, seed=1))


def test_other_subclasses_as_inputs_and_memmap_through_asarray(tmp_path):
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=A.shape)
    mm[:] = A
    np.testing.assert_array_equal(F.dropout(mm, 0.5, seed=3), F.dropout(A, 0.5, seed=3))
    F.dropout(A, 0.5, seed=3, out=np.asarray(mm))
    np.testing.assert_array_equal(mm, F.dropout(A, 0.5, seed=3))


def test_masked_arrays_are_refused_by_name():
    m = np.ma.masked_array([[1e30, 0.0]], mask=[[True, False]])
    with pytest.raises(TypeError, match="logits is a masked array"):
        F.cross_entropy(m, np.array([1]))
    with pytest.raises(TypeError, match="x is a masked array"):
        F.softmax(m)


# ---------------------------------------------------------------- memmap-backed models
# fastnn._backend once took every ndarray subclass for a GPU array (or for
# something already copied): state_dict() handed out live aliases of a
# memmap, and writing into one (load_state_dict, Module.load, EarlyStopping's
# restore) failed with "a GPU array was given, but no CUDA driver ...".

def _memmap_model(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4, rng=0, dtype=np.float64),
                          nn.BatchNorm1d(4, dtype=np.float64), nn.Linear(4, 2, rng=1,
                                                                        dtype=np.float64))
    w = np.lib.format.open_memmap(tmp_path / "w.npy", mode="w+", dtype=np.float64, shape=(4, 3))
    w[:] = model[0].weight.data
    model[0].weight.data = w
    return model, w


def test_state_dict_of_a_memmap_model_holds_copies(tmp_path):
    model, w = _memmap_model(tmp_path)
    state = model.state_dict()
    assert type(state["0.weight"]) is np.ndarray
    assert not np.shares_memory(state["0.weight"], w)
    before = np.array(w)
    state["0.weight"][:] = 7.0
    np.testing.assert_array_equal(w, before)


def test_load_state_dict_and_load_write_into_the_memmap(tmp_path):
    model, w = _memmap_model(tmp_path)
    state = {k: v + 1.0 for k, v in model.state_dict().items()}
    assert model.load_state_dict(state) is model
    assert model[0].weight.data is w
    np.testing.assert_array_equal(w, state["0.weight"])
    w.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), state["0.weight"])
    path = tmp_path / "model.npz"
    np.savez(path, **{k: v * 2.0 for k, v in state.items()})
    model.load(path)
    assert model[0].weight.data is w
    np.testing.assert_array_equal(w, state["0.weight"] * 2.0)


def test_early_stopping_restores_the_best_epoch_into_a_memmap_model(tmp_path):
    model, w = _memmap_model(tmp_path)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 3)), rng.integers(0, 2, 32)
    seen = []
    # mode="max" on a falling training loss: epoch 1 is the best, training stops at 3
    stop = EarlyStopping(monitor="train_loss", mode="max", patience=2, restore_best=True)
    hist = fit(model, X, y, optimizer=optim.SGD(model.parameters(), lr=0.5), epochs=10,
               batch_size=8, rng=0, progress=False, engine="layers",
               callbacks=[lambda history: seen.append(np.array(w)), stop])
    assert hist["epoch"] == [1, 2, 3] and stop.best_epoch == 1
    assert model[0].weight.data is w
    assert not np.array_equal(seen[0], seen[-1])
    np.testing.assert_array_equal(w, seen[0])


def test_backend_helpers_keep_host_subclasses_on_the_host():
    m = np.matrix(A[:3, :4].copy())
    c = host_copy(m)
    assert type(c) is np.ndarray and not np.shares_memory(c, m)
    lst = [1.0, 2.0]
    assert type(host_copy(lst)) is np.ndarray
    assign(m, np.zeros((3, 4), np.float32))
    assert np.all(m == 0)
    assert to_device(m, "cpu") is m


@pytest.mark.parametrize("make", [lambda: np.ones(2), lambda: np.matrix(np.ones((2, 2))),
                                  lambda: None], ids=["ndarray", "matrix", "None"])
def test_to_device_names_a_bad_device(make):
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'cuda', got 'gpu'"):
        to_device(make(), "gpu")
