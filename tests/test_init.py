"""fastnn.init: variance formulas, torch equivalence, determinism, validation."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastnn import init

# Large draws: the sample variance of n i.i.d. values has relative standard
# error sqrt((kurtosis - 1) / n): sqrt(2/n) for a normal, sqrt(0.8/n) for a
# uniform.  Bounds are 6 standard errors, so a correct initializer fails with
# probability ~1e-9 (and the seeds are fixed anyway), while a wrong fan or
# gain (a factor >= 1.1 in variance for every case below) fails for sure.
SHAPE = (512, 256)
N = SHAPE[0] * SHAPE[1]
Z = 6.0


def check_moments(w, var, mean=0.0, kurtosis=3.0):
    w64 = w.astype(np.float64)
    n = w.size
    assert abs(w64.mean() - mean) <= Z * math.sqrt(var / n) + 1e-12
    rel = Z * math.sqrt((kurtosis - 1.0) / n)
    assert abs(w64.var() / var - 1.0) <= rel


FAN_INITS = {
    # name: (function, kwargs, expected variance for SHAPE = (out, in), kurtosis)
    "xavier_normal": (init.xavier_normal, {}, 1 / 256, 3.0),
    "xavier_normal_avg": (init.xavier_normal, {"mode": "fan_avg"}, 2 / (256 + 512), 3.0),
    "xavier_normal_gain": (init.xavier_normal, {"gain": 5 / 3}, (5 / 3) ** 2 / 256, 3.0),
    "xavier_uniform": (init.xavier_uniform, {}, 1 / 256, 1.8),
    "xavier_uniform_avg": (init.xavier_uniform, {"mode": "fan_avg"}, 2 / 768, 1.8),
    "he_normal": (init.he_normal, {}, 2 / 256, 3.0),
    "he_normal_out": (init.he_normal, {"mode": "fan_out"}, 2 / 512, 3.0),
    "he_normal_leaky": (init.he_normal, {"negative_slope": 0.2}, 2 / (1.04 * 256), 3.0),
    "he_uniform": (init.he_uniform, {}, 2 / 256, 1.8),
    "he_uniform_out": (init.he_uniform, {"mode": "fan_out"}, 2 / 512, 1.8),
}


@pytest.mark.parametrize("name", sorted(FAN_INITS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fan_init_variance_matches_formula(name, dtype):
    fn, kw, var, kurt = FAN_INITS[name]
    w = fn(SHAPE, dtype=dtype, rng=1, **kw)
    assert w.shape == SHAPE and w.dtype == dtype
    check_moments(w, var, kurtosis=kurt)
    if kurt < 3:  # uniform: hard bounds at sqrt(3 var)
        assert np.abs(w).max() <= math.sqrt(3 * var) * (1 + 1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_uniform_constant_zeros(dtype):
    check_moments(init.normal(SHAPE, std=0.01, dtype=dtype, rng=2), 1e-4)
    check_moments(init.normal(SHAPE, std=2.0, mean=-3.0, dtype=dtype, rng=2), 4.0, mean=-3.0)
    u = init.uniform(SHAPE, a=-1.0, b=3.0, dtype=dtype, rng=3)
    check_moments(u, 16 / 12, mean=1.0, kurtosis=1.8)
    assert u.min() >= -1.0 and u.max() <= 3.0
    c = init.constant((3, 4), 0.5, dtype=dtype)
    assert c.dtype == dtype and np.all(c == dtype(0.5))
    z = init.zeros((3, 4), dtype=dtype)
    assert z.dtype == dtype and not z.any()


def test_receptive_field_fans_match_torch(torch):
    """(out, in, kh, kw): fan_in = in*kh*kw, fan_out = out*kh*kw, as torch."""
    shape = (64, 32, 5, 5)  # fan_in 800, fan_out 1600
    t = torch.empty(shape, dtype=torch.float64)
    for ours, theirs, var in [
        (init.he_normal(shape, dtype=np.float64, rng=4),
         torch.nn.init.kaiming_normal_(t.clone(), nonlinearity="relu"), 2 / 800),
        (init.he_uniform(shape, mode="fan_out", dtype=np.float64, rng=4),
         torch.nn.init.kaiming_uniform_(t.clone(), mode="fan_out", nonlinearity="relu"), 2 / 1600),
        (init.xavier_normal(shape, mode="fan_avg", dtype=np.float64, rng=4),
         torch.nn.init.xavier_normal_(t.clone()), 2 / 2400),
        (init.xavier_uniform(shape, mode="fan_avg", gain=2.0, dtype=np.float64, rng=4),
         torch.nn.init.xavier_uniform_(t.clone(), gain=2.0), 8 / 2400),
    ]:
        theirs = theirs.numpy()
        n = ours.size
        # Both sample variances are within 6 standard errors (kurtosis <= 3)
        # of the formula; so they are within 12 of each other.
        assert abs(ours.var() / theirs.var() - 1) <= 2 * Z * math.sqrt(2 / n)
        assert abs(ours.var() / var - 1) <= Z * math.sqrt(2 / n)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.3])
def test_he_matches_torch_kaiming(torch, slope):
    shape = (400, 300)
    t = torch.nn.init.kaiming_normal_(torch.empty(shape, dtype=torch.float64), a=slope)
    ours = init.he_normal(shape, negative_slope=slope, dtype=np.float64, rng=5)
    assert abs(ours.var() / t.numpy().var() - 1) <= 2 * Z * math.sqrt(2 / ours.size)
    bound_t = math.sqrt(6 / ((1 + slope ** 2) * 300))
    u = init.he_uniform(shape, negative_slope=slope, dtype=np.float64, rng=5)
    assert np.abs(u).max() <= bound_t and np.abs(u).max() > 0.99 * bound_t


@pytest.mark.parametrize("name,param", [
    ("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None),
    ("conv_transpose2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)])
def test_calculate_gain_matches_torch(torch, name, param):
    assert init.calculate_gain(name, param) == pytest.approx(
        torch.nn.init.calculate_gain(name, param), rel=1e-15)


def test_calculate_gain_bad():
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="param"):
        init.calculate_gain("relu", 0.1)
    with pytest.raises(TypeError):
        init.calculate_gain("leaky_relu", "x")


ALL_RANDOM = [
    lambda s, **k: init.normal(s, std=0.1, **k),
    lambda s, **k: init.uniform(s, a=-1, b=1, **k),
    init.xavier_normal, init.xavier_uniform, init.he_normal, init.he_uniform,
]


@pytest.mark.parametrize("fn", ALL_RANDOM)
def test_determinism_and_generator_state(fn):
    a = fn((20, 30), rng=7)
    b = fn((20, 30), rng=7)
    c = fn((20, 30), rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # A Generator is used (and advanced) as is: two calls differ, and the same
    # sequence of calls on an equally seeded generator repeats exactly.
    g, h = np.random.default_rng(9), np.random.default_rng(9)
    g1, g2 = fn((20, 30), rng=g), fn((20, 30), rng=g)
    assert not np.array_equal(g1, g2)
    np.testing.assert_array_equal(g1, fn((20, 30), rng=h))
    np.testing.assert_array_equal(g2, fn((20, 30), rng=h))


@pytest.mark.parametrize("fn", ALL_RANDOM + [init.zeros, lambda s, **k: init.constant(s, 1.0, **k)])
def test_numpy_global_state_untouched_and_new_array(fn):
    np.random.seed(123)
    before = np.random.get_state()
    a = fn((8, 4), rng=1)
    fn((8, 4))  # rng=None: fresh entropy, still not the global state
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    a[...] = 42.0  # the result is a new, writable array: another call is unaffected
    assert not np.any(fn((8, 4), rng=1) == 42.0)


def test_empty_shapes():
    for fn in ALL_RANDOM:
        assert fn((0, 5), rng=0).shape == (0, 5)
        assert fn((5, 0), rng=0).shape == (5, 0)
    assert init.normal((0,), rng=0).shape == (0,)
    assert init.uniform(3, rng=0).shape == (3,)  # an int is a 1-D shape


@pytest.mark.parametrize("fn", [init.xavier_normal, init.xavier_uniform, init.he_normal,
                                init.he_uniform])
def test_fan_init_bad_arguments(fn):
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fn((5,))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        fn(())
    with pytest.raises(ValueError, match="mode"):
        fn((3, 4), mode="fan_sideways")
    with pytest.raises(ValueError, match="mode"):
        fn((3, 4), mode="fan_out" if fn in (init.xavier_normal, init.xavier_uniform) else "fan_avg")


@pytest.mark.parametrize("call,exc", [
    (lambda: init.normal((3, -1)), ValueError),
    (lambda: init.normal((3, 2.5)), TypeError),
    (lambda: init.normal((3, True)), TypeError),
    (lambda: init.normal("3x4"), TypeError),
    (lambda: init.normal((3, 4), std=-0.1), ValueError),
    (lambda: init.normal((3, 4), std=float("nan")), ValueError),
    (lambda: init.normal((3, 4), mean=float("nan")), ValueError),
    (lambda: init.uniform((3, 4), a=1.0, b=1.0), ValueError),
    (lambda: init.uniform((3, 4), a=2.0, b=1.0), ValueError),
    (lambda: init.uniform((3, 4), a=-np.inf, b=1.0), ValueError),
    (lambda: init.uniform((3, 4), a=-1e308, b=1e308), ValueError),
    (lambda: init.constant((3, 4), float("nan")), ValueError),
    (lambda: init.constant((3, 4), "1"), TypeError),
    (lambda: init.xavier_normal((3, 4), gain=-1.0), ValueError),
    (lambda: init.zeros((3, 4), dtype=np.float16), TypeError),
    (lambda: init.he_normal((3, 4), dtype=np.int32), TypeError),
    (lambda: init.he_normal((3, 4), dtype="nonsense"), TypeError),
    (lambda: init.he_normal((3, 4), rng=-1), ValueError),
    (lambda: init.he_normal((3, 4), rng=1.5), TypeError),
])
def test_bad_arguments(call, exc):
    with pytest.raises(exc):
        call()


@given(shape=st.lists(st.integers(0, 7), min_size=2, max_size=4).map(tuple),
       seed=st.integers(0, 2 ** 32), dtype=st.sampled_from([np.float32, np.float64]),
       slope=st.floats(0, 1))
def test_property_shape_dtype_bounds(shape, seed, dtype, slope):
    u = init.he_uniform(shape, negative_slope=slope, dtype=dtype, rng=seed)
    assert u.shape == shape and u.dtype == dtype and u.flags.c_contiguous
    if u.size:
        fan_in = shape[1] * math.prod(shape[2:])
        assert np.all(np.abs(u) <= math.sqrt(6 / ((1 + slope ** 2) * fan_in)) * (1 + 1e-6))
    x = init.xavier_normal(shape, mode="fan_avg", dtype=dtype, rng=seed)
    assert x.shape == shape and x.dtype == dtype and np.all(np.isfinite(x))


@pytest.mark.parametrize("call, match", [
    (lambda: init.normal((3, 3), std=np.inf), "std must be < inf"),
    (lambda: init.normal((3, 3), std=1e300), "std=1e\\+300.*float32"),
    (lambda: init.normal((3, 3), mean=1e39), "mean=1e\\+39.*float32"),
    (lambda: init.xavier_normal((3, 3), gain=np.inf), "gain must be < inf"),
    (lambda: init.xavier_uniform((3, 3), gain=np.inf), "gain must be < inf"),
    (lambda: init.xavier_normal((3, 3), gain=1e308, dtype=np.float64), "float64"),
    (lambda: init.uniform((3, 3), -3e38, 3e38), "b - a.*float32"),
    (lambda: init.constant((2,), 1e300), "value = 1e\\+300.*float32"),
    (lambda: init.constant((2,), np.inf), "value = inf"),
])
def test_parameters_that_cannot_give_finite_weights_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_large_but_representable_parameters_still_work():
    assert np.isfinite(init.normal((64, 64), std=1e300, dtype=np.float64, rng=0)).all()
    assert np.isfinite(init.uniform((64, 64), -3e38, 3e38, dtype=np.float64, rng=0)).all()
    assert np.isfinite(init.uniform((64, 64), -1e38, 1e38, rng=0)).all()
