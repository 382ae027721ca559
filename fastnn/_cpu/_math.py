"""Vectorizable scalar math for numba kernels: ``exp``, ``tanh``, ``row_max``, ``sign``.

The numba/llvmlite wheels have no SVML, so ``math.exp``/``np.exp`` inside a
kernel is a scalar libm call (~2.5 ns per element here) that also stops the
loop around it from vectorizing.  :func:`exp` below is branch-free
arithmetic, so LLVM inlines it and vectorizes the loop (~0.5 ns per float32
element on these machines).  Likewise a float ``max`` reduction does not
vectorize (``max`` must respect NaN ordering), but an integer one does:
:func:`row_max` reduces the integer bit patterns instead.

Both are dispatched on the argument's dtype (float32 math for float32 data,
float64 math for float64 data) and are meant to be called from ``@jit``
kernels::

    from fastnn._cpu._math import exp, row_max

    @jit
    def kernel(row, out):
        m = row_max(row)
        for j in range(row.size):
            out[j] = exp(row[j] - m)

Called from Python they work on arrays and scalars too (used by the tests).
"""
import math

import numpy as np
from numba import types
from numba.extending import overload

from fastnn._config import EXACT_FASTMATH, jit

# The range reduction below relies on the exact order of its roundings
# (Cody-Waite: x - n*ln2_hi is exact, then the tiny n*ln2_lo correction).  The
# package policy allows ``reassoc``, under which LLVM merges the two products
# into x - n*(ln2_hi + ln2_lo) and the float64 error grows from <1 ulp to ~200
# ulp near |x| = 700.  So these functions keep only ``contract``
# (EXACT_FASTMATH: fused multiply-adds make the polynomial more accurate, not
# less).  The flags are per instruction: inlined into a fastmath kernel they
# stay exact.
_exact_jit = jit(fastmath=EXACT_FASTMATH)

_f32 = np.float32

# --- float32 ----------------------------------------------------------------
# exp(x) = 2**n * exp(r), n = round(x / ln2), |r| <= ln2/2, exp(r) by its Taylor
# series to degree 7 (truncation error < 0.1 ulp; rounding brings the total to
# 1.7 ulp).  Rounding to an integer uses the "shifter" 1.5 * 2**23: adding it
# leaves round(x / ln2) in the low mantissa bits, with no float -> int
# conversion.
_LOG2E_32 = _f32(1.4426950408889634)
_LN2_HI_32 = _f32(0.693359375)          # 9 significant bits: n * _LN2_HI_32 is exact
_LN2_LO_32 = _f32(math.log(2.0) - 0.693359375)
_SHIFT_32 = _f32(1.5 * 2.0 ** 23)
_SHIFT_BITS_32 = _SHIFT_32.view(np.int32)
_HI_32 = _f32(89.0)                     # exp(89) > FLT_MAX: every x >= 89 gives inf
_LO_32 = _f32(-104.0)                   # exp(-104) < FLT_TRUE_MIN / 2: gives 0
(_C32_0, _C32_1, _C32_2, _C32_3,
 _C32_4, _C32_5, _C32_6, _C32_7) = (_f32(1.0 / math.factorial(k)) for k in range(8))


