from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from wildvox.config import CorpusConfig
from wildvox.data.corpora.voxceleb import CorpusError, load_corpus, read_iden_split, read_meta
from wildvox.data.dataset import (
    AudioBank,
    CropDataset,
    EpochBatchSampler,
    length_batches,
    random_crop,
)
from wildvox.data.manifest import SpeakerMap
from wildvox.data.trials import TrialError, read_trials


def test_wildmix_lists(wildmix: Path) -> None:
    splits = read_iden_split(wildmix / "iden_split.txt")
    counts = {s: sum(1 for x, _ in splits if x == s) for s in (1, 2, 3)}
    assert counts == {1: 5482, 2: 660, 3: 696}  # the corpus README's counts
    dev = load_corpus(CorpusConfig(root=str(wildmix), list="dev_list.txt"), check_files=False)
    assert len(dev) == 6838
    assert len({u.speaker for u in dev}) == 286
    assert all(u.speaker.startswith("wildmix/") for u in dev)
    cfg = CorpusConfig(root=str(wildmix), list="dev_list.txt", max_utts_per_speaker=3)
    capped = load_corpus(cfg, check_files=False)
    per_speaker = Counter(u.speaker for u in capped)
    assert len(per_speaker) == 286 and max(per_speaker.values()) == 3
    first = {}  # each speaker's first utterances in list order are kept
    for u in dev:
        first.setdefault(u.speaker, []).append(u.id)
    assert all(u.id in first[u.speaker][:3] for u in capped)
    trials = read_trials(wildmix / "veri_test.txt")
    assert len(trials) == 20000 and int(trials.labels.sum()) == 10000
    meta = read_meta(wildmix / "meta.csv")
    assert meta["fsdd-george"]["gender"] == "M"


def test_corpora_keep_speakers_distinct(wildmix: Path, tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text("fsdd-george fsdd-george/digits/00001.opus\n")
    a = load_corpus(CorpusConfig(root=str(wildmix), list=str(lst), name="a"))
    b = load_corpus(CorpusConfig(root=str(wildmix), list=str(lst), name="b"))
    assert a[0].speaker != b[0].speaker


def test_voxceleb_meta_and_trial_formats(tmp_path: Path) -> None:
    vox1 = tmp_path / "vox1_meta.csv"
    vox1.write_text(
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
        "id10001\tA.J._Buckley\tm\tIreland\tdev\n"
    )
    assert read_meta(vox1)["id10001"]["Nationality"] == "Ireland"
    vox2 = tmp_path / "vox2_meta.csv"
    vox2.write_text("VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \nid00012 ,n000012 ,m ,dev \n")
    assert read_meta(vox2)["id00012"]["Gender"] == "m"
    kaldi = tmp_path / "trials"
    kaldi.write_text("a b target\nc d nontarget\n")
    assert read_trials(kaldi).labels.tolist() == [1, 0]
    unlabeled = tmp_path / "pairs"
    unlabeled.write_text("a b\nc d\n")
    assert not read_trials(unlabeled).labeled
    bad = tmp_path / "bad"
    bad.write_text("1 a b c\n")
    with pytest.raises(TrialError, match="bad:1"):
        read_trials(bad)


def test_missing_files_and_folders_are_reported(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(CorpusConfig(root=str(tmp_path / "nope")))
    (tmp_path / "wav").mkdir()
    (tmp_path / "dev_list.txt").write_text("s1 s1/x/00001.wav\n")
    with pytest.raises(CorpusError, match="1 listed files are missing"):
        load_corpus(CorpusConfig(root=str(tmp_path), list="dev_list.txt"))


def test_random_crop_pads_by_repetition_and_is_seeded() -> None:
    wav = np.arange(10, dtype=np.float32)
    a = random_crop(wav, 4, np.random.default_rng(1))
    b = random_crop(wav, 4, np.random.default_rng(1))
    assert np.array_equal(a, b) and np.array_equal(np.diff(a), np.ones(3))
    assert random_crop(wav[:3], 5, np.random.default_rng(0)).tolist() == [0, 1, 2, 0, 1]


def test_crop_dataset_is_a_function_of_seed_epoch_index(wildmix: Path) -> None:
    utts = load_corpus(CorpusConfig(root=str(wildmix), list="dev_list.txt"))[:6]
    ds = CropDataset(utts, [0] * 6, crop_seconds=0.5, seed=3)
    bank = AudioBank.decode([str(u.path) for u in utts], 16000, 0.1, num_workers=1)
    cached = CropDataset(utts, [0] * 6, crop_seconds=0.5, seed=3, bank=bank)
    for key in [(0, 0), (1, 0), (0, 5)]:
        x, label, index = ds[key]
        assert (label, index) == (0, key[1])
        assert x.shape == (8000,)
        assert np.array_equal(x.numpy(), ds[key][0].numpy())
        # reading only the window from disk gives the crop of the cached waveform
        assert np.array_equal(x.numpy(), cached[key][0].numpy())
    # utterance 1 is longer than the crop: another epoch draws another window
    assert not np.array_equal(ds[(0, 1)][0].numpy(), ds[(1, 1)][0].numpy())


def test_sampler_resumes_mid_epoch_and_splits_ranks() -> None:
    s = EpochBatchSampler(20, 4, seed=1)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=3)
    assert list(s) == full[3:]
    r0, r1 = (
        EpochBatchSampler(20, 2, seed=1, rank=0, world_size=2),
        EpochBatchSampler(20, 2, seed=1, rank=1, world_size=2),
    )
    for r in (r0, r1):
        r.set_epoch(2)
    merged = sorted(i for b in list(r0) + list(r1) for _, i in b)
    assert merged == list(range(20))


def test_length_batches_bound_padded_size() -> None:
    rng = np.random.default_rng(0)
    d = rng.uniform(0.2, 10, 200).tolist()
    batches = length_batches(d, 30.0)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) == 1 or max(d[i] for i in b) * len(b) <= 30.0


def test_speaker_map() -> None:
    m = SpeakerMap.from_labels(["x/b", "x/a", "x/b"])
    assert m.labels == ["x/a", "x/b"] and m.index("x/b") == 1
    with pytest.raises(KeyError, match="not in the speaker map"):
        m.index("x/c")
