"""Expert discriminator observations from an expert_trajectory store, through ``md.WindowDataset``.

The spec (robot, key bodies, history length, dilation, store frames per control step, feature
version) is hashed; the expert's per-frame features over each history window are cached in the store
as the stream ``disc_obs.amp_<hash>`` (the prefix keeps it out of ``WindowDataset``'s automatic stream
choice) and recorded under ``attrs["amp_disc_obs"]``. A store whose frames changed since is recomputed.
A read-only store is computed in memory. Either way the frames (first time) and the cache (later)
are read through ``md.WindowDataset`` and ``md.batches``, the training data path, and the features are
:func:`mimicdata_trainers.amp.features.frame_features`, the function the simulated agent uses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mimicdata_trainers.amp.config import Config

import mimicdata as md
from mimicdata.errors import SchemaError, ValidationError

FEATURES_VERSION = 1
ATTRS_KEY = "amp_disc_obs"
PREFIX = "disc_obs.amp_"
NEEDED = ("qpos", "qvel", "body_pos")


@dataclass(frozen=True)
class AMPDiscSpec:
    """What the discriminator sees; its hash keys the cache in the store."""

    robot: str
    key_bodies: tuple[str, ...]
    history: int
    dilation: int
    frame_stride: int  # store frames per control step
    features_version: int = FEATURES_VERSION

    @property
    def history_len(self) -> int:
        """Control steps spanned by the history (all are kept, for reference-state init)."""
        return (self.history - 1) * self.dilation + 1

    @property
    def offsets(self) -> list[int]:
        """Store-frame offsets of the window, oldest first, newest (the anchor) last."""
        return [-(self.history_len - 1 - i) * self.frame_stride for i in range(self.history_len)]

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def stream_name(self) -> str:
        return PREFIX + self.key()


@dataclass
class ExpertData:
    """Numpy arrays: history features (N, L, F), anchor qpos (N, 7+nj), qvel (N, 6+nj); `status` is
    "hit", "miss" (computed and cached) or "uncached" (read-only store)."""

    history: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    spec: AMPDiscSpec
    status: str

    def disc_obs(self) -> np.ndarray:
        """(N, history * F): every `dilation`-th frame of each window, oldest first (as the agent's)."""
        return self.history[:, :: self.spec.dilation].reshape(len(self.history), -1)


def check_expert_store(store: Any, config: Config) -> AMPDiscSpec:
    """The spec for this store, or one error saying why the store cannot serve as expert data."""
    where = str(store.location)
    if "frames" not in store.streams:
        raise SchemaError(f"{where}: no 'frames' stream; AMP needs an expert_trajectory store "
                          f"(e.g. from `mimicdata retarget`), streams here: {list(store.streams)}")
    frames = store["frames"]
    missing = [f for f in NEEDED if f not in frames.fields]
    if missing:
        raise SchemaError(f"{where}: frames lack field(s) {missing} that the AMP discriminator needs "
                          f"(has {frames.fields})")
    robot = store.robot.name if store.robot else None
    if robot != config.env.robot:
        raise SchemaError(f"{where}: expert motion is for robot {robot!r}, the environment simulates "
                          f"{config.env.robot!r}; retarget to {config.env.robot} or choose the matching --env-id")
    absent = [b for b in config.env.key_bodies if b not in store.robot.body_names]
    if absent:
        raise SchemaError(f"{where}: key bodies {absent} are not bodies of the store's robot")
    fps = frames.fps or store.fps
    if not fps:
        raise ValidationError(f"{where}: frames have no fps; cannot space the history at the control step")
    stride = fps * config.env.ctrl_dt
    if stride < 1 - 1e-6 or abs(stride - round(stride)) > 1e-6:
        raise ValidationError(f"{where}: frames at {fps:g} fps do not fall on the {1 / config.env.ctrl_dt:g} Hz "
                              f"control step; retarget with --fps {1 / config.env.ctrl_dt:g} (or a multiple)")
    spec = AMPDiscSpec(robot=robot, key_bodies=tuple(config.env.key_bodies), history=config.disc_obs.history,
                       dilation=config.disc_obs.dilation, frame_stride=round(stride))
    segments = frames.segments() if frames.segment_stream() is not None else np.array([[0, frames.num_rows]])
    need = (spec.history_len - 1) * spec.frame_stride + 1
    longest = int((segments[:, 1] - segments[:, 0]).max()) if len(segments) else 0
    if longest < need:
        raise ValidationError(f"{where}: a discriminator history of {spec.history} frames (dilation "
                              f"{spec.dilation}) spans {need} frames at {fps:g} fps, but the longest clip has "
                              f"{longest}; use longer clips or a shorter disc_obs.history")
    return spec


def _features_fn(key_index: np.ndarray) -> Any:
    import jax
    from mimicdata_trainers.amp.features import frame_features

    @jax.jit
    def run(qpos: Any, qvel: Any, body_pos: Any) -> Any:
        return frame_features(qpos, qvel, body_pos[..., key_index, :])

    return run


def _compute(url: str, store: Any, spec: AMPDiscSpec, batch_size: int) -> dict[str, np.ndarray]:
    ds = md.WindowDataset(store, fields=list(NEEDED), offsets=spec.offsets, stream="frames")
    key_index = np.array([list(store.robot.body_names).index(b) for b in spec.key_bodies])
    run = _features_fn(key_index)
    parts: dict[str, list[np.ndarray]] = {"history": [], "qpos": [], "qvel": []}
    for batch in md.batches(ds, batch_size, shuffle=False, prefetch=0, cache="none", to="numpy"):
        n = len(batch["qpos"])
        pad = batch_size - n  # one compiled shape for every batch
        padded = {k: np.concatenate([batch[k], np.repeat(batch[k][-1:], pad, axis=0)]) if pad else batch[k]
                  for k in NEEDED}
        parts["history"].append(np.asarray(run(padded["qpos"], padded["qvel"], padded["body_pos"]))[:n])
        parts["qpos"].append(batch["qpos"][:, -1])
        parts["qvel"].append(batch["qvel"][:, -1])
    return {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}


def _read_cache(store: Any, name: str) -> dict[str, np.ndarray]:
    ds = md.WindowDataset(store, fields=["history", "qpos", "qvel"], window=1, stream=name)
    batch = next(iter(md.batches(ds, len(ds), shuffle=False, prefetch=0, cache="memory", to="numpy")))
    return {k: batch[k][:, 0] for k in ("history", "qpos", "qvel")}


def load_expert(url: str | Path, config: Config, *, write_cache: bool = True, batch_size: int = 4096) -> ExpertData:
    """The expert's discriminator data for `config`, cached in the store when it is writable."""
    url = str(url)
    try:
        store = md.open(url, mode="a") if write_cache else md.open(url)
    except (md.ReadOnlyError, md.StoreLockedError, PermissionError):
        store = md.open(url)
    try:
        spec = check_expert_store(store, config)
        name = spec.stream_name
        rows = store["frames"].num_rows
        entry = dict(store.attrs.get(ATTRS_KEY, {})).get(spec.key())
        if entry and entry.get("frames_rows") == rows and name in store.streams and store[name].num_rows:
            return ExpertData(**_read_cache(store, name), spec=spec, status="hit")
        data = _compute(url, store, spec, batch_size)
        if store.mode == "r":
            return ExpertData(**data, spec=spec, status="uncached")
        if name in store.streams:
            store[name].truncate(0)  # the frames changed under the cache
        else:
            store.add_stream(name, fields={
                "history": {"dtype": "float32", "shape": ["history", "feature"], "unit": "mixed",
                            "description": "Discriminator features of the control steps up to this frame."},
                "qpos": {"dtype": "float32", "shape": ["qpos"], "unit": "mixed", "description": "Anchor qpos."},
                "qvel": {"dtype": "float32", "shape": ["qvel"], "unit": "mixed", "description": "Anchor qvel."},
            }, dims={"history": spec.history_len, "feature": int(data["history"].shape[-1])})
        store[name].append(data)
        entries = dict(store.attrs.get(ATTRS_KEY, {}))
        entries[spec.key()] = {"spec": asdict(spec), "stream": name, "frames_rows": rows, "windows": len(data["qpos"])}
        store.update_attrs({ATTRS_KEY: entries})
        return ExpertData(**_read_cache(store, name), spec=spec, status="miss")
    finally:
        store.close()
