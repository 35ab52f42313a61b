"""Rigs recognised from their hierarchy: real skeletons, synthetic BVH rigs (renamed, fingers, End Sites only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mimicdata.motion import MappingError, resolve_mapping
from mimicdata.motion.bvh import read_bvh
from mimicdata.motion.mapping import JointMapping, load_mapping_file, recognise_rig, topology_mapping
from mimicdata.motion.positions import read_positions
from mimicdata.motion.topology import TopologyError, find_humanoid

FIX = Path(__file__).parent / "fixtures" / "motion"
REAL_BVH = ["bvhtools/test1.bvh", "bvhtools/test2.bvh", "bvhtoolbox/test_mocapbank.bvh"]

# Role -> name template; {S} Left/Right, {s} L/R, {l} left/right. A role set to None is left out of the rig.
CMU = {"pelvis": "Hips", "spine": "Spine", "chest": "Spine1", "neck": "Neck", "head": "Head", "hipjoint": None,
       "thigh": "{S}UpLeg", "shin": "{S}Leg", "foot": "{S}Foot", "toe": "{S}ToeBase", "clavicle": "{S}Shoulder",
       "upperarm": "{S}Arm", "forearm": "{S}ForeArm", "hand": "{S}Hand", "finger": "{S}Hand{f}{k}"}
BLENDER_ISSUE = {"pelvis": "pelvis", "spine": "spine", "chest": "chest", "neck": "neck", "head": "head",
                 "hipjoint": None, "thigh": "thigh.{s}", "shin": "shin.{s}", "foot": "foot.{s}", "toe": None,
                 "clavicle": None, "upperarm": "upper_arm.{s}", "forearm": "forearm.{s}", "hand": None}
# Rigify metarig: a root bone on the floor, short side bones (pelvis.L, breast.L, heel.02.L) beside the limbs.
RIGIFY = {**BLENDER_ISSUE, "reference": "root", "pelvis": "spine", "spine": "spine.001", "chest": "spine.003",
          "neck": "spine.004", "head": "spine.006", "toe": "toe.{s}", "clavicle": "shoulder.{s}", "hand": "hand.{s}",
          "finger": "f_{f}.0{k}.{s}", "extras": "{{part}}.{s}"}
SMPL = {"pelvis": "pelvis", "spine": "spine1", "chest": "spine3", "neck": "neck", "head": "head", "hipjoint": None,
        "thigh": "{l}_hip", "shin": "{l}_knee", "foot": "{l}_ankle", "toe": "{l}_foot", "clavicle": "{l}_collar",
        "upperarm": "{l}_shoulder", "forearm": "{l}_elbow", "hand": "{l}_wrist"}
SMPL_BVH = {**SMPL, **{k: "{s}_" + v.removeprefix("{l}_").capitalize() for k, v in SMPL.items() if v and "{l}" in v}}
SMPL_FBX = {k: f"m_avg_{v}" if v else v for k, v in SMPL_BVH.items()}  # m_avg_L_Hip: side not parsed, geometry
LAFAN = {**CMU, "toe": "{S}Toe"}
CMU_ORIGINAL = {**CMU, "hipjoint": "{s}HipJoint"}  # Hips -> LHipJoint (zero offset) -> LeftUpLeg
MOCAPBANK_ENDS = {"pelvis": "Hips", "spine": "Chest", "chest": "Chest2", "neck": "Neck", "head": "Head",
                  "hipjoint": None, "thigh": "{S}Hip", "shin": "{S}Knee", "foot": "{S}Ankle", "toe": None,
                  "clavicle": "{S}Collar", "upperarm": "{S}Shoulder", "forearm": "{S}Elbow", "hand": "{S}Wrist"}
ANONYMOUS = {role: (f"j_{role}_{{s}}" if role not in ("pelvis", "spine", "chest", "neck", "head") else f"j_{role}")
             for role in CMU}
ANONYMOUS["hipjoint"] = None
ANONYMOUS["finger"] = "j_{f}{k}_{s}"
FINGERS = ("Thumb", "Index", "Middle", "Ring", "Pinky")


def _name(template: str, side: str, **extra: object) -> str:
    return template.format(S=side.capitalize(), s=side[0].upper(), l=side, **extra)


def humanoid_bvh(rig: dict[str, str | None], *, fingers: bool = False, facing_deg: float = 0.0, frames: int = 20,
                 seed: int = 0) -> str:
    """A BVH text (cm, Y-up, facing +Z so the character's left is +X) of a walking-ish humanoid."""
    lines = ["HIERARCHY"]
    channels: list[int] = []

    def joint(name: str, offset: tuple[float, float, float], children: list, depth: int, root: bool = False) -> None:
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if root else 'JOINT'} {name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]:.4f} {offset[1]:.4f} {offset[2]:.4f}")
        if root:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Yrotation Xrotation Zrotation")
            channels.append(6)
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
            channels.append(3)
        for child in children:
            if child[0] is None:  # End Site
                lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {child[1][0]:.4f} "
                              f"{child[1][1]:.4f} {child[1][2]:.4f}", f"{pad}  }}"])
            else:
                joint(child[0], child[1], child[2], depth + 1)
        lines.append(f"{pad}}}")

    def chain(parts: list[tuple[str | None, tuple[float, float, float]]], tail: list) -> list:
        """Nested children for a chain of (name or None = skip, offset); skipped offsets pass to the next."""
        carry = np.zeros(3)
        nodes: list[tuple[str, tuple[float, float, float]]] = []
        for name, off in parts:
            carry = carry + np.array(off)
            if name is not None:
                nodes.append((name, tuple(carry)))
                carry = np.zeros(3)
        if np.any(carry) or not tail:
            tail = [(None, tuple(carry), [])]
        out = tail
        for name, off in reversed(nodes):
            out = [(name, off, out)]
        return out

    def extra(part: str, side: str, offset: tuple[float, float, float]) -> list:
        if not rig.get("extras"):
            return []
        sx = 1.0 if side == "left" else -1.0
        name = _name(rig["extras"], side).format(part=part)
        return [(name, (sx * offset[0], offset[1], offset[2]), [(None, (sx * 3.0, 0.0, 4.0), [])])]

    def leg(side: str) -> list:
        x = 9.0 if side == "left" else -9.0
        parts = [(_name(rig["hipjoint"], side) if rig["hipjoint"] else None, (0.0, 0.0, 0.0)),
                 (_name(rig["thigh"], side), (x, -6.0, 0.0)), (_name(rig["shin"], side), (0.0, -42.0, 1.0)),
                 (_name(rig["foot"], side), (0.0, -41.0, -2.0)),
                 (_name(rig["toe"], side) if rig["toe"] else None, (0.0, -7.0, 13.0))]
        nodes = chain(parts, [(None, (0.0, 0.0, 5.0), [])] if rig["toe"] else [])
        if rig.get("extras"):  # heel.02 beside the toe, under the foot
            foot = nodes[0]
            while foot[0] != _name(rig["foot"], side):
                foot = foot[2][0]
            foot[2].extend(extra("heel.02", side, (0.0, -2.0, -6.0)))
        return nodes

    def arm(side: str) -> list:
        sx = 1.0 if side == "left" else -1.0
        hand_tail: list = []
        if rig["hand"] and fingers:
            hand_tail = []
            for i, f in enumerate(FINGERS):
                finger = [(_name(rig["finger"], side, f=f, k=k), (sx * (3.0 if k == 1 else 2.5), -1.0,
                                                                   (i - 2) * 1.8)) for k in (1, 2, 3)]
                hand_tail += chain(finger, [(None, (sx * 2.0, -0.5, 0.0), [])])
        elif rig["hand"]:
            hand_tail = [(None, (sx * 3.0, -8.0, 0.0), [])]
        parts = [(_name(rig["clavicle"], side) if rig["clavicle"] else None, (sx * 4.0, 18.0, 0.0)),
                 (_name(rig["upperarm"], side), (sx * 13.0, 0.0, 0.0)),
                 (_name(rig["forearm"], side), (sx * 10.0, -26.0, 0.0)),
                 (_name(rig["hand"], side) if rig["hand"] else None, (sx * 8.0, -24.0, 2.0))]
        return chain(parts, hand_tail)

    head = [(rig["head"], (0.0, 10.0, 1.0), [(None, (0.0, 16.0, 0.0), [])])]
    chest_kids = [(rig["neck"], (0.0, 20.0, 0.0), head), *arm("left"), *arm("right"),
                  *extra("breast", "left", (10.0, 5.0, 8.0)), *extra("breast", "right", (10.0, 5.0, 8.0))]
    spine = [(rig["spine"], (0.0, 10.0, 0.0), [(rig["chest"], (0.0, 22.0, -1.0), chest_kids)])]
    hips = [*leg("left"), *leg("right"), *spine, *extra("pelvis", "left", (10.0, 5.0, 5.0)),
            *extra("pelvis", "right", (10.0, 5.0, 5.0))]
    if rig.get("reference"):  # a floor-level root above the pelvis
        joint(rig["reference"], (0.0, 0.0, 0.0), [(rig["pelvis"], (0.0, 0.0, 0.0), hips)], 0, root=True)
    else:
        joint(rig["pelvis"], (0.0, 0.0, 0.0), hips, 0, root=True)
    rng = np.random.default_rng(seed)
    values = rng.uniform(-8.0, 8.0, (frames, sum(channels)))
    t = np.arange(frames)
    forward = np.array([np.sin(np.deg2rad(facing_deg)), np.cos(np.deg2rad(facing_deg))])
    values[:, 0] = 3.0 * t * forward[0]
    values[:, 1] = 95.0 + rng.uniform(-1, 1, frames)
    values[:, 2] = 3.0 * t * forward[1]
    values[:, 3] = facing_deg + values[:, 3]
    body = "\n".join(" ".join(f"{v:.4f}" for v in row) for row in values)
    return "\n".join(lines) + f"\nMOTION\nFrames: {frames}\nFrame Time: 0.0333333\n{body}\n"


