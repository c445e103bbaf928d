"""Night acoustic leak-screening features, computed block by block on the sensor.

A leak is a persistent, stationary, broadband noise (a few hundred Hz to about
1.5 kHz on metal pipes, lower on plastic). During the quiet night hours the
*minimum* level over many short sub-windows therefore stays high and the
*spread* between a high and a low percentile of those levels stays small,
while traffic and consumption only raise the high percentiles. This module
turns one night's acquisition into those figures without ever holding the
recording: ``NightFeatures.feed`` takes the I2S driver's blocks as they come
(any size), keeps running sums per sub-window, one level per sub-window, and a
Welch-averaged spectrum.

    >>> nf = NightFeatures(8000, subwindow_s=0.25)
    >>> for block in blocks:                 # e.g. array('h') of 1024 samples
    ...     nf.feed(block)
    >>> nf.result()["noise_min_db"]          # dB re full scale by default
    -62.4

``result()`` is a plain dict of protocol metric names (docs/protocol.md,
units by suffix); see docs/leak_features.md for each feature's definition,
the method choices and the references. Runs unchanged on CPython and
MicroPython (``array`` and ``math`` only).

Memory: the spectrum's arrays (``edge.acoustic_fft``) plus one float per
sub-window of the longest acquisition (``max_duration_s``): with the defaults
at 8 kHz (1024-point FFT, 0.25 s sub-windows, 600 s), about 24 KiB of float32
on an ESP32. Nothing grows while feeding.
"""

import math

from .acoustic_fft import NFFT_MAX, NFFT_MIN, PowerSpectrum, is_power_of_two, zeros
from .acoustic_stats import percentile_sorted, sort_in_place

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from array import array  # noqa: F401  (used in type comments)
    from typing import Any  # noqa: F401  (used in type comments)

FS_MIN = 1000  # Hz; leak sensors sample at 4-8 kHz, simulators may go wider
FS_MAX = 48000
SUBWINDOW_MIN = 16  # samples per sub-window
FLOOR_DB = -200.0  # the level of silence (the protocol's lowest noise level)
_FLOOR_RATIO = 1e-20  # power ratio of FLOOR_DB

DEFAULT_BANDS = ((100, 300), (300, 600), (600, 1200), (1200, 2400))
DEFAULT_EXCEEDED = (10, 50, 90)  # L10, L50, L90
DEFAULT_SPREAD = (10, 90)  # noise_spread_db = L10 - L90
DEFAULT_FULL_SCALE = 32768  # 16-bit signed samples
DEFAULT_MAX_DURATION_S = 600.0


class AcousticError(ValueError):
    """A bad parameter or input block.

    Attributes
    ----------
    param : str
        The parameter at fault (``"fs"``, ``"bands"``, ``"block"``, ...).
    reason : str
        What is wrong with it, naming the value or the limit.
    """

    def __init__(self, param, reason):
        # type: (str, str) -> None
        super().__init__(param + ": " + reason)
        self.param = param
        self.reason = reason


# ---------------------------------------------------------------- validation


def _is_number(x):
    # type: (Any) -> bool
    t = type(x)
    return (t is int or t is float) and x == x and x - x == 0  # finite, not bool


def _is_int(x):
    # type: (Any) -> bool
    return type(x) is int


def _positive(name, x):
    # type: (str, Any) -> float
    if not _is_number(x) or x <= 0:
        raise AcousticError(name, repr(x) + " is not a positive finite number")
    return float(x)


def _first_bin(f, nfft, fs):
    # type: (float, int, float) -> int
    """The smallest k with k * fs / nfft >= f (bin centres)."""
    target = f * nfft
    k = int(target / fs)
    while k * fs < target:
        k += 1
    while k > 0 and (k - 1) * fs >= target:
        k -= 1
    return k


def _check_exceedance(name, p):
    # type: (str, Any) -> int
    if not _is_int(p) or not 1 <= p <= 99:
        raise AcousticError(name, repr(p) + " is not an integer percentage in [1, 99]")
    return int(p)


def _db(power, ref2):
    # type: (float, float) -> float
    r = power / ref2
    if r <= _FLOOR_RATIO:
        return FLOOR_DB
    return 10.0 * math.log10(r)


def default_nfft(fs):
    # type: (float) -> int
    """The smallest power of two >= fs / 8: about 8 Hz bins, 0.13 s segments."""
    n = NFFT_MIN
    while n * 8 < fs and n < NFFT_MAX:
        n *= 2
    return n


