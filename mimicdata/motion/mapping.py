"""Joint mapping: which point of a source skeleton is the hip, knee, ankle... of the key-point set.

Common rigs are recognised from their names (namespace prefixes such as ``mixamorig:`` stripped,
sides given as Left/Right prefixes or ``.L``/``_l`` style suffixes). Skeletons with a hierarchy
(BVH) whose names are not a known rig, or name a point where the hierarchy says otherwise, are
recognised from the hierarchy itself (:mod:`mimicdata.motion.topology`), the names serving as
hints. A mapping file (YAML or JSON, ``keypoint: source name``) overrides both; its mistakes are
reported with the file and line. The pelvis key point is always the midpoint of the two hips, so rigs that
put the root joint in different places (hip height, lower back) give the same target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from mimicdata.errors import ValidationError
from mimicdata.motion.topology import TopologyError, find_humanoid
from mimicdata.motion.types import HumanMotion

SIDED = ("hip", "knee", "ankle", "toe", "shoulder", "elbow", "wrist")
# Every key point a mapping must provide (pelvis is derived from the hips).
MAPPED_KEYPOINTS = tuple(f"{side}_{part}" for part in SIDED for side in ("left", "right"))
KEYPOINTS = ("pelvis", *MAPPED_KEYPOINTS)

# Rig name -> body part -> accepted base names (side and separators removed, lower case), best first.
RIGS: dict[str, dict[str, tuple[str, ...]]] = {
    # The robot's own bodies, for robot motions read back in (CSV, BeyondMimic, LocoMuJoCo).
    "unitree_g1": {"hip": ("hippitchlink",), "knee": ("kneelink",), "ankle": ("anklerolllink",),
                   "toe": ("toe",), "shoulder": ("shoulderrolllink",), "elbow": ("elbowlink",),
                   "wrist": ("wristyawlink",)},
    # CMU / Mixamo / LAFAN: LeftUpLeg, LeftLeg, LeftFoot, LeftToeBase, LeftArm, LeftForeArm, LeftHand.
    "cmu_mixamo": {"hip": ("upleg",), "knee": ("leg",), "ankle": ("foot",),
                   "toe": ("toebase", "toe", "toes"), "shoulder": ("arm",), "elbow": ("forearm",),
                   "wrist": ("hand",)},
    # MocapBank / classic BVH: LeftHip, LeftKnee, LeftAnkle (toe = the ankle's End Site),
    # LeftShoulder = upper arm (the clavicle is LeftCollar), LeftElbow, LeftWrist.
    "mocapbank": {"hip": ("hip",), "knee": ("knee",), "ankle": ("ankle",),
                  "toe": ("toe", "toebase", "ankleend"), "shoulder": ("shoulder",), "elbow": ("elbow",),
                  "wrist": ("wrist", "hand")},
    # SMPL / SMPL-X joint names: the "foot" joint is the ball of the foot.
    "smpl": {"hip": ("hip",), "knee": ("knee",), "ankle": ("ankle",), "toe": ("foot",),
             "shoulder": ("shoulder",), "elbow": ("elbow",), "wrist": ("wrist",)},
    # Anatomical names with .L/.R or _l/_r suffixes: Blender/Rigify, Unreal, OpenSim/LocoMuJoCo.
    "anatomical": {"hip": ("thigh", "upperleg", "femur"), "knee": ("shin", "calf", "lowerleg", "tibia"),
                   "ankle": ("foot", "ankle", "talus"), "toe": ("toe", "toes", "ball", "toebase"),
                   "shoulder": ("upperarm", "humerus"), "elbow": ("forearm", "lowerarm", "ulna"),
                   "wrist": ("hand", "wrist")},
}


class MappingError(ValidationError):
    """A skeleton cannot be mapped onto the key points (names what is missing or unknown)."""


@dataclass(frozen=True)
class JointMapping:
    """Key point -> source point name, and where the mapping came from."""

    rig: str
    points: dict[str, str]

    def keypoint_positions(self, motion: HumanMotion) -> np.ndarray:
        """Key-point positions (T, len(KEYPOINTS), 3); the pelvis is the hip midpoint."""
        idx = [motion.index(self.points[k]) for k in MAPPED_KEYPOINTS]
        mapped = motion.positions[:, idx]
        pelvis = 0.5 * (mapped[:, 0] + mapped[:, 1])  # left_hip, right_hip are first
        return np.concatenate([pelvis[:, None], mapped], axis=1)


def split_side(name: str) -> tuple[str | None, str]:
    """``"mixamorig:LeftUpLeg"`` -> ``("left", "upleg")``; ``"thigh.L"`` -> ``("left", "thigh")``."""
    bare = re.split(r"[:|]", name)[-1]
    low = bare.lower()
    side: str | None = None
    rest = bare
    if low.startswith(("left", "right")):
        side = "left" if low.startswith("left") else "right"
        rest = bare[len(side):]
    elif low.endswith(("left", "right")):
        side = "left" if low.endswith("left") else "right"
        rest = bare[: -len(side)]
    elif re.match(r"^[lr][_.\- ]", low):
        side = "left" if low[0] == "l" else "right"
        rest = bare[2:]
    elif re.search(r"[_.\- ][lr]$", low):
        side = "left" if low[-1] == "l" else "right"
        rest = bare[:-2]
    elif re.match(r"^[LR][A-Z][a-z]", bare):
        side = "left" if bare[0] == "L" else "right"
        rest = bare[1:]
    return side, re.sub(r"[^a-z0-9]", "", rest.lower())


def _match_rig(names: list[str], table: dict[str, tuple[str, ...]]) -> tuple[dict[str, str], list[str]]:
    by_key: dict[tuple[str | None, str], str] = {}
    for n in names:
        by_key.setdefault(split_side(n), n)
    found: dict[str, str] = {}
    missing: list[str] = []
    for part in SIDED:
        for side in ("left", "right"):
            hit = next((by_key[(side, base)] for base in table[part] if (side, base) in by_key), None)
            if hit is None:
                missing.append(f"{side}_{part}")
            else:
                found[f"{side}_{part}"] = hit
    return found, missing


def recognise_rig(names: list[str], source: str = "") -> JointMapping:
    """Map a skeleton by its names onto the key points, or raise listing what it lacks."""
    best: tuple[str, list[str]] | None = None
    for rig, table in RIGS.items():
        found, missing = _match_rig(names, table)
        if not missing:
            return JointMapping(rig=rig, points=found)
        if best is None or len(missing) < len(best[1]):
            best = (rig, missing)
    assert best is not None
    rig, missing = best
    table = RIGS[rig]
    lacks = "; ".join(f"{k} (e.g. {_example(k, table)})" for k in missing)
    raise MappingError(
        f"{source or 'motion'}: skeleton not recognised. Closest known rig is {rig!r}, but it lacks: "
        f"{lacks}. Point names in the file: {names}. Pass a mapping file (--map) naming the joint "
        f"for each of: {', '.join(MAPPED_KEYPOINTS)}.")


# How base names are usually spelled, for error messages.
_SPELLING = {"upleg": "UpLeg", "toebase": "ToeBase", "forearm": "ForeArm", "ankleend": "Ankle_end",
             "upperarm": "UpperArm", "upperleg": "UpperLeg", "lowerleg": "LowerLeg", "lowerarm": "LowerArm",
             "hippitchlink": "_hip_pitch_link", "kneelink": "_knee_link", "anklerolllink": "_ankle_roll_link",
             "shoulderrolllink": "_shoulder_roll_link", "elbowlink": "_elbow_link",
             "wristyawlink": "_wrist_yaw_link"}


def _example(keypoint: str, table: dict[str, tuple[str, ...]]) -> str:
    side, part = keypoint.split("_", 1)
    return " or ".join(f"{side.capitalize()}{_SPELLING.get(b, b.capitalize())}" for b in table[part][:2])


def load_mapping_file(path: str | Path) -> dict[str, tuple[str, int]]:
    """Read ``keypoint: source name`` pairs with their line numbers from a YAML or JSON file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MappingError(f"{path}: mapping file not found") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise MappingError(f"{path}{line}: not valid YAML/JSON: {exc}") from None
    if root is not None and isinstance(root, yaml.MappingNode):
        # Accept the pairs at the top level or under a "keypoints:" key.
        for key, value in root.value:
            if key.value == "keypoints" and isinstance(value, yaml.MappingNode):
                root = value
                break
    if not isinstance(root, yaml.MappingNode):
        raise MappingError(f"{path}: a mapping file must be a mapping of key point -> joint name")
    entries: dict[str, tuple[str, int]] = {}
    for key, value in root.value:
        line = key.start_mark.line + 1
        if key.value not in MAPPED_KEYPOINTS:
            raise MappingError(f"{path}:{line}: unknown key point {key.value!r}; key points are "
                               f"{', '.join(MAPPED_KEYPOINTS)} (the pelvis is the hip midpoint)")
        if not isinstance(value, yaml.ScalarNode) or not value.value:
            raise MappingError(f"{path}:{line}: {key.value} must name one joint")
        entries[key.value] = (str(value.value), line)
    missing = [k for k in MAPPED_KEYPOINTS if k not in entries]
    if missing:
        raise MappingError(f"{path}: mapping lacks key point(s) {missing}")
    return entries


