"""Unitree G1: motor table, actuator gains from formulas, robot descriptions and a MuJoCo model.

This module is the one source of the G1 constants. ``schemas/robots/g1_29dof.json`` and
``g1_23dof.json`` are generated from it (``python -m mimicdata.robots.g1 [OUT_DIR]``) and a test
checks that the files still match.

Gains follow BeyondMimic / mjlab: every joint is a critically over-damped second-order system
around its reflected rotor inertia (armature) with natural frequency 10 Hz and damping ratio 2::

    K = armature * w**2,  D = 2 * zeta * armature * w,  w = 2*pi*10 Hz,  zeta = 2
    action_scale = 0.25 * effort_limit / K

Ankles and waist roll/pitch are driven by two 5020 motors through a four-bar linkage: armature,
gains and effort limit double, the velocity limit does not.

``mujoco`` is imported lazily (only :func:`build_g1_model` needs it) so that importing this module
stays cheap.
"""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mimicdata.errors import SchemaError
from mimicdata.robots import G1_MJCF, mjcf_path

if TYPE_CHECKING:  # pragma: no cover
    import mujoco

NATURAL_FREQ_HZ = 10.0
DAMPING_RATIO = 2.0
ACTION_SCALE_FACTOR = 0.25
ROOT_BODY = "pelvis"
ANCHOR_BODY = "torso_link"  # BeyondMimic's motion anchor
IMU_GYRO_SENSOR = "imu_ang_vel"


@dataclass(frozen=True)
class Motor:
    """One Unitree motor type: reflected rotor inertia and limits at the joint (single motor)."""

    name: str
    armature: float  # kg*m^2, reflected through the gearbox
    effort_limit: float  # N*m
    velocity_limit: float  # rad/s


# Armatures as published by BeyondMimic (whole_body_tracking/robots/g1.py); limits from Unitree's
# G1 specification as used there and in mjlab.
MOTORS: dict[str, Motor] = {
    m.name: m
    for m in (
        Motor("5020", armature=0.003609725, effort_limit=25.0, velocity_limit=37.0),
        Motor("7520_14", armature=0.010177520, effort_limit=88.0, velocity_limit=32.0),
        Motor("7520_22", armature=0.025101925, effort_limit=139.0, velocity_limit=20.0),
        Motor("4010", armature=0.00425, effort_limit=5.0, velocity_limit=22.0),
    )
}

# (joint suffix, motor type, motors per joint). Side prefixes are added below.
_LEG = (
    ("hip_pitch", "7520_14", 1),
    ("hip_roll", "7520_22", 1),
    ("hip_yaw", "7520_14", 1),
    ("knee", "7520_22", 1),
    ("ankle_pitch", "5020", 2),
    ("ankle_roll", "5020", 2),
)
_WAIST = (("waist_yaw", "7520_14", 1), ("waist_roll", "5020", 2), ("waist_pitch", "5020", 2))
_ARM = (
    ("shoulder_pitch", "5020", 1),
    ("shoulder_roll", "5020", 1),
    ("shoulder_yaw", "5020", 1),
    ("elbow", "5020", 1),
    ("wrist_roll", "5020", 1),
    ("wrist_pitch", "4010", 1),
    ("wrist_yaw", "4010", 1),
)


def _joint_table() -> dict[str, tuple[str, int]]:
    table: dict[str, tuple[str, int]] = {}
    for side in ("left", "right"):
        for suffix, motor, count in _LEG:
            table[f"{side}_{suffix}_joint"] = (motor, count)
    for suffix, motor, count in _WAIST:
        table[f"{suffix}_joint"] = (motor, count)
    for side in ("left", "right"):
        for suffix, motor, count in _ARM:
            table[f"{side}_{suffix}_joint"] = (motor, count)
    return table


#: joint name -> (motor type, motors per joint), in Unitree SDK order (== MJCF depth-first order).
JOINT_MOTORS: dict[str, tuple[str, int]] = _joint_table()
G1_29DOF_JOINTS: tuple[str, ...] = tuple(JOINT_MOTORS)
#: Joints the 23-DoF G1 does not have (its waist is yaw-only, its wrists roll-only).
G1_23DOF_DROPPED: tuple[str, ...] = (
    "waist_roll_joint",
    "waist_pitch_joint",
    "left_wrist_pitch_joint",
    "left_wrist_yaw_joint",
    "right_wrist_pitch_joint",
    "right_wrist_yaw_joint",
)
G1_23DOF_JOINTS: tuple[str, ...] = tuple(j for j in G1_29DOF_JOINTS if j not in G1_23DOF_DROPPED)

