"""Fuzzing the motion readers: BVH, position .npy/.npz, LocoMuJoCo and BeyondMimic .npz, Unitree CSV.

Each starts from a valid file (the bundled MocapBank walk, fixtures, or arrays made here from the G1's
own forward kinematics) and reads 1000 truncated or corrupted versions of it: every case must give a
valid motion or one MotionFormatError (a MimicDataError), never another exception or a hang.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

from mimicdata.motion.bvh import read_bvh
from mimicdata.motion.positions import read_positions
from mimicdata.motion.robot_formats import read_beyondmimic, read_locomujoco, read_unitree_csv
from mimicdata.motion.rotations import mat_to_quat
from mimicdata.motion.types import HumanMotion
from tests.fuzzing import (
    FUZZ,
    clear_outcome,
    corrupt_arrays,
    corrupt_bytes,
    corrupt_text,
    random_array_ops,
    random_byte_ops,
    random_text_ops,
    seeds,
)

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "motion"
WALK = REPO / "mimicdata" / "data" / "mocapbank" / "mocapbank_walk.bvh"
NAMES = ["Hips", "Spine", "Head", "LeftUpLeg", "LeftLeg", "LeftFoot", "RightUpLeg", "RightLeg", "RightFoot"]


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mimicdata-fuzz-") as tmp:
        yield Path(tmp)


def _valid(motions: HumanMotion | list[HumanMotion]) -> None:
    """A returned motion must be whole: it validates (shapes, >= 2 frames, finite) as the pipeline needs."""
    for m in motions if isinstance(motions, list) else [motions]:
        m.validate()
        assert np.isfinite(m.positions).all()


def _short_walk() -> str:
    """The bundled walk cut to 6 frames: every part of the format, small enough to read in ~1 ms."""
    lines = WALK.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Frames:"))
    return "\n".join([*lines[:at], "Frames:\t6", *lines[at + 1:at + 8]]) + "\n"


WALK6 = _short_walk()


@FUZZ
@given(seed=seeds)
def test_bvh_corruptions(work: Path, seed: int) -> None:
    """Line-level damage (NaN, overflow, junk numbers, lines dropped/swapped/repeated, cuts) and/or byte-level
    damage, on the bundled walk (6 frames) or on a custom rig with End Sites and odd channel orders."""
    rng = np.random.default_rng(seed)
    rig, kind = rng.random() < 0.5, rng.integers(3)  # text damage, byte damage, or both
    text = random_text_ops(rng) if kind != 1 else None
    raw = random_byte_ops(rng) if kind != 0 else None
    original = (FIX / "custom_rig.bvh").read_text() if rig else WALK6
    damaged = corrupt_text(original, text) if text else original
    data = corrupt_bytes(damaged.encode(), raw) if raw else damaged.encode()
    if data == original.encode():
        data = data[: len(data) // 2]
    path = work / "clip.bvh"
    path.write_bytes(data)
    result = clear_outcome(lambda: read_bvh(path))
    if result is not None:
        _valid(result)


def _positions() -> dict[str, np.ndarray]:
    t = np.arange(5)[:, None, None] * 0.01
    base = np.array([[0, 0, 1.0], [0, 0, 1.2], [0, 0, 1.6], [0.1, 0, 0.9], [0.1, 0, 0.5], [0.1, 0, 0.05],
                     [-0.1, 0, 0.9], [-0.1, 0, 0.5], [-0.1, 0, 0.05]])
    return {"positions": (base[None] + t).astype(np.float32), "names": np.array(NAMES), "fps": np.array(30.0)}


def _npz_bytes(arrays: dict[str, np.ndarray], compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _damage(rng: np.random.Generator) -> tuple[list | None, list | None]:
    """Array damage, byte damage of the file, or both."""
    kind = rng.integers(3)
    return (random_array_ops(rng) if kind != 1 else None), (random_byte_ops(rng) if kind != 0 else None)


@FUZZ
@given(seed=seeds)
def test_positions_npz_corruptions(work: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    compressed = bool(rng.random() < 0.5)
    arrays, ops = _damage(rng)
    data = _npz_bytes(corrupt_arrays(_positions(), arrays or []), compressed)
    path = work / "pos.npz"
    path.write_bytes(corrupt_bytes(data, ops) if ops else data)
    result = clear_outcome(lambda: read_positions(path))
    if result is not None:
        _valid(result)


@FUZZ
@given(seed=seeds)
def test_positions_npy_corruptions(work: Path, seed: int) -> None:
    arrays, ops = _damage(np.random.default_rng(seed))
    value = corrupt_arrays({"positions": _positions()["positions"]}, arrays or []).get("positions", np.zeros(0))
    buf = io.BytesIO()
    np.save(buf, value)
    path = work / "pos.npy"
    path.write_bytes(corrupt_bytes(buf.getvalue(), ops) if ops else buf.getvalue())
    (work / "pos.names.txt").write_text("\n".join(NAMES))
    result = clear_outcome(lambda: read_positions(path, fps=30.0))
    if result is not None:
        _valid(result)


@pytest.fixture(scope="module")
def g1_bodies() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Body names, world positions and wxyz quaternions of 4 frames of a moving G1 (its own FK)."""
    from mimicdata.motion.kinematics import load_robot_model

    model = load_robot_model("g1_29dof")
    qpos = np.zeros((4, model.nq))
    qpos[:, 0] = np.arange(4) * 0.02
    qpos[:, 2], qpos[:, 3] = 0.75, 1.0
    qpos[:, 7:] = np.clip(0.2 * np.sin(np.arange(4)[:, None] + np.arange(model.nq - 7)),
                          model.joint_range[:, 0], model.joint_range[:, 1])
    xpos, xmat = model.fk(qpos)
    return list(model.body_names), xpos, mat_to_quat(xmat)