# ---------------------------------------------------------------- features


class NightFeatures:
    """Streaming leak-screening features of one acquisition.

    Parameters
    ----------
    fs : int or float
        Sample rate, Hz, in [FS_MIN, FS_MAX].
    subwindow_s : float
        Length of the short windows whose levels give the percentiles, s.
        Rounded to a whole number of samples (at least SUBWINDOW_MIN).
    bands : sequence of (lo, hi)
        Band edges in whole Hz, ``0 <= lo < hi <= fs / 2``; each band holds
        the FFT bins with ``lo <= f < hi`` and must hold at least one.
        Reported as ``band_<lo>_<hi>_db``. May be empty.
    ref : float or None
        The RMS amplitude (input units) that is 0 dB. None: ``full_scale``,
        so levels are dB re full scale and a full-scale sine is -3.01 dB. A
        calibrated sensor passes its sensitivity (counts per pascal or per
        m/s^2) to get dB re 1 Pa or 1 m/s^2.
    full_scale : float
        Peak magnitude of the converter, input units (32768 for 16 bits).
    clip_level : float or None
        A sample with ``|x| >= clip_level`` counts as clipped. None: one
        16-bit step below full scale, ``full_scale * (1 - 2**-15)``.
    nfft : int or None
        FFT segment length, a power of two in [NFFT_MIN, NFFT_MAX]. None:
        ``default_nfft(fs)`` (1024 at 8 kHz, 512 at 4 kHz).
    exceeded : sequence of int
        Percentages p in [1, 99] for which ``noise_l<p>_db``, the level
        exceeded p % of the time, is reported.
    spread : (int, int)
        ``(a, b)``, a < b: ``noise_spread_db = L_a - L_b`` (default L10 - L90).
    peak_range : (lo, hi) or None
        Hz range searched for ``noise_peak_hz``. None: from the lowest band
        edge to the highest (the whole spectrum above DC without bands).
    spectrum_every : int
        Transform one segment in this many (1: all). The other segments are
        skipped by the spectrum (not by the levels): on a slow board this
        divides the FFT time, and for stationary noise the Welch average stays
        unbiased, only with fewer averages.
    max_duration_s : float
        Longest acquisition to accept, s; sizes the level store.

    Raises
    ------
    AcousticError
        For any bad parameter, naming it (``.param``).
    """

    def __init__(
        self,
        fs,
        subwindow_s=0.25,
        bands=DEFAULT_BANDS,
        ref=None,
        full_scale=DEFAULT_FULL_SCALE,
        clip_level=None,
        nfft=None,
        exceeded=DEFAULT_EXCEEDED,
        spread=DEFAULT_SPREAD,
        peak_range=None,
        spectrum_every=1,
        max_duration_s=DEFAULT_MAX_DURATION_S,
    ):
        # type: (Any, Any, Any, Any, Any, Any, Any, Any, Any, Any, Any, Any) -> None
        if not _is_number(fs) or not FS_MIN <= fs <= FS_MAX:
            raise AcousticError(
                "fs",
                repr(fs) + " Hz is not a number in [" + str(FS_MIN) + ", " + str(FS_MAX) + "]",
            )
        self.fs = fs
        _positive("subwindow_s", subwindow_s)
        n_sub = int(math.floor(subwindow_s * fs + 0.5))
        if n_sub < SUBWINDOW_MIN:
            raise AcousticError(
                "subwindow_s",
                repr(subwindow_s)
                + " s is "
                + str(n_sub)
                + " samples at "
                + repr(fs)
                + " Hz; at least "
                + str(SUBWINDOW_MIN)
                + " are needed",
            )
        self.subwindow_len = n_sub
        if nfft is None:
            nfft = default_nfft(fs)
        if not _is_int(nfft) or not is_power_of_two(nfft) or not NFFT_MIN <= nfft <= NFFT_MAX:
            raise AcousticError(
                "nfft",
                repr(nfft)
                + " is not a power of two in ["
                + str(NFFT_MIN)
                + ", "
                + str(NFFT_MAX)
                + "]",
            )
        self.nfft = nfft
        full_scale = _positive("full_scale", full_scale)
        self.full_scale = full_scale
        if ref is None:
            ref = full_scale
        ref = _positive("ref", ref)
        self.ref = ref
        self._ref2 = float(ref) * ref
        if clip_level is None:
            clip_level = full_scale - full_scale / 32768.0
        self._clip = _positive("clip_level", clip_level)
        self._bands = self._check_bands(bands)
        self._exceeded = self._check_exceeded(exceeded)
        self._spread = self._check_spread(spread)
        self._peak_bins = self._check_peak_range(peak_range)
        if not _is_int(spectrum_every) or spectrum_every < 1:
            raise AcousticError("spectrum_every", repr(spectrum_every) + " is not an integer >= 1")
        self._every = spectrum_every
        _positive("max_duration_s", max_duration_s)
        capacity = int(max_duration_s * fs / n_sub) + 1
        self._max_samples = capacity * n_sub

        self._spectrum = PowerSpectrum(nfft)
        self._levels = zeros(capacity)  # dB per complete sub-window, in time order
        self._n_levels = 0
        self._total = 0  # samples accepted
        self._clipped = 0
        # the sub-window being filled: sums of (x - shift) and (x - shift)^2
        self._shift = 0.0  # the previous sub-window's mean (first: first sample)
        self._sub_fill = 0
        self._s1 = 0.0
        self._s2 = 0.0
        # mean-square power summed over complete sub-windows (Neumaier)
        self._psum = 0.0
        self._pcomp = 0.0
        # the FFT segment being filled
        self._seg_fill = 0
        self._segments_seen = 0

    # -- validation helpers (constructor only)

    def _check_bands(self, bands):
        # type: (Any) -> list[tuple[str, int, int]]
        if isinstance(bands, (str, bytes)):
            raise AcousticError("bands", "expected a sequence of (lo, hi) pairs, got a string")
        try:
            items = list(bands)
        except TypeError:
            raise AcousticError(
                "bands", repr(bands) + " is not a sequence of (lo, hi) pairs"
            ) from None
        nyquist = self.fs / 2.0
        out = []
        names = {}
        for item in items:
            try:
                lo, hi = item
            except (TypeError, ValueError):
                raise AcousticError("bands", repr(item) + " is not a (lo, hi) pair") from None
            if not _is_int(lo) or not _is_int(hi):
                raise AcousticError("bands", repr(item) + ": edges must be whole hertz (int)")
            if not 0 <= lo < hi <= nyquist:
                raise AcousticError(
                    "bands",
                    repr(item) + ": needs 0 <= lo < hi <= fs/2 = " + repr(nyquist) + " Hz",
                )
            k_lo = _first_bin(lo, self.nfft, self.fs)
            k_hi = _first_bin(hi, self.nfft, self.fs)
            if k_hi <= k_lo:
                raise AcousticError(
                    "bands",
                    repr(item)
                    + " Hz holds no FFT bin (bins are "
                    + repr(self.fs / self.nfft)
                    + " Hz apart)",
                )
            name = "band_" + str(lo) + "_" + str(hi) + "_db"
            if name in names:
                raise AcousticError("bands", repr(item) + " is listed twice")
            names[name] = True
            out.append((name, k_lo, k_hi))
        return out

    def _check_exceeded(self, exceeded):
        # type: (Any) -> list[int]
        try:
            items = list(exceeded)
        except TypeError:
            raise AcousticError(
                "exceeded", repr(exceeded) + " is not a sequence of percentages"
            ) from None
        out = []
        for p in items:
            _check_exceedance("exceeded", p)
            if p in out:
                raise AcousticError("exceeded", repr(p) + " is listed twice")
            out.append(p)
        return out

    def _check_spread(self, spread):
        # type: (Any) -> tuple[int, int]
        try:
            a, b = spread
        except (TypeError, ValueError):
            raise AcousticError("spread", repr(spread) + " is not a pair (a, b)") from None
        _check_exceedance("spread", a)
        _check_exceedance("spread", b)
        if not a < b:
            raise AcousticError("spread", repr(spread) + ": needs a < b (L_a is the louder)")
        return (a, b)

    def _check_peak_range(self, peak_range):
        # type: (Any) -> tuple[int, int]
        m = self.nfft // 2
        if peak_range is None:
            if not self._bands:
                return (1, m + 1)
            k_lo = min(b[1] for b in self._bands)
            k_hi = max(b[2] for b in self._bands)
            return (max(k_lo, 1), k_hi)
        try:
            lo, hi = peak_range
        except (TypeError, ValueError):
            raise AcousticError(
                "peak_range", repr(peak_range) + " is not a pair (lo, hi)"
            ) from None
        if not _is_number(lo) or not _is_number(hi) or not 0 <= lo < hi <= self.fs / 2.0:
            raise AcousticError("peak_range", repr(peak_range) + ": needs 0 <= lo < hi <= fs/2 Hz")
        k_lo = max(_first_bin(lo, self.nfft, self.fs), 1)
        k_hi = _first_bin(hi, self.nfft, self.fs)
        if hi == self.fs / 2.0:
            k_hi = m + 1  # include the Nyquist bin
        if k_hi <= k_lo:
            raise AcousticError("peak_range", repr(peak_range) + " Hz holds no FFT bin above DC")
        return (k_lo, k_hi)

    # -- streaming

    @property
    def samples(self):
        # type: () -> int
        """Samples accepted so far."""
        return self._total

    def feed(self, block):
        # type: (Any) -> None
        """Add the next samples: an ``array`` (e.g. ``'h'`` from I2S) or a list of numbers.

        Blocks may have any length; the result does not depend on how the
        signal was cut. A block is checked before it is used (finite values,
        capacity), so a rejected block leaves the state unchanged.

        Raises
        ------
        AcousticError
            ``param == "block"``: raw bytes, non-numbers, non-finite values,
            or more samples than ``max_duration_s`` allows.
        """
        if isinstance(block, (str, bytes, bytearray)):
            raise AcousticError(
                "block",
                "got " + type(block).__name__ + "; pass samples, e.g. array('h', raw bytes)",
            )
        n = len(block)
        if n == 0:
            return
        if self._total + n > self._max_samples:
            raise AcousticError(
                "block",
                str(self._total + n)
                + " samples exceed max_duration_s ("
                + str(self._max_samples)
                + " samples)",
            )
        try:
            total = sum(block, 0.0)  # a float sum: numpy's int16 scalars would wrap
            top = max(block)
            bottom = min(block)
        except TypeError:
            raise AcousticError("block", "holds a value that is not a number") from None
        if not total - total == 0:  # NaN or infinity somewhere (or an overflowing sum)
            raise AcousticError("block", "holds a non-finite value (or one too large)")
        clip = self._clip
        if top >= clip or bottom <= -clip:
            count = 0
            for x in block:
                if x >= clip or x <= -clip:
                    count += 1
            self._clipped += count
        if self._total == 0:
            self._shift = float(block[0])
        self._total += n

        buf = self._spectrum.buf
        nfft = self.nfft
        n_sub = self.subwindow_len
        i = 0
        while i < n:
            end = n
            if i + n_sub - self._sub_fill < end:
                end = i + n_sub - self._sub_fill
            j = self._seg_fill
            if i + nfft - j < end:
                end = i + nfft - j
            shift = self._shift
            s1 = 0.0
            s2 = 0.0
            for idx in range(i, end):
                x = block[idx]
                buf[j] = x
                j += 1
                d = x - shift
                s1 += d
                s2 += d * d
            self._sub_fill += end - i
            self._s1 += s1
            self._s2 += s2
            i = end
            self._seg_fill = j
            if self._sub_fill == n_sub:
                self._close_subwindow()
            if j == nfft:
                self._close_segment()

    def _close_subwindow(self):
        # type: () -> None
        n = self.subwindow_len
        mean = self._s1 / n  # mean of x - shift
        power = self._s2 / n - mean * mean
        if power < 0.0:  # rounding, for a constant sub-window
            power = 0.0
        self._shift += mean
        self._levels[self._n_levels] = _db(power, self._ref2)
        self._n_levels += 1
        # Neumaier's compensated sum of the sub-window powers
        t = self._psum + power
        if abs(self._psum) >= power:
            self._pcomp += (self._psum - t) + power
        else:
            self._pcomp += (power - t) + self._psum
        self._psum = t
        self._sub_fill = 0
        self._s1 = 0.0
        self._s2 = 0.0

    def _close_segment(self):
        # type: () -> None
        if self._segments_seen % self._every == 0:
            self._spectrum.add_segment()
        self._segments_seen += 1
        self._seg_fill = 0

    # -- results

    def levels(self):
        # type: () -> array[float]
        """Level (dB re ``ref``) of each complete sub-window so far, in time order."""
        n = self._n_levels
        out = zeros(n)
        levels = self._levels
        for i in range(n):
            out[i] = levels[i]
        return out

    def bin_powers(self):
        # type: () -> array[float]
        """Averaged one-sided mean-square power of each FFT bin 0..nfft/2.

        Input units squared; bin k is centred on ``k * fs / nfft``.
        """
        spec = self._spectrum
        out = zeros(spec.m + 1)
        for k in range(spec.m + 1):
            out[k] = spec.bin_power(k)
        return out

    def result(self):
        # type: () -> dict[str, Any]
        """The features so far, as protocol metrics (name -> value).

        ``noise_rms_db``, ``noise_min_db``, ``noise_max_db``, ``noise_l<p>_db``,
        ``noise_spread_db`` (dB re ``ref``, over complete sub-windows),
        ``band_<lo>_<hi>_db`` (dB re ``ref``), ``noise_peak_hz``,
        ``noise_clipped_count`` (all samples fed) and ``noise_duration_s``
        (the complete sub-windows). May be called at any time; feeding can go
        on afterwards.

        Raises
        ------
        AcousticError
            ``param == "samples"`` before one complete sub-window and one
            complete FFT segment.
        """
        n = self._n_levels
        if n == 0 or self._spectrum.segments == 0:
            need = self.subwindow_len
            if self.nfft > need:
                need = self.nfft
            raise AcousticError(
                "samples",
                str(self._total)
                + " samples fed; the features need at least "
                + str(need)
                + " (one sub-window of "
                + str(self.subwindow_len)
                + " and one FFT segment of "
                + str(self.nfft)
                + ")",
            )
        ordered = self.levels()
        sort_in_place(ordered, n)
        ref2 = self._ref2
        out = {}
        out["noise_rms_db"] = _db((self._psum + self._pcomp) / n, ref2)
        out["noise_min_db"] = ordered[0]
        out["noise_max_db"] = ordered[n - 1]
        for p in self._exceeded:
            out["noise_l" + str(p) + "_db"] = percentile_sorted(ordered, n, 100 - p)
        a, b = self._spread
        spread = percentile_sorted(ordered, n, 100 - a) - percentile_sorted(ordered, n, 100 - b)
        out["noise_spread_db"] = spread if spread > 0.0 else 0.0
        spec = self._spectrum
        for name, k_lo, k_hi in self._bands:
            out[name] = _db(spec.band_power(k_lo, k_hi), ref2)
        k_lo, k_hi = self._peak_bins
        out["noise_peak_hz"] = spec.peak_bin(k_lo, k_hi) * self.fs / self.nfft
        out["noise_clipped_count"] = self._clipped
        out["noise_duration_s"] = n * self.subwindow_len / self.fs
        return out


