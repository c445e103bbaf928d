"""Deterministic test signals for the acoustic features: the same samples everywhere.

Not needed on a sensor (leave it out of the board's manifest): simulators and
tests use it to produce 16-bit "recordings" block by block, and, because it
uses only integer arithmetic, IEEE-exact float operations and a few libm
calls, CPython and MicroPython produce the same samples from the same seed.
So the features can be computed inside MicroPython without shipping the
recording to it, and compared with CPython's.

    >>> s = Synth(8000, seed=7).band_noise(400, 1200, rms=300.0).bursts(
    ...     every_s=4.0, length_s=1.5, rms=3000.0, lo_hz=50, hi_hz=800)
    >>> block = s.read(1024)          # array('h')

Components (each returns the Synth, to chain): ``tone``, ``white``,
``band_noise`` (white noise through two 2nd-order Butterworth high-passes and
two low-passes, RBJ "Audio EQ Cookbook" biquads), ``bursts`` (transients:
band noise under a triangular envelope at pseudo-random times, like passing
traffic), and a DC offset. Amplitudes are in counts; the sum is rounded to the
nearest integer (halves up) and clipped to [-32768, 32767].
"""

import math

from .acoustic_fft import zeros

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from array import array  # noqa: F401  (used in type comments)
    from typing import Any  # noqa: F401  (used in type comments)

_MASK32 = 0xFFFFFFFF
_SQRT3 = math.sqrt(3.0)  # correctly rounded everywhere (IEEE sqrt)


class Xorshift32:
    """Marsaglia's xorshift32 (13, 17, 5): 32-bit states, period 2**32 - 1.

    G. Marsaglia, "Xorshift RNGs", J. Stat. Softw. 8(14), 2003.
    """

    def __init__(self, seed):
        # type: (int) -> None
        s = seed & _MASK32
        self.state = s if s else 0x6D2B79F5  # zero is the one forbidden state

    def next_u32(self):
        # type: () -> int
        x = self.state
        x ^= (x << 13) & _MASK32
        x ^= x >> 17
        x ^= (x << 5) & _MASK32
        self.state = x
        return x

    def uniform(self):
        # type: () -> float
        """Uniform in [-1, 1) (exact: a 32-bit integer over 2**31, minus one)."""
        return self.next_u32() / 2147483648.0 - 1.0


class Biquad:
    """A 2nd-order IIR section (direct form I), coefficients normalised by a0.

    ``kind`` is ``"lowpass"`` or ``"highpass"``; Q = 1/sqrt(2) (Butterworth).
    R. Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter
    coefficients".
    """

    def __init__(self, kind, f0, fs):
        # type: (str, float, float) -> None
        w0 = 2.0 * math.pi * f0 / fs
        cw = math.cos(w0)
        alpha = math.sin(w0) / math.sqrt(2.0)  # sin(w0) / (2 Q), Q = 1/sqrt(2)
        a0 = 1.0 + alpha
        if kind == "lowpass":
            b0 = (1.0 - cw) / 2.0
            b1 = 1.0 - cw
        elif kind == "highpass":
            b0 = (1.0 + cw) / 2.0
            b1 = -(1.0 + cw)
        else:
            raise ValueError("kind: " + repr(kind) + " is not 'lowpass' or 'highpass'")
        self.b0 = b0 / a0
        self.b1 = b1 / a0
        self.b2 = b0 / a0
        self.a1 = -2.0 * cw / a0
        self.a2 = (1.0 - alpha) / a0
        self.x1 = self.x2 = self.y1 = self.y2 = 0.0

    def step(self, x):
        # type: (float) -> float
        y = (
            self.b0 * x
            + self.b1 * self.x1
            + self.b2 * self.x2
            - self.a1 * self.y1
            - self.a2 * self.y2
        )
        self.x2 = self.x1
        self.x1 = x
        self.y2 = self.y1
        self.y1 = y
        return y


def _band_filters(lo_hz, hi_hz, fs):
    # type: (float, float, float) -> list[Biquad]
    out = []
    if lo_hz > 0:
        out.append(Biquad("highpass", lo_hz, fs))
        out.append(Biquad("highpass", lo_hz, fs))
    if hi_hz < fs / 2.0:
        out.append(Biquad("lowpass", hi_hz, fs))
        out.append(Biquad("lowpass", hi_hz, fs))
    return out


def _power_gain(lo_hz, hi_hz, fs):
    # type: (float, float, float) -> float
    """Sum of the squared impulse response: output variance for unit white input."""
    filters = _band_filters(lo_hz, hi_hz, fs)
    total = 0.0
    x = 1.0
    for _ in range(16384):
        y = x
        for f in filters:
            y = f.step(y)
        total += y * y
        x = 0.0
    return total


