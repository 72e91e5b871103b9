"""Speaker diarization: who spoke when in long recordings, named after enrolled speakers.

Modules: :mod:`~wildvox.diarize.segments` (windowed embeddings of long audio, block-wise),
:mod:`~wildvox.diarize.cluster` (clustering + re-segmentation), :mod:`~wildvox.diarize.pipeline`
(the chain and the naming), :mod:`~wildvox.diarize.rttm` (turns and RTTM files),
:mod:`~wildvox.diarize.meetings` (the seeded meeting generator),
:mod:`~wildvox.diarize.scoring` (DER and naming accuracy) and
:mod:`~wildvox.diarize.timeline` (the PNG timeline).
"""

from wildvox.diarize.pipeline import Diarization, SpeakerLabel, diarize, diarize_segments
from wildvox.diarize.rttm import Turn, read_rttm, write_rttm
from wildvox.diarize.segments import Segments, embed_segments, speech_regions

__all__ = [
    "Diarization",
    "Segments",
    "SpeakerLabel",
    "Turn",
    "diarize",
    "diarize_segments",
    "embed_segments",
    "read_rttm",
    "speech_regions",
    "write_rttm",
]
