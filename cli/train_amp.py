"""`mimic-train amp` and `mimic-train eval`: AMP + PPO on the MJX G1 steering task. Bodies call library code
(:mod:`mimicdata_trainers.amp`); jax and MuJoCo are imported only once a command runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from mimicdata_cli._common import fail_on_error


def _set_up_jax(cpu: bool, deterministic: bool) -> None:
    """Environment read by jax/XLA when it is first imported: must run before any jax import."""
    if cpu:
        os.environ["JAX_PLATFORMS"] = "cpu"
    if deterministic:
        # GPU reductions in a fixed order, full-precision matmuls (TF32 differs run to run); CPU already is.
        flags = os.environ.get("XLA_FLAGS", "")
        if "--xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()
        os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"


def amp(
    store: Annotated[str, typer.Option("--store", help="Expert store (expert_trajectory, e.g. from `mimicdata "
                                                        "retarget`) whose motion the discriminator learns.")],
    config: Annotated[Path | None, typer.Option(help="YAML overriding keys of the shipped default config.")] = None,
    env_id: Annotated[str, typer.Option(help="g1_29dof.steering or g1_23dof.steering.")] = "g1_29dof.steering",
    seed: Annotated[int, typer.Option(help="Seed of the run (a resumed run keeps its own).")] = 0,
    deterministic: Annotated[bool, typer.Option(help="Bit-repeatable run (deterministic GPU ops, full-precision "
                                                     "matmuls; slower on GPU).")] = False,
    cpu: Annotated[bool, typer.Option(help="Run on the CPU even when a GPU is present.")] = False,
    num_envs: Annotated[int | None, typer.Option(min=1, help="Parallel environments (overrides the config).")] = None,
    total_steps: Annotated[int | None, typer.Option(min=1, help="Environment steps to train for.")] = None,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, tensorboard/, metrics.zarr.")] = Path("amp_run"),
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its newest checkpoint.")] = False,
) -> None:
    """Train AMP + PPO on the MJX G1 steering task from an expert store.

    Prints one line of metrics per iteration; writes `OUT/amp_ppo_best.npz`, interval checkpoints
    `OUT/amp_ppo_NNNNNN.npz`, TensorBoard events in `OUT/tensorboard/` and the metrics as a store
    `OUT/metrics.zarr` (`mimicdata query OUT/metrics.zarr "select iteration, episode_length from metrics"`).
    """
    _set_up_jax(cpu, deterministic)
    with fail_on_error():
        try:
            from mimicdata_trainers.amp.config import ENV_IDS, load_config
            from mimicdata_trainers.amp.run import prepare, run

            if env_id not in ENV_IDS:
                raise ValueError(f"unknown --env-id {env_id!r}; known: {', '.join(sorted(ENV_IDS))}")
            cfg = load_config(config)
            changes: dict[str, dict] = {"env": {"robot": ENV_IDS[env_id]}}
            if num_envs is not None:
                changes["ppo"] = {"num_envs": num_envs}
            if total_steps is not None:
                changes["train"] = {"total_steps": total_steps}
            cfg = cfg.replace(**changes)
            import jax

            typer.echo(f"AMP + PPO on {env_id}: {cfg.ppo.num_envs} envs on {jax.local_device_count()} "
                       f"{jax.default_backend()} device(s), expert {store}, out {out}")
            session = prepare(store, cfg)
            typer.echo(f"expert: {len(session.expert_data.qpos)} windows ({session.expert_data.status} "
                       f"{session.expert_data.spec.stream_name}); compiling...")
            run(session, out, seed=seed, resume=resume, log=typer.echo)
        except (ValueError, IndexError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None


def evaluate(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint, e.g. OUT/amp_ppo_best.npz.")],
    n_steps: Annotated[int, typer.Option(min=1, help="Control steps to run.")] = 1000,
    deterministic: Annotated[bool, typer.Option(help="Act with the policy mean (no exploration noise).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the targets and action noise.")] = 0,
    record: Annotated[Path | None, typer.Option(help="Write a video (.mp4/.gif; PNG filmstrip without GL).")] = None,
) -> None:
    """Run a trained policy in C MuJoCo on the steering task and report reward, falls and episode length."""
    _set_up_jax(True, deterministic)  # one environment: the CPU is the right place
    with fail_on_error():
        try:
            from mimicdata_trainers.amp.evaluate import evaluate as run_eval

            result = run_eval(checkpoint, n_steps, deterministic=deterministic, seed=seed, record=record)
        except (ValueError, IndexError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"steps {result.steps}  episodes ended {result.episodes}  falls {result.falls}  "
               f"mean task reward {result.mean_task_reward:.4f}  mean episode length {result.mean_episode_length:.1f}")
    if result.record is not None:
        note = f" ({result.record.reason})" if result.record.reason else ""
        typer.echo(f"wrote {result.record.path} [{result.record.kind}]{note}")


def register(app: typer.Typer) -> None:
    """Add `amp` and `eval` to the `mimic-train` app."""
    app.command("amp")(amp)
    app.command("eval")(evaluate)
