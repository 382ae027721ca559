"""fastnn on Dask arrays: statistics, inference and streaming training past one machine's memory.

Dask (``dask.array``, ``dask.distributed``) schedules the chunks; fastnn's
kernels do the work inside each chunk.  Everything here takes a 2-D
``dask.array.Array`` of samples (rows may be chunked freely; the columns of a
block must be whole rows, so arrays chunked along the features are
rechunked to one column chunk first).

* :class:`StandardScaler` and :class:`PCA` are :mod:`fastnn.preprocessing`'s
  estimators whose ``fit`` / ``partial_fit`` also take a dask array: every
  block's (count, mean, M2) or (count, mean, centered scatter) comes from
  the same kernels as the in-memory fit, and the blocks' statistics are
  merged by a tree reduction (``dask.array.reduction``, ``split_every``
  blocks per merge) with the same Chan merge ``partial_fit`` uses.  The
  fitted attributes are numpy arrays; ``transform`` / ``inverse_transform``
  of a dask array return a lazy dask array in the input's dtype.
* :func:`predict` / :func:`predict_proba`: a trained ``fastnn.nn`` model (or
  any object with ``predict`` / ``predict_proba``) applied lazily block by
  block; the model is one key of the graph, so it is sent to each worker
  once, not serialized into every task.
* :func:`fit_incremental`: any estimator with scikit-learn's
  ``partial_fit`` trained block by block over a dask array that need not
  fit in memory.

Kernels run inside Dask's worker threads use their serial twins (see
``fastnn._config``): the scheduler's threads supply the parallelism, so
cores are not oversubscribed and numba's ``workqueue`` layer is never
entered from two threads at once.

Needs the ``dask`` extra (``pip install "fastnn[dask]"``); nothing else in
fastnn imports dask.
"""
import concurrent.futures
import copy
import uuid

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('fastnn.dask needs dask: pip install "fastnn[dask]"') from exc

from . import preprocessing, train
from ._validation import boolean, integer
from .nn import Module

__all__ = ["PCA", "StandardScaler", "fit_incremental", "predict", "predict_proba"]

#: Blocks merged per node of the reduction tree (dask's own default is 4 ... 32).
SPLIT_EVERY = 8


def _is_dask(X):
    return isinstance(X, da.Array)


def _samples(X, name="X"):
    """X checked as a 2-D dask array of real numbers, with whole rows in every block."""
    if not _is_dask(X):
        raise TypeError(f"{name} must be a dask.array.Array, got {type(X).__name__} "
                        "(numpy input: use fastnn.preprocessing / fastnn.train directly)")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype.kind not in "fiu" or X.dtype == np.float16 or X.dtype == np.longdouble:
        raise TypeError(f"{name} must hold float32, float64 or integers, got dtype {X.dtype}")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first")
    return X if len(X.chunks[1]) == 1 else X.rechunk({1: -1})


def _float_block(x):
    """A block as the C-contiguous float array the kernels take (integers -> float64)."""
    return np.ascontiguousarray(x, dtype=np.float64 if x.dtype.kind in "iu" else x.dtype)


def _out_dtype(X):
    return np.dtype(np.float64) if X.dtype.kind in "iu" else X.dtype


def _split_every(split_every):
    """None -> the default; else an integer >= 2 (TypeError / ValueError otherwise)."""
    return SPLIT_EVERY if split_every is None else integer(split_every, "split_every", low=2)


# -- tree reduction of packed per-block statistics ------------------------------
# Each block's statistics travel as one float64 row, a (1, width) numpy array,
# so dask.array.reduction concatenates a node's children into an (m, width)
# array and the merge walks its rows in order.  Scaler rows are
# [n or NaN, per-column counts (d), mean (d), M2 (d)]: the first entry is the
# block's row count, or NaN when NaN values were left out and the counts
# differ by column (the per-column counts are then the truth, as in
# StandardScaler.partial_fit).  PCA rows are [n, mean (d), scatter (d * d)].

