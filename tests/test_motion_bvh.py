"""BVH reader: hand-computed forward kinematics, axis/unit conversion, real files, malformed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mimicdata.motion import MotionFormatError, read_motion
from mimicdata.motion.bvh import read_bvh, read_bvh_header
from mimicdata.motion.rotations import quat_to_mat

FIX = Path(__file__).parent / "fixtures" / "motion"

# Expected global positions of hand_fk_yup.bvh in cm, Y-up, worked out by hand:
# frame 1 turns the root 90 deg about Y (+x -> -z), frame 2 swings the hip 90 deg about X
# (-y -> -z), frame 3 rotates the head by Rz(90) @ Rx(90) (the end site (0, 20, 0) -> (0, 0, 20)).
EXPECTED_YUP_CM = {
    0: {"Hips": (0, 90, 0), "Head": (0, 100, 0), "Head_end": (0, 120, 0), "LeftUpLeg": (10, 90, 0),
        "LeftFoot": (10, 50, 0), "LeftFoot_end": (10, 10, 0)},
    1: {"Hips": (10, 90, 0), "LeftUpLeg": (10, 90, -10), "LeftFoot": (10, 50, -10), "LeftFoot_end": (10, 10, -10)},
    2: {"LeftFoot": (10, 90, -40), "LeftFoot_end": (10, 90, -80)},
    3: {"Head_end": (0, 100, 20), "LeftFoot_end": (10, 10, 0)},
}


def _yup_cm_to_zup_m(p: tuple[float, float, float]) -> np.ndarray:
    x, y, z = p
    return np.array([x, -z, y]) / 100.0


def test_hand_made_bvh_forward_kinematics() -> None:
    motion = read_bvh(FIX / "hand_fk_yup.bvh")
    assert motion.names == ["Hips", "Head", "Head_end", "LeftUpLeg", "LeftFoot", "LeftFoot_end"]
    assert motion.fps == pytest.approx(25.0)
    assert motion.source_convention["up_axis"] == "y" and motion.source_convention["unit"] == "cm"
    for frame, points in EXPECTED_YUP_CM.items():
        for name, p in points.items():
            np.testing.assert_allclose(motion.positions[frame, motion.index(name)], _yup_cm_to_zup_m(p),
                                       atol=1e-9, err_msg=f"frame {frame} {name}")


def test_channel_order_is_applied_as_listed() -> None:
    # Head lists "Zrotation Xrotation Yrotation": R = Rz @ Rx. The reverse product would put the
    # head end at (-20, 100, 0) cm instead of (0, 100, 20).
    motion = read_bvh(FIX / "hand_fk_yup.bvh")
    end = motion.positions[3, motion.index("Head_end")]
    assert not np.allclose(end, _yup_cm_to_zup_m((-20, 100, 0)), atol=1e-6)
    np.testing.assert_allclose(end, _yup_cm_to_zup_m((0, 100, 20)), atol=1e-9)


def test_global_rotations_move_children_rigidly() -> None:
    motion = read_bvh(FIX / "hand_fk_yup.bvh")
    mats = quat_to_mat(motion.rotations)
    hip, foot = motion.index("LeftUpLeg"), motion.index("LeftFoot")
    # The foot sits 40 cm below the hip in the hip's own frame in every frame.
    local = np.einsum("tji,tj->ti", mats[:, hip], motion.positions[:, foot] - motion.positions[:, hip])
    np.testing.assert_allclose(local, np.tile(local[0], (4, 1)), atol=1e-9)
    assert np.linalg.norm(local[0]) == pytest.approx(0.40)


def test_y_up_and_z_up_files_give_the_same_motion() -> None:
    yup = read_bvh(FIX / "hand_fk_yup.bvh")
    zup = read_bvh(FIX / "hand_fk_zup.bvh")
    assert zup.source_convention["up_axis"] == "z"
    np.testing.assert_allclose(zup.positions, yup.positions, atol=1e-9)
    # Bone frames are the file's own, so orientations may differ by a constant offset per joint only.
    ry, rz = quat_to_mat(yup.rotations), quat_to_mat(zup.rotations)
    offset = np.einsum("tjki,tjkl->tjil", ry, rz)
    np.testing.assert_allclose(offset, np.broadcast_to(offset[:1], offset.shape), atol=1e-9)


def test_unit_override_and_explicit_axis() -> None:
    auto = read_bvh(FIX / "hand_fk_yup.bvh")
    as_metres = read_bvh(FIX / "hand_fk_yup.bvh", unit="m", up_axis="y")
    np.testing.assert_allclose(as_metres.positions, auto.positions * 100.0, atol=1e-9)
    forced_z = read_bvh(FIX / "hand_fk_yup.bvh", up_axis="z")
    assert forced_z.positions[0, forced_z.index("Head"), 1] == pytest.approx(1.0)  # y stays y


def test_frame_range_selects_source_frames() -> None:
    part = read_bvh(FIX / "hand_fk_yup.bvh", start=1, stop=3)
    full = read_bvh(FIX / "hand_fk_yup.bvh")
    assert part.num_frames == 2 and part.first_frame == 1
    np.testing.assert_allclose(part.positions, full.positions[1:3])


def test_header_only_read() -> None:
    header = read_bvh_header(FIX / "hand_fk_yup.bvh")
    assert header.num_frames == 4 and header.num_channels == 15
    assert [j.name for j in header.joints if not j.is_end] == ["Hips", "Head", "LeftUpLeg", "LeftFoot"]


def test_real_lafan_like_bvh(shared_data: Path) -> None:
    motion = read_bvh(shared_data / "mocap/bvhtools/test1.bvh", stop=300)
    assert motion.num_frames == 300 and motion.fps == pytest.approx(30.0, rel=1e-4)
    assert motion.source_convention == {"format": "bvh", "up_axis": "y", "unit": "cm", "rotation_orders": ["ZYX"]}
    assert len([n for n in motion.names if not n.endswith("_end")]) == 22  # 21 below the root
    # Upright person in metres, toes on the floor.
    head, toe = motion.index("Head"), motion.index("LeftToe")
    assert 1.4 < np.median(motion.positions[:, head, 2]) < 1.8
    assert abs(np.percentile(motion.positions[:, toe, 2], 5)) < 0.03
    # Bone lengths stay constant through the motion (forward kinematics is rigid).
    leg = np.linalg.norm(motion.positions[:, motion.index("LeftLeg")] - motion.positions[:, motion.index("LeftUpLeg")],
                         axis=1)
    assert leg.std() < 1e-9 and leg[0] == pytest.approx(0.435, abs=1e-4)


def test_real_mocapbank_bvh(shared_data: Path) -> None:
    [motion] = read_motion(shared_data / "mocap/bvhtoolbox/test_mocapbank.bvh")
    assert motion.num_frames == 455
    assert motion.source_convention["rotation_orders"] == ["ZXY"]
    assert "LeftAnkle_end" in motion.names  # the toe of this rig is an End Site
    ankle_end = motion.positions[:, motion.index("LeftAnkle_end")]
    assert abs(np.percentile(ankle_end[:, 2], 2)) < 0.04


MALFORMED = {
    "missing_brace": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n"
                      "MOTION\nFrames: 1\nFrame Time: 0.1\n0 0 0\n", 5, "unexpected end of file"),
    "unknown_channel": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 2 Xposition Wrotation\n}\n"
                        "MOTION\nFrames: 1\nFrame Time: 0.1\n0 0\n", 5, "unknown channel 'Wrotation'"),
    "bad_offset": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 zero 0\n  CHANNELS 1 Xposition\n}\n"
                   "MOTION\nFrames: 1\nFrame Time: 0.1\n0\n", 4, "expected a number for OFFSET y"),
    "non_numeric_frame": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 2 Xposition Yposition\n}\n"
                          "MOTION\nFrames: 2\nFrame Time: 0.1\n0 0\n0 abc\n", 11, "non-numeric"),
    "too_few_frames": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 2 Xposition Yposition\n}\n"
                       "MOTION\nFrames: 3\nFrame Time: 0.1\n0 0\n0 1\n", 11, "declares 3 frames but only 2"),
    "bad_frame_time": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 1 Xposition\n}\n"
                       "MOTION\nFrames: 2\nFrame Time: -1\n0\n1\n", 9, "Frame Time"),
    "nan_frame": ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 2 Xposition Yposition\n}\n"
                  "MOTION\nFrames: 3\nFrame Time: 0.1\n0 1\n0 nan\n0 1\n", 11, "non-finite"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_bvh_names_file_and_line(case: str, tmp_path: Path) -> None:
    text, line, words = MALFORMED[case]
    path = tmp_path / f"{case}.bvh"
    path.write_text(text)
    with pytest.raises(MotionFormatError) as info:
        read_bvh(path)
    message = str(info.value)
    assert f"{path}:{line}" in message and words in message
    assert info.value.line == line


def test_wrong_value_count_in_a_frame_line() -> None:
    with pytest.raises(MotionFormatError, match=r"malformed_frame.bvh:20 \(frame 1\): frame has 8 values"):
        read_bvh(FIX / "malformed_frame.bvh")


def test_clip_shorter_than_two_frames_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "one.bvh"
    path.write_text("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition Yposition Zposition\n}\n"
                    "MOTION\nFrames: 1\nFrame Time: 0.1\n0 90 0\n")
    with pytest.raises(MotionFormatError, match=r"one\.bvh: clip has 1 frame"):
        read_bvh(path)
