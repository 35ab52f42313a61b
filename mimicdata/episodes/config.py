"""What a recording session declares (rate, robot, features) and the checks made when resuming one.

The declaration is kept in the store's user attributes under ``"recording"``; reopening a store for
recording compares it with what the caller declares and refuses any difference, naming each one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mimicdata.errors import SchemaError

RECORDING_ATTR = "recording"
INFO_STREAM = "episode_info"      # per-episode statistics and user metadata (a custom stream)
STATS_ATTR = "dataset_stats"      # dataset statistics, refreshed after every committed episode
OPTIONAL_FRAME_FIELDS = ("next.reward", "next.done")


def _names(spec: int | Sequence[str], what: str) -> tuple[int, list[str] | None]:
    if isinstance(spec, int):
        if spec < 1:
            raise SchemaError(f"{what}: size must be >= 1, got {spec}")
        return spec, None
    names = [str(n) for n in spec]
    if not names or len(set(names)) != len(names):
        raise SchemaError(f"{what}: names must be non-empty and unique, got {names}")
    return len(names), names


@dataclass(frozen=True)
class RecordingConfig:
    """Rate, robot and features of a recording; frames must match it."""

    fps: float
    robot: str | None
    state_dim: int
    action_dim: int
    state_names: list[str] | None
    action_names: list[str] | None
    cameras: dict[str, tuple[int, int]]

    @classmethod
    def declare(cls, *, fps: float, robot: str | None, state: int | Sequence[str], action: int | Sequence[str],
                cameras: Mapping[str, Sequence[int]] | None) -> RecordingConfig:
        if not fps or fps <= 0:
            raise SchemaError(f"fps must be positive, got {fps}")
        s_dim, s_names = _names(state, "state")
        a_dim, a_names = _names(action, "action")
        cams: dict[str, tuple[int, int]] = {}
        for name, hw in (cameras or {}).items():
            if not name or "/" in name or "." in name:
                raise SchemaError(f"camera name {name!r}: use letters, digits and '_' (no '.' or '/')")
            if len(hw) not in (2, 3) or (len(hw) == 3 and hw[2] != 3) or min(hw[:2]) < 1:
                raise SchemaError(f"camera {name!r}: give (height, width) of RGB frames, got {tuple(hw)}")
            cams[name] = (int(hw[0]), int(hw[1]))
        if len(set(cams.values())) > 1:
            # The episodes schema stores every camera under one pair of free dims (height, width).
            raise SchemaError(f"cameras must share one image size in an episodes store, got {cams}")
        return cls(float(fps), robot, s_dim, a_dim, s_names, a_names, cams)

    def to_doc(self) -> dict[str, Any]:
        return {"fps": self.fps, "robot": self.robot, "state_dim": self.state_dim, "action_dim": self.action_dim,
                "state_names": self.state_names, "action_names": self.action_names,
                "cameras": {k: list(v) for k, v in self.cameras.items()}}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> RecordingConfig:
        try:
            return cls(float(doc["fps"]), doc.get("robot"), int(doc["state_dim"]), int(doc["action_dim"]),
                       doc.get("state_names"), doc.get("action_names"),
                       {k: (int(v[0]), int(v[1])) for k, v in (doc.get("cameras") or {}).items()})
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SchemaError(f"the store's 'recording' attributes are malformed ({exc!r})") from None

    def differences(self, declared: RecordingConfig) -> list[str]:
        """Human-readable differences between this (stored) config and a declared one."""
        out = []
        for key in ("fps", "robot", "state_dim", "action_dim", "state_names", "action_names", "cameras"):
            mine, theirs = getattr(self, key), getattr(declared, key)
            if key.endswith("_names") and theirs is None:
                continue  # not declaring names accepts the stored ones
            if mine != theirs:
                out.append(f"{key}: store has {mine!r}, recorder declares {theirs!r}")
        return out

    @property
    def image_fields(self) -> list[str]:
        return [f"image.{c}" for c in self.cameras]
