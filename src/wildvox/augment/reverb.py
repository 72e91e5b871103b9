"""Reverberation by convolution with a room impulse response (RIR).

RIRs come from a directory of audio files (for example ``RIRS_NOISES``) or from a simulated bank.
Simulation uses pyroomacoustics' image source method (ISM) in random shoebox rooms:

* room 3-10 m x 3-10 m x 2.5-4 m, target RT60 0.2-0.8 s, wall absorption from Sabine's formula
  (``pyroomacoustics.inverse_sabine``), source and microphone at least 0.5 m from the walls and
  from each other;
* the ISM order is capped at ``MAX_ISM_ORDER`` to bound the cost (small rooms with a long RT60
  would need orders above 100); when the cap truncates the response, the late part is
  replaced by exponentially decaying Gaussian noise with the target RT60, level-matched to the
  ISM response at the mixing time (a standard hybrid early/late model).

Without pyroomacoustics the whole RIR follows that late-reverberation model: a direct-path
impulse followed by exponentially decaying noise with an RT60 in the same range and a direct-to-
reverberant ratio of 0-10 dB. All RIRs are float32, peak-normalised to 1, shape ``(L,)``.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import fftconvolve

from wildvox.augment.noise import check_wave, list_audio_files
from wildvox.data.files import atomic_path
from wildvox.registry import AUGMENTS, optional_import

log = logging.getLogger(__name__)

MAX_ISM_ORDER = 20
"""Highest image-source order simulated; later reflections use the stochastic tail."""

SPEED_OF_SOUND = 343.0
"""Metres per second."""

_LN_1000 = float(np.log(1000.0))  # amplitude falls by 60 dB (x 1/1000) over one RT60


def _decay_tail(length: int, rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with amplitude ``exp(-ln(1000) t / rt60)``, shape ``(length,)``."""
    t = np.arange(length) / sample_rate
    return rng.standard_normal(length) * np.exp(-_LN_1000 * t / rt60)


def exponential_rir(
    rt60: float, rng: np.random.Generator, sample_rate: int = 16000, drr_db: float = 5.0
) -> np.ndarray:
    """A statistical RIR: direct impulse plus exponentially decaying noise.

    Args:
        rt60: reverberation time in seconds (60 dB decay).
        rng: random generator for the tail and the direct-path delay (1-10 ms).
        sample_rate: in Hz.
        drr_db: direct-to-reverberant energy ratio in dB.

    Returns:
        RIR of shape ``(delay + rt60 * sample_rate,)``, float32, peak 1.
    """
    if not rt60 > 0.0:
        raise ValueError(f"rt60 must be positive, got {rt60}")
    delay = int(rng.uniform(0.001, 0.01) * sample_rate)
    tail = _decay_tail(int(rt60 * sample_rate), rt60, sample_rate, rng)
    tail[0] = 0.0
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
    rir = np.zeros(delay + tail.shape[0])
    rir[delay] = 1.0
    rir[delay:] += tail
    return (rir / np.max(np.abs(rir))).astype(np.float32)


def _ism_rir(
    rt60: float,
    room: np.ndarray,
    source: np.ndarray,
    mic: np.ndarray,
    rng: np.random.Generator,
    sample_rate: int,
) -> np.ndarray:
    """Image-source RIR of a shoebox room, with a stochastic tail beyond ``MAX_ISM_ORDER``."""
    pra = optional_import("pyroomacoustics", "train", "simulated-room reverberation")
    absorption, order = pra.inverse_sabine(rt60, room.tolist())
    shoebox = pra.ShoeBox(
        room.tolist(),
        fs=sample_rate,
        materials=pra.Material(absorption),
        max_order=min(order, MAX_ISM_ORDER),
    )
    shoebox.add_source(source.tolist())
    shoebox.add_microphone(mic.tolist())
    shoebox.compute_rir()
    rir = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    direct = int(np.argmax(np.abs(rir)))
    end = direct + int(rt60 * sample_rate)
    if order > MAX_ISM_ORDER:
        # All image sources closer than cap * shortest side / sqrt(3) are within the cap, so
        # the ISM response is complete until then; later, decaying noise continues the level
        # of the last 10 ms of the complete part.
        distance = float(np.linalg.norm(source - mic))
        reach = MAX_ISM_ORDER * float(room.min()) / np.sqrt(3.0)
        complete = (reach - distance) / SPEED_OF_SOUND
        window = int(0.01 * sample_rate)
        mix = min(direct + max(int(complete * sample_rate), window), rir.shape[0])
        total = max(end, mix + window)
        level = np.sqrt(np.mean(rir[mix - window : mix] ** 2))
        late = np.zeros(total)
        late[mix - window // 2 :] = level * _decay_tail(
            total - mix + window // 2, rt60, sample_rate, rng
        )
        early = np.zeros(total)
        early[: min(rir.shape[0], total)] = rir[:total]
        weight = np.clip((np.arange(total) - mix) / window, 0.0, 1.0)
        rir = early * (1.0 - weight) + late * weight
    return (rir / np.max(np.abs(rir))).astype(np.float32)


