"""CMGMotionGenerator: the seed's reference-motion interface for parallel envs, with its bugs fixed.

Two modes share one per-env state (the frame each env returns next, its command, its integrated root):

- ``pregenerated``: each env holds ``preload_duration`` frames generated in one batched rollout and plays
  them back; an env that reaches the end is *extended* from its last frame (the original wrapped to
  frame 0, a jump), and a command update regenerates that env's frames from the one it is at, ramping
  the command, instead of cutting.
- ``realtime``: one batched model step per :meth:`get_motion` with the current, linearly ramped command;
  no per-env Python loop, no ``.item()``; a tensor ring buffer keeps each env's last ``buffer_size``
  frames (:meth:`get_history`; pregenerated mode reads them from its block). The original generated
  ahead into per-env deques and had to clear them on every command update.

``reset(env_ids, init_motion=...)`` starts from the robot's actual state (TWIST_CMG started every
rollout from the data's first frame: a 0.75 rad hip mismatch, tracking reward ~0). Per-env resets and
command updates touch only the given envs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from mimicdata_trainers.cmg.checkpoint import CheckpointError, load_model
from mimicdata_trainers.cmg.features import NUM_ROOT, command_indices
from mimicdata_trainers.cmg.model import CMGModel
from mimicdata_trainers.cmg.smoother import CommandSmoother, check_rows, env_index

from mimicdata.errors import ValidationError

MODES = ("pregenerated", "realtime")


def _device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValidationError(f"device {str(device)!r} requested but CUDA is not available; use device='cpu'")
    return dev


def standing_frame(model: CMGModel, robot: str, joint_names: list[str]) -> torch.Tensor:
    """[1, D]: the robot description's standing pose, zero velocities, the training data's mean height."""
    from mimicdata.schema import load_robot

    j = len(joint_names)
    frame = torch.zeros_like(model.frame_mean)
    frame[:j] = model.frame_mean[:j]
    frame[2 * j] = model.frame_mean[2 * j]
    try:
        pose = load_robot(robot).doc.get("default_joint_pos", {})
    except ValueError:  # a robot without a shipped description: the mean pose
        pose = {}
    for i, name in enumerate(joint_names):
        if name in pose:
            frame[i] = float(pose[name])
    return frame.unsqueeze(0)


def integrate_root(pos: torch.Tensor, yaw: torch.Tensor, prev: torch.Tensor, frame: torch.Tensor,
                   vel_cols: list[int], dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    """World (x, y) and yaw one frame on: the heading-frame velocities of ``prev`` and ``frame``
    averaged (trapezoid), turned by the mid-step heading and shortened from arc to chord. Returns
    ``(pos [n, 3], yaw [n])``; z is left as it was (the caller sets it to the frame's root height)."""
    vx, vy, wz = vel_cols
    rate = 0.5 * (prev[:, wz] + frame[:, wz])
    mid = yaw + 0.5 * rate * dt
    ux, uy = 0.5 * (prev[:, vx] + frame[:, vx]), 0.5 * (prev[:, vy] + frame[:, vy])
    chord = torch.sinc(rate * dt / (2 * math.pi)) * dt  # arc -> chord: exact for constant speed and turn rate
    step = torch.stack([mid.cos() * ux - mid.sin() * uy, mid.sin() * ux + mid.cos() * uy], 1) * chord.unsqueeze(1)
    return torch.cat([pos[:, :2] + step, pos[:, 2:]], 1), yaw + rate * dt


class CMGMotionGenerator:
    """Reference motion for ``num_envs`` envs from a CMG checkpoint (statistics included)."""

    def __init__(self, model_path: str | Path, data_path: str | Path | None = None, num_envs: int = 4096,
                 device: str | torch.device = "cuda", mode: str = "pregenerated", preload_duration: int = 500,
                 buffer_size: int = 100, *, robot: str | None = None, command_ramp_steps: int = 25,
                 sync_timing: bool = False) -> None:
        if mode not in MODES:
            raise ValidationError(f"mode must be one of {MODES}, got {mode!r}")
        if num_envs < 1 or preload_duration < 2 or buffer_size < 1:
            raise ValidationError("num_envs >= 1, preload_duration >= 2 and buffer_size >= 1 are required")
        self.device = _device(device)
        self.model, self.checkpoint = load_model(model_path, robot, self.device)
        if data_path is not None:  # the statistics live in the checkpoint; a store given here must match it
            self._check_data(data_path)
        self.robot = self.checkpoint["robot"]
        self.joint_names = list(self.checkpoint["joint_names"])
        self.num_joints = len(self.joint_names)
        self.frame_dim = self.model.config.frame_dim
        self.dt = 1.0 / float(self.checkpoint["fps"])
        self.num_envs, self.mode = num_envs, mode
        self.preload_duration, self.buffer_size = preload_duration, buffer_size
        self.sync_timing = sync_timing
        self.default_frame = standing_frame(self.model, self.robot, self.joint_names)
        n, d, dev = num_envs, self.frame_dim, self.device
        self.smoother = CommandSmoother(n, command_ramp_steps, dev)
        self.current = self.default_frame.expand(n, d).clone()  # the frame each env returns next (realtime)
        self.last = self.current.clone()                         # the frame each env returned last
        self.root_pos = torch.zeros(n, 3, device=dev)
        self.root_yaw = torch.zeros(n, device=dev)
        self.fresh = torch.ones(n, dtype=torch.bool, device=dev)
        self.history: torch.Tensor | None = None  # realtime ring of returned frames [N, buffer_size, D]
        self.history_ptr = torch.zeros(n, dtype=torch.long, device=dev)
        self.buffer: torch.Tensor | None = None
        self.index = torch.zeros(n, dtype=torch.long, device=dev)
        self.block_step0 = torch.zeros(n, dtype=torch.long, device=dev)
        self._times: list[float] = []
        self.frames_generated = 0
        self._vel = command_indices(self.num_joints)
        self.smoother.reset(torch.zeros(n, 3, device=dev))
        if mode == "realtime":
            self._new_ring(self.default_frame.expand(n, d))
        # every env stands in the default pose; a pregenerated block is rolled out on first use, not here



    # ------------------------------------------------------------------ set-up helpers
    def _check_data(self, data_path: str | Path) -> None:
        import mimicdata as md

        with md.open(data_path) as store:
            names = list(store.meta.get("robot", {}).get("joint_names", []))
        if names != list(self.checkpoint["joint_names"]):
            raise CheckpointError(f"{data_path}: its robot's joints differ from the checkpoint's "
                                  f"({self.checkpoint['robot']})")

    def _full_frames(self, init: Any, rows: int) -> torch.Tensor:
        t = torch.as_tensor(init, dtype=torch.float32, device=self.device)
        if t.ndim == 2 and t.shape == (rows, 2 * self.num_joints):
            root = self.default_frame[:, 2 * self.num_joints:].expand(rows, NUM_ROOT)
            t = torch.cat([t, root], dim=1)
        if tuple(t.shape) != (rows, self.frame_dim):
            raise ValidationError(f"init_motion must have shape [{rows}, {2 * self.num_joints}] (joint pos + vel) "
                                  f"or [{rows}, {self.frame_dim}] (full frame), got {list(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValidationError("init_motion has non-finite values")
        return t

    def _timed_rollout(self, start: torch.Tensor, env_ids: torch.Tensor | None, steps: int,
                       out: torch.Tensor) -> None:
        """Fill out[:, 0] = start, out[:, t+1] = model(out[:, t], command_t) with the envs' ramps."""
        t0 = time.perf_counter()
        with torch.no_grad():
            commands = self.smoother.preview(steps, env_ids)
            out[:, 0] = start
            for t in range(steps):
                out[:, t + 1] = self.model(out[:, t], commands[:, t])
        self._record(t0, out.shape[0] * steps)

    def _record(self, t0: float, frames: int) -> None:
        if self.sync_timing and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._times.append(time.perf_counter() - t0)
        self.frames_generated += frames

    def _sel(self, ids: torch.Tensor | None) -> slice | torch.Tensor:
        return slice(None) if ids is None else ids

    def _rows(self, ids: torch.Tensor | None) -> int:
        return self.num_envs if ids is None else int(ids.numel())

    # ------------------------------------------------------------------ pregenerated buffers
    def _regenerate(self, ids: torch.Tensor | None, start: torch.Tensor) -> None:
        """Give the envs a new block of frames beginning at ``start`` (played next), with the commands
        their ramps give from the smoother's present state on (the smoother must be synced to ``start``)."""
        length, sel = self.preload_duration, self._sel(ids)
        if self.buffer is None:
            self.buffer = torch.empty(self.num_envs, length, self.frame_dim, device=self.device)
            if ids is not None:  # the other envs need a block too
                self._regenerate(None, self.current.clone())
        if ids is None:  # in place: no second [N, L, D] block at 4096 x 500
            self._timed_rollout(start, None, length - 1, self.buffer)
        else:
            block = torch.empty(ids.numel(), length, self.frame_dim, device=self.device)
            self._timed_rollout(start, ids, length - 1, block)
            self.buffer[ids] = block
        self.block_step0[sel] = self.smoother.step[sel]
        self.index[sel] = 0

    def _sync_smoother(self, ids: torch.Tensor | None) -> None:
        """Bring the smoother of the given envs to the frame they play next (pregenerated mode keeps it
        at the block start, since the block's commands were laid out in advance)."""
        sel, sm = self._sel(ids), self.smoother
        n = max(sm.interpolation_steps, 1)
        step = torch.clamp(self.block_step0[sel] + self.index[sel], max=n)
        sm.step[sel] = step
        frac = (step.to(torch.float32) / n).unsqueeze(-1)
        sm.current[sel] = sm.start[sel] + (sm.target[sel] - sm.start[sel]) * frac

    def _next_frames(self, ids: torch.Tensor | None) -> torch.Tensor:
        """The frame each env returns next (pregenerated), extending envs that reached their end."""
        if self.buffer is None:
            self._regenerate(None, self.current.clone())
        idx = self.index[self._sel(ids)]
        ended = idx >= self.preload_duration
        if bool(ended.any()):  # one host sync per call; realtime mode has none
            which = ids[ended] if ids is not None else ended.nonzero().squeeze(1)
            self.index[which] = self.preload_duration - 1  # continue from the last frame, already played
            self._sync_smoother(which)
            self._regenerate(which, self.buffer[which, -1])
            # the last frame was already played: drop it from the new block
            self.index[which] = 1
            idx = self.index[self._sel(ids)]
        rows = torch.arange(self.num_envs, device=self.device) if ids is None else ids
        return self.buffer[rows, idx]

    # ------------------------------------------------------------------ public API
    def reset(self, env_ids: Any = None, init_motion: Any = None, commands: Any = None) -> None:
        """Restart the given envs (all by default) from ``init_motion`` [n, 58 or frame_dim] (the robot's
        actual joint state; default: the standing pose) with ``commands`` [n, 3] (default: unchanged)."""
        ids = env_index(env_ids, self.num_envs, self.device)
        rows, sel = self._rows(ids), self._sel(ids)
        start = (self.default_frame.expand(rows, self.frame_dim) if init_motion is None
                 else self._full_frames(init_motion, rows))
        if commands is not None:
            cmd = check_rows("commands", commands, rows, 3, self.device)
            if not bool(torch.isfinite(cmd).all()):
                raise ValidationError("commands have non-finite values")
            self.smoother.reset(cmd, ids)
        else:
            self.smoother.reset(self.smoother.target[sel], ids)
        self.root_pos[sel] = 0.0
        self.root_yaw[sel] = 0.0
        self.fresh[sel] = True
        self.history_ptr[sel] = 0
        if self.history is not None:
            self.history[sel] = start.unsqueeze(1)
        self.last[sel] = start
        if self.mode == "pregenerated":
            self._regenerate(ids, start)
        else:
            self.current[sel] = start

    def get_motion(self, env_ids: Any = None, robot: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dof_pos, dof_vel)`` [n, J] of the given envs' current frame; then those envs advance one frame.

        ``robot="g1_23dof"`` selects that robot's joints (a TWIST-style 23-DoF consumer).
        """
        ids = env_index(env_ids, self.num_envs, self.device)
        sel = self._sel(ids)
        if self.mode == "pregenerated":
            frame = self._next_frames(ids)
            self.index[sel] += 1
        else:
            frame = self.current[sel].clone()  # a view for sel = all: the step below overwrites it
            t0 = time.perf_counter()
            with torch.no_grad():
                self.current[sel] = self.model(frame, self.smoother.get_current(ids))
            self._record(t0, frame.shape[0])
        self._integrate_root(sel, frame)
        if self.history is not None:
            ptr = self.history_ptr[sel]
            rows = torch.arange(self.num_envs, device=self.device) if ids is None else ids
            self.history[rows, ptr % self.buffer_size] = frame
            self.history_ptr[sel] = ptr + 1
        self.last[sel] = frame
        j = self.num_joints
        pos, vel = frame[:, :j], frame[:, j:2 * j]
        if robot is not None:
            cols = self.joint_columns(robot)
            pos, vel = pos[:, cols], vel[:, cols]
        return pos, vel

    def _integrate_root(self, sel: slice | torch.Tensor, frame: torch.Tensor) -> None:
        fresh = self.fresh[sel]
        pos, yaw = integrate_root(self.root_pos[sel], self.root_yaw[sel], self.last[sel], frame, self._vel, self.dt)
        pos[:, 2] = frame[:, 2 * self.num_joints]
        self.root_pos[sel] = torch.where(fresh.unsqueeze(1), torch.cat([self.root_pos[sel][:, :2], pos[:, 2:]], 1),
                                         pos)
        self.root_yaw[sel] = torch.where(fresh, self.root_yaw[sel], yaw)
        self.fresh[sel] = False

    def get_root_state(self, env_ids: Any = None) -> dict[str, torch.Tensor]:
        """Root state of the frame each env returned last: height, roll_pitch, lin_vel (heading frame),
        yaw_rate, and the integrated world pos [n, 3] (z = height) and yaw."""
        sel = self._sel(env_index(env_ids, self.num_envs, self.device))
        root = self.last[sel][:, 2 * self.num_joints:]
        return {"height": root[:, 0], "roll_pitch": root[:, 1:3], "lin_vel": root[:, 3:6], "yaw_rate": root[:, 6],
                "pos": self.root_pos[sel], "yaw": self.root_yaw[sel]}

    def get_history(self, env_ids: Any = None, frames: int | None = None) -> torch.Tensor:
        """The last ``frames`` (default buffer_size) returned frames [n, frames, D], oldest first; before
        that many were returned, the oldest available repeats. Realtime mode keeps them in a tensor
        ring buffer; pregenerated mode reads its block (no second copy of 4096 x 100 frames), which
        reaches back to where the env's block began (its last reset, command update or extension)."""
        frames = self.buffer_size if frames is None else frames
        if not 1 <= frames <= self.buffer_size:
            raise ValidationError(f"frames must lie in [1, {self.buffer_size}]")
        ids = env_index(env_ids, self.num_envs, self.device)
        rows = (torch.arange(self.num_envs, device=self.device) if ids is None else ids).unsqueeze(1)
        offs = torch.arange(-frames, 0, device=self.device)
        if self.history is None:
            if self.buffer is None:
                self._next_frames(None)
            assert self.buffer is not None
            idx = self.index[self._sel(ids)].unsqueeze(1)
            return self.buffer[rows, torch.clamp(idx + offs, min=0)]
        ptr = self.history_ptr[self._sel(ids)]
        slots = torch.clamp(ptr.unsqueeze(1) + offs, min=0) % self.buffer_size
        return self.history[rows, slots]

    def _new_ring(self, fill: torch.Tensor) -> None:
        self.history = fill.unsqueeze(1).repeat(1, self.buffer_size, 1)
        self.history_ptr.zero_()

    def update_commands(self, commands: Any, env_ids: Any = None) -> None:
        """New velocity commands [n, 3] for the given envs, reached by a linear ramp of
        ``command_ramp_steps`` frames from the command in force; other envs are untouched."""
        ids = env_index(env_ids, self.num_envs, self.device)
        cmd = check_rows("commands", commands, self._rows(ids), 3, self.device)
        if not bool(torch.isfinite(cmd).all()):
            raise ValidationError("commands have non-finite values")
        if self.mode == "pregenerated":
            nxt = self._next_frames(ids)  # the frames already played stay as they are
            self._sync_smoother(ids)
            self.smoother.set_target(cmd, ids)
            self._regenerate(ids, nxt.clone())
        else:
            self.smoother.set_target(cmd, ids)

    def switch_mode(self, new_mode: str) -> None:
        """Switch between 'pregenerated' and 'realtime'; every env continues from the frame it is at."""
        if new_mode not in MODES:
            raise ValidationError(f"mode must be one of {MODES}, got {new_mode!r}")
        if new_mode == self.mode:
            return
        if new_mode == "realtime":
            self.current = self._next_frames(None).clone() if self.buffer is not None else self.current
            self._sync_smoother(None)
            self.buffer = None  # free the [N, L, D] block
            self._new_ring(self.last)
            self.mode = new_mode
        else:
            self.history = None  # pregenerated history is read from the block
            self.mode = new_mode
            self._regenerate(None, self.current.clone())

    def joint_columns(self, robot: str) -> list[int]:
        """Columns of ``robot``'s joints (e.g. ``g1_23dof``) within this generator's joints."""
        from mimicdata.schema import load_robot

        names = load_robot(robot).joint_names
        missing = [n for n in names if n not in self.joint_names]
        if missing:
            raise ValidationError(f"robot {robot!r} has joints this generator does not produce: {missing}")
        return [self.joint_names.index(n) for n in names]

    def get_performance_stats(self) -> dict[str, float]:
        """Inference time per generation call (ms: mean, max, min), calls and frames generated."""
        times = self._times or [0.0]
        return {"mean_inference_ms": 1e3 * sum(times) / len(times), "max_inference_ms": 1e3 * max(times),
                "min_inference_ms": 1e3 * min(times), "calls": float(len(self._times)),
                "frames_generated": float(self.frames_generated)}
