"""Welch-averaged power spectrum of a real signal, segment by segment.

Part of ``edge.acoustic`` (see docs/leak_features.md); runs unchanged on
CPython and MicroPython, with ``array`` and ``math`` only. One
``PowerSpectrum`` holds a few arrays of ``nfft`` floats and accumulates
``|X_k|^2`` of Hann-windowed, mean-removed segments; nothing else of the
signal is kept.

The FFT is an in-place radix-2 decimation-in-time transform of ``nfft / 2``
complex points, the ``nfft`` real samples packed as interleaved
``(even, odd)`` pairs, followed by the usual split into the spectrum of the
real signal (the "two for one" trick). That halves the butterflies of a
complex FFT of ``nfft`` points, and needs no separate real/imaginary buffers:
the segment buffer itself is transformed.

References
----------
J. W. Cooley, J. W. Tukey, "An algorithm for the machine calculation of
complex Fourier series", Math. Comp. 19 (1965) 297-301.
E. O. Brigham, "The Fast Fourier Transform and its Applications", Prentice
Hall 1988, ch. 9 (real-valued sequences through a half-length complex FFT).
P. D. Welch, "The use of fast Fourier transform for the estimation of power
spectra", IEEE Trans. Audio Electroacoust. 15 (1967) 70-73.
"""

import math
import sys
from array import array

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any  # noqa: F401  (used in type comments)

# The float array typecode that matches the interpreter's own float: 'd' where
# floats are doubles (CPython, MicroPython's WebAssembly and Unix ports), 'f'
# on single-precision builds (ESP32), where 'd' would double the memory for no
# precision gained.
FLOAT_TYPECODE = "d" if 1.0 + 2.0**-30 != 1.0 else "f"

NFFT_MIN = 16
NFFT_MAX = 4096

_MICROPYTHON = sys.implementation.name == "micropython"
_ITEMSIZE = {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "l": 4, "L": 4, "f": 4, "d": 8}


def zeros(n, typecode=FLOAT_TYPECODE):
    # type: (int, str) -> array[Any]
    """An array of n zeros, allocated once at its final size.

    MicroPython grows an array built from an iterator 8 items at a time
    (quadratic copying, a fragmented heap), and has no ``array * n``; it
    copies a bytes initializer raw instead, which CPython refuses.
    """
    if _MICROPYTHON:
        return array(typecode, bytes(n * _ITEMSIZE[typecode]))
    return array(typecode, [0]) * n


def is_power_of_two(n):
    # type: (int) -> bool
    return n > 0 and n & (n - 1) == 0


def _bit_reverse(i, bits):
    # type: (int, int) -> int
    r = 0
    for _ in range(bits):
        r = (r << 1) | (i & 1)
        i >>= 1
    return r


def _bit_reversal_swaps(m):
    # type: (int) -> array[int]
    """Interleaved indices (2i, 2r) of the pairs i < r = bit-reverse(i) among m points."""
    bits = 0
    while (1 << bits) < m:
        bits += 1
    count = 0
    for i in range(m):
        if i < _bit_reverse(i, bits):
            count += 1
    out = zeros(2 * count, "H")
    p = 0
    for i in range(m):
        r = _bit_reverse(i, bits)
        if i < r:
            out[p] = 2 * i
            out[p + 1] = 2 * r
            p += 2
    return out


def fft_interleaved(buf, m, cos_t, sin_t, swaps):
    # type: (array[float], int, array[float], array[float], array[int]) -> None
    """In-place forward DFT of m complex points stored as buf[2j] + i*buf[2j+1].

    ``cos_t[k], sin_t[k]`` are ``cos, sin(2 pi k / (2 m))`` for k < m (the
    table of the real transform of 2 m points; this one uses every other
    entry and its stride). Forward means ``X_k = sum_j x_j exp(-2 pi i jk/m)``,
    as ``numpy.fft.fft``.
    """
    for p in range(0, len(swaps), 2):
        a = swaps[p]
        b = swaps[p + 1]
        t = buf[a]
        buf[a] = buf[b]
        buf[b] = t
        t = buf[a + 1]
        buf[a + 1] = buf[b + 1]
        buf[b + 1] = t
    n2 = 2 * m
    half = 1
    while half < m:
        h2 = 2 * half  # distance to the butterfly's partner (interleaved units)
        step = 2 * h2  # distance between groups
        tstride = m // half  # twiddle of index j is table entry j * tstride
        # j = 0: the twiddle is 1, no multiplications
        for a in range(0, n2, step):
            b = a + h2
            tr = buf[b]
            ti = buf[b + 1]
            ar = buf[a]
            ai = buf[a + 1]
            buf[b] = ar - tr
            buf[b + 1] = ai - ti
            buf[a] = ar + tr
            buf[a + 1] = ai + ti
        t = tstride
        for j2 in range(2, h2, 2):
            c = cos_t[t]
            s = sin_t[t]
            t += tstride
            for a in range(j2, n2, step):
                b = a + h2
                xr = buf[b]
                xi = buf[b + 1]
                tr = c * xr + s * xi  # (xr + i xi) * (c - i s)
                ti = c * xi - s * xr
                ar = buf[a]
                ai = buf[a + 1]
                buf[b] = ar - tr
                buf[b + 1] = ai - ti
                buf[a] = ar + tr
                buf[a + 1] = ai + ti
        half = h2


