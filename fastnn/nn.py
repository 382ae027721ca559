"""Layers and models built on the fused kernels of :mod:`fastnn.functional`.

Each layer has ``forward(x)`` and ``backward(dy) -> dx`` and keeps only what
its backward needs: a Linear keeps its input and output, batch norm keeps its
input and the batch mean / inverse std, dropout keeps the seed of its mask
(the mask itself is regenerated from the seed, never stored).  Parameters are
:class:`Parameter` objects (``.data`` and ``.grad``), which is what the
optimizers of :mod:`fastnn.optim` take, as in torch.

A :class:`Sequential` runs a :class:`Linear` followed by an activation layer
as one fused kernel call (matrix product, bias and activation in one
epilogue), forward and backward.

``model.to("cuda")`` moves every parameter and buffer to the GPU (numba-cuda
device arrays); the layers then run the CUDA twins of their kernels on
device inputs and return device arrays, and the optimizers of
:mod:`fastnn.optim` update the parameters on the device.  As in torch, the
input must be moved by you (a host array given to a GPU model is a
TypeError), and the optimizer is built after the move.

Examples
--------
>>> import numpy as np
>>> from fastnn import nn
>>> model = nn.Sequential(nn.Linear(4, 8, rng=0), nn.ReLU(), nn.Linear(8, 3, rng=1))
>>> model(np.ones((2, 4), dtype=np.float32)).shape
(2, 3)

On a machine with an NVIDIA GPU (and numba-cuda)::

    from numba import cuda
    model.to("cuda")                                  # parameters and buffers to the GPU
    y = model(cuda.to_device(x)).copy_to_host()       # device in, device out
"""
import contextlib
import os
import zipfile

import numpy as np

import fastnn.functional as F
from fastnn import init as _init
from fastnn._backend import (
    assign as _assign,
    backend_of,
    copy as _copy,
    device_of as _device_of,
    host_copy as _to_host,
    on_device as _on_device,
    require_cuda,
    to_device as _move,
)
from fastnn._validation import (
    ACTIVATIONS as _ACT_CODES,
    as_rng,
    boolean,
    check_choice,
    check_shape,
    float_dtype,
    integer,
    normalized_shape as normalized_shape_tuple,
    real_scalar,
)

__all__ = ["Parameter", "Module", "Linear", "ReLU", "LeakyReLU", "Tanh", "Sigmoid",
           "BatchNorm1d", "LayerNorm", "Dropout", "Sequential"]

INITS = ("zeros", "normal", "xavier", "he")
ACTIVATIONS = (None, "relu", "leaky_relu", "tanh", "sigmoid")
DEVICES = ("cpu", "cuda")


def _check_input(x, weight, layer):
    """TypeError naming the fix when x and the layer's weights are on different devices.

    (fastnn.functional would refuse the pair too, but naming the operands,
    not the layer and the cure.)
    """
    x_dev = _device_of(x)
    w_dev = _device_of(weight)
    if x_dev != w_dev:
        if w_dev == "cuda":
            fix = ("move the input to the GPU first (numba.cuda.to_device(x), or a CuPy / "
                   "torch CUDA array), or the model back with model.to('cpu')")
        else:
            fix = "call model.to('cuda') first, or pass a host numpy array"
        raise TypeError(f"{type(layer).__name__} is on the {w_dev} but its input is on the "
                        f"{x_dev}; {fix} (fastnn never transfers silently)")


class Parameter:
    """A trainable array and its gradient.

    Attributes
    ----------
    data : ndarray or device array
        The values; optimizers update it in place, so references stay valid.
        A numba device array after ``Module.to("cuda")``.
    grad : ndarray, device array or None
        The gradient of the loss with respect to ``data``.  ``backward``
        accumulates into it (as in torch); ``zero_grad`` resets it to None,
        and optimizers skip parameters whose grad is None.
    decay : bool
        Whether weight decay and the L1/L2/max-norm regularizers apply.  True
        for Linear weights; False for biases and batch-norm scale/shift (the
        usual practice: decaying them only hurts).
    """

    __slots__ = ("data", "decay", "grad")

    def __init__(self, data, decay=True):
        self.data = data
        self.grad = None
        self.decay = bool(decay)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        """"cpu" or "cuda": where ``data`` lives."""
        return _device_of(self.data)

    def accumulate(self, g):
        """Add ``g`` to ``grad`` (taking ``g`` itself when grad is None).

        ``g`` must be on the parameter's device; on the GPU the sum is one
        in-place elementwise kernel.
        """
        if self.grad is None:
            self.grad = g
        else:
            backend_of(self.grad).accumulate_(self.grad, g)

    def __repr__(self):
        where = ", device='cuda'" if self.device == "cuda" else ""
        return (f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype}, "
                f"decay={self.decay}{where})")


