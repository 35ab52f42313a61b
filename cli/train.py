"""`mimic-train`: replay and motion-sampling tools over mimicdata stores. Bodies call library code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mimicdata_cli._common import fail_on_error
from mimicdata_cli.train_amp import register as register_amp
from mimicdata_cli.train_cmg import app as cmg_app

app = typer.Typer(
    name="mimic-train",
    help="Prioritised replay, adaptive motion sampling and task configuration for training on mimicdata stores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # reflow docstring paragraphs instead of keeping source line breaks
)

StoreOpt = Annotated[str, typer.Option("--store", help="Store path or URL holding the frames (e.g. expert.zarr).")]
SeedOpt = Annotated[int, typer.Option(help="Seed of every random generator used.")]
DeviceOpt = Annotated[str, typer.Option(help="torch device (cpu, cuda).")]


@app.command()
def per(
    store: StoreOpt,
    iterations: Annotated[int, typer.Option(min=1, help="Sample/update iterations to run.")] = 200,
    batch: Annotated[int, typer.Option(min=1, help="Transitions drawn per iteration.")] = 256,
    stream: Annotated[str, typer.Option(help="Stream to take transitions (row t -> t+1) from.")] = "frames",
    fields: Annotated[str, typer.Option(help="Comma-separated fields stored per transition.")] = "qpos,qvel",
    signal: Annotated[str, typer.Option(
        help="Error fed back as priority: 'constant_velocity' = |q[t+1] - (q[t] + qdot[t]/fps)| over the joints "
             "(rad), or 'delta:FIELD' = |FIELD[t+1] - FIELD[t]|.")] = "constant_velocity",
    alpha: Annotated[float, typer.Option(help="Priority exponent.")] = 0.6,
    beta: Annotated[float, typer.Option(help="Initial importance-sampling exponent.")] = 0.4,
    beta_increment: Annotated[float, typer.Option(help="Added to beta after each sample.")] = 0.001,
    epsilon: Annotated[float, typer.Option(help="Added to |error|.")] = 1e-6,
    out: Annotated[Path | None, typer.Option(help="New store to save the buffer snapshot into.")] = None,
    name: Annotated[str, typer.Option(help="Snapshot stream name.")] = "replay",
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Build a prioritised buffer from a store's frames, run sample/update iterations, save a snapshot.

    Each iteration draws --batch transitions by priority, computes the --signal error of each and
    writes it back as its priority. Prints beta, the mean error drawn and how much of the sampling
    goes to the 1 % of transitions with the largest error (1 % under uniform sampling).
    """
    from mimicdata_trainers.experiments import ReplayExperiment
    from mimicdata_trainers.snapshot import save_buffer

    with fail_on_error():
        exp = ReplayExperiment.from_store(store, stream, [f.strip() for f in fields.split(",") if f.strip()], signal,
                                          alpha=alpha, beta=beta, beta_increment=beta_increment, epsilon=epsilon,
                                          device=device, seed=seed)
        count = exp.buffer.get_sample_count()
        typer.echo(f"{count} transitions from {store} [{stream}]; signal {signal}: "
                   f"error mean {float(exp.errors.mean()):.4g}, p99 {exp.error_p99:.4g}")
        for r in exp.run(iterations, batch):
            typer.echo(f"iter {r.iteration:>6}  beta {r.beta:.3f}  mean error drawn {r.mean_error:.4g}  "
                       f"share on top-1% errors {r.share_on_hard:.3%}")
        if out is not None:
            save_buffer(exp.buffer, out, name, overwrite=overwrite)
            typer.echo(f"saved snapshot {name!r} ({count} entries) to {out}")