def _pack_moments(n, mean, m2):
    counts = np.broadcast_to(np.asarray(n, np.float64), mean.shape)
    first = np.nan if np.ndim(n) else float(n)
    return np.concatenate(([first], counts, mean, m2))[None, :]


def _unpack_moments(row, d):
    n = row[0] if row[0] == row[0] else row[1:d + 1].copy()
    return n, row[d + 1:2 * d + 1], row[2 * d + 1:]


def _pack_scatter(n, mean, scatter):
    return np.concatenate(([n], mean, scatter.ravel()))[None, :]


def _unpack_scatter(row, d):
    return row[0], row[1:d + 1], row[d + 1:].reshape(d, d)


def _merge_scatter(n_a, mean_a, s_a, n_b, mean_b, s_b):
    return preprocessing.merge_scatter(float(n_a), mean_a, s_a, float(n_b), mean_b, s_b)


_LAYOUTS = {  # name -> (pack, unpack, Chan merge: the same ones partial_fit / fit use)
    "moments": (_pack_moments, _unpack_moments, preprocessing.StandardScaler._merge),
    "scatter": (_pack_scatter, _unpack_scatter, _merge_scatter),
}


def _moments_block(x, block_info=None):
    x = _float_block(x)
    if x.shape[0] == 0:
        return _pack_moments(0.0, np.zeros(x.shape[1]), np.zeros(x.shape[1]))
    try:
        return _pack_moments(*preprocessing.StandardScaler._moments_of(x))
    except ValueError as exc:   # infinity: its message names a row of this block
        row0 = block_info[0]["array-location"][0][0] if block_info else 0
        raise ValueError(f"{exc} [the row index counts from row {row0} of X, where "
                         "this block starts]") from exc


def _scatter_block(x, block_info=None):
    return _pack_scatter(*preprocessing.PCA._scatter(_float_block(x)))


def _merge_rows(parts, d, layout):
    """Merge the packed rows of ``parts`` in order; one packed row back."""
    pack, unpack, merge = _LAYOUTS[layout]
    acc = None
    for row in parts:
        item = unpack(row, d)
        if np.all(item[0] == 0):     # an empty block adds nothing (0 + 0 rows would divide by 0)
            continue
        acc = item if acc is None else merge(*acc, *item)
    return parts[:1] if acc is None else pack(*acc)


def _reduce(X, block_fn, layout, width, split_every):
    """(n, mean, rest) of X: block_fn on every block, merged up a tree of Chan merges."""
    d = X.shape[1]
    stats = X.map_blocks(block_fn, chunks=((1,) * X.numblocks[0], (width,)),
                         dtype=np.float64, meta=np.empty((0, 0)))

    def combine(parts, axis, keepdims):
        return _merge_rows(parts, d, layout)

    def aggregate(parts, axis, keepdims):
        return _merge_rows(parts, d, layout)[0]

    packed = da.reduction(stats, chunk=lambda x, axis, keepdims: x, combine=combine,
                          aggregate=aggregate, axis=0, keepdims=False, dtype=np.float64,
                          split_every=split_every, concatenate=True,
                          meta=np.empty((0,)), name="fastnn-merge-" + layout)
    return _LAYOUTS[layout][1](packed.compute(), d)


def _refuse_non_finite(X):
    """PCA's ``refuse(what)`` for a dask X: one more pass, only on the error path."""
    def refuse(what):
        if bool((~da.isfinite(X)).any().compute()):
            raise ValueError("X contains NaN or infinity: PCA cannot fit it")
        raise ValueError(f"X is finite but {what} overflows float64 (max |X| = "
                         f"{float(abs(X).max().compute()):.3g}); rescale X first, "
                         "e.g. with StandardScaler")
    return refuse


