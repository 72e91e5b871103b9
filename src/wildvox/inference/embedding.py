"""Reading and embedding audio with an exported model, with the work of any input bounded.

:class:`AudioEmbedder` turns a path or an array into embeddings: the sample rate and length are
checked before anything is decoded (at most ``max_seconds``), inputs longer than
``block_seconds`` are decoded and embedded block by block (their embedding is the
duration-weighted mean of the blocks', so memory stays flat whatever the length), the speech in
them is measured with Silero VAD, and the embedder runs in ONNX Runtime when the model folder
has an up-to-date export. :class:`wildvox.api.SpeakerModel` adds scoring, calibration and the
speaker store on top.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from wildvox.audio.io import (
    AudioError,
    SilentAudio,
    audio_info,
    check_sample_rate,
    load_audio,
    validate_waveform,
)
from wildvox.audio.vad import speech_duration
from wildvox.inference.answers import Embedded
from wildvox.inference.model_io import ExportedModel
from wildvox.inference.onnx_runtime import OnnxEmbedder
from wildvox.scoring.cosine import enroll_mean

logger = logging.getLogger(__name__)

Audio = str | os.PathLike[str] | np.ndarray

#: shortest input accepted, in seconds of audio.
MIN_SECONDS = 0.5
#: longest input of one request by default (``max_seconds``; raise it for longer recordings).
MAX_SECONDS = 3600.0
#: long inputs are decoded and embedded in blocks of this many seconds, and their embedding is
#: the duration-weighted mean of the blocks' (memory stays flat: ~0.5 GB whatever the length).
BLOCK_SECONDS = 60.0


@dataclass
class AudioEmbedder:
    """An exported model's embedder (torch, or ONNX Runtime with ``onnx``) with the limits on
    its inputs."""

    exported: ExportedModel
    onnx: OnnxEmbedder | None = None
    min_seconds: float = MIN_SECONDS
    max_seconds: float = MAX_SECONDS
    block_seconds: float = BLOCK_SECONDS

    @property
    def model_id(self) -> str:
        return self.exported.model_id

    @property
    def embed_dim(self) -> int:
        return self.exported.net.embed_dim

    @property
    def sample_rate(self) -> int:
        return self.exported.config.features.sample_rate

    @property
    def backend(self) -> str:
        """``"onnx"`` (ONNX Runtime runs the embedder) or ``"torch"``."""
        return "onnx" if self.onnx is not None else "torch"

    def set_threads(self, threads: int) -> None:
        """CPU threads for embedding (torch, and the ONNX Runtime session when there is one)."""
        torch.set_num_threads(threads)
        if self.onnx is not None and self.onnx.threads != threads:
            runner = OnnxEmbedder(self.onnx.path, threads)
            if runner.sha256 != self.onnx.sha256:  # the file changed since load_model
                logger.warning("%s changed since it was loaded: embedding with torch",
                               self.onnx.path)  # fmt: skip
                self.onnx = None
            else:
                self.onnx = runner

    # ------------------------------------------------------------------ audio + embeddings
    def _rate(self, sample_rate: int | None) -> int:
        return self.sample_rate if sample_rate is None else sample_rate

    def _check_length(self, source: str, seconds: float) -> None:
        if seconds > self.max_seconds:
            raise AudioError(
                source,
                f"{seconds:.0f} s is longer than the limit of {self.max_seconds:.0f} s of one "
                "request (raise it with max_seconds / --max-seconds)",
            )

    def load(self, audio: Audio, sample_rate: int | None = None) -> np.ndarray:
        """A path or an array -> float32 mono waveform at the model's rate, validated (at most
        ``max_seconds`` long; ``sample_rate`` is the array's rate, default the model's)."""
        if isinstance(audio, np.ndarray):
            rate = self._rate(sample_rate)
            check_sample_rate("<array>", rate)
            self._check_length("<array>", audio.shape[0] / rate)
            return validate_waveform(
                audio, rate, target_rate=self.sample_rate, min_duration=self.min_seconds
            )
        self._check_length(str(audio), audio_info(audio).duration)
        return load_audio(audio, sample_rate=self.sample_rate, min_duration=self.min_seconds)

    def _blocks(self, audio: Audio, sample_rate: int | None) -> Iterator[np.ndarray]:
        """The input at the model's rate in blocks of about ``block_seconds`` (one block when
        shorter); a file is decoded block by block, never whole."""
        if isinstance(audio, np.ndarray):
            wave = self.load(audio, sample_rate)
            n = max(1, round(len(wave) / (self.block_seconds * self.sample_rate)))
            yield from np.array_split(wave, n)
            return
        total = audio_info(audio).duration  # the header, read once
        self._check_length(str(audio), total)
        if total <= self.block_seconds:
            yield load_audio(audio, sample_rate=self.sample_rate, min_duration=self.min_seconds)
            return
        n = max(1, round(total / self.block_seconds))
        step = total / n
        for k in range(n):
            try:
                yield load_audio(audio, sample_rate=self.sample_rate, offset=k * step,
                                 duration=step, min_duration=0.0)  # fmt: skip
            except SilentAudio:
                continue  # a silent stretch of a long recording adds nothing

    def _embed_waves(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        lengths = torch.tensor([len(w) for w in waves])
        batch = torch.zeros(len(waves), int(lengths.max()))
        for i, w in enumerate(waves):
            batch[i, : len(w)] = torch.from_numpy(w)
        net = self.exported.net
        with torch.inference_mode():
            if self.onnx is None:
                out = net(batch, lengths).numpy().astype(np.float32)
            else:
                feats, frames = net.features(batch, lengths)
                out = self.onnx(feats.numpy(), frames.numpy())
        if not np.isfinite(out).all():
            raise ValueError("the model produced a NaN/inf embedding for this input")
        return out

    def _window_embeddings(self, block: np.ndarray, seconds: float) -> list[np.ndarray]:
        """Embeddings of the consecutive ``seconds`` windows of ``block`` (a shorter tail is
        dropped), 16 at a time."""
        size = int(seconds * self.sample_rate)
        wins = [block[i : i + size] for i in range(0, len(block) - size + 1, size)]
        return [e for i in range(0, len(wins), 16) for e in self._embed_waves(wins[i : i + 16])]

    def analyse(
        self,
        audio: Audio,
        sample_rate: int | None = None,
        speech: bool = True,
        window_seconds: float = 0.0,
    ) -> Embedded:
        """Embed one input block by block (memory bounded whatever its length) and, with
        ``speech``, measure its speech with the VAD; with ``window_seconds`` > 0, also embed its
        consecutive windows of that length (``Embedded.windows``)."""
        source = "<array>" if isinstance(audio, np.ndarray) else str(audio)
        embs: list[np.ndarray] = []
        seconds: list[float] = []
        windows: list[np.ndarray] = []
        found = 0.0
        for block in self._blocks(audio, sample_rate):
            if len(block) < 0.1 * self.sample_rate and embs:
                continue  # a sliver at the end adds nothing
            embs.append(self._embed_waves([block])[0])
            seconds.append(len(block) / self.sample_rate)
            if speech:
                found += speech_duration(block, self.sample_rate)
            if window_seconds > 0:
                windows += self._window_embeddings(block, window_seconds)
        if not embs:
            raise AudioError(source, "digitally silent throughout")
        emb = embs[0] if len(embs) == 1 else enroll_mean(np.stack(embs), seconds)
        return Embedded(emb.astype(np.float32), float(sum(seconds)),
                        found if speech else float("nan"), source,
                        np.stack(windows) if windows else None, window_seconds)  # fmt: skip

    def embed(self, audio: Audio, sample_rate: int | None = None) -> np.ndarray:
        """One utterance -> its (D,) float32 embedding (inputs over ``block_seconds``: the
        duration-weighted mean of their blocks' embeddings)."""
        return self.analyse(audio, sample_rate, speech=False).embedding

    def embed_batch(
        self, items: Sequence[Audio], sample_rate: int | None = None, batch_size: int = 16
    ) -> np.ndarray:
        """Several utterances -> (N, D) float32, batched by similar length (inputs longer
        than ``block_seconds`` are embedded on their own, as :meth:`embed` does)."""
        out = np.zeros((len(items), self.embed_dim), dtype=np.float32)
        short: dict[int, np.ndarray] = {}
        for i, a in enumerate(items):
            long = (a.shape[0] / self._rate(sample_rate) if isinstance(a, np.ndarray)
                    else audio_info(a).duration) > self.block_seconds  # fmt: skip
            if long:
                out[i] = self.embed(a, sample_rate)
            else:
                short[i] = self.load(a, sample_rate)
        order = sorted(short, key=lambda i: len(short[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._embed_waves([short[i] for i in idx])
        return out