@app.command()
def adaptive(
    store: StoreOpt,
    iterations: Annotated[int, typer.Option(min=1, help="Rounds of sample -> play episodes -> update.")] = 100,
    num_envs: Annotated[int, typer.Option(min=1, help="Episodes started per round.")] = 4096,
    episode_seconds: Annotated[float, typer.Option(min=0.0, help="Time limit of one episode.")] = 10.0,
    hazard_rate: Annotated[float, typer.Option(
        help="Failure model: failures per second at the median bin's joint speed.")] = 0.05,
    hazard_power: Annotated[float, typer.Option(help="Failure model: hazard grows as (speed/median)^power.")] = 2.0,
    task: Annotated[Path | None, typer.Option(
        help="Task file whose adaptive_sampling block sets the sampler (default: the shipped G1 task).")] = None,
    uniform_ratio: Annotated[float | None, typer.Option(help="Override the task's uniform floor.")] = None,
    ema_alpha: Annotated[float | None, typer.Option(help="Override the task's failure EMA weight.")] = None,
    out: Annotated[Path | None, typer.Option(help="New store to save the sampler state into.")] = None,
    name: Annotated[str, typer.Option(help="State stream name.")] = "adaptive_sampler",
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Run the adaptive motion sampler over a store's clips against a failure model; print and save it.

    The failure model stands in for a policy: it fails in a 1 s bin with a probability that grows
    with the bin's mean joint speed (from qvel). Each round samples start states, plays the episodes
    bin by bin and feeds the failures back. Prints entropy (normalised), top-1 probability, the
    failure rate and the share of starts in the hardest 10 % of bins.
    """
    import dataclasses

    from mimicdata_trainers.experiments import AdaptiveExperiment
    from mimicdata_trainers.task_config import load_task_config

    with fail_on_error():
        config = load_task_config(task).motion_sampling
        changes = {k: v for k, v in (("uniform_ratio", uniform_ratio), ("ema_alpha", ema_alpha)) if v is not None}
        config = dataclasses.replace(config, **changes)
        exp = AdaptiveExperiment.from_store(store, config, hazard_rate=hazard_rate, hazard_power=hazard_power,
                                            device=device, seed=seed)
        sampler, hazard = exp.sampler, exp.model.hazard
        typer.echo(f"{sampler.clip_lengths.size} clips, {sampler.num_bins} bins of {sampler.bin_frames} frames; "
                   f"hazard per bin {float(hazard.min()):.3g}..{float(hazard.max()):.3g}; "
                   f"hardest 10% of bins = {exp.hardest_time_share:.1%} of time")
        for r in exp.run(iterations, num_envs, episode_seconds):
            typer.echo(f"iter {r.iteration:>5}  entropy {r.entropy_normalized:.4f}  top1 {r.top1_prob:.4f} "
                       f"(clip {r.top1_clip} bin {r.top1_bin})  failure rate {r.failure_rate:.3f}  "
                       f"starts in hardest bins {r.share_on_hardest:.1%}")
        if out is not None:
            sampler.save(out, name, overwrite=overwrite)
            typer.echo(f"saved sampler state {name!r} to {out}")


@app.command()
def gains(
    robot: Annotated[str, typer.Option(help="g1_29dof or g1_23dof.")] = "g1_29dof",
    task: Annotated[Path | None, typer.Option(help="Validate this task file and use its control settings.")] = None,
) -> None:
    """Print the G1 actuator table computed from the armature formulas (and validate a task file)."""
    from mimicdata_trainers.g1_config import g1_actuator_config
    from mimicdata_trainers.task_config import load_task_config

    with fail_on_error():
        cfg = load_task_config(task).actuators() if task is not None else g1_actuator_config(robot)
    typer.echo(f"{cfg.robot}: f = {cfg.natural_frequency_hz:g} Hz, zeta = {cfg.damping_ratio:g}, "
               f"action scale = {cfg.action_scale_factor:g} * effort / K")
    typer.echo(f"{'joint':<28}{'motor':>8}{'n':>3}{'armature':>12}{'K':>10}{'D':>9}{'effort':>8}{'vel':>7}{'scale':>8}")
    for i, joint in enumerate(cfg.joint_names):
        typer.echo(f"{joint:<28}{cfg.motors[i]:>8}{int(cfg.motor_counts[i]):>3}{cfg.armature[i]:>12.6f}"
                   f"{cfg.stiffness[i]:>10.3f}{cfg.damping[i]:>9.3f}{cfg.effort_limit[i]:>8.1f}"
                   f"{cfg.velocity_limit[i]:>7.1f}{cfg.action_scale[i]:>8.4f}")


app.add_typer(cmg_app, name="cmg")
register_amp(app)  # amp, eval

if __name__ == "__main__":
    app()
