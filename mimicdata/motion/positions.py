"""Arrays of global joint positions: ``.npy`` (T, J, 3) with a names list, or ``.npz``.

A ``.npy`` file carries no names or frame rate, so they come from arguments or from files
beside it: names from ``<stem>.names.txt``, ``<stem>_joint_names.txt`` or ``joint_names.txt``
(one per line), the frame rate from ``<stem>.json`` (``{"fps": 30}``). A ``.npz`` holds
``positions`` (or ``joint_positions``), ``names`` (or ``joint_names``) and ``fps``, and may
hold ``up_axis`` and ``unit``.

Two steps, kept apart: :func:`load_positions_file` is the file IO (what the file and its sidecars
say, nothing inferred); :func:`positions_to_motion` is pure maths on arrays (shape checks, up-axis
and unit inference, conversion to metres and Z-up), usable on positions from anywhere.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PositionsFile:
    """What a positions file (and its sidecars) says, as stored: None where it says nothing."""

    positions: np.ndarray
    names: list[str] | None = None
    fps: float | None = None
    up_axis: str | None = None
    unit: str | None = None


@reads_motion_file
def read_positions(path: str | Path, *, names: list[str] | None = None, fps: float | None = None,
                   up_axis: str = "auto", unit: str = "auto", default_fps: float | None = None) -> HumanMotion:
    """Read global joint positions into a :class:`HumanMotion` (metres, Z-up).

    ``fps`` overrides the file's rate; ``default_fps`` is used only when the file (and its
    sidecar) has none. ``up_axis`` / ``unit`` ``"auto"``: what the file says, else inferred.
    """
    path = Path(path)
    stored = load_positions_file(path)
    fps = fps or stored.fps or default_fps
    names = names or stored.names
    if names is None:
        raise MotionFormatError(path, "joint names unknown: pass names, or put them one per line in "
                                f"{path.stem}.names.txt or joint_names.txt beside the file")
    if fps is None:
        raise MotionFormatError(path, f"frame rate unknown: pass fps (--source-fps) or write "
                                f'{{"fps": ...}} to {path.stem}.json beside the file')
    if up_axis == "auto" and stored.up_axis:
        up_axis = stored.up_axis
    if unit == "auto" and stored.unit:
        unit = stored.unit
    return positions_to_motion(stored.positions, names, fps, up_axis=up_axis, unit=unit, source=path)


def load_positions_file(path: str | Path) -> PositionsFile:
    """The arrays of a ``.npy`` (plus sidecar names and fps) or ``.npz`` file; nothing inferred.

    Raises :class:`MotionFormatError` for a missing, unreadable, truncated or pickled file.
    """
    path = Path(path)
    if not path.is_file():
        raise MotionFormatError(path, "file not found")
    if path.suffix not in (".npy", ".npz"):
        raise MotionFormatError(path, "expected a .npy or .npz file of joint positions")
    try:
        if path.suffix == ".npy":
            return PositionsFile(np.load(path, allow_pickle=False), sidecar_names(path), sidecar_fps(path))
        with np.load(path, allow_pickle=False) as data:
            key = next((k for k in _POS_KEYS if k in data.files), None)
            if key is None:
                raise MotionFormatError(path, f"no positions array; expected one of {_POS_KEYS}, "
                                        f"found {data.files}")
            name_key = next((k for k in _NAME_KEYS if k in data.files), None)
            fps_key = next((k for k in _FPS_KEYS if k in data.files), None)
            fps = np.asarray(data[fps_key]).reshape(-1) if fps_key else None
            return PositionsFile(
                data[key], [str(n) for n in np.asarray(data[name_key]).reshape(-1)] if name_key else None,
                float(fps[0]) if fps is not None and fps.size else None,
                str(data["up_axis"]) if "up_axis" in data.files else None,
                str(data["unit"]) if "unit" in data.files else None)
    except MotionFormatError:
        raise
    except (ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise MotionFormatError(path, f"not a readable numeric {path.suffix} file: {exc}") from None


def positions_to_motion(positions: np.ndarray, names: list[str], fps: float, *, up_axis: str = "auto",
                        unit: str = "auto", source: str | Path = "<array>", name: str | None = None) -> HumanMotion:
    """Global joint positions ``(frames, joints, 3)`` as a :class:`HumanMotion` in metres, Z-up.

    ``up_axis`` (``"y"``, ``"z"`` or ``"auto"``: head above the feet) and ``unit`` (``"m"``,
    ``"cm"``, ``"mm"`` or ``"auto"``: from the skeleton's height along the up axis) are inferred
    from frames without NaNs. Errors name ``source``.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise MotionFormatError(source, f"positions must have shape (frames, joints, 3), got {pos.shape}")
    if pos.shape[1] != len(names):
        raise MotionFormatError(source, f"{pos.shape[1]} joints in the array but {len(names)} names")
    finite = np.isfinite(pos).all(axis=(1, 2))
    clean = pos[finite] if finite.any() else pos
    if up_axis == "auto":
        try:
            up_axis = detect_up_axis(clean, list(names))
        except ValueError as exc:
            raise MotionFormatError(source, str(exc)) from None
    if up_axis not in ("y", "z"):
        raise MotionFormatError(source, f"up axis must be 'y' or 'z', got {up_axis!r}")
    if unit == "auto":
        axis = 1 if up_axis == "y" else 2
        unit = detect_unit(float(np.percentile(clean[..., axis].max(1) - clean[..., axis].min(1), 95)))
    if unit not in UNIT_SCALE:
        raise MotionFormatError(source, f"unknown unit {unit!r}; use one of {sorted(UNIT_SCALE)}")
    return HumanMotion(
        names=[str(n) for n in names], positions=to_z_up(pos, up_axis) * UNIT_SCALE[unit], fps=float(fps),
        source=str(source), name=name or Path(str(source)).stem,
        source_convention={"format": "positions", "up_axis": up_axis, "unit": unit},
    ).validate()


def sidecar_names(path: Path) -> list[str] | None:
    """Joint names of a ``.npy`` from a text file beside it (one per line), if there is one."""
    for cand in (path.with_suffix(".names.txt"), path.parent / f"{path.stem}_joint_names.txt",
                 path.parent / "joint_names.txt"):
        if cand.is_file():
            return cand.read_text().split()
    return None


def sidecar_fps(path: Path) -> float | None:
    """Frame rate of a ``.npy`` from ``<stem>.json`` beside it (``{"fps": 30}``), if there is one."""
    cand = path.with_suffix(".json")
    if not cand.is_file():
        return None
    try:
        value = json.loads(cand.read_text()).get("fps")
        return float(value) if value is not None else None
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise MotionFormatError(cand, f"cannot read the frame rate: {exc}") from None