@_exact_jit
def exp_f32(x):
    """exp of a float32 scalar in float32 arithmetic (max error < 2 ulp)."""
    # Clamp so n stays where the two-step scaling below is exact.  Written so
    # that NaN passes through unchanged (each maps to one vminps/vmaxps) and
    # propagates to the result.
    xc = _HI_32 if x > _HI_32 else x
    xc = _LO_32 if xc < _LO_32 else xc
    t = xc * _LOG2E_32 + _SHIFT_32
    nf = t - _SHIFT_32
    r = (xc - nf * _LN2_HI_32) - nf * _LN2_LO_32
    # Estrin's scheme (depth 4) rather than Horner's (depth 7): ~10% faster in
    # a vectorized loop, at max error 1.7 ulp instead of 0.9.
    r2 = r * r
    p = (((_C32_0 + _C32_1 * r) + r2 * (_C32_2 + _C32_3 * r))
         + (r2 * r2) * ((_C32_4 + _C32_5 * r) + r2 * (_C32_6 + _C32_7 * r)))
    # 2**n does not fit one float32 for n in [-150, -127] (subnormal results)
    # or n = 128 (overflow to inf): multiply by 2**n1 (exact: the product
    # stays normal) then by 2**n2 (one rounding, into the subnormals if need
    # be).  No reassociation is allowed here, so the two factors are never
    # merged into an out-of-range 2**n.
    n = np.int32(_f32(t).view(np.int32) - _SHIFT_BITS_32)
    n1 = np.int32(n >> np.int32(1))
    n2 = np.int32(n - n1)
    s1 = np.int32(np.int32(n1 + np.int32(127)) << np.int32(23)).view(np.float32)
    s2 = np.int32(np.int32(n2 + np.int32(127)) << np.int32(23)).view(np.float32)
    return (p * s1) * s2


# --- float64 ----------------------------------------------------------------
# Same scheme; degree-13 Taylor series (truncation error < 2**-58 on
# |r| <= ln2/2) and fdlibm's split of ln2 (ln2_hi has 32 trailing zero bits).
_LOG2E_64 = 1.4426950408889634
_LN2_HI_64 = 6.93147180369123816490e-01
_LN2_LO_64 = 1.90821492927058770002e-10
_SHIFT_64 = 1.5 * 2.0 ** 52
_SHIFT_BITS_64 = np.float64(_SHIFT_64).view(np.int64)
_HI_64 = 710.0                          # exp(710) > DBL_MAX
_LO_64 = -746.0                         # exp(-746) < DBL_TRUE_MIN / 2
(_C64_0, _C64_1, _C64_2, _C64_3, _C64_4, _C64_5, _C64_6, _C64_7, _C64_8, _C64_9,
 _C64_10, _C64_11, _C64_12, _C64_13) = (1.0 / math.factorial(k) for k in range(14))


@_exact_jit
def exp_f64(x):
    """exp of a float64 scalar (max error < 1 ulp)."""
    xc = _HI_64 if x > _HI_64 else x
    xc = _LO_64 if xc < _LO_64 else xc
    t = xc * _LOG2E_64 + _SHIFT_64
    nf = t - _SHIFT_64
    r = (xc - nf * _LN2_HI_64) - nf * _LN2_LO_64
    p = _C64_13
    p = p * r + _C64_12
    p = p * r + _C64_11
    p = p * r + _C64_10
    p = p * r + _C64_9
    p = p * r + _C64_8
    p = p * r + _C64_7
    p = p * r + _C64_6
    p = p * r + _C64_5
    p = p * r + _C64_4
    p = p * r + _C64_3
    p = p * r + _C64_2
    p = p * r + _C64_1
    p = p * r + _C64_0
    n = np.int64(np.float64(t).view(np.int64) - _SHIFT_BITS_64)
    n1 = n >> 1
    n2 = n - n1
    s1 = np.int64((n1 + 1023) << 52).view(np.float64)
    s2 = np.int64((n2 + 1023) << 52).view(np.float64)
    return (p * s1) * s2


def _on_host(name, kernel, x):
    """``kernel(flat x, flat out)`` over array_like ``x``, called from Python: an array of
    x's shape, or a scalar for a 0-d ``x``."""
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} needs float32 or float64, got {arr.dtype}")
    flat = np.ascontiguousarray(arr).reshape(-1)
    out = np.empty_like(flat)
    kernel(flat, out)
    return out.reshape(arr.shape) if arr.ndim else out.dtype.type(out[0])


@jit
def _exp_array(x, out):
    for i in range(x.size):
        out[i] = exp(x[i])


