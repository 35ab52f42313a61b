"""CMG checkpoints: one ``torch.save`` dict holding the weights, the normalisation statistics (as model
buffers), the model and training configuration, the robot and the rollout schema version.

Loaded with ``weights_only=True`` (no arbitrary pickles). Everything that can be wrong with a file —
missing, truncated, not a CMG checkpoint, newer format, another robot — is one
:class:`CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from mimicdata_trainers.cmg.model import CMGModel, ModelConfig

from mimicdata.errors import MimicDataError, StoreNotFoundError

FORMAT = "mimicdata.cmg"
FORMAT_VERSION = 1
ROLLOUT_SCHEMA = ("cmg_rollout", "1.1")


class CheckpointError(MimicDataError, ValueError):
    """A CMG checkpoint that cannot be used (corrupt, not a checkpoint, newer format, wrong robot)."""


def save_checkpoint(path: str | Path, model: CMGModel, *, robot: str, joint_names: list[str], fps: float,
                    train_config: dict[str, Any] | None = None, state: dict[str, Any] | None = None,
                    command_range: list[list[float]] | None = None) -> Path:
    """Write a checkpoint atomically (temporary file, then rename): a crash never leaves half a file.

    ``command_range`` is ``[min, max]`` of the training commands (what ``generate --commands uniform``
    samples from)."""
    import mimicdata

    path = Path(path)
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "mimicdata_version": mimicdata.__version__,
        "model_config": model.config.to_dict(), "model": model.state_dict(),
        "robot": robot, "joint_names": list(joint_names), "fps": float(fps),
        "schema": {"name": ROLLOUT_SCHEMA[0], "version": ROLLOUT_SCHEMA[1]},
        "stats": {k: getattr(model, k).tolist() for k in ("frame_mean", "frame_std", "command_mean", "command_std")},
        "train_config": dict(train_config or {}), "state": dict(state or {}), "command_range": command_range,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_checkpoint(path: str | Path, robot: str | None = None) -> dict[str, Any]:
    """The checkpoint dict, checked; ``robot`` (if given) must be the robot it was trained for."""
    path = Path(path)
    if not path.is_file():
        raise StoreNotFoundError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle junk, random bytes: all the same to the caller
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a CMG checkpoint (no format {FORMAT!r})")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format v{payload['format_version']} is newer than this "
                              f"mimicdata reads (v{FORMAT_VERSION}); upgrade mimicdata")
    missing = [k for k in ("model_config", "model", "robot", "joint_names", "fps") if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    if robot is not None and payload["robot"] != robot:
        raise CheckpointError(f"{path}: trained for robot {payload['robot']!r}, not {robot!r}")
    return payload


def model_from_checkpoint(payload: dict[str, Any], path: str | Path = "checkpoint") -> CMGModel:
    """Rebuild the model (weights and statistics) from a checkpoint dict."""
    try:
        model = CMGModel(ModelConfig(**payload["model_config"]))
        model.load_state_dict(payload["model"])
    except (TypeError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored model config ({str(exc)[:160]})") from None
    expected = 2 * len(payload["joint_names"]) + 7
    if model.config.frame_dim != expected:
        raise CheckpointError(f"{path}: frame size {model.config.frame_dim} does not match "
                              f"{len(payload['joint_names'])} joints (expected {expected})")
    return model.eval()


def load_model(path: str | Path, robot: str | None = None, device: str | torch.device = "cpu"
               ) -> tuple[CMGModel, dict[str, Any]]:
    """``(model on device in eval mode, checkpoint dict)``."""
    payload = read_checkpoint(path, robot)
    return model_from_checkpoint(payload, path).to(device), payload
