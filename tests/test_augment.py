"""Tests of wildvox.augment: waveform augmenters, SpecAugment, the online chain, offline copies."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import welch

from wildvox.augment import (
    AugmentChain,
    AugmentConfig,
    Babble,
    Codec,
    Noise,
    Reverb,
    SpecAugment,
    SpeedPerturb,
    Telephone,
    build_spec_augment,
    coloured_noise,
    load_or_create_rir_bank,
    materialize,
    mix_at_snr,
    simulate_rir_bank,
    speed_perturb,
    speed_speaker_id,
)
from wildvox.augment.codec import encode_decode, mu_law
from wildvox.augment.noise import measure_snr_db, read_segment
from wildvox.augment.offline import LIST_NAME
from wildvox.augment.reverb import exponential_rir, reverberate
from wildvox.registry import AUGMENTS

SR = 16000


def speech_like(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonic signal plus a little noise, float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120.0 + 20.0 * seed
    wav = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 15))
    wav = wav * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t)) + 0.02 * rng.standard_normal(t.size)
    return (0.5 * wav / np.max(np.abs(wav))).astype(np.float32)


def decay_seconds(x: np.ndarray, drop_db: float = 30.0) -> float:
    """Time from the start until the remaining energy is ``drop_db`` below the total."""
    energy = np.cumsum((x.astype(np.float64) ** 2)[::-1])[::-1]
    remaining = 10 * np.log10(energy / energy[0] + 1e-30)
    return float(np.argmax(remaining < -drop_db)) / SR


def schroeder_rt60(rir: np.ndarray) -> float:
    """RT60 from the -5 to -25 dB slope of the Schroeder integral (T20 x 3)."""
    tail = rir[int(np.argmax(np.abs(rir))) :].astype(np.float64)
    energy = np.cumsum((tail**2)[::-1])[::-1]
    db = 10 * np.log10(energy / energy[0])
    return 3.0 * float(np.argmax(db < -25) - np.argmax(db < -5)) / SR


@pytest.fixture(scope="module")
def rir_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rirs")
    rng = np.random.default_rng(3)
    for i, rt60 in enumerate((0.3, 0.6)):
        sf.write(folder / f"rir{i}.wav", exponential_rir(rt60, rng, SR, drr_db=0.0), SR)
    return folder


@pytest.fixture(scope="module")
def musan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("musan")
    rng = np.random.default_rng(4)
    for sub in ("noise", "music", "speech"):
        (root / sub).mkdir()
        # 8 kHz stereo and shorter than the input: exercises resampling, downmix and looping
        noise = 0.1 * rng.standard_normal((4000, 2)).astype(np.float32)
        sf.write(root / sub / f"{sub}.flac", noise, 8000)
    long = 0.1 * rng.standard_normal(3 * SR).astype(np.float32)  # read as a random window
    sf.write(root / "noise" / "long.wav", long, SR)
    return root


def augmenters(rir_dir: Path, musan_dir: Path) -> dict[str, Callable[..., np.ndarray]]:
    pool = [speech_like(0.7, seed=s) for s in range(1, 9)]
    paths = [str(musan_dir / "speech" / "speech.flac")] * 4
    return {
        "speed": SpeedPerturb(),
        "noise_coloured": Noise(),
        "noise_dir": Noise(noise_dir=str(musan_dir)),
        "babble_arrays": Babble(pool),
        "babble_paths": Babble(paths),
        "babble_callable": Babble(lambda rng: [pool[int(rng.integers(0, len(pool)))]]),
        "reverb_dir": Reverb(rir_dir=str(rir_dir)),
        "codec": Codec(),
        "telephone": Telephone(),
    }


def test_registry_names_and_strict_options() -> None:
    assert {"speed", "noise", "babble", "reverb", "codec", "telephone"} <= set(AUGMENTS.names())
    with pytest.raises(TypeError):
        AUGMENTS.build("noise", snr=(0, 5))  # unknown option name
    assert isinstance(AUGMENTS.build("speed", factors=(0.95,)), SpeedPerturb)


def test_augmenters_deterministic_length_dtype(rir_dir: Path, musan_dir: Path) -> None:
    wav = speech_like(0.5)
    for name, aug in augmenters(rir_dir, musan_dir).items():
        a = aug(wav, np.random.default_rng(7))
        b = aug(wav, np.random.default_rng(7))
        assert a.shape == wav.shape and a.dtype == np.float32, name
        assert np.array_equal(a, b), f"{name} is not deterministic for a seed"
        assert np.isfinite(a).all() and not np.array_equal(a, wav), name
    with pytest.raises(ValueError, match="mono"):
        Noise()(np.zeros((2, 100), dtype=np.float32), np.random.default_rng(0))
    with pytest.raises(TypeError, match="floating"):
        Noise()(np.zeros(100, dtype=np.int16), np.random.default_rng(0))


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 20.0])
def test_mix_at_snr_measured_back(snr: float) -> None:
    speech = speech_like(0.5)
    noise = coloured_noise(speech.size, "pink", np.random.default_rng(1)) * 3.0
    mixed = mix_at_snr(speech, noise, snr)
    assert measure_snr_db(speech, mixed - speech) == pytest.approx(snr, abs=0.1)


def test_mix_at_snr_edge_cases() -> None:
    speech = speech_like(0.1)
    assert np.array_equal(mix_at_snr(speech, np.zeros_like(speech), 5.0), speech)
    with pytest.raises(ValueError, match="equal shapes"):
        mix_at_snr(speech, speech[:-1], 5.0)


def test_noise_and_babble_snr_ranges(musan_dir: Path) -> None:
    speech = speech_like(0.5)
    for seed in range(5):
        out = Noise(snr_db=(0.0, 15.0))(speech, np.random.default_rng(seed))
        assert -0.1 <= measure_snr_db(speech, out - speech) <= 15.1
    out = Noise(snr_db=(6.0, 6.0), noise_dir=str(musan_dir))(speech, np.random.default_rng(0))
    assert measure_snr_db(speech, out - speech) == pytest.approx(6.0, abs=0.1)
    calls: list[int] = []
    pool = [speech_like(0.3, seed=s) for s in range(1, 4)]

    def sample(rng: np.random.Generator) -> list[np.ndarray]:
        calls.append(1)
        return [pool[int(rng.integers(0, len(pool)))]]

    for seed in range(5):
        calls.clear()
        out = Babble(sample)(speech, np.random.default_rng(seed))
        assert 3 <= len(calls) <= 7
        assert 14.9 <= measure_snr_db(speech, out - speech) <= 20.1


def test_read_segment_is_a_window_of_the_file(tmp_path: Path) -> None:
    ramp = np.linspace(-0.5, 0.5, 3 * SR).astype(np.float32)
    path = tmp_path / "ramp.wav"
    sf.write(path, ramp, SR, subtype="FLOAT")
    seg = read_segment(path, 8000, np.random.default_rng(0))
    start = int(np.argmin(np.abs(ramp - seg[0])))
    assert seg.shape == (8000,) and start > 0
    np.testing.assert_allclose(seg, ramp[start : start + 8000], atol=1e-6)
    looped = read_segment(path, 4 * SR, np.random.default_rng(0))
    assert looped.shape == (4 * SR,)


def test_coloured_noise_spectral_slopes() -> None:
    rng = np.random.default_rng(0)
    slopes = {}
    for colour in ("white", "pink", "brown"):
        x = coloured_noise(2**15, colour, rng)
        assert x.dtype == np.float32 and np.sqrt(np.mean(x.astype(np.float64) ** 2)) == (
            pytest.approx(1.0, rel=1e-4)
        )
        psd = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(x.size, 1 / SR)
        low, high = psd[(f > 100) & (f < 200)].mean(), psd[(f > 3200) & (f < 6400)].mean()
        slopes[colour] = 10 * np.log10(high / low) / 5.0  # octave bands 5 octaves apart
    # about 0, -3 and -6 dB per octave
    assert abs(slopes["white"]) < 1.0
    assert -4.0 < slopes["pink"] < -2.0
    assert -7.0 < slopes["brown"] < -5.0


def test_speed_length_and_pitch() -> None:
    t = np.arange(11000) / SR
    tone = (0.5 * np.sin(2 * np.pi * 500.0 * t)).astype(np.float32)
    for factor in (1.1, 0.9):
        out = speed_perturb(tone, factor)
        assert out.shape == (round(11000 / factor),) and out.dtype == np.float32
        spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
        peak_hz = np.fft.rfftfreq(out.size, 1 / SR)[int(np.argmax(spectrum))]
        assert peak_hz == pytest.approx(500.0 * factor, abs=2.0)
    online = SpeedPerturb(keep_length=True)
    assert all(online(tone, np.random.default_rng(s)).shape == tone.shape for s in range(4))
    assert speed_speaker_id("spk", 0.9) == "spk@sp0.9"
    assert speed_speaker_id("spk", 1.1) == "spk@sp1.1"
    with pytest.raises(ValueError, match="positive"):
        speed_perturb(tone, 0.0)


def test_reverb_correlates_aligned_and_decays(rir_dir: Path) -> None:
    rng = np.random.default_rng(0)
    wav = np.zeros(SR, dtype=np.float32)
    wav[:4000] = 0.3 * rng.standard_normal(4000)
    out = Reverb(rir_dir=str(rir_dir))(wav, np.random.default_rng(1))
    assert np.corrcoef(wav, out)[0, 1] > 0.3
    lags = np.arange(-50, 51)
    xcorr = [np.dot(wav[50:-50], np.roll(out, -lag)[50:-50]) for lag in lags]
    assert lags[int(np.argmax(xcorr))] == 0  # the direct path is kept in place
    assert decay_seconds(out) > decay_seconds(wav) + 0.05
    assert np.sum(out.astype(np.float64) ** 2) == pytest.approx(np.sum(wav.astype(np.float64) ** 2))
    peak = reverberate(wav, exponential_rir(0.4, rng), rescale="peak")
    assert np.max(np.abs(peak)) == pytest.approx(np.max(np.abs(wav)), rel=1e-5)


def test_exponential_rir_rt60() -> None:
    rng = np.random.default_rng(0)
    for rt60 in (0.2, 0.5, 0.8):
        rir = exponential_rir(rt60, rng, SR, drr_db=-10.0)
        assert rir.dtype == np.float32 and np.max(np.abs(rir)) == pytest.approx(1.0)
        assert schroeder_rt60(rir) == pytest.approx(rt60, rel=0.15)


def test_simulated_rir_bank_and_cache(tmp_path: Path) -> None:
    pytest.importorskip("pyroomacoustics")
    a = simulate_rir_bank(3, np.random.default_rng(5))
    b = simulate_rir_bank(3, np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    for rir in a:
        assert rir.dtype == np.float32 and np.max(np.abs(rir)) == pytest.approx(1.0)
        assert 0.1 < schroeder_rt60(rir) < 1.1
    path = tmp_path / "bank.npz"
    made = load_or_create_rir_bank(path, 2, seed=9)
    assert path.is_file()
    loaded = load_or_create_rir_bank(path, 2, seed=9)
    assert all(np.array_equal(x, y) for x, y in zip(made, loaded, strict=True))
    with pytest.raises(ValueError, match="holds"):
        load_or_create_rir_bank(path, 3, seed=9)
    wav = speech_like(0.3)
    out = Reverb(rir_bank=str(path), num_rirs=2, bank_seed=9)(wav, np.random.default_rng(0))
    assert out.shape == wav.shape and np.corrcoef(wav, out)[0, 1] > 0.3


def test_telephone_band_limited() -> None:
    rng = np.random.default_rng(0)
    wav = (0.2 * rng.standard_normal(SR)).astype(np.float32)  # white: full band up to 8 kHz
    for method in ("mulaw", "gsm"):
        out = Telephone(methods=(method,))(wav, np.random.default_rng(1))
        assert out.shape == wav.shape and out.dtype == np.float32
        psd = np.abs(np.fft.rfft(out.astype(np.float64))) ** 2
        f = np.fft.rfftfreq(out.size, 1 / SR)
        assert 10 * np.log10(psd[f > 4000].sum() / psd.sum()) < -50.0, method
        # the telephone band of a speech-like signal keeps its spectral shape and level
        voice = speech_like(1.0)
        coded = Telephone(methods=(method,))(voice, np.random.default_rng(1))
        f, p_in = welch(voice, SR, nperseg=512)
        _, p_out = welch(coded, SR, nperseg=512)
        band = (f > 400) & (f < 3300)
        assert np.corrcoef(np.log(p_in[band]), np.log(p_out[band]))[0, 1] > 0.9
        assert abs(10 * np.log10(p_out[band].sum() / p_in[band].sum())) < 1.0
    x = np.linspace(-1, 1, 1001)
    assert np.unique(mu_law(x)).size <= 255
    assert np.all(np.abs(mu_law(x) - x) <= 0.025 * np.abs(x) + 1e-4)  # ~2 % relative error


def test_codec_keeps_length_and_bitrate() -> None:
    wav = speech_like(4.0)
    for codec, kbps in (("opus", 16.0), ("mp3", 32.0)):
        data = encode_decode(wav, codec, kbps)
        assert len(data) * 8 / 1000 / 4.0 == pytest.approx(kbps, rel=0.25), codec
        out = Codec(codecs=(codec,))(wav[:12345], np.random.default_rng(0))
        assert out.shape == (12345,) and np.corrcoef(wav[:12345], out)[0, 1] > 0.8
    with pytest.raises(ValueError, match="bitrate"):
        Codec(opus_kbps=(1.0, 8.0))


def test_specaugment_bounds_eval_and_seed() -> None:
    spec = SpecAugment(num_time_masks=2, max_time_width=5, num_freq_masks=1, max_freq_width=10)
    feats = torch.randn(64, 50, 40) + 3.0
    gen = torch.Generator().manual_seed(0)
    time_mask, freq_mask = spec.masks(feats, gen)
    assert time_mask.shape == (64, 50) and freq_mask.shape == (64, 40)
    assert int(time_mask.sum(1).max()) <= 10 and int(freq_mask.sum(1).max()) <= 10
    runs = freq_mask.int().diff(dim=1).abs().sum(1)  # one contiguous span: at most 2 edges
    assert int(runs.max()) <= 2
    widths = torch.cat([spec.masks(feats, gen)[1].sum(1) for _ in range(20)])
    assert int(widths.min()) == 0 and int(widths.max()) == 10  # both ends of 0..10 reached

    out1 = spec(feats, torch.Generator().manual_seed(1))
    out2 = spec(feats, torch.Generator().manual_seed(1))
    out3 = spec(feats, torch.Generator().manual_seed(2))
    assert torch.equal(out1, out2) and not torch.equal(out1, out3)
    changed = out1 != feats
    mean = feats.mean(dim=(1, 2), keepdim=True).expand_as(feats)
    assert torch.allclose(out1[changed], mean[changed])
    assert torch.equal(feats, feats.clone())  # input left untouched
    spec.eval()
    assert spec(feats) is feats


def test_specaugment_respects_lengths() -> None:
    spec = SpecAugment(num_time_masks=3, max_time_width=5, num_freq_masks=0)
    feats = torch.randn(32, 40, 8)
    lengths = torch.randint(6, 41, (32,))
    time_mask, _ = spec.masks(feats, torch.Generator().manual_seed(0), lengths)
    frames = torch.arange(40)[None, :]
    assert not bool((time_mask & (frames >= lengths[:, None])).any())
    out = spec(feats, torch.Generator().manual_seed(0), lengths=lengths)
    assert out.shape == feats.shape


def test_config_and_chain(tmp_path: Path) -> None:
    cfg = AugmentConfig(enabled=True, noise_snr=[0, 5])  # type: ignore[arg-type]
    assert cfg.noise_snr == (0, 5)
    with pytest.raises(ValueError, match="prob"):
        AugmentConfig(prob=1.5)
    with pytest.raises(ValueError, match="babble pool"):
        AugmentChain(AugmentConfig(enabled=True))
    wav = speech_like(0.5)
    off = AugmentChain(AugmentConfig())
    assert off(wav, np.random.default_rng(0)) is wav
    never = AugmentChain(AugmentConfig(enabled=True, prob=0.0, babble=0.0))
    assert never(wav, np.random.default_rng(0)) is wav
    weights = {"speed": 3.0, "noise": 1.0, "babble": 0.0, "reverb": 0.0}
    chain = AugmentChain(AugmentConfig(enabled=True, prob=1.0, **weights))
    kinds = [chain.choose_kind(np.random.default_rng(s)) for s in range(400)]
    assert set(kinds) == {"speed", "noise"} and 0.65 < kinds.count("speed") / 400 < 0.85
    out = chain(wav, np.random.default_rng(3))
    assert out.shape == wav.shape and not np.array_equal(out, wav)
    clone = pickle.loads(pickle.dumps(chain))
    assert np.array_equal(clone(wav, np.random.default_rng(3)), out)
    pool = [speech_like(0.2, seed=s) for s in (1, 2, 3)]
    babble = AugmentChain(
        AugmentConfig(enabled=True, prob=1.0, speed=0, noise=0, reverb=0), babble_pool=pool
    )
    assert babble(wav, np.random.default_rng(0)).shape == wav.shape
    spec = build_spec_augment(AugmentConfig(specaugment=True, time_width=3))
    assert spec is not None and spec.max_time_width == 3
    assert build_spec_augment(AugmentConfig()) is None


def write_items(folder: Path) -> list[tuple[str, str]]:
    items = []
    for s, speaker in enumerate(("alice", "bob")):
        for u in range(2):
            path = folder / speaker / f"utt{u}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, speech_like(0.4, seed=2 * s + u), SR)
            items.append((speaker, str(path)))
    return items


def read_all(out_dir: Path) -> list[tuple[str, np.ndarray]]:
    lines = (out_dir / LIST_NAME).read_text().splitlines()
    result = []
    for line in lines:
        speaker, rel = line.split(" ")
        audio, rate = sf.read(out_dir / rel, dtype="float32")
        assert rate == SR and audio.ndim == 1
        result.append((speaker, audio))
    return result


def test_materialize_deterministic(tmp_path: Path) -> None:
    items = write_items(tmp_path / "src")
    cfg = AugmentConfig(codec=0.0, telephone=1.0, rir_bank_size=2)
    a = materialize(items, tmp_path / "a", cfg, rng_seed=1, speed_as_new_speaker=True)
    assert len(a) == 4 * 5  # one copy of each enabled kind
    assert all(Path(p).is_file() for _, p in a)
    assert (tmp_path / "a" / "rir_bank.npz").is_file()
    speakers = {s for s, _ in a}
    assert {"alice", "bob"} <= speakers and speakers & {"alice@sp0.9", "alice@sp1.1"}
    got_a = read_all(tmp_path / "a")
    assert [s for s, _ in got_a] == [s for s, _ in a]
    for (speaker, audio), (_, path) in zip(got_a, a, strict=True):
        expected = 6400 if "@sp" not in speaker else round(6400 / float(speaker.split("@sp")[1]))
        assert audio.shape == (expected,), path
    b = materialize(
        items, tmp_path / "b", cfg, rng_seed=1, speed_as_new_speaker=True, num_workers=2
    )
    got_b = read_all(tmp_path / "b")
    assert [s for s, _ in b] == [s for s, _ in a]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(got_a, got_b, strict=True))
    c = materialize(items, tmp_path / "c", cfg, rng_seed=2, copies_per_utt=2)
    assert len(c) == 8 and all("@" not in s for s, _ in c)
    with pytest.raises(FileNotFoundError):
        materialize([("x", str(tmp_path / "missing.wav"))], tmp_path / "d", cfg, rng_seed=0)
    with pytest.raises(ValueError, match="speaker id"):
        materialize([("a b", items[0][1])], tmp_path / "d", cfg, rng_seed=0)


def test_materialize_real_audio(wildmix: Path, tmp_path: Path) -> None:
    lines = (wildmix / "dev_list.txt").read_text().splitlines()[:2]
    items = [(s, str(wildmix / "wav" / rel)) for s, rel in (line.split() for line in lines)]
    cfg = AugmentConfig(speed=0.0, babble=0.0, reverb=0.0, noise=1.0, codec=1.0)
    out = materialize(items, tmp_path, cfg, rng_seed=0, copies_per_utt=1)
    for (speaker, path), (orig_speaker, orig) in zip(out, items, strict=True):
        audio, rate = sf.read(path, dtype="float32")
        assert speaker == orig_speaker and rate == SR
        assert audio.shape[0] == sf.info(orig).frames