ROBOT_JOINTS: dict[str, tuple[str, ...]] = {"g1_29dof": G1_29DOF_JOINTS, "g1_23dof": G1_23DOF_JOINTS}

# Knees-bent standing pose of BeyondMimic / mjlab (KNEES_BENT_KEYFRAME); other joints are zero.
_STANDING_POSE = {
    "left_hip_pitch_joint": -0.312,
    "right_hip_pitch_joint": -0.312,
    "left_knee_joint": 0.669,
    "right_knee_joint": 0.669,
    "left_ankle_pitch_joint": -0.363,
    "right_ankle_pitch_joint": -0.363,
    "left_elbow_joint": 0.6,
    "right_elbow_joint": 0.6,
    "left_shoulder_roll_joint": 0.2,
    "left_shoulder_pitch_joint": 0.2,
    "right_shoulder_roll_joint": -0.2,
    "right_shoulder_pitch_joint": 0.2,
}
DEFAULT_JOINT_POS: dict[str, float] = {j: _STANDING_POSE.get(j, 0.0) for j in G1_29DOF_JOINTS}
#: Pelvis height of the standing pose with the feet on flat ground (mjlab uses 0.76).
STANDING_PELVIS_HEIGHT = 0.76

_FIELDS = ("stiffness", "damping", "armature", "effort_limit", "velocity_limit", "action_scale")


def robot_joints(robot: str) -> tuple[str, ...]:
    """Joint names of ``robot`` (``"g1_29dof"`` or ``"g1_23dof"``) in SDK order.

    Raises :class:`~mimicdata.errors.SchemaError` (a ``ValueError``) for any other name.
    """
    try:
        return ROBOT_JOINTS[robot]
    except KeyError:
        known = ", ".join(sorted(ROBOT_JOINTS))
        raise SchemaError(f"unknown G1 robot {robot!r}; known: {known}") from None


def pd_gains(armature: Any, natural_frequency_hz: float = NATURAL_FREQ_HZ,
             damping_ratio: float = DAMPING_RATIO) -> tuple[Any, Any]:
    """Stiffness K and damping D of a joint of reflected inertia ``armature`` (a number or an array).

    The one place the formulas are written: ``w = 2*pi*f``, ``K = armature * w**2``,
    ``D = 2 * zeta * armature * w`` (mjlab / BeyondMimic).
    """
    omega = 2.0 * math.pi * natural_frequency_hz
    return armature * omega**2, 2.0 * damping_ratio * armature * omega


def action_scale(effort_limit: Any, stiffness: Any, factor: float = ACTION_SCALE_FACTOR) -> Any:
    """Radians per unit of raw policy action: ``factor * effort_limit / K`` (a full action asks for
    ``factor`` of the torque limit at zero velocity)."""
    return factor * effort_limit / stiffness


def joint_actuator(joint: str, *, natural_frequency_hz: float = NATURAL_FREQ_HZ, damping_ratio: float = DAMPING_RATIO,
                   action_scale_factor: float = ACTION_SCALE_FACTOR) -> dict[str, Any]:
    """Actuator constants of one G1 joint, computed from its motor type (:func:`pd_gains`, :func:`action_scale`).

    Returns a dict with ``motor``, ``motor_count``, ``armature``, ``stiffness``, ``damping``,
    ``effort_limit``, ``velocity_limit`` and ``action_scale``.
    """
    if joint not in JOINT_MOTORS:
        raise SchemaError(f"{joint!r} is not a G1 joint; G1 joints: {', '.join(JOINT_MOTORS)}")
    motor_name, count = JOINT_MOTORS[joint]
    motor = MOTORS[motor_name]
    armature = count * motor.armature
    stiffness, damping = pd_gains(armature, natural_frequency_hz, damping_ratio)
    effort = count * motor.effort_limit
    return {
        "motor": motor_name,
        "motor_count": count,
        "armature": armature,
        "stiffness": stiffness,
        "damping": damping,
        "effort_limit": effort,
        # Two motors in a linkage share the load; the joint is no faster than one motor.
        "velocity_limit": motor.velocity_limit,
        "action_scale": action_scale(effort, stiffness, action_scale_factor),
    }