def _check_names(targets, state):
    missing = sorted(set(targets) - set(state))
    unexpected = sorted(set(state) - set(targets))
    if missing or unexpected:
        raise KeyError(f"state does not match the model: missing {missing}, "
                       f"unexpected {unexpected}")


def _check_representable(value, dtype, name):
    """Refuse finite values that converting to ``dtype`` would turn into inf."""
    if value.dtype.kind == "f" and value.dtype.itemsize > np.dtype(dtype).itemsize and value.size:
        finite = np.abs(value[np.isfinite(value)])
        limit = np.finfo(dtype).max
        if finite.size and finite.max() > limit:
            raise ValueError(f"state[{name!r}] holds {finite.max():.6g}, beyond the range of "
                             f"the model's {np.dtype(dtype)} (max {limit:.6g}); it would become "
                             "inf")


def _member_header(zf, member):
    """(shape, dtype) from a .npy member's header, reading nothing else."""
    with zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        readers = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f"{member}: unsupported .npy format version {version}")
        shape, _, dtype = readers[version](f)
    return shape, dtype


def _read_model_file(path, targets):
    """The arrays of a ``.npz`` written by :meth:`Module.save`, checked before they are read.

    Names first, then each member's header against the model (shape, a
    real-number dtype), and only then the data: a file declaring a 64 MiB
    array where the model holds 16 floats is refused before the 64 MiB are
    inflated.
    """
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        odd = [n for n in names if not n.endswith(".npy")]
        if odd:
            raise ValueError(f"not a file of plain arrays: members {odd}")
        members = {n[:-4]: n for n in names}
        _check_names(targets, members)
        for name, member in members.items():
            shape, dtype = _member_header(zf, member)
            if dtype.kind not in "fiu":
                raise ValueError(f"state[{name!r}] must hold real numbers, got dtype {dtype}")
            if tuple(shape) != tuple(targets[name].shape):
                raise ValueError(f"state[{name!r}] has shape {tuple(shape)}, "
                                 f"the model expects {tuple(targets[name].shape)}")
        state = {}
        for name, member in members.items():
            with zf.open(member) as f:
                state[name] = np.lib.format.read_array(f, allow_pickle=False)
    return state