def expected(rig: dict[str, str | None]) -> dict[str, str]:
    out = {}
    for side in ("left", "right"):
        foot, forearm = _name(rig["foot"], side), _name(rig["forearm"], side)
        out.update({f"{side}_hip": _name(rig["thigh"], side), f"{side}_knee": _name(rig["shin"], side),
                    f"{side}_ankle": foot, f"{side}_toe": _name(rig["toe"], side) if rig["toe"] else f"{foot}_end",
                    f"{side}_shoulder": _name(rig["upperarm"], side), f"{side}_elbow": forearm,
                    f"{side}_wrist": _name(rig["hand"], side) if rig["hand"] else f"{forearm}_end"})
    return out


def write(tmp_path: Path, text: str, name: str = "rig.bvh") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("rel", REAL_BVH)
def test_real_skeletons_hierarchy_agrees_with_names(shared_data: Path, rel: str) -> None:
    motion = read_bvh(shared_data / "mocap" / rel, stop=120)
    by_names = recognise_rig(motion.names).points
    assert topology_mapping(motion).points == by_names
    # Geometry alone (no name hints at all) finds the same points and sides.
    found = find_humanoid(motion.parents, motion.positions)
    assert {k: motion.names[j] for k, j in found.keypoints().items()} == by_names
    assert motion.names[found.pelvis] == "Hips"
    assert resolve_mapping(motion).rig in ("cmu_mixamo", "mocapbank")  # known rigs map as before


