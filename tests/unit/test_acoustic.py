"""``edge.acoustic``: night leak-screening features, against independent references.

References are textbook values (a sine of amplitude A has RMS A/sqrt(2)),
NumPy (per-sub-window levels, ``numpy.percentile``, ``numpy.fft.rfft``) and
``scipy.signal.welch``; never the module itself. Tolerances:

- against exact arithmetic on the same samples (NumPy, Welch without overlap):
  1e-9 dB, or 1e-9 relative on powers (rounding only);
- against theory or a differently configured estimator (Welch with 50 %
  overlap, the variance of a finite noise record): 0.05-0.5 dB, stated per test.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import signal

from edge import acoustic_fft, protocol
from edge.acoustic import (
    DEFAULT_BANDS,
    FLOOR_DB,
    AcousticError,
    NightFeatures,
    default_nfft,
    night_features,
)
from edge.acoustic_fft import (
    PowerSpectrum,
    accumulate_real_power,
    fft_interleaved,
    zeros,
)
from edge.acoustic_stats import percentile_sorted, sort_in_place
from edge.acoustic_synth import Synth, Xorshift32

FS = 8000
FULL = 32768.0
EXACT_DB = 1e-9  # dB: same samples, same definition, rounding only
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- references


def ref_levels(x: np.ndarray, fs: float, subwindow_s: float, ref: float = FULL) -> np.ndarray:
    """dB re ref of each complete sub-window, its mean removed (NumPy)."""
    n = math.floor(subwindow_s * fs + 0.5)
    k = len(x) // n
    rows = np.asarray(x[: k * n], dtype=float).reshape(k, n)
    rows = rows - rows.mean(axis=1, keepdims=True)
    power = (rows**2).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.maximum(10 * np.log10(power / ref**2), FLOOR_DB)


def welch_band_db(
    x: np.ndarray, fs: float, lo: float, hi: float, nfft: int, noverlap: int, ref: float = FULL
) -> float:
    f, pxx = signal.welch(
        np.asarray(x, dtype=float),
        fs,
        window="hann",
        nperseg=nfft,
        noverlap=noverlap,
        detrend="constant",
        scaling="density",
    )
    band = (f >= lo) & (f < hi)
    return float(10 * np.log10(pxx[band].sum() * (f[1] - f[0]) / ref**2))


def sine(freq: float, amplitude: float, seconds: float, fs: float = FS) -> np.ndarray:
    n = np.arange(int(seconds * fs))
    return amplitude * np.sin(2 * np.pi * freq * n / fs)


def rng_noise(seed: int, sigma: float, seconds: float, fs: float = FS) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sigma, int(seconds * fs))


def bandpass_noise(seed: int, lo: float, hi: float, sigma: float, seconds: float) -> np.ndarray:
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=FS, output="sos")
    y = signal.sosfilt(sos, rng_noise(seed, 1.0, seconds + 0.5))[int(0.5 * FS) :]
    return sigma * y / y.std()


def feed_in_blocks(nf: NightFeatures, x: Any, sizes: list[int]) -> None:
    i = 0
    k = 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        nf.feed(x[i : i + n])
        i += n
        k += 1


# ---------------------------------------------------------------- levels


def test_full_scale_sine_is_minus_3_01_dbfs() -> None:
    x = sine(1000, 1.0, 2.0)
    r = night_features(list(x), FS, full_scale=1.0)
    expected = 20 * math.log10(1 / math.sqrt(2))  # -3.0103 dB
    for name in ("noise_rms_db", "noise_min_db", "noise_l50_db", "noise_max_db"):
        assert r[name] == pytest.approx(expected, abs=1e-6), name
    assert r["noise_spread_db"] == pytest.approx(0.0, abs=1e-6)
    assert r["band_600_1200_db"] == pytest.approx(expected, abs=1e-6)  # the whole tone
    assert r["noise_peak_hz"] == pytest.approx(1000.0, abs=1e-6)


def test_int16_full_scale_sine_and_its_clipped_samples() -> None:
    x = np.round(sine(1000, 32767, 2.0)).astype(np.int16)
    r = night_features(array("h", x.tolist()), FS)
    # a 32767-peak sine, re 32768: the 16-bit code's own -0.00027 dB included
    assert r["noise_rms_db"] == pytest.approx(
        20 * math.log10(32767 / 32768 / math.sqrt(2)), abs=1e-3
    )
    # samples at full scale: the peaks that land on +-32767 (and -32768)
    assert r["noise_clipped_count"] == int(np.count_nonzero(np.abs(x.astype(int)) >= 32767))
    assert r["noise_clipped_count"] > 0


@pytest.mark.parametrize("dbfs", [-20.0, -60.0, -90.0])
def test_sine_level_follows_its_amplitude(dbfs: float) -> None:
    amplitude = FULL * 10 ** (dbfs / 20)
    r = night_features(list(sine(437.0, amplitude, 1.0)), FS)
    assert r["noise_rms_db"] == pytest.approx(dbfs - 3.0103, abs=2e-3)
    assert r["noise_clipped_count"] == 0


def test_white_noise_rms_against_numpy_and_theory() -> None:
    sigma = 1000.0
    x = rng_noise(1, sigma, 10.0)
    r = night_features(list(x), FS)
    levels = ref_levels(x, FS, 0.25)
    mean_power_db = 10 * math.log10(np.mean(10 ** (levels / 10)))
    assert r["noise_rms_db"] == pytest.approx(mean_power_db, abs=EXACT_DB)
    # 80 000 Gaussian samples: the variance estimate is within 0.05 dB of sigma^2
    assert r["noise_rms_db"] == pytest.approx(20 * math.log10(sigma / FULL), abs=0.05)


def test_sub_window_levels_match_numpy() -> None:
    x = rng_noise(2, 300.0, 5.0) + sine(700.0, 500.0, 5.0)
    nf = NightFeatures(FS, subwindow_s=0.1)
    nf.feed(list(x))
    np.testing.assert_allclose(np.array(nf.levels()), ref_levels(x, FS, 0.1), rtol=0, atol=EXACT_DB)


def test_percentiles_match_numpy_percentile() -> None:
    # a level that varies: noise with a slow amplitude modulation and bursts
    t = np.arange(20 * FS) / FS
    x = rng_noise(3, 1.0, 20.0) * (200 + 150 * np.sin(2 * np.pi * 0.13 * t))
    x[5 * FS : 6 * FS] *= 20
    nf = NightFeatures(FS, subwindow_s=0.25, exceeded=(5, 10, 50, 90, 95))
    nf.feed(list(x))
    r = nf.result()
    levels = ref_levels(x, FS, 0.25)
    for p in (5, 10, 50, 90, 95):
        expected = float(np.percentile(levels, 100 - p))  # exceeded p % of the time
        assert r[f"noise_l{p}_db"] == pytest.approx(expected, abs=EXACT_DB), p
    assert r["noise_min_db"] == pytest.approx(levels.min(), abs=EXACT_DB)
    assert r["noise_max_db"] == pytest.approx(levels.max(), abs=EXACT_DB)
    spread = np.percentile(levels, 90) - np.percentile(levels, 10)
    assert r["noise_spread_db"] == pytest.approx(spread, abs=EXACT_DB)
    assert r["noise_duration_s"] == pytest.approx(len(levels) * 0.25)


def test_dc_offset_is_removed() -> None:
    x = rng_noise(4, 50.0, 3.0)
    clean = night_features(list(x), FS)
    shifted = night_features(list(x + 12000.0), FS)
    for name, value in clean.items():
        assert shifted[name] == pytest.approx(value, abs=1e-6), name


def test_silence_is_the_floor() -> None:
    r = night_features([7] * (2 * FS), FS)  # a constant: DC only
    for name, value in r.items():
        if name.endswith("_db") and name != "noise_spread_db":
            assert value == FLOOR_DB, name
    assert r["noise_spread_db"] == 0.0


def test_calibrated_reference() -> None:
    # 1 Pa RMS read through a sensitivity of 250 counts/Pa is 0 dB re 1 Pa
    x = sine(500.0, 250.0 * math.sqrt(2), 1.0)
    r = night_features(list(x), FS, ref=250.0)
    assert r["noise_rms_db"] == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- spectrum


@pytest.mark.parametrize("nfft", [16, 64, 512, 1024, 4096])
def test_fft_against_numpy_rfft(nfft: int) -> None:
    x = np.random.default_rng(nfft).normal(size=nfft)
    ps = PowerSpectrum(nfft)
    for i, v in enumerate(x):
        ps.buf[i] = v
    ps.add_segment()
    windowed = (x - x.mean()) * signal.get_window("hann", nfft)
    power = np.abs(np.fft.rfft(windowed)) ** 2
    got = np.array([ps._acc[k] for k in range(nfft // 2 + 1)]) / 4
    np.testing.assert_allclose(got, power, rtol=1e-9, atol=1e-9 * power.max())


def test_complex_fft_against_numpy_fft() -> None:
    m = 256
    z = np.random.default_rng(5).normal(size=m) + 1j * np.random.default_rng(6).normal(size=m)
    buf = zeros(2 * m)
    for i, v in enumerate(z):
        buf[2 * i] = v.real
        buf[2 * i + 1] = v.imag
    ps = PowerSpectrum(2 * m)
    fft_interleaved(buf, m, ps._cos, ps._sin, ps._swaps)
    got = np.array(buf[0::2]) + 1j * np.array(buf[1::2])
    np.testing.assert_allclose(got, np.fft.fft(z), rtol=0, atol=1e-10)
    acc = zeros(m + 1)
    accumulate_real_power(buf, m, ps._cos, ps._sin, acc)  # runs on any packed input


def test_bin_powers_are_welch_without_overlap() -> None:
    x = rng_noise(7, 100.0, 4.0) + sine(1234.5, 300.0, 4.0)
    nf = NightFeatures(FS)
    nf.feed(list(x))
    f, pxx = signal.welch(x, FS, window="hann", nperseg=1024, noverlap=0, detrend="constant")
    np.testing.assert_allclose(np.array(nf.bin_powers()), pxx * (f[1] - f[0]), rtol=1e-9)


def test_band_levels_against_welch() -> None:
    x = bandpass_noise(8, 400.0, 1200.0, 300.0, 20.0) + rng_noise(9, 20.0, 20.0)
    r = night_features(list(x), FS)
    for lo, hi in DEFAULT_BANDS:
        got = r[f"band_{lo}_{hi}_db"]
        # the same estimator: exact up to rounding
        assert got == pytest.approx(welch_band_db(x, FS, lo, hi, 1024, 0), abs=EXACT_DB)
        # scipy's default Welch (50 % overlap): a different estimate, within 0.5 dB
        assert got == pytest.approx(welch_band_db(x, FS, lo, hi, 1024, 512), abs=0.5)


def test_band_level_of_a_tone_is_its_power() -> None:
    amplitude = 1000.0
    x = sine(850.3, amplitude, 2.0) + rng_noise(10, 1.0, 2.0)
    r = night_features(list(x), FS)
    assert r["band_600_1200_db"] == pytest.approx(
        10 * math.log10(amplitude**2 / 2 / FULL**2), abs=0.01
    )
    assert r["band_100_300_db"] < r["band_600_1200_db"] - 60


@pytest.mark.parametrize(
    ("fs", "freq"), [(8000, 437.3), (8000, 1234.5), (8000, 2001.0), (4000, 777.7)]
)
def test_peak_frequency_of_a_tone(fs: int, freq: float) -> None:
    x = sine(freq, 2000.0, 3.0, fs) + rng_noise(11, 50.0, 3.0, fs)
    r = night_features(list(x), fs, bands=((100, 300), (300, 1500)), peak_range=(50, fs / 2))
    bin_hz = fs / default_nfft(fs)
    # parabolic interpolation of the log power: within a tenth of a bin
    assert r["noise_peak_hz"] == pytest.approx(freq, abs=0.1 * bin_hz)


def test_peak_of_band_noise_lies_in_its_band() -> None:
    x = bandpass_noise(12, 500.0, 900.0, 300.0, 10.0)
    r = night_features(list(x), FS)
    assert 450 <= r["noise_peak_hz"] <= 950


def test_spectrum_every_uses_every_kth_segment() -> None:
    x = rng_noise(13, 100.0, 10.0) + sine(300.0, 50.0, 10.0)
    nfft, every = 512, 3
    nf = NightFeatures(FS, nfft=nfft, spectrum_every=every)
    nf.feed(list(x))
    segments = x[: len(x) // nfft * nfft].reshape(-1, nfft)[::every]
    f, pxx = signal.welch(segments, FS, nperseg=nfft, noverlap=0)
    expected = pxx.mean(axis=0) * (f[1] - f[0])
    np.testing.assert_allclose(np.array(nf.bin_powers()), expected, rtol=1e-9)


# ---------------------------------------------------------------- screening


def night(kind: str, seconds: float = 60.0, seed: int = 1) -> list[int]:
    s = Synth(FS, seed=seed, dc=-350.0).white(20.0)  # sensor + ambient floor, an ADC offset
    if kind in ("leak", "leak+traffic"):
        s.band_noise(400, 1200, 150.0)
    if kind in ("traffic", "leak+traffic"):
        s.bursts(every_s=6.0, length_s=2.0, rms=3000.0, lo_hz=30, hi_hz=600)
    out: list[int] = []
    for _ in range(int(seconds * FS) // 1024):
        out.extend(s.read(1024))
    return out


def test_leak_screening_difference() -> None:
    leak = night_features(night("leak"), FS)
    traffic = night_features(night("traffic"), FS)
    both = night_features(night("leak+traffic"), FS)
    quiet = night_features(night("quiet"), FS)
    # a leak keeps the minimum up and the spread small
    assert leak["noise_min_db"] > traffic["noise_min_db"] + 10
    assert leak["noise_spread_db"] < 1.0
    assert traffic["noise_spread_db"] > 10.0
    # traffic raises the loud end, not the background: its L90 is the quiet night's
    assert traffic["noise_l90_db"] == pytest.approx(quiet["noise_l90_db"], abs=1.0)
    assert traffic["noise_l10_db"] > quiet["noise_l10_db"] + 20
    # with traffic on top, the leak still shows in the minimum and in L90
    assert both["noise_l90_db"] == pytest.approx(leak["noise_l90_db"], abs=1.0)
    assert both["noise_min_db"] > traffic["noise_min_db"] + 10
    # and in its band, above the quiet night
    assert leak["band_600_1200_db"] > quiet["band_600_1200_db"] + 10
    assert 400 <= leak["noise_peak_hz"] <= 1200


# ---------------------------------------------------------------- streaming


@pytest.mark.parametrize("sizes", [[1], [7, 1000, 3], [512], [1024], [2000], [4096, 1], [33333]])
def test_streaming_blocks_give_the_one_shot_result(sizes: list[int]) -> None:
    x = night("leak+traffic", seconds=6.0, seed=4)
    if sizes == [1]:
        x = x[: 3 * 2000 + 17]  # one sample at a time: keep it short
    one = NightFeatures(FS, max_duration_s=10)
    one.feed(x)
    many = NightFeatures(FS, max_duration_s=10)
    feed_in_blocks(many, array("h", x), sizes)
    a, b = one.result(), many.result()
    assert a.keys() == b.keys()
    for name in a:
        assert b[name] == pytest.approx(a[name], rel=1e-12, abs=1e-9), name
    np.testing.assert_allclose(np.array(many.levels()), np.array(one.levels()), atol=1e-9)


def test_numpy_blocks_as_in_a_simulator() -> None:
    x = np.round(rng_noise(16, 3000.0, 3.0)).clip(-32768, 32767).astype(np.int16)
    expected = night_features(x.tolist(), FS)
    nf = NightFeatures(FS)
    feed_in_blocks(nf, x, [1024])  # numpy int16 slices: no wrap-around in the checks
    assert nf.result() == pytest.approx(expected, rel=1e-12)
    assert night_features(x.astype(float), FS) == pytest.approx(expected, rel=1e-12)


def test_result_can_be_taken_midway() -> None:
    x = rng_noise(14, 100.0, 4.0)
    nf = NightFeatures(FS)
    nf.feed(list(x[: 2 * FS]))
    first = nf.result()
    assert first == night_features(list(x[: 2 * FS]), FS)
    nf.feed(list(x[2 * FS :]))
    assert nf.result()["noise_duration_s"] == 4.0


def test_rejected_block_leaves_the_state_unchanged() -> None:
    x = list(rng_noise(15, 100.0, 1.0))
    nf = NightFeatures(FS, max_duration_s=1.0)
    nf.feed(x[:3000])
    with pytest.raises(AcousticError) as bad:
        nf.feed([*x[3000:3500], float("nan")])
    assert bad.value.param == "block"
    with pytest.raises(AcousticError, match="max_duration_s"):
        nf.feed([*x[3000:], *([0.0] * 10000)])
    nf.feed(x[3000:])
    assert nf.result() == night_features(x, FS)


def test_float32_storage_changes_nothing_that_matters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every array in float32, as an ESP32 build stores them (its arithmetic is
    float32 too, which CPython cannot emulate): sums, spectrum and levels hold."""
    x = night("leak+traffic", seconds=60.0, seed=6)
    double = night_features(x, FS)
    monkeypatch.setattr(acoustic_fft.zeros, "__defaults__", ("f",))
    nf = NightFeatures(FS)
    assert nf.levels().typecode == "f"
    feed_in_blocks(nf, array("h", x), [1024])
    single = nf.result()
    for name, value in double.items():
        tolerance = 0.5 if name.endswith("_hz") else 0.01
        assert single[name] == pytest.approx(value, abs=tolerance), name


