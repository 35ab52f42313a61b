"""Video features of LeRobot v3.0 datasets, decoded and encoded with PyAV (``av``).

LeRobot keeps one mp4 per camera and file index (``videos/<key>/chunk-CCC/file-FFF.mp4``); the episodes
of a file follow each other in it, episode ``e`` starting at its ``videos/<key>/from_timestamp``. The frame
of a data row is the one shown at ``from_timestamp + timestamp``: lerobot's decoder picks the nearest
decoded frame and refuses one further than ``tolerance_s`` (1e-4 s by default) away. The reader here does
the same, streaming: it decodes forward through a file, holding one frame at a time, and only seeks when
an episode starts before the frame it stands on (another file, or episodes out of order).

The writer encodes each episode's frames at exactly those times (variable frame rate when the recorded
timestamps jitter), with ``libsvtav1`` (AV1, lerobot's default) or ``libx264`` (H.264), yuv420p.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.errors import CorruptStoreError, SchemaError, ValidationError

TOLERANCE_S = 1e-4           # lerobot's default tolerance between a row's timestamp and its frame
TIME_BASE = Fraction(1, 15360)  # what lerobot's encoder writes (a multiple of 30, 50 and 60 fps)
CODECS = {"libsvtav1": "av1", "libx264": "h264"}


def _av() -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - av is in the sim extra
        raise SchemaError("video features need PyAV: pip install av (or mimicdata[sim])") from None
    av.logging.set_level(av.logging.PANIC)  # decoder complaints become our one error, not stderr noise
    return av


class VideoReader:
    """Frames of one camera's mp4 files, read forward episode by episode."""

    def __init__(self, key: str, shape: tuple[int, ...], tolerance_s: float = TOLERANCE_S) -> None:
        self.key, self.shape, self.tolerance_s = key, tuple(shape), tolerance_s
        self._path: Path | None = None
        self._container: Any = None
        self._frames: Any = None
        self._current: tuple[float, Any] | None = None  # (time s, av frame) not consumed yet

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._frames = self._current = self._path = None

    def _open(self, path: Path, start: float) -> None:
        av = _av()
        self.close()
        try:
            self._container = av.open(str(path))
            stream = self._container.streams.video[0]
            if start > 0:  # to the key frame at or before the first wanted time
                self._container.seek(int(start / stream.time_base), stream=stream, backward=True)
        except (av.FFmpegError, IndexError, OSError) as exc:
            self.close()
            raise CorruptStoreError(f"{path}: cannot open video ({type(exc).__name__}: {exc})") from None
        self._path, self._frames = path, self._container.decode(stream)

    def _next(self) -> tuple[float, Any] | None:
        av = _av()
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.FFmpegError as exc:
            raise CorruptStoreError(f"{self._path}: cannot decode video ({type(exc).__name__}: {exc})") from None
        return float(frame.pts * frame.time_base), frame

    def episode(self, path: Path, times: np.ndarray, where: str) -> np.ndarray:
        """Frames shown at ``times`` (seconds in the file), ``(len(times), H, W, 3)`` uint8."""
        try:
            return self._episode(path, times, where)
        except CorruptStoreError as exc:
            self.close()
            raise CorruptStoreError(f"{where}: {self.key}: {exc}") from None

    def _episode(self, path: Path, times: np.ndarray, where: str) -> np.ndarray:
        tol = self.tolerance_s
        if path != self._path or self._current is None or self._current[0] > times[0] + tol:
            self._open(path, float(times[0]))
            self._current = self._next()
        out = np.empty((len(times), *self.shape), np.uint8)
        for i, t in enumerate(times.tolist()):
            # skip frames before t, but stop on the nearest one (lerobot picks the nearest frame)
            while self._current is not None and self._current[0] < t - tol:
                self._current = self._next()
            if self._current is None or abs(self._current[0] - t) > tol:
                got = "the end of the video" if self._current is None else f"a frame at {self._current[0]:.6f} s"
                raise ValidationError(f"{where}: {self.key} frame {i} should be shown at {t:.6f} s in "
                                      f"{path.name}, found {got} (tolerance {tol:g} s); the video does not "
                                      f"match the dataset's timestamps (truncated or re-encoded?)")
            image = self._current[1].to_ndarray(format="rgb24")
            if image.shape != self.shape:
                raise ValidationError(f"{where}: {self.key} frames are {image.shape}, info.json declares "
                                      f"{self.shape}")
            out[i] = image
            self._current = self._next()
        return out


class VideoWriter:
    """One mp4 of one camera, episodes appended one after the other at their own frame times."""

    def __init__(self, path: Path, height: int, width: int, fps: float, codec: str = "libsvtav1",
                 crf: int = 23, gop: int = 2) -> None:
        av = _av()
        if codec not in CODECS:
            raise SchemaError(f"video codec {codec!r}: use one of {', '.join(CODECS)} (lerobot decodes both)")
        if height % 2 or width % 2:
            raise SchemaError(f"{path.parent.parent.name}: {height}x{width} frames cannot be stored as yuv420p "
                              f"video (odd size); export them as images")
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr otherwise
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.codec = path, codec
        self._container = av.open(str(path), "w")
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream(codec, rate=rate)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._stream.time_base = TIME_BASE
        self._stream.codec_context.time_base = TIME_BASE
        opts = {"crf": str(crf), "g": str(gop)}
        if codec == "libsvtav1":
            opts["preset"] = "10"
        self._stream.options = opts
        self._last_pts = -1

    def add(self, images: np.ndarray, times: np.ndarray) -> None:
        """Frames ``(n, H, W, 3)`` uint8 shown at ``times`` (seconds in the file, increasing)."""
        av = _av()
        for image, t in zip(images, times.tolist(), strict=True):
            pts = max(round(t / TIME_BASE), self._last_pts + 1)  # times equal at 1/15360 s still advance
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = pts, TIME_BASE
            self._last_pts = pts
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def info(self, fps: float) -> dict[str, Any]:
        """lerobot's ``info`` entry of the feature."""
        return {"video.height": self._stream.height, "video.width": self._stream.width,
                "video.codec": CODECS[self.codec], "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                "video.fps": int(fps) if float(fps).is_integer() else fps, "video.channels": 3,
                "has_audio": False}
