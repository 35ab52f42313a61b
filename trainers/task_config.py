"""Tracking-task configuration files (``tasks/g1_task.json``): load, validate, build the pieces.

The layout follows design note 001 (robot, motion_file, reward_weights, control, adaptive_sampling)
with two corrections: ``control`` no longer takes one stiffness/damping for every motor (it states
the formula's natural frequency and damping ratio, plus optional per-joint overrides), and
``adaptive_sampling`` carries the failure-bin parameters next to the replay parameters.

Every error names the file and the key path, e.g.
``g1_task.json: adaptive_sampling.alpha must be in [0, 1], got 1.5``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mimicdata.errors import ConfigError

from .adaptive import AdaptiveSamplingConfig
from .g1_config import G1ActuatorConfig, g1_actuator_config

if TYPE_CHECKING:
    from .per import ExperienceBuffer

__all__ = ["ControlConfig", "ReplayConfig", "TaskConfig", "TaskConfigError", "default_task_path", "load_task_config"]

_ROBOT_ALIASES = {"g1": "g1_29dof", "g1_29dof": "g1_29dof", "g1_23dof": "g1_23dof"}


class TaskConfigError(ConfigError):
    """A task configuration file that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class ControlConfig:
    """PD control: gains from the armature formula, optionally overridden per joint."""

    type: str = "pd"
    natural_frequency_hz: float = 10.0
    damping_ratio: float = 2.0
    action_scale_factor: float = 0.25
    overrides: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplayConfig:
    """Prioritised replay parameters (the seed's adaptive_sampling alpha/beta/beta_increment)."""

    enabled: bool = True
    alpha: float = 0.6
    beta: float = 0.4
    beta_increment: float = 0.001
    epsilon: float = 1e-6


@dataclass(frozen=True)
class TaskConfig:
    """A validated task configuration."""

    path: Path
    robot: str
    motion_file: Path
    reward_weights: dict[str, float]
    control: ControlConfig
    replay: ReplayConfig
    motion_sampling: AdaptiveSamplingConfig
    sim: dict[str, float]

    def actuators(self) -> G1ActuatorConfig:
        """Per-joint gains and limits for this task's robot and control settings."""
        c = self.control
        return g1_actuator_config(self.robot, natural_frequency_hz=c.natural_frequency_hz,
                                  damping_ratio=c.damping_ratio, action_scale_factor=c.action_scale_factor,
                                  overrides=c.overrides)

    def make_buffer(self, buffer_len: int, batch_size: int, device: str = "cpu",
                    seed: int | None = None) -> ExperienceBuffer:
        """The replay buffer the task asks for: prioritised when adaptive sampling is enabled."""
        from .per import ExperienceBuffer, PrioritizedExperienceBuffer

        r = self.replay
        if not r.enabled:
            return ExperienceBuffer(buffer_len, batch_size, device=device, seed=seed)
        return PrioritizedExperienceBuffer(buffer_len, batch_size, alpha=r.alpha, beta=r.beta,
                                           beta_increment=r.beta_increment, epsilon=r.epsilon,
                                           device=device, seed=seed)


def default_task_path() -> Path:
    """The G1 task file shipped with the trainers package."""
    return Path(str(files("mimicdata_trainers") / "tasks" / "g1_task.json"))


class _Reader:
    """Typed access to a JSON object that reports the file and key path on every error."""

    def __init__(self, source: str, doc: Any, prefix: str = "") -> None:
        self.source, self.doc, self.prefix = source, doc, prefix
        if not isinstance(doc, dict):
            raise self.error(f"must be a JSON object, got {type(doc).__name__}", key=None)
        self.seen: set[str] = set()

    def error(self, message: str, key: str | None) -> TaskConfigError:
        where = f"{self.prefix}{key}" if key is not None else (self.prefix.rstrip(".") or "top level")
        return TaskConfigError(f"{self.source}: {where} {message}")

    def child(self, key: str, required: bool = True) -> _Reader | None:
        self.seen.add(key)
        if key not in self.doc:
            if required:
                raise self.error("is missing", key)
            return None
        return _Reader(self.source, self.doc[key], f"{self.prefix}{key}.")

    def number(self, key: str, default: float | None, lo: float, hi: float, *, lo_open: bool = False) -> float:
        self.seen.add(key)
        if key not in self.doc:
            if default is None:
                raise self.error("is missing", key)
            return default
        value = self.doc[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(f"must be a finite number, got {value!r}", key)
        if value < lo or value > hi or (lo_open and value == lo):
            raise self.error(f"must be in {'(' if lo_open else '['}{lo}, {hi}], got {value!r}", key)
        return float(value)

    def integer(self, key: str, default: int, lo: int) -> int:
        self.seen.add(key)
        value = self.doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise self.error(f"must be an integer >= {lo}, got {value!r}", key)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        self.seen.add(key)
        value = self.doc.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"must be true or false, got {value!r}", key)
        return value

    def string(self, key: str, default: str | None = None) -> str:
        self.seen.add(key)
        value = self.doc.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.error("is missing" if value is None else f"must be a non-empty string, got {value!r}", key)
        return value

    def done(self) -> None:
        unknown = sorted(set(self.doc) - self.seen)
        if unknown:
            raise self.error(f"has unknown key(s) {unknown} (allowed: {sorted(self.seen)})", key=None)


