"""Tests for wildvox.audio.io: loading, segment reads, resampling and every bad-input case."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wildvox.audio.io import (
    AudioError,
    AudioInfo,
    SilentAudio,
    audio_info,
    load_audio,
    validate_waveform,
)

RATE = 16000


def tone(seconds: float, rate: int = RATE, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int = RATE, **kwargs: str) -> Path:
    sf.write(path, data, rate, **kwargs)
    return path


def wildmix_files(root: Path, count: int) -> list[Path]:
    lines = (root / "veri_test.txt").read_text().split("\n")
    names = sorted({part for line in lines[:200] for part in line.split()[1:]})
    return [root / "wav" / name for name in names[:: max(1, len(names) // count)][:count]]


# --- AudioError / AudioInfo -------------------------------------------------------------------


def test_audio_error_message_attributes_and_pickle() -> None:
    err = AudioError(Path("a/b.wav"), "too short")
    assert isinstance(err, ValueError)
    assert (err.path, err.reason, str(err)) == ("a/b.wav", "too short", "a/b.wav: too short")
    back = pickle.loads(pickle.dumps(err))  # crosses process pools in the data loader
    assert (back.path, back.reason, str(back)) == (err.path, err.reason, str(err))


def test_audio_info_reads_header(tmp_path: Path) -> None:
    path = write(tmp_path / "x.wav", np.zeros((12000, 2), np.float32) + 0.1, rate=8000)
    info = audio_info(path)
    assert info == AudioInfo(path=str(path), sample_rate=8000, frames=12000, channels=2)
    assert info.duration == pytest.approx(1.5)


# --- bad files --------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    for call in (audio_info, load_audio):
        with pytest.raises(AudioError, match="file not found") as info:
            call(missing)
        assert info.value.path == str(missing)


def test_directory(tmp_path: Path) -> None:
    for call in (audio_info, load_audio):
        with pytest.raises(AudioError, match="is a directory"):
            call(tmp_path)


def test_text_file_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio, just text\n" * 20)
    for call in (audio_info, load_audio):
        with pytest.raises(AudioError, match="not a readable audio file") as info:
            call(path)
        assert str(path) in str(info.value)


def test_truncated_header(tmp_path: Path) -> None:
    good = write(tmp_path / "good.wav", tone(1.0))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(good.read_bytes()[:20])
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(bad)


def test_empty_wav(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.wav", np.zeros(0, np.float32))
    with pytest.raises(AudioError, match=r"empty audio \(0 frames\)"):
        load_audio(path)


def test_too_short_names_duration_and_minimum(tmp_path: Path) -> None:
    path = write(tmp_path / "short.wav", tone(0.05))
    with pytest.raises(AudioError, match=r"too short: 0\.050 s.*minimum of 0\.100 s"):
        load_audio(path)
    assert load_audio(path, min_duration=0.04).shape == (800,)


def test_real_short_clip_passes_default_minimum(tmp_path: Path) -> None:
    path = write(tmp_path / "clip.wav", tone(0.17))  # wildmix's shortest clips are 0.17 s
    assert load_audio(path).shape == (2720,)


def test_all_zero_is_silent(tmp_path: Path) -> None:
    path = write(tmp_path / "zeros.wav", np.zeros(RATE, np.int16), subtype="PCM_16")
    with pytest.raises(AudioError, match="digitally silent") as info:
        load_audio(path)
    assert isinstance(info.value, SilentAudio)  # block readers skip it by type, not by text


def test_near_silent_float(tmp_path: Path) -> None:
    path = write(tmp_path / "hiss.wav", tone(1.0, amp=5e-6), subtype="FLOAT")
    with pytest.raises(AudioError, match=r"digitally silent: peak amplitude 5\.00e-06"):
        load_audio(path)


def test_nan_and_inf_float_wav(tmp_path: Path) -> None:
    data = tone(1.0)
    data[100], data[200] = np.nan, np.inf
    path = write(tmp_path / "nan.wav", data, subtype="FLOAT")
    with pytest.raises(AudioError, match="2 samples are NaN or infinite"):
        load_audio(path)


def test_huge_file_rejected_before_decoding(tmp_path: Path) -> None:
    path = write(tmp_path / "long.wav", tone(3.0))
    with pytest.raises(AudioError, match=r"huge audio: 3\.0 s .* max_duration 2\.0 s"):
        load_audio(path, max_duration=2.0)
    assert load_audio(path, max_duration=2.0, offset=1.0).shape == (32000,)


def test_offset_past_end_and_bad_arguments(tmp_path: Path) -> None:
    path = write(tmp_path / "a.wav", tone(1.0))
    with pytest.raises(AudioError, match="past the end"):
        load_audio(path, offset=1.5)
    with pytest.raises(ValueError, match="offset"):
        load_audio(path, offset=-1.0)
    with pytest.raises(ValueError, match="duration"):
        load_audio(path, duration=0.0)
    with pytest.raises(ValueError, match=r"output rate .* 0 Hz is outside the supported"):
        load_audio(path, sample_rate=0)


def test_sample_rate_outside_4_to_192_khz_is_refused_before_decoding(tmp_path: Path) -> None:
    """Regression (#12.2): a 185 KB WAV whose header says 1 Hz was resampled up to exhaust
    memory; now the header's rate is checked before anything is decoded."""
    path = tmp_path / "one_hz.wav"
    sf.write(path, np.zeros(90000, np.int16) + 100, 1, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"one_hz.wav: sample rate 1 Hz is outside .*4000-192000"):
        load_audio(path)
    with pytest.raises(AudioError, match="sample rate 1 Hz is outside"):
        validate_waveform(np.ones(16000, np.float32), 1)
    with pytest.raises(AudioError, match="sample rate 400000 Hz is outside"):
        validate_waveform(np.ones(16000, np.float32), 400000)


def test_huge_amplitude_is_refused(tmp_path: Path) -> None:
    """Regression (#12.8): a file of amplitude 1e30 gave a NaN embedding."""
    with pytest.raises(AudioError, match="peak amplitude 1e\\+30 is not audio"):
        validate_waveform(np.full(16000, 1e30, np.float32), 16000)
    path = tmp_path / "loud.wav"
    sf.write(path, np.full(16000, 1e30, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"loud\.wav: peak amplitude"):
        load_audio(path)


# --- good files -------------------------------------------------------------------------------


def test_stereo_8k_loads_as_mono_16k(tmp_path: Path) -> None:
    left = tone(1.25, rate=8000, freq=300.0, amp=0.6)
    stereo = np.stack([left, 0.5 * left], axis=1)
    path = write(tmp_path / "stereo.wav", stereo, rate=8000, subtype="PCM_16")
    wav = load_audio(path)
    assert wav.dtype == np.float32 and wav.shape == (20000,)
    expected = tone(1.25, rate=RATE, freq=300.0, amp=0.45)  # mean of 0.6 and 0.3
    core = slice(800, -800)  # away from the resampler's edge transients
    assert np.abs(wav[core] - expected[core]).max() < 2e-3


def test_int16_wav_scaled(tmp_path: Path) -> None:
    data = np.array([0, 16384, -32768, 32767] * 1000, np.int16)
    wav = load_audio(write(tmp_path / "i.wav", data, subtype="PCM_16"))
    np.testing.assert_allclose(wav[:4], [0.0, 0.5, -1.0, 32767 / 32768])


@pytest.mark.parametrize(
    ("suffix", "kwargs"),
    [
        (".wav", {}),
        (".flac", {}),
        (".ogg", {"format": "OGG", "subtype": "VORBIS"}),
        (".opus", {"format": "OGG", "subtype": "OPUS"}),
        (".mp3", {}),
    ],
)
def test_segment_equals_slice_of_full_read(
    tmp_path: Path, suffix: str, kwargs: dict[str, str]
) -> None:
    rng = np.random.default_rng(0)
    data = (0.2 * rng.standard_normal(3 * RATE)).astype(np.float32)
    path = write(tmp_path / f"x{suffix}", data, **kwargs)
    full = load_audio(path)
    segment = load_audio(path, offset=1.25, duration=0.5)
    assert segment.shape == (8000,)
    tol = 0.0 if suffix == ".wav" else 1e-6
    np.testing.assert_allclose(segment, full[20000:28000], atol=tol)
    # runs past the end (cut there); inside the last Ogg page libsndfile's Vorbis seek is off
    tail = load_audio(path, offset=2.75, duration=1.0)
    np.testing.assert_allclose(tail, full[44000:], atol=tol)


def test_segment_of_resampled_file(tmp_path: Path) -> None:
    path = write(tmp_path / "x.wav", tone(2.0, rate=8000), rate=8000)
    assert load_audio(path, offset=0.5, duration=1.0).shape == (16000,)


def test_mp3_and_opus_roundtrip(tmp_path: Path) -> None:
    data = tone(1.0)
    mp3 = write(tmp_path / "x.mp3", data)
    opus = write(tmp_path / "x.opus", data, format="OGG", subtype="OPUS")
    for path in (mp3, opus):
        wav = load_audio(path)
        assert abs(wav.shape[0] - RATE) <= 1200  # codec priming / padding
        assert 0.45 < np.abs(wav[4000:12000]).max() < 0.55


# --- real wildmix audio -----------------------------------------------------------------------


def test_wildmix_opus_files(wildmix: Path) -> None:
    for path in wildmix_files(wildmix, 6):
        info = audio_info(path)
        wav = load_audio(path)
        assert info.sample_rate == RATE and info.channels == 1
        assert wav.dtype == np.float32 and wav.ndim == 1
        assert wav.shape[0] == info.frames
        assert 0.0 < np.abs(wav).max() <= 1.0


def test_wildmix_opus_segment_equals_slice(wildmix: Path) -> None:
    path = max(wildmix_files(wildmix, 6), key=lambda p: audio_info(p).frames)
    full = load_audio(path)
    assert full.shape[0] > 2 * RATE
    segment = load_audio(path, offset=0.75, duration=1.0)
    np.testing.assert_allclose(segment, full[12000:28000], atol=1e-6)


# --- arrays -----------------------------------------------------------------------------------


def test_validate_int16_channels_first_and_last() -> None:
    mono = np.array([1000, -2000, 3000] * 4000, np.int16)
    expected = mono.astype(np.float32) / 32768
    np.testing.assert_allclose(validate_waveform(mono, RATE), expected)
    both = np.stack([mono, mono], axis=1)
    np.testing.assert_allclose(validate_waveform(both, RATE), expected)
    np.testing.assert_allclose(validate_waveform(both.T, RATE), expected)


def test_validate_resamples_and_returns_float32() -> None:
    out = validate_waveform(tone(0.5, rate=22050).astype(np.float64), 22050)
    assert out.dtype == np.float32 and out.shape == (8000,)
    assert validate_waveform(tone(0.5), 16000, target_rate=8000).shape == (4000,)


@pytest.mark.parametrize(
    ("wav", "rate", "pattern"),
    [
        (np.zeros(16000, np.float32), RATE, "digitally silent"),
        (np.full(800, 0.1, np.float32), RATE, r"too short: 0\.050 s"),
        (np.array([], np.float32), RATE, "empty audio"),
        (np.array([0.1, np.nan] * 8000, np.float32), RATE, "8000 samples are NaN or infinite"),
        (np.ones((100, 100), np.float32), RATE, "cannot tell channels"),
        (np.ones((2, 3, 4000), np.float32), RATE, "1-D or 2-D"),
        (np.ones(16000, np.complex64), RATE, "unsupported sample type"),
        (np.ones(16000, np.float32), 0, "sample rate 0 Hz is outside"),
        (np.ones(16000, np.float32), 16000.0, "must be an integer"),
    ],
)
def test_validate_rejects(wav: np.ndarray, rate: int, pattern: str) -> None:
    with pytest.raises(AudioError, match=pattern) as info:
        validate_waveform(wav, rate, source="upload-7")
    assert info.value.path == "upload-7"


def test_validate_rejects_non_array() -> None:
    with pytest.raises(AudioError, match="expected a numpy array, got list"):
        validate_waveform([0.1] * 16000, RATE)  # type: ignore[arg-type]
