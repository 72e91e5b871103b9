"""Waveform augmentation (online and offline) and SpecAugment.

Importing this package registers the waveform augmenters in
:data:`wildvox.registry.AUGMENTS`: ``speed``, ``noise``, ``babble``, ``reverb``, ``codec`` and
``telephone``. Each is called as ``augment(wav, rng) -> wav`` on mono float32 waveforms of
shape ``(N,)`` at 16 kHz with an explicit :class:`numpy.random.Generator`. The settings,
:class:`~wildvox.config.AugmentConfig`, are part of the experiment config (re-exported here).
"""

from wildvox.augment.chain import AugmentChain, Augmenter, build_augmenter, build_spec_augment
from wildvox.augment.codec import Codec, Telephone
from wildvox.augment.noise import Babble, Noise, coloured_noise, mix_at_snr
from wildvox.augment.offline import materialize
from wildvox.augment.reverb import Reverb, load_or_create_rir_bank, simulate_rir_bank
from wildvox.augment.specaugment import SpecAugment
from wildvox.augment.speed import SpeedPerturb, speed_perturb, speed_speaker_id
from wildvox.config import AUGMENT_KINDS as KINDS
from wildvox.config import AugmentConfig

__all__ = [
    "KINDS",
    "AugmentChain",
    "AugmentConfig",
    "Augmenter",
    "Babble",
    "Codec",
    "Noise",
    "Reverb",
    "SpecAugment",
    "SpeedPerturb",
    "Telephone",
    "build_augmenter",
    "build_spec_augment",
    "coloured_noise",
    "load_or_create_rir_bank",
    "materialize",
    "mix_at_snr",
    "simulate_rir_bank",
    "speed_perturb",
    "speed_speaker_id",
]