def name_hints(names: list[str]) -> tuple[list[list[frozenset[str]]], list[str | None]]:
    """Per point: the parts its name says it is under each table of :data:`RIGS`, and its side.

    End Sites (``<joint>_end``) take their joint's side; their base name gets ``end`` appended
    (``LeftAnkle_end`` -> ``ankleend``, a MocapBank toe).
    """
    hints: list[list[frozenset[str]]] = []
    sides: list[str | None] = []
    for name in names:
        joint, ends = re.subn(r"_end\d*$", "", name)
        side, base = split_side(joint)
        base = base + "end" if ends else base
        hints.append([frozenset(p for p, bases in table.items() if base in bases) for table in RIGS.values()])
        sides.append(side)
    return hints, sides


def topology_mapping(motion: HumanMotion) -> JointMapping:
    """Recognise a skeleton from its hierarchy (names as hints); raises TopologyError if it cannot."""
    if motion.parents is None:
        raise TopologyError("the motion has no hierarchy (a cloud of named points)")
    hints, sides = name_hints(motion.names)
    found = find_humanoid(motion.parents, motion.positions, hints, sides, motion.names)
    return JointMapping(rig="topology", points={k: motion.names[j] for k, j in found.keypoints().items()})


def _fits_hierarchy(mapping: JointMapping, names: list[str], parents: list[int]) -> bool:
    """Whether each mapped limb runs down one chain (hip above knee above ankle above toe...)."""
    index = {n: i for i, n in enumerate(names)}

    def above(a: int, b: int) -> bool:  # a is a strict ancestor of b
        for _ in range(len(parents)):
            b = parents[b]
            if b < 0 or b >= len(parents):
                return False
            if b == a:
                return True
        return False

    for side in ("left", "right"):
        for parts in (("hip", "knee", "ankle", "toe"), ("shoulder", "elbow", "wrist")):
            idx = [index[mapping.points[f"{side}_{p}"]] for p in parts]
            if not all(above(a, b) for a, b in pairwise(idx)):
                return False
    return True


