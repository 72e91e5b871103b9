"""``wildvox train``: train a model from a recipe."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from wildvox.cli.common import check_device, console, fail, resolve_data, setup_logging
from wildvox.config import Config, ConfigError, load_config
from wildvox.data.corpora.voxceleb import CorpusError, training_data
from wildvox.training import distributed
from wildvox.training.trainer import EpochStats, StepInfo, Trainer, TrainResult


def run_training(cfg: Config, out: Path, resume: bool, show: bool = True) -> TrainResult:
    """Train with a progress bar and one log line per epoch (``show=False``: silently, as the
    ranks other than 0 of a distributed run do)."""
    try:
        train, val = training_data(cfg)
    except CorpusError as exc:
        fail(str(exc))
    if not show:
        return Trainer(cfg, out, train, val).fit(resume=resume)
    with Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn(
            "{task.completed}/{task.total} loss {task.fields[loss]:.3f} acc {task.fields[acc]:.2f}"
        ),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as prog:
        task = prog.add_task("train", total=1, epoch=1, loss=0.0, acc=0.0)

        def on_step(s: StepInfo) -> None:
            if not console.is_terminal and s.batch % 50 == 0:  # a log file: a line now and then
                console.print(
                    f"epoch {s.epoch + 1} batch {s.batch}/{s.batches}: loss {s.loss:.3f}, "
                    f"acc {s.accuracy:.2f}, {s.step_seconds:.2f} s/step "
                    f"({s.data_seconds:.2f} s waiting for data)"
                )
            prog.update(
                task,
                completed=s.batch,
                total=s.batches,
                epoch=s.epoch + 1,
                loss=s.loss,
                acc=s.accuracy,
            )

        def on_epoch(e: EpochStats) -> None:
            val_txt = "" if e.val_top1 is None else f", val top-1 {100 * e.val_top1:.1f} %"
            console.print(
                f"epoch {e.epoch}/{cfg.train.epochs}: loss {e.loss:.3f}, "
                f"train acc {100 * e.accuracy:.1f} %, {e.seconds:.0f} s{val_txt}"
            )

        try:
            trainer = Trainer(cfg, out, train, val, on_step=on_step, on_epoch=on_epoch)
        except ValueError as exc:  # also CheckpointError, ModelFileError: a bad init_from
            fail(str(exc))
        console.print(
            f"training on {len(train)} utterances of {len(trainer.speakers)} speakers"
            f" ({len(trainer.val_utts)} for validation) -> {out}"
        )
        return trainer.fit(resume=resume)


def train(
    config: Path | None = typer.Option(None, "--config", "-c", help="Recipe YAML."),
    data: Path | None = typer.Option(None, help="Evaluation corpus root (VoxCeleb layout)."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override, e.g. train.epochs=3 or dataset.train.0.max_utts_per_speaker=8."
    ),
    out: Path | None = typer.Option(None, help="Run folder (default runs/<recipe name>)."),
    resume: bool = typer.Option(False, help="Continue from the run folder's last checkpoint."),
    device: str | None = typer.Option(
        None, "--device", help="cpu, cuda or cuda:N (default: the recipe's train.device)."
    ),
    calibrate: bool = typer.Option(
        True,
        help="Fit the model's cohort and calibration on the recipe's `calibration` "
        "(held-out) speakers at the end.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a speaker embedding model; writes checkpoints and the exported model, then
    calibrates it on the recipe's held-out speakers (`calibration` section) so that verify,
    identify and enroll accept it at once. Without a `calibration` section the model scores
    uncalibrated (a warning says how to calibrate it). Ctrl-C stops with the last checkpoint
    kept: rerun the command with --resume to continue.

    Under ``torchrun --nproc_per_node=N`` it trains with DistributedDataParallel (gloo on CPU,
    nccl on CUDA), ``train.batch_size`` split over the N processes; rank 0 reports and writes.
    """
    setup_logging(verbose)
    if device is not None:
        set_ = [*set_, f"train.device={check_device(device)}"]
    try:
        cfg = load_config(config, set_, data_root=str(resolve_data(data)))
    except ConfigError as exc:
        fail(str(exc))
    ctx = distributed.init_from_env(cfg.train.device)
    if not ctx.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    run_dir = out or Path("runs") / cfg.name
    try:
        result = run_training(cfg, run_dir, resume, show=ctx.is_main)
    except KeyboardInterrupt:
        if ctx.is_main:
            _interrupted(run_dir)
        raise typer.Exit(130) from None
    finally:
        distributed.shutdown()
    if not ctx.is_main:
        return
    console.print(f"model written to {result.model_dir} ({result.seconds:.0f} s of training)")
    if not calibrate:
        return
    if not cfg.calibration:
        console.print(
            "[yellow]warning:[/] the recipe has no `calibration` section (held-out speakers): "
            "the model scores uncalibrated (calibrated: false, no LLR). Calibrate it with "
            f"`wildvox calibrate-model --model {result.model_dir} -c RECIPE`",
            highlight=False,
        )
        return
    # `wildvox calibrate-model --model DIR` itself, with its defaults: the model's saved config
    # names the calibration corpora
    from wildvox.cli.main import load_command

    args = ["--model", str(result.model_dir), "--seed", str(cfg.train.seed)]
    code = load_command("calibrate-model").main(args, "wildvox calibrate-model",
                                                standalone_mode=False)  # fmt: skip
    if code:
        raise typer.Exit(code)


def _interrupted(run_dir: Path) -> None:
    """What Ctrl-C leaves and how to go on."""
    from wildvox.training.trainer import checkpoint_path

    ckpt = checkpoint_path(run_dir)
    if ckpt.is_file():
        console.print(
            f"interrupted: the last checkpoint is {ckpt}; continue with the same command and "
            "--resume (the steps since that checkpoint are redone)",
            highlight=False,
        )
    else:
        console.print("interrupted before the first checkpoint: nothing to resume")
