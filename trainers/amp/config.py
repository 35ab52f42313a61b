"""AMP + PPO configuration: frozen dataclasses, filled from the shipped ``default.yaml`` and a user file.

A user file only needs the keys it changes; an unknown section or key, or a value of the wrong type,
is a :class:`~mimicdata.errors.ValidationError` naming it (a typo must not silently train with the default).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from mimicdata.errors import ValidationError

ENV_IDS = {"g1_29dof.steering": "g1_29dof", "g1_23dof.steering": "g1_23dof"}


@dataclass(frozen=True)
class EnvConfig:
    robot: str = "g1_29dof"
    impl: str = "jax"
    sim_dt: float = 0.005
    ctrl_dt: float = 0.02
    solver_iterations: int = 4
    ls_iterations: int = 6
    episode_seconds: float = 10.0
    fall_height: float = 0.4
    speed_range: tuple[float, float] = (0.3, 1.5)
    resample_seconds: tuple[float, float] = (4.0, 7.0)
    reference_init_prob: float = 0.8
    key_bodies: tuple[str, ...] = ("left_ankle_roll_link", "right_ankle_roll_link",
                                   "left_wrist_yaw_link", "right_wrist_yaw_link")

    @property
    def substeps(self) -> int:
        return max(1, round(self.ctrl_dt / self.sim_dt))

    @property
    def episode_steps(self) -> int:
        return max(1, round(self.episode_seconds / self.ctrl_dt))


@dataclass(frozen=True)
class DiscObsConfig:
    history: int = 10
    dilation: int = 1


@dataclass(frozen=True)
class PPOConfig:
    num_envs: int = 4096
    rollout_steps: int = 32
    epochs: int = 5
    minibatches: int = 4
    learning_rate: float = 3e-4
    max_grad_norm: float = 1.0
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    advantage_clip: float = 4.0
    init_log_std: float = -1.6
    hidden: tuple[int, ...] = (1024, 512)


@dataclass(frozen=True)
class AMPConfig:
    task_weight: float = 0.5
    disc_weight: float = 0.5
    disc_reward_scale: float = 2.0
    disc_learning_rate: float = 5e-5
    disc_max_grad_norm: float = 1.0
    disc_hidden: tuple[int, ...] = (1024, 512)
    disc_minibatch: int = 4096
    disc_steps: int = 4
    gradient_penalty: float = 10.0
    logit_reg: float = 0.01
    weight_decay: float = 1e-4
    replay_size: int = 200_000
    replay_insert: int = 8192
    obs_clip: float = 10.0


@dataclass(frozen=True)
class TrainConfig:
    total_steps: int = 100_000_000
    checkpoint_every: int = 50
    keep_checkpoints: int = 3


@dataclass(frozen=True)
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    disc_obs: DiscObsConfig = field(default_factory=DiscObsConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    amp: AMPConfig = field(default_factory=AMPConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **sections: dict[str, Any]) -> Config:
        """A copy with some keys changed: ``cfg.replace(ppo={"num_envs": 8})``."""
        return from_dict(sections, base=self)

    def validate(self) -> Config:
        e, p, a = self.env, self.ppo, self.amp
        checks = [
            (e.robot in ENV_IDS.values(), f"env.robot must be one of {sorted(ENV_IDS.values())}, got {e.robot!r}"),
            (e.impl in ("jax", "warp"), f"env.impl must be 'jax' or 'warp', got {e.impl!r}"),
            (0 < e.sim_dt <= e.ctrl_dt, "env.sim_dt must be positive and at most env.ctrl_dt"),
            (abs(e.ctrl_dt / e.sim_dt - e.substeps) < 1e-6, "env.ctrl_dt must be a multiple of env.sim_dt"),
            (0 < e.speed_range[0] <= e.speed_range[1], "env.speed_range must be 0 < low <= high"),
            (0 < e.resample_seconds[0] <= e.resample_seconds[1], "env.resample_seconds must be 0 < low <= high"),
            (0.0 <= e.reference_init_prob <= 1.0, "env.reference_init_prob must be in [0, 1]"),
            (self.disc_obs.history >= 1 and self.disc_obs.dilation >= 1, "disc_obs.history and dilation must be >= 1"),
            (p.num_envs >= 1 and p.rollout_steps >= 1, "ppo.num_envs and ppo.rollout_steps must be >= 1"),
            ((p.num_envs * p.rollout_steps) % p.minibatches == 0,
             "ppo.num_envs * ppo.rollout_steps must be divisible by ppo.minibatches"),
            (a.replay_insert <= a.replay_size, "amp.replay_insert must not exceed amp.replay_size"),
            (a.disc_minibatch >= 1 and a.disc_steps >= 1, "amp.disc_minibatch and amp.disc_steps must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValidationError(f"AMP config: {message}")
        return self


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
_CLASSES = {"env": EnvConfig, "disc_obs": DiscObsConfig, "ppo": PPOConfig, "amp": AMPConfig, "train": TrainConfig}


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    where = f"AMP config: {section}.{key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValidationError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or (default and len(value) != len(default)
                                                   and isinstance(default[0], float)):
            raise ValidationError(f"{where} must be a list like {list(default)}, got {value!r}")
        return tuple(_coerce(section, key, v, default[0]) if default else v for v in value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ValidationError(f"{where} must be a string, got {value!r}")
    return value


def from_dict(doc: dict[str, Any], base: Config | None = None) -> Config:
    """Apply `doc` ({section: {key: value}}) over `base` (the shipped defaults when None)."""
    base = base or default_config()
    if not isinstance(doc, dict):
        raise ValidationError(f"AMP config must be a mapping of sections, got {type(doc).__name__}")
    sections = {}
    for name, values in doc.items():
        if name not in _CLASSES:
            raise ValidationError(f"AMP config: unknown section {name!r}; sections: {', '.join(_CLASSES)}")
        current = getattr(base, name)
        if not isinstance(values, dict):
            raise ValidationError(f"AMP config: section {name!r} must be a mapping")
        known = {f.name for f in dataclasses.fields(current)}
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise ValidationError(f"AMP config: unknown key {name}.{key}; keys: {', '.join(sorted(known))}")
            changes[key] = _coerce(name, key, value, getattr(current, key))
        sections[name] = dataclasses.replace(current, **changes)
    return dataclasses.replace(base, **sections).validate()


def default_config() -> Config:
    """The shipped ``default.yaml``."""
    text = files("mimicdata_trainers.amp").joinpath("default.yaml").read_text()
    return from_dict(yaml.safe_load(text), base=Config())


def load_config(path: str | Path | None = None) -> Config:
    """The defaults overlaid with the YAML file at `path` (only the keys it sets)."""
    if path is None:
        return default_config()
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"AMP config file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValidationError(f"AMP config file {path} is not valid YAML: {exc}") from None
    return from_dict(doc)
