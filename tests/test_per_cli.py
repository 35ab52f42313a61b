"""`mimic-train per` and `mimic-train gains`: real runs over a store, snapshots that load, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from mimicdata_cli.train import app  # noqa: E402
from mimicdata_trainers.snapshot import load_buffer, transition_errors  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import mimicdata as md  # noqa: E402

runner = CliRunner()


def moving_expert_store(path: Path, fps: float = 50.0) -> Path:
    """Two clips of sine-wave joint motion whose second halves speed up (harder to predict)."""
    store = md.create(path, "expert_trajectory", robot="g1_29dof", fps=fps)
    r = store.robot
    assert r is not None
    for clip, n in enumerate((150, 100)):
        t = np.arange(n) / fps
        speed = np.where(t > t[n // 2], 3.0, 1.0)[:, None]
        q = 0.3 * np.sin(2 * np.pi * (clip + 0.5) * t[:, None] * speed * np.linspace(0.5, 1.5, len(r.joint_names)))
        qpos = np.zeros((n, len(r.qpos_names)), np.float32)
        qpos[:, 3], qpos[:, 7:] = 1.0, q
        qvel = np.zeros((n, len(r.qvel_names)), np.float32)
        qvel[:, 6:] = np.gradient(q, 1 / fps, axis=0)
        store.append_segment("clips", frames={
            "qpos": qpos, "qvel": qvel, "body_pos": np.zeros((n, len(r.body_names), 3), np.float32),
            "body_quat": np.tile(np.float32([1, 0, 0, 0]), (n, len(r.body_names), 1)),
        }, row={"name": f"sine{clip}", "source": "synthetic", "fps": fps})
    store.close()
    return path


@pytest.mark.parametrize("command", [[], ["per"], ["adaptive"], ["gains"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_per_runs_updates_priorities_and_saves_a_loadable_snapshot(tmp_path: Path) -> None:
    store = moving_expert_store(tmp_path / "expert.zarr")
    result = runner.invoke(app, ["per", "--store", str(store), "--iterations", "30", "--batch", "64",
                                 "--out", str(tmp_path / "snap.zarr"), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "248 transitions" in result.output  # 149 + 99: none across the clip boundary
    assert "iter     30  beta 0.430" in result.output
    buf = load_buffer(tmp_path / "snap.zarr", name="replay")
    assert buf.sample_calls == 30 and buf.get_sample_count() == 248
    # every drawn transition now holds |error| + eps as its priority; errors follow the stated signal
    updated = buf.priorities() != 1.0
    batch = buf.gather(torch.nonzero(updated).squeeze(1))
    expected = transition_errors(batch, "constant_velocity", dt=1 / 50) + buf.epsilon
    np.testing.assert_allclose(buf.priorities()[updated].numpy(), expected.numpy(), rtol=1e-6)
    assert int(updated.sum()) > 100


def test_per_delta_signal_and_bad_input(tmp_path: Path) -> None:
    store = moving_expert_store(tmp_path / "expert.zarr")
    ok = runner.invoke(app, ["per", "--store", str(store), "--iterations", "3", "--signal", "delta:qvel",
                             "--fields", "qvel"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["per", "--store", str(store), "--signal", "nonsense"])
    assert bad.exit_code == 1 and "unknown error signal 'nonsense'" in bad.output
    missing = runner.invoke(app, ["per", "--store", str(tmp_path / "absent.zarr")])
    assert missing.exit_code == 1 and "no store at" in missing.output
    field = runner.invoke(app, ["per", "--store", str(store), "--fields", "qpos,wrong"])
    assert field.exit_code == 1 and "no field 'wrong'" in field.output
    alpha = runner.invoke(app, ["per", "--store", str(store), "--alpha", "2"])
    assert alpha.exit_code == 1 and "alpha must be in [0.0, 1.0]" in alpha.output


def test_gains_prints_formula_values_and_validates_task_files(tmp_path: Path) -> None:
    result = runner.invoke(app, ["gains"])
    assert result.exit_code == 0
    line = next(x for x in result.output.splitlines() if x.startswith("left_shoulder_pitch_joint"))
    assert "14.251" in line and "0.907" in line  # a 5020 arm motor, not the seed's 99.098
    bad = tmp_path / "t.json"
    bad.write_text('{"robot": "g1", "motion_file": "m.zarr", "reward_weights": {"pose": 1},'
                   ' "control": {"stiffness": 99.098}}')
    out = runner.invoke(app, ["gains", "--task", str(bad)])
    assert out.exit_code == 1 and "t.json: control.stiffness is one number for every motor" in out.output