def accumulate_real_power(buf, m, cos_t, sin_t, acc):
    # type: (array[float], int, array[float], array[float], array[float]) -> None
    """acc[k] += 4 |X_k|^2, k = 0..m, X the DFT of the 2 m real samples whose
    half-length complex DFT Z is in buf (``fft_interleaved`` of the packed pairs).

    With E, O the DFTs of the even and odd samples, Z_k = E_k + i O_k and
    X_k = E_k + exp(-2 pi i k / 2m) O_k, where
    2 E_k = Z_k + conj(Z_{m-k}) and 2i O_k = Z_k - conj(Z_{m-k}).
    The factor 4 spares the halvings; the caller scales.
    """
    zr = buf[0]
    zi = buf[1]
    x0 = zr + zi  # X_0 = E_0 + O_0, both real
    xm = zr - zi  # X_m = E_0 - O_0
    acc[0] += 4.0 * x0 * x0
    acc[m] += 4.0 * xm * xm
    b = 2 * m
    for k in range(1, m):
        a = 2 * k
        b -= 2  # 2 (m - k)
        ar = buf[a]
        ai = buf[a + 1]
        br = buf[b]
        bi = buf[b + 1]
        er = ar + br  # 2 E_k
        ei = ai - bi
        o_r = ai + bi  # 2 O_k
        o_i = br - ar
        c = cos_t[k]
        s = sin_t[k]
        xr = er + c * o_r + s * o_i  # 2 X_k
        xi = ei + c * o_i - s * o_r
        acc[k] += xr * xr + xi * xi


class PowerSpectrum:
    """One-sided power spectrum averaged over segments of ``nfft`` samples.

    Each segment has its mean removed (``detrend='constant'``) and a periodic
    Hann window applied; ``|X_k|^2`` are summed over segments. ``bin_power(k)``
    is then the mean-square (input units squared) in bin k, scaled as
    ``scipy.signal.welch(..., window='hann', noverlap=0, scaling='density')``
    times the bin width: summed over all bins it estimates the variance.

    Usage: write the segment's samples into ``buf[0:nfft]``, call
    ``add_segment()``; the buffer is overwritten by the transform.

    Memory: 3 ``nfft`` + ``nfft/2`` + 1 floats and ``nfft/2`` 16-bit indices at
    most (e.g. 1024 points: 14 KiB of float32 on an ESP32, 28 KiB of doubles).
    """

    def __init__(self, nfft):
        # type: (int) -> None
        if not is_power_of_two(nfft) or not NFFT_MIN <= nfft <= NFFT_MAX:
            raise ValueError(
                "nfft: "
                + str(nfft)
                + " is not a power of two in ["
                + str(NFFT_MIN)
                + ", "
                + str(NFFT_MAX)
                + "]"
            )
        m = nfft // 2
        self.nfft = nfft
        self.m = m
        self.segments = 0
        self.buf = zeros(nfft)
        self._acc = zeros(m + 1)  # type: array[float]
        self._cos = zeros(m)
        self._sin = zeros(m)
        w = 2.0 * math.pi / nfft
        for k in range(m):
            self._cos[k] = math.cos(w * k)
            self._sin[k] = math.sin(w * k)
        # periodic Hann, as scipy.signal.get_window('hann', nfft)
        self._win = zeros(nfft)
        wss = 0.0
        for i in range(nfft):
            v = 0.5 - 0.5 * math.cos(w * i)
            self._win[i] = v
            wss += v * v
        self.window_power = wss  # sum of w^2 (3 nfft / 8)
        self._swaps = _bit_reversal_swaps(m)

    def add_segment(self):
        # type: () -> None
        """Transform the segment in ``buf`` and add its |X_k|^2."""
        buf = self.buf
        n = self.nfft
        win = self._win
        mean = sum(buf) / n
        for i in range(n):
            buf[i] = (buf[i] - mean) * win[i]
        fft_interleaved(buf, self.m, self._cos, self._sin, self._swaps)
        accumulate_real_power(buf, self.m, self._cos, self._sin, self._acc)
        self.segments += 1

    def bin_power(self, k):
        # type: (int) -> float
        """Mean-square power in bin k (0..nfft/2), averaged over the segments."""
        if self.segments == 0:
            return 0.0
        scale = 4.0 * self.nfft * self.window_power * self.segments
        if 0 < k < self.m:
            scale = scale * 0.5  # one-sided: the mirror bin's power folded in
        return self._acc[k] / scale

    def band_power(self, k_lo, k_hi):
        # type: (int, int) -> float
        """Mean-square power in bins k_lo <= k < k_hi."""
        total = 0.0
        for k in range(k_lo, k_hi):
            total += self.bin_power(k)
        return total

    def peak_bin(self, k_lo, k_hi):
        # type: (int, int) -> float
        """Fractional bin of the largest power among k_lo <= k < k_hi.

        The integer argmax refined by a parabola through the log-power of the
        bin and its two neighbours (quadratically interpolated FFT; Smith and
        Serra 1987): ``p = (a - c) / (2 (a - 2 b + c))``, |p| <= 1/2. No
        refinement at the spectrum's edges, or where a neighbour is zero.
        """
        acc = self._acc
        best = k_lo
        top = acc[k_lo]
        for k in range(k_lo + 1, k_hi):
            if acc[k] > top:
                top = acc[k]
                best = k
        if best < 2 or best > self.m - 2:
            return float(best)  # a neighbour is DC or Nyquist: other scaling
        lo = acc[best - 1]
        hi = acc[best + 1]
        if lo <= 0.0 or hi <= 0.0 or top <= 0.0:
            return float(best)
        a = math.log(lo)
        b = math.log(top)
        c = math.log(hi)
        den = a - 2.0 * b + c
        if den >= 0.0:  # flat top: no curvature to fit
            return float(best)
        return best + 0.5 * (a - c) / den