def simulate_rir_bank(
    n: int, rng: np.random.Generator, sample_rate: int = 16000
) -> list[np.ndarray]:
    """Simulate ``n`` RIRs in random shoebox rooms (see the module docstring).

    Args:
        n: number of RIRs.
        rng: random generator for rooms, positions, RT60s and stochastic tails.
        sample_rate: in Hz.

    Returns:
        ``n`` float32 arrays of shape ``(L_i,)``, peak 1. Uses pyroomacoustics when it is
        importable, else the exponential-decay model.
    """
    if n <= 0:
        raise ValueError(f"the number of RIRs must be positive, got {n}")
    try:
        import pyroomacoustics  # noqa: F401
    except ImportError:
        log.warning(
            "pyroomacoustics is not installed (pip install 'wildvox[train]'): "
            "using exponential-decay RIRs"
        )
        return [
            exponential_rir(
                float(rng.uniform(0.2, 0.8)), rng, sample_rate, float(rng.uniform(0, 10))
            )
            for _ in range(n)
        ]
    bank: list[np.ndarray] = []
    while len(bank) < n:
        room = rng.uniform([3.0, 3.0, 2.5], [10.0, 10.0, 4.0])
        rt60 = float(rng.uniform(0.2, 0.8))
        source = rng.uniform(0.5, room - 0.5)
        mic = rng.uniform(0.5, room - 0.5)
        if np.linalg.norm(source - mic) < 0.5:
            continue
        try:
            bank.append(_ism_rir(rt60, room, source, mic, rng, sample_rate))
        except ValueError:  # Sabine: this RT60 is too short for such a large room
            continue
    return bank


def load_or_create_rir_bank(
    path: str | Path, n: int, seed: int, sample_rate: int = 16000
) -> list[np.ndarray]:
    """Load a simulated RIR bank cached at ``path`` (``.npz``), simulating and saving it first.

    The file stores the RIRs concatenated with their offsets and the ``n``, ``seed`` and
    ``sample_rate`` it was made with; a cache made with other settings raises ValueError
    rather than being overwritten. Writing is atomic, so concurrent workers are safe.
    """
    path = Path(path)
    if path.exists():
        try:
            with np.load(path) as data:
                stored = (int(data["n"]), int(data["seed"]), int(data["sample_rate"]))
                samples, offsets = data["samples"], data["offsets"]
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"RIR bank {path} is not a valid bank file: {err}") from err
        if stored != (n, seed, sample_rate):
            raise ValueError(
                f"RIR bank {path} holds (n, seed, sample_rate) = {stored}, not "
                f"{(n, seed, sample_rate)}; remove it or choose another path"
            )
        return [samples[a:b] for a, b in itertools.pairwise(offsets)]
    log.info("simulating %d RIRs (seed %d) into %s", n, seed, path)
    bank = simulate_rir_bank(n, np.random.default_rng(seed), sample_rate)
    offsets = np.cumsum([0] + [r.shape[0] for r in bank])
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(
            f,
            samples=np.concatenate(bank),
            offsets=offsets,
            n=n,
            seed=seed,
            sample_rate=sample_rate,
        )
    return bank


