"""scikit-learn estimators on the compiled engine: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in replacements for :class:`sklearn.neural_network.MLPClassifier` and
:class:`sklearn.neural_network.MLPRegressor` (same parameters, defaults,
fitted attributes and convergence rule for the ``"adam"`` and ``"sgd"``
solvers), trained by :func:`fastnn.train.fit` one epoch at a time, so each
epoch runs as one numba call when the compiled engine can take the model.
Extra parameters add what scikit-learn's MLP lacks: dropout, batch or layer
normalization, AdamW weight decay, a warmup-cosine schedule, max-norm, the initializer,
class weights, the dtype (float32 by default), callbacks and a validation
loss curve.  Weighted fits (``sample_weight``, ``class_weight``) run on the
compiled engine too.

The classifier's output layer is scikit-learn's: a softmax over the classes
(multiclass), one logistic unit (binary: ``n_outputs_ == 1``), or one
logistic unit per label for a multilabel indicator ``y`` (``classes_`` is
``arange(n_labels)``, ``predict`` returns the 0/1 indicator matrix, ``score``
the subset accuracy); the logistic outputs train with
``train.fit(loss="binary_cross_entropy")``, and ``loss_`` is scikit-learn's
binary log-loss (summed over the labels).

Differences from scikit-learn that remain (documented, on purpose):

* ``solver="lbfgs"`` is refused with a message; ``class_weight`` (a fastnn
  extra) is refused for multilabel targets.
* With ``sample_weight`` and several batches per epoch, the L2 term is
  divided by the expected weight sum of a batch, scikit-learn's by each
  batch's own (the same for one full batch and for unit weights).
* Adam adds ``epsilon`` after the bias correction (torch's rule),
  scikit-learn before; both are Adam.

Examples
--------
>>> import numpy as np
>>> from fastnn.estimators import MLPClassifier
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((200, 4))
>>> y = np.where(X[:, 0] > 0, "yes", "no")
>>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
>>> clf = clf.fit(X, y)
>>> clf.classes_.tolist(), clf.score(X, y) > 0.9
(['no', 'yes'], True)
"""
import copy
import functools
import itertools
import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy import sparse
from scipy.special import expit, log_expit
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from fastnn import nn, optim, train
from fastnn.functional import log_softmax, softmax

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = {"identity": None, "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_BCE = "binary_cross_entropy"
_SEED_BOUND = 2 ** 31 - 1


def _sklearn_init(rs, units, activation):
    """scikit-learn's MLP weight init (``_init_coef``), drawn from ``rs`` in its order:
    [(coef (fan_in, fan_out), intercept (fan_out,)), ...], Glorot-uniform."""
    factor = 2.0 if activation == "logistic" else 6.0
    out = []
    for fan_in, fan_out in itertools.pairwise(units):
        bound = np.sqrt(factor / (fan_in + fan_out))
        out.append((rs.uniform(-bound, bound, (fan_in, fan_out)),
                    rs.uniform(-bound, bound, fan_out)))
    return out


class _BaseMLP(BaseEstimator):
    """The shared fit loop; subclasses say the loss, the targets and the score."""

    _parameter_constraints: ClassVar[dict] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "solver": [StrOptions({"adam", "sgd", "lbfgs"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "batch_norm": ["boolean"],
        "normalization": [None, StrOptions({"batch", "layer"})],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr_schedule": [StrOptions({"constant", "warmup_cosine"})],
        "warmup": [Interval(Real, 0, 1, closed="both")],
        "max_norm": [None, Interval(Real, 0, None, closed="neither")],
        "init": [StrOptions({"sklearn", "xavier", "he", "normal"})],
        "dtype": [type, str, np.dtype],
        "callbacks": [None, list, tuple],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, batch_norm=False, normalization=None, weight_decay=0.0,
                 lr_schedule="constant",
                 warmup=0.1, max_norm=None, init="sklearn", dtype=np.float32, callbacks=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.normalization = normalization
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.warmup = warmup
        self.max_norm = max_norm
        self.init = init
        self.dtype = dtype
        self.callbacks = callbacks

    # -- validation ---------------------------------------------------------
    def _check_settings(self):
        """Checks scikit-learn's parameter table cannot express; called at fit time."""
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not supported by fastnn's MLP (it trains on "
                             "mini-batches); use solver='adam' or solver='sgd'")
        sizes = np.atleast_1d(np.asarray(self.hidden_layer_sizes))
        if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or np.any(sizes < 1):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got "
                             f"{self.hidden_layer_sizes!r}")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        for i, cb in enumerate(self.callbacks or ()):
            if not callable(cb):
                raise TypeError(f"callbacks[{i}] is a {type(cb).__name__}, not a callable")
        return [int(s) for s in sizes], self._normalization()

    def _normalization(self):
        """The hidden layers' normalization: None, "batch" or "layer".

        ``batch_norm=True`` is the older spelling of ``normalization="batch"``;
        together with ``normalization="layer"`` it is a contradiction, refused
        (checked at fit time: scikit-learn's ``__init__`` only stores).
        """
        if self.batch_norm and self.normalization == "layer":
            raise ValueError("batch_norm=True asks for batch normalization but "
                             "normalization='layer' for layer normalization; pass one of them "
                             "(batch_norm=True is an alias of normalization='batch')")
        return "batch" if self.batch_norm else self.normalization

    def _validate_X(self, X, reset):
        return validate_data(self, X, reset=reset, dtype=(np.float64, np.float32),
                             accept_sparse=False, order="C")

    # -- the network --------------------------------------------------------
    def _build(self, n_in, n_out, rng):
        """A new Sequential, optimizer and schedule state; sizes from the data."""
        sizes, norm = self._check_settings()
        dtype = np.dtype(self.dtype)
        act = _ACTIVATIONS[self.activation]
        init = "xavier" if self.init == "sklearn" else self.init   # "sklearn": set afterwards
        layers, width = [], n_in
        for h in sizes:
            seed = int(rng.integers(_SEED_BOUND))
            if norm is not None:
                layers += [nn.Linear(width, h, init=init, rng=seed, dtype=dtype),
                           nn.BatchNorm1d(h, dtype=dtype) if norm == "batch"
                           else nn.LayerNorm(h, dtype=dtype)]
                layers += [_ACTIVATION_LAYERS[act]()] if act else []
            else:
                layers.append(nn.Linear(width, h, activation=act, init=init, rng=seed,
                                        dtype=dtype))
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
            width = h
        layers.append(nn.Linear(width, n_out, init="xavier", rng=int(rng.integers(_SEED_BOUND)),
                                dtype=dtype))
        self._model = nn.Sequential(*layers)
        self._optimizer = self._make_optimizer()
        self._rng = rng
        self._global_step = 0
        self._lr = self.learning_rate_init * self._lr_factor()
        self.n_layers_ = len(sizes) + 2
        self.n_outputs_ = n_out
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0

    def _loss_scale(self):
        """scikit-learn's reported loss over fastnn's: fastnn's "mse" is twice
        scikit-learn's squared loss (both a mean over every element); its
        "binary_cross_entropy" averages over the labels, where scikit-learn's
        binary log-loss sums them (a factor n_outputs_)."""
        if self._loss == "mse":
            return 0.5
        return float(self._n_out) if self._loss == _BCE else 1.0

    def _grad_scale(self):
        """scikit-learn's loss gradient over fastnn's.  scikit-learn back-propagates
        ``(prediction - target) / batch`` for every output, whichever its loss: for
        the squared loss that is n_outputs_ / 2 times fastnn's mse gradient
        (``2 (prediction - target) / (batch n_outputs_)``), for the binary
        log-loss n_outputs_ times fastnn's (a mean over the labels)."""
        if self._loss == "mse":
            return 0.5 * self._n_out
        return float(self._n_out) if self._loss == _BCE else 1.0

    def _lr_factor(self):
        # Plain SGD takes the rate times the gradient scale to take scikit-learn's
        # steps; Adam is scale invariant.
        return self._grad_scale() if self.solver == "sgd" else 1.0

    def _make_optimizer(self):
        params = self._model.parameters()
        if self.solver == "sgd":
            return optim.SGD(params, lr=self.learning_rate_init, momentum=self.momentum,
                             nesterov=self.nesterovs_momentum and self.momentum > 0,
                             weight_decay=self.weight_decay)
        cls = optim.AdamW if self.weight_decay > 0 else optim.Adam
        return cls(params, lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                   eps=self.epsilon, weight_decay=self.weight_decay)

    def _initialized(self):
        return hasattr(self, "_model")

    def _linears(self):
        return [m for m in self._model if type(m) is nn.Linear]

    def _publish(self):
        """Refresh coefs_ / intercepts_ (scikit-learn's (n_in, n_out) layout) from the model."""
        lin = self._linears()
        self.coefs_ = [np.asarray(m.weight.data).T for m in lin]
        self.intercepts_ = [np.asarray(m.bias.data) for m in lin]

    # -- training -----------------------------------------------------------
    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", stacklevel=3)
        return int(np.clip(self.batch_size, 1, n))

    def _schedule(self, n_batches):
        """The step -> lr callable for this fit call (None: the optimizer's own lr)."""
        offset = self._global_step
        if self.lr_schedule == "warmup_cosine":
            total = max(1, self.max_iter * n_batches)
            sched = optim.warmup_cosine(self.learning_rate_init * self._lr_factor(),
                                        int(self.warmup * total), total)
            return lambda step: sched(offset + step)
        self._optimizer.lr = self._lr
        return None

    def _train(self, X, y, sw, validation, epochs):
        """Up to ``epochs`` epochs in ONE train.fit call (the engine is planned once);
        :meth:`_after_epoch` keeps scikit-learn's books and may stop it sooner."""
        n = X.shape[0]
        bs = self._batch_size(n)
        n_batches = train.steps_per_epoch(n, bs)
        # scikit-learn adds alpha * W / (the batch's weight sum) to its gradient;
        # fastnn's penalty l2 * sum(W^2) has gradient 2 * l2 * W, and fastnn's
        # gradients are scikit-learn's divided by _grad_scale().  One l2 serves every
        # batch: the batch's expected weight sum (exact for unit weights and for one
        # full batch).
        weight_sum = bs * (1.0 if sw is None else float(sw.mean()))
        l2 = self.alpha / weight_sum * 0.5 / self._grad_scale()
        self._stopped = False
        train.fit(self._model, X, y, loss=self._loss, optimizer=self._optimizer,
                  epochs=epochs, batch_size=bs, schedule=self._schedule(n_batches),
                  validation=None if validation is None else validation[:2],
                  shuffle=self.shuffle, rng=self._rng, progress=False, l2=l2,
                  max_norm=self.max_norm, sample_weight=sw,
                  callbacks=[functools.partial(self._after_epoch, n, n_batches, validation)])

    def _after_epoch(self, n, n_batches, validation, history):
        """scikit-learn's end-of-epoch bookkeeping; True stops training."""
        self._global_step += n_batches
        self._engine = history["engine"]
        # scikit-learn's loss_: its data loss plus its penalty 0.5 alpha |W|^2 / batch
        scale = self._loss_scale()
        self.loss_ = scale * history["train_loss"][-1] + self._grad_scale() * history["penalty"][-1]
        self.loss_curve_.append(self.loss_)
        self.n_iter_ += 1
        self.t_ += n
        if validation is not None:
            self.validation_loss_curve_.append(scale * history["val_loss"][-1])
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        self._track(validation)
        self._advance_lr()
        self._stopped = self._run_callbacks() or self._should_stop()
        if self.lr_schedule != "warmup_cosine":
            self._optimizer.lr = self._lr
        return self._stopped

    def _split(self, X, y, sw, rs):
        """(X, y, sw, (X_val, y_val, sw_val)) for early stopping, as scikit-learn splits."""
        if not self.early_stopping:
            return X, y, sw, None
        # As scikit-learn: only a classifier with one output (binary) is stratified;
        # multiclass (one output per class), multilabel and regression are not.
        stratify = y if self._loss == _BCE and self._n_out == 1 else None
        idx, idx_val = train_test_split(
            np.arange(X.shape[0]), random_state=rs,
            test_size=self.validation_fraction, stratify=stratify)
        X, X_val, y, y_val = X[idx], X[idx_val], y[idx], y[idx_val]
        sw, sw_val = (None, None) if sw is None else (sw[idx], sw[idx_val])
        if X_val.shape[0] < 2:
            raise ValueError(f"validation_fraction={self.validation_fraction} leaves "
                             f"{X_val.shape[0]} validation sample(s); at least 2 are needed")
        return X, y, sw, (X_val, y_val, sw_val)

    def _fit_loop(self, X, y, sw, validation, incremental):
        if not incremental or not hasattr(self, "best_loss_"):
            self._reset_tracking(validation is not None)
        self.n_iter_ = 0   # as scikit-learn: the epochs of this call (partial_fit: 1)
        self._train(X, y, sw, validation, 1 if incremental else self.max_iter)
        if not incremental and not self._stopped and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=4)
        if validation is not None and self._best_state is not None:
            self._model.load_state_dict(self._best_state)
        self._publish()
        return self

    def _reset_tracking(self, validating):
        self._no_improvement_count = 0
        self._best_state = None
        if validating:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.validation_loss_curve_ = []
            self.best_loss_ = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _track(self, validation):
        """scikit-learn's _update_no_improvement_count, on this epoch's numbers."""
        if validation is not None:
            X_val, y_val, sw_val = validation
            score = self._score_arrays(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            worse = score < self.best_validation_score_ + self.tol
            self._no_improvement_count = self._no_improvement_count + 1 if worse else 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_state = self._model.state_dict()
        else:
            last = self.loss_curve_[-1]
            worse = last > self.best_loss_ - self.tol
            self._no_improvement_count = self._no_improvement_count + 1 if worse else 0
            self.best_loss_ = min(self.best_loss_, last)

    def _advance_lr(self):
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._lr = (self.learning_rate_init * self._lr_factor()
                        / (self.t_ + 1) ** self.power_t)

    def _should_stop(self):
        """scikit-learn's trigger_stopping: 'adaptive' SGD divides the rate by 5 first."""
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        if self.solver == "sgd" and self.learning_rate == "adaptive" and \
                self._lr / self._lr_factor() > 1e-6:
            self._lr /= 5.0
            self._no_improvement_count = 0
            if self.verbose:
                print(f"Setting learning rate to {self._lr / self._lr_factor():f}")
            return False
        if self.verbose:
            what = "Validation score" if self.early_stopping else "Training loss"
            print(f"{what} did not improve more than tol={self.tol} for "
                  f"{self.n_iter_no_change} consecutive epochs. Stopping.")
        return True

    def _run_callbacks(self):
        """Call each callback with (self, info); any True return stops training."""
        info = {"epoch": self.n_iter_, "loss": self.loss_, "engine": self._engine}
        if self.validation_scores_:
            info["validation_score"] = self.validation_scores_[-1]
            info["validation_loss"] = self.validation_loss_curve_[-1]
        stop = False
        for cb in self.callbacks or ():
            stop = bool(cb(self, info)) or stop
        return stop

    def _fit(self, X, y, sample_weight, incremental):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None")
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        saved = dict(self.__dict__)
        try:
            X, y, sw, validation = self._prepare(X, y, sample_weight, incremental)
        except BaseException:
            # a refused fit leaves a fitted estimator as it was
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        return self._fit_loop(X, y, sw, validation, incremental)

    def _prepare(self, X, y, sample_weight, incremental):
        """(X, y, sw, validation) checked and encoded; a new model on a first fit."""
        first = not (self._initialized() and (incremental or self.warm_start))
        X = self._validate_X(X, reset=first)
        y = self._encode_targets(X, y, first, incremental)
        sw = self._sample_weight(y, sample_weight, incremental)
        rs = check_random_state(self.random_state)
        if first:
            seed = copy.deepcopy(rs).randint(_SEED_BOUND)
            self._build(X.shape[1], self._n_out, np.random.default_rng(seed))
            # drawn whatever the init: the early-stopping split comes after them
            weights = _sklearn_init(rs, [X.shape[1], *self._check_settings()[0], self._n_out],
                                    self.activation)
            if self.init == "sklearn":
                linears = [m for m in self._model.modules() if isinstance(m, nn.Linear)]
                for layer, (coef, intercept) in zip(linears, weights, strict=True):
                    layer.weight.data[...] = coef.T
                    layer.bias.data[...] = intercept
        else:
            self._check_settings()
        if incremental:
            return X, y, sw, None
        # scikit-learn splits off the early-stopping rows with its random state
        # after its weight init: the same state gives the same rows.
        return self._split(X, y, sw, rs)

    def _sample_weight(self, y, sample_weight, incremental):
        """Validated per-sample weights (float64) or None."""
        sw = train.check_sample_weight(sample_weight, y.shape[0])
        if sw is not None and not sw.any():
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return sw

    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and targets y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense input (sparse matrices are refused); float32/float64 or a
            DataFrame (its column names become ``feature_names_in_``).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels or a multilabel 0/1 indicator matrix (classifier),
            real targets (regressor).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights: each batch's loss is the weighted mean of
            its samples' losses, as scikit-learn's.

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            Bad parameters (named), sparse, empty, non-finite or mis-shaped
            input, ``solver="lbfgs"``, multi-output (non-indicator) class targets.

        Examples
        --------
        >>> import numpy as np
        >>> from fastnn.estimators import MLPRegressor
        >>> X = np.linspace(-1, 1, 100).reshape(-1, 1)
        >>> reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, random_state=0)
        >>> reg = reg.fit(X, 2 * X.ravel())
        >>> reg.n_iter_
        20
        """
        self._validate_params()
        return self._fit(X, y, sample_weight, incremental=False)

    def _forward(self, X):
        check_is_fitted(self, "coefs_")
        return self._scores(self._validate_X(X, reset=False))

    def _scores(self, X):
        """Raw outputs in float64 for validated X."""
        return np.asarray(train.predict(self._model, X), dtype=np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.target_tags.single_output = True
        return tags


_ACTIVATION_LAYERS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's MLPClassifier on fastnn's engine.

    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose,
    warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
    beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As :class:`sklearn.neural_network.MLPClassifier` (same defaults);
        ``solver="lbfgs"`` is refused at fit time and ``max_fun`` (an lbfgs
        setting) is accepted and unused.
    dropout : float in [0, 1), default 0
        Inverted dropout after every hidden layer.
    batch_norm : bool, default False
        Alias of ``normalization="batch"`` (kept for existing code);
        ``batch_norm=True`` with ``normalization="layer"`` is refused at fit.
    normalization : {None, "batch", "layer"}, default None
        A normalization layer between each hidden Linear layer and its
        activation: BatchNorm1d (statistics over the batch, running
        statistics for prediction) or LayerNorm (statistics over each
        sample's hidden units, the same in training and prediction).
    weight_decay : float >= 0, default 0
        Decoupled weight decay (AdamW) with ``solver="adam"``, coupled
        (added to the gradient) with ``"sgd"``; besides ``alpha``.
    lr_schedule : {"constant", "warmup_cosine"}, default "constant"
        ``"warmup_cosine"``: linear warmup over the first ``warmup`` fraction
        of ``max_iter`` epochs' steps to ``learning_rate_init``, then cosine
        decay to 0 (replaces ``learning_rate``).
    warmup : float in [0, 1], default 0.1
    max_norm : float > 0 or None, default None
        Max-norm constraint on every neuron's incoming weights.
    init : {"sklearn", "xavier", "he", "normal"}, default "sklearn"
        Initializer of the weights.  "sklearn": scikit-learn's Glorot-uniform
        draws from ``random_state``, so the initial weights equal scikit-learn's
        for the same ``random_state``.  The others: fastnn's initializers for
        the hidden layers (the output layer: xavier).
    class_weight : dict, "balanced" or None, default None
        Weights of the classes in the loss: sample i weighs
        ``class_weight[y_i] * sample_weight[i]``; "balanced" is
        ``n_samples / (n_classes * bincount(y))`` (scikit-learn's rule; refused
        by ``partial_fit``, which sees one batch at a time).  Binary and
        multiclass targets only (refused for multilabel).
    dtype : float32 or float64, default float32
    callbacks : list of callables or None
        Each is called after every epoch as ``cb(estimator, info)`` with
        ``info`` = {"epoch", "loss", "engine" and, with early stopping,
        "validation_score", "validation_loss"}; a True return stops training.

    Attributes
    ----------
    classes_, loss_, loss_curve_, best_loss_, validation_scores_,
    best_validation_score_, n_iter_, t_, n_features_in_, feature_names_in_,
    coefs_, intercepts_, n_layers_, n_outputs_, out_activation_
        As scikit-learn's: ``n_outputs_`` is the number of classes with
        ``out_activation_ = "softmax"``, 1 for a binary problem and the
        number of labels for a multilabel one, both ``"logistic"``.
    validation_loss_curve_ : list of float
        Validation loss after every epoch (with early stopping): the
        cross-entropy, or the binary log-loss summed over the labels.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastnn.estimators import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    _loss = "cross_entropy"
    _parameter_constraints: ClassVar[dict] = {**_BaseMLP._parameter_constraints,
                                              "class_weight": [None, dict,
                                                               StrOptions({"balanced"})]}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, batch_norm=False, normalization=None, weight_decay=0.0,
                 lr_schedule="constant",
                 warmup=0.1, max_norm=None, init="sklearn", class_weight=None,
                 dtype=np.float32, callbacks=None):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            dropout=dropout, batch_norm=batch_norm, normalization=normalization,
            weight_decay=weight_decay,
            lr_schedule=lr_schedule, warmup=warmup, max_norm=max_norm, init=init,
            dtype=dtype, callbacks=callbacks)
        self.class_weight = class_weight

    def _sample_weight(self, y, sample_weight, incremental):
        """sample_weight times the class weight of each sample's label (None if neither)."""
        sw = super()._sample_weight(y, sample_weight, incremental)
        if self.class_weight is None:
            return sw
        if self._multilabel:
            raise ValueError("class_weight is not supported for multilabel targets (a sample "
                             "has several labels); pass sample_weight instead")
        if incremental and self.class_weight == "balanced":
            raise ValueError("class_weight='balanced' is not supported for partial_fit (it "
                             "needs the whole data's class counts); pass a dict instead")
        per_class = compute_class_weight(self.class_weight, classes=self.classes_,
                                         y=self.classes_[y])
        cw = per_class[y]
        return cw if sw is None else cw * sw

    def _encode_targets(self, X, y, first, incremental):
        """Class codes (n,) for binary and multiclass y, a 0/1 int (n, K) matrix for a
        multilabel indicator y; sets the loss and the output layer as scikit-learn's:
        softmax over C classes, or one logistic output per label (1 for binary)."""
        kind = type_of_target(y)
        if kind in ("multiclass-multioutput", "continuous-multioutput"):
            raise ValueError(f"fastnn's MLPClassifier takes class labels or a multilabel "
                             f"indicator matrix; got a {kind} target of shape {np.shape(y)}")
        if kind not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"Unknown label type: {kind!r}; MLPClassifier needs class labels")
        multilabel = kind == "multilabel-indicator"
        if not first and multilabel != self._multilabel:
            was = "a multilabel indicator" if self._multilabel else "class labels"
            raise ValueError(f"y is a {kind} target but this estimator was fitted on {was}")
        self._multilabel = multilabel
        if multilabel:
            return self._encode_multilabel(X, y, first, incremental)
        y = column_or_1d(y, warn=True)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
        if first and not incremental:
            self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"MLPClassifier needs samples of at least 2 classes in the data; "
                             f"got 1 class: {self.classes_[0]!r}")
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(f"`y` has classes not in `self.classes_`: {unseen.tolist()!r}; "
                             f"self.classes_ has {self.classes_.tolist()!r}")
        binary = len(self.classes_) == 2
        self._loss = _BCE if binary else "cross_entropy"
        self.out_activation_ = "logistic" if binary else "softmax"
        self._n_out = 1 if binary else len(self.classes_)
        return np.searchsorted(self.classes_, y).astype(np.int64)

    def _encode_multilabel(self, X, y, first, incremental):
        """The indicator matrix as 0/1 ints (nonzero is 1, as scikit-learn's LabelBinarizer)."""
        y = y.toarray() if sparse.issparse(y) else np.asarray(y)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
        n_labels = y.shape[1]
        if first and not incremental:
            self.classes_ = np.arange(n_labels)
        if not np.array_equal(self.classes_, np.arange(n_labels)):
            raise ValueError(f"y is a multilabel indicator of {n_labels} labels, so classes_ "
                             f"must be {list(range(n_labels))}; got "
                             f"{self.classes_.tolist()!r}")
        self._loss, self.out_activation_, self._n_out = _BCE, "logistic", n_labels
        return (y != 0).astype(np.int64)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch of updates over (X, y), keeping the optimizer's state between calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multilabel indicator matrix.
        classes : array-like of shape (n_classes,), optional
            Every class of the whole problem; required on the first call
            (for a multilabel y, ``range(n_labels)``).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            ``classes`` missing on the first call or different later, labels
            outside ``classes_``, bad input.

        Examples
        --------
        >>> import numpy as np
        >>> from fastnn.estimators import MLPClassifier
        >>> X = np.random.default_rng(0).standard_normal((40, 3))
        >>> clf = MLPClassifier((8,), random_state=0)
        >>> clf.partial_fit(X, X[:, 0] > 0, classes=[False, True]).n_iter_
        1
        """
        if not self._initialized():
            self._validate_params()
        _check_partial_fit_first_call(self, classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def _score_arrays(self, X, y, sw):
        return accuracy_score(y, self._decide(self._scores(X)), sample_weight=sw)

    def _decide(self, scores):
        """Encoded predictions from raw scores: class codes, or the 0/1 indicator matrix.

        A logistic output predicts 1 where its probability is above 0.5, i.e.
        its score is above 0 (scikit-learn's threshold).
        """
        if self._multilabel:
            return (scores > 0).astype(np.int64)
        if self.n_outputs_ == 1:
            return (scores[:, 0] > 0).astype(np.int64)
        return scores.argmax(axis=1)

    def predict(self, X):
        """Predicted class labels, shape (n_samples,).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), or (n_samples, n_labels)
            Labels from ``classes_``; for a multilabel fit, the 0/1 indicator
            matrix (a label is on where its probability is above 0.5).

        Examples
        --------
        >>> import numpy as np
        >>> from fastnn.estimators import MLPClassifier
        >>> X = np.arange(20.0).reshape(-1, 1)
        >>> clf = MLPClassifier((4,), max_iter=5, random_state=0).fit(X, X.ravel() > 9)
        >>> clf.predict(X).shape
        (20,)
        """
        scores = self._forward(X)   # first: NotFittedError before classes_ is read
        decided = self._decide(scores)
        return decided if self._multilabel else self.classes_[decided]

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64
            Softmax rows summing to 1 (multiclass); ``[1 - p, p]`` with p the
            logistic output (binary); one independent sigmoid per label
            (multilabel).
        """
        return self._proba(self._forward(X), log=False)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably from the scores.

        Log-softmax (multiclass), or log-sigmoid: ``[log sigmoid(-s),
        log sigmoid(s)]`` for binary, ``log sigmoid(s)`` per label for
        multilabel (no log of a rounded 0).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples, n_classes)
        """
        return self._proba(self._forward(X), log=True)

    def _proba(self, scores, log):
        """(Log-)probabilities from raw scores: softmax, or sigmoids (binary: of -s and s,
        so that neither column is a rounded 1 - p)."""
        if self.out_activation_ == "softmax":
            return (log_softmax if log else softmax)(scores, axis=1)
        if not self._multilabel:
            scores = np.c_[-scores[:, 0], scores[:, 0]]
        return log_expit(scores) if log else expit(scores)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's MLPRegressor on fastnn's engine.

    Parameters
    ----------
    loss : {"squared_error"}, default "squared_error"
        scikit-learn's other choice, "poisson", is refused.
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose,
    warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
    beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As :class:`sklearn.neural_network.MLPRegressor` (same defaults;
        ``loss_`` is scikit-learn's half squared error plus its L2 term).
    dropout, batch_norm, normalization, weight_decay, lr_schedule, warmup, max_norm, init,
    dtype, callbacks
        As :class:`MLPClassifier`.

    Attributes
    ----------
    loss_, loss_curve_, best_loss_, validation_scores_, best_validation_score_,
    n_iter_, t_, n_features_in_, feature_names_in_, coefs_, intercepts_, n_layers_,
    n_outputs_, out_activation_
        As scikit-learn's (validation scores are R^2).
    validation_loss_curve_ : list of float
        Validation half squared error after every epoch (with early stopping).

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from fastnn.estimators import MLPRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> MLPRegressor(max_iter=5, random_state=0).fit(X, y).predict(X[:3]).shape
    (3,)
    """

    _loss = "mse"
    _parameter_constraints: ClassVar[dict] = {**_BaseMLP._parameter_constraints,
                              "loss": [StrOptions({"squared_error"})]}

    # scikit-learn's MLPRegressor takes ``loss`` first (1.7+), so it is first here too.
    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, batch_norm=False, normalization=None, weight_decay=0.0,
                 lr_schedule="constant",
                 warmup=0.1, max_norm=None, init="sklearn", dtype=np.float32, callbacks=None):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            dropout=dropout, batch_norm=batch_norm, normalization=normalization,
            weight_decay=weight_decay,
            lr_schedule=lr_schedule, warmup=warmup, max_norm=max_norm, init=init,
            dtype=dtype, callbacks=callbacks)
        self.loss = loss

    def _encode_targets(self, X, y, first, incremental):
        y = _check_y_regression(y)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
        width = 1 if y.ndim == 1 else y.shape[1]
        if not first and width != self.n_outputs_:
            raise ValueError(f"y has {width} output(s); this estimator was fitted with "
                             f"{self.n_outputs_}")
        self.out_activation_ = "identity"
        self._n_out = width
        return y.reshape(-1, width)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch of updates over (X, y), keeping the optimizer's state between calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from fastnn.estimators import MLPRegressor
        >>> X = np.random.default_rng(0).standard_normal((40, 3))
        >>> reg = MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
        >>> reg.partial_fit(X, X[:, 0]).t_
        40
        """
        if not self._initialized():
            self._validate_params()
        return self._fit(X, y, sample_weight, incremental=True)

    def _score_arrays(self, X, y, sw):
        return r2_score(y, self._scores(X), sample_weight=sw)

    def predict(self, X):
        """Predicted targets: shape (n_samples,) for one output, else (n_samples, n_outputs).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64
        """
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _check_y_regression(y):
    """Finite real targets, (n,) or (n, k), as float64 (scikit-learn's messages)."""
    from sklearn.utils import check_array

    return check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