def test_point_cloud_skeleton_still_maps_by_names(shared_data: Path) -> None:
    motion = read_positions(shared_data / "mocap/holosoma_climb/mocap_climb_seq_0_joint_positions_f900-3700.npy",
                            fps=30.0)
    assert motion.parents is None  # joint positions carry no hierarchy: names decide
    mapping = resolve_mapping(motion)
    assert mapping.rig == "cmu_mixamo" and mapping.points["left_toe"] == "LeftToeBase"
    with pytest.raises(TopologyError, match="no hierarchy"):
        topology_mapping(motion)


@pytest.mark.parametrize(("rig", "fingers"), [
    (BLENDER_ISSUE, False), (RIGIFY, True), (SMPL, False), (SMPL_BVH, False), (SMPL_FBX, False), (LAFAN, False),
    (CMU_ORIGINAL, True), (MOCAPBANK_ENDS, False), (CMU, True), (ANONYMOUS, True), (ANONYMOUS, False),
    ({**ANONYMOUS, "extras": "j_{{part}}_{s}", "reference": "j_root", "toe": None, "hand": None}, True),
], ids=["blender_issue", "rigify_fingers", "smpl", "smpl_bvh", "smpl_fbx", "lafan", "cmu_hipjoint_fingers",
        "mocapbank_end_sites", "mixamo_fingers", "renamed_fingers", "renamed", "renamed_side_bones_end_sites"])
