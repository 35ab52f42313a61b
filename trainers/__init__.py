"""mimicdata trainers: replay buffers, adaptive motion sampling and task configuration (torch).

Importing this package does not import torch; the classes below load on first use.

>>> from mimicdata_trainers import PrioritizedExperienceBuffer  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it (loaded lazily on first attribute access)
_EXPORTS = {
    "SumTree": "sumtree",
    "ExperienceBuffer": "per",
    "PrioritizedExperienceBuffer": "per",
    "AdaptiveMotionSampler": "adaptive",
    "AdaptiveSamplingConfig": "adaptive",
    "G1ActuatorConfig": "g1_config",
    "g1_actuator_config": "g1_config",
    "check_gain_table": "g1_config",
    "TaskConfig": "task_config",
    "TaskConfigError": "task_config",
    "load_task_config": "task_config",
    "BufferState": "buffer_state",
    "ReplayExperiment": "experiments",
    "AdaptiveExperiment": "experiments",
    "SpeedHazardFailureModel": "failure_model",
    "save_buffer": "snapshot",
    "load_buffer": "snapshot",
    "buffer_from_store": "snapshot",
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
