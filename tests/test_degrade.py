"""Test-condition degradations (wildvox.augment.degrade): deterministic for a seed, and each
changes the signal as specified (band limit by spectrum, SNR, clipping level, crop length,
RT60 of the simulated rooms and a reverberant tail)."""

from __future__ import annotations

import numpy as np
import pytest

from wildvox.augment.codec import encode_decode
from wildvox.augment.degrade import (
    Clip,
    Crop,
    Degrade,
    RoomReverb,
    babble_at,
    codec_at,
    coloured_noise_at,
    condition_rng,
    room_rirs,
    standard_conditions,
    telephone,
)
from wildvox.augment.noise import measure_snr_db

SR = 16000


def speech_like(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Broadband test signal: white noise under a 4 Hz syllable-rate envelope, peak 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = rng.standard_normal(t.shape[0]) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def band_energy_ratio(x: np.ndarray, low_hz: float) -> float:
    """Share of the energy of ``x`` above ``low_hz``."""
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(x.shape[0], 1.0 / SR)
    return float(power[freqs > low_hz].sum() / power.sum())


def rt60_t20(rir: np.ndarray) -> float:
    """RT60 (s) from the Schroeder decay between -5 and -25 dB (T20 x 3)."""
    energy = np.cumsum(rir[::-1].astype(np.float64) ** 2)[::-1]
    edc = 10 * np.log10(energy / energy[0])
    return 3.0 * (int(np.argmax(edc < -25)) - int(np.argmax(edc < -5))) / SR


POOL = [speech_like(1.5, seed) for seed in range(10, 16)]
DEGRADERS: dict[str, Degrade] = {
    "telephone-mulaw": telephone("mulaw"),
    "telephone-gsm": telephone("gsm"),
    "opus-8k": codec_at("opus", 8.0),
    "mp3-32k": codec_at("mp3", 32.0),
    "noise-5dB": coloured_noise_at(5.0),
    "babble-5dB": babble_at(5.0, POOL),
    "crop-1s": Crop(1.0),
    "clip-12dB": Clip(12.0),
}


@pytest.mark.parametrize("name", sorted(DEGRADERS))
def test_deterministic_for_a_seed(name: str) -> None:
    x = speech_like()
    degrade = DEGRADERS[name]
    a = degrade(x, condition_rng(3, name, "spk/sess/00001.opus"))
    b = degrade(x, condition_rng(3, name, "spk/sess/00001.opus"))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == x.dtype
    assert not np.array_equal(a[: len(x)], x[: len(a)])  # the signal did change


@pytest.mark.parametrize("name", ["noise-5dB", "babble-5dB", "crop-1s"])
def test_random_conditions_differ_across_seeds_and_files(name: str) -> None:
    x = speech_like()
    degrade = DEGRADERS[name]
    a = degrade(x, condition_rng(3, name, "a"))
    assert not np.array_equal(a, degrade(x, condition_rng(4, name, "a")))
    assert not np.array_equal(a, degrade(x, condition_rng(3, name, "b")))


def test_condition_rng_depends_only_on_its_keys() -> None:
    first = condition_rng(0, "noise-5dB", "x").standard_normal(3)
    condition_rng(0, "noise-5dB", "y").standard_normal(100)  # another file in between
    np.testing.assert_array_equal(first, condition_rng(0, "noise-5dB", "x").standard_normal(3))
    assert not np.array_equal(first, condition_rng(0, "noise-0dB", "x").standard_normal(3))


@pytest.mark.parametrize("method", ["mulaw", "gsm"])
def test_telephone_removes_the_band_above_4khz(method: str) -> None:
    x = speech_like()
    assert band_energy_ratio(x, 4200.0) > 0.4  # broadband input
    y = telephone(method)(x, condition_rng(0, method, "a"))
    assert y.shape == x.shape
    assert band_energy_ratio(y, 4200.0) < 1e-3
    assert band_energy_ratio(y, 300.0) > 0.9  # the voice band stays


def test_codecs_keep_length_and_bitrates_are_as_named() -> None:
    x = speech_like(4.0)
    for codec, kbps, top in (("opus", 8.0, 12.0), ("mp3", 32.0, 40.0)):
        y = codec_at(codec, kbps)(x, condition_rng(0, codec, "a"))
        assert y.shape == x.shape
        assert np.corrcoef(x, y)[0, 1] > 0.3 or codec == "opus"  # opus 8k is parametric-ish
        measured = len(encode_decode(x, codec, kbps)) * 8 / 4.0 / 1000
        assert measured < top, f"{codec}: {measured:.1f} kbit/s"


@pytest.mark.parametrize("snr", [10.0, 5.0, 0.0])
def test_noise_and_babble_reach_the_snr(snr: float) -> None:
    x = speech_like()
    for degrade in (coloured_noise_at(snr), babble_at(snr, POOL)):
        y = degrade(x, condition_rng(1, "snr", str(snr)))
        assert abs(measure_snr_db(x, y - x) - snr) < 0.5


def test_clip_level_and_overdrive() -> None:
    x = speech_like()
    y = Clip(12.0, level=0.5)(x, condition_rng(0, "clip", "a"))
    assert float(np.abs(y).max()) == pytest.approx(0.5)
    # peak driven to 4x the level: a clear share of the samples sits on the rails
    assert np.mean(np.abs(y) >= 0.5 - 1e-6) > 0.01
    scaled = x * 0.5 * 10 ** (12 / 20) / np.abs(x).max()
    small = np.abs(scaled) < 0.49  # below the rails: amplified, not clipped
    np.testing.assert_allclose(y[small], scaled[small], rtol=1e-5)
    with pytest.raises(ValueError, match="clip level"):
        Clip(level=0.0)


def test_crop_length_and_speech_window() -> None:
    x = speech_like(3.0)
    x[: 2 * SR] = 0.0  # two seconds of silence, then one of "speech"
    y = Crop(1.0)(x, condition_rng(0, "crop", "a"))
    assert y.shape == (SR,)
    assert float(np.mean(y**2)) > 0.5 * float(np.mean(x[2 * SR :] ** 2))
    short = speech_like(0.7)
    np.testing.assert_array_equal(Crop(1.0)(short, condition_rng(0, "crop", "b")), short)
    with pytest.raises(ValueError, match="positive"):
        Crop(0.0)


@pytest.mark.parametrize("rt60", [0.3, 0.6, 0.9])
def test_room_rirs_have_the_asked_rt60(rt60: float) -> None:
    for rir in room_rirs(rt60, 2, np.random.default_rng(0)):
        assert rt60_t20(rir) == pytest.approx(rt60, rel=0.25)


def test_reverb_adds_a_decaying_tail() -> None:
    x = np.zeros(SR, dtype=np.float32)
    x[1000:2600] = speech_like(0.1)  # a 100 ms burst, then silence
    y = RoomReverb(0.6, num_rooms=2)(x, condition_rng(0, "reverb", "a"))
    assert y.shape == x.shape
    after = y[2600 + int(0.05 * SR) : 2600 + int(0.3 * SR)]  # 50-300 ms after the burst
    assert float(np.sum(after**2)) > 0.01 * float(np.sum(y**2))
    a = RoomReverb(0.6, num_rooms=2)(x, condition_rng(0, "reverb", "a"))
    np.testing.assert_array_equal(a, y)


def test_standard_conditions_names() -> None:
    names = list(standard_conditions(POOL))
    assert names[0] == "clean"
    for expected in ("telephone-mulaw", "telephone-gsm", "opus-8k", "mp3-32k", "noise-0dB",
                     "babble-10dB", "reverb-0.9s", "crop-1s", "crop-4s", "clip-12dB"):  # fmt: skip
        assert expected in names
    assert not any(n.startswith("babble") for n in standard_conditions(None))