def test_synthetic_rigs_need_no_mapping_file(tmp_path: Path, rig: dict, fingers: bool) -> None:
    motion = read_bvh(write(tmp_path, humanoid_bvh(rig, fingers=fingers)))
    mapping = resolve_mapping(motion)
    assert mapping.points == expected(rig)


def test_blender_rig_from_the_issue_is_recognised_by_its_hierarchy(tmp_path: Path) -> None:
    motion = read_bvh(write(tmp_path, humanoid_bvh(BLENDER_ISSUE)))
    with pytest.raises(MappingError):
        recognise_rig(motion.names)  # names alone lack toes and wrists: End Sites
    mapping = resolve_mapping(motion)
    assert mapping.rig == "topology"
    assert mapping.points["left_toe"] == "foot.L_end" and mapping.points["right_wrist"] == "forearm.R_end"
    assert mapping.points["left_hip"] == "thigh.L" and mapping.points["right_elbow"] == "forearm.R"
    kp = mapping.keypoint_positions(motion)
    assert np.isfinite(kp).all() and kp.shape == (motion.num_frames, 15, 3)


@pytest.mark.parametrize("facing", [0.0, 90.0, 180.0, -135.0])
def test_renamed_rig_sides_come_from_geometry_whichever_way_it_faces(tmp_path: Path, facing: float) -> None:
    motion = read_bvh(write(tmp_path, humanoid_bvh(ANONYMOUS, fingers=True, facing_deg=facing, seed=3)))
    assert resolve_mapping(motion).points == expected(ANONYMOUS)


def test_a_reference_root_far_from_the_body_does_not_matter(tmp_path: Path) -> None:
    motion = read_bvh(write(tmp_path, humanoid_bvh(ANONYMOUS, fingers=True)))
    far = np.broadcast_to([5.0, 8.0, 0.0], (motion.num_frames, 1, 3))  # a world-origin root, metres away
    parents = [-1] + [p + 1 if p >= 0 else 0 for p in motion.parents]
    found = find_humanoid(parents, np.concatenate([far, motion.positions], axis=1)).keypoints()
    assert {k: motion.names[j - 1] for k, j in found.items()} == expected(ANONYMOUS)


def test_renamed_rig_upside_down_keeps_its_sides(tmp_path: Path) -> None:
    motion = read_bvh(write(tmp_path, humanoid_bvh(ANONYMOUS, fingers=True, seed=5)))
    handstand = motion.positions * np.array([1.0, -1.0, -1.0])  # turned 180 deg about x: hands below feet
    found = find_humanoid(motion.parents, handstand).keypoints()
    assert {k: motion.names[j] for k, j in found.items()} == expected(ANONYMOUS)


def test_names_decide_sides_when_they_say_them(tmp_path: Path) -> None:
    # .L/.R written the other way round from the geometry: the names are believed.
    text = humanoid_bvh(BLENDER_ISSUE).replace(".L", ".X").replace(".R", ".L").replace(".X", ".R")
    motion = read_bvh(write(tmp_path, text))
    points = resolve_mapping(motion).points
    assert points["left_hip"] == "thigh.L" and points["left_wrist"] == "forearm.L_end"
    # ... and thigh.L is the chain at -X (the geometric right) in this file.
    assert motion.positions[0, motion.index("thigh.L"), 0] < motion.positions[0, motion.index("thigh.R"), 0]


def test_custom_rig_hierarchy_matches_its_mapping_file() -> None:
    motion = read_bvh(FIX / "custom_rig.bvh")
    from_file = {k: n for k, (n, _) in load_mapping_file(FIX / "custom_rig_map.yaml").items()}
    assert resolve_mapping(motion).points == from_file
    # A mapping file still overrides: here one that swaps the arms.
    assert resolve_mapping(motion, FIX / "custom_rig_map.yaml").rig == "file:custom_rig_map.yaml"