# ---------------------------------------------------------------- properties


@st.composite
def signals(draw: st.DrawFn) -> np.ndarray:
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1024, 6000))
    rng = np.random.default_rng(seed)
    x = rng.normal(0, draw(st.floats(0.1, 3000)), n)
    if draw(st.booleans()):  # a time-varying level
        x *= np.repeat(rng.uniform(0.01, 1, n // 256 + 1), 256)[:n]
    if draw(st.booleans()):
        x += draw(st.floats(-5000, 5000))
    return x


@PROPS
@given(signals())
def test_order_of_the_level_statistics(x: np.ndarray) -> None:
    r = night_features(list(x), FS, subwindow_s=0.02, exceeded=(10, 50, 90))
    assert r["noise_min_db"] <= r["noise_l90_db"] <= r["noise_l50_db"]
    assert r["noise_l50_db"] <= r["noise_l10_db"] <= r["noise_max_db"]
    assert r["noise_spread_db"] >= 0
    assert r["noise_min_db"] <= r["noise_rms_db"] <= r["noise_max_db"] + 1e-9


@PROPS
@given(signals(), st.floats(1e-3, 1e3))
def test_scaling_shifts_every_level(x: np.ndarray, k: float) -> None:
    kw: dict[str, Any] = {"subwindow_s": 0.02, "full_scale": 1e12, "ref": 1.0}
    a = night_features(list(x), FS, **kw)
    b = night_features(list(k * x), FS, **kw)
    shift = 20 * math.log10(k)
    for name, value in a.items():
        if name == "noise_spread_db":
            assert b[name] == pytest.approx(value, abs=1e-6)
        elif name.endswith("_db") and value > FLOOR_DB + 100:
            assert b[name] == pytest.approx(value + shift, abs=1e-6), name
    assert b["noise_peak_hz"] == pytest.approx(a["noise_peak_hz"], abs=1e-6)


@PROPS
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300), st.floats(0, 100))
def test_sort_and_percentile_match_numpy(values: list[float], q: float) -> None:
    a = array("d", values)
    sort_in_place(a, len(a))
    assert list(a) == sorted(values)
    assert percentile_sorted(a, len(a), q) == pytest.approx(
        float(np.percentile(values, q)), rel=1e-12, abs=1e-9
    )


