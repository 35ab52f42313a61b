"""Stores are plain Zarr v3: tensorstore (an independent implementation) reads every kind of array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mimicdata as md
from tests.helpers import act_batch, cmg_frames, episode_frames, expert_frames, obs_batch

ts = pytest.importorskip("tensorstore")


def _read(path: Path, stream: str, field: str) -> np.ndarray:
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / stream / field)}}
    return ts.open(spec, read=True).result().read().result()


def test_tensorstore_reads_every_array_bit_exact(tmp_path: Path) -> None:
    stores = {}
    log = md.create(tmp_path / "log.zarr", ["observations", "actions"], robot="g1_29dof", fps=50,
                    dims={"obs": 160}, lossy={"full_obs": 12})
    log["observations"].append(obs_batch(5000))
    log["actions"].append(act_batch(5000))
    log.close()
    stores["log.zarr"] = md.open(tmp_path / "log.zarr")
    ep = md.create(tmp_path / "ep.zarr", "episodes", robot="g1_29dof", dims={"state": 29, "action": 29})
    ep.append_segment("episodes", frames=episode_frames(30), row={"task": "pick", "success": 1})
    ep.close()
    stores["ep.zarr"] = md.open(tmp_path / "ep.zarr")
    ex = md.create(tmp_path / "ex.zarr", "expert_trajectory", robot="g1_29dof", fps=50)
    ex.append_segment("clips", frames=expert_frames(70), row={"name": "walk", "source": "w.bvh", "fps": 50.0})
    ex.close()
    stores["ex.zarr"] = md.open(tmp_path / "ex.zarr")
    cmg = md.create(tmp_path / "cmg.zarr", "cmg_rollout", robot="g1_29dof", fps=50)
    cmg.append_segment("trajectories", frames=cmg_frames(90), row={"seed": 3})
    cmg.close()
    stores["cmg.zarr"] = md.open(tmp_path / "cmg.zarr")
    checked = 0
    for name, store in stores.items():
        for stream in store.streams.values():
            for field in stream.fields:
                ours = stream.read(field, decode=False)
                theirs = _read(tmp_path / name, stream.name, field)
                np.testing.assert_array_equal(theirs, ours, err_msg=f"{name} {stream.name}/{field}")
                checked += 1
    assert checked >= 40
