"""Discriminator observations of the expert motion, computed once and cached inside the store.

The seed pipeline kept them in a side file (``expert_disc_obs.npz``) that silently went stale when
the motion or the observation definition changed. Here they live in the store as a stream named
``disc_obs.<hash>``, where the hash is of the observation spec, and the store's attributes record
the spec and how many frames were covered. A different spec is a different stream (recomputed);
clips appended after the cache was built are computed and appended on the next request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mimicdata.errors import CorruptStoreError, ValidationError
from mimicdata.motion.rotations import quat_to_mat

if TYPE_CHECKING:
    from mimicdata.dataset import WindowDataset

PREFIX = "disc_obs."
ATTRS_KEY = "disc_obs"


@dataclass(frozen=True)
class DiscObsSpec:
    """What one discriminator observation holds, per frame, stacked over `history` frames.

    Positions of key bodies/sites are relative to the root and expressed in the heading frame
    (root yaw only), like AMP; velocities are in the heading frame too.
    """

    key_bodies: tuple[str, ...] = ("left_ankle_roll_link", "right_ankle_roll_link",
                                   "left_wrist_yaw_link", "right_wrist_yaw_link")
    key_sites: tuple[str, ...] = ()
    root_height: bool = True
    root_rotation: bool = True  # tangent + normal of the root frame (6 numbers)
    root_velocity: bool = True  # linear and angular (6 numbers)
    joint_positions: bool = True
    joint_velocities: bool = True
    history: int = 2

    def to_doc(self) -> dict[str, Any]:
        """JSON form (stored in the store attributes)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> DiscObsSpec:
        """Inverse of :meth:`to_doc`."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})

    def key(self) -> str:
        """Stable 12-hex-digit hash of the spec (the cache key)."""
        text = json.dumps(self.to_doc(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def stream_name(self) -> str:
        """Name of the cache stream: ``disc_obs.<key>``."""
        return PREFIX + self.key()


@dataclass
class DiscObs:
    """Observations (rows of the frames stream, D) and whether they came from the cache."""

    obs: np.ndarray
    status: str  # "hit", "miss", "extended" or "uncached" (read-only store)
    stream: str


def compute_disc_obs(frames: dict[str, np.ndarray], segments: np.ndarray, spec: DiscObsSpec,
                     body_names: list[str], robot: str) -> np.ndarray:
    """Observations (N, D) for frames (qpos, qvel, body_pos, body_quat) cut into clips `segments`."""
    if spec.history < 1:
        raise ValueError(f"history must be >= 1, got {spec.history}")
    qpos, qvel = frames["qpos"].astype(np.float64), frames["qvel"].astype(np.float64)
    body_pos, body_quat = frames["body_pos"].astype(np.float64), frames["body_quat"].astype(np.float64)
    root_rot = quat_to_mat(qpos[:, 3:7])
    fwd = root_rot[:, :, 0].copy()
    fwd[:, 2] = 0.0
    fwd /= np.maximum(np.linalg.norm(fwd, axis=1, keepdims=True), 1e-9)
    heading = np.stack([fwd, np.cross([0.0, 0.0, 1.0], fwd), np.broadcast_to([0.0, 0.0, 1.0], fwd.shape)], -1)
    to_heading = heading.transpose(0, 2, 1)
    parts = []
    if spec.root_height:
        parts.append(qpos[:, 2:3])
    if spec.root_rotation:
        local = to_heading @ root_rot
        parts += [local[:, :, 0], local[:, :, 2]]
    if spec.root_velocity:
        omega_world = (root_rot @ qvel[:, 3:6, None])[..., 0]
        parts += [(to_heading @ qvel[:, :3, None])[..., 0], (to_heading @ omega_world[..., None])[..., 0]]
    if spec.joint_positions:
        parts.append(qpos[:, 7:])
    if spec.joint_velocities:
        parts.append(qvel[:, 6:])
    points = _key_points(spec, body_pos, body_quat, body_names, robot)
    if points is not None:
        rel = points - qpos[:, None, :3]
        parts.append(np.einsum("tij,tkj->tki", to_heading, rel).reshape(len(qpos), -1))
    single = np.concatenate(parts, axis=1)
    stacked = [single]
    rows = np.arange(len(single))
    starts = np.zeros(len(single), dtype=np.int64)
    for a, b in segments:
        starts[a:b] = a
    for lag in range(1, spec.history):
        stacked.append(single[np.maximum(rows - lag, starts)])  # clamp to the clip's first frame
    return np.concatenate(stacked, axis=1).astype(np.float32)


def _key_points(spec: DiscObsSpec, body_pos: np.ndarray, body_quat: np.ndarray, body_names: list[str],
                robot: str) -> np.ndarray | None:
    pts = []
    for name in spec.key_bodies:
        if name not in body_names:
            raise ValueError(f"key body {name!r} is not a body of robot {robot!r}; bodies: {body_names}")
        pts.append(body_pos[:, body_names.index(name)])
    if spec.key_sites:
        from mimicdata.motion.kinematics import load_robot_model

        model = load_robot_model(robot)
        for name in spec.key_sites:
            if name not in model.site_names:
                raise ValueError(f"key site {name!r} is not a site of robot {robot!r}; sites: {model.site_names}")
            s = model.site_names.index(name)
            b = body_names.index(model.body_names[model.site_body[s]])
            pts.append(body_pos[:, b] + quat_to_mat(body_quat[:, b]) @ model.site_pos[s])
    return np.stack(pts, axis=1) if pts else None


def disc_obs(store: Any, spec: DiscObsSpec | None = None) -> DiscObs:
    """The store's discriminator observations for `spec`: from the cache when valid, else computed
    (and cached when the store is writable)."""
    spec = spec or DiscObsSpec()
    frames_stream = store["frames"]
    total = frames_stream.num_rows
    segments = frames_stream.segments()
    name = spec.stream_name
    cached_rows = store[name].num_rows if name in store.streams else 0
    if name in store.streams and cached_rows == total:
        return DiscObs(obs=store[name].read("obs"), status="hit", stream=name)
    if cached_rows > total or (cached_rows and cached_rows not in set(segments[:, 0].tolist())):
        raise CorruptStoreError(f"{store.location}: cache {name} covers {cached_rows} rows, which is not a clip "
                                f"boundary of the {total} frames; the frames changed under it")
    todo = segments[segments[:, 0] >= cached_rows]
    frames = {k: frames_stream.read(k, cached_rows, total) for k in ("qpos", "qvel", "body_pos", "body_quat")}
    new = compute_disc_obs(frames, todo - cached_rows, spec, list(store.robot.body_names), store.robot.name)
    if store.mode == "r":
        old = store[name].read("obs") if cached_rows else np.zeros((0, new.shape[1]), np.float32)
        return DiscObs(obs=np.concatenate([old, new]), status="uncached", stream=name)
    if name not in store.streams:
        store.add_stream(name, fields={"obs": {"dtype": "float32", "shape": ["obs"], "unit": "mixed",
                                               "description": "Discriminator observation (see attrs.disc_obs)."}},
                         dims={"obs": int(new.shape[1])})
    if len(new):
        store[name].append({"obs": new})
    entries = dict(store.attrs.get(ATTRS_KEY, {}))
    entries[spec.key()] = {"spec": spec.to_doc(), "stream": name, "rows": total, "dim": int(new.shape[1])}
    store.update_attrs({ATTRS_KEY: entries})
    status = "extended" if cached_rows else "miss"
    return DiscObs(obs=store[name].read("obs"), status=status, stream=name)


def disc_obs_dataset(url: str | Path, spec: DiscObsSpec | None = None, *, window: int | None = None,
                     offsets: Sequence[int] | None = None, build: bool = True,
                     storage_options: dict[str, Any] | None = None) -> WindowDataset:
    """The cached discriminator observations as a :class:`~mimicdata.WindowDataset` (AMP's expert side).

    Windows never cross a clip: the cache stream takes the clips of ``frames``. A missing or stale cache
    is computed first (the store is opened for append) unless ``build=False``, which raises instead.

    >>> ds = disc_obs_dataset("expert.zarr", DiscObsSpec(history=2))                  # doctest: +SKIP
    >>> for batch in md.batches(ds, 4096, epochs=None): expert_obs = batch["obs"][:, 0]  # doctest: +SKIP
    """
    import mimicdata as md

    spec = spec or DiscObsSpec()
    name = spec.stream_name
    with md.open(url, storage_options=storage_options) as store:
        current = name in store.streams and store[name].num_rows == store["frames"].num_rows
    if not current:
        if not build:
            raise ValidationError(f"{url}: no up-to-date discriminator-observation cache {name}; build it with "
                                  f"disc_obs(md.open(url, 'a'), spec) or pass build=True")
        with md.open(url, "a", storage_options=storage_options) as store:
            disc_obs(store, spec)
    return md.WindowDataset(url, fields=["obs"], stream=name, window=window, offsets=offsets,
                            segments_from="frames", storage_options=storage_options)
