"""The common form every motion reader produces: named global joint positions (and rotations).

Readers convert on the way in, so downstream code sees one convention only:
positions in metres, world frame Z-up (right-handed), quaternions scalar-first (w, x, y, z).
What the file used (up axis, unit, quaternion order) is kept in ``HumanMotion.source_convention``
so that a report can say what was converted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mimicdata.errors import MimicDataError, ValidationError

# Column vectors of a Y-up frame expressed in the Z-up frame: +90 deg about x (y -> z, z -> -y).
# Right-handedness is kept, so rotations stay proper rotations.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

UNIT_SCALE = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254}


class MotionFormatError(ValidationError):
    """A motion file cannot be read: names the file and, where known, the line or frame."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None,
                 frame: int | None = None) -> None:
        where = str(path)
        if line is not None:
            where += f":{line}"
        if frame is not None:
            where += f" (frame {frame})"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line
        self.frame = frame


# A damaged file surfaces deep inside numpy (ValueError, SyntaxError from the .npy header, SystemError on
# bad unicode), zipfile (BadZipFile, NotImplementedError), zlib, json or the parsers: any of them means
# "this file cannot be read", and the type and text are kept in the message for whoever debugs it.
_DAMAGE = Exception
F = TypeVar("F", bound=Callable[..., Any])


def reads_motion_file(reader: F) -> F:
    """Make a reader's damaged-input failures one :class:`MotionFormatError` naming the file.

    Truncated archives, flipped bytes and odd shapes surface deep inside numpy or zipfile as many
    different exceptions; the caller only needs to know which file is unreadable and why.
    """
    @functools.wraps(reader)
    def read(path: str | Path, *args: Any, **kwargs: Any) -> Any:
        try:
            return reader(path, *args, **kwargs)
        except MimicDataError:
            raise
        except _DAMAGE as exc:
            text = str(exc)
            text = text if len(text) <= 200 else text[:200] + "..."
            raise MotionFormatError(path, f"damaged or malformed file ({type(exc).__name__}: {text})") from None
    return read  # type: ignore[return-value]


@dataclass
class HumanMotion:
    """One clip of motion: global positions (T, J, 3) of named points, optional global rotations.

    ``parents[j]`` is the index of point j's parent (-1 for a root) when the source has a
    hierarchy (BVH, robot models); position clouds have ``parents=None``.
    """

    names: list[str]
    positions: np.ndarray
    fps: float
    rotations: np.ndarray | None = None
    parents: list[int] | None = None
    source: str = ""
    name: str = ""
    first_frame: int = 0  # index of frame 0 of this clip in the source file
    source_convention: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        """Number of frames (T)."""
        return int(self.positions.shape[0])

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return (self.num_frames - 1) / self.fps

    def index(self, name: str) -> int:
        """Position of a point by name (error lists the available names)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{self.source or self.name}: no point named {name!r}; "
                           f"available: {self.names}") from None

    def slice(self, start: int, stop: int | None = None) -> HumanMotion:
        """Frames [start, stop) as a new clip; first_frame keeps pointing into the source."""
        stop = self.num_frames if stop is None else stop
        rot = None if self.rotations is None else self.rotations[start:stop]
        return replace(self, positions=self.positions[start:stop], rotations=rot,
                       first_frame=self.first_frame + start)

    def validate(self) -> HumanMotion:
        """Check shapes, frame rate, frame count and finiteness; return self for chaining.

        Errors name the source file and the first bad frame (as a frame number of the source
        file) and point, so a bad capture can be found and cut.
        """
        src = self.source or self.name or "<motion>"
        pos = self.positions
        if pos.ndim != 3 or pos.shape[2] != 3:
            raise MotionFormatError(src, f"positions must have shape (frames, points, 3), got {pos.shape}")
        if pos.shape[1] != len(self.names):
            raise MotionFormatError(src, f"{pos.shape[1]} points but {len(self.names)} names")
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise MotionFormatError(src, f"duplicate point names {dup}")
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise MotionFormatError(src, f"frame rate must be positive, got {self.fps}")
        if pos.shape[0] < 2:
            raise MotionFormatError(src, f"clip has {pos.shape[0]} frame(s); at least 2 are needed "
                                    "to compute velocities")
        _check_finite(src, pos, self.names, "position", self.first_frame)
        if self.rotations is not None:
            if self.rotations.shape != (*pos.shape[:2], 4):
                raise MotionFormatError(src, f"rotations must have shape {(*pos.shape[:2], 4)}, "
                                        f"got {self.rotations.shape}")
            _check_finite(src, self.rotations, self.names, "rotation", self.first_frame)
        return self


def _check_finite(src: str, values: np.ndarray, names: list[str], what: str, first_frame: int) -> None:
    bad = ~np.isfinite(values).all(axis=-1)
    if bad.any():
        frame, point = np.argwhere(bad)[0]
        count = int(bad.any(axis=1).sum())
        raise MotionFormatError(
            src, f"non-finite {what} (NaN/inf) at point {names[point]!r}; {count} frame(s) affected",
            frame=int(frame) + first_frame)


def to_z_up(vectors: np.ndarray, up_axis: str) -> np.ndarray:
    """Express vectors (..., 3) given in a frame whose up axis is `up_axis` in the Z-up frame."""
    if up_axis == "z":
        return np.asarray(vectors, dtype=np.float64)
    if up_axis == "y":
        return np.asarray(vectors, dtype=np.float64) @ Y_UP_TO_Z_UP.T
    raise ValueError(f"up axis must be 'y' or 'z', got {up_axis!r}")


def rotations_to_z_up(mats: np.ndarray, up_axis: str) -> np.ndarray:
    """Global orientation matrices (..., 3, 3) re-expressed in the Z-up world (local frames unchanged)."""
    if up_axis == "z":
        return mats
    return Y_UP_TO_Z_UP @ mats


def detect_up_axis(positions: np.ndarray, names: list[str]) -> str:
    """Guess 'y' or 'z' from where the head is relative to the feet, averaged over frames.

    Uses point names (head/neck above foot/toe/ankle); falls back to the axis along which the
    skeleton is longest, which is vertical for anyone not lying down.
    """
    low = [i for i, n in enumerate(names) if any(k in n.lower() for k in ("foot", "toe", "ankle"))]
    high = [i for i, n in enumerate(names) if any(k in n.lower() for k in ("head", "neck"))]
    if low and high:
        span = positions[:, high].mean(axis=1) - positions[:, low].mean(axis=1)
        axis = int(np.argmax(np.abs(span.mean(axis=0))))
    else:
        extent = positions.max(axis=1) - positions.min(axis=1)
        axis = int(np.argmax(np.median(extent, axis=0)))
    if axis == 0:
        raise ValueError("the skeleton's vertical axis looks like x; pass up_axis explicitly")
    return "y" if axis == 1 else "z"


def detect_unit(height: float) -> str:
    """Guess a length unit from a skeleton height expressed in that unit."""
    if height < 5:
        return "m"
    if height < 1000:
        return "cm"
    return "mm"