def _lazy_apply(est, method, X, n_out):
    """``getattr(est, method)`` on every block of X, lazily; est is one key of the graph."""
    key = dask.delayed(est, name=f"fastnn-{type(est).__name__}-{uuid.uuid4().hex}")
    return X.map_blocks(_apply_block, key, method, chunks=(X.chunks[0], (n_out,)),
                        dtype=_out_dtype(X), meta=np.empty((0, 0), _out_dtype(X)))


def _apply_block(x, est, method):
    return getattr(est, method)(x)


def _in_memory(est, cls):
    """A plain in-memory ``cls`` holding est's fitted state (what the workers receive)."""
    plain = cls.__new__(cls)
    plain.__dict__.update(est.__dict__)
    return plain


# -- preprocessing -------------------------------------------------------------

class StandardScaler(preprocessing.StandardScaler):
    """:class:`fastnn.preprocessing.StandardScaler` that also fits and transforms dask arrays.

    Parameters
    ----------
    with_mean, with_std, copy : bool
        As :class:`fastnn.preprocessing.StandardScaler`.  ``copy=False``
        applies to numpy input only: a lazy transform never writes into its
        input's blocks (another task may share them).
    split_every : int >= 2 or None
        Blocks' statistics merged per node of the reduction tree (default
        :data:`SPLIT_EVERY`).

    Notes
    -----
    Each block's (count, mean, M2) comes from the kernel of the in-memory
    fit; the triples are merged with Chan's formula up a tree of
    ``split_every``-way merges, so ``fit`` gives the in-memory fit of the
    whole array up to float64 rounding, whatever the chunking.  As in
    memory, NaN values are left out (``n_samples_seen_`` becomes per
    feature) and infinity is refused.  Numpy input takes the in-memory path
    unchanged.

    Examples
    --------
    >>> import dask.array as da
    >>> from fastnn.dask import StandardScaler
    >>> X = da.arange(12.0, chunks=5).reshape(6, 2).rechunk((4, 2))
    >>> sc = StandardScaler().fit(X)
    >>> sc.mean_
    array([5., 6.])
    >>> sc.transform(X).compute()[0].round(6)
    array([-1.46385, -1.46385])
    """

    def __init__(self, with_mean=True, with_std=True, copy=True, split_every=None):
        super().__init__(with_mean=with_mean, with_std=with_std, copy=copy)
        self.split_every = _split_every(split_every)

    def _params(self):
        return {**super()._params(), "split_every": self.split_every}

    def fit(self, X):
        """Per-feature mean and variance of ``X`` (a dask or numpy array).

        Parameters
        ----------
        X : dask.array.Array or array_like, shape (n_samples, n_features)
            Float32/float64 or integer samples.  A dask array is computed
            block by block (one reduction pass); memory holds a few blocks.

        Returns
        -------
        StandardScaler
            self, with numpy fitted attributes.

        Raises
        ------
        ValueError
            X not 2-D, empty, or with unknown chunk sizes.
        TypeError
            Unsupported dtype.
        """
        if not _is_dask(X):
            return super().fit(X)
        X = self._dask_fit_input(X)
        self.mean_ = None
        return self._fit_blocks(X)

    def partial_fit(self, X):
        """Merge the statistics of ``X`` (a dask or numpy array) into the fitted ones.

        Parameters
        ----------
        X : dask.array.Array or array_like, shape (n_samples, n_features)
            More samples, with the same features.

        Returns
        -------
        StandardScaler
            self.

        Raises
        ------
        ValueError, TypeError
            As :meth:`fit`, or a different number of features.
        """
        if not _is_dask(X):
            return super().partial_fit(X)
        X = self._dask_fit_input(X)
        if self.mean_ is not None:
            self._check_features(X, self.n_features_in_)
        return self._fit_blocks(X)

    def _dask_fit_input(self, X):
        X = _samples(X)
        if X.shape[0] == 0:
            raise ValueError(f"cannot fit on an empty X (shape {X.shape})")
        return X

    def _fit_blocks(self, X):
        d = X.shape[1]
        n, mean, m2 = _reduce(X, _moments_block, "moments", 1 + 3 * d, self.split_every)
        return self._add_moments(n, mean, m2)

    def _dask_apply(self, method, X):
        self._check_fitted()
        X = _samples(X)
        self._check_features(X, self.n_features_in_)
        plain = _in_memory(self, preprocessing.StandardScaler)
        plain.copy = True
        return _lazy_apply(plain, method, X, self.n_features_in_)

    def transform(self, X):
        """Standardize ``X``: a lazy dask array for dask input, else as the in-memory scaler.

        Parameters
        ----------
        X : dask.array.Array or array_like, shape (n_samples, n_features)

        Returns
        -------
        dask.array.Array or numpy.ndarray
            ``(X - mean_) / scale_`` in X's dtype (float64 for integers),
            same row chunks as X.

        Raises
        ------
        NotFittedError
            Called before fit.
        ValueError, TypeError
            Wrong shape or dtype.
        """
        return self._dask_apply("transform", X) if _is_dask(X) else super().transform(X)

    def inverse_transform(self, X):
        """Undo :meth:`transform` (lazily for a dask array).

        Parameters
        ----------
        X : dask.array.Array or array_like, shape (n_samples, n_features)

        Returns
        -------
        dask.array.Array or numpy.ndarray
            ``X * scale_ + mean_`` in X's dtype.

        Raises
        ------
        NotFittedError, ValueError, TypeError
            As :meth:`transform`.
        """
        if _is_dask(X):
            return self._dask_apply("inverse_transform", X)
        return super().inverse_transform(X)

    def fit_transform(self, X):
        """``fit(X).transform(X)`` (lazy transform for a dask array)."""
        return self.fit(X).transform(X) if _is_dask(X) else super().fit_transform(X)