def exp(x):
    """Vectorizable ``exp`` for float32 and float64 (call it from ``@jit`` kernels).

    Parameters
    ----------
    x : float32 or float64 scalar (in a kernel); array_like (from Python)

    Returns
    -------
    Same type as ``x``: ``exp(x)`` computed in the precision of ``x``.

    Notes
    -----
    ``exp(x) = 2**n * exp(r)`` with ``n = round(x / ln2)`` and
    ``r = x - n*ln2`` (Cody-Waite, ln2 split in two), ``exp(r)`` by Horner's
    rule (float64, degree 13) or Estrin's scheme (float32, degree 7) on its
    Taylor series, and
    ``2**n`` assembled in the exponent bits.  No branches, no table, no libm
    call, so a loop over it vectorizes.  Max error < 2 ulp for float32 and
    < 1 ulp for float64
    (tests/test_math.py measures it against a higher-precision exp over the
    whole finite range); overflow gives ``inf``, underflow gives subnormals
    then ``0``, ``exp(-inf) = 0``, ``exp(inf) = inf``, ``exp(nan) = nan``.
    Not for complex or integer arguments.

    Examples
    --------
    >>> from fastnn._cpu._math import exp
    >>> float(exp(np.float64(1.0)))
    2.718281828459045
    """
    return _on_host("exp", _exp_array, x)


@overload(exp)
def _exp_overload(x):
    if x == types.float32:
        return lambda x: exp_f32(x)
    if x == types.float64:
        return lambda x: exp_f64(x)
    return None


# --- tanh -------------------------------------------------------------------
# Cephes' tanh (S. Moshier): below |x| = 0.625 an odd rational (float64) or
# polynomial (float32) in x**2; above, 1 - 2 / (exp(2|x|) + 1) with the
# vectorizable exp above, which saturates to exactly 1 once exp overflows.
# Both branches are computed and one is selected, so a loop over it
# vectorizes (libm's tanh is a scalar call of ~16 ns per element here, numpy's
# SIMD float32 tanh ~0.4 ns).
_TANH_SMALL = 0.625
_TP0, _TP1, _TP2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, \
    -1.61468768441708447952e3
_TQ0, _TQ1, _TQ2 = 1.12811678491632931402e2, 2.23548839060100448583e3, \
    4.84406305325125486048e3
(_T32_0, _T32_1, _T32_2, _T32_3, _T32_4) = (
    _f32(-5.70498872745e-3), _f32(2.06390887954e-2), _f32(-5.37397155531e-2),
    _f32(1.33314422036e-1), _f32(-3.33332819422e-1))
_ONE_32, _TWO_32, _SMALL_32 = _f32(1.0), _f32(2.0), _f32(_TANH_SMALL)


@_exact_jit
def tanh_f64(x):
    """tanh of a float64 scalar (max error < 1.5 ulp)."""
    a = abs(x)
    z = x * x
    small = x + x * (z * ((_TP0 * z + _TP1) * z + _TP2) / (((z + _TQ0) * z + _TQ1) * z + _TQ2))
    # x itself at 0 keeps the sign of a zero (-0.0 + (-0.0 * negative) is +0.0).
    # Selected here, not in the return below: there, LLVM turns the nested
    # select into branches and the loop stops vectorizing (6x slower).
    small = x if a == 0.0 else small
    big = 1.0 - 2.0 / (exp_f64(a + a) + 1.0)
    big = big if x >= 0.0 else -big
    return small if a < _TANH_SMALL else big


@_exact_jit
def tanh_f32(x):
    """tanh of a float32 scalar in float32 arithmetic (max error < 1.5 ulp)."""
    a = abs(x)
    z = x * x
    small = (((((_T32_0 * z + _T32_1) * z + _T32_2) * z + _T32_3) * z + _T32_4) * z) * x + x
    small = x if a == _f32(0.0) else small
    big = _ONE_32 - _TWO_32 / (exp_f32(a + a) + _ONE_32)
    big = big if x >= _f32(0.0) else -big
    return small if a < _SMALL_32 else big


