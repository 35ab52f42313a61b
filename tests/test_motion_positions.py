"""Global joint position arrays (.npy with a names list, .npz): real data and hand-made files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mimicdata.motion import MotionFormatError, ReadOptions, read_motion
from mimicdata.motion.positions import read_positions

NAMES = ["Hips", "LeftUpLeg", "LeftLeg", "LeftFoot", "Head"]


def _standing_zup_m() -> np.ndarray:
    frame = np.array([[0, 0, 0.95], [0.1, 0, 0.95], [0.1, 0, 0.5], [0.1, 0, 0.08], [0, 0, 1.65]])
    return np.stack([frame + np.array([0.01 * t, 0.0, 0.0]) for t in range(5)])


def test_holosoma_position_cloud(shared_data: Path) -> None:
    path = shared_data / "mocap/holosoma_climb/mocap_climb_seq_0_joint_positions_f900-3700.npy"
    motion = read_positions(path, fps=30.0)  # names come from joint_names.txt beside the file
    assert motion.num_frames == 2801 and len(motion.names) == 53
    assert motion.names[:3] == ["Hips", "Spine", "Spine1"]
    assert motion.source_convention == {"format": "positions", "up_axis": "z", "unit": "m"}
    raw = np.load(path)
    np.testing.assert_allclose(motion.positions, raw.astype(np.float64))
    assert motion.rotations is None


def test_npz_with_names_and_fps_in_y_up_cm(tmp_path: Path) -> None:
    zup = _standing_zup_m()
    yup_cm = np.stack([zup[..., 0], zup[..., 2], -zup[..., 1]], axis=-1) * 100.0
    path = tmp_path / "clip.npz"
    np.savez(path, positions=yup_cm.astype(np.float32), names=np.array(NAMES), fps=np.array(60.0))
    motion = read_positions(path)
    assert motion.fps == 60.0 and motion.names == NAMES
    assert motion.source_convention["up_axis"] == "y" and motion.source_convention["unit"] == "cm"
    np.testing.assert_allclose(motion.positions, zup, atol=1e-6)


def test_npy_with_sidecar_files_and_dispatch(tmp_path: Path) -> None:
    path = tmp_path / "take.npy"
    np.save(path, _standing_zup_m())
    (tmp_path / "take.names.txt").write_text("\n".join(NAMES))
    (tmp_path / "take.json").write_text(json.dumps({"fps": 120}))
    [motion] = read_motion(path)
    assert motion.fps == 120.0 and motion.names == NAMES
    np.testing.assert_allclose(motion.positions, _standing_zup_m())
    [part] = read_motion(path, ReadOptions(start=1, stop=4))
    assert part.num_frames == 3 and part.first_frame == 1


def test_missing_fps_or_names_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bare.npy"
    np.save(path, _standing_zup_m())
    with pytest.raises(MotionFormatError, match=r"bare\.npy: joint names unknown"):
        read_positions(path, fps=30)
    with pytest.raises(MotionFormatError, match=r"bare.npy: frame rate unknown: pass fps \(--source-fps\)"):
        read_positions(path, names=NAMES)
    with pytest.raises(MotionFormatError, match="5 joints in the array but 2 names"):
        read_positions(path, names=["a", "b"], fps=30)


def test_nan_frame_names_file_frame_and_joint(tmp_path: Path) -> None:
    pos = _standing_zup_m()
    pos[3, 2, 1] = np.nan
    path = tmp_path / "gap.npy"
    np.save(path, pos)
    with pytest.raises(MotionFormatError) as info:
        read_positions(path, names=NAMES, fps=30)
    assert info.value.frame == 3
    assert "gap.npy (frame 3)" in str(info.value) and "'LeftLeg'" in str(info.value)


def test_too_short_position_clip(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "mocap/holosoma_climb"
    shutil.copy(src / "joint_names.txt", tmp_path / "joint_names.txt")
    np.save(tmp_path / "one.npy", np.load(next(src.glob("*.npy")))[:1])
    with pytest.raises(MotionFormatError, match=r"one\.npy: clip has 1 frame"):
        read_positions(tmp_path / "one.npy", fps=30)


def test_inference_is_apart_from_file_loading(tmp_path: Path) -> None:
    from mimicdata.motion.positions import load_positions_file, positions_to_motion

    zup = _standing_zup_m()
    yup_mm = np.stack([zup[..., 0], zup[..., 2], -zup[..., 1]], axis=-1) * 1000.0
    motion = positions_to_motion(yup_mm, NAMES, 30.0)  # arrays from anywhere, no file
    assert motion.source_convention == {"format": "positions", "up_axis": "y", "unit": "mm"}
    np.testing.assert_allclose(motion.positions, zup, atol=1e-9)
    with pytest.raises(MotionFormatError, match="up axis must be 'y' or 'z'"):
        positions_to_motion(zup, NAMES, 30.0, up_axis="x")
    path = tmp_path / "clip.npz"
    np.savez(path, positions=yup_mm, names=np.array(NAMES), fps=np.array(30.0), unit=np.array("mm"))
    stored = load_positions_file(path)  # what the file says, nothing inferred
    assert (stored.fps, stored.names, stored.unit, stored.up_axis) == (30.0, NAMES, "mm", None)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(MotionFormatError, match=r"clip\.npz"):
        load_positions_file(path)