class Module:
    """Base class: parameters, buffers, train/eval mode, state dicts, files.

    Subclasses implement ``forward`` and ``backward`` and list their arrays in
    ``_params`` (trainable) and ``_buffers`` (running statistics); what a
    layer saves for its backward is listed in ``_saved_attrs`` (dropped by
    :meth:`to`).
    """

    training = True
    _params = ()
    _buffers = ()
    _saved_attrs = ()
    _device = "cpu"   # for modules without arrays; set by to()

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def infer(self, x):
        """The evaluation-mode output for ``x``, changing nothing.

        Unlike ``eval()`` then ``forward``, nothing is saved for a backward
        pass, no running statistic is updated and the train/eval mode is not
        touched, so threads may call it on a model that is training or being
        evaluated elsewhere (what :func:`fastnn.train.predict` does).  The
        built-in layers implement it directly; a custom module without its
        own ``infer`` falls back to ``forward`` under :meth:`preserved`, which
        does toggle the mode (and restores buffers) while it runs: define
        ``infer`` on a custom module that must be predicted from beside
        training.  Predicting beside training still reads weights and running
        statistics while the optimizer writes them: the output mixes steps.
        """
        with self.preserved(training=False):
            return self.forward(x)

    def children(self):
        """Direct sub-modules (none for a plain layer)."""
        return []

    def modules(self):
        """This module and every module below it, depth first."""
        out = [self]
        for child in self.children():
            out.extend(child.modules())
        return out

    def named_parameters(self, prefix=""):
        for name in self._params:
            yield prefix + name, getattr(self, name)
        for i, child in enumerate(self.children()):
            yield from child.named_parameters(f"{prefix}{i}.")

    def named_buffers(self, prefix=""):
        for name in self._buffers:
            yield prefix + name, getattr(self, name)
        for i, child in enumerate(self.children()):
            yield from child.named_buffers(f"{prefix}{i}.")

    def parameters(self):
        """The :class:`Parameter` objects, in a fixed order (what optimizers take)."""
        return [p for _, p in self.named_parameters()]

    def zero_grad(self):
        """Reset every parameter's gradient to None."""
        for p in self.parameters():
            p.grad = None

    @property
    def device(self):
        """"cpu" or "cuda": where the parameters and buffers are.

        A module without arrays (an activation layer) reports the device of
        its last :meth:`to` ("cpu" by default); it runs wherever its input is.

        Raises
        ------
        RuntimeError
            Arrays on both devices (modules moved one by one); call
            :meth:`to` on the whole model.
        """
        where = {_device_of(p.data) for p in self.parameters()}
        where.update(_device_of(b) for _, b in self.named_buffers())
        if len(where) > 1:
            raise RuntimeError("the model has arrays on both the cpu and cuda; move it as a "
                               "whole with model.to(device)")
        return where.pop() if where else self._device

    def to(self, device):
        """Move every parameter (data and grad) and buffer to ``device``; returns self.

        Parameters
        ----------
        device : {"cpu", "cuda"}
            "cuda" puts the arrays on the current CUDA device as numba device
            arrays (C-contiguous); "cpu" brings them back as numpy arrays.
            Arrays already on ``device`` are left as they are (moving to
            where the model is is a no-op), so references to them stay valid.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            ``device`` is not "cpu" or "cuda" (the message names it).
        RuntimeError
            "cuda" without numba-cuda or a usable CUDA driver and GPU.

        Notes
        -----
        As in torch, move the model BEFORE building its optimizer: the
        optimizer's state is allocated where the parameters are at its first
        step.  What layers kept for backward is dropped (run a forward on
        the new device before the next backward).  Dropout keeps only a
        seed: its masks are the same on both devices.

        Examples
        --------
        >>> from fastnn import nn
        >>> model = nn.Sequential(nn.Linear(4, 2, rng=0), nn.ReLU())
        >>> model.to("cpu") is model, model.device
        (True, 'cpu')
        """
        device = check_choice(device, "device", DEVICES)
        if device == "cuda":
            require_cuda(f"model.to({device!r}) was called")
        for m in self.modules():
            for name in m._params:
                p = getattr(m, name)
                p.data = _move(p.data, device)
                p.grad = _move(p.grad, device)
            for name in m._buffers:
                setattr(m, name, _move(getattr(m, name), device))
            for name in m._saved_attrs:
                setattr(m, name, None)
            m._device = device
        return self

    def train(self, mode=True):
        """Training mode (batch statistics, dropout on); returns self."""
        mode = boolean(mode, "mode")
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        """Evaluation mode (running statistics, dropout off); returns self."""
        return self.train(False)

    @contextlib.contextmanager
    def preserved(self, training=False):
        """Context manager: run in the given mode, then put the model back as it was.

        Inside the block the model is in training mode ``training`` (default:
        eval).  On exit, however the block ends, every module's train/eval
        mode, the buffers (batch-norm running statistics), the dropout
        generators' states and the parameters' ``grad`` references are
        restored, so a probe (an evaluation, a diagnostic forward/backward)
        leaves no trace on training.  Parameter values are not restored.

        Examples
        --------
        >>> import numpy as np
        >>> from fastnn import nn
        >>> model = nn.Sequential(nn.Linear(4, 2, rng=0), nn.BatchNorm1d(2))
        >>> with model.preserved(training=True):
        ...     _ = model(np.ones((3, 4), dtype=np.float32))
        >>> float(model[1].running_mean[0]), model.training
        (0.0, True)
        """
        modules = self.modules()
        modes = [m.training for m in modules]
        buffers = [(b, _copy(b)) for _, b in self.named_buffers()]
        rngs = [(m, m.rng.bit_generator.state) for m in modules if isinstance(m, Dropout)]
        grads = [(p, p.grad) for p in self.parameters()]
        try:
            self.train(training)
            yield self
        finally:
            for m, mode in zip(modules, modes):
                m.training = mode
            for b, saved in buffers:
                _assign(b, saved)
            for m, state in rngs:
                m.rng.bit_generator.state = state
            for p, g in grads:
                p.grad = g

    # -- state -----------------------------------------------------------
    def state_dict(self):
        """Host numpy copies of every parameter and buffer, keyed as torch does ("0.weight").

        Always host arrays, wherever the model is, so a state saved from a GPU
        model loads into a CPU one and back.
        """
        out = {name: _to_host(p.data) for name, p in self.named_parameters()}
        out.update((name, _to_host(b)) for name, b in self.named_buffers())
        return out

    def load_state_dict(self, state):
        """Copy arrays from ``state`` into the model (in place).

        Every key of :meth:`state_dict` must be present with the same shape,
        and no other key may be.  Values are converted to the model's dtype.
        Everything is checked before anything is copied, so a refused state
        leaves the model unchanged.  The values are host arrays (as
        :meth:`state_dict` returns); on a GPU model they are copied onto the
        device, into the existing device arrays.

        Raises
        ------
        KeyError
            Missing or unexpected keys (all of them are named).
        ValueError
            An array of the wrong shape, one that is not real numbers, or
            finite values that the model's dtype cannot hold (float64 values
            beyond the float32 range would silently become inf).
        """
        targets = self._state_targets()
        _check_names(targets, state)
        converted = {}
        for name, dest in targets.items():
            value = state[name]
            if _on_device(value):
                raise TypeError(f"state[{name!r}] is a GPU array; state dicts hold host numpy "
                                "arrays (copy it to the host first)")
            value = np.asarray(value)
            if value.dtype.kind not in "fiu":
                raise ValueError(f"state[{name!r}] must hold real numbers, got dtype {value.dtype}")
            if value.shape != tuple(dest.shape):
                raise ValueError(f"state[{name!r}] has shape {value.shape}, "
                                 f"the model expects {tuple(dest.shape)}")
            _check_representable(value, dest.dtype, name)
            converted[name] = value.astype(dest.dtype, copy=False)
        for name, dest in targets.items():
            _assign(dest, converted[name])
        return self

    def _state_targets(self):
        """{name: array} of every parameter and buffer, the keys of :meth:`state_dict`."""
        targets = {name: p.data for name, p in self.named_parameters()}
        targets.update(self.named_buffers())
        return targets

    def save(self, path):
        """Write :meth:`state_dict` to ``path`` as an uncompressed ``.npz`` file.

        The file holds plain arrays only and loads with ``allow_pickle=False``.
        ``path`` is used exactly as given (no extension is appended).
        """
        with open(os.fspath(path), "wb") as f:
            np.savez(f, **self.state_dict())

    def load(self, path):
        """Load a file written by :meth:`save` into this model (same architecture).

        Raises
        ------
        ValueError
            The file is not a readable ``.npz`` of plain arrays, or its arrays
            do not match the model (missing, unexpected or mis-shaped; the
            message names them).  The model is unchanged in every such case.
            Names, then every member's header (shape and dtype) are checked
            before any array data is read, so a small file that declares
            huge arrays is refused after reading at most the model's size.
        FileNotFoundError
            No file at ``path``.
        """
        try:
            state = _read_model_file(os.fspath(path), self._state_targets())
        except FileNotFoundError:
            raise
        except KeyError as exc:
            raise ValueError(f"{os.fspath(path)!r}: {exc.args[0]}") from None
        except ValueError as exc:
            raise ValueError(f"{os.fspath(path)!r}: {exc}") from None
        except Exception as exc:  # not a zip, truncated, a bad header
            raise ValueError(f"cannot load {os.fspath(path)!r} as a fastnn model file: "
                             f"{exc}") from exc
        try:
            self.load_state_dict(state)
        except KeyError as exc:
            raise ValueError(f"{os.fspath(path)!r}: {exc.args[0]}") from None
        except ValueError as exc:
            raise ValueError(f"{os.fspath(path)!r}: {exc}") from None
        return self

    def extra_repr(self):
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class Linear(Module):
    """Fully connected layer ``y = act(x @ weight.T + bias)``.

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths; ``weight`` has shape (out_features, in_features).
    bias : bool
        Whether to add a bias (initialized to zero; excluded from weight decay).
    activation : {None, "relu", "leaky_relu", "tanh", "sigmoid"}
        An activation fused into the kernel's epilogue.
    negative_slope : float >= 0
        Slope of ``"leaky_relu"`` for negative inputs.
    init : {"he", "xavier", "normal", "zeros"}
        Weight initializer: He normal (variance 2/fan_in, for ReLU), Xavier
        normal (the :func:`fastnn.init.xavier_normal` default), N(0, std^2),
        or all zeros (the symmetric trap of the lesson).
    std : float
        Standard deviation for ``init="normal"``.
    rng : int, numpy.random.Generator or None
        Seed or generator for the weights (None: fresh entropy).
    dtype : float32 or float64

    Attributes
    ----------
    weight : Parameter, shape (out_features, in_features)
    bias : Parameter, shape (out_features,), or None
    """

    def __init__(self, in_features, out_features, bias=True, activation=None, init="he",
                 std=0.01, rng=None, dtype=np.float32, negative_slope=0.01):
        self.in_features = integer(in_features, "in_features", low=1)
        self.out_features = integer(out_features, "out_features", low=1)
        self.activation = check_choice(activation, "activation", ACTIVATIONS)
        self.init = check_choice(init, "init", INITS)
        self.negative_slope = real_scalar(negative_slope, "negative_slope", low=0.0,
                                          high=np.inf, high_open=True)
        std = real_scalar(std, "std", low=0.0)
        dtype = float_dtype(dtype)
        rng = as_rng(rng)
        shape = (self.out_features, self.in_features)
        if init == "zeros":
            w = _init.zeros(shape, dtype=dtype)
        elif init == "normal":
            w = _init.normal(shape, std=std, dtype=dtype, rng=rng)
        elif init == "xavier":
            w = _init.xavier_normal(shape, dtype=dtype, rng=rng)
        else:
            w = _init.he_normal(shape, dtype=dtype, rng=rng)
        self.weight = Parameter(np.ascontiguousarray(w, dtype=dtype), decay=True)
        self.bias = (Parameter(np.zeros(self.out_features, dtype=dtype), decay=False)
                     if bias else None)
        self._params = ("weight", "bias") if bias else ("weight",)
        self._saved = None  # (x, y, activation, slope) of the last forward

    _saved_attrs = ("_saved",)

    def _linear(self, x, activation, slope):
        if type(x) is not type(self.weight.data):   # cheap test first: same type, same device
            _check_input(x, self.weight.data, self)
        b = None if self.bias is None else self.bias.data
        return F.linear(x, self.weight.data, b, activation=activation, negative_slope=slope)

    def _forward(self, x, activation, slope):
        y = self._linear(x, activation, slope)
        self._saved = (x, y, activation, slope)
        return y

    def forward(self, x):
        return self._forward(x, self.activation, self.negative_slope)

    def infer(self, x):
        return self._linear(x, self.activation, self.negative_slope)

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("Linear.backward called before forward")
        x, y, activation, slope = self._saved
        dx, dw, db = F.linear_backward(dy, x, self.weight.data, y, activation=activation,
                                       negative_slope=slope)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self):
        s = f"{self.in_features}, {self.out_features}"
        if self.bias is None:
            s += ", bias=False"
        if self.activation is not None:
            s += f", activation={self.activation!r}"
        if self.activation == "leaky_relu":
            s += f", negative_slope={self.negative_slope}"
        return s + f", init={self.init!r}, dtype={self.weight.dtype}"