# ---------------------------------------------------------------- protocol


def test_result_is_valid_telemetry() -> None:
    r = night_features(night("leak", seconds=5.0), FS)
    msg = {
        "v": 1,
        "kind": "telemetry",
        "dev": "leak-0107",
        "boot": "a1b2c3d4",
        "seq": 2,
        "ts": 1767225604000,
        "readings": [{"ts": 1767225600000, "ch": 0, "values": r}],
    }
    decoded = protocol.decode(protocol.encode(msg))
    assert set(decoded["readings"][0]["values"]) == set(r)
    for name in ("noise_rms_db", "noise_min_db", "noise_spread_db", "noise_peak_hz"):
        assert name in protocol.METRICS


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"fs": 500}, "fs"),
        ({"fs": 96000}, "fs"),
        ({"fs": "8000"}, "fs"),
        ({"fs": True}, "fs"),
        ({"fs": float("nan")}, "fs"),
        ({"subwindow_s": 0}, "subwindow_s"),
        ({"subwindow_s": 0.001}, "subwindow_s"),
        ({"bands": ((300, 100),)}, "bands"),
        ({"bands": ((100, 4001),)}, "bands"),
        ({"bands": ((100.5, 300),)}, "bands"),
        ({"bands": ((100, 101),)}, "bands"),  # bins at 7.8125 Hz: none in it
        ({"bands": ((100, 300), (100, 300))}, "bands"),
        ({"bands": (100, 300)}, "bands"),
        ({"bands": "100-300"}, "bands"),
        ({"ref": 0}, "ref"),
        ({"ref": -1.0}, "ref"),
        ({"full_scale": float("inf")}, "full_scale"),
        ({"clip_level": 0}, "clip_level"),
        ({"nfft": 1000}, "nfft"),
        ({"nfft": 8192}, "nfft"),
        ({"nfft": 8}, "nfft"),
        ({"exceeded": (0,)}, "exceeded"),
        ({"exceeded": (10, 10)}, "exceeded"),
        ({"exceeded": (50.0,)}, "exceeded"),
        ({"spread": (90, 10)}, "spread"),
        ({"spread": (10,)}, "spread"),
        ({"peak_range": (2000, 1000)}, "peak_range"),
        ({"peak_range": (100, 101)}, "peak_range"),
        ({"spectrum_every": 0}, "spectrum_every"),
        ({"max_duration_s": -1}, "max_duration_s"),
    ],
)
def test_bad_parameters_name_themselves(kwargs: dict[str, Any], param: str) -> None:
    args = {"fs": FS, **kwargs}
    with pytest.raises(AcousticError) as err:
        NightFeatures(**args)
    assert err.value.param == param
    assert isinstance(err.value, ValueError)
    assert str(err.value).startswith(param + ": ")


