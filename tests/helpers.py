"""Batches of realistic rows for every schema, shared by the format-core tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

T0 = 1_790_000_000_000_000_000  # ns since the epoch (2026-09)


def obs_batch(n: int, start: int = 0, joints: int = 29, obs: int = 160, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + start)
    t = np.arange(start, start + n)
    wave = np.sin(t[:, None] * 0.05 + np.arange(joints)[None, :]).astype(np.float32)
    return {
        "ref_joint_pos": wave, "ref_joint_vel": np.cos(wave).astype(np.float32),
        "motion_anchor_ori": rng.normal(size=(n, 6)).astype(np.float32),
        "ang_vel": rng.normal(size=(n, 3)).astype(np.float32),
        "joint_pos": wave + rng.normal(0, 0.01, (n, joints)).astype(np.float32),
        "joint_vel": rng.normal(size=(n, joints)).astype(np.float32),
        "prev_action": rng.normal(size=(n, joints)).astype(np.float32),
        "full_obs": rng.normal(size=(n, obs)).astype(np.float32),
        "counter_step": t.astype(np.int64), "timestamp": T0 + t * 20_000_000,
    }


def act_batch(n: int, start: int = 0, joints: int = 29) -> dict[str, np.ndarray]:
    t = np.arange(start, start + n)
    a = np.sin(t[:, None] * 0.05 + np.arange(joints)[None, :]).astype(np.float32)
    return {"raw_action": a, "scaled_action": a * 0.25, "target_pos_full": np.tile(a[:, :1], (1, 29)),
            "kps": np.full((n, joints), 40.0, np.float32), "kds": np.full((n, joints), 2.5, np.float32),
            "counter_step": t.astype(np.int64), "timestamp": T0 + t * 20_000_000}


def episode_frames(n: int, *, state: int = 29, image: tuple[int, int] | None = (24, 32), task: str = "walk",
                   t0: int | None = None) -> dict[str, np.ndarray]:
    t0 = time.time_ns() if t0 is None else t0
    out = {"state": np.random.default_rng(n).normal(size=(n, state)).astype(np.float32),
           "action": np.zeros((n, state), np.float32), "timestamp": t0 + np.arange(n) * 20_000_000,
           "task": np.array([task] * n)}
    if image:
        out["image.front"] = np.random.default_rng(1).integers(0, 255, (n, *image, 3), dtype=np.uint8)
    return out


def expert_frames(n: int, nq: int = 36, nv: int = 35, nb: int = 30) -> dict[str, np.ndarray]:
    t = np.arange(n)[:, None]
    quat = np.zeros((n, nb, 4), np.float32)
    quat[..., 0] = 1
    return {"qpos": np.sin(t * 0.1 + np.arange(nq)).astype(np.float32),
            "qvel": np.cos(t * 0.1 + np.arange(nv)).astype(np.float32),
            "body_pos": np.sin(t[:, :, None] * 0.1 + np.arange(nb * 3).reshape(1, nb, 3)).astype(np.float32),
            "body_quat": quat}


def cmg_frames(n: int, joints: int = 29) -> dict[str, np.ndarray]:
    t = np.arange(n)[:, None]
    return {"dof_pos": np.sin(t * 0.1 + np.arange(joints)).astype(np.float32),
            "dof_vel": np.cos(t * 0.1 + np.arange(joints)).astype(np.float32),
            "commands": np.tile(np.array([[0.5, 0.0, 0.1]], np.float32), (n, 1))}


@contextmanager
def moto_s3(bucket: str) -> Iterator[dict]:
    """A moto S3 server on 127.0.0.1 (a free port) holding ``bucket``; yields fsspec ``storage_options``."""
    from moto import server as moto_server

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                     region_name="us-east-1").create_bucket(Bucket=bucket)
        yield {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    finally:
        server.stop()
