"""CMGMotionGenerator: equals stepping the model by hand in both modes, never jumps, per-env updates,
smooth command changes, mode switches, init_motion, 23-DoF view, root integration; rollout stores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
import torch
from mimicdata_cli.train import app
from mimicdata_trainers.cmg import CheckpointError, CMGMotionGenerator, generate_rollouts, save_checkpoint
from mimicdata_trainers.cmg.generator import integrate_root
from mimicdata_trainers.cmg.model import CMGModel, ModelConfig
from typer.testing import CliRunner

import mimicdata as md

JOINTS = list(md.load_robot("g1_29dof").joint_names)
N, L = 4, 6


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = CMGModel(ModelConfig(frame_dim=65, hidden=32, experts=3, gate_hidden=16))
    torch.nn.init.normal_(model.layers[-1].weight, std=0.02)
    mean = torch.zeros(65)
    mean[58] = 0.78
    model.set_stats(mean, torch.full((65,), 0.5), torch.zeros(3), torch.ones(3))
    path = tmp_path_factory.mktemp("ckpt") / "cmg.pt"
    return save_checkpoint(path, model, robot="g1_29dof", joint_names=JOINTS, fps=50.0,
                           command_range=[[-0.5, -0.2, -0.5], [1.5, 0.2, 0.5]])


def _gen(ckpt: Path, mode: str, ramp: int = 0) -> CMGMotionGenerator:
    return CMGMotionGenerator(ckpt, num_envs=N, device="cpu", mode=mode, preload_duration=L, buffer_size=5,
                              command_ramp_steps=ramp)


def _play(gen: CMGMotionGenerator, steps: int, env_ids: list[int] | None = None) -> torch.Tensor:
    frames = []
    for _ in range(steps):
        pos, vel = gen.get_motion(env_ids)
        frames.append(torch.cat([pos, vel], 1))
    return torch.stack(frames, 1)


def _by_hand(gen: CMGMotionGenerator, start: torch.Tensor, commands: list[torch.Tensor]) -> torch.Tensor:
    out, frame = [start], start
    with torch.no_grad():
        for cmd in commands[:-1]:
            frame = gen.model(frame, cmd)
            out.append(frame)
    return torch.stack(out, 1)[..., :58]


CMD = torch.tensor([[0.3, 0.0, 0.1], [1.0, 0.1, 0.0], [0.0, 0.0, -0.3], [0.6, -0.1, 0.2]])


@pytest.mark.parametrize("mode", ["pregenerated", "realtime"])
def test_generator_equals_stepping_the_model_by_hand(ckpt: Path, mode: str) -> None:
    """15 frames across two ends of a 6-frame pregenerated block: each continues from the last
    (the original wrapped to frame 0)."""
    gen = _gen(ckpt, mode)
    init = gen.default_frame.repeat(N, 1) + 0.05 * torch.randn(N, 65)
    gen.reset(init_motion=init, commands=CMD)
    got = _play(gen, 15)
    expected = _by_hand(gen, init, [CMD] * 15)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    stats = gen.get_performance_stats()
    assert stats["frames_generated"] >= N * 14 and stats["max_inference_ms"] >= stats["min_inference_ms"] > 0


def test_command_update_ramps_identically_in_both_modes(ckpt: Path) -> None:
    """A command update mid-block regenerates from the current frame with a linear ramp; realtime
    mode gives the very same frames; the frames already played are untouched."""
    runs = []
    for mode in ("pregenerated", "realtime"):
        gen = _gen(ckpt, mode, ramp=4)
        gen.reset(commands=CMD)
        before = _play(gen, 3)
        gen.update_commands(CMD.flip(0), env_ids=None)
        runs.append(torch.cat([before, _play(gen, 10)], 1))
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-5, atol=1e-5)
    gen = _gen(ckpt, "realtime", ramp=4)
    ramp = [CMD] * 3 + [CMD + (CMD.flip(0) - CMD) * min(i, 4) / 4 for i in range(1, 11)]
    torch.testing.assert_close(runs[1], _by_hand(gen, gen.default_frame.repeat(N, 1), ramp), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["pregenerated", "realtime"])
def test_per_env_updates_and_resets_touch_only_those_envs(ckpt: Path, mode: str) -> None:
    a, b = _gen(ckpt, mode, ramp=3), _gen(ckpt, mode, ramp=3)
    for g in (a, b):
        g.reset(commands=CMD)
        _play(g, 2)
    b.update_commands(torch.tensor([[1.5, 0.0, 0.5]]), env_ids=[1])
    b.reset(env_ids=torch.tensor([3]), init_motion=torch.zeros(1, 58), commands=torch.zeros(1, 3))
    fa, fb = _play(a, 9), _play(b, 9)
    # (equal up to float rounding: extensions run in batches of other sizes)
    torch.testing.assert_close(fa[[0, 2]], fb[[0, 2]], rtol=0, atol=1e-6)
    assert not torch.allclose(fa[1], fb[1])
    torch.testing.assert_close(fb[3, 0], torch.zeros(58))  # env 3 restarted from the given state
    # a subset call advances only that subset
    idle = b.get_root_state()["pos"].clone()
    _play(b, 2, env_ids=[0])
    torch.testing.assert_close(b.get_root_state([1, 2, 3])["pos"], idle[1:])


def test_mode_switch_keeps_continuity(ckpt: Path) -> None:
    gen = _gen(ckpt, "pregenerated")
    gen.reset(commands=CMD)
    parts = [_play(gen, 4)]
    gen.switch_mode("realtime")
    parts.append(_play(gen, 4))
    gen.switch_mode("pregenerated")
    parts.append(_play(gen, 9))
    expected = _by_hand(gen, gen.default_frame.repeat(N, 1), [CMD] * 17)
    torch.testing.assert_close(torch.cat(parts, 1), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(md.ValidationError, match="mode must be one of"):
        gen.switch_mode("offline")


def test_init_motion_views_history_and_bad_input(ckpt: Path) -> None:
    gen = _gen(ckpt, "realtime")
    state = torch.randn(N, 58) * 0.1
    gen.reset(init_motion=state, commands=CMD)
    pos, vel = gen.get_motion()
    torch.testing.assert_close(torch.cat([pos, vel], 1), state)  # the first frame is the robot's state
    pos23, vel23 = gen.get_motion(robot="g1_23dof")
    names23 = md.load_robot("g1_23dof").joint_names
    assert pos23.shape == (N, 23) and vel23.shape == (N, 23)
    frame = gen.last
    torch.testing.assert_close(pos23[:, names23.index("left_knee_joint")], frame[:, JOINTS.index("left_knee_joint")])
    hist = gen.get_history(frames=2)
    torch.testing.assert_close(hist[:, 0, :58], state)
    torch.testing.assert_close(hist[:, 1], frame)
    with pytest.raises(md.ValidationError, match=r"commands must have shape \[4, 3\], got \[4, 2\]"):
        gen.update_commands(torch.zeros(N, 2))
    with pytest.raises(md.ValidationError, match=r"commands must have shape \[2, 3\]"):
        gen.update_commands(torch.zeros(N, 3), env_ids=[0, 1])
    with pytest.raises(md.ValidationError, match="non-finite"):
        gen.update_commands(torch.full((N, 3), math.nan))
    with pytest.raises(md.ValidationError, match="init_motion must have shape"):
        gen.reset(init_motion=torch.zeros(N, 29))
    with pytest.raises(md.ValidationError, match="env_ids"):
        gen.get_motion([7])
    with pytest.raises(CheckpointError, match="trained for robot 'g1_29dof', not 'g1_23dof'"):
        CMGMotionGenerator(ckpt, num_envs=2, device="cpu", robot="g1_23dof")
    if not torch.cuda.is_available():
        with pytest.raises(md.ValidationError, match="CUDA is not available"):
            CMGMotionGenerator(ckpt, num_envs=2, device="cuda")


def test_root_integration_straight_and_circle() -> None:
    vel = [61, 62, 64]
    frame = torch.zeros(1, 65)
    frame[0, 61] = 1.0  # 1 m/s forward
    pos, yaw = torch.zeros(1, 3), torch.zeros(1)
    for _ in range(50):
        pos, yaw = integrate_root(pos, yaw, frame, frame, vel, 0.02)
    torch.testing.assert_close(pos[0, :2], torch.tensor([1.0, 0.0]))
    frame[0, 64] = 2 * math.pi / 2.0  # a full turn in 2 s: a circle of radius 1/pi
    pos, yaw = torch.zeros(1, 3), torch.zeros(1)
    for i in range(100):
        pos, yaw = integrate_root(pos, yaw, frame, frame, vel, 0.02)
        if i == 49:
            torch.testing.assert_close(pos[0, :2], torch.tensor([0.0, 2 / math.pi]), atol=1e-5, rtol=0)
    torch.testing.assert_close(pos[0, :2], torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(yaw, torch.tensor([2 * math.pi]))


def test_rollout_store_streams_batches(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "roll.zarr"
    calls: list[int] = []
    frames = generate_rollouts(ckpt, out, num_trajectories=7, length=12, batch_size=3, progress=calls.append)
    assert frames == 84 and calls == [3, 3, 1]
    with md.open(out) as store:
        f = store["frames"]
        assert f.schema_version == "1.1" and f.num_rows == 84
        assert store["trajectories"].read("traj_index").tolist() == list(range(7))
        assert f.segments()[-1].tolist() == [72, 84]
        assert f.read("root_pos")[0].tolist() == [0.0, 0.0, pytest.approx(0.78)]
        gen = CMGMotionGenerator(ckpt, num_envs=1, device="cpu", mode="realtime", command_ramp_steps=0)
        gen.reset(commands=torch.from_numpy(f.read("commands", 12, 13)))
        by_gen = _play(gen, 12)[0].numpy()
        np.testing.assert_allclose(np.concatenate([f.read("dof_pos", 12, 24), f.read("dof_vel", 12, 24)], 1), by_gen,
                                   rtol=1e-5, atol=1e-5)
    table = np.array([[0.2, 0.0, 0.0], [1.0, 0.0, 0.1]], np.float32)
    np.save(tmp_path / "cmd.npy", table)
    generate_rollouts(ckpt, tmp_path / "b.zarr", num_trajectories=3, length=5, commands=tmp_path / "cmd.npy")
    with md.open(tmp_path / "b.zarr") as store:
        np.testing.assert_allclose(store["frames"].read("commands")[::5], table[[0, 1, 0]])
    np.save(tmp_path / "bad.npy", np.zeros((2, 4)))
    with pytest.raises(md.ValidationError, match=r"must be \(n, 3\)"):
        generate_rollouts(ckpt, tmp_path / "c.zarr", num_trajectories=1, length=5, commands=tmp_path / "bad.npy")


def test_old_rollout_stores_still_read(tmp_path: Path) -> None:
    """A v1.0 cmg_rollout store (no root state) opens under v1.1."""
    with md.create(tmp_path / "old.zarr", "cmg_rollout@1.0", robot="g1_29dof", fps=50) as store:
        store.append_segment("trajectories", frames={"dof_pos": np.zeros((4, 29), np.float32),
                                                     "dof_vel": np.zeros((4, 29), np.float32),
                                                     "commands": np.zeros((4, 3), np.float32)})
    with md.open(tmp_path / "old.zarr") as store:
        assert store["frames"].read("dof_pos").shape == (4, 29)
        assert "root_pos" not in store["frames"].fields
    with md.open(tmp_path / "old.zarr", "a") as store:  # appending upgrades it, old rows kept
        assert store["frames"].schema_version == "1.1"
        assert store["frames"].num_rows == 4


def test_cli_errors_are_one_line(ckpt: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for args in (["cmg", "generate", "--checkpoint", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "r.zarr")],
                 ["cmg", "export", "--checkpoint", str(tmp_path / "none.pt"), "--onnx", str(tmp_path / "m.onnx")],
                 ["cmg", "train", "--store", str(tmp_path / "none.zarr"), "--out", str(tmp_path / "run")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 1, res.output
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in res.output
    assert not (tmp_path / "r.zarr").exists()
    (tmp_path / "cfg.yaml").write_text("epochs: 2\nlearning_rate: 0.1\n")
    res = runner.invoke(app, ["cmg", "train", "--store", "x.zarr", "--out", str(tmp_path / "o"),
                              "--config", str(tmp_path / "cfg.yaml")])
    assert res.exit_code == 1 and "unknown settings ['learning_rate']" in res.output


def test_history_in_both_modes(ckpt: Path) -> None:
    gen = _gen(ckpt, "pregenerated")
    gen.reset(commands=CMD)
    played = _play(gen, 4)
    hist = gen.get_history(frames=5)
    torch.testing.assert_close(hist[:, 1:, :58], played)
    torch.testing.assert_close(hist[:, 0], hist[:, 1])  # before the first frame: the oldest repeats
    gen.switch_mode("realtime")
    more = _play(gen, 3)
    torch.testing.assert_close(gen.get_history(frames=3)[:, :, :58], more)
    with pytest.raises(md.ValidationError, match="frames must lie"):
        gen.get_history(frames=6)


def test_data_path_must_match_the_checkpoint_robot(ckpt: Path, tmp_path: Path) -> None:
    """data_path is optional (statistics are in the checkpoint); a store given there must fit it."""
    md.create(tmp_path / "g1.zarr", "expert_trajectory", robot="g1_29dof", fps=50).close()
    md.create(tmp_path / "g1_23.zarr", "expert_trajectory", robot="g1_23dof", fps=50).close()
    CMGMotionGenerator(ckpt, tmp_path / "g1.zarr", num_envs=2, device="cpu")
    with pytest.raises(CheckpointError, match="joints differ"):
        CMGMotionGenerator(ckpt, tmp_path / "g1_23.zarr", num_envs=2, device="cpu")
    with pytest.raises(FileNotFoundError):
        CMGMotionGenerator(ckpt, tmp_path / "missing.zarr", num_envs=2, device="cpu")
