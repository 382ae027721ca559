"""Preprocessing estimators with the scikit-learn shape.

``fit`` / ``partial_fit`` learn per-feature statistics, ``transform`` applies
them, ``inverse_transform`` undoes them; fitted attributes end in ``_``.
Input is an ``(n_samples, n_features)`` array of float32/float64 (output has
the input's dtype) or of integers (pixels 0-255; converted to float64).
Statistics are always float64.

The lesson's three steps: mean subtraction (``StandardScaler(with_std=False)``),
normalization to zero mean and unit variance (``StandardScaler()``), and PCA
whitening (``PCA(whiten=True)``), which rotates onto the principal axes and
makes every direction have unit variance.
"""

import numpy as np

from . import memory
from ._cpu import preprocessing as _k
from ._cpu._moments import merge_moments
from ._validation import boolean, float_array, integer, real_scalar

__all__ = ["PCA", "NotFittedError", "StandardScaler", "merge_scatter"]

# Rows per block in PCA: about 4 MiB of float32 (L3-resident), so centering a block and the
# BLAS product that reads it back meet in the cache and X crosses the memory
# bus once.
_PCA_BLOCK_ELEMENTS = 1 << 20


def merge_scatter(n_a, mean_a, scatter_a, n_b, mean_b, scatter_b):
    """Merge two (count, mean, centered scatter matrix) triples: Chan's formula, co-moment form.

    Parameters
    ----------
    n_a, n_b : float
        Row counts (not both 0).
    mean_a, mean_b : numpy.ndarray of float64, shape (d,)
        Column means.
    scatter_a, scatter_b : numpy.ndarray of float64, shape (d, d)
        :math:`\\sum_i (x_i - \\mu)(x_i - \\mu)^T` of each part.

    Returns
    -------
    tuple
        ``(n, mean, scatter)`` of the union, new arrays (the inputs are not modified).

    Notes
    -----
    :math:`S = S_a + S_b + \\delta \\delta^T n_a n_b / n` with
    :math:`\\delta = \\mu_b - \\mu_a`: exact for any offset, never
    :math:`E[xx^T] - \\mu\\mu^T`.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [2.0], [4.0]])
    >>> n, mean, s = merge_scatter(1.0, x[0], np.zeros((1, 1)), 2.0, np.array([3.0]),
    ...                            np.array([[2.0]]))
    >>> n, float(mean[0]), float(s[0, 0])
    (3.0, 2.0, 8.0)
    """
    n = n_a + n_b
    delta = mean_b - mean_a
    scatter = scatter_a + scatter_b
    scatter += np.outer(delta, delta * (n_a * n_b / n))
    return n, mean_a + delta * (n_b / n), scatter


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit`` (as sklearn's NotFittedError)."""


def _as_samples(X, name="X"):
    """``X`` as a C-contiguous 2-D float array; integers become float64."""
    arr = X if isinstance(X, np.ndarray) else (X if hasattr(X, "__cuda_array_interface__")
                                               else np.asarray(X))
    if isinstance(arr, np.ndarray) and arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    if isinstance(arr, np.ndarray) and arr.ndim == 1:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}; "
                         "use X.reshape(-1, 1) for a single feature or X.reshape(1, -1) "
                         "for a single sample")
    return float_array(arr, name, ndim=2)


def _moments(X):
    kernel, n_chunks = _k.column_moments.pick_chunks(X.size)
    return kernel(X, n_chunks)


def _refuse_non_finite(X, what):
    """Say why a PCA statistic is not finite: NaN/inf in X, or finite values too large."""
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"X contains NaN or infinity (X[{i}, {j}] = {X[i, j]}): "
                         "PCA cannot fit it")
    raise ValueError(f"X is finite but {what} overflows float64 (max |X| = "
                     f"{float(np.max(np.abs(X))):.3g}); rescale X first, e.g. with StandardScaler")


# Rows per block of the NaN path: its temporaries (float64 copies of a block)
# stay a few MiB whatever the size of X.
_NAN_BLOCK_ROWS = 4096