class _Activation(Module):
    """An elementwise activation; keeps its output, which its derivative needs.

    It runs the backend's ``activation`` / ``activation_grad`` launchers on
    whichever device its input is: the same scalar definitions as the fused
    epilogue of ``F.linear(..., activation=fused_name)``, applied alone.
    Float32 or float64 in, the same dtype out (a new array, allocated as
    :mod:`fastnn.functional` allocates its outputs); NaN propagates.
    """

    fused_name = None  # the F.linear epilogue equivalent to this layer
    negative_slope = 0.01
    _saved_attrs = ("_y",)

    def __init__(self):
        self._y = None

    def infer(self, x):
        # No parameters: the layer runs where its input is.
        backend = backend_of(x)
        x = backend.float_array(x, "x", contiguous=False)
        y = backend.empty(x.shape, x.dtype)
        backend.activation(x, _ACT_CODES[self.fused_name], self.negative_slope, y)
        return y

    def forward(self, x):
        self._y = self.infer(x)
        return self._y

    def backward(self, dy):
        y = self._y
        if y is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        where, dy_where = _device_of(y), _device_of(dy)
        if dy_where != where:
            kind, want = ("host", "device") if where == "cuda" else ("GPU", "host")
            raise TypeError(f"{type(self).__name__}: dy is a {kind} array but the forward ran "
                            f"on the {'GPU' if where == 'cuda' else 'CPU'}; pass a {want} "
                            "array")
        backend = backend_of(y)
        dy = backend.float_array(dy, "dy", dtype=y.dtype, contiguous=False)
        check_shape(dy, tuple(y.shape), "dy")
        dx = backend.empty(y.shape, y.dtype)
        backend.activation_grad(dy, y, _ACT_CODES[self.fused_name], self.negative_slope, dx)
        return dx


