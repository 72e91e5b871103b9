"""Tests for wildvox.audio.features against kaldi-native-fbank and known identities."""

from __future__ import annotations

from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import pytest
import scipy.fft
import torch

from wildvox.audio.features import LOG_FLOOR, Fbank, Mfcc, dct_matrix, kaldi_mel_banks
from wildvox.audio.io import load_audio
from wildvox.registry import FEATURES

RATE = 16000


def noise(*shape: int, seed: int = 0, scale: float = 0.1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen) * scale


def frame_options(opts: knf.FbankOptions | knf.MfccOptions, n_mels: int) -> None:
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hamming"
    opts.frame_opts.samp_freq = RATE
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = n_mels


def knf_frames(extractor: knf.OnlineFbank | knf.OnlineMfcc, wav: np.ndarray) -> np.ndarray:
    extractor.accept_waveform(RATE, wav * 32768.0)  # Kaldi expects int16-scale samples
    extractor.input_finished()
    return np.stack([extractor.get_frame(i) for i in range(extractor.num_frames_ready)])


def knf_fbank(wav: np.ndarray, n_mels: int, low: float = 20.0, high: float = 0.0) -> np.ndarray:
    opts = knf.FbankOptions()
    frame_options(opts, n_mels)
    opts.mel_opts.low_freq = low
    opts.mel_opts.high_freq = high
    return knf_frames(knf.OnlineFbank(opts), wav)


