"""CMG: a conditional motion generator trained on expert stores, the seed's generator API and rollouts.

Importing this package does not import torch; the names below load on first use.

>>> from mimicdata_trainers.cmg import CMGMotionGenerator  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CMGModel": "model",
    "ModelConfig": "model",
    "CheckpointError": "checkpoint",
    "load_model": "checkpoint",
    "save_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "CMGMotionGenerator": "generator",
    "CommandSmoother": "smoother",
    "TrainConfig": "train",
    "train": "train",
    "export_onnx": "export",
    "check_onnx": "export",
    "generate_rollouts": "rollout",
    "frames_from_qpos": "features",
    "robot_mirror": "features",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