class ReLU(_Activation):
    """``max(x, 0)``; NaN propagates, and the derivative at 0 is 0 (as in the fused kernel)."""

    fused_name = "relu"


class LeakyReLU(_Activation):
    """``x`` for x > 0, ``negative_slope * x`` otherwise."""

    fused_name = "leaky_relu"

    def __init__(self, negative_slope=0.01):
        super().__init__()
        # A slope >= 0 keeps the sign of the output equal to the input's, so
        # backward can work from the saved output alone.
        self.negative_slope = real_scalar(negative_slope, "negative_slope", low=0.0,
                                          high=np.inf, high_open=True)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Tanh(_Activation):
    """``tanh(x)``; saturates to exactly +-1, derivative ``1 - y**2`` from the output."""

    fused_name = "tanh"


class Sigmoid(_Activation):
    """The logistic ``1 / (1 + exp(-x))``, computed so that it never overflows.

    ``exp(-|x|)`` is in (0, 1] for every x, so no intermediate overflows and
    the output saturates to exactly 0 and 1; derivative ``y (1 - y)``.
    """

    fused_name = "sigmoid"


class BatchNorm1d(Module):
    """Batch normalization over the batch axis of (N, num_features) inputs.

    Training mode normalizes with the batch statistics and updates the
    running statistics in place (torch conventions: ``momentum`` is the weight
    of the new batch; the running variance uses the unbiased batch variance);
    evaluation mode uses the running statistics only.

    Attributes
    ----------
    weight, bias : Parameter, shape (num_features,)
        The learnable scale gamma (ones) and shift beta (zeros); excluded
        from weight decay.
    running_mean, running_var : ndarray or device array, shape (num_features,)
        Buffers (zeros and ones at the start), saved by :meth:`state_dict`
        and moved by :meth:`~Module.to`.
    """

    _params = ("weight", "bias")
    _buffers = ("running_mean", "running_var")
    _saved_attrs = ("_saved",)

    def __init__(self, num_features, momentum=0.1, eps=1e-5, dtype=np.float32):
        self.num_features = integer(num_features, "num_features", low=1)
        self.momentum = real_scalar(momentum, "momentum", low=0.0, high=1.0)
        self.eps = real_scalar(eps, "eps", low=0.0, low_open=True)
        dtype = float_dtype(dtype)
        self.weight = Parameter(np.ones(self.num_features, dtype=dtype), decay=False)
        self.bias = Parameter(np.zeros(self.num_features, dtype=dtype), decay=False)
        self.running_mean = np.zeros(self.num_features, dtype=dtype)
        self.running_var = np.ones(self.num_features, dtype=dtype)
        self._saved = None  # (x, mean, invstd, training)

    def forward(self, x):
        if type(x) is not type(self.weight.data):
            _check_input(x, self.weight.data, self)
        y, mean, invstd = F.batch_norm(x, self.running_mean, self.running_var, self.weight.data,
                                       self.bias.data, training=self.training,
                                       momentum=self.momentum, eps=self.eps)
        self._saved = (x, mean, invstd, self.training)
        return y

    def infer(self, x):
        if type(x) is not type(self.weight.data):
            _check_input(x, self.weight.data, self)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight.data,
                            self.bias.data, training=False, eps=self.eps)[0]

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("BatchNorm1d.backward called before forward")
        x, mean, invstd, training = self._saved
        dx, dw, db = F.batch_norm_backward(dy, x, mean, invstd, self.weight.data,
                                           training=training)
        self.weight.accumulate(dw)
        self.bias.accumulate(db)
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, momentum={self.momentum}, eps={self.eps}, "
                f"dtype={self.weight.dtype}")


