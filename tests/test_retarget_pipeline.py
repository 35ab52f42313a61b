"""Dask fan-out and the store write: a failing clip in a batch, splitting long clips, one writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mimicdata as md
from mimicdata.retarget.clip import ClipSpec
from mimicdata.retarget.extract import build_manifest, write_manifest
from mimicdata.retarget.pipeline import QUALITY_STREAM, expand_inputs, retarget_to_store

NAN_BVH = ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition Zrotation "
           "Yrotation Xrotation\n  JOINT Head\n  {\n    OFFSET 0 10 0\n    CHANNELS 3 Zrotation Yrotation Xrotation\n"
           "    End Site\n    {\n      OFFSET 0 10 0\n    }\n  }\n}\nMOTION\nFrames: 3\nFrame Time: 0.0333333\n"
           "0 90 0 0 0 0 0 0 0\n0 90 0 0 nan 0 0 0 0\n0 90 0 0 0 0 0 0 0\n")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


def _batch(shared: Path, tmp_path: Path) -> list[ClipSpec]:
    bad = tmp_path / "gap.bvh"
    bad.write_text(NAN_BVH)
    return [ClipSpec(str(shared / "mocap/bvhtools/test2.bvh"), "walk", start=300, stop=420),
            ClipSpec(str(bad), "gap"),
            ClipSpec(str(shared / "mocap/bvhtoolbox/test_mocapbank.bvh"), "mocapbank", start=0, stop=90)]


def test_failing_clip_in_a_batch_of_three(shared_data: Path, tmp_path: Path, cluster) -> None:
    out = tmp_path / "expert.zarr"
    messages: list[str] = []
    report = retarget_to_store(_batch(shared_data, tmp_path), out, scheduler=cluster.scheduler_address,
                               piece_frames=50, overlap=10, progress=messages.append)
    assert not report.ok and report.workers == 2
    [failure] = report.failures
    assert failure.index == 1 and failure.error_type == "MotionFormatError"
    assert "gap.bvh:20 (frame 1): non-finite channel value" in failure.error
    assert any("FAILED" in m and "gap.bvh" in m for m in messages)
    with md.open(out) as store:
        clips = store["clips"]
        assert list(clips.read("name")) == ["walk", "mocapbank"]  # input order, failure skipped
        assert list(clips.read("clip_index")) == [0, 1]
        seg = store["frames"].segments()
        assert seg.tolist() == [[0, 199], [199, 348]]  # 120 and 90 frames at 30 fps -> 50 fps
        assert store["frames"].num_rows == 348 and store.fps == 50.0
        np.testing.assert_allclose(clips.read("source_fps"), 30.0, rtol=1e-4)
        assert np.all(clips.read("penetration_max_cm") <= 1.0) and np.all(clips.read("limit_violations") == 0)
        details = store[QUALITY_STREAM]
        assert details.read("clip_index").tolist() == [0, 1] and details.read("input_index").tolist() == [0, 2]
        assert np.all(details.read("kp_err_leg_mean_cm") <= 5.0)
        assert details.read("kp_err_per_keypoint_cm").shape == (2, 15)
        assert list(details.read("rig")) == ["cmu_mixamo", "mocapbank"]
        assert store.attrs["retarget"]["failures"][0]["source"].endswith("gap.bvh")


def test_split_clip_matches_unsplit_and_default_cluster(shared_data: Path, tmp_path: Path) -> None:
    spec = [ClipSpec(str(shared_data / "mocap/bvhtools/test1.bvh"), "walk", start=600, stop=750)]
    whole = retarget_to_store(spec, tmp_path / "whole.zarr", workers=0, progress=False)
    split = retarget_to_store(spec, tmp_path / "split.zarr", workers=2, piece_frames=60, overlap=15,
                              progress=False)
    assert whole.ok and split.ok and split.workers == 2
    with md.open(tmp_path / "whole.zarr") as a, md.open(tmp_path / "split.zarr") as b:
        qa, qb = a["frames"].read("qpos"), b["frames"].read("qpos")
        assert qa.shape == qb.shape
        # Pieces see different neighbours at their ends; after blending they agree closely.
        assert np.abs(qa[:, 7:] - qb[:, 7:]).mean() < 0.02
        assert np.abs(qa[:, :3] - qb[:, :3]).max() < 0.03
        assert b["clips"].read("kp_err_mean_cm")[0] < a["clips"].read("kp_err_mean_cm")[0] + 0.5


def test_manifest_and_folder_inputs(shared_data: Path, tmp_path: Path) -> None:
    entries = build_manifest([shared_data / "mocap"], patterns=["test*"], frames=(0, 60), max_duration=10)
    assert sorted(e.name for e in entries) == ["test1", "test2", "test_mocapbank"]
    manifest = write_manifest(entries, tmp_path / "m.json")
    specs = expand_inputs([manifest])
    assert [(s.start, s.stop) for s in specs] == [(0, 60)] * 3
    long_only = build_manifest([shared_data / "mocap"], patterns=["*bvh*"], min_duration=60)
    assert sorted(e.name for e in long_only) == ["test1", "test2"]  # 239 s and 131 s; mocapbank is 15 s
    report = retarget_to_store([manifest], tmp_path / "m.zarr", workers=0, progress=False)
    assert report.ok and len(report.clips) == 3 and report.output_frames == 3 * 99


def test_existing_store_is_not_overwritten(shared_data: Path, tmp_path: Path) -> None:
    spec = [ClipSpec(str(shared_data / "mocap/bvhtoolbox/test_mocapbank.bvh"), "a", stop=30)]
    retarget_to_store(spec, tmp_path / "s.zarr", workers=0, progress=False)
    with pytest.raises(md.StoreExistsError):
        retarget_to_store(spec, tmp_path / "s.zarr", workers=0, progress=False)
    with md.open(tmp_path / "s.zarr") as store:
        assert store["clips"].num_rows == 1
