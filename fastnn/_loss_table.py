"""The losses of :func:`fastnn.train.fit`: one record per loss, the only table of them.

``fit``, ``evaluate``, ``predict_proba``, :mod:`fastnn.diagnostics` and the
compiled engine (:mod:`fastnn.engine`) all read what they need of a loss
here: its value, its fused value and gradient, its per-sample values, its
code in the compiled engine, whether it has an accuracy and whether its
targets are one value per output.  Adding a loss is adding one record (and,
for the compiled engine, a branch on its code in :mod:`fastnn._cpu.engine`).

Examples
--------
>>> import numpy as np
>>> from fastnn._loss_table import LOSS_TABLE
>>> spec = LOSS_TABLE["mse"]
>>> spec.value(np.array([[1.0], [2.0]]), np.array([[1.0], [4.0]])), spec.accuracy
(2.0, None)
"""
from collections.abc import Callable
from typing import NamedTuple

import fastnn.functional as F
from fastnn._cpu import losses as _codes

__all__ = ["Loss", "LOSS_TABLE"]


class Loss(NamedTuple):
    """What training needs of one loss.

    Attributes
    ----------
    name : str
        The name ``fit(loss=...)`` takes.
    value : callable ``(out, y) -> float``
        The batch's mean loss.
    with_grad : callable ``(out, y) -> (float, ndarray)``
        The mean loss and its gradient in one fused call (a training step).
    per_sample : callable ``(out, y) -> (ndarray, ndarray)``
        The losses of reduction "none" (one per row, or one per output) and
        the gradient of their sum (a sample-weighted step).
    code : int
        The loss's code in the compiled engine (:mod:`fastnn._cpu.losses`).
    accuracy : {None, "argmax", "subset"}
        How a row counts as right: its argmax is its class index, or every
        one of its labels is right (logit > 0 where the target > 0.5).
    per_output : bool
        Targets are values, one per output, (N, outputs), and a sample's
        loss is the mean over its outputs; False: class indices (N,).
    """

    name: str
    value: Callable
    with_grad: Callable
    per_sample: Callable
    code: int
    accuracy: str | None
    per_output: bool


def _loss(name, fn, fn_with_grad, code, accuracy, per_output):
    return Loss(name, lambda out, y: fn(out, y), lambda out, y: fn_with_grad(out, y),
                lambda out, y: fn_with_grad(out, y, reduction="none"), code, accuracy,
                per_output)


#: loss name -> :class:`Loss`, in the order fit's documentation lists them.
LOSS_TABLE = {spec.name: spec for spec in (
    _loss("cross_entropy", F.cross_entropy, F.cross_entropy_with_grad, _codes.CROSS_ENTROPY,
          "argmax", False),
    _loss("hinge", F.hinge_loss, F.hinge_loss_with_grad, _codes.HINGE, "argmax", False),
    _loss("mse", F.mse_loss, F.mse_loss_with_grad, _codes.MSE, None, True),
    _loss("mae", F.l1_loss, F.l1_loss_with_grad, _codes.MAE, None, True),
    _loss("binary_cross_entropy", F.binary_cross_entropy_with_logits,
          F.binary_cross_entropy_with_logits_with_grad, _codes.BCE, "subset", True),
)}
