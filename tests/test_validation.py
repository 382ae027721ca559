"""The shared input checks (fastnn._validation) and the rules they enforce everywhere."""
import numpy as np
import pytest

import fastnn.functional as F
from fastnn import nn, optim
from fastnn._validation import boolean, class_labels, integer, output_array


def test_unsigned_labels_do_not_wrap_into_ignore_index():
    # 2**64 - 100 would become -100 (the default ignore_index) as int64 and
    # drop the sample silently.
    target = np.array([0, 2**64 - 100], np.uint64)
    with pytest.raises(IndexError, match=r"target\[1\] = 18446744073709551516"):
        F.cross_entropy(np.zeros((2, 3)), target, reduction="none")
    with pytest.raises(IndexError, match=r"out of range"):
        F.hinge_loss(np.zeros((2, 3)), target)
    np.testing.assert_array_equal(class_labels(np.array([2, 0], np.uint8), 2, 3), [2, 0])


def test_ignore_index_outside_int64_is_a_clear_error():
    with pytest.raises(ValueError, match="ignore_index must be <="):
        F.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), ignore_index=2**70)
    with pytest.raises(ValueError, match="ignore_index must be >="):
        F.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), ignore_index=-2**70)


def test_integer_bounds_and_types():
    assert integer(np.int16(5), "k", low=0, high=5) == 5
    with pytest.raises(ValueError, match="k must be <= 4, got 5"):
        integer(5, "k", high=4)
    with pytest.raises(TypeError):
        integer(True, "k")
    with pytest.raises(TypeError):
        integer(1.0, "k")


@pytest.mark.parametrize("bad", ["False", 0, 1.0, None])
def test_flags_accept_only_booleans(bad):
    assert boolean(np.bool_(True), "flag") is True
    with pytest.raises(TypeError, match="must be True or False"):
        boolean(bad, "flag")
    x = np.ones((4, 3), np.float32)
    with pytest.raises(TypeError, match="training"):
        F.dropout(x, 0.5, training=bad)
    with pytest.raises(TypeError, match="training"):
        F.batch_norm(x, np.zeros(3, np.float32), np.ones(3, np.float32), training=bad)
    model = nn.Sequential(nn.Linear(3, 2, rng=0))
    with pytest.raises(TypeError, match="mode"):
        model.train(bad)
    assert model.training is True  # nothing changed
    with pytest.raises(TypeError, match="nesterov"):
        optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=bad)


def test_output_array_rules():
    x = np.zeros((3, 4))
    assert output_array(None, (3, 4), np.float64).shape == (3, 4)
    assert output_array(x, (3, 4), np.float64, [("x", x)]) is x          # exact in-place use
    with pytest.raises(ValueError, match="overlaps x; pass a separate array"):
        output_array(x, (3, 4), np.float64, [("x", x)], inplace_ok=False)
    big = np.zeros(13)
    with pytest.raises(ValueError, match="overlaps x"):
        output_array(big[1:].reshape(3, 4), (3, 4), np.float64, [("x", big[:12].reshape(3, 4))])
    with pytest.raises(TypeError, match="dtype"):
        output_array(np.zeros((3, 4), np.float32), (3, 4), np.float64)


def test_relu_layer_passes_gradient_through_nan_like_the_fused_kernel():
    y = np.array([[np.nan, 1.0, 0.0, -1.0]])
    dy = np.ones_like(y)
    layer = nn.ReLU()
    layer.forward(y)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, [[1.0, 1.0, 0.0, 0.0]])
    # the fused Linear+ReLU backward makes the same choice
    _, _, db = F.linear_backward(dy, np.ones((1, 4)), np.eye(4), y, activation="relu")
    np.testing.assert_array_equal(db, dx[0])