def night_features(
    samples,
    fs,
    subwindow_s=0.25,
    bands=DEFAULT_BANDS,
    ref=None,
    full_scale=DEFAULT_FULL_SCALE,
    clip_level=None,
    nfft=None,
    exceeded=DEFAULT_EXCEEDED,
    spread=DEFAULT_SPREAD,
    peak_range=None,
    spectrum_every=1,
):
    # type: (Any, Any, Any, Any, Any, Any, Any, Any, Any, Any, Any, Any) -> dict[str, Any]
    """``NightFeatures(...).feed(samples)`` then ``.result()``, for a whole recording.

    Parameters are those of ``NightFeatures``; ``samples`` is a non-empty
    array or list. Raises AcousticError (``param == "samples"`` when it is
    empty or shorter than one sub-window and one FFT segment).
    """
    if isinstance(samples, (str, bytes, bytearray)):
        raise AcousticError("samples", "got " + type(samples).__name__ + "; pass numbers")
    try:
        n = len(samples)
    except TypeError:
        raise AcousticError("samples", "expected an array or a list of numbers") from None
    if n == 0:
        raise AcousticError("samples", "is empty")
    if not _is_number(fs):
        raise AcousticError("fs", repr(fs) + " is not a number")
    nf = NightFeatures(
        fs,
        subwindow_s=subwindow_s,
        bands=bands,
        ref=ref,
        full_scale=full_scale,
        clip_level=clip_level,
        nfft=nfft,
        exceeded=exceeded,
        spread=spread,
        peak_range=peak_range,
        spectrum_every=spectrum_every,
        max_duration_s=n / fs,
    )
    nf.feed(samples)
    return nf.result()