class PCA(preprocessing.PCA):
    """:class:`fastnn.preprocessing.PCA` that also fits and transforms dask arrays.

    Parameters
    ----------
    n_components, whiten, eps
        As :class:`fastnn.preprocessing.PCA`.
    split_every : int >= 2 or None
        Blocks' statistics merged per node of the reduction tree (default
        :data:`SPLIT_EVERY`).

    Notes
    -----
    Each block contributes (count, mean, centered scatter
    :math:`X_c^T X_c`), computed as the in-memory fit computes its
    cache-sized blocks; the triples are merged with Chan's co-moment formula
    up the tree, then the covariance is eigendecomposed once on the client.
    A merge moves :math:`O(d^2)` numbers per block.  An array with fewer
    rows than features is small: it is computed and fitted in memory.

    Examples
    --------
    >>> import dask.array as da
    >>> from fastnn.dask import PCA
    >>> X = da.random.default_rng(0).standard_normal((1000, 3), chunks=(300, 3))
    >>> p = PCA(n_components=2, whiten=True).fit(X)
    >>> p.components_.shape, p.transform(X).shape
    ((2, 3), (1000, 2))
    """

    def __init__(self, n_components=None, whiten=False, eps=1e-5, split_every=None):
        super().__init__(n_components=n_components, whiten=whiten, eps=eps)
        self.split_every = _split_every(split_every)

    def _params(self):
        return {**super()._params(), "split_every": self.split_every}

    def fit(self, X):
        """Principal axes of ``X`` (a dask or numpy array).

        Parameters
        ----------
        X : dask.array.Array or array_like, shape (n_samples, n_features)
            At least 2 samples.

        Returns
        -------
        PCA
            self, with numpy fitted attributes.

        Raises
        ------
        ValueError
            X not 2-D, fewer than 2 samples, NaN or infinity in X,
            ``n_components`` too large, or unknown chunk sizes.
        TypeError
            Unsupported dtype.
        """
        if not _is_dask(X):
            return super().fit(X)
        X = _samples(X)
        n, d = X.shape
        k = self._n_components_for(n, d)
        if n < d:
            return super().fit(X.compute())
        count, mean, scatter = _reduce(X, _scatter_block, "scatter", 1 + d + d * d,
                                       self.split_every)
        self._fit_scatter(count, mean, scatter, k, _refuse_non_finite(X))
        return self

    def fit_transform(self, X):
        """``fit(X).transform(X)`` (lazy transform for a dask array)."""
        return self.fit(X).transform(X) if _is_dask(X) else super().fit_transform(X)

    def _dask_apply(self, method, X, n_in, n_out, name):
        self._check_fitted()
        X = _samples(X, name)
        self._check_features(X, n_in, name)
        return _lazy_apply(_in_memory(self, preprocessing.PCA), method, X, n_out)

    def transform(self, X):
        """Project ``X`` onto the principal axes (lazily for a dask array).

        Parameters
        ----------
        X : dask.array.Array or array_like, shape (n_samples, n_features)

        Returns
        -------
        dask.array.Array or numpy.ndarray, shape (n_samples, n_components_)
            In X's dtype (float64 for integers).

        Raises
        ------
        NotFittedError, ValueError, TypeError
            Not fitted, wrong shape, unsupported dtype.
        """
        if not _is_dask(X):
            return super().transform(X)
        return self._dask_apply("transform", X, self.n_features_in_, self.n_components_, "X")

    def inverse_transform(self, Y):
        """Map projected samples back to feature space (lazily for a dask array).

        Parameters
        ----------
        Y : dask.array.Array or array_like, shape (n_samples, n_components_)

        Returns
        -------
        dask.array.Array or numpy.ndarray, shape (n_samples, n_features)

        Raises
        ------
        NotFittedError, ValueError, TypeError
            As :meth:`transform`.
        """
        if not _is_dask(Y):
            return super().inverse_transform(Y)
        return self._dask_apply("inverse_transform", Y, self.n_components_,
                                self.n_features_in_, "Y")


