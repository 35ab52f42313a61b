"""Human (and robot) motion readers into one form: :class:`HumanMotion`.

Formats: BVH, global joint positions (.npy/.npz), LocoMuJoCo trajectories, BeyondMimic motion
npz and Unitree-SDK-order CSV. :func:`read_motion` picks the reader from the file.
"""

from mimicdata.motion.io import ReadOptions, detect_format, read_motion
from mimicdata.motion.mapping import KEYPOINTS, JointMapping, MappingError, recognise_rig, resolve_mapping
from mimicdata.motion.types import HumanMotion, MotionFormatError

__all__ = [
    "KEYPOINTS",
    "HumanMotion",
    "JointMapping",
    "MappingError",
    "MotionFormatError",
    "ReadOptions",
    "detect_format",
    "read_motion",
    "recognise_rig",
    "resolve_mapping",
]