def reverberate(wav: np.ndarray, rir: np.ndarray, rescale: str = "energy") -> np.ndarray:
    """Convolve ``wav`` (shape ``(N,)``) with ``rir`` (shape ``(L,)``), keeping alignment.

    The output is shifted by the RIR's direct-path peak (so speech does not move in time),
    trimmed to ``N`` samples and rescaled to the input's whole-clip energy (``"energy"``) or
    peak (``"peak"``). Returns shape ``(N,)`` with the dtype of ``wav``.
    """
    check_wave(wav)
    check_wave(rir, "RIR")
    if rescale not in ("energy", "peak"):
        raise ValueError(f"rescale must be 'energy' or 'peak', got {rescale!r}")
    direct = int(np.argmax(np.abs(rir)))
    wet = fftconvolve(wav.astype(np.float64), rir.astype(np.float64))[
        direct : direct + wav.shape[0]
    ]
    if rescale == "energy":
        ref, got = float(np.sum(wav.astype(np.float64) ** 2)), float(np.sum(wet**2))
    else:
        ref, got = float(np.max(np.abs(wav))) ** 2, float(np.max(np.abs(wet))) ** 2
    if got > 0.0:
        wet *= np.sqrt(ref / got)
    return wet.astype(wav.dtype)


@AUGMENTS.register("reverb")
class Reverb:
    """Reverberation with a random RIR from ``rir_dir``, a cached bank, or a simulated bank.

    Sources, in order of preference: ``rir_dir`` (audio files, recursively; the first channel
    of multi-channel files), ``rir_bank`` (an ``.npz`` cache made by
    :func:`load_or_create_rir_bank` with ``num_rirs`` and ``bank_seed``), else a bank of
    ``num_rirs`` RIRs simulated in memory. Banks are created on first use, so constructing the
    augmenter is cheap and it pickles small until used.
    """

    def __init__(
        self,
        rir_dir: str | None = None,
        rir_bank: str | None = None,
        num_rirs: int = 200,
        bank_seed: int = 0,
        rescale: str = "energy",
        sample_rate: int = 16000,
    ) -> None:
        if num_rirs <= 0:
            raise ValueError(f"num_rirs must be positive, got {num_rirs}")
        if rescale not in ("energy", "peak"):
            raise ValueError(f"rescale must be 'energy' or 'peak', got {rescale!r}")
        self.rir_dir = rir_dir
        self.rir_bank = rir_bank
        self.num_rirs = num_rirs
        self.bank_seed = bank_seed
        self.rescale = rescale
        self.sample_rate = sample_rate
        self._files: list[Path] | None = None
        self._bank: list[np.ndarray] | None = None

    def sample_rir(self, rng: np.random.Generator) -> np.ndarray:
        """One RIR, float32, shape ``(L,)``."""
        if self.rir_dir is not None:
            if self._files is None:
                self._files = list_audio_files(self.rir_dir)
            path = self._files[int(rng.integers(0, len(self._files)))]
            return _read_rir(path, self.sample_rate)
        if self._bank is None:
            if self.rir_bank is not None:
                self._bank = load_or_create_rir_bank(
                    self.rir_bank, self.num_rirs, self.bank_seed, self.sample_rate
                )
            else:
                log.info(
                    "simulating %d RIRs in this process; set rir_bank to cache them on disk",
                    self.num_rirs,
                )
                gen = np.random.default_rng(self.bank_seed)
                self._bank = simulate_rir_bank(self.num_rirs, gen, self.sample_rate)
        return self._bank[int(rng.integers(0, len(self._bank)))]

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Reverberate ``wav`` (shape ``(N,)``); same shape and dtype."""
        return reverberate(wav, self.sample_rir(rng), self.rescale)


def _read_rir(path: Path, sample_rate: int) -> np.ndarray:
    """First channel of an RIR file at ``sample_rate``, float32; ValueError if silent."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ValueError(f"cannot read RIR file {path}: {err}") from err
    rir = np.ascontiguousarray(data[:, 0])
    if rate != sample_rate and rir.size:
        rir = soxr.resample(rir, rate, sample_rate, quality="HQ").astype(np.float32)
    if rir.size == 0 or not np.any(rir):
        raise ValueError(f"RIR file {path} is empty or silent")
    return rir
