"""BVH reader: any hierarchy, any channel order, cm/m/mm, Y-up or Z-up.

The hierarchy is parsed with line numbers so a malformed file is reported as ``file:line``;
forward kinematics runs over all frames at once (one matrix product per joint).
End Sites become points named ``<parent>_end`` because rigs such as MocapBank have no toe
joint, only the ankle's end site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mimicdata.motion.rotations import euler_to_mat, mat_to_quat
from mimicdata.motion.types import (
    UNIT_SCALE,
    HumanMotion,
    MotionFormatError,
    detect_unit,
    detect_up_axis,
    reads_motion_file,
    rotations_to_z_up,
    to_z_up,
)

_CHANNELS = {"xposition", "yposition", "zposition", "xrotation", "yrotation", "zrotation"}


@dataclass
class BvhJoint:
    """One node of the hierarchy (a joint or an End Site)."""

    name: str
    parent: int
    offset: np.ndarray
    channels: list[str] = field(default_factory=list)
    is_end: bool = False
    line: int = 0


@dataclass
class BvhHeader:
    """The hierarchy and the MOTION header; enough for manifests without reading frame data."""

    joints: list[BvhJoint]
    num_frames: int
    frame_time: float
    data_line: int  # 1-based line number of the first frame

    @property
    def fps(self) -> float:
        """Frames per second; 1/frame_time snapped to a whole rate when the file rounded it
        (``Frame Time: 0.033333`` is 30 Hz, not 30.0003 Hz)."""
        raw = 1.0 / self.frame_time
        whole = round(raw)
        return float(whole) if whole and abs(raw - whole) / raw < 1e-4 else raw

    @property
    def num_channels(self) -> int:
        """Values per frame line."""
        return sum(len(j.channels) for j in self.joints)


class _Tokens:
    """Whitespace tokens with their 1-based line numbers, for error messages."""

    def __init__(self, path: Path, lines: list[str]) -> None:
        self.path = path
        self.items = [(tok, n + 1) for n, line in enumerate(lines) for tok in line.split()]
        self.pos = 0

    def peek(self) -> str | None:
        return self.items[self.pos][0] if self.pos < len(self.items) else None

    def line(self) -> int:
        if self.pos < len(self.items):
            return self.items[self.pos][1]
        return self.items[-1][1] if self.items else 1

    def next(self, what: str) -> str:
        if self.pos >= len(self.items):
            raise MotionFormatError(self.path, f"unexpected end of file, expected {what}", line=self.line())
        tok = self.items[self.pos][0]
        self.pos += 1
        return tok

    def expect(self, word: str) -> None:
        line = self.line()
        tok = self.next(repr(word))
        if tok.upper() != word.upper():
            raise MotionFormatError(self.path, f"expected {word!r}, found {tok!r}", line=line)

    def number(self, what: str) -> float:
        line = self.line()
        tok = self.next(what)
        try:
            return float(tok)
        except ValueError:
            raise MotionFormatError(self.path, f"expected a number for {what}, found {tok!r}",
                                    line=line) from None


@reads_motion_file
def read_bvh_header(path: str | Path) -> BvhHeader:
    """Parse the HIERARCHY and the MOTION header (frame count and frame time)."""
    path = Path(path)
    lines = _read_lines(path)
    header, _ = _parse_header(path, lines)
    return header


@reads_motion_file
def read_bvh(path: str | Path, *, unit: str = "auto", up_axis: str = "auto",
             start: int = 0, stop: int | None = None) -> HumanMotion:
    """Read a BVH file into a :class:`HumanMotion` (metres, Z-up, global positions and rotations).

    ``unit`` is ``"auto"`` (from the skeleton's height) or one of m/cm/mm/in; ``up_axis`` is
    ``"auto"`` (head above feet) or ``"y"``/``"z"``. ``start``/``stop`` select source frames.
    """
    path = Path(path)
    lines = _read_lines(path)
    header, data_start = _parse_header(path, lines)
    stop = header.num_frames if stop is None else min(stop, header.num_frames)
    if not 0 <= start < stop:
        raise MotionFormatError(path, f"frame range [{start}, {stop}) is empty; the file has "
                                f"{header.num_frames} frames")
    values = _parse_frames(path, lines, data_start, header, start, stop)
    if len(values) < 2:
        raise MotionFormatError(path, f"clip has {len(values)} frame(s); at least 2 are needed to compute "
                                "velocities")
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        frame = int(np.argmax(bad))
        raise MotionFormatError(path, "non-finite channel value (NaN/inf)", line=header.data_line + start + frame,
                                frame=start + frame)
    pos, mats = _forward_kinematics(header.joints, values)
    names = [j.name for j in header.joints]
    if up_axis == "auto":
        try:
            up_axis = detect_up_axis(pos, names)
        except ValueError as exc:
            raise MotionFormatError(path, str(exc)) from None
    if unit == "auto":
        axis = 1 if up_axis == "y" else 2
        height = float(np.percentile(pos[..., axis].max(1) - pos[..., axis].min(1), 95))
        unit = detect_unit(height)
    if unit not in UNIT_SCALE:
        raise MotionFormatError(path, f"unknown unit {unit!r}; use one of {sorted(UNIT_SCALE)}")
    positions = to_z_up(pos, up_axis) * UNIT_SCALE[unit]
    rotations = mat_to_quat(rotations_to_z_up(mats, up_axis))
    return HumanMotion(
        names=names, positions=positions, rotations=rotations, fps=header.fps,
        parents=[j.parent for j in header.joints], source=str(path), name=path.stem,
        first_frame=start,
        source_convention={"format": "bvh", "up_axis": up_axis, "unit": unit,
                           "rotation_orders": sorted({_rot_order(j.channels) for j in header.joints
                                                      if _rot_order(j.channels)})},
    ).validate()


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise MotionFormatError(path, "file not found") from None


def _parse_header(path: Path, lines: list[str]) -> tuple[BvhHeader, int]:
    motion_idx = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    if motion_idx is None:
        raise MotionFormatError(path, "no MOTION section", line=len(lines))
    toks = _Tokens(path, lines[:motion_idx])
    toks.expect("HIERARCHY")
    joints: list[BvhJoint] = []
    line = toks.line()
    kind = toks.next("ROOT")
    if kind.upper() != "ROOT":
        raise MotionFormatError(path, f"expected 'ROOT', found {kind!r}", line=line)
    _parse_joint(toks, joints, parent=-1)
    if toks.peek() is not None:
        raise MotionFormatError(path, f"unexpected {toks.peek()!r} after the root joint "
                                "(one ROOT per file is supported)", line=toks.line())
    if not joints[0].channels:
        raise MotionFormatError(path, "the root joint has no channels", line=joints[0].line)
    num_frames, frame_time, data_start = _parse_motion_header(path, lines, motion_idx)
    header = BvhHeader(joints=joints, num_frames=num_frames, frame_time=frame_time,
                       data_line=data_start + 1)
    return header, data_start


def _parse_joint(toks: _Tokens, joints: list[BvhJoint], parent: int) -> None:
    line = toks.line()
    name = toks.next("joint name")
    if name == "{":
        raise MotionFormatError(toks.path, "joint has no name", line=line)
    index = len(joints)
    joint = BvhJoint(name=name, parent=parent, offset=np.zeros(3), line=line)
    joints.append(joint)
    toks.expect("{")
    toks.expect("OFFSET")
    joint.offset = np.array([toks.number("OFFSET x"), toks.number("OFFSET y"), toks.number("OFFSET z")])
    if (toks.peek() or "").upper() == "CHANNELS":
        toks.next("CHANNELS")
        line = toks.line()
        count_tok = toks.next("channel count")
        if not count_tok.isdigit():
            raise MotionFormatError(toks.path, f"channel count must be an integer, found {count_tok!r}",
                                    line=line)
        for _ in range(int(count_tok)):
            line = toks.line()
            chan = toks.next("channel name")
            if chan.lower() not in _CHANNELS:
                raise MotionFormatError(toks.path, f"unknown channel {chan!r} in joint {name!r}", line=line)
            joint.channels.append(chan.lower())
    while True:
        line = toks.line()
        tok = toks.next("'JOINT', 'End Site' or '}'")
        upper = tok.upper()
        if upper == "}":
            return
        if upper == "JOINT":
            _parse_joint(toks, joints, parent=index)
        elif upper == "END":
            toks.expect("Site")
            toks.expect("{")
            toks.expect("OFFSET")
            offset = np.array([toks.number("OFFSET x"), toks.number("OFFSET y"), toks.number("OFFSET z")])
            toks.expect("}")
            taken = {j.name for j in joints}
            end_name = f"{name}_end"
            k = 1
            while end_name in taken:
                k += 1
                end_name = f"{name}_end{k}"
            joints.append(BvhJoint(name=end_name, parent=index, offset=offset, is_end=True, line=line))
        else:
            raise MotionFormatError(toks.path, f"expected 'JOINT', 'End Site' or '}}' in joint {name!r}, "
                                    f"found {tok!r}", line=line)


def _parse_motion_header(path: Path, lines: list[str], motion_idx: int) -> tuple[int, float, int]:
    i = motion_idx + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    m = re.fullmatch(r"\s*Frames:\s*(\S+)\s*", lines[i]) if i < len(lines) else None
    if m is None or not m.group(1).isdigit():
        raise MotionFormatError(path, "expected 'Frames: <count>' after MOTION", line=i + 1)
    num_frames = int(m.group(1))
    i += 1
    m = re.fullmatch(r"\s*Frame\s+Time:\s*(\S+)\s*", lines[i]) if i < len(lines) else None
    try:
        frame_time = float(m.group(1)) if m else float("nan")
    except ValueError:
        frame_time = float("nan")
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise MotionFormatError(path, "expected 'Frame Time: <seconds>' (a positive number)", line=i + 1)
    return num_frames, frame_time, i + 1


def _parse_frames(path: Path, lines: list[str], data_start: int, header: BvhHeader, start: int,
                  stop: int) -> np.ndarray:
    """Frames [start, stop) as floats; every frame line is still checked for its value count."""
    rows = lines[data_start:]
    while rows and not rows[-1].strip():
        rows.pop()
    nchan = header.num_channels
    if len(rows) < header.num_frames:
        raise MotionFormatError(path, f"header declares {header.num_frames} frames but only {len(rows)} "
                                "frame lines follow", line=data_start + len(rows))
    if len(rows) > header.num_frames:
        raise MotionFormatError(path, f"header declares {header.num_frames} frames but {len(rows)} frame "
                                "lines follow", line=data_start + header.num_frames + 1)
    counts = np.fromiter((len(r.split()) for r in rows), dtype=np.int64, count=len(rows))
    wrong = np.flatnonzero(counts != nchan)
    if wrong.size:
        k = int(wrong[0])
        raise MotionFormatError(path, f"frame has {counts[k]} values, the hierarchy declares {nchan} "
                                "channels", line=data_start + k + 1, frame=k)
    rows = rows[start:stop]
    try:
        return np.array(" ".join(rows).split(), dtype=np.float64).reshape(len(rows), nchan)
    except ValueError:
        for k, row in enumerate(rows):
            try:
                np.array(row.split(), dtype=np.float64)
            except ValueError:
                raise MotionFormatError(path, "non-numeric value in frame data", line=data_start + start + k + 1,
                                        frame=start + k) from None
        raise


def _rot_order(channels: list[str]) -> str:
    return "".join(c[0].upper() for c in channels if c.endswith("rotation"))


def _forward_kinematics(joints: list[BvhJoint], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global positions (T, J, 3) and orientation matrices (T, J, 3, 3) in file units and axes."""
    num = values.shape[0]
    pos = np.zeros((num, len(joints), 3))
    mats = np.zeros((num, len(joints), 3, 3))
    col = 0
    for j, joint in enumerate(joints):
        chans = joint.channels
        block = values[:, col:col + len(chans)]
        col += len(chans)
        local_t = np.broadcast_to(joint.offset, (num, 3)).copy()
        rot_idx = [k for k, c in enumerate(chans) if c.endswith("rotation")]
        for k, c in enumerate(chans):
            if c.endswith("position"):
                # Position channels replace the OFFSET component (the common exporter convention).
                local_t[:, "xyz".index(c[0])] = block[:, k]
        if rot_idx:
            local_r = euler_to_mat(np.deg2rad(block[:, rot_idx]), _rot_order(chans))
        else:
            local_r = np.broadcast_to(np.eye(3), (num, 3, 3))
        if joint.parent < 0:
            pos[:, j] = local_t
            mats[:, j] = local_r
        else:
            pr = mats[:, joint.parent]
            pos[:, j] = pos[:, joint.parent] + np.einsum("tij,tj->ti", pr, local_t)
            mats[:, j] = pr @ local_r
    return pos, mats