def actuator_gains(robot: str = "g1_29dof", *, natural_frequency_hz: float = NATURAL_FREQ_HZ,
                   damping_ratio: float = DAMPING_RATIO,
                   action_scale_factor: float = ACTION_SCALE_FACTOR) -> dict[str, np.ndarray]:
    """Per-joint actuator constants of ``robot`` as float64 arrays in the robot's joint order.

    Keys: stiffness (N*m/rad), damping (N*m*s/rad), armature (kg*m^2), effort_limit (N*m),
    velocity_limit (rad/s), action_scale (rad per unit of raw action). The keyword arguments change
    the formula's parameters (a training task may); the defaults are the deployed controller's.
    """
    joints = robot_joints(robot)
    rows = [joint_actuator(j, natural_frequency_hz=natural_frequency_hz, damping_ratio=damping_ratio,
                           action_scale_factor=action_scale_factor) for j in joints]
    return {f: np.array([r[f] for r in rows], dtype=np.float64) for f in _FIELDS}


def default_joint_pos(robot: str = "g1_29dof") -> np.ndarray:
    """The standing pose of ``robot`` (rad, float64) in its joint order."""
    return np.array([DEFAULT_JOINT_POS[j] for j in robot_joints(robot)], dtype=np.float64)


def mjcf_file() -> Path:
    """Absolute path of the vendored G1 MJCF."""
    return mjcf_path("g1_29dof")


def parse_mjcf(path: Path | None = None) -> tuple[list[str], dict[str, list[float]]]:
    """Body names (model order, world excluded) and hinge ranges of the MJCF, without mujoco.

    MuJoCo numbers bodies in depth-first pre-order of the XML tree, which is what ``iter`` yields.
    """
    path = mjcf_file() if path is None else path
    worldbody = ET.parse(path).getroot().find("worldbody")
    if worldbody is None:
        raise SchemaError(f"{path}: no <worldbody>")
    bodies = [b.get("name", "") for b in worldbody.iter("body")]
    ranges: dict[str, list[float]] = {}
    for joint in worldbody.iter("joint"):
        name, rng = joint.get("name"), joint.get("range")
        if name is None or rng is None:
            raise SchemaError(f"{path}: joint {name!r} has no name or range")
        lo, hi = (float(v) for v in rng.split())
        ranges[name] = [lo, hi]
    return bodies, ranges


def robot_description(robot: str = "g1_29dof") -> dict[str, Any]:
    """The robot-description document written to ``schemas/robots/<robot>.json``."""
    joints = robot_joints(robot)
    bodies, ranges = parse_mjcf()
    if list(ranges) != list(G1_29DOF_JOINTS):
        raise SchemaError(f"{mjcf_file()}: joint order {list(ranges)} differs from the G1 SDK order")
    dropped = [j for j in G1_29DOF_JOINTS if j not in joints]
    description = (
        f"Unitree G1, {len(joints)} actuated joints in Unitree SDK order. "
        f"Gains from formulas: K = armature*(2*pi*{NATURAL_FREQ_HZ:g} Hz)^2, "
        f"D = 2*{DAMPING_RATIO:g}*armature*w, action_scale = {ACTION_SCALE_FACTOR:g}*effort_limit/K; "
        "motor_count 2 = two 5020 motors through a linkage (armature, gains, effort doubled)."
    )
    if dropped:
        description += f" Joints absent on this robot (held at default in simulation): {', '.join(dropped)}."
    return {
        "schema_format": 1,
        "name": robot,
        "version": "1.0",
        "description": description,
        "mjcf": G1_MJCF,
        "quat_order": "wxyz",
        "up_axis": "z",
        "root_body": ROOT_BODY,
        "parent": None if robot == "g1_29dof" else "g1_29dof",
        "joint_names": list(joints),
        "motor_names": list(G1_29DOF_JOINTS),
        "body_names": bodies,
        "qpos_names": ["root_x", "root_y", "root_z", "root_qw", "root_qx", "root_qy", "root_qz", *joints],
        "qvel_names": ["root_vx", "root_vy", "root_vz", "root_wx", "root_wy", "root_wz", *joints],
        "joints": {j: {"range": ranges[j], **joint_actuator(j)} for j in joints},
        "default_joint_pos": {j: DEFAULT_JOINT_POS[j] for j in joints},
        "actuation": {
            "natural_frequency_hz": NATURAL_FREQ_HZ,
            "damping_ratio": DAMPING_RATIO,
            "action_scale_factor": ACTION_SCALE_FACTOR,
            "motors": {
                m.name: {
                    "armature": m.armature,
                    "effort_limit": m.effort_limit,
                    "velocity_limit": m.velocity_limit,
                }
                for m in MOTORS.values()
            },
        },
    }


