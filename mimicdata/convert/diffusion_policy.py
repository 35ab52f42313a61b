"""Import a diffusion_policy / UMI replay buffer (Zarr v2 or v3) into an episodes store.

A replay buffer is ``data/<key>`` arrays of shape ``(N, ...)`` concatenated over episodes plus
``meta/episode_ends`` (cumulative ends, int64). Mapping:

- ``action`` (``action_key``) -> ``action``;
- uint8 (or 0..255 integral float) arrays of shape ``(N, H, W, 3)`` -> ``image.<key>``;
- ``timestamp`` (seconds, float) -> frame timestamps in ns; without it frames are ``1/fps`` apart from 0;
- every other numeric array -> flattened and concatenated, in sorted key order, into ``state``; the
  component names (``"robot_eef_pose[3]"``) are kept as the state names.

A half-written buffer (diffusion_policy resizes the data arrays before appending ``episode_ends``,
so a crash leaves more rows than ``episode_ends[-1]``) is imported up to its last complete episode and
the report says what was left out. Custom codecs (JPEG-XL, JPEG2000 from imagecodecs) must be
registered with numcodecs before importing, as with zarr itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from mimicdata.convert import ConvertReport
from mimicdata.episodes import EpisodeRecorder
from mimicdata.errors import CorruptStoreError, SchemaError, ValidationError

TIMESTAMP_KEY = "timestamp"


def _open(path: str | Path) -> zarr.Group:
    text = str(path)
    try:
        if text.endswith(".zip"):
            from zarr.storage import ZipStore

            return zarr.open_group(ZipStore(text, mode="r"), mode="r")
        return zarr.open_group(text, mode="r")
    except (FileNotFoundError, ValueError, TypeError, KeyError) as exc:
        raise CorruptStoreError(f"{path}: not a readable Zarr group ({exc})") from None


def detect(path: str | Path) -> bool:
    """True for a Zarr group with ``data/`` and ``meta/episode_ends``."""
    if not Path(path).exists():
        return False
    try:
        root = _open(path)
        return "data" in root and "episode_ends" in root["meta"]  # type: ignore[operator]
    except Exception:
        return False


def _is_image(arr: Any) -> bool:
    return arr.ndim == 4 and arr.shape[-1] == 3


def _plan(data: zarr.Group, action_key: str, where: str) -> dict[str, Any]:
    arrays = {k: v for k, v in data.arrays()}
    if action_key not in arrays:
        raise SchemaError(f"{where}: no data/{action_key}; arrays are {sorted(arrays)} (pass action_key=...)")
    images = sorted(k for k, a in arrays.items() if _is_image(a))
    state = sorted(k for k in arrays if k not in images and k not in (action_key, TIMESTAMP_KEY))
    if not state:
        raise SchemaError(f"{where}: no low-dimensional arrays besides {action_key!r} to use as state")
    for key in [*state, action_key]:
        if arrays[key].dtype.kind not in "fiub":
            raise SchemaError(f"{where}: data/{key} has dtype {arrays[key].dtype}; only numbers are supported")
    names = []
    for key in state:
        width = int(np.prod(arrays[key].shape[1:], dtype=np.int64))
        names += [key] if arrays[key].ndim == 1 else [f"{key}[{i}]" for i in range(width)]
    return {"arrays": arrays, "images": images, "state": state, "state_names": names}


def _image_batch(arr: np.ndarray, key: str, where: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f" and arr.size and (arr.min() < 0 or arr.max() > 255 or (arr != np.round(arr)).any()):
        raise ValidationError(f"{where}: data/{key} holds float pixels that are not whole numbers in 0..255; "
                              f"store images as uint8")
    return arr.astype(np.uint8)


def convert(src: str | Path, dst: str | Path, *, overwrite: bool = False, fps: float = 10.0,
            action_key: str = "action", task: str = "default", robot: str | None = None) -> ConvertReport:
    """Import a replay buffer at ``src`` (directory, or ``.zarr.zip``) into a new episodes store."""
    where = str(src)
    root = _open(src)
    if "data" not in root or "meta" not in root or "episode_ends" not in root["meta"]:  # type: ignore[operator]
        raise SchemaError(f"{where}: not a replay buffer (needs data/ and meta/episode_ends)")
    ends = np.asarray(root["meta"]["episode_ends"][:], np.int64)  # type: ignore[index]
    if ends.ndim != 1 or (np.diff(ends) < 0).any() or (len(ends) and ends[0] < 0):
        raise CorruptStoreError(f"{where}: meta/episode_ends is not a non-decreasing list of row counts")
    plan = _plan(root["data"], action_key, where)  # type: ignore[arg-type]
    arrays = plan["arrays"]
    lengths = {k: a.shape[0] for k, a in arrays.items()}
    report = ConvertReport(where, str(dst), "diffusion_policy")
    total = int(ends[-1]) if len(ends) else 0
    short = {k: n for k, n in lengths.items() if n < total}
    if short:
        raise CorruptStoreError(f"{where}: episode_ends says {total} rows but {short} are shorter")
    extra = {k: n - total for k, n in lengths.items() if n > total}
    if extra:
        report.problems.append(f"rows past the last episode end (an unfinished episode) were not imported: {extra}")
    cameras = {k: arrays[k].shape[1:3] for k in plan["images"]}  # each camera its own size
    action_dim = int(np.prod(arrays[action_key].shape[1:], dtype=np.int64))
    rec = EpisodeRecorder.create(dst, fps=fps, state=plan["state_names"], action=action_dim, robot=robot,
                                 cameras=cameras, overwrite=overwrite, default_task=task,
                                 attrs={"diffusion_policy": {"source": where, "state_keys": plan["state"],
                                                             "action_key": action_key, "images": plan["images"]}})
    skipped, done, frames = [], 0, 0
    try:
        start = 0
        for e, end in enumerate(ends.tolist()):
            if end == start:
                skipped.append(e)
                continue
            batch = _episode(arrays, plan, action_key, start, end, fps, f"{where} episode {e}")
            rec.add_frames(batch)
            rec.save_episode(metadata={"source_episode": e})
            done, frames, start = done + 1, frames + end - start, end
    finally:
        rec.close()
    if skipped:
        report.problems.append(f"empty episodes skipped: {skipped}")
    report.rows = {"episodes": done, "frames": frames}
    report.details = {"state_keys": plan["state"], "images": plan["images"], "skipped_empty": skipped}
    return report


def _episode(arrays: dict[str, Any], plan: dict[str, Any], action_key: str, start: int, end: int, fps: float,
             where: str) -> dict[str, Any]:
    n = end - start
    state = np.concatenate([np.asarray(arrays[k][start:end], np.float64).reshape(n, -1) for k in plan["state"]],
                           axis=1)
    batch: dict[str, Any] = {"state": state.astype(np.float32),
                             "action": np.asarray(arrays[action_key][start:end], np.float32).reshape(n, -1)}
    if TIMESTAMP_KEY in arrays:
        stamps = np.asarray(arrays[TIMESTAMP_KEY][start:end], np.float64).reshape(n)
        batch["timestamp"] = np.round(stamps * 1e9).astype(np.int64)
    else:
        batch["timestamp"] = np.round(np.arange(n) * (1e9 / fps)).astype(np.int64)
    for key in plan["images"]:
        batch[f"image.{key}"] = _image_batch(np.asarray(arrays[key][start:end]), key, where)
    return batch
