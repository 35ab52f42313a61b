"""Generate CMG rollouts into a ``cmg_rollout`` store, batch by batch (bounded memory).

The seed gathered every frame of every trajectory in a Python list of dicts and pickled it (~1.2 GB
in RAM for 10,000 x 500); here each batch of trajectories is generated, written (frames first, then
their trajectory rows, so a crash leaves only whole trajectories) and dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mimicdata_trainers.cmg.checkpoint import load_model
from mimicdata_trainers.cmg.features import command_indices
from mimicdata_trainers.cmg.generator import integrate_root, standing_frame

import mimicdata as md
from mimicdata.errors import ValidationError


def load_commands(spec: str | Path, length: int) -> np.ndarray:
    """Commands from a file: ``.npy`` (n, 3) one per trajectory or (n, length, 3) per frame; ``.csv``
    / ``.txt`` n rows of ``vx, vy, yaw_rate``. Trajectory i takes entry i mod n."""
    path = Path(spec)
    if not path.is_file():
        raise md.StoreNotFoundError(f"{path}: no such commands file (or use 'uniform')")
    try:
        values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter=",", ndmin=2)
    except (ValueError, OSError) as exc:
        raise ValidationError(f"{path}: cannot read commands ({str(exc)[:120]})") from None
    values = np.asarray(values, np.float32)
    if not (values.ndim == 2 and values.shape[1] == 3) and not (values.ndim == 3 and values.shape[1:] == (length, 3)):
        raise ValidationError(f"{path}: commands must be (n, 3) or (n, {length}, 3), got {values.shape}")
    if len(values) == 0 or not np.isfinite(values).all():
        raise ValidationError(f"{path}: commands are empty or not finite")
    return values


def generate_rollouts(checkpoint: str | Path, out: str | Path, *, num_trajectories: int = 10000,
                      length: int = 500, commands: str | Path | np.ndarray = "uniform", device: str = "cpu",
                      batch_size: int = 512, seed: int = 0, overwrite: bool = False,
                      progress: Callable[[int], Any] | None = None) -> int:
    """Write ``num_trajectories`` rollouts of ``length`` frames; returns the number of frames written.

    ``commands="uniform"`` draws one constant command per trajectory uniformly from the range of the
    training data (stored in the checkpoint). ``progress(n)`` is called after each batch.
    """
    if num_trajectories < 1 or length < 2 or batch_size < 1:
        raise ValidationError("num_trajectories >= 1, length >= 2 and batch_size >= 1 are required")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValidationError("device 'cuda' requested but CUDA is not available")
    model, payload = load_model(checkpoint, device=dev)
    joints = list(payload["joint_names"])
    j = len(joints)
    if isinstance(commands, np.ndarray):
        table = commands.astype(np.float32)
    elif str(commands) == "uniform":
        lo, hi = np.asarray(payload.get("command_range") or [
            (model.command_mean - 2 * model.command_std).tolist(),
            (model.command_mean + 2 * model.command_std).tolist()], np.float32)
        table = np.random.default_rng(seed).uniform(lo, hi, size=(num_trajectories, 3)).astype(np.float32)
    else:
        table = load_commands(commands, length)
    start = standing_frame(model, payload["robot"], joints).to(dev)
    dt = 1.0 / float(payload["fps"])
    vel = command_indices(j)
    store = md.create(str(out), "cmg_rollout", robot=payload["robot"], fps=float(payload["fps"]),
                      overwrite=overwrite, attrs={"cmg": {"checkpoint": str(checkpoint), "seed": seed,
                                                          "commands": "uniform" if isinstance(commands, str)
                                                          and commands == "uniform" else "file"}})
    written = 0
    try:
        for first in range(0, num_trajectories, batch_size):
            n = min(batch_size, num_trajectories - first)
            rows = np.arange(first, first + n) % len(table)
            cmd = torch.from_numpy(table[rows]).to(dev)
            cmd = cmd.unsqueeze(1).expand(n, length, 3) if cmd.ndim == 2 else cmd
            frames = model.rollout(start.expand(n, -1), cmd[:, :-1])  # (n, length, D)
            pos, yaw = _integrate(frames, vel, dt, j)
            batch = _frame_fields(frames, cmd, pos, yaw, j)
            base = store["frames"].num_rows
            store["frames"].append(batch)
            store["trajectories"].append({
                "traj_index": np.arange(first, first + n, dtype=np.int64),
                "start": base + np.arange(n, dtype=np.int64) * length,
                "end": base + np.arange(1, n + 1, dtype=np.int64) * length,
                "seed": np.full(n, seed, np.int64), "model": np.full(n, str(checkpoint), dtype=object)})
            written += n * length
            if progress is not None:
                progress(n)
    finally:
        store.close()
    return written


def _integrate(frames: torch.Tensor, vel: list[int], dt: float, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    n, length, _ = frames.shape
    pos = torch.zeros(n, length, 3, device=frames.device)
    yaw = torch.zeros(n, length, device=frames.device)
    for t in range(1, length):
        pos[:, t], yaw[:, t] = integrate_root(pos[:, t - 1], yaw[:, t - 1], frames[:, t - 1], frames[:, t], vel, dt)
    pos[..., 2] = frames[..., 2 * j]
    return pos, yaw


def _frame_fields(frames: torch.Tensor, cmd: torch.Tensor, pos: torch.Tensor, yaw: torch.Tensor, j: int
                  ) -> dict[str, np.ndarray]:
    f = frames.reshape(-1, frames.shape[-1]).cpu().numpy()
    root = f[:, 2 * j:]
    return {"dof_pos": f[:, :j], "dof_vel": f[:, j:2 * j], "commands": cmd.reshape(-1, 3).cpu().numpy(),
            "root_height": root[:, 0], "root_roll_pitch": root[:, 1:3], "root_lin_vel": root[:, 3:6],
            "root_yaw_rate": root[:, 6], "root_pos": pos.reshape(-1, 3).cpu().numpy(),
            "root_yaw": yaw.reshape(-1).cpu().numpy()}