def write_descriptions(out_dir: Path) -> list[Path]:
    """Write ``g1_29dof.json`` and ``g1_23dof.json`` into ``out_dir``; returns the paths."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for robot in ROBOT_JOINTS:
        path = out_dir / f"{robot}.json"
        path.write_text(json.dumps(robot_description(robot), indent=2) + "\n")
        paths.append(path)
    return paths


def build_g1_model(robot: str = "g1_29dof", timestep: float = 0.005, floor: bool = True) -> mujoco.MjModel:
    """Compile the vendored G1 MJCF with armature and 29 position actuators.

    Each actuator (named after its joint, in SDK order) is a PD servo with kp = K and kv = D from
    :func:`actuator_gains` and force range +-effort_limit. ``floor`` adds a ground plane (the MJCF
    has none). A keyframe ``"stand"`` holds the standing pose; its ``ctrl`` is the default pose, so
    for ``g1_23dof`` the six absent joints are servoed to (and held at) their default.
    """
    import mujoco

    joints = robot_joints(robot)
    spec = mujoco.MjSpec.from_file(str(mjcf_file()))
    spec.option.timestep = timestep
    # PD damping D over armature is ~250/s: explicit Euler at 5 ms is near its stability edge, so
    # integrate actuator damping implicitly, as mjlab does.
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    if floor:
        spec.worldbody.add_geom(
            name="floor",
            type=mujoco.mjtGeom.mjGEOM_PLANE,
            size=[0.0, 0.0, 0.05],
            friction=[1.0, 0.005, 0.0001],
        )
    for joint in G1_29DOF_JOINTS:
        c = joint_actuator(joint)
        spec.joint(joint).armature = c["armature"]
        act = spec.add_actuator(name=joint, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=c["stiffness"], kv=c["damping"])
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-c["effort_limit"], c["effort_limit"]]
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
    # The 23-DoF G1 has a rigid waist and wrists: weld its absent joints at their default with joint
    # equality constraints (solved by the constraint solver, so they stay rigid under any load).
    for joint in G1_29DOF_JOINTS:
        if joint not in joints:
            spec.add_equality(
                name=f"hold_{joint}",
                type=mujoco.mjtEq.mjEQ_JOINT,
                objtype=mujoco.mjtObj.mjOBJ_JOINT,
                name1=joint,
                data=[DEFAULT_JOINT_POS[joint]] + [0.0] * 11,  # polycoef[0] = the held value
            )
    pose = [DEFAULT_JOINT_POS[j] for j in G1_29DOF_JOINTS]
    spec.add_key(name="stand", qpos=[0.0, 0.0, STANDING_PELVIS_HEIGHT, 1.0, 0.0, 0.0, 0.0, *pose], ctrl=pose)
    return spec.compile()


def _main(argv: list[str]) -> int:
    """``python -m mimicdata.robots.g1 [OUT_DIR]``: regenerate the robot JSON files."""
    if len(argv) > 1:
        print("usage: python -m mimicdata.robots.g1 [OUT_DIR]  (default: the schemas/robots folder)")
        return 2
    if argv:
        out_dir = Path(argv[0])
    else:
        from importlib.resources import files

        out_dir = Path(str(files("mimicdata_schemas"))) / "robots"
    for path in write_descriptions(out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
