"""asv benchmarks: what users run on top of the kernels.

* ``TrainingFit``: ``train.fit`` of the lesson's nets on the compiled engine
  (float32, Adam, shuffled batches), a fixed number of epochs per call;
* ``EstimatorFit``: ``fastnn.estimators.MLPClassifier`` with its defaults
  on two data sets scikit-learn ships, a fixed number of epochs;
* ``Predict``: single-row and whole-set ``predict_proba`` of a fitted
  estimator, and ``train.predict`` of a Sequential.

Only public API, so that every commit of the history runs the same calls.
``setup`` trains once (compiling or loading numba's cache), so compilation is
never timed here; ``bench_startup`` times it.
"""
import warnings

import numpy as np

# name -> (data set, layer sizes, batch size, epochs per timed fit, loss)
CASES = {
    "breast_cancer 30-16-16-2 b32": ("breast_cancer", (30, 16, 16, 2), 32, 10, "cross_entropy"),
    "digits 64-128-10 b64": ("digits", (64, 128, 10), 64, 4, "cross_entropy"),
    "digits 64-256-256-10 b32": ("digits", (64, 256, 256, 10), 32, 1, "cross_entropy"),
    "synthetic 4-32-16-4 b32 (MSE)": ("synthetic", (4, 32, 16, 4), 32, 10, "mse"),
}


def load(name):
    """(X, y): standardized float32 features of a data set scikit-learn ships, or synthetic."""
    if name == "synthetic":
        rng = np.random.default_rng(0)
        X = rng.standard_normal((1024, 4))
        y = np.tanh(X @ rng.standard_normal((4, 4))).astype(np.float32)
    else:
        from sklearn import datasets
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    sd = X.std(axis=0)
    sd[sd == 0] = 1
    return ((X - X.mean(axis=0)) / sd).astype(np.float32), y


def mlp(sizes, seed=0):
    """A ReLU MLP of the given widths (He-normal weights, as fastnn.nn.Linear draws them)."""
    from fastnn import nn
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], rng=seed + i))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TrainingFit:
    """``train.fit`` for a fixed number of epochs (the name's last number), compiled engine."""

    params = [list(CASES)]
    param_names = ["case"]
    timeout = 300
    repeat = (3, 10, 4.0)

    def setup(self, case):
        from fastnn import optim, train
        name, sizes, batch, epochs, loss = CASES[case]
        X, y = load(name)
        model = mlp(sizes)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        self.fit = lambda: train.fit(model, X, y, loss=loss, optimizer=opt, epochs=epochs,
                                     batch_size=batch, rng=0, progress=False, engine="compiled")
        self.fit()

    def time_fit(self, case):
        self.fit()


class EstimatorFit:
    """``MLPClassifier(random_state=0, max_iter=20)`` (its other defaults) on a data set."""

    params = [["digits", "breast_cancer"]]
    param_names = ["data"]
    timeout = 300
    repeat = (3, 7, 6.0)

    def setup(self, data):
        from fastnn.estimators import MLPClassifier
        self.X, self.y = load(data)
        self.make = lambda: MLPClassifier(random_state=0, max_iter=20, tol=0.0)
        self.time_fit(data)

    def time_fit(self, data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # ConvergenceWarning: max_iter is the point
            self.make().fit(self.X, self.y)


class Predict:
    """Inference of a fitted breast-cancer classifier: one row and all 569."""

    timeout = 300

    def setup(self):
        from fastnn import train
        from fastnn.estimators import MLPClassifier
        self.X, y = load("breast_cancer")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.est = MLPClassifier(random_state=0, max_iter=5).fit(self.X, y)
        self.row = self.X[:1].copy()
        self.model = mlp((30, 16, 16, 2))
        self.predict = lambda X: train.predict(self.model, X)
        self.time_estimator_predict_proba_one_row()
        self.time_estimator_predict_proba_569_rows()
        self.time_sequential_predict_one_row()

    def time_estimator_predict_proba_one_row(self):
        self.est.predict_proba(self.row)

    def time_estimator_predict_proba_569_rows(self):
        self.est.predict_proba(self.X)

    def time_sequential_predict_one_row(self):
        self.predict(self.row)