class LayerNorm(Module):
    """Layer normalization over the trailing ``normalized_shape`` dimensions of each sample.

    Each sample (row) is normalized with its own mean and biased variance
    (:func:`fastnn.functional.layer_norm`), so training and evaluation
    compute the same thing and there are no running statistics.

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing dimensions to normalize over (torch's convention).
    eps : float > 0
        Added to the variance inside the square root.
    elementwise_affine : bool
        Whether to learn a per-element scale ``weight`` (ones at the start).
    bias : bool
        Whether to learn a per-element shift ``bias`` (zeros at the start);
        only with ``elementwise_affine`` (as torch).
    dtype : float32 or float64

    Attributes
    ----------
    weight, bias : Parameter of shape normalized_shape, or None
        torch's names; excluded from weight decay.

    Raises
    ------
    TypeError, ValueError
        A bad ``normalized_shape``, ``eps`` or flag (naming it).

    Notes
    -----
    y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias, the statistics
    over the normalized dimensions of each sample.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn
    >>> ln = nn.LayerNorm(2, dtype=np.float64)
    >>> ln(np.array([[1.0, 3.0], [5.0, 5.0]])).round(4)
    array([[-1.,  1.],
           [ 0.,  0.]])
    >>> sorted(ln.state_dict())
    ['bias', 'weight']
    """

    _saved_attrs = ("_saved",)

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 dtype=np.float32):
        self.normalized_shape = normalized_shape_tuple(normalized_shape)
        self.eps = real_scalar(eps, "eps", low=0.0, low_open=True)
        self.elementwise_affine = boolean(elementwise_affine, "elementwise_affine")
        has_bias = boolean(bias, "bias") and self.elementwise_affine
        dtype = float_dtype(dtype)
        self.weight = (Parameter(np.ones(self.normalized_shape, dtype=dtype), decay=False)
                       if self.elementwise_affine else None)
        self.bias = (Parameter(np.zeros(self.normalized_shape, dtype=dtype), decay=False)
                     if has_bias else None)
        self._params = tuple(n for n in ("weight", "bias") if getattr(self, n) is not None)
        self._saved = None  # (x, mean, invstd) of the last forward

    def _arrays(self, x):
        if self.weight is not None and type(x) is not type(self.weight.data):
            _check_input(x, self.weight.data, self)
        return (None if self.weight is None else self.weight.data,
                None if self.bias is None else self.bias.data)

    def forward(self, x):
        w, b = self._arrays(x)
        y, mean, invstd = F.layer_norm(x, self.normalized_shape, w, b, eps=self.eps)
        self._saved = (x, mean, invstd)
        return y

    def infer(self, x):
        w, b = self._arrays(x)
        return F.layer_norm(x, self.normalized_shape, w, b, eps=self.eps)[0]

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("LayerNorm.backward called before forward")
        x, mean, invstd = self._saved
        w = None if self.weight is None else self.weight.data
        dx, dw, db = F.layer_norm_backward(dy, x, self.normalized_shape, mean, invstd, w)
        if self.weight is not None:
            self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self):
        s = f"{self.normalized_shape}, eps={self.eps}"
        if not self.elementwise_affine:
            return s + ", elementwise_affine=False"
        if self.bias is None:
            s += ", bias=False"
        return s + f", dtype={self.weight.dtype}"