def ours(module: torch.nn.Module, wav: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        feats, frames = module(torch.from_numpy(wav).unsqueeze(0))
    assert frames.tolist() == [feats.shape[1]]
    return feats[0].numpy()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def utterances(wildmix: Path) -> list[np.ndarray]:
    """Eight real utterances, two or three from each source (LibriSpeech, GCompris, FSDD)."""
    paths = [line.split()[1] for line in (wildmix / "dev_list.txt").read_text().splitlines()]
    chosen = []
    for prefix, count in (("ls", 2), ("gc", 3), ("fsdd", 3)):
        group = sorted(p for p in paths if p.startswith(prefix))
        chosen += group[:: len(group) // count][:count]
    wavs = [load_audio(wildmix / "wav" / p) for p in chosen]
    return [w[: 8 * RATE] for w in wavs]  # cap LibriSpeech clips to keep the test fast


# --- agreement with Kaldi ---------------------------------------------------------------------


@pytest.mark.parametrize("n_mels", [80, 60])
def test_fbank_matches_kaldi_native_fbank(utterances: list[np.ndarray], n_mels: int) -> None:
    fbank = Fbank(n_mels=n_mels, cmn=False)
    worst_mean = worst_max = 0.0
    for wav in utterances:
        ref = knf_fbank(wav, n_mels)
        got = ours(fbank, wav)
        assert got.shape == ref.shape == (fbank.num_frames(len(wav)), n_mels)
        diff = np.abs(got - ref)
        assert diff.mean() < 1e-2
        worst_mean, worst_max = max(worst_mean, diff.mean()), max(worst_max, diff.max())
    print(f"\nn_mels={n_mels}: mean |ours - knf| <= {worst_mean:.2e}, max {worst_max:.2e}")
    assert worst_max < 0.05


def test_fbank_frequency_range_and_frame_options_match_kaldi() -> None:
    wav = noise(24000, seed=1).numpy()
    fbank = Fbank(n_mels=40, low_freq=100.0, high_freq=-400.0, cmn=False)
    np.testing.assert_allclose(ours(fbank, wav), knf_fbank(wav, 40, 100.0, -400.0), atol=5e-3)

    opts = knf.FbankOptions()
    frame_options(opts, 64)
    opts.frame_opts.frame_length_ms = 20.0
    opts.frame_opts.frame_shift_ms = 12.5
    opts.frame_opts.preemph_coeff = 0.9
    ref = knf_frames(knf.OnlineFbank(opts), wav)
    fbank = Fbank(n_mels=64, frame_length_ms=20.0, frame_shift_ms=12.5, preemphasis=0.9, cmn=False)
    np.testing.assert_allclose(ours(fbank, wav), ref, atol=5e-3)


def test_mel_banks_match_kaldi_matrix() -> None:
    opts = knf.FbankOptions()
    frame_options(opts, 80)
    ref = np.array(knf.MelBanks(opts.mel_opts, opts.frame_opts).get_matrix())  # (80, 257)
    banks = kaldi_mel_banks(80, 512, RATE).numpy()
    assert banks.shape == (257, 80)
    np.testing.assert_allclose(banks.T, ref, atol=1e-4)
    np.testing.assert_array_equal(banks[-1], 0.0)  # Kaldi never uses the Nyquist bin


@pytest.mark.parametrize(("n_ceps", "lifter"), [(80, 0.0), (13, 22.0)])
def test_mfcc_matches_kaldi_native_fbank(n_ceps: int, lifter: float) -> None:
    wav = noise(20000, seed=2).numpy()
    opts = knf.MfccOptions()
    frame_options(opts, 80)
    opts.num_ceps, opts.use_energy, opts.cepstral_lifter = n_ceps, False, lifter
    ref = knf_frames(knf.OnlineMfcc(opts), wav)
    got = ours(Mfcc(n_ceps=n_ceps, cepstral_lifter=lifter, cmn=False), wav)
    np.testing.assert_allclose(got, ref, atol=2e-3 * np.abs(ref).max())


# --- identities -------------------------------------------------------------------------------


def test_mfcc_is_orthonormal_dct_of_our_fbank() -> None:
    wave = noise(2, 8000, seed=3)
    fbank, mfcc = Fbank(n_mels=60, cmn=False), Mfcc(n_mels=60, n_ceps=30, cmn=False)
    assert (mfcc.out_dim, fbank.out_dim) == (30, 60)
    with torch.no_grad():
        logmel, frames = fbank(wave)
        ceps, ceps_frames = mfcc(wave)
    assert ceps.shape == (2, 48, 30) and ceps.dtype == torch.float32
    assert torch.equal(frames, ceps_frames)
    expected = scipy.fft.dct(logmel.numpy(), type=2, norm="ortho", axis=-1)[..., :30]
    np.testing.assert_allclose(ceps.numpy(), expected, atol=1e-4)
    eye = dct_matrix(60, 60)
    torch.testing.assert_close(eye.T @ eye, torch.eye(60, dtype=torch.float64))


@pytest.mark.parametrize("cls", [Fbank, Mfcc])
@pytest.mark.parametrize("cmn", [False, True])
def test_batched_with_padding_equals_per_utterance(cls: type[torch.nn.Module], cmn: bool) -> None:
    lengths = [16000, 5000, 401, 9999]
    waves = [noise(n, seed=i) for i, n in enumerate(lengths)]
    batch = torch.zeros(len(waves), max(lengths))
    for row, wav in zip(batch, waves, strict=True):
        row[: len(wav)] = wav + 0.3  # a DC offset makes wrong padding handling visible
    extractor = cls(cmn=cmn)
    with torch.no_grad():
        feats, frames = extractor(batch, torch.tensor(lengths))
        assert frames.tolist() == [extractor.num_frames(n) for n in lengths]
        for i, n in enumerate(lengths):
            single, _ = extractor(batch[i : i + 1, :n])
            valid = int(frames[i])
            torch.testing.assert_close(feats[i, :valid], single[0], atol=2e-4, rtol=1e-5)
            assert not feats[i, valid:].any()


def test_cmn_zero_mean_over_valid_frames() -> None:
    lengths = torch.tensor([12000, 3000])
    feats, frames = Fbank(cmn=True)(noise(2, 12000, seed=5) + 0.01, lengths)
    for i in range(2):
        valid = feats[i, : int(frames[i])]
        assert valid.mean(0).abs().max() < 1e-4
        assert valid.std(0).min() > 0.1
    raw, _ = Fbank(cmn=False)(noise(2, 12000, seed=5) + 0.01, lengths)
    assert raw[1, : int(frames[1])].mean(0).abs().max() > 1.0


def test_block_size_does_not_change_output() -> None:
    wave, lengths = noise(5, 30000, seed=6), torch.tensor([3000, 30000, 800, 29000, 30000])
    fbank = Fbank(cmn=False)
    with torch.no_grad():
        whole, _ = fbank(wave)
        padded, _ = fbank(wave, lengths)
        fbank.block_frames = 7  # forces both row and frame blocks
        blocks, _ = fbank(wave)
        padded_blocks, frames = fbank(wave, lengths)
    torch.testing.assert_close(whole, blocks, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(padded, padded_blocks, atol=1e-4, rtol=1e-5)
    for i, valid in enumerate(frames.tolist()):
        torch.testing.assert_close(padded[i, :valid], whole[i, :valid], atol=1e-4, rtol=1e-5)


def test_num_frames_matches_kaldi() -> None:
    fbank = Fbank()
    for n in [399, 400, 401, 559, 560, 16000, 16001]:
        ref = knf_fbank(noise(n, seed=n).numpy(), 80) if n >= 400 else np.zeros((0, 80))
        assert fbank.num_frames(n) == ref.shape[0]
    counts = fbank.num_frames(torch.tensor([399, 400, 560, 16000]))
    assert counts.tolist() == [0, 1, 2, 98]


# --- contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fbank", "mfcc"])
def test_registry_builds_and_rejects_unknown_keys(name: str) -> None:
    extra = {"n_ceps": 40} if name == "mfcc" else {}
    extractor = FEATURES.build(name, n_mels=60, **extra)
    assert extractor.out_dim == (40 if extra else 60)
    with pytest.raises(TypeError):
        FEATURES.build(name, n_mel=60)


def test_gradients_and_dtype() -> None:
    wave = noise(2, 4000, seed=7).requires_grad_()
    feats, _ = Mfcc(n_ceps=20)(wave, torch.tensor([4000, 2000]))
    assert feats.dtype == torch.float32
    feats.square().sum().backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all()
    assert wave.grad[0].abs().sum() > 0 and wave.grad[1, 2000:].abs().sum() == 0


def test_gradcheck_float64() -> None:
    fbank = Fbank(n_mels=8, cmn=True).double()
    wave = noise(1, 600, seed=8).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda w: fbank(w)[0], (wave,), eps=1e-6, atol=1e-4)


def test_silence_is_floored_not_infinite() -> None:
    feats, _ = Fbank(cmn=False)(torch.zeros(1, 1600))
    torch.testing.assert_close(feats, torch.full_like(feats, np.log(LOG_FLOOR)))


def test_bad_input_and_options() -> None:
    fbank = Fbank()
    with pytest.raises(ValueError, match="batch"):
        fbank(noise(16000))
    with pytest.raises(TypeError, match="float"):
        fbank(torch.zeros(1, 16000, dtype=torch.int16))
    with pytest.raises(ValueError, match="fewer than one frame"):
        fbank(noise(1, 399))
    with pytest.raises(ValueError, match="fewer than one frame"):
        fbank(noise(2, 1000), torch.tensor([1000, 300]))
    with pytest.raises(ValueError, match="exceeds the padded length"):
        fbank(noise(2, 1000), torch.tensor([1000, 1001]))
    with pytest.raises(ValueError, match="shape"):
        fbank(noise(2, 1000), torch.tensor([1000]))
    with pytest.raises(TypeError, match="integer"):
        fbank(noise(1, 1000), torch.tensor([1000.0]))
    with pytest.raises(ValueError, match="cover no FFT bin"):
        Fbank(n_mels=300)
    with pytest.raises(ValueError, match="low_freq"):
        Fbank(low_freq=9000.0)
    with pytest.raises(ValueError, match="n_ceps"):
        Mfcc(n_mels=40, n_ceps=41)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    wave, lengths = noise(3, 20000, seed=9), torch.tensor([20000, 12345, 800])
    fbank = Fbank()
    cpu, cpu_frames = fbank(wave, lengths)
    gpu, gpu_frames = fbank.cuda()(wave.cuda(), lengths.cuda())
    assert gpu.device.type == "cuda" and torch.equal(gpu_frames.cpu(), cpu_frames)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=1e-4)