@FUZZ
@given(seed=seeds)
def test_locomujoco_npz_corruptions(work: Path, g1_bodies: tuple, seed: int) -> None:
    arrays, ops = _damage(np.random.default_rng(seed))
    names, xpos, xquat = g1_bodies
    valid = {"xpos": xpos.astype(np.float32), "xquat": xquat.astype(np.float32), "frequency": np.array(40.0),
             "body_names": np.array(names), "split_points": np.array([0, 2, 4]), "qpos": np.zeros((4, 36))}
    data = _npz_bytes(corrupt_arrays(valid, arrays or []), compressed=False)
    path = work / "traj.npz"
    path.write_bytes(corrupt_bytes(data, ops) if ops else data)
    result = clear_outcome(lambda: read_locomujoco(path))
    if result is not None:
        _valid(result)


@FUZZ
@given(seed=seeds)
def test_beyondmimic_npz_corruptions(work: Path, g1_bodies: tuple, seed: int) -> None:
    arrays, ops = _damage(np.random.default_rng(seed))
    _, xpos, xquat = g1_bodies
    valid = {"fps": np.array([50]), "body_pos_w": xpos.astype(np.float32), "body_quat_w": xquat.astype(np.float32),
             "joint_pos": np.zeros((4, 29), np.float32)}
    data = _npz_bytes(corrupt_arrays(valid, arrays or []), compressed=True)
    path = work / "motion.npz"
    path.write_bytes(corrupt_bytes(data, ops) if ops else data)
    result = clear_outcome(lambda: read_beyondmimic(path))
    if result is not None:
        _valid(result)


@FUZZ
@given(seed=seeds)
def test_unitree_csv_corruptions(work: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path = work / "g1.csv"
    text = corrupt_text((FIX / "g1_stand.csv").read_text(), random_text_ops(rng))
    path.write_bytes(corrupt_bytes(text.encode(), random_byte_ops(rng)) if rng.random() < 0.3 else text.encode())
    result = clear_outcome(lambda: read_unitree_csv(path))
    if result is not None:
        _valid(result)
