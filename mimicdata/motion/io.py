"""One entry point for every motion format: pick the reader from the file, return clips."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mimicdata.motion.types import HumanMotion, MotionFormatError, reads_motion_file

SUFFIXES = (".bvh", ".npy", ".npz", ".csv")


@dataclass(frozen=True)
class ReadOptions:
    """Reader settings that the file itself may not carry.

    ``source_fps`` is needed for ``.npy`` position arrays and Unitree CSV (which store no rate);
    ``robot`` is the robot of robot-motion files (CSV, BeyondMimic, LocoMuJoCo).
    """

    unit: str = "auto"
    up_axis: str = "auto"
    source_fps: float | None = None
    robot: str = "g1_29dof"
    start: int = 0
    stop: int | None = None


@reads_motion_file
def detect_format(path: str | Path) -> str:
    """``bvh``, ``positions``, ``locomujoco``, ``beyondmimic`` or ``unitree_csv``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".bvh":
        return "bvh"
    if suffix == ".csv":
        return "unitree_csv"
    if suffix == ".npy":
        return "positions"
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = set(data.files)
        except (OSError, ValueError) as exc:
            raise MotionFormatError(path, f"not a readable .npz file: {exc}") from None
        if "body_pos_w" in keys:
            return "beyondmimic"
        if "xpos" in keys and "frequency" in keys:
            return "locomujoco"
        return "positions"
    raise MotionFormatError(path, f"unknown motion format {suffix!r}; supported: {', '.join(SUFFIXES)}")


def read_motion(path: str | Path, options: ReadOptions | None = None) -> list[HumanMotion]:
    """Read every clip in a motion file, converted to metres, Z-up and wxyz quaternions."""
    from mimicdata.motion import bvh, positions, robot_formats

    opts = options or ReadOptions()
    path = Path(path)
    if not path.is_file():
        raise MotionFormatError(path, "file not found")
    fmt = detect_format(path)
    if fmt == "bvh":
        clips = [bvh.read_bvh(path, unit=opts.unit, up_axis=opts.up_axis, start=opts.start, stop=opts.stop)]
        return clips
    if fmt == "positions":
        clips = [positions.read_positions(path, default_fps=opts.source_fps, up_axis=opts.up_axis,
                                          unit=opts.unit)]
    elif fmt == "beyondmimic":
        clips = [robot_formats.read_beyondmimic(path, robot=opts.robot)]
    elif fmt == "locomujoco":
        clips = robot_formats.read_locomujoco(path, robot=opts.robot)
    else:
        clips = [robot_formats.read_unitree_csv(path, fps=opts.source_fps or 30.0, robot=opts.robot)]
    if opts.start or opts.stop is not None:
        clips = [_select(c, opts.start, opts.stop) for c in clips]
    return clips


def _select(clip: HumanMotion, start: int, stop: int | None) -> HumanMotion:
    stop = clip.num_frames if stop is None else min(stop, clip.num_frames)
    if not 0 <= start < stop:
        raise MotionFormatError(clip.source, f"frame range [{start}, {stop}) is empty; the clip has "
                                f"{clip.num_frames} frames")
    return clip.slice(start, stop).validate()