def resolve_mapping(motion: HumanMotion, mapping_file: str | Path | None = None) -> JointMapping:
    """The mapping for a clip: from `mapping_file` when given (checked), else the recognised rig.

    A rig recognised by its names is kept when its limbs fit the hierarchy (so known rigs map as
    they always did); otherwise the hierarchy decides. When neither can, the error lists what the
    names lack and what the hierarchy shows.
    """
    if mapping_file is None:
        try:
            named = recognise_rig(motion.names, motion.source)
        except MappingError as exc:
            if motion.parents is None:
                raise
            try:
                return topology_mapping(motion)
            except TopologyError as why:
                raise MappingError(f"{exc} Its hierarchy does not settle it either: {why}.") from None
        if motion.parents is None or _fits_hierarchy(named, motion.names, motion.parents):
            return named
        try:
            return topology_mapping(motion)
        except TopologyError:
            return named
    entries = load_mapping_file(mapping_file)
    unknown = [(k, n, line) for k, (n, line) in entries.items() if n not in motion.names]
    if unknown:
        first = unknown[0][2]
        listed = ", ".join(f"{n!r} (for {k}, line {line})" for k, n, line in unknown)
        raise MappingError(f"{mapping_file}:{first}: joint name(s) not in {motion.source or motion.name}: "
                           f"{listed}. Names in that file: {motion.names}")
    return JointMapping(rig=f"file:{Path(mapping_file).name}", points={k: n for k, (n, _) in entries.items()})