class Dropout(Module):
    """Inverted dropout: zero each unit with probability ``p``, scale survivors by 1/(1-p).

    Each training forward draws a fresh seed from ``rng`` and keeps only that
    seed: the mask is a pure function of (seed, element index), so backward
    regenerates it instead of storing it.  In evaluation mode (or p = 0) the
    layer is the identity.

    Parameters
    ----------
    p : float in [0, 1]
        Probability of dropping a unit.
    rng : int, numpy.random.Generator or None
        Source of the per-forward seeds (None: fresh entropy).
        :func:`fastnn.train.fit` replaces it with a generator derived from its
        own ``rng``, so training is deterministic for a given seed.

    Attributes
    ----------
    seed : int or None
        The seed of the last training forward's mask.
    """

    # Seeds below 2**31 fit every integer type a kernel may take them as.
    SEED_BOUND = 2 ** 31 - 1

    def __init__(self, p=0.5, rng=None):
        self.p = real_scalar(p, "p", low=0.0, high=1.0)
        self.rng = as_rng(rng)
        self.seed = None
        self._active = False

    def forward(self, x):
        self._active = self.training and self.p > 0
        if not self._active:
            return x
        self.seed = self.draw_seed()
        return F.dropout(x, p=self.p, training=True, seed=self.seed)

    def draw_seed(self):
        """The seed of the next training forward's mask, drawn from ``rng``.

        One ``integers`` call per seed (a call for many at once gives other
        numbers): the one definition of the draw, which the compiled engine
        and ``fit(initial_epoch=...)`` (skipping epochs) make too, so every
        path takes the same masks.
        """
        return int(self.rng.integers(self.SEED_BOUND))

    def backward(self, dy):
        if not self._active:
            return dy
        return F.dropout_backward(dy, p=self.p, seed=self.seed)

    def infer(self, x):
        return x

    def extra_repr(self):
        return f"p={self.p}"


