"""Joint mapping: rig recognition by name, mapping files and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mimicdata.motion import KEYPOINTS, MappingError, read_motion, recognise_rig, resolve_mapping
from mimicdata.motion.bvh import read_bvh
from mimicdata.motion.mapping import load_mapping_file, split_side

FIX = Path(__file__).parent / "fixtures" / "motion"

SIDES = ("Left", "Right")
MIXAMO = ["mixamorig:Hips"] + [f"mixamorig:{s}{p}" for s in SIDES for p in
                               ("UpLeg", "Leg", "Foot", "ToeBase", "Shoulder", "Arm", "ForeArm", "Hand")]
MOCAPBANK = ["Hips", "Chest"] + [f"{s}{p}" for s in SIDES for p in
                                 ("Hip", "Knee", "Ankle", "Ankle_end", "Collar", "Shoulder", "Elbow", "Wrist")]
RIGIFY = ["hips"] + [f"{p}.{s[0]}" for s in SIDES for p in
                     ("thigh", "shin", "foot", "toe", "upper_arm", "forearm", "hand")]
UNREAL = ["pelvis"] + [f"{p}_{s[0].lower()}" for s in SIDES for p in
                       ("thigh", "calf", "foot", "ball", "upperarm", "lowerarm", "hand", "clavicle")]
SMPL = ["pelvis"] + [f"{s.lower()}_{p}" for s in SIDES for p in
                     ("hip", "knee", "ankle", "foot", "collar", "shoulder", "elbow", "wrist")]


@pytest.mark.parametrize(("names", "rig", "expect"), [
    (MIXAMO, "cmu_mixamo", {"left_hip": "mixamorig:LeftUpLeg", "left_shoulder": "mixamorig:LeftArm",
                            "right_toe": "mixamorig:RightToeBase"}),
    (MOCAPBANK, "mocapbank", {"left_shoulder": "LeftShoulder", "left_toe": "LeftAnkle_end",
                              "right_wrist": "RightWrist"}),
    (RIGIFY, "anatomical", {"left_hip": "thigh.L", "right_elbow": "forearm.R", "left_toe": "toe.L"}),
    (UNREAL, "anatomical", {"left_knee": "calf_l", "right_toe": "ball_r", "right_shoulder": "upperarm_r"}),
    (SMPL, "smpl", {"left_toe": "left_foot", "left_ankle": "left_ankle", "right_shoulder": "right_shoulder"}),
])
def test_common_rigs_are_recognised_without_configuration(names: list[str], rig: str, expect: dict) -> None:
    mapping = recognise_rig(names)
    assert mapping.rig == rig
    assert set(mapping.points) == set(KEYPOINTS) - {"pelvis"}
    for key, value in expect.items():
        assert mapping.points[key] == value


def test_side_parsing() -> None:
    assert split_side("mixamorig:LeftUpLeg") == ("left", "upleg")
    assert split_side("upper_arm.R") == ("right", "upperarm")
    assert split_side("calf_l") == ("left", "calf")
    assert split_side("L_Knee") == ("left", "knee")
    assert split_side("HandRight") == ("right", "hand")
    assert split_side("Hips") == (None, "hips")


def test_real_skeletons_are_recognised(shared_data: Path) -> None:
    mocap = shared_data / "mocap"
    assert recognise_rig(read_bvh(mocap / "bvhtools/test2.bvh", stop=5).names).rig == "cmu_mixamo"
    assert recognise_rig(read_bvh(mocap / "bvhtoolbox/test_mocapbank.bvh", stop=5).names).rig == "mocapbank"
    names = (mocap / "holosoma_climb/joint_names.txt").read_text().split()
    mapping = recognise_rig(names)
    assert mapping.rig == "cmu_mixamo" and mapping.points["left_toe"] == "LeftToeBase"


def test_pelvis_is_the_hip_midpoint(shared_data: Path) -> None:
    [motion] = read_motion(shared_data / "mocap/bvhtools/test1.bvh", None)
    kp = recognise_rig(motion.names).keypoint_positions(motion)
    mid = 0.5 * (motion.positions[:, motion.index("LeftUpLeg")] + motion.positions[:, motion.index("RightUpLeg")])
    np.testing.assert_allclose(kp[:, 0], mid)
    np.testing.assert_allclose(kp[:, KEYPOINTS.index("right_wrist")], motion.positions[:, motion.index("RightHand")])


def test_unmappable_skeleton_lists_what_it_lacks() -> None:
    with pytest.raises(MappingError) as info:
        recognise_rig(["root", "LeftUpLeg", "LeftLeg", "LeftFoot", "RightUpLeg", "RightLeg", "RightFoot"], "x.bvh")
    message = str(info.value)
    assert message.startswith("x.bvh: skeleton not recognised")
    assert "'cmu_mixamo'" in message and "left_toe (e.g. LeftToeBase or LeftToe)" in message
    assert "left_wrist" in message and "left_hip" not in message.split("lacks:")[1].split(".")[0]


def test_mapping_file_maps_a_custom_skeleton() -> None:
    with pytest.raises(MappingError, match="skeleton not recognised"):
        resolve_mapping(read_bvh(FIX / "hand_fk_yup.bvh"))  # one leg, no arms: neither names nor hierarchy
    motion = read_bvh(FIX / "custom_rig.bvh")
    mapping = resolve_mapping(motion, FIX / "custom_rig_map.yaml")
    assert mapping.rig == "file:custom_rig_map.yaml" and mapping.points["left_knee"] == "leg_b"
    kp = mapping.keypoint_positions(motion)
    np.testing.assert_allclose(kp[0, KEYPOINTS.index("left_hip")], [0.09, 0, 0.94])


def test_mapping_file_errors_name_file_and_line(tmp_path: Path) -> None:
    motion = read_bvh(FIX / "custom_rig.bvh")
    with pytest.raises(MappingError, match=r"bad_map_unknown_joint.yaml:8: joint name\(s\) not in .*custom_rig.bvh: "
                                           r"'LeftToeBase' \(for right_toe, line 8\)"):
        resolve_mapping(motion, FIX / "bad_map_unknown_joint.yaml")
    with pytest.raises(MappingError, match=r"bad_map_unknown_keypoint.yaml:5: unknown key point 'left_heel'"):
        load_mapping_file(FIX / "bad_map_unknown_keypoint.yaml")
    partial = tmp_path / "partial.json"
    partial.write_text('{"keypoints": {"left_hip": "leg_a"}}')
    with pytest.raises(MappingError, match=r"partial.json: mapping lacks key point\(s\) \['right_hip'"):
        load_mapping_file(partial)
    broken = tmp_path / "broken.yaml"
    broken.write_text("left_hip: [leg_a\n")
    with pytest.raises(MappingError, match=r"broken\.yaml:2: not valid YAML"):
        load_mapping_file(broken)
