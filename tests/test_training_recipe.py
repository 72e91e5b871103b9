"""The papers' training recipe: online augmentation, hard prototype mining, large-margin
fine-tuning from a stage-1 model, epoch checkpoints and averaging, exact resume, the recipes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from e2e_helpers import make_slice
from typer.testing import CliRunner

from wildvox.cli.main import app
from wildvox.config import Config, ConfigError, CorpusConfig, load_config
from wildvox.data.corpora.voxceleb import load_corpus
from wildvox.data.manifest import Utterance
from wildvox.data.samplers import HardPrototypeSampler, build_batch_sampler
from wildvox.inference.model_io import load_exported
from wildvox.training.averaging import (
    average_states,
    list_epoch_checkpoints,
    prune_epoch_checkpoints,
    read_weights,
)
from wildvox.training.checkpoint import CheckpointError, load_checkpoint
from wildvox.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

TINY_RESNET = [
    "model.backbone_args={base_channels: 4, layers: [1, 1, 1, 1]}",
    "model.embed_dim=16",
]
TINY_ECAPA = [
    "model.backbone_args={channels: 16, num_blocks: 2, scale: 4, se_bottleneck: 8, "
    "mfa_channels: 32}",
    "model.pooling_args={attention_dim: 8, global_context: true}",
    "model.embed_dim=16",
]
SMALL_RUN = [
    "train.epochs=1",
    "train.batch_size=8",
    "train.num_threads=1",
    "train.device=cpu",
    "dataset.num_workers=0",
    "augment.rir_bank_size=2",
    "eval.batch_seconds=20",
]


def tiny(wildmix: Path, tmp: Path, recipe: str | None, extra: list[str]) -> Config:
    lst = make_slice(wildmix, tmp)  # 6 GCompris speakers x 8 utterances
    data = f"dataset.train=[{{root: {wildmix}, list: {lst}, splits: [1]}}]"
    path = None if recipe is None else REPO / "recipes" / recipe
    return load_config(path, [data, *SMALL_RUN, *extra], data_root=str(wildmix))


def train_utts(cfg: Config) -> list[Utterance]:
    return load_corpus(cfg.dataset.train[0])


# --- hard prototype mining --------------------------------------------------------------


def sampler_for(labels: list[int], **kwargs: int) -> HardPrototypeSampler:
    args = {"num_batches": 6, "speakers_per_batch": 3, "utts_per_speaker": 2, **kwargs}
    return HardPrototypeSampler(labels, **args)


def test_hpm_batches_are_seed_plus_nearest_speakers() -> None:
    labels = [c for c in range(6) for _ in range(5)]
    protos = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    sampler = sampler_for(labels, seed_speakers=2)
    sampler.update_prototypes(protos)
    unit = protos / protos.norm(dim=1, keepdim=True)
    for speaker in range(6):  # brute force: the 2 most cosine-similar other speakers
        sims = [(float(unit[speaker] @ unit[o]), o) for o in range(6) if o != speaker]
        assert sampler.neighbours[speaker].tolist() == [o for _, o in sorted(sims)[::-1][:2]]
    batches = list(sampler)
    assert len(batches) == 6 and all(len(b) == 2 * 3 * 2 for b in batches)
    seeds = []
    for batch in batches:
        assert {e for e, _ in batch} == {0}
        for g in range(2):
            group = batch[g * 6 : (g + 1) * 6]
            speakers = [labels[i] for _, i in group]
            seed = speakers[0]
            seeds.append(seed)
            assert speakers == [seed] * 2 + [
                int(n) for n in sampler.neighbours[seed] for _ in (0, 1)
            ]
            for s in range(3):  # distinct utterances of each speaker
                assert len({i for _, i in group[2 * s : 2 * s + 2]}) == 2
    assert sorted(seeds[:6]) == list(range(6))  # every speaker seeds once per pass


def test_hpm_resumes_mid_epoch_and_shards_over_ranks() -> None:
    labels = [c for c in range(5) for _ in range(3)] + [5]  # speaker 5 has one utterance
    protos = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    full = sampler_for(labels, seed=7)
    full.update_prototypes(protos)
    full.set_epoch(3)
    whole = list(full)
    assert any(labels[i] == 5 for b in whole for _, i in b)  # drawn with replacement
    resumed = sampler_for(labels, seed=7)
    resumed.load_state_dict(full.state_dict())
    resumed.set_epoch(3, start_batch=4)
    assert len(resumed) == 2 and list(resumed) == whole[4:]
    shards = []
    for rank in (0, 1):
        part = sampler_for(labels, seed=7, rank=rank, world_size=2)
        part.update_prototypes(protos)
        part.set_epoch(3)
        shards.append(list(part))
    assert [a + b for a, b in zip(*shards, strict=True)] == whole
    full.set_epoch(4)
    assert list(full) != whole  # another epoch, other draws


def test_hpm_errors() -> None:
    with pytest.raises(ValueError, match="at least 4 speakers"):
        HardPrototypeSampler([0, 1, 2], num_batches=1, speakers_per_batch=4)
    with pytest.raises(ValueError, match="cannot be split over 4"):
        HardPrototypeSampler([0, 1, 2], 1, speakers_per_batch=3, utts_per_speaker=1, world_size=4)
    sampler = sampler_for([0, 1, 2, 3])
    with pytest.raises(RuntimeError, match="update_prototypes"):
        next(iter(sampler))
    with pytest.raises(ValueError, match=r"shape \(4, D\)"):
        sampler.update_prototypes(torch.randn(5, 3))
    with pytest.raises(ValueError, match="saved neighbour table"):
        sampler.load_state_dict({"neighbours": torch.zeros(4, 5), "neighbours_epoch": 0})
    # the batch arithmetic and the sampler name are checked when the recipe is loaded (#11.7)
    with pytest.raises(ConfigError, match=r"= 16 utterances; set train\.batch_size to that"):
        load_config(None, ["dataset.sampler=hpm", "dataset.hpm_speakers=2", "train.batch_size=8"])
    with pytest.raises(ConfigError, match=r"unknown sampler 'balanced'; valid: random, hpm"):
        load_config(None, ["dataset.sampler=balanced"])
    cfg = load_config(None, ["dataset.sampler=hpm", "dataset.hpm_speakers=2", "dataset.hpm_utts=4",
                             "train.batch_size=8"])  # fmt: skip
    with pytest.raises(ValueError, match="needs at least that many items"):
        build_batch_sampler(cfg, [0, 1, 0])


# --- averaging and weights ----------------------------------------------------------------


def test_average_states_and_pruning(tmp_path: Path) -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(1)}
    b = {"w": torch.tensor([2.0, 4.0]), "n": torch.tensor(2)}
    avg = average_states([a, b, b])
    assert torch.allclose(avg["w"], torch.tensor([5 / 3, 10 / 3])) and int(avg["n"]) == 2
    with pytest.raises(ValueError, match="different keys"):
        average_states([a, {"w": a["w"]}])
    with pytest.raises(ValueError, match="shapes differ"):
        average_states([a, {"w": torch.zeros(3), "n": a["n"]}])
    for epoch in (2, 10, 1, 3):
        (tmp_path / f"epoch_{epoch:04d}.pt").write_bytes(b"")
    (tmp_path / "last.pt").write_bytes(b"")
    assert [p.name for p in list_epoch_checkpoints(tmp_path)][-1] == "epoch_0010.pt"
    removed = prune_epoch_checkpoints(tmp_path, keep=2)
    assert [p.name for p in removed] == ["epoch_0001.pt", "epoch_0002.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch_0003.pt",
        "epoch_0010.pt",
        "last.pt",
    ]
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_weights(tmp_path / "last.pt")


# --- online augmentation ----------------------------------------------------------------


def test_online_augmentation_is_a_function_of_seed_epoch_and_item(
    wildmix: Path, tmp_path: Path
) -> None:
    babble = ["augment.enabled=true", "augment.prob=1.0", "augment.speed=0", "augment.noise=0",
              "augment.reverb=0", "augment.babble=1", "dataset.cache_audio=false"]  # fmt: skip
    cfg = tiny(wildmix, tmp_path, None, TINY_RESNET + babble)
    utts = train_utts(cfg)[:16]
    plain = Trainer(tiny(wildmix, tmp_path, None, TINY_RESNET), tmp_path / "p", utts)
    noisy = Trainer(cfg, tmp_path / "a", utts)._dataset()
    clean = plain._dataset()
    for key in [(0, 3), (1, 3), (0, 7)]:
        a, b = noisy[key][0], noisy[key][0]
        assert torch.equal(a, b)  # the same item, epoch and seed: the same babble
        assert not torch.allclose(a, clean[key][0])
    assert not torch.equal(noisy[(0, 3)][0], noisy[(1, 3)][0])


# --- resume with every piece of new state -------------------------------------------------


class Stop(Exception):
    pass


def test_resume_restores_schedules_specaugment_and_hpm_exactly(
    wildmix: Path, tmp_path: Path
) -> None:
    extra = [
        *TINY_RESNET,
        "head.name=sc_aam",
        "train.epochs=2",
        "train.checkpoint_every_steps=2",
        "train.lr_scheduler=cyclic",
        "train.lr_scheduler_args={min_lr: 1.0e-5, cycle_iters: 4}",
        "train.margin_scheduler=ramp",
        "train.margin_scheduler_args={end_iter: 8, initial_scale: 10.0}",
        "train.head_weight_decay=2.0e-4",
        "train.keep_epoch_checkpoints=2",
        "train.average_last=2",
        "train.precision=bf16",  # CUDA-only: a no-op here
        "augment.enabled=true",
        "augment.prob=0.9",
        "augment.reverb=0.5",
        "augment.specaugment=true",
        "dataset.sampler=hpm",
        "dataset.hpm_speakers=2",
        "dataset.hpm_utts=4",
    ]
    cfg = tiny(wildmix, tmp_path, None, extra)
    utts = train_utts(cfg)
    kill_at = len(utts) // 8 + 3  # mid-way through epoch 2, one step after a checkpoint

    def stop(info: object) -> None:
        if getattr(info, "step", 0) == kill_at:
            raise Stop

    with pytest.raises(Stop):
        Trainer(cfg, tmp_path / "killed", utts, on_step=stop).fit()
    resumed = Trainer(cfg, tmp_path / "killed", utts)
    resumed.restore()
    assert (resumed.epoch, resumed.batch_in_epoch, resumed.step) == (1, 2, kill_at - 1)
    saved = load_checkpoint(resumed.ckpt_path)["sampler"]["neighbours"]
    # mid-epoch, the epoch's own neighbour table is used, not one from the current head
    labels = [resumed.speakers.index(u.speaker) for u in utts]
    probe = build_batch_sampler(cfg, labels)
    assert isinstance(probe, HardPrototypeSampler)
    shifted = (torch.arange(6) + 1).remainder(6).unsqueeze(1)
    resumed.sampler_state = {"neighbours": shifted, "neighbours_epoch": 1}
    resumed._start_epoch(probe)
    assert torch.equal(probe.neighbours, shifted)
    resumed.batch_in_epoch = 0  # at an epoch start the table comes from the head
    resumed.sampler_state = {"neighbours": shifted, "neighbours_epoch": 1}
    resumed._start_epoch(probe)
    assert probe.neighbours_epoch == 1
    fresh = build_batch_sampler(cfg, labels)
    fresh.set_epoch(1)
    fresh.update_prototypes(resumed.head.prototypes())  # type: ignore[operator,union-attr]
    assert torch.equal(probe.neighbours, fresh.neighbours)  # type: ignore[union-attr]
    resumed.fit(resume=True)
    straight = Trainer(cfg, tmp_path / "straight", utts)
    straight.fit()
    for mine, theirs in [(resumed.net, straight.net), (resumed.head, straight.head)]:
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert torch.equal(saved, straight.sampler.neighbours)  # type: ignore[union-attr]
    assert resumed.head.margin == pytest.approx(cfg.head.margin)
    assert resumed.optimizer.param_groups[1]["weight_decay"] == pytest.approx(2e-4)

    ckpts = list_epoch_checkpoints(tmp_path / "straight" / "checkpoints")
    assert [p.name for p in ckpts] == ["epoch_0001.pt", "epoch_0002.pt"]
    states = [load_checkpoint(p) for p in ckpts]
    model = load_exported(tmp_path / "straight" / "model")
    assert model.extra["averaged"] == ["epoch_0001.pt", "epoch_0002.pt"]
    expected = average_states([s["net"] for s in states])
    exported = model.net.state_dict()
    for key, value in expected.items():
        assert torch.allclose(exported[key], value), key
    first = states[0]["net"]["embedder.linear.weight"]
    assert not torch.allclose(exported["embedder.linear.weight"], first)
    resumed_model = load_exported(tmp_path / "killed" / "model")
    assert resumed_model.model_id == model.model_id


# --- the recipes, end to end at toy size -------------------------------------------------


@pytest.mark.parametrize(
    ("family", "sizes", "stage2"),
    [
        ("in_the_wild", TINY_RESNET, ["dataset.crop_seconds=1.0"]),
        (
            "idlab",
            TINY_ECAPA,
            [
                "dataset.crop_seconds=1.0",
                "dataset.hpm_speakers=2",
                "dataset.hpm_utts=4",
                "train.lr_scheduler_args={min_lr: 1.0e-8, cycle_iters: 4}",
            ],
        ),
    ],
)
def test_recipe_stages_run_and_chain(
    wildmix: Path, tmp_path: Path, family: str, sizes: list[str], stage2: list[str]
) -> None:
    first = tiny(
        wildmix,
        tmp_path,
        f"{family}/stage1.yaml",
        [*sizes, "dataset.crop_seconds=0.5", "train.lr_scheduler_args={cycle_iters: 4}"]
        if family == "idlab"
        else [*sizes, "dataset.crop_seconds=0.5"],
    )
    assert first.augment.specaugment and first.augment.enabled
    utts = train_utts(first)
    result = Trainer(first, tmp_path / "s1", utts).fit()
    assert len(result.history) == 1 and np.isfinite(result.history[0].loss)

    model_dir = tmp_path / "s1" / "model"
    second = tiny(wildmix, tmp_path, f"{family}/stage2.yaml", [*sizes, *stage2,
                  f"train.init_from={model_dir}"])  # fmt: skip
    assert not second.augment.specaugment
    assert second.head.margin > first.head.margin
    assert second.train.lr <= first.train.lr
    trainer = Trainer(second, tmp_path / "s2", utts)
    stage1 = load_exported(model_dir)
    for key, value in stage1.net.state_dict().items():  # starts from stage 1's weights
        assert torch.equal(trainer.net.state_dict()[key], value), key
    for key, value in stage1.head_state.items():
        assert torch.equal(trainer.head.state_dict()[key], value), key
    assert trainer.step == 0 and not trainer.optimizer.state  # a fresh optimiser
    trainer.fit()
    assert load_exported(tmp_path / "s2" / "model").config.train.init_from == str(model_dir)

    fewer = [u for u in utts if not u.speaker.endswith(utts[0].speaker.split("/")[-1])]
    with pytest.raises(ValueError, match="must train on the speakers"):
        Trainer(second, tmp_path / "s3", fewer)


def test_recipes_hold_the_papers_settings() -> None:
    def recipe(name: str) -> Config:
        return load_config(REPO / "recipes" / name, data_root="/data")

    wild1, wild2 = recipe("in_the_wild/stage1.yaml"), recipe("in_the_wild/stage2.yaml")
    assert (wild1.model.backbone, wild1.head.name, wild1.dataset.crop_seconds) == (
        "resnet34_se", "sc_aam", 2.0)  # fmt: skip
    assert (wild1.head.margin, wild1.head.scale, wild2.head.margin, wild2.head.scale) == (
        0.1, 15.0, 0.15, 20.0)  # fmt: skip
    assert (wild1.train.optimizer, wild1.train.lr, wild2.dataset.crop_seconds) == (
        "adam",
        1e-3,
        4.0,
    )
    assert wild1.augment.specaugment and not wild2.augment.specaugment
    assert wild2.train.init_from == "runs/in_the_wild_stage1/model"
    lab1, lab2 = recipe("idlab/stage1.yaml"), recipe("idlab/stage2.yaml")
    assert (lab1.model.backbone, lab1.model.pooling, lab1.head.margin) == ("ecapa_tdnn", "cas", 0.2)
    assert lab1.train.lr_scheduler == "cyclic" and lab1.train.lr_scheduler_args == {
        "min_lr": 1e-8, "cycle_iters": 130000, "policy": "triangular2"}  # fmt: skip
    assert (lab1.train.weight_decay, lab1.train.head_weight_decay) == (2e-5, 2e-4)
    assert (lab2.dataset.crop_seconds, lab2.head.margin, lab2.dataset.sampler) == (6.0, 0.5, "hpm")
    d = lab2.dataset
    assert (d.hpm_speakers, d.hpm_utts, d.hpm_seed_speakers, lab2.train.batch_size) == (
        16,
        8,
        1,
        128,
    )
    assert lab2.train.lr == 1e-5 and lab2.train.lr_scheduler_args["cycle_iters"] == 60000
    assert not lab2.augment.specaugment and lab2.train.init_from == "runs/idlab_stage1/model"


# --- offline augmentation command --------------------------------------------------------


def test_augment_command_writes_a_corpus_with_the_original_speakers(
    wildmix: Path, tmp_path: Path
) -> None:
    lst = make_slice(wildmix, tmp_path, speakers=2, per_speaker=2)
    sets = [
        f"dataset.train=[{{root: {wildmix}, list: {lst}, splits: [1]}}]",
        "augment.speed=0", "augment.babble=1", "augment.reverb=0", "augment.noise=1",
    ]  # fmt: skip
    args = ["augment", "--data", str(wildmix), "--out", str(tmp_path / "aug"), "--copies", "1"]
    result = CliRunner().invoke(app, [*args, *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    originals = load_corpus(CorpusConfig(root=str(wildmix), list=str(lst), splits=(1,)))
    copies = load_corpus(
        CorpusConfig(root=str(tmp_path / "aug" / "wildmix"), list="train_list.txt", name="wildmix")
    )
    assert len(copies) == len(originals) == 4
    assert sorted(u.speaker for u in copies) == sorted(u.speaker for u in originals)
    assert all(u.path.suffix == ".flac" and u.path.is_file() for u in copies)
    bad = CliRunner().invoke(app, [*args, "--set", sets[0], "--set", "augment.noise=0",
                                   "--set", "augment.speed=0", "--set", "augment.babble=0",
                                   "--set", "augment.reverb=0"])  # fmt: skip
    assert bad.exit_code == 2 and "weight 0" in bad.output


# --- `wildvox train` refuses a bad recipe at load, before any training (#12.6, #12.8) -------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.epochs=-1"], "'train.epochs' must be >= 1, got -1"),
        (["--set", "train.batch_size=0"], "'train.batch_size' must be >= 1, got 0"),
        (["--set", "model.backbone=nope"], "unknown backbone 'nope'; valid names: ecapa_tdnn"),
        (["-c", "{tmp}/some.wav"], "some.wav: not a YAML recipe (the file is not UTF-8 text)"),
        (["-c", "{tmp}/empty.yaml"], "empty.yaml: the recipe is empty"),
    ],
    ids=["negative_epochs", "zero_batch", "unknown_backbone", "wav_as_recipe", "empty_recipe"],
)
def test_train_command_refuses_bad_recipes_at_load(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "some.wav").write_bytes(b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\xff\xfe")
    (tmp_path / "empty.yaml").write_text("")
    args = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(
        app, ["train", *args, "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "model written" not in result.output
    assert message in " ".join(result.output.split())  # rich wraps at the console width
    assert not (tmp_path / "run").exists()