def _control(reader: _Reader | None, robot: str) -> ControlConfig:
    if reader is None:
        return ControlConfig()
    kind = reader.string("type", "pd")
    if kind != "pd":
        raise reader.error(f"must be 'pd' (the only controller), got {kind!r}", "type")
    for key in ("stiffness", "damping"):
        value = reader.doc.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise reader.error(
                f"is one number for every motor ({value}); G1 motors differ (K = armature * (2 pi f)^2: 14.25 "
                f"for a 5020, 99.10 for a 7520_22). Remove it to use the formula, or give per-joint values "
                f"under 'overrides'", key)
        reader.seen.add(key)
        if value is not None:
            raise reader.error("is not a control key; per-joint gains go under 'overrides'", key)
    overrides_reader = reader.child("overrides", required=False)
    overrides: dict[str, dict[str, float]] = {}
    if overrides_reader is not None:
        for joint in overrides_reader.doc:
            joint_reader = overrides_reader.child(joint)
            assert joint_reader is not None
            values = {k: joint_reader.number(k, None, 0.0, math.inf, lo_open=True)
                      for k in ("stiffness", "damping") if k in joint_reader.doc}
            joint_reader.done()
            overrides[joint] = values
    config = ControlConfig(
        natural_frequency_hz=reader.number("natural_frequency_hz", 10.0, 0.0, 1000.0, lo_open=True),
        damping_ratio=reader.number("damping_ratio", 2.0, 0.0, 100.0, lo_open=True),
        action_scale_factor=reader.number("action_scale_factor", 0.25, 0.0, 100.0, lo_open=True),
        overrides=overrides,
    )
    reader.done()
    try:  # joint names of the overrides are checked against the robot here
        g1_actuator_config(robot, natural_frequency_hz=config.natural_frequency_hz,
                           damping_ratio=config.damping_ratio, overrides=config.overrides)
    except ValueError as exc:
        raise reader.error(f"is invalid: {exc}", "overrides") from None
    return config


def _adaptive(reader: _Reader | None) -> tuple[ReplayConfig, AdaptiveSamplingConfig]:
    if reader is None:
        return ReplayConfig(enabled=False), AdaptiveSamplingConfig()
    replay = ReplayConfig(
        enabled=reader.boolean("enabled", True),
        alpha=reader.number("alpha", 0.6, 0.0, 1.0),
        beta=reader.number("beta", 0.4, 0.0, 1.0),
        beta_increment=reader.number("beta_increment", 0.001, 0.0, 1.0),
        epsilon=reader.number("epsilon", 1e-6, 0.0, 1.0, lo_open=True),
    )
    bins = AdaptiveSamplingConfig(
        bin_seconds=reader.number("bin_seconds", 1.0, 0.0, 3600.0, lo_open=True),
        ema_alpha=reader.number("ema_alpha", 0.001, 0.0, 1.0, lo_open=True),
        kernel_size=reader.integer("kernel_size", 1, 1),
        kernel_lambda=reader.number("kernel_lambda", 0.8, 0.0, 1.0, lo_open=True),
        uniform_ratio=reader.number("uniform_ratio", 0.1, 0.0, 1.0),
    )
    reader.done()
    return replay, bins


def load_task_config(path: str | Path | None = None) -> TaskConfig:
    """Read and validate a task file (default: the shipped ``tasks/g1_task.json``).

    ``motion_file`` is resolved relative to the file's folder. Raises :class:`TaskConfigError` (a
    :class:`~mimicdata.errors.ConfigError`, so a ``ValueError``) naming the file and key for every
    problem, ``FileNotFoundError`` for a missing file.
    """
    path = Path(path) if path is not None else default_task_path()
    source = path.name
    try:
        doc = json.loads(path.read_text())
    except UnicodeDecodeError as exc:
        raise TaskConfigError(f"{source}: not a text (JSON) file ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise TaskConfigError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    top = _Reader(source, doc)
    robot_name = top.string("robot")
    if robot_name not in _ROBOT_ALIASES:
        raise top.error(f"must be one of {sorted(_ROBOT_ALIASES)}, got {robot_name!r}", "robot")
    robot = _ROBOT_ALIASES[robot_name]
    motion = Path(top.string("motion_file"))
    weights_reader = top.child("reward_weights")
    assert weights_reader is not None
    weights = {k: weights_reader.number(k, None, 0.0, math.inf) for k in weights_reader.doc}
    if not weights:
        raise top.error("needs at least one term", "reward_weights")
    control = _control(top.child("control", required=False), robot)
    replay, bins = _adaptive(top.child("adaptive_sampling", required=False))
    sim_reader = top.child("sim", required=False)
    sim: dict[str, float] = {}
    if sim_reader is not None:
        sim = {
            "dt": sim_reader.number("dt", 0.005, 0.0, 1.0, lo_open=True),
            "decimation": float(sim_reader.integer("decimation", 4, 1)),
            "episode_seconds": sim_reader.number("episode_seconds", 10.0, 0.0, 3600.0, lo_open=True),
            "num_envs": float(sim_reader.integer("num_envs", 4096, 1)),
        }
        sim_reader.done()
    top.done()
    return TaskConfig(path=path, robot=robot, motion_file=motion if motion.is_absolute() else path.parent / motion,
                      reward_weights=weights, control=control, replay=replay, motion_sampling=bins, sim=sim)
