"""The training run around :func:`make_train`: expert data, per-iteration metrics (stdout, TensorBoard,
a mimicdata store), checkpoints (best + interval) and resume.

>>> session = prepare("expert.zarr", load_config())          # doctest: +SKIP
>>> run(session, "runs/steering", seed=0)                     # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from mimicdata_trainers.amp import checkpoint
from mimicdata_trainers.amp.config import Config
from mimicdata_trainers.amp.disc_obs import ExpertData, load_expert
from mimicdata_trainers.amp.env import Reference, SteeringEnv
from mimicdata_trainers.amp.networks import init_actor_critic, init_normalizer
from mimicdata_trainers.amp.train import Expert, Trainer, TrainState, first_device, make_train

import mimicdata as md
from mimicdata.errors import StoreExistsError, ValidationError

METRICS_STORE = "metrics.zarr"
#: printed on stdout each iteration, in this order
SHOWN = ("episode_return", "episode_length", "task_reward", "disc_reward", "policy_loss", "value_loss",
         "disc_loss", "approx_kl", "clip_fraction", "disc_expert_accuracy", "disc_agent_accuracy")


@dataclass
class Session:
    """Everything compiled or loaded once for a config and expert store (reusable across runs)."""

    config: Config
    env: SteeringEnv
    expert_data: ExpertData
    expert: Expert
    trainer: Trainer
    store_url: str


def prepare(store_url: str | Path, config: Config, num_devices: int | None = None) -> Session:
    expert_data = load_expert(store_url, config)
    env = SteeringEnv(config.env, config.disc_obs)
    device = jax.devices()[0]  # committed arrays: an uncommitted input recompiles on the second call
    put = lambda x: jax.device_put(np.asarray(x, np.float32), device)  # noqa: E731
    expert = Expert(disc_obs=put(expert_data.disc_obs()),
                    reference=Reference(qpos=put(expert_data.qpos), qvel=put(expert_data.qvel),
                                        history=put(expert_data.history)))
    return Session(config, env, expert_data, expert, make_train(config, env, num_devices), str(store_url))


def policy_template(config: Config, env: Any) -> Any:
    """Abstract (params, obs normaliser) of the policy, the structure saved under ``policy/``."""
    return jax.eval_shape(lambda: (init_actor_critic(jax.random.PRNGKey(0), env.obs_size, env.action_size,
                                                     config.ppo.hidden, config.ppo.init_log_std),
                                   init_normalizer(env.obs_size)))


def _metrics_store(out_dir: Path, names: list[str], iteration: int, config: Config, fresh: bool) -> Any:
    path = out_dir / METRICS_STORE
    if fresh or not path.exists():
        store = md.create(path, overwrite=True, attrs={"kind": "amp_ppo_training", "config": config.to_dict()})
        fields = {"iteration": {"dtype": "int64", "shape": [], "unit": "iteration"},
                  "env_steps": {"dtype": "int64", "shape": [], "unit": "step"},
                  "wall_seconds": {"dtype": "float64", "shape": [], "unit": "s"},
                  "steps_per_second": {"dtype": "float64", "shape": [], "unit": "1/s"}}
        fields.update({n: {"dtype": "float64", "shape": [], "unit": "1", "allow_nan": True} for n in names})
        store.add_stream("metrics", fields=fields)
        return store
    store = md.open(path, mode="a", break_lock=True)  # the run that held it is over (we are resuming it)
    stream = store["metrics"]
    done = stream.read("iteration") if stream.num_rows else np.zeros(0, np.int64)
    keep = int(np.searchsorted(done, iteration, side="right"))
    if keep < stream.num_rows:  # rows logged after the checkpoint we resume from
        stream.truncate(keep)
    return store


def run(session: Session, out_dir: str | Path, *, seed: int = 0, resume: bool = False,
        iterations: int | None = None, log: Callable[[str], None] = print) -> TrainState:
    """Train to ``config.train.total_steps`` (or `iterations` more), logging and checkpointing in `out_dir`."""
    config, trainer = session.config, session.trainer
    out_dir = Path(out_dir)
    start_meta: dict[str, Any] = {}
    if resume:
        last = checkpoint.newest_interval(out_dir) if out_dir.is_dir() else None
        if last is None:
            raise checkpoint.CheckpointNotFoundError(f"{out_dir}: no checkpoint to resume from")
        start_meta, groups = checkpoint.read(last)
        same = lambda doc: {k: v for k, v in doc.items() if k != "train"}  # noqa: E731
        if same(start_meta["config"]) != same(config.to_dict()):
            raise ValidationError(f"{last}: was trained with another configuration; resume with the same --config")
        template = jax.eval_shape(trainer.init, jax.random.PRNGKey(seed), session.expert)
        state = checkpoint.restore(template, groups["state"], "train state")
        if trainer.num_devices == 1:  # committed, as init's output is: an uncommitted input recompiles update
            state = jax.device_put(state, jax.devices()[0])
        seed = int(start_meta["seed"])
        log(f"resumed from {last.name} at iteration {start_meta['iteration']}")
    else:
        if out_dir.exists() and (checkpoint.newest_interval(out_dir) or (out_dir / checkpoint.BEST).exists()):
            raise StoreExistsError(f"{out_dir} already holds a training run; pass --resume or choose another --out")
        out_dir.mkdir(parents=True, exist_ok=True)
        state = trainer.init(jax.random.PRNGKey(seed), session.expert)
    done = int(start_meta.get("iteration", 0))
    total = math.ceil(config.train.total_steps / trainer.steps_per_iteration)
    todo = total - done if iterations is None else iterations
    best = float(start_meta.get("best_return", -math.inf))
    writer = _tensorboard(out_dir)
    store = None
    meta_base = {"config": config.to_dict(), "seed": seed, "num_devices": trainer.num_devices,
                 "store": session.store_url, "disc_spec": session.expert_data.spec.key()}
    try:
        for _ in range(todo):
            t0 = time.perf_counter()
            state, metrics = trainer.update(state, session.expert)
            metrics = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in jax.device_get(metrics).items()}
            seconds = time.perf_counter() - t0
            done += 1
            steps = done * trainer.steps_per_iteration
            sps = trainer.steps_per_iteration / seconds
            if metrics["episodes"] == 0:  # no episode ended in this rollout: no return to report
                metrics["episode_return"] = metrics["episode_length"] = math.nan
            if store is None:
                store = _metrics_store(out_dir, sorted(metrics), done - 1, config, fresh=not resume)
            store["metrics"].append({"iteration": [done], "env_steps": [steps], "wall_seconds": [seconds],
                                     "steps_per_second": [sps], **{k: [v] for k, v in metrics.items()}})
            if writer is not None:
                for k, v in {**metrics, "steps_per_second": sps}.items():
                    if math.isfinite(v):  # no episode ended: nothing to plot, rather than a NaN point
                        writer.add_scalar(f"amp/{k}", v, steps)
            log(f"iter {done:5d}  steps {steps:>11,d}  sps {sps:9.0f}  "
                + "  ".join(f"{k} {metrics[k]:.4g}" for k in SHOWN))
            meta = {**meta_base, "iteration": done, "env_steps": steps}
            policy = first_device((state.params, state.obs_norm), trainer.num_devices)
            if not math.isnan(metrics["episode_return"]) and metrics["episode_return"] > best:
                best = metrics["episode_return"]
                checkpoint.save(out_dir / checkpoint.BEST, {**meta, "best_return": best}, state, policy)
            if done % config.train.checkpoint_every == 0 or done == total or _ == todo - 1:
                checkpoint.save(out_dir / checkpoint.interval_name(done), {**meta, "best_return": best}, state,
                                policy)
                checkpoint.prune(out_dir, config.train.keep_checkpoints)
    finally:
        if writer is not None:
            writer.close()
        if store is not None:
            store.close()
    return state


def _tensorboard(out_dir: Path) -> Any:
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ImportError("TensorBoard event files need tensorboardX: pip install 'mimicdata[train]'") from None
    return SummaryWriter(str(out_dir / "tensorboard"))
