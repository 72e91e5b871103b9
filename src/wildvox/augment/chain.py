"""The online augmentation chain used inside DataLoader workers.

:class:`AugmentChain` applies, with probability ``prob``, one augmentation kind chosen with the
relative weights of :class:`wildvox.config.AugmentConfig` (``speed``, ``noise``, ``babble``,
``reverb``, ``codec``, ``telephone``; 0 disables a kind). Waveform length is kept, so it can
run on fixed-length training crops. Augmenters, noise file lists and RIR banks are created on
first use, so a chain is cheap to construct and to pickle into worker processes.

    >>> import numpy as np
    >>> cfg = AugmentConfig(enabled=True, prob=1.0, speed=1.0, noise=1.0, babble=0.0,
    ...                     reverb=0.0)
    >>> chain = AugmentChain(cfg)
    >>> chain(np.zeros(8000, dtype=np.float32) + 0.1, np.random.default_rng(0)).shape
    (8000,)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from wildvox.augment.noise import BabblePool, check_wave
from wildvox.augment.specaugment import SpecAugment
from wildvox.config import AUGMENT_KINDS as KINDS
from wildvox.config import AugmentConfig
from wildvox.registry import AUGMENTS

log = logging.getLogger(__name__)

Augmenter = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""``augment(wav, rng) -> wav``: waveform ``(N,)`` in, waveform out, randomness from ``rng``."""


def babble_source(config: AugmentConfig, babble_pool: BabblePool | None) -> BabblePool | None:
    """The babble pool: ``babble_pool`` if given, else ``<noise_dir>/speech`` files, else None."""
    if babble_pool is not None:
        return babble_pool
    if config.noise_dir is not None and (Path(config.noise_dir) / "speech").is_dir():
        from wildvox.augment.noise import list_audio_files

        return [str(p) for p in list_audio_files(Path(config.noise_dir) / "speech")]
    return None


def build_augmenter(
    kind: str,
    config: AugmentConfig,
    babble_pool: BabblePool | None = None,
    keep_length: bool = True,
    sample_rate: int = 16000,
) -> Augmenter:
    """Build the registered augmenter ``kind`` with the options of ``config``.

    ``keep_length`` only affects ``speed`` (crop/pad back to the input length when True).
    """
    options: dict[str, Any]
    if kind == "speed":
        options = {"factors": config.speed_factors, "keep_length": keep_length}
    elif kind == "noise":
        options = {"snr_db": config.noise_snr, "noise_dir": config.noise_dir}
    elif kind == "babble":
        pool = babble_source(config, babble_pool)
        if pool is None:
            raise ValueError(
                "babble augmentation needs a babble pool or a noise_dir with a speech/ folder; "
                "pass babble_pool or set augment.babble to 0"
            )
        options = {
            "pool": pool,
            "snr_db": config.babble_snr,
            "num_speakers": config.babble_speakers,
        }
    elif kind == "reverb":
        options = {
            "rir_dir": config.rir_dir,
            "rir_bank": config.rir_bank,
            "num_rirs": config.rir_bank_size,
            "bank_seed": config.rir_seed,
        }
    elif kind in ("codec", "telephone"):
        options = {}
    else:
        raise KeyError(f"unknown augmentation kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if kind != "speed":
        options["sample_rate"] = sample_rate
    augmenter: Augmenter = AUGMENTS.build(kind, **options)
    return augmenter


def build_spec_augment(config: AugmentConfig) -> SpecAugment | None:
    """The SpecAugment module of ``config``, or None when ``config.specaugment`` is off."""
    if not config.specaugment:
        return None
    return SpecAugment(
        num_time_masks=config.time_masks,
        max_time_width=config.time_width,
        num_freq_masks=config.freq_masks,
        max_freq_width=config.freq_width,
    )


class AugmentChain:
    """Online augmentation: with probability ``prob`` apply one kind drawn by weight.

    Args:
        config: the augmentation settings; a disabled config makes the chain the identity.
        babble_pool: babble sources (waveforms, paths or a ``sample_babble(rng)`` callable);
            needed when ``config.babble > 0`` unless ``noise_dir`` has a ``speech/`` folder.
        sample_rate: of the waveforms, in Hz.
    """

    def __init__(
        self,
        config: AugmentConfig,
        babble_pool: BabblePool | None = None,
        sample_rate: int = 16000,
    ) -> None:
        self.config = config
        self.babble_pool = babble_pool
        self.sample_rate = sample_rate
        weights = config.weights()
        if config.enabled and not weights:
            raise ValueError("augmentation is enabled but every kind has weight 0")
        no_speech = config.noise_dir is None or not (Path(config.noise_dir) / "speech").is_dir()
        if config.enabled and "babble" in weights and babble_pool is None and no_speech:
            raise ValueError(
                "augment.babble > 0 needs a babble pool or a noise_dir with a speech/ folder; "
                "pass babble_pool or set augment.babble to 0"
            )
        self.kinds = tuple(weights)
        total = sum(weights.values())
        self.probs = np.array([w / total for w in weights.values()]) if weights else np.zeros(0)
        self._augmenters: dict[str, Augmenter] = {}

    def choose_kind(self, rng: np.random.Generator) -> str:
        """One enabled kind, drawn with the configured relative weights."""
        if not self.kinds:
            raise ValueError("no augmentation kind is enabled")
        return self.kinds[int(rng.choice(len(self.kinds), p=self.probs))]

    def augmenter(self, kind: str) -> Augmenter:
        """The augmenter of ``kind`` (built on first use, length-preserving)."""
        if kind not in self._augmenters:
            self._augmenters[kind] = build_augmenter(
                kind, self.config, self.babble_pool, keep_length=True, sample_rate=self.sample_rate
            )
        return self._augmenters[kind]

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Maybe augment ``wav`` (shape ``(N,)``); the result has the same shape and dtype."""
        if not self.config.enabled:
            return wav
        check_wave(wav)
        if rng.random() >= self.config.prob:
            return wav
        kind = self.choose_kind(rng)
        out = self.augmenter(kind)(wav, rng)
        if out.shape != wav.shape:  # every augmenter is length-preserving in this mode
            raise RuntimeError(f"{kind} changed the shape {wav.shape} to {out.shape}")
        return out