class _Tone:
    def __init__(self, freq_hz, amplitude, fs):
        # type: (float, float, float) -> None
        self.f = freq_hz
        self.a = amplitude
        self.fs = fs

    def add(self, acc, n, t0):
        # type: (array[float], int, int) -> None
        f = self.f
        fs = self.fs
        a = self.a
        w = 2.0 * math.pi / fs
        for i in range(n):
            # the phase reduced exactly (fmod) before sin: no drift with time
            acc[i] += a * math.sin(w * ((f * (t0 + i)) % fs))


class _Noise:
    """Uniform white noise (unit variance), optionally band-limited, scaled to rms."""

    def __init__(self, rng, rms, lo_hz, hi_hz, fs):
        # type: (Xorshift32, float, float, float, float) -> None
        self.rng = rng
        self.filters = _band_filters(lo_hz, hi_hz, fs)
        gain = _power_gain(lo_hz, hi_hz, fs) if self.filters else 1.0
        self.scale = rms * _SQRT3 / math.sqrt(gain)

    def sample(self):
        # type: () -> float
        y = self.rng.uniform()
        for f in self.filters:
            y = f.step(y)
        return y * self.scale

    def add(self, acc, n, t0):
        # type: (array[float], int, int) -> None
        for i in range(n):
            acc[i] += self.sample()


class _Bursts:
    """Band noise under a triangular envelope, one burst every ``every`` samples on average."""

    def __init__(self, rng, every_s, length_s, rms, lo_hz, hi_hz, fs):
        # type: (Xorshift32, float, float, float, float, float, float) -> None
        self.noise = _Noise(rng, rms, lo_hz, hi_hz, fs)
        self.rng = rng
        self.every = every_s * fs
        self.length = int(length_s * fs)
        if self.length < 2:
            raise ValueError("length_s: " + repr(length_s) + " s is shorter than 2 samples")
        self.start = self._gap(0)

    def _gap(self, t):
        # type: (int) -> int
        u = (self.rng.uniform() + 1.0) / 2.0  # [0, 1)
        return t + int(self.every * (0.5 + u))

    def add(self, acc, n, t0):
        # type: (array[float], int, int) -> None
        length = self.length
        for i in range(n):
            t = t0 + i
            if t < self.start:
                continue
            k = t - self.start
            env = 1.0 - abs(2.0 * k / length - 1.0)
            acc[i] += env * self.noise.sample()
            if k == length - 1:
                self.start = self._gap(t + 1)


class Synth:
    """A reproducible 16-bit signal built from components, read block by block.

    Parameters
    ----------
    fs : float
        Sample rate, Hz.
    seed : int
        Seed of the xorshift32 generator; each noise component gets its own
        stream derived from it, in the order the components were added.
    dc : float
        Constant offset, counts (a MEMS/ADC offset).
    """

    def __init__(self, fs, seed=1, dc=0.0):
        # type: (float, int, float) -> None
        self.fs = fs
        self.seed = seed
        self.dc = dc
        self.position = 0  # samples produced so far
        self._parts = []  # type: list[Any]

    def _rng(self):
        # type: () -> Xorshift32
        # distinct, well-mixed seed per component (golden-ratio increment)
        rng = Xorshift32((self.seed + 0x9E3779B9 * (len(self._parts) + 1)) & _MASK32)
        for _ in range(8):  # leave the small-seed neighbourhood
            rng.next_u32()
        return rng

    def tone(self, freq_hz, amplitude):
        # type: (float, float) -> Synth
        """A sine of ``amplitude`` counts (peak) at ``freq_hz``, zero phase at t = 0."""
        self._parts.append(_Tone(freq_hz, amplitude, self.fs))
        return self

    def white(self, rms):
        # type: (float) -> Synth
        """Uniform white noise of ``rms`` counts."""
        self._parts.append(_Noise(self._rng(), rms, 0, self.fs, self.fs))
        return self

    def band_noise(self, lo_hz, hi_hz, rms):
        # type: (float, float, float) -> Synth
        """Stationary noise band-limited to about [lo_hz, hi_hz], ``rms`` counts."""
        self._parts.append(_Noise(self._rng(), rms, lo_hz, hi_hz, self.fs))
        return self

    def bursts(self, every_s, length_s, rms, lo_hz, hi_hz):
        # type: (float, float, float, float, float) -> Synth
        """Transients: bursts of band noise (``rms`` counts at their peak) of
        ``length_s``, one per ``every_s`` on average (gaps uniform in 0.5-1.5 x)."""
        self._parts.append(_Bursts(self._rng(), every_s, length_s, rms, lo_hz, hi_hz, self.fs))
        return self

    def read(self, n):
        # type: (int) -> array[int]
        """The next n samples as ``array('h')``."""
        acc = zeros(n, "d")
        t0 = self.position
        for part in self._parts:
            part.add(acc, n, t0)
        out = zeros(n, "h")
        dc = self.dc
        for i in range(n):
            v = math.floor(acc[i] + dc + 0.5)
            if v > 32767:
                v = 32767
            elif v < -32768:
                v = -32768
            out[i] = v
        self.position = t0 + n
        return out
