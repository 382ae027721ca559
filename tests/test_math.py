"""The vectorizable exp, tanh and row max of fastnn._cpu._math."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from fastnn._cpu._math import exp, row_max, tanh

LONG_DOUBLE_OK = np.finfo(np.longdouble).nmant >= 63


def ulp_error(actual, x, dtype):
    """|actual - exp(x)| in units of the spacing at the correctly rounded exp(x).

    The reference is exp in a wider type (float64 for float32 data, x87 long
    double for float64 data); results that are inf/0 must match exactly.
    """
    wide = np.float64 if dtype == np.float32 else np.longdouble
    with np.errstate(over="ignore", under="ignore"):
        ref = np.exp(x.astype(wide))
        rounded = ref.astype(dtype)
    finite = np.isfinite(rounded)
    assert np.array_equal(actual[~finite], rounded[~finite])
    spacing = np.spacing(np.abs(rounded[finite])).astype(wide)
    return np.abs(actual[finite].astype(wide) - ref[finite]) / spacing


@pytest.mark.parametrize("dtype, lo, hi, max_ulp", [
    (np.float32, -110.0, 90.0, 2.0),      # covers overflow, subnormals and underflow
    (np.float32, -1.0, 1.0, 2.0),
    (np.float64, -750.0, 711.0, 1.0),
    (np.float64, -1.0, 1.0, 1.0),
])
def test_exp_ulp_dense(dtype, lo, hi, max_ulp):
    if dtype == np.float64 and not LONG_DOUBLE_OK:
        pytest.skip("needs an extended-precision long double as the reference")
    x = np.linspace(lo, hi, 1_000_003).astype(dtype)
    y = exp(x)
    assert y.dtype == dtype
    err = ulp_error(y, x, dtype)
    assert err.max() <= max_ulp, (err.max(), x[np.argmax(err)])


def test_exp_float32_random_bit_patterns():
    # every float32 exponent in the interesting range, random mantissas
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**32, 1_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = x[np.isfinite(x) & (np.abs(x) < 110)]
    assert ulp_error(exp(x), x, np.float32).max() <= 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_special_values(dtype):
    f = np.finfo(dtype)
    x = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e6, -1e6, f.max, -f.max,
                  f.tiny, -f.tiny], dtype=dtype)
    y = exp(x)
    assert np.isnan(y[:2]).all()
    assert y[2] == np.inf and y[3] == 0.0
    assert y[4] == 1.0 and y[5] == 1.0
    assert y[6] == np.inf and y[7] == 0.0 and y[8] == np.inf and y[9] == 0.0
    assert y[10] == 1.0 and y[11] == 1.0
    # around the overflow threshold: finite just below, inf just above
    over = np.log(f.max.astype(np.float64))
    below, above = np.nextafter(dtype(over), dtype(0)), np.nextafter(dtype(over), dtype(np.inf))
    assert np.isfinite(exp(below)) and exp(above) == np.inf
    # gradual underflow: subnormal results exist and reach 0 monotonically
    lo = np.log(float(f.smallest_subnormal)) - 2
    xs = np.linspace(lo, np.log(float(f.tiny)), 10_001).astype(dtype)
    ys = exp(xs)
    assert (np.diff(ys) >= 0).all() and ys[0] == 0.0 and (ys[-1000:] > 0).all()
    assert isinstance(exp(dtype(1.0)), dtype)


def test_exp_rejects_non_float():
    with pytest.raises(TypeError, match="int64"):
        exp(np.arange(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_matches_numpy(dtype):
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 8, 9, 64, 1001):
        for shift in (-1e3, 0.0, 1e3):
            row = (rng.standard_normal(n) * 10 + shift).astype(dtype)
            assert row_max(row) == row.max()
            assert row_max(row).dtype == dtype
    tricky = [[-0.0, -1.0], [0.0, -0.0], [-np.inf], [-np.inf, -1e30], [np.inf, -np.inf],
              [-3.0, -0.5, -7.0], [np.finfo(dtype).tiny, -np.finfo(dtype).max]]
    for r in tricky:
        row = np.array(r, dtype=dtype)
        assert row_max(row) == row.max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_signed_zero_ordering(dtype):
    # -0.0 < +0.0 in the bit order, so the max of the two is +0.0
    m = row_max(np.array([-0.0, 0.0], dtype=dtype))
    assert m == 0.0 and not np.signbit(m)


@given(hnp.arrays(st.sampled_from([np.float32, np.float64]), st.integers(1, 50),
                  elements=st.floats(allow_nan=False, width=32)))
def test_row_max_property(row):
    assert row_max(row) == row.max()


def tanh_ulp_error(actual, x, dtype):
    """|actual - tanh(x)| in ulps of the correctly rounded tanh(x) (a wider type's tanh)."""
    wide = np.float64 if dtype == np.float32 else np.longdouble
    ref = np.tanh(x.astype(wide))
    spacing = np.spacing(np.abs(ref.astype(dtype))).astype(wide)
    return np.abs(actual.astype(wide) - ref) / spacing


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_ulp(dtype):
    if dtype == np.float64 and not LONG_DOUBLE_OK:
        pytest.skip("needs an extended-precision long double as the reference")
    rng = np.random.default_rng(0)
    tiny = np.finfo(dtype).tiny
    x = np.concatenate([np.linspace(-12, 12, 1_000_003),        # both branches, saturation
                        np.linspace(0.6, 0.65, 10_001),          # around the switch at 0.625
                        10.0 ** rng.uniform(np.log10(tiny), 0, 200_000)
                        * rng.choice([-1, 1], 200_000)]).astype(dtype)
    y = tanh(x)
    assert y.dtype == dtype
    err = tanh_ulp_error(y, x, dtype)
    assert err.max() <= 1.5, (err.max(), x[np.argmax(err)])
    assert np.all(np.abs(y) <= 1) and np.array_equal(np.sign(y), np.sign(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_special_values(dtype):
    f = np.finfo(dtype)
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, f.max, -f.max, 20.0, -20.0,
                  f.smallest_subnormal], dtype=dtype)
    y = tanh(x)
    assert np.isnan(y[0])
    np.testing.assert_array_equal(y[1:9], [1, -1, 0, -0.0, 1, -1, 1, -1])
    assert not np.signbit(y[3]) and np.signbit(y[4])
    assert y[9] == f.smallest_subnormal          # tanh(x) = x for tiny x
    assert isinstance(tanh(dtype(1.0)), dtype)
    with pytest.raises(TypeError, match="int64"):
        tanh(np.arange(3))