def _refuse_reused_layers(model):
    """A layer keeps what its backward needs from its last forward, per instance:
    one instance at two places (``act = ReLU(); Sequential(..., act, ..., act)``,
    or a shared Linear) would give wrong gradients silently, so it is refused."""
    seen = {}
    for path, module in _walk(model, ""):
        if id(module) in seen:
            raise ValueError(
                f"the same {type(module).__name__} instance is used at {seen[id(module)]} and "
                f"at {path}: fastnn layers keep what backward needs per instance, so reusing "
                "one would give wrong gradients; create a separate layer for each position "
                f"(e.g. nn.{type(module).__name__}(...) twice)")
        seen[id(module)] = path


def _walk(module, path):
    yield path or "the top", module
    for i, child in enumerate(module.children()):
        yield from _walk(child, f"{path}.{i}" if path else f"layer {i}")


class Sequential(Module):
    """Layers applied in order; supports ``len``, indexing and iteration.

    A :class:`Linear` without its own activation that is directly followed by
    a :class:`ReLU`, :class:`LeakyReLU`, :class:`Tanh` or :class:`Sigmoid`
    runs as ONE fused ``F.linear(..., activation=...)`` call (and one
    ``F.linear_backward``): the activation layer itself is then skipped, so
    the pre-activation array is never materialized.  Calling the layers one
    by one gives the same result, unfused.
    """

    def __init__(self, *layers):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, not a fastnn.nn.Module")
        # A tuple: the fusion plan and the reuse check below are made once, so
        # the layers cannot change afterwards (build a new Sequential instead).
        self.layers = tuple(layers)
        _refuse_reused_layers(self)
        self._plan = self._fusion_plan()
        self._ran = None  # the plan steps of the last forward, for backward

    _saved_attrs = ("_ran",)

    def _fusion_plan(self):
        """[(layer index, fused activation layer or None)]."""
        plan, i = [], 0
        while i < len(self.layers):
            layer = self.layers[i]
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            if (type(layer) is Linear and layer.activation is None
                    and isinstance(nxt, _Activation) and nxt.fused_name is not None):
                plan.append((i, nxt))
                i += 2
            else:
                plan.append((i, None))
                i += 1
        return plan

    @property
    def fusion_plan(self):
        """``[(layer, fused activation layer or None)]``, in forward order.

        The one decision of which :class:`Linear` absorbs which following
        activation layer: forward, backward, ``infer`` and the compiled
        engine (:mod:`fastnn.engine`) all run this plan.  A fused Linear
        applies the activation's ``fused_name`` and ``negative_slope``; the
        absorbed layer appears nowhere else in the plan.

        Examples
        --------
        >>> from fastnn import nn
        >>> model = nn.Sequential(nn.Linear(4, 8, rng=0), nn.ReLU(), nn.Linear(8, 2, rng=1))
        >>> [(type(layer).__name__, type(act).__name__) for layer, act in model.fusion_plan]
        [('Linear', 'ReLU'), ('Linear', 'NoneType')]
        """
        return [(self.layers[i], act) for i, act in self._plan]

    def children(self):
        return self.layers

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(*self.layers[i])
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def forward(self, x):
        for i, act in self._plan:
            if act is not None:
                x = self.layers[i]._forward(x, act.fused_name, act.negative_slope)
            else:
                x = self.layers[i].forward(x)
        self._ran = self._plan
        return x

    def infer(self, x):
        for i, act in self._plan:
            if act is not None:
                x = self.layers[i]._linear(x, act.fused_name, act.negative_slope)
            else:
                x = self.layers[i].infer(x)
        return x

    def backward(self, dy):
        if self._ran is None:
            raise RuntimeError("Sequential.backward called before forward")
        for i, _ in reversed(self._ran):
            dy = self.layers[i].backward(dy)
        return dy

    def __repr__(self):
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
