"""Tests for the counter-based generator (fastnn._cpu.rng) and inverted dropout."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastnn.functional as F
from fastnn._cpu.rng import random_uint32
from tests.conftest import assert_close, hostile_layouts
from tests.gradcheck import assert_grad_close, numerical_vjp
from tests.reference import dropout as ref

DTYPES = [np.float32, np.float64]
N_STAT = 1 << 20  # samples for the generator statistics

# Every statistical bound below is at least 6 standard deviations (a false
# alarm rate below 1e-8 per check), and the seeds are fixed, so a test either
# always passes or always fails; a broken generator (a constant, a plain
# counter, a shared hash between neighbouring seeds) misses them by orders of
# magnitude.


def _binomial_bound(n, p):
    return 6.0 * math.sqrt(n * p * (1.0 - p)) + 1.0


# ---------------------------------------------------------------- the generator

@pytest.mark.parametrize("seed", [0, 1, 12345, 2**63, 2**64 - 1])
@pytest.mark.parametrize("start,n", [(0, 1), (0, 1001), (3, 64), (2**33 + 1, 999),
                                     (2**32 - 500, 1000)])  # across a 2**32 block
def test_rng_matches_independent_numpy_reference_bit_for_bit(seed, start, n):
    np.testing.assert_array_equal(random_uint32(seed, n, start), ref.random_uint32(seed, n, start))


@pytest.mark.parametrize("seed", [0, 7, 2**40 + 3])
def test_rng_chi_square_uniform_in_high_and_low_bits(seed):
    u = random_uint32(seed, N_STAT)
    # 256 buckets, 255 degrees of freedom: mean 255, sd sqrt(510) ~ 22.6;
    # 255 + 7 sd ~ 413.  Low bits are checked too (weak mixers fail there).
    for byte in (u >> 24, u & 0xFF, (u >> 12) & 0xFF):
        counts = np.bincount(byte.astype(np.int64), minlength=256)
        expected = N_STAT / 256
        chi2 = float(np.sum((counts - expected) ** 2 / expected))
        assert chi2 < 413, chi2


@pytest.mark.parametrize("seed", [0, 99])
def test_rng_every_bit_is_balanced(seed):
    u = random_uint32(seed, N_STAT)
    ones = np.array([np.count_nonzero((u >> b) & 1) for b in range(32)])
    # Binomial(N, 1/2): sd = 512, bound 6 sd.
    assert np.all(np.abs(ones - N_STAT / 2) < _binomial_bound(N_STAT, 0.5)), ones


def _corr(a, b):
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


def test_rng_no_correlation_between_adjacent_indices():
    u = random_uint32(3, N_STAT)
    bound = 6.0 / math.sqrt(N_STAT)  # sd of a sample correlation ~ 1/sqrt(n)
    for lag in (1, 2, 32, 1 << 16):
        assert abs(_corr(u[:-lag], u[lag:])) < bound, lag


@pytest.mark.parametrize("start", [2**32 - 5, 2**33 - 3])
def test_dropout_kernels_across_a_2_32_element_block(start):
    # Only arrays of more than 2**32 elements reach a block boundary through
    # the public API, so the range kernels are called at such an offset directly.
    from fastnn._cpu import dropout as kernels
    from fastnn._cpu.rng import seed_key
    n, threshold, scale = 1000, np.int64(round(0.3 * 2**32)), np.float32(1 / 0.7)
    keep = ref.random_uint32(5, n, start) >= threshold
    mask = np.empty(n, dtype=bool)
    kernels._mask_range(mask, seed_key(5), threshold, np.int64(start))
    np.testing.assert_array_equal(mask, keep)
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    out = np.empty_like(x)
    kernels._scale_range(x, out, seed_key(5), threshold, scale, np.int64(start))
    np.testing.assert_array_equal(out, x * np.where(keep, scale, np.float32(0)))


def test_rng_is_a_permutation_within_a_block():
    # u(seed, l) is a bijection of the low 32 bits: no value repeats in a block.
    u = random_uint32(11, 1 << 20)
    assert np.unique(u).size == u.size


def test_rng_low_bits_of_neighbours_are_independent():
    # Mask decisions compare whole words, but a weak mixer shows first in
    # pairs of low bits of neighbouring counters: all four (bit_i, bit_i+1)
    # combinations must be equally frequent.
    u = random_uint32(8, N_STAT)
    for bit in (0, 1, 31):
        b = ((u >> np.uint32(bit)) & np.uint32(1)).astype(np.int64)
        counts = np.bincount(2 * b[:-1] + b[1:], minlength=4)
        assert np.all(np.abs(counts - (N_STAT - 1) / 4)
                      < _binomial_bound(N_STAT - 1, 0.25)), (bit, counts)


@pytest.mark.parametrize("seed", [0, 1, 1000, 2**32 - 1])
def test_rng_no_correlation_between_adjacent_seeds(seed):
    a = random_uint32(seed, N_STAT)
    b = random_uint32(seed + 1, N_STAT)
    assert abs(_corr(a, b)) < 6.0 / math.sqrt(N_STAT)
    # Bits agree half the time, as for independent streams.
    same = np.count_nonzero(((a ^ b) >> 31) == 0)
    assert abs(same - N_STAT / 2) < _binomial_bound(N_STAT, 0.5)
    # Masks of neighbouring seeds overlap like independent Bernoulli(0.5) masks.
    ma, mb = a >= 2**31, b >= 2**31
    assert abs(np.count_nonzero(ma & mb) - N_STAT / 4) < _binomial_bound(N_STAT, 0.25)


def test_rng_streams_of_neighbouring_seeds_do_not_overlap():
    # A stream offset (seed s+1 replaying seed s shifted) would show up as
    # shared 32-bit words; independent streams share ~ n^2 / 2^32 ~ 4 of 2^16.
    a = set(random_uint32(5, 1 << 16).tolist())
    b = random_uint32(6, 1 << 16).tolist()
    assert sum(v in a for v in b) < 40


# ---------------------------------------------------------------- dropout forward

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 5), (64, 512)])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_matches_reference(dtype, shape, p):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    y = F.dropout(x, p, seed=11)
    assert y.dtype == dtype and y.shape == shape
    assert_close(y, ref.dropout(x, p, 11), dtype)
    np.testing.assert_array_equal(y != 0, ref.dropout_mask(shape, p, 11))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_fraction_within_binomial_bounds(p):
    n = 64 * 512
    kept = np.count_nonzero(F.dropout_mask((64, 512), p, seed=2))
    assert abs(kept - n * (1 - p)) < _binomial_bound(n, p)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_preserves_the_expectation(p):
    x = np.full((64, 512), 3.0)
    y = F.dropout(x, p, seed=4)
    # mean(y) = 3 * kept / (n (1 - p)), sd = 3 sqrt(p / ((1 - p) n)).
    sd = 3.0 * math.sqrt(p / ((1 - p) * x.size))
    assert abs(y.mean() - 3.0) < 6 * sd
    assert set(np.unique(y).tolist()) <= {0.0, 3.0 / (1 - p)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_backward_and_mask_are_consistent(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 512)).astype(dtype)  # parallel twin
    dy = rng.standard_normal((64, 512)).astype(dtype)
    p, seed = 0.3, 2**64 - 5
    mask = F.dropout_mask(x.shape, p, seed)
    scale = dtype(1 / (1 - p))
    np.testing.assert_array_equal(F.dropout(x, p, seed=seed), x * mask * scale)
    np.testing.assert_array_equal(F.dropout_backward(dy, p, seed), dy * mask * scale)


def test_serial_and_parallel_twins_give_the_same_mask():
    big = F.dropout_mask(64 * 512 + 3, 0.5, seed=9)  # parallel, odd tail
    for lo, hi in [(0, 1001), (5000, 7001), (64 * 512 - 999, 64 * 512 + 3)]:
        # a prefix computed serially must equal the parallel result
        np.testing.assert_array_equal(F.dropout_mask(hi, 0.5, seed=9)[lo:hi], big[lo:hi])


def test_mask_independent_of_dtype():
    x = np.ones((10, 10))
    np.testing.assert_array_equal(F.dropout(x, 0.5, seed=3) != 0,
                                  F.dropout(x.astype(np.float32), 0.5, seed=3) != 0)


def test_same_seed_same_mask_different_seed_different_mask():
    a = F.dropout_mask((40, 50), 0.5, seed=1)
    np.testing.assert_array_equal(a, F.dropout_mask((40, 50), 0.5, seed=1))
    b = F.dropout_mask((40, 50), 0.5, seed=2)
    # Independent masks agree on about half the elements.
    assert abs(np.count_nonzero(a == b) - 1000) < _binomial_bound(2000, 0.5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_is_mask_over_keep_probability(dtype):
    rng = np.random.default_rng(2)
    dy = rng.standard_normal((9, 13)).astype(dtype)
    p = 0.25
    dx = F.dropout_backward(dy, p, 17)
    assert_close(dx, dy.astype(np.float64) * ref.dropout_mask(dy.shape, p, 17) / (1 - p), dtype)


def test_backward_finite_difference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 7))
    dy = rng.standard_normal((5, 7))
    numeric = numerical_vjp(lambda v: F.dropout(v, 0.4, seed=8), x, dy)
    assert_grad_close(F.dropout_backward(dy, 0.4, 8), numeric)


@pytest.mark.parametrize("dtype", DTYPES)
def test_any_layout_gives_the_same_result(dtype):
    x = np.random.default_rng(4).standard_normal((16, 9)).astype(dtype)
    expected = F.dropout(x, 0.5, seed=5)
    for name, view in hostile_layouts(x):
        np.testing.assert_array_equal(F.dropout(view, 0.5, seed=5), expected, err_msg=name)
        np.testing.assert_array_equal(F.dropout_backward(view, 0.5, 5), expected, err_msg=name)
    # a broadcast view (stride 0) too
    row = x[:1]
    np.testing.assert_array_equal(F.dropout(np.broadcast_to(row, x.shape), 0.5, seed=5),
                                  F.dropout(np.repeat(row, 16, axis=0), 0.5, seed=5))
    # a transposed view: the mask follows the logical C-order index
    np.testing.assert_array_equal(F.dropout(x.T, 0.5, seed=5),
                                  F.dropout(np.ascontiguousarray(x.T), 0.5, seed=5))


# ---------------------------------------------------------------- special values of p

@pytest.mark.parametrize("dtype", DTYPES)
def test_p0_and_eval_mode_are_exact_identities_returning_new_arrays(dtype):
    x = np.random.default_rng(5).standard_normal((6, 4)).astype(dtype)
    x[0, 0] = np.nan
    for y in (F.dropout(x, 0.0, seed=1), F.dropout(x, 0.7, training=False, seed=1),
              F.dropout_backward(x, 0.0, 1)):
        np.testing.assert_array_equal(y, x)
        assert y.dtype == dtype and not np.shares_memory(y, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_p1_gives_zeros(dtype):
    x = np.random.default_rng(6).standard_normal((64, 512)).astype(dtype) * 1e30
    y = F.dropout(x, 1.0, seed=0)
    assert np.all(y == 0) and not np.isnan(y).any()
    assert np.all(F.dropout_backward(x, 1.0, 0) == 0)
    assert not F.dropout_mask(100, 1.0, 0).any()
    assert F.dropout_mask(100, 0.0, 0).all()


def test_nan_and_inf_propagate_like_torch():
    # Kept NaN stays NaN; a dropped NaN/inf becomes NaN (the mask is multiplied in).
    x = np.array([np.nan, np.inf, -np.inf, 1.0] * 8)
    y = F.dropout(x, 0.5, seed=1)
    mask = F.dropout_mask(x.shape, 0.5, 1)
    assert np.isnan(y[0::4]).all()
    np.testing.assert_array_equal(y[1::4], np.where(mask[1::4], np.inf, np.nan))
    assert np.isnan(F.dropout(x, 1.0, seed=1)[:3]).all()


def test_huge_and_tiny_values_scale_exactly():
    x = np.array([1e300, -1e300, 5e-324, 1e-310, 3e38], dtype=np.float64)
    y = F.dropout(x, 0.5, seed=2)
    mask = F.dropout_mask(x.shape, 0.5, 2)
    np.testing.assert_array_equal(y, np.where(mask, x * 2.0, 0.0))
    x32 = np.array([3e38, -3e38, 1e-45], dtype=np.float32)
    y32 = F.dropout(x32, 0.5, seed=2)
    m32 = F.dropout_mask(x32.shape, 0.5, 2)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(y32, np.where(m32, x32 * np.float32(2), 0))


@pytest.mark.parametrize("shape", [(0,), (0, 5), (5, 0), ()])
def test_empty_and_zero_dimensional(shape):
    x = np.ones(shape)
    y = F.dropout(x, 0.5, seed=0)
    assert y.shape == shape
    assert F.dropout_mask(shape, 0.5, 0).shape == shape
    assert F.dropout_backward(x, 0.5, 0).shape == shape


# ---------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("kwargs,exc", [
    (dict(p=-0.1), ValueError), (dict(p=1.5), ValueError), (dict(p=float("nan")), ValueError),
    (dict(p="0.5"), TypeError), (dict(seed=-1), ValueError), (dict(seed=2**64), ValueError),
    (dict(seed=1.5), TypeError), (dict(seed=True), TypeError), (dict(training="yes"), TypeError),
])
def test_bad_arguments_raise_and_leave_input_unchanged(kwargs, exc):
    x = np.random.default_rng(7).standard_normal((4, 4))
    before = x.copy()
    with pytest.raises(exc):
        F.dropout(x, **kwargs)
    np.testing.assert_array_equal(x, before)
    if "training" not in kwargs:
        args = dict(p=0.5, seed=0)
        args.update(kwargs)
        with pytest.raises(exc):
            F.dropout_backward(x, args["p"], args["seed"])
        with pytest.raises(exc):
            F.dropout_mask((4, 4), args["p"], args["seed"])
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("x", [np.ones(3, np.int64), np.ones(3, np.float16), np.ones(3, bool),
                               "abc", [[1.0], [1.0, 2.0]]])
def test_non_float_input_raises_type_error(x):
    with pytest.raises(TypeError):
        F.dropout(x, 0.5)
    with pytest.raises(TypeError):
        F.dropout_backward(x, 0.5, 0)


@pytest.mark.parametrize("shape,exc", [((-1, 3), ValueError), (2.5, TypeError),
                                       ("ab", TypeError), ((2, 1.5), TypeError)])
def test_bad_mask_shape(shape, exc):
    with pytest.raises(exc):
        F.dropout_mask(shape, 0.5, 0)


def test_list_input_and_int_shape():
    y = F.dropout([1.0, 2.0, 3.0, 4.0], 0.5, seed=1)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(F.dropout_mask(4, 0.5, 1), y != 0)


# ---------------------------------------------------------------- properties

@given(shape=st.lists(st.integers(0, 9), min_size=1, max_size=3).map(tuple),
       p=st.floats(0.0, 1.0), seed=st.integers(0, 2**64 - 1),
       dtype=st.sampled_from(DTYPES))
def test_property_dropout_is_x_times_mask_over_keep(shape, p, seed, dtype):
    x = np.random.default_rng(0).uniform(-5, 5, shape).astype(dtype)
    y = F.dropout(x, p, seed=seed)
    mask = F.dropout_mask(shape, p, seed)
    np.testing.assert_array_equal(mask, ref.dropout_mask(shape, p, seed))
    assert y.dtype == dtype and y.shape == shape
    if p == 0.0:
        np.testing.assert_array_equal(y, x)
    elif p == 1.0:
        assert np.all(y == 0)
    else:
        np.testing.assert_array_equal(y, x * mask * dtype(1.0 / (1.0 - p)))
    np.testing.assert_array_equal(F.dropout_backward(x, p, seed), y)


# ---------------------------------------------------------------- torch oracle

@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_same_distribution_and_scaling_as_torch(torch, p):
    # torch's generator is different, so masks cannot match: compare what
    # the two promise, which is the distribution and the scaling.
    n = 64 * 512
    x = np.ones(n, dtype=np.float32)
    torch.manual_seed(0)
    ty = torch.nn.functional.dropout(torch.from_numpy(x), p, training=True).numpy()
    y = F.dropout(x, p, seed=0)
    assert set(np.unique(y).tolist()) == set(np.unique(ty).tolist())  # {0, 1/(1-p)} exactly
    for out in (y, ty):
        assert abs(np.count_nonzero(out) - n * (1 - p)) < _binomial_bound(n, p)
    # eval mode, p = 0 and p = 1 agree exactly
    xs = np.random.default_rng(8).standard_normal((8, 8)).astype(np.float32)
    t = torch.from_numpy(xs)
    fn = torch.nn.functional.dropout
    np.testing.assert_array_equal(F.dropout(xs, p, training=False),
                                  fn(t, p, training=False).numpy())
    np.testing.assert_array_equal(F.dropout(xs, 0.0), fn(t, 0.0).numpy())
    np.testing.assert_array_equal(F.dropout(xs, 1.0), fn(t, 1.0).numpy())


def test_backward_semantics_match_torch(torch):
    # torch's gradient is dy * its own mask / (1 - p); with its own mask
    # recovered from the forward output, both libraries use the same formula.
    p = 0.3
    x = torch.ones(1000, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)
    y = torch.nn.functional.dropout(x, p, training=True)
    dy = torch.linspace(-1, 1, 1000, dtype=torch.float64)
    y.backward(dy)
    tmask = (y.detach().numpy() != 0)
    np.testing.assert_allclose(x.grad.numpy(), dy.numpy() * tmask / (1 - p), rtol=1e-15)
    ours = F.dropout_backward(dy.numpy(), p, 1)
    np.testing.assert_allclose(ours, dy.numpy() * F.dropout_mask(1000, p, 1) / (1 - p), rtol=1e-15)


# ---------------------------------------------------------------- out=

@pytest.mark.parametrize("dtype", DTYPES)
def test_out_buffer_and_in_place(dtype):
    x = np.random.default_rng(9).standard_normal((64, 512)).astype(dtype)
    expected = F.dropout(x, 0.4, seed=3)
    buf = np.full_like(x, np.nan)
    assert F.dropout(x, 0.4, seed=3, out=buf) is buf
    np.testing.assert_array_equal(buf, expected)
    assert F.dropout_backward(x, 0.4, 3, out=buf) is buf
    np.testing.assert_array_equal(buf, expected)
    assert F.dropout(x, 0.4, training=False, out=buf) is buf
    np.testing.assert_array_equal(buf, x)
    y = x.copy()
    assert F.dropout(y, 0.4, seed=3, out=y) is y  # in place
    np.testing.assert_array_equal(y, expected)


def _shifted_view(x):
    """A writable (4, 4) view of x's memory shifted by one element: a partial overlap."""
    flat = np.zeros(x.size + 1)
    flat[:-1] = x.ravel()
    return flat[:-1].reshape(x.shape), flat[1:].reshape(x.shape)


@pytest.mark.parametrize("case,exc", [
    ("shape", ValueError), ("dtype", TypeError), ("strided", ValueError), ("list", TypeError),
    ("readonly", ValueError), ("overlap", ValueError),
])
def test_bad_out_raises_before_anything(case, exc):
    x = np.random.default_rng(10).standard_normal((4, 4))
    if case == "overlap":
        x, out = _shifted_view(x)
    else:
        out = {"shape": lambda: np.empty((4, 5)), "dtype": lambda: np.empty((4, 4), np.float32),
               "strided": lambda: np.empty((4, 8))[:, ::2], "list": lambda: [[0.0] * 4] * 4,
               "readonly": lambda: np.broadcast_to(np.zeros(4), (4, 4))}[case]()
    before = x.copy()
    with pytest.raises(exc):
        F.dropout(x, 0.5, seed=0, out=out)
    with pytest.raises(exc):
        F.dropout_backward(x, 0.5, 0, out=out)
    np.testing.assert_array_equal(x, before)