# -- inference -----------------------------------------------------------------

def _frozen_model(model):
    """What the workers receive: a host copy of the model in eval mode, or a scikit-learn-like
    estimator as it is."""
    if not isinstance(model, Module):
        return model
    if model.device != "cpu":
        raise ValueError(f"the model is on {model.device!r}; fastnn.dask predicts on the host: "
                         "call model.to('cpu') first")
    # A copy: the graph must not change when the caller keeps training the model.
    # to("cpu") drops what the layers kept for backward (nothing to ship).
    return copy.deepcopy(model).to("cpu").eval()


def _model_block(x, model, method, batch_size, kwargs):
    if isinstance(model, Module):
        return getattr(train, method)(model, x, batch_size=batch_size, **kwargs)
    return getattr(model, method)(x)


def _predict(model, X, method, batch_size, **kwargs):
    if not isinstance(model, Module) and not callable(getattr(model, method, None)):
        raise TypeError(f"model must be a fastnn.nn.Module or have a {method} method, "
                        f"got {type(model).__name__}")
    X = _samples(X)
    frozen = _frozen_model(model)
    # One row through the model: the output's width and dtype (and an early,
    # local error for a model that does not take X's features).
    probe = np.asarray(_model_block(np.zeros((1, X.shape[1]), _out_dtype(X)), frozen, method,
                                    batch_size, kwargs))
    key = dask.delayed(frozen, name=f"fastnn-model-{uuid.uuid4().hex}")
    if probe.ndim == 1:
        return X.map_blocks(_model_block, key, method, batch_size, kwargs, drop_axis=1,
                            chunks=(X.chunks[0],), dtype=probe.dtype,
                            meta=np.empty((0,), probe.dtype))
    return X.map_blocks(_model_block, key, method, batch_size, kwargs,
                        chunks=(X.chunks[0], (probe.shape[1],)), dtype=probe.dtype,
                        meta=np.empty((0, 0), probe.dtype))


