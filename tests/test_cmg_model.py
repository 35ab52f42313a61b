"""CMG pieces: output-blended experts, frames and commands, mirroring, smoother, checkpoints, ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
import torch
from mimicdata_trainers.cmg import CheckpointError, CommandSmoother, load_model, save_checkpoint
from mimicdata_trainers.cmg.features import (
    frames_from_qpos,
    robot_mirror,
    smoothed_commands,
)
from mimicdata_trainers.cmg.model import CMGModel, ModelConfig

import mimicdata as md

JOINTS = list(md.load_robot("g1_29dof").joint_names)


def tiny_model(seed: int = 0) -> CMGModel:
    torch.manual_seed(seed)
    model = CMGModel(ModelConfig(frame_dim=65, hidden=32, experts=3, gate_hidden=16))
    torch.nn.init.normal_(model.layers[-1].weight, std=0.05)
    model.set_stats(torch.randn(65) * 0.1, torch.rand(65) + 0.5, torch.randn(3) * 0.1, torch.rand(3) + 0.5)
    return model.eval()


def test_output_blending_equals_weight_blending() -> None:
    """sum_k g_k (x W_k + b_k) == x (sum_k g_k W_k) + sum_k g_k b_k, the original's formulation."""
    torch.set_num_threads(1)
    model = tiny_model()
    layer = model.layers[0]
    x = torch.randn(7, layer.weight.shape[1])
    gates = torch.softmax(torch.randn(7, layer.weight.shape[0]), -1)
    blended_w = torch.einsum("be,eio->bio", gates, layer.weight)  # [B, in, out]: what we avoid
    reference = torch.einsum("bi,bio->bo", x, blended_w) + gates @ layer.bias
    torch.testing.assert_close(layer(x, gates), reference, rtol=1e-5, atol=1e-5)


def test_shapes_and_determinism() -> None:
    a, b = tiny_model(1), tiny_model(1)
    frame, cmd = torch.randn(5, 65), torch.randn(5, 3)
    assert a(frame, cmd).shape == (5, 65)
    torch.testing.assert_close(a(frame, cmd), b(frame, cmd), rtol=0, atol=0)
    out = a.rollout(frame, cmd.unsqueeze(1).expand(5, 4, 3))
    assert out.shape == (5, 5, 65)
    torch.testing.assert_close(out[:, 0], frame)
    torch.testing.assert_close(out[:, 2], a(a(frame, cmd), cmd))


def test_untrained_model_holds_the_frame() -> None:
    """The last expert layer starts at zero: a fresh model predicts 'nothing changes' (stable start)."""
    model = CMGModel(ModelConfig(frame_dim=65, hidden=16, experts=2, gate_hidden=8))
    frame = torch.randn(3, 65)
    torch.testing.assert_close(model(frame, torch.randn(3, 3)), frame, rtol=1e-6, atol=1e-6)


def _quat_z(angle: float) -> list[float]:
    return [np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)]


def test_frames_root_state_in_heading_frame() -> None:
    qpos = np.zeros((2, 36))
    qpos[:, 2] = 0.78
    qpos[:, 3:7] = _quat_z(np.pi / 2)       # facing world +y
    qpos[:, 7:] = 0.1
    qvel = np.zeros((2, 35))
    qvel[:, :3] = [0.0, 1.0, 0.2]           # world +y = forward
    qvel[:, 5] = 0.3                        # body z angular velocity = yaw rate when upright
    qvel[:, 6:] = -0.2
    frames = frames_from_qpos(qpos, qvel)
    assert frames.shape == (2, 65) and frames.dtype == np.float32
    np.testing.assert_allclose(frames[0, :29], 0.1, atol=1e-6)
    np.testing.assert_allclose(frames[0, 29:58], -0.2, atol=1e-6)
    # height, roll, pitch, vx, vy, vz, yaw rate
    np.testing.assert_allclose(frames[0, 58:], [0.78, 0, 0, 1.0, 0.0, 0.2, 0.3], atol=1e-6)
    with pytest.raises(ValueError, match="qpos"):
        frames_from_qpos(qpos[:, :30], qvel)


def test_commands_are_centred_moving_averages() -> None:
    frames = np.zeros((10, 65), np.float32)
    frames[:, 61] = np.arange(10)  # vx
    cmd = smoothed_commands(frames, 29, 2)
    assert cmd.shape == (6, 3)
    np.testing.assert_allclose(cmd[:, 0], np.arange(2, 8))  # mean of t-2..t+2 of a ramp is t


