"""ndarray subclasses (np.matrix, whose ravel() stays 2-D) as inputs and as ``out=``.

np.matrix passed as ``out=`` (or used in place) once made the kernels write
far past the buffer (SIGSEGV, heap corruption, hangs).  Inputs are now read
through a plain view of the same memory; an ``out=`` that is not a plain
ndarray is refused with a TypeError before anything is written.
"""
import numpy as np
import pytest

import fastnn.functional as F

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