def _moments_ignoring_nan(X, n, mean, m2):
    """Per-column (count, mean, M2) over the non-NaN values of X; inf is refused.

    The slow path, taken only when the fast kernel's mean is not finite.  X is
    read in blocks of rows merged with Chan's formula, so the temporaries stay
    small.  Counts are per column (columns differ in how many values they
    have); a column with no value gets NaN statistics.
    """
    total = None
    for lo in range(0, X.shape[0], _NAN_BLOCK_ROWS):
        block = X[lo:lo + _NAN_BLOCK_ROWS]
        inf = np.isinf(block)
        if inf.any():
            i, j = np.argwhere(inf)[0]
            raise ValueError(f"X contains infinity (X[{lo + i}, {j}] = {block[i, j]}); "
                             "StandardScaler ignores NaN in fit but cannot standardize inf")
        present = ~np.isnan(block)
        counts = present.sum(axis=0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(present, block, 0.0).astype(np.float64)
            b_mean = values.sum(axis=0) / counts
            dev = np.where(present, values - b_mean, 0.0)
        part = (counts, b_mean, np.einsum("ij,ij->j", dev, dev))
        total = part if total is None else _merge_per_column(*total, *part)
    if np.all(total[0] == X.shape[0]):       # no NaN: finite data whose sum overflowed
        return n, mean, m2
    return total


def _merge_per_column(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Chan's merge of (count, mean, M2) with per-column counts.

    A column with no value on one side takes the other side's statistics as
    they are (no delta term: ``delta**2 * 0`` would be ``inf * 0 = NaN`` for
    means beyond 1e154); a column with none on either side gets NaN.
    """
    n_a = np.broadcast_to(np.asarray(n_a, np.float64), mean_a.shape)
    n_b = np.broadcast_to(np.asarray(n_b, np.float64), mean_b.shape)
    n = n_a + n_b
    both = (n_a > 0) & (n_b > 0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        delta = np.where(both, mean_b - mean_a, 0.0)
        frac = np.where(both, n_b / n, 0.0)
        mean = np.where(n_a > 0, mean_a, mean_b) + delta * frac
        m2 = (np.where(n_a > 0, m2_a, 0.0) + np.where(n_b > 0, m2_b, 0.0)
              + np.where(both, delta * delta * n_a * frac, 0.0))
    mean[n == 0] = np.nan
    m2[n == 0] = np.nan
    return n, mean, m2


class _Estimator:
    _fitted_attr = "mean_"

    def _check_fitted(self):
        if getattr(self, self._fitted_attr, None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

    def _check_features(self, X, n_features, name="X"):
        if X.shape[1] != n_features:
            raise ValueError(f"{name} has {X.shape[1]} features, but {type(self).__name__} "
                             f"expects {n_features}")

    def fit_transform(self, X):
        """``fit(X)`` then ``transform(X)``."""
        X = _as_samples(X)
        return self.fit(X).transform(X)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


class StandardScaler(_Estimator):
    """Standardize features: subtract the mean and divide by the standard deviation.

    Parameters
    ----------
    with_mean : bool
        Subtract the per-feature mean (the lesson's mean subtraction).
    with_std : bool
        Divide by the per-feature standard deviation (normalization).
    copy : bool
        As scikit-learn's: when False, ``transform`` and
        ``inverse_transform`` overwrite X and return it, if X is a writeable
        C-contiguous float32/float64 ndarray (anything else is still copied).
        In place saves the output's memory (a new output comes from the
        buffer cache of :mod:`fastnn.memory`).

    Attributes
    ----------
    mean_ : numpy.ndarray of float64, shape (n_features,)
        Per-feature mean of everything seen by ``fit``/``partial_fit``.
    var_ : numpy.ndarray of float64, shape (n_features,)
        Per-feature (biased, ``ddof=0``) variance.
    scale_ : numpy.ndarray of float64 or None
        ``sqrt(var_)``, with 1 for constant features; None when
        ``with_std=False``.
    n_samples_seen_ : int or numpy.ndarray of int64, shape (n_features,)
        Number of rows seen; per feature (the values that were not NaN) once
        a NaN has been seen, as in scikit-learn.
    n_features_in_ : int
        Number of features.

    Notes
    -----
    :math:`y = (x - \\mu) / \\sigma` per feature.  The statistics are
    accumulated in float64 per row chunk as (n, mean, M2) triples and merged
    with Chan's formula, within one call and across ``partial_fit`` calls:
    ``partial_fit`` over chunks equals ``fit`` on the whole up to float64
    rounding.  A feature is constant (scale 1) when its variance is within
    float64 rounding of 0 (sklearn's test).  Missing values follow
    scikit-learn's convention: NaN is ignored by ``fit``/``partial_fit``
    (each feature's statistics use its non-NaN values; a feature with none
    gets NaN statistics) and kept as NaN by ``transform``; ``inf`` in fit
    raises ValueError.  Data without NaN never leaves the fast path.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.preprocessing import StandardScaler
    >>> X = np.array([[0, 10], [2, 10], [4, 10]], dtype=np.uint8)
    >>> StandardScaler().fit_transform(X)
    array([[-1.22474487,  0.        ],
           [ 0.        ,  0.        ],
           [ 1.22474487,  0.        ]])
    """

    def __init__(self, with_mean=True, with_std=True, copy=True):
        self.with_mean = boolean(with_mean, "with_mean")
        self.with_std = boolean(with_std, "with_std")
        self.copy = boolean(copy, "copy")
        self.mean_ = None

    def _params(self):
        return {"with_mean": self.with_mean, "with_std": self.with_std, "copy": self.copy}

    def fit(self, X):
        """Compute the per-feature mean and variance of ``X``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            Float or integer samples, at least one row.

        Returns
        -------
        StandardScaler
            self.

        Raises
        ------
        ValueError
            X not 2-D or empty, or holding inf (NaN is ignored).
        TypeError
            Unsupported dtype (float16, complex, object).
        """
        X = self._validate_fit(X, reset=True)
        self.mean_ = None
        return self._update(X)

    def partial_fit(self, X):
        """Update the statistics with one more chunk of rows.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            The next chunk; same number of features as before.

        Returns
        -------
        StandardScaler
            self.

        Raises
        ------
        ValueError
            X not 2-D, empty, or with a different number of features.
        TypeError
            Unsupported dtype.
        """
        X = self._validate_fit(X, reset=self.mean_ is None)
        return self._update(X)

    def _validate_fit(self, X, reset):
        X = _as_samples(X)
        if X.shape[0] == 0:
            raise ValueError(f"cannot fit on an empty X (shape {X.shape})")
        if not reset:
            self._check_features(X, self.n_features_in_)
        return X

    def _update(self, X):
        return self._add_moments(*self._moments_of(X))

    @staticmethod
    def _moments_of(X):
        """(count, mean, M2) of a checked X, NaN left out (count per column then)."""
        n, mean, m2 = _moments(X)
        if not np.isfinite(mean).all():      # a NaN or inf in some column (or an overflow)
            n, mean, m2 = _moments_ignoring_nan(X, n, mean, m2)
        return n, mean, m2

    @staticmethod
    def _merge(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
        """Chan's merge of two (count, mean, M2) triples, as ``partial_fit`` merges."""
        if np.ndim(n_a) or np.ndim(n_b):
            return _merge_per_column(n_a, mean_a, m2_a, n_b, mean_b, m2_b)
        return merge_moments(float(n_a), mean_a, m2_a, float(n_b), mean_b, m2_b)

    def _add_moments(self, n, mean, m2):
        """Merge one (count, mean, M2) triple into the fitted statistics.

        The one place the statistics change: ``partial_fit`` passes its
        chunk's triple here, and so does :mod:`fastnn.dask` with the triple
        its tree reduction merged from every block.  ``n`` is a number, or
        per-column counts where NaN values were left out.
        """
        if self.mean_ is None:
            self.n_features_in_ = mean.shape[0]
            self._m2 = m2
            self.mean_ = mean
            total = n
        else:
            total, self.mean_, self._m2 = self._merge(self.n_samples_seen_, self.mean_, self._m2,
                                                      n, mean, m2)
        # an int, or (as in scikit-learn) per-column counts once NaN has been seen
        self.n_samples_seen_ = total.astype(np.int64) if np.ndim(total) else int(total)
        with np.errstate(invalid="ignore"):           # 0 / 0 for an all-NaN feature
            self.var_ = np.maximum(self._m2 / total, 0.0)
        if self.with_std:
            scale = np.sqrt(self.var_)
            # sklearn's constant-feature test: the variance is within the
            # rounding error of a float64 sum of n_samples terms.
            eps = np.finfo(np.float64).eps
            constant = self.var_ <= total * eps * self.var_ + (total * self.mean_ * eps) ** 2
            scale[constant] = 1.0
            self.scale_ = scale
        else:
            self.scale_ = None
        return self

    def _coefficients(self):
        d = self.n_features_in_
        shift = self.mean_ if self.with_mean else np.zeros(d)
        scale = self.scale_ if self.with_std else np.ones(d)
        return shift, scale

    def _validate_apply(self, X):
        """(X as a checked sample array, the array to write the result into)."""
        self._check_fitted()
        arr = _as_samples(X)
        self._check_features(arr, self.n_features_in_)
        # The kernels read each element before writing it, so out may be X.
        in_place = not self.copy and arr is X and arr.flags.writeable
        return arr, (arr if in_place else memory.empty(arr.shape, arr.dtype))

    def transform(self, X):
        """Standardize ``X`` with the fitted statistics.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            Float or integer samples (any layout; not modified unless
            ``copy=False``).

        Returns
        -------
        numpy.ndarray
            ``(X - mean_) / scale_``, with X's dtype (float64 for integers);
            X itself when ``copy=False`` allowed writing in place.

        Raises
        ------
        NotFittedError
            Called before fit.
        ValueError
            Wrong number of features or dimensions.
        TypeError
            Unsupported dtype.
        """
        X, out = self._validate_apply(X)
        shift, scale = self._coefficients()
        _k.center_scale.pick(X.size)(X, shift, 1.0 / scale, out)
        return out

    def inverse_transform(self, X):
        """Undo :meth:`transform`: ``X * scale_ + mean_``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            Standardized samples.

        Returns
        -------
        numpy.ndarray
            The samples in the original units, with X's dtype (X itself
            when ``copy=False`` allowed writing in place).

        Raises
        ------
        NotFittedError, ValueError, TypeError
            As :meth:`transform`.
        """
        X, out = self._validate_apply(X)
        shift, scale = self._coefficients()
        _k.scale_shift.pick(X.size)(X, scale, shift, out)
        return out


class PCA(_Estimator):
    """Principal component analysis, optionally whitening.

    Parameters
    ----------
    n_components : int or None
        Number of principal axes kept; None keeps ``min(n_samples,
        n_features)``.
    whiten : bool
        Divide each projected axis by ``sqrt(eigenvalue + eps)`` so the
        transformed training data have (about) identity covariance.
    eps : float
        Added to each eigenvalue before whitening, > 0; keeps directions of
        zero variance (rank-deficient data) finite.

    Attributes
    ----------
    components_ : numpy.ndarray of float64, shape (n_components_, n_features)
        Principal axes (rows, unit norm), by decreasing variance; each row's
        largest-magnitude entry is positive (a deterministic sign, the same
        convention as scikit-learn >= 1.5).
    explained_variance_ : numpy.ndarray of float64, shape (n_components_,)
        Variance along each axis (eigenvalues of the covariance, ``ddof=1``).
    explained_variance_ratio_ : numpy.ndarray of float64
        ``explained_variance_`` over the total variance (0 if that is 0).
    mean_ : numpy.ndarray of float64, shape (n_features,)
        Per-feature mean.
    n_components_ : int
        Number of components kept.
    n_features_in_, n_samples_seen_ : int
        Shape of the training data.

    Notes
    -----
    With :math:`X_c = X - \\mu`, the covariance
    :math:`C = X_c^T X_c / (N - 1) = V \\Lambda V^T` (one BLAS product, then
    ``numpy.linalg.eigh``; an SVD of :math:`X_c` when N < D).
    ``transform`` is :math:`Y = X_c V_k`, and with whitening
    :math:`Y = X_c V_k (\\Lambda_k + \\epsilon)^{-1/2}`.  scikit-learn whitens
    with :math:`\\Lambda_k^{-1/2}` (no eps): the two differ by the factor
    :math:`\\sqrt{\\lambda / (\\lambda + \\epsilon)}` per axis.

    For N >= D the rows are processed in cache-sized blocks: each block is
    centered on its own mean into a buffer that its BLAS product reads back
    from the cache, and the block covariances are merged with Chan's formula
    (the co-moment form), so X is read from memory once and no centered copy
    of X is ever made.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.preprocessing import PCA
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((1000, 3)) @ np.array([[3., 0, 0], [1, 1, 0], [0, 0, .1]])
    >>> Y = PCA(whiten=True).fit_transform(X)
    >>> bool(np.allclose(np.cov(Y, rowvar=False), np.eye(3), atol=1e-3))
    True
    """

    _fitted_attr = "components_"

    def __init__(self, n_components=None, whiten=False, eps=1e-5):
        if n_components is not None:
            n_components = integer(n_components, "n_components", low=1)
        self.n_components = n_components
        self.whiten = boolean(whiten, "whiten")
        self.eps = real_scalar(eps, "eps", low=0.0, low_open=True)
        self.components_ = None

    def _params(self):
        return {"n_components": self.n_components, "whiten": self.whiten, "eps": self.eps}

    def fit(self, X):
        """Find the principal axes of ``X``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            At least 2 samples.

        Returns
        -------
        PCA
            self.

        Raises
        ------
        ValueError
            X not 2-D, fewer than 2 samples or no feature, NaN or infinity
            in X, or ``n_components`` larger than ``min(n_samples, n_features)``.
        TypeError
            Unsupported dtype.
        """
        self._fit(_as_samples(X), keep_projection=False)
        return self

    def fit_transform(self, X):
        """``fit(X).transform(X)``, reusing the centered data when N < D."""
        X = _as_samples(X)
        projected = self._fit(X, keep_projection=True)
        return projected if projected is not None else self._project(X)

    def _fit(self, X, keep_projection):
        n, d = X.shape
        k = self._n_components_for(n, d)
        if n >= d:
            count, mean, scatter = self._scatter(X)
            self._fit_scatter(count, mean, scatter, k, lambda what: _refuse_non_finite(X, what))
            return None
        # Few samples: the D x D covariance would be rank <= N - 1; an SVD
        # of the N x D centered data costs O(N^2 D) instead of O(D^3).
        _, mean, _ = _moments(X)
        if not np.isfinite(mean).all():
            _refuse_non_finite(X, "the mean")
        centered = np.empty_like(X)
        self._center(X, mean, centered)
        _, s, eigvec = np.linalg.svd(centered.astype(np.float64, copy=False),
                                     full_matrices=False)
        eigval = s * s / (n - 1)
        self._set_axes(mean, eigval, eigvec, float(eigval.sum()), n, k)
        if keep_projection:
            return centered @ self._projection(X.dtype)
        return None

    def _n_components_for(self, n, d):
        """The number of components to keep for an (n, d) X, after checking it."""
        if n < 2 or d < 1:
            raise ValueError(f"PCA needs at least 2 samples and 1 feature, got X of shape {(n, d)}")
        k_max = min(n, d)
        k = k_max if self.n_components is None else self.n_components
        if k > k_max:
            raise ValueError(f"n_components={k} must be <= min(n_samples, n_features) = {k_max}")
        return k

    def _fit_scatter(self, n, mean, scatter, k, refuse):
        """Fit from the count, mean and centered scatter matrix of all the rows.

        :mod:`fastnn.dask` calls it with the scatter its tree reduction
        merged.  ``refuse(what)`` raises the error for a statistic that is
        not finite (it knows where X is).
        """
        cov = scatter / (n - 1)
        # Symmetrize: the float32 product can differ in the last bit across
        # the diagonal, which eigh ignores (it reads one triangle).
        cov = (cov + cov.T) / 2
        if not np.isfinite(cov).all():
            refuse("the covariance")
        eigval, eigvec = np.linalg.eigh(cov)
        self._set_axes(mean, eigval[::-1], eigvec[:, ::-1].T, float(np.trace(cov)), int(n), k)

    def _set_axes(self, mean, eigval, eigvec, total_var, n, k):
        """Keep the first k axes (rows of eigvec), signed deterministically."""
        eigval = np.maximum(eigval[:k], 0.0)  # rounding can make ~0 eigenvalues negative
        eigvec = np.ascontiguousarray(eigvec[:k])
        rows = np.arange(k)
        sign = np.sign(eigvec[rows, np.argmax(np.abs(eigvec), axis=1)])
        sign[sign == 0] = 1.0
        eigvec *= sign[:, None]
        self.mean_ = mean
        self.components_ = eigvec
        self.explained_variance_ = eigval
        self.explained_variance_ratio_ = (eigval / total_var if total_var > 0
                                          else np.zeros_like(eigval))
        self.n_components_ = k
        self.n_features_in_ = eigvec.shape[1]
        self.n_samples_seen_ = n
        self._proj = {}

    @staticmethod
    def _center(X, mean, out):
        _k.center_scale.pick(X.size)(X, mean, np.ones_like(mean), out)

    @staticmethod
    def _block_rows(d):
        # At least 8 * d rows, so the O(d^2) merge of each block's covariance
        # stays small next to the block's O(rows * d^2) product.
        return max(_PCA_BLOCK_ELEMENTS // d, 8 * d)

    @classmethod
    def _scatter(cls, X):
        """(count, mean, centered scatter matrix), float64, reading X from memory once.

        The scatter is :math:`X_c^T X_c`; one row gives a zero matrix.
        """
        n, d = X.shape
        rows = cls._block_rows(d)
        buf = np.empty((min(rows, n), d), dtype=X.dtype)
        count, mean, comoment = 0.0, np.zeros(d), np.zeros((d, d))
        for b0 in range(0, n, rows):
            xb = X[b0:b0 + rows]
            cb = buf[:xb.shape[0]]
            # Serial centering: a numba parallel region here would leave its
            # OpenMP threads spinning against the BLAS threads of the product.
            mb = _k.center_columns.serial(xb, 1, cb)
            block = (cb.T @ cb).astype(np.float64, copy=False)
            count, mean, comoment = merge_scatter(count, mean, comoment,
                                                  float(xb.shape[0]), mb, block)
        return count, mean, comoment

    def _projection(self, dtype):
        """components_.T, scaled for whitening, in ``dtype`` (cached)."""
        p = self._proj.get(np.dtype(dtype))
        if p is None:
            p = self.components_.T
            if self.whiten:
                p = p / np.sqrt(self.explained_variance_ + self.eps)
            p = np.ascontiguousarray(p, dtype=dtype)
            self._proj[np.dtype(dtype)] = p
        return p

    def _project(self, X):
        n, d = X.shape
        p = self._projection(X.dtype)
        out = memory.empty((n, self.n_components_), X.dtype)
        rows = self._block_rows(d)
        buf = np.empty((min(rows, n), d), dtype=X.dtype)
        ones = np.ones(d)
        for b0 in range(0, n, rows):
            xb = X[b0:b0 + rows]
            cb = buf[:xb.shape[0]]
            _k.center_scale.serial(xb, self.mean_, ones, cb)
            np.matmul(cb, p, out=out[b0:b0 + rows])
        return out

    def transform(self, X):
        """Project ``X`` onto the principal axes (whitened if ``whiten``).

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            Samples (not modified).

        Returns
        -------
        numpy.ndarray, shape (n_samples, n_components_)
            With X's dtype (float64 for integer input).

        Raises
        ------
        NotFittedError
            Called before fit.
        ValueError
            Wrong number of features or dimensions.
        TypeError
            Unsupported dtype.
        """
        self._check_fitted()
        X = _as_samples(X)
        self._check_features(X, self.n_features_in_)
        return self._project(X)

    def inverse_transform(self, Y):
        """Map projected samples back to feature space.

        Parameters
        ----------
        Y : array_like, shape (n_samples, n_components_)
            Output of :meth:`transform`.

        Returns
        -------
        numpy.ndarray, shape (n_samples, n_features)
            ``Y @ components_ + mean_`` (whitening undone first); exact when
            all components are kept, the best rank-k approximation otherwise.

        Raises
        ------
        NotFittedError, ValueError, TypeError
            As :meth:`transform`.
        """
        self._check_fitted()
        Y = _as_samples(Y, "Y")
        self._check_features(Y, self.n_components_, "Y")
        q = self.components_
        if self.whiten:
            q = q * np.sqrt(self.explained_variance_ + self.eps)[:, None]
        out = Y @ q.astype(Y.dtype)
        _k.scale_shift.pick(out.size)(out, np.ones(self.n_features_in_), self.mean_, out)
        return out