def test_mirror_from_robot_description() -> None:
    mirror = robot_mirror("g1_29dof")
    li, ri = JOINTS.index("left_hip_roll_joint"), JOINTS.index("right_hip_roll_joint")
    lk, rk = JOINTS.index("left_knee_joint"), JOINTS.index("right_knee_joint")
    wy, wp = JOINTS.index("waist_yaw_joint"), JOINTS.index("waist_pitch_joint")
    frame = np.zeros(65, np.float32)
    frame[li], frame[lk], frame[wy], frame[wp] = 0.3, 0.9, 0.2, 0.1
    frame[58:] = [0.78, 0.05, 0.02, 0.5, 0.1, 0.0, 0.4]
    m = mirror.frames(frame)
    assert m[ri] == pytest.approx(-0.3) and m[rk] == pytest.approx(0.9)  # roll flips, pitch-axis knee keeps
    assert m[li] == 0 and m[lk] == 0
    assert m[wy] == pytest.approx(-0.2) and m[wp] == pytest.approx(0.1)
    np.testing.assert_allclose(m[58:], [0.78, -0.05, 0.02, 0.5, -0.1, 0.0, -0.4])
    np.testing.assert_allclose(mirror.frames(m), frame)  # an involution
    np.testing.assert_allclose(mirror.commands(np.array([1.0, 0.2, 0.3])), [1.0, -0.2, -0.3])
    # the 23-DoF robot pairs its own joints
    assert len(robot_mirror("g1_23dof").frame_perm) == 2 * 23 + 7


def test_smoother_is_linear_and_exact() -> None:
    sm = CommandSmoother(num_envs=3, interpolation_steps=4, device="cpu")
    target = torch.tensor([[4.0, 0.0, -2.0]]).repeat(3, 1)
    sm.set_target(target)
    preview = sm.preview(5)
    got = torch.stack([sm.get_current() for _ in range(5)], 1)
    torch.testing.assert_close(got, preview)
    torch.testing.assert_close(got[0, :, 0], torch.tensor([1.0, 2.0, 3.0, 4.0, 4.0]))  # exactly 4 calls
    torch.testing.assert_close(got[0, :, 2], torch.tensor([-0.5, -1.0, -1.5, -2.0, -2.0]))
    # a new target mid-ramp starts from where the env is; other envs are untouched
    sm.set_target(torch.zeros(1, 3), env_ids=[1])
    sm.get_current([1])
    sm.get_current([1])
    torch.testing.assert_close(sm.current[1], torch.tensor([2.0, 0.0, -1.0]))
    torch.testing.assert_close(sm.current[0], target[0])
    with pytest.raises(md.ValidationError, match=r"shape \[2, 3\]"):
        sm.set_target(torch.zeros(3, 3), env_ids=[0, 1])
    with pytest.raises(md.ValidationError, match="env_ids"):
        sm.get_current([5])
    instant = CommandSmoother(2, 0)
    instant.set_target(torch.ones(2, 3))
    torch.testing.assert_close(instant.get_current(), torch.ones(2, 3))


def _save(model: CMGModel, path: Path, robot: str = "g1_29dof") -> Path:
    return save_checkpoint(path, model, robot=robot, joint_names=JOINTS, fps=50.0)


def test_checkpoint_errors(tmp_path: Path) -> None:
    path = _save(tiny_model(), tmp_path / "ok.pt")
    model, payload = load_model(path, robot="g1_29dof")
    torch.testing.assert_close(model.frame_std, tiny_model().frame_std)  # statistics travel with the weights
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable checkpoint"):
        load_model(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a CMG checkpoint"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="trained for robot 'g1_29dof', not 'g1_23dof'"):
        load_model(path, robot="g1_23dof")
    newer = dict(payload, format_version=99)
    torch.save(newer, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="newer"):
        load_model(tmp_path / "newer.pt")
    broken = dict(payload, model_config=dict(payload["model_config"], hidden=8))
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "broken.pt")


def test_onnx_matches_torch(tmp_path: Path) -> None:
    from mimicdata_trainers.cmg import check_onnx, export_onnx

    path = _save(tiny_model(), tmp_path / "m.pt")
    onnx_path = export_onnx(path, tmp_path / "m.onnx")
    assert check_onnx(path, onnx_path, batch=33) < 1e-4
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert meta["robot"] == "g1_29dof" and meta["frame_dim"] == "65"


def test_speed_balanced_weights_and_held_out_clips() -> None:
    from mimicdata_trainers.cmg.data import speed_weights, split_segments

    train, val = split_segments(5, 0.2, seed=0)
    assert len(val) == 1 and sorted([*train, *val]) == list(range(5))
    # clip 0 walks slowly for 90 frames, clip 1 runs for 10, clip 2 is held out
    speeds = [np.full(100, 0.2, np.float32), np.full(20, 2.0, np.float32), np.full(50, 1.0, np.float32)]
    speeds[0][-5:] = np.nan  # no command near the end
    seg = np.array([0] * 90 + [1] * 10 + [2] * 40)
    frame = np.concatenate([np.arange(90), np.arange(10), np.arange(40)])
    w = speed_weights(seg, frame, speeds, np.array([0, 1]), offset=3, bins=4)
    assert w[seg == 2].sum() == 0 and w[(seg == 0) & (frame + 3 >= 95)].sum() == 0
    slow, fast = w[seg == 0].sum(), w[seg == 1].sum()
    assert slow == pytest.approx(0.5) and fast == pytest.approx(0.5)  # each speed bin gets the same share
    with pytest.raises(md.ValidationError, match="no training windows"):
        speed_weights(seg, frame, speeds, np.array([], int), offset=3, bins=4)