@pytest.mark.parametrize(
    ("samples", "param"),
    [([], "samples"), (b"\x00\x01", "samples"), ([0] * 100, "samples"), (None, "samples")],
)
def test_bad_samples(samples: Any, param: str) -> None:
    with pytest.raises(AcousticError) as err:
        night_features(samples, FS)
    assert err.value.param == param


@pytest.mark.parametrize("block", [b"\x00\x01", bytearray(4), "12", [1, "2"], [0.0, float("inf")]])
def test_bad_blocks(block: Any) -> None:
    nf = NightFeatures(FS)
    with pytest.raises(AcousticError) as err:
        nf.feed(block)
    assert err.value.param == "block"
    assert nf.samples == 0


def test_empty_block_is_nothing() -> None:
    nf = NightFeatures(FS)
    nf.feed([])
    nf.feed(array("h"))
    assert nf.samples == 0
    with pytest.raises(AcousticError, match="samples: 0 samples fed"):
        nf.result()


def test_defaults() -> None:
    assert default_nfft(8000) == 1024
    assert default_nfft(4000) == 512
    assert default_nfft(44100) == 4096
    nf = NightFeatures(7812.5)  # an ESP32 I2S rate that is not whole
    assert nf.subwindow_len == 1953
    nf.feed([0] * 4000)
    assert set(nf.result()) >= {"band_1200_2400_db", "noise_l90_db"}


# ---------------------------------------------------------------- the test signals


def test_xorshift32_matches_a_numpy_implementation() -> None:
    state = np.uint32(2463534242)  # Marsaglia's example seed
    expected = []
    for _ in range(1000):
        state ^= np.uint32(state << np.uint32(13))
        state ^= np.uint32(state >> np.uint32(17))
        state ^= np.uint32(state << np.uint32(5))
        expected.append(int(state))
    rng = Xorshift32(2463534242)
    assert [rng.next_u32() for _ in range(1000)] == expected


def test_synth_band_noise_is_in_its_band() -> None:
    s = Synth(FS, seed=2).band_noise(400, 1200, 500.0)
    x = np.array([v for _ in range(40) for v in s.read(1000)], dtype=float)
    assert x.std() == pytest.approx(500.0, rel=0.05)
    f, pxx = signal.welch(x, FS, nperseg=1024)
    inside = pxx[(f >= 400) & (f < 1200)].sum()
    assert inside / pxx.sum() > 0.8
    # reading in other block sizes gives the same samples
    s2 = Synth(FS, seed=2).band_noise(400, 1200, 500.0)
    y = [v for n in [1, 999, 5000, 34000] for v in s2.read(n)]
    assert y == x.astype(int).tolist()
