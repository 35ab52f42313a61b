"""Retargeting human motion to the robot: per-clip IK, Dask fan-out, quality report, disc-obs cache.

    from mimicdata.retarget import retarget_to_store
    report = retarget_to_store(["walk.bvh", "climb.npy"], "expert.zarr")

Heavy dependencies (MuJoCo, dask.distributed) are imported only when a function needs them.
"""

from mimicdata.retarget.clip import ClipResult, ClipSpec, RetargetSettings, retarget_motion
from mimicdata.retarget.disc_obs import DiscObsSpec, disc_obs
from mimicdata.retarget.extract import build_manifest, read_manifest, write_manifest
from mimicdata.retarget.ik import IKConfig
from mimicdata.retarget.pipeline import RetargetReport, retarget_to_store
from mimicdata.retarget.quality import ClipQuality, quality_table

__all__ = [
    "ClipQuality",
    "ClipResult",
    "ClipSpec",
    "DiscObsSpec",
    "IKConfig",
    "RetargetReport",
    "RetargetSettings",
    "build_manifest",
    "disc_obs",
    "quality_table",
    "read_manifest",
    "retarget_motion",
    "retarget_to_store",
    "write_manifest",
]