def predict(model, X, batch_size=4096):
    """The model's outputs on every row of a dask array, lazily.

    Parameters
    ----------
    model : fastnn.nn.Module or estimator
        A trained fastnn model (outputs as :func:`fastnn.train.predict`:
        raw scores / regression values, in eval mode), or any object with a
        ``predict`` method (a scikit-learn estimator, say).  A fastnn model
        is copied (to the host, in eval mode) when the graph is built, so
        training it further does not change the result.
    X : dask.array.Array, shape (n_samples, n_features)
    batch_size : int >= 1
        Rows per forward pass inside a block (bounds a worker's memory).

    Returns
    -------
    dask.array.Array
        Shape (n_samples, n_outputs) (or (n_samples,) when the estimator's
        predict returns one value per row), same row chunks as X.

    Raises
    ------
    TypeError
        ``model`` has no ``predict``, or X has an unsupported dtype.
    ValueError
        X not 2-D or with the wrong number of features, or a fastnn model
        on the GPU.

    Notes
    -----
    The model is a single key of the graph that every block's task depends
    on: the scheduler sends it to each worker once, instead of serializing
    the weights into every task.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from fastnn import nn
    >>> from fastnn.dask import predict
    >>> model = nn.Sequential(nn.Linear(4, 8, rng=0), nn.ReLU(), nn.Linear(8, 3, rng=1))
    >>> X = da.ones((10, 4), dtype=np.float32, chunks=(4, 4))
    >>> predict(model, X).shape
    (10, 3)
    """
    return _predict(model, X, "predict", _batch_size(batch_size))


def predict_proba(model, X, batch_size=4096, loss="cross_entropy"):
    """Class probabilities of every row of a dask array, lazily.

    As :func:`predict`, with :func:`fastnn.train.predict_proba` for a fastnn
    model (the softmax of the outputs, or with
    ``loss="binary_cross_entropy"`` their sigmoids), ``model.predict_proba``
    otherwise.

    Parameters
    ----------
    model : fastnn.nn.Module or estimator
    X : dask.array.Array, shape (n_samples, n_features)
    batch_size : int >= 1
    loss : {"cross_entropy", "hinge", "binary_cross_entropy"}
        The loss a fastnn model was trained with (see
        :func:`fastnn.train.predict_proba`); an estimator takes the default only.

    Returns
    -------
    dask.array.Array, shape (n_samples, n_classes)

    Raises
    ------
    TypeError, ValueError
        As :func:`predict`.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from fastnn import nn
    >>> from fastnn.dask import predict_proba
    >>> model = nn.Sequential(nn.Linear(4, 3, rng=0))
    >>> P = predict_proba(model, da.ones((10, 4), dtype=np.float32, chunks=5)).compute()
    >>> bool(np.allclose(P.sum(axis=1), 1))
    True
    """
    if not isinstance(model, Module) and loss != "cross_entropy":
        raise ValueError(f"loss={loss!r} is for fastnn models; an estimator's own "
                         "predict_proba knows its output")
    return _predict(model, X, "predict_proba", _batch_size(batch_size), loss=loss)


def _batch_size(batch_size):
    """``batch_size`` checked (an integer >= 1)."""
    return integer(batch_size, "batch_size", low=1)


# -- streaming training --------------------------------------------------------

