"""Audio input and acoustic features.

- :mod:`wildvox.audio.io`: load / validate waveforms (float32 mono at a fixed rate) with
  :class:`AudioError` for every unusable file or array.
- :mod:`wildvox.audio.features`: batched Kaldi-compatible log-Mel filterbank (``"fbank"``) and
  MFCC (``"mfcc"``) extractors, registered in :data:`wildvox.registry.FEATURES`.
"""

from wildvox.audio.features import Fbank, Mfcc
from wildvox.audio.io import AudioError, AudioInfo, audio_info, load_audio, validate_waveform

__all__ = [
    "AudioError",
    "AudioInfo",
    "Fbank",
    "Mfcc",
    "audio_info",
    "load_audio",
    "validate_waveform",
]
