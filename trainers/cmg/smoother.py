"""CommandSmoother: a per-env linear ramp from the command in force to a new target.

The original overwrote its start with the current value at every step, which compounds into an
exponential approach that never arrives; here each env keeps the start of its ramp, so the target is
reached in exactly ``interpolation_steps`` calls of :meth:`get_current`, on a straight line.
"""

from __future__ import annotations

from typing import Any

import torch

from mimicdata.errors import ValidationError


def env_index(env_ids: Any, num_envs: int, device: torch.device) -> torch.Tensor | None:
    """``None`` (all envs) or a long tensor of env ids on ``device``; host-side ids are range-checked."""
    if env_ids is None:
        return None
    if isinstance(env_ids, torch.Tensor):
        ids = env_ids.to(device=device, dtype=torch.long).reshape(-1)
        if ids.device.type == "cpu" and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_envs):
            raise ValidationError(f"env_ids must lie in [0, {num_envs}); got {ids.min()}..{ids.max()}")
        return ids
    ids = torch.as_tensor(env_ids, dtype=torch.long).reshape(-1)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_envs):
        raise ValidationError(f"env_ids must lie in [0, {num_envs}); got {ids.min()}..{ids.max()}")
    return ids.to(device)


def check_rows(name: str, value: Any, rows: int, width: int, device: torch.device) -> torch.Tensor:
    """``value`` as a float32 (rows, width) tensor on ``device``, or one clear error."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.ndim == 1 and rows == 1 and t.shape[0] == width:
        t = t.unsqueeze(0)
    if tuple(t.shape) != (rows, width):
        raise ValidationError(f"{name} must have shape [{rows}, {width}], got {list(t.shape)}")
    return t


class CommandSmoother:
    """Linear ramps of (vx, vy, yaw rate) commands, one per env.

    ``set_target(target, env_ids)`` starts a ramp from each env's current command;
    ``get_current(env_ids)`` advances those envs one step and returns their commands.
    """

    def __init__(self, num_envs: int, interpolation_steps: int = 25, device: str | torch.device = "cpu",
                 command_dim: int = 3) -> None:
        if num_envs < 1 or interpolation_steps < 0:
            raise ValidationError("num_envs must be >= 1 and interpolation_steps >= 0")
        self.num_envs = num_envs
        self.interpolation_steps = int(interpolation_steps)
        self.device = torch.device(device)
        self.command_dim = command_dim
        zeros = torch.zeros(num_envs, command_dim, device=self.device)
        self.start, self.target, self.current = zeros.clone(), zeros.clone(), zeros.clone()
        self.step = torch.zeros(num_envs, dtype=torch.long, device=self.device)

    def _rows(self, ids: torch.Tensor | None) -> int:
        return self.num_envs if ids is None else int(ids.numel())

    def set_target(self, target: Any, env_ids: Any = None) -> None:
        """Ramp the given envs from their current command to ``target`` [n, 3]."""
        ids = env_index(env_ids, self.num_envs, self.device)
        target = check_rows("target", target, self._rows(ids), self.command_dim, self.device)
        sel = slice(None) if ids is None else ids
        self.start[sel] = self.current[sel]
        self.target[sel] = target
        self.step[sel] = 0
        if self.interpolation_steps == 0:
            self.current[sel] = target

    def reset(self, value: Any, env_ids: Any = None) -> None:
        """Set the given envs' command at once (no ramp), e.g. at an episode reset."""
        ids = env_index(env_ids, self.num_envs, self.device)
        value = check_rows("commands", value, self._rows(ids), self.command_dim, self.device)
        sel = slice(None) if ids is None else ids
        self.start[sel] = value
        self.target[sel] = value
        self.current[sel] = value
        self.step[sel] = self.interpolation_steps

    def get_current(self, env_ids: Any = None) -> torch.Tensor:
        """Advance the given envs one step along their ramps and return their commands [n, 3]."""
        ids = env_index(env_ids, self.num_envs, self.device)
        sel = slice(None) if ids is None else ids
        n = max(self.interpolation_steps, 1)
        step = torch.clamp(self.step[sel] + 1, max=n)
        self.step[sel] = step
        frac = (step.to(torch.float32) / n).unsqueeze(-1)
        value = self.start[sel] + (self.target[sel] - self.start[sel]) * frac
        self.current[sel] = value
        return value

    def preview(self, steps: int, env_ids: Any = None) -> torch.Tensor:
        """The next ``steps`` commands [n, steps, 3] the given envs would get, without advancing them."""
        ids = env_index(env_ids, self.num_envs, self.device)
        sel = slice(None) if ids is None else ids
        n = max(self.interpolation_steps, 1)
        ahead = torch.arange(1, steps + 1, device=self.device)
        step = torch.clamp(self.step[sel].unsqueeze(-1) + ahead, max=n)
        frac = (step.to(torch.float32) / n).unsqueeze(-1)
        start, target = self.start[sel].unsqueeze(1), self.target[sel].unsqueeze(1)
        return start + (target - start) * frac
