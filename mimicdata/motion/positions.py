"""Arrays of global joint positions: ``.npy`` (T, J, 3) with a names list, or ``.npz``.

A ``.npy`` file carries no names or frame rate, so they come from arguments or from files
beside it: names from ``<stem>.names.txt``, ``<stem>_joint_names.txt`` or ``joint_names.txt``
(one per line), the frame rate from ``<stem>.json`` (``{"fps": 30}``). A ``.npz`` holds
``positions`` (or ``joint_positions``), ``names`` (or ``joint_names``) and ``fps``, and may
hold ``up_axis`` and ``unit``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mimicdata.motion.types import (
    UNIT_SCALE,
    HumanMotion,
    MotionFormatError,
    detect_unit,
    detect_up_axis,
    reads_motion_file,
    to_z_up,
)

_POS_KEYS = ("positions", "joint_positions", "global_positions")
_NAME_KEYS = ("names", "joint_names")
_FPS_KEYS = ("fps", "frequency", "framerate", "mocap_framerate")


@reads_motion_file
def read_positions(path: str | Path, *, names: list[str] | None = None, fps: float | None = None,
                   up_axis: str = "auto", unit: str = "auto", default_fps: float | None = None) -> HumanMotion:
    """Read global joint positions into a :class:`HumanMotion` (metres, Z-up).

    ``fps`` overrides the file's rate; ``default_fps`` is used only when the file (and its
    sidecar) has none.
    """
    path = Path(path)
    if not path.is_file():
        raise MotionFormatError(path, "file not found")
    if path.suffix == ".npy":
        try:
            pos = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise MotionFormatError(path, f"not a plain numeric .npy array: {exc}") from None
        names = names or _sidecar_names(path)
        fps = fps or _sidecar_fps(path)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            key = next((k for k in _POS_KEYS if k in data.files), None)
            if key is None:
                raise MotionFormatError(path, f"no positions array; expected one of {_POS_KEYS}, "
                                        f"found {data.files}")
            pos = data[key]
            name_key = next((k for k in _NAME_KEYS if k in data.files), None)
            names = names or ([str(n) for n in data[name_key]] if name_key else None)
            fps_key = next((k for k in _FPS_KEYS if k in data.files), None)
            fps = fps or (float(np.asarray(data[fps_key]).reshape(-1)[0]) if fps_key else None)
            if up_axis == "auto" and "up_axis" in data.files:
                up_axis = str(data["up_axis"])
            if unit == "auto" and "unit" in data.files:
                unit = str(data["unit"])
    else:
        raise MotionFormatError(path, "expected a .npy or .npz file of joint positions")
    fps = fps or default_fps
    if names is None:
        raise MotionFormatError(path, "joint names unknown: pass names, or put them one per line in "
                                f"{path.stem}.names.txt or joint_names.txt beside the file")
    if fps is None:
        raise MotionFormatError(path, f"frame rate unknown: pass fps (--source-fps) or write "
                                f'{{"fps": ...}} to {path.stem}.json beside the file')
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise MotionFormatError(path, f"positions must have shape (frames, joints, 3), got {pos.shape}")
    if pos.shape[1] != len(names):
        raise MotionFormatError(path, f"{pos.shape[1]} joints in the array but {len(names)} names")
    finite = np.isfinite(pos).all(axis=(1, 2))
    if up_axis == "auto":
        try:
            up_axis = detect_up_axis(pos[finite] if finite.any() else pos, list(names))
        except ValueError as exc:
            raise MotionFormatError(path, str(exc)) from None
    if unit == "auto":
        axis = 1 if up_axis == "y" else 2
        ok = pos[finite] if finite.any() else pos
        unit = detect_unit(float(np.percentile(ok[..., axis].max(1) - ok[..., axis].min(1), 95)))
    if unit not in UNIT_SCALE:
        raise MotionFormatError(path, f"unknown unit {unit!r}; use one of {sorted(UNIT_SCALE)}")
    return HumanMotion(
        names=[str(n) for n in names], positions=to_z_up(pos, up_axis) * UNIT_SCALE[unit], fps=float(fps),
        source=str(path), name=path.stem,
        source_convention={"format": "positions", "up_axis": up_axis, "unit": unit},
    ).validate()


def _sidecar_names(path: Path) -> list[str] | None:
    for cand in (path.with_suffix(".names.txt"), path.parent / f"{path.stem}_joint_names.txt",
                 path.parent / "joint_names.txt"):
        if cand.is_file():
            return cand.read_text().split()
    return None


def _sidecar_fps(path: Path) -> float | None:
    cand = path.with_suffix(".json")
    if not cand.is_file():
        return None
    try:
        value = json.loads(cand.read_text()).get("fps")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise MotionFormatError(cand, f"cannot read the frame rate: {exc}") from None
    return float(value) if value is not None else None