def _block_pairs(X, y):
    """(X block, y block or None) per row block, y rechunked to X's row chunks."""
    if y is None:
        return [(X.blocks[i], None) for i in range(X.numblocks[0])]
    y = y if _is_dask(y) else da.from_array(np.asarray(y), chunks=-1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows, X has {X.shape[0]}")
    y = y.rechunk((X.chunks[0],) + tuple((s,) for s in y.shape[1:]))
    return [(X.blocks[i], y.blocks[i]) for i in range(X.numblocks[0])]


def _fetch(pair):
    xb, yb = pair
    return dask.compute(xb, yb) if yb is not None else (xb.compute(), None)


def _one_epoch(estimator, pairs, order, fit_kwargs):
    """partial_fit on the blocks in ``order``; the next block is computed meanwhile."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_fetch, pairs[order[0]])
        for j in range(len(order)):
            xb, yb = pending.result()
            if j + 1 < len(order):
                pending = pool.submit(_fetch, pairs[order[j + 1]])
            if yb is None:
                estimator.partial_fit(xb, **fit_kwargs)
            else:
                estimator.partial_fit(xb, yb, **fit_kwargs)



def fit_incremental(estimator, X, y=None, epochs=1, shuffle_blocks=True, random_state=None,
                    **fit_kwargs):
    """Train ``estimator`` with ``partial_fit`` block by block over a dask array.

    X never has to fit in memory: one row block is computed (by the current
    Dask scheduler) while ``partial_fit`` runs on the previous one, so memory
    holds two blocks.  The model is the same as calling ``partial_fit`` on the
    same blocks, in the same order, in memory.

    Parameters
    ----------
    estimator : object
        Anything with scikit-learn's ``partial_fit(X[, y], **fit_kwargs)``
        (a scikit-learn ``SGDClassifier`` / ``MLPClassifier``,
        :class:`fastnn.preprocessing.StandardScaler`, ...).  Updated in
        place, in this process.
    X : dask.array.Array, shape (n_samples, n_features)
        The samples; its row chunks are the blocks.
    y : dask.array.Array or array_like or None
        Targets, one per row (rechunked to X's row chunks); None for
        unsupervised estimators (``partial_fit(X)``).
    epochs : int >= 1
        Passes over the blocks.
    shuffle_blocks : bool
        Visit the blocks of each epoch in a random order (rows inside a block
        keep their order); False visits them in order.
    random_state : int, numpy.random.Generator or None
        Seed of the block order: epoch e visits
        ``numpy.random.default_rng(random_state).permutation(n_blocks)``,
        the e-th draw from that one generator.
    **fit_kwargs
        Passed to every ``partial_fit`` call (e.g. ``classes=`` for
        scikit-learn classifiers).

    Returns
    -------
    object
        ``estimator``.

    Raises
    ------
    TypeError
        ``estimator`` has no ``partial_fit``; X has an unsupported dtype.
    ValueError
        X not 2-D, y with a different number of rows, ``epochs`` < 1.

    Notes
    -----
    dask-ml's ``Incremental`` wrapper does the same for scikit-learn
    estimators; it runs with dask 2026.8 but needs dask.dataframe (pyarrow)
    to import, which this function does not.

    Examples
    --------
    >>> import dask.array as da
    >>> from sklearn.linear_model import SGDClassifier
    >>> from fastnn.dask import fit_incremental
    >>> X = da.random.default_rng(0).standard_normal((1000, 4), chunks=(250, 4))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> clf = fit_incremental(SGDClassifier(random_state=0), X, y, epochs=3,
    ...                       random_state=0, classes=[0, 1])
    >>> bool((clf.predict(X[:200].compute()) == y[:200].compute()).mean() > 0.9)
    True
    """
    if not callable(getattr(estimator, "partial_fit", None)):
        raise TypeError(f"estimator must have a partial_fit method, got {type(estimator).__name__}")
    epochs = integer(epochs, "epochs", low=1)
    shuffle_blocks = boolean(shuffle_blocks, "shuffle_blocks")
    X = _samples(X)
    pairs = _block_pairs(X, y)
    rng = np.random.default_rng(random_state)
    for _ in range(epochs):
        order = rng.permutation(len(pairs)) if shuffle_blocks else np.arange(len(pairs))
        _one_epoch(estimator, pairs, order, fit_kwargs)
    return estimator