def test_names_that_contradict_the_hierarchy_give_way_to_it(tmp_path: Path) -> None:
    # A broken export: the hands' names swapped, so "LeftHand" hangs below RightForeArm. Names alone
    # would put the left wrist on the right arm; the hierarchy keeps each limb on one chain.
    text = humanoid_bvh(CMU).replace("LeftHand", "Tmp").replace("RightHand", "LeftHand").replace("Tmp", "RightHand")
    motion = read_bvh(write(tmp_path, text))
    assert recognise_rig(motion.names).points["left_wrist"] == "LeftHand"
    mapping = resolve_mapping(motion)
    assert mapping.rig == "topology"
    assert mapping.points["left_wrist"] == "RightHand" and mapping.points["left_elbow"] == "LeftForeArm"
    assert mapping.points["right_wrist"] == "LeftHand" and mapping.points["left_hip"] == "LeftUpLeg"


def test_legless_rig_gets_one_error_listing_what_is_missing(tmp_path: Path) -> None:
    text = humanoid_bvh(CMU)
    # Cut both legs: keep the root's spine only.
    motion = read_bvh(write(tmp_path, text))
    keep = [i for i, n in enumerate(motion.names) if "Leg" not in n and "Foot" not in n and "Toe" not in n]
    legless = type(motion)(names=[motion.names[i] for i in keep], positions=motion.positions[:, keep], fps=motion.fps,
                           parents=[keep.index(motion.parents[i]) if motion.parents[i] >= 0 else -1 for i in keep],
                           source="legless.bvh")
    with pytest.raises(MappingError) as info:
        resolve_mapping(legless)
    message = str(info.value)
    assert message.startswith("legless.bvh: skeleton not recognised") and "left_hip (e.g. LeftUpLeg" in message
    assert "hierarchy does not settle it either: expected two mirrored pairs" in message
    assert "--map" in message


def test_feet_without_forward_direction_and_no_names_is_ambiguous() -> None:
    # Two legs whose "toes" point straight down and two arms, no names: nothing says which is left.
    points = {0: (-1, (0, 0, 1.0)),
              1: (0, (0.1, 0, 1.0)), 2: (1, (0.1, 0, 0.55)), 3: (2, (0.1, 0, 0.1)), 4: (3, (0.1, 0, 0.0)),
              5: (0, (-0.1, 0, 1.0)), 6: (5, (-0.1, 0, 0.55)), 7: (6, (-0.1, 0, 0.1)), 8: (7, (-0.1, 0, 0.0)),
              9: (0, (0, 0, 1.5)), 10: (9, (0.2, 0, 1.5)), 11: (10, (0.2, 0, 1.2)), 12: (11, (0.2, 0, 0.95)),
              13: (9, (-0.2, 0, 1.5)), 14: (13, (-0.2, 0, 1.2)), 15: (14, (-0.2, 0, 0.95)), 16: (9, (0, 0, 1.8))}
    parents = [points[j][0] for j in range(len(points))]
    pose = np.array([points[j][1] for j in range(len(points))], float)
    with pytest.raises(TopologyError, match="cannot tell the left legs from the right"):
        find_humanoid(parents, np.repeat(pose[None], 3, axis=0))
    # The same skeleton with its toes pointing forward (-y here) is settled by geometry.
    pose[[4, 8], 1] = -0.12
    found = find_humanoid(parents, np.repeat(pose[None], 3, axis=0)).keypoints()
    assert found["left_hip"] == 1 and found["left_shoulder"] == 10  # facing -y, the left is +x


def test_mapping_result_type_is_unchanged() -> None:
    mapping = recognise_rig(["mixamorig:Hips"] + [f"mixamorig:{s}{p}" for s in ("Left", "Right") for p in
                                                  ("UpLeg", "Leg", "Foot", "ToeBase", "Arm", "ForeArm", "Hand")])
    assert isinstance(mapping, JointMapping) and mapping.rig == "cmu_mixamo"
