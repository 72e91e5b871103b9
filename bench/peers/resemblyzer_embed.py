"""Embed audio files with Resemblyzer (GE2E d-vector, 256-d), the peer system we compare against.

Runs in the separate peer environment (``make peer-env`` builds ``.venv-peer``), never in the
wildvox ``.venv``: Resemblyzer pulls librosa/numba and needs ``setuptools<81`` for webrtcvad.
It does not import wildvox.

Each file is read with soundfile (wildmix is Ogg/Opus), averaged to mono, resampled to 16 kHz with
soxr when needed, passed through ``resemblyzer.preprocess_wav`` (volume normalisation + webrtcvad
trimming of long silences) and embedded with ``VoiceEncoder("cpu").embed_utterance``. When the
VAD trims a clip to nothing (about 0.5 % of wildmix: short digits, quiet clips), the clip is
embedded untrimmed (volume-normalised only) and flagged in ``vad_fallback``, so every readable
file gets an embedding; ``--no-vad-fallback`` skips such files instead.

Input list (``--list``): one file a line, either ``<path>`` or ``<id> <path>``; a relative path
is resolved against ``--root`` (default: the current directory); without an id the id is the path
as written. Output (``--out X.npz``):

- ``ids``: (N,) str, the ids of the files embedded, in list order (failed files are skipped and
  reported on stderr);
- ``embeddings``: (N, 256) float32, L2-normalised d-vectors;
- ``seconds``: (N,) float64, process CPU seconds per file (read + resample + VAD + embed; with
  several threads this sums the CPU time of all threads), median over ``--repeats`` passes;
- ``wall_seconds``: (N,) float64, wall-clock seconds per file, same span, median over passes;
- ``durations``: (N,) float64, audio duration of each file in seconds, before VAD;
- ``vad_fallback``: (N,) bool, embedded untrimmed because the VAD left nothing;
- ``repeat_cpu_seconds`` / ``repeat_wall_seconds``: (R,) float64, totals of each timed pass;
- ``threads``: () int, the torch thread count used;
- ``load_seconds``: () float64, wall seconds to load the encoder (not in the per-file times);
- ``warmup_seconds``: () float64, CPU seconds of the untimed warm-up call (0 with
  ``--no-warmup``); the first call pays one-off set-up costs of about 1-3 s.

Example::

    .venv-peer/bin/python bench/peers/resemblyzer_embed.py --list files.txt --out emb.npz
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

logger = logging.getLogger("resemblyzer_embed")

SAMPLE_RATE = 16000


def read_list(list_path: Path, root: Path) -> list[tuple[str, Path]]:
    """Parse a file list into ``(id, absolute path)`` pairs.

    Args:
        list_path: text file, one ``<path>`` or ``<id> <path>`` per line; blank lines and lines
            starting with ``#`` are skipped.
        root: folder against which relative paths are resolved.

    Returns:
        The pairs in file order.

    Raises:
        FileNotFoundError: the list does not exist.
        ValueError: a line has more than two fields, or an id repeats.
    """
    if not list_path.is_file():
        raise FileNotFoundError(f"file list not found: {list_path}")
    items: list[tuple[str, Path]] = []
    seen: set[str] = set()
    for line_no, raw in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) == 1:
            utt_id, path_text = fields[0], fields[0]
        elif len(fields) == 2:
            utt_id, path_text = fields
        else:
            raise ValueError(
                f"{list_path}:{line_no}: expected '<path>' or '<id> <path>', got {len(fields)} "
                "fields (paths with spaces are not supported)"
            )
        if utt_id in seen:
            raise ValueError(f"{list_path}:{line_no}: duplicate id {utt_id!r}")
        seen.add(utt_id)
        path = Path(path_text)
        items.append((utt_id, path if path.is_absolute() else root / path))
    return items


def load_waveform(path: Path) -> tuple[object, float]:
    """Read an audio file as 16 kHz mono float32.

    Args:
        path: any format libsndfile reads (WAV, FLAC, Ogg/Vorbis, Ogg/Opus, MP3).

    Returns:
        ``(wave, duration)``: wave is a (samples,) float32 numpy array at 16 kHz, duration its
        length in seconds.

    Raises:
        ValueError: the file holds no samples.
    """
    import numpy as np
    import soundfile
    import soxr

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise ValueError(f"{path}: no audio samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != SAMPLE_RATE:
        wave = soxr.resample(wave, rate, SAMPLE_RATE, quality="HQ")
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    return wave, wave.shape[0] / SAMPLE_RATE


def embed_file(encoder: object, path: Path, vad_fallback: bool) -> tuple[object, float, bool]:
    """Read, preprocess and embed one file.

    Args:
        encoder: a loaded ``resemblyzer.VoiceEncoder``.
        path: audio file.
        vad_fallback: when Resemblyzer's VAD trims everything (very short or quiet clips), embed
            the volume-normalised waveform without trimming instead of failing.

    Returns:
        ``(embedding, duration, fell_back)``: the (256,) float32 embedding, the audio duration in
        seconds (before VAD), and whether the untrimmed waveform had to be used.

    Raises:
        ValueError: empty file, or nothing left after VAD with ``vad_fallback`` off.
    """
    from resemblyzer import preprocess_wav
    from resemblyzer.audio import normalize_volume
    from resemblyzer.hparams import audio_norm_target_dBFS

    wave, duration = load_waveform(path)
    processed = preprocess_wav(wave)
    fell_back = False
    if processed.shape[0] == 0:
        if not vad_fallback:
            raise ValueError("no speech left after Resemblyzer's VAD trimming")
        processed = normalize_volume(wave, audio_norm_target_dBFS, increase_only=True)
        fell_back = True
    embedding = encoder.embed_utterance(processed)  # type: ignore[attr-defined]
    return embedding, duration, fell_back


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 when no file could be embedded)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", type=Path, required=True, help="file list (<path> | <id> <path>)")
    parser.add_argument("--out", type=Path, required=True, help="output .npz")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="base for relative paths")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--limit", type=int, default=0, help="embed only the first N files")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes over the list")
    parser.add_argument(
        "--no-warmup", action="store_true", help="do not embed the first file once untimed"
    )
    parser.add_argument(
        "--no-vad-fallback",
        action="store_true",
        help="skip files where the VAD trims everything instead of embedding them untrimmed",
    )
    parser.add_argument("--log-every", type=int, default=1000, help="progress every N files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads < 1 or args.repeats < 1:
        parser.error("--threads and --repeats must be >= 1")

    # webrtcvad imports pkg_resources, which warns on every start; the pin is in the peer env.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import numpy as np
    import torch
    from resemblyzer import VoiceEncoder

    torch.set_num_threads(args.threads)
    items = read_list(args.list, args.root.resolve())
    if args.limit > 0:
        items = items[: args.limit]
    if not items:
        print(f"{args.list}: no files listed", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    encoder = VoiceEncoder("cpu", verbose=False)
    load_seconds = time.perf_counter() - t0
    vad_fallback = not args.no_vad_fallback
    warmup_seconds = 0.0
    if not args.no_warmup:  # first call pays one-off costs (mel filters, allocator): ~1-3 s
        cpu0 = time.process_time()
        for _, path in items:
            try:
                embed_file(encoder, path, vad_fallback=True)
                break
            except Exception:  # warm up on the first readable file
                continue
        warmup_seconds = time.process_time() - cpu0

    n = len(items)
    ok = np.zeros(n, dtype=bool)
    fell_back = np.zeros(n, dtype=bool)
    embeddings = np.zeros((n, 256), dtype=np.float32)
    durations = np.zeros(n, dtype=np.float64)
    cpu_times = np.zeros((args.repeats, n), dtype=np.float64)
    wall_times = np.zeros((args.repeats, n), dtype=np.float64)
    for repeat in range(args.repeats):
        failed = 0
        for index, (utt_id, path) in enumerate(items):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            try:
                embedding, duration, fb = embed_file(encoder, path, vad_fallback)
            except Exception as error:  # a bad file is reported and skipped, the run goes on
                failed += 1
                if repeat == 0:
                    print(
                        f"FAILED {utt_id} {path}: {type(error).__name__}: {error}", file=sys.stderr
                    )
                continue
            cpu_times[repeat, index] = time.process_time() - cpu0
            wall_times[repeat, index] = time.perf_counter() - wall0
            ok[index], fell_back[index], durations[index] = True, fb, duration
            embeddings[index] = np.asarray(embedding, dtype=np.float32)
            if args.log_every > 0 and (index + 1) % args.log_every == 0:
                logger.info("pass %d: %d/%d files, %d failed", repeat + 1, index + 1, n, failed)

    if not ok.any():
        print(f"no file of {args.list} could be embedded", file=sys.stderr)
        return 1
    ids = [utt_id for (utt_id, _), good in zip(items, ok, strict=True) if good]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez(
        tmp,
        ids=np.asarray(ids, dtype=str),
        embeddings=embeddings[ok],
        seconds=np.median(cpu_times[:, ok], axis=0),
        wall_seconds=np.median(wall_times[:, ok], axis=0),
        durations=durations[ok],
        vad_fallback=fell_back[ok],
        repeat_cpu_seconds=cpu_times[:, ok].sum(axis=1),
        repeat_wall_seconds=wall_times[:, ok].sum(axis=1),
        threads=np.asarray(args.threads),
        load_seconds=np.asarray(load_seconds),
        warmup_seconds=np.asarray(warmup_seconds),
    )
    tmp.replace(args.out)
    total_audio = float(durations[ok].sum())
    total_cpu = float(np.median(cpu_times[:, ok].sum(axis=1)))
    logger.info(
        "embedded %d/%d files (%d without VAD trimming), %.1f s audio, %.1f CPU s per pass, "
        "RTF %.4f -> %s",
        int(ok.sum()),
        n,
        int(fell_back.sum()),
        total_audio,
        total_cpu,
        total_cpu / max(total_audio, 1e-9),
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
