"""`mimic-train cmg`: train the conditional motion generator, export it to ONNX, generate rollouts.

Bodies call :mod:`mimicdata_trainers.cmg`; torch and the trainers load only when a command runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from mimicdata_cli._common import fail_on_error

app = typer.Typer(
    name="cmg",
    help="Conditional motion generator: train on an expert store, export to ONNX, generate rollout stores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

CheckpointOpt = Annotated[Path, typer.Option("--checkpoint", help="A CMG checkpoint (e.g. DIR/cmg_best.pt).")]
DeviceOpt = Annotated[str, typer.Option(help="torch device (cpu, cuda).")]
ThreadsOpt = Annotated[int | None, typer.Option(
    min=1, help="torch CPU threads (1 is fastest when other processes share the cores).")]


@contextmanager
def _clean_errors(threads: int | None = None) -> Iterator[None]:
    """Library errors as one `error:` line and exit 1 (the trainers raise the one error tree)."""
    with fail_on_error():
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        yield


@app.command()
def train(
    store: Annotated[str, typer.Option("--store", help="Expert store (retargeted clips with qpos/qvel).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for checkpoints, TensorBoard logs, history.json.")],
    config: Annotated[Path | None, typer.Option("--config", help="JSON/YAML file of training settings.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the config's epochs.")] = None,
    device: Annotated[str | None, typer.Option(help="torch device (cpu, cuda); default: the config's (cpu).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/cmg_last.pt when it exists.")] = True,
    threads: ThreadsOpt = None,
) -> None:
    """Train on the store's clips: windows through the data path, multi-step autoregressive loss.

    Writes OUT/cmg_best.pt (best held-out rollout error), OUT/cmg_final.pt, OUT/cmg_epochNNNN.pt every
    checkpoint_every epochs and OUT/cmg_last.pt (resume point); TensorBoard scalars in OUT/tb.
    """
    with _clean_errors(threads):
        from mimicdata_trainers.cmg.train import TrainConfig
        from mimicdata_trainers.cmg.train import train as run

        overrides = {"epochs": epochs, "device": device}
        cfg = (TrainConfig.from_file(config, **overrides) if config is not None
               else TrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None}))
        result = run(store, out, cfg, resume=resume, log=typer.echo)
        last = result.history[-1] if result.history else {}
        typer.echo(f"best held-out error {result.best_val:.4g}; final {result.final}; best {result.best}")
        if "val_const_pose" in last:
            typer.echo(f"last epoch, held-out {cfg.eval_steps}-step rollout error: model {last['val_model']:.4g}, "
                       f"constant pose {last['val_const_pose']:.4g}, constant velocity {last['val_const_vel']:.4g}")


@app.command()
def export(
    checkpoint: CheckpointOpt,
    onnx: Annotated[Path, typer.Option("--onnx", help="Output .onnx file.")],
    check: Annotated[bool, typer.Option(help="Compare onnxruntime with torch after export.")] = True,
) -> None:
    """Export one model step (normalisation included) to ONNX for deployment; checked with onnxruntime."""
    with _clean_errors():
        from mimicdata_trainers.cmg.export import check_onnx, export_onnx

        path = export_onnx(checkpoint, onnx)
        typer.echo(f"wrote {path}")
        if check:
            typer.echo(f"onnxruntime matches torch: max difference {check_onnx(checkpoint, path):.2e} std")


@app.command()
def generate(
    checkpoint: CheckpointOpt,
    out: Annotated[str, typer.Option("--out", help="New cmg_rollout store.")],
    num_trajectories: Annotated[int, typer.Option(min=1, help="Trajectories to generate.")] = 10000,
    length: Annotated[int, typer.Option(min=2, help="Frames per trajectory.")] = 500,
    commands: Annotated[str, typer.Option(
        help="'uniform' (one command per trajectory from the training range) or a .npy/.csv file.")] = "uniform",
    batch_size: Annotated[int, typer.Option(min=1, help="Trajectories generated and written at once.")] = 512,
    device: DeviceOpt = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of the uniform command draw.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Stream rollouts into a cmg_rollout store, batch by batch (bounded memory), with a progress bar."""
    with _clean_errors(threads):
        from mimicdata_trainers.cmg.checkpoint import read_checkpoint
        from mimicdata_trainers.cmg.rollout import generate_rollouts
        from tqdm import tqdm

        read_checkpoint(checkpoint)  # a bad checkpoint fails before the progress bar starts
        with tqdm(total=num_trajectories, desc="cmg generate", unit="traj") as bar:
            frames = generate_rollouts(checkpoint, out, num_trajectories=num_trajectories, length=length,
                                       commands=commands, device=device, batch_size=batch_size, seed=seed,
                                       overwrite=overwrite, progress=bar.update)
        typer.echo(f"wrote {num_trajectories} trajectories ({frames} frames) to {out}")