@jit
def _tanh_array(x, out):
    for i in range(x.size):
        out[i] = tanh(x[i])


def tanh(x):
    """Vectorizable ``tanh`` for float32 and float64 (call it from ``@jit`` kernels).

    Parameters
    ----------
    x : float32 or float64 scalar (in a kernel); array_like (from Python)

    Returns
    -------
    Same type as ``x``: ``tanh(x)`` computed in the precision of ``x``.

    Notes
    -----
    For ``|x| < 0.625``, ``x + x z R(z)`` with ``z = x**2`` and ``R`` Cephes'
    rational (float64) or polynomial (float32) fit; otherwise
    ``sign(x) (1 - 2 / (exp(2|x|) + 1))`` with :func:`exp`.  Max error
    < 1.5 ulp for both dtypes (tests/test_math.py measures it);
    ``tanh(+-inf) = +-1``, ``tanh(nan) = nan``, ``tanh(-0.0) = -0.0``.

    Examples
    --------
    >>> from fastnn._cpu._math import tanh
    >>> float(tanh(np.float64(100.0)))
    1.0
    """
    return _on_host("tanh", _tanh_array, x)


@overload(tanh)
def _tanh_overload(x):
    if x == types.float32:
        return lambda x: tanh_f32(x)
    if x == types.float64:
        return lambda x: tanh_f64(x)
    return None


@jit
def _bits_max_min(bits):
    hi = bits[0]
    lo = bits[0]
    for j in range(1, bits.size):
        b = bits[j]
        hi = max(hi, b)
        lo = min(lo, b)
    return hi, lo


@jit
def _row_max_f32(row):
    hi, lo = _bits_max_min(row.view(np.int32))
    # As signed integers, non-negative floats order like their values; negative
    # floats (sign bit set) order in reverse.  So the largest value is the
    # largest pattern if any is non-negative, else the smallest pattern.
    return np.int32(hi if hi >= 0 else lo).view(np.float32)


@jit
def _row_max_f64(row):
    hi, lo = _bits_max_min(row.view(np.int64))
    return np.int64(hi if hi >= 0 else lo).view(np.float64)


def row_max(row):
    """Largest value of a non-empty contiguous 1-D float32/float64 array, vectorized.

    Compares the integer bit patterns (an integer max/min reduction
    vectorizes; a float one does not), one pass over the data.

    Parameters
    ----------
    row : 1-D C-contiguous float32 or float64 array, at least one element

    Returns
    -------
    Scalar of the row's dtype: ``max(row)`` when the row holds no NaN.

    Notes
    -----
    ``-0.0`` and ``+0.0`` compare as ordered (``-0.0 < +0.0``), ``inf`` and
    ``-inf`` are handled.  A NaN may or may not be returned (a positive NaN
    pattern is above ``inf``, a negative one is never chosen unless every
    element is one): callers that subtract the max propagate NaN anyway,
    since ``x - m`` is NaN at the NaN element.

    Examples
    --------
    >>> from fastnn._cpu._math import row_max
    >>> float(row_max(np.array([-3.0, -0.5, -7.0])))
    -0.5
    """
    if row.dtype == np.float32:
        return np.float32(_row_max_f32(row))
    return np.float64(_row_max_f64(row))


@overload(row_max)
def _row_max_overload(row):
    if row.dtype == types.float32:
        return lambda row: _row_max_f32(row)
    if row.dtype == types.float64:
        return lambda row: _row_max_f64(row)
    return None


@jit(inline="always")
def sign(v):
    """sign(v) as 1.0 / -1.0, with sign(0) = 0 (the subgradient of |v| at 0) and
    sign(NaN) = NaN (the last select returns v); for the L1 penalty and loss."""
    return 1.0 if v > 0.0 else (-1.0 if v < 0.0 else v)
