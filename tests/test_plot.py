"""PNG plots of a deployment log: joint trajectories vs reference, and the control-period histogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import mimicdata as md
from mimicdata.plot import joint_figure, plot_joints, plot_timing, resolve_joints
from mimicdata.timing import timing_report


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of a simulated 23-joint G1 at 50 Hz stored as a deployment log."""
    from mimicdata.sim import simulate_deployment

    path = tmp_path_factory.mktemp("plot") / "log.zarr"
    pairs = list(simulate_deployment(seconds=1.0, rate_hz=50.0, robot="g1_23dof"))
    stamps = 1_790_000_000_000_000_000 + np.arange(len(pairs)) * 20_000_000
    with md.create(path, ["observations", "actions"], robot="g1_23dof", fps=50,
                   attrs={"start_time_ns": int(stamps[0])}) as store:
        for idx, name in ((0, "observations"), (1, "actions")):
            batch = {k: np.stack([np.asarray(p[idx][k]) for p in pairs]) for k in pairs[0][idx]}
            store[name].append({**batch, "timestamp": stamps + idx})
    return path


def test_joint_figure_draws_the_stored_data(log_path: Path) -> None:
    store = md.open(log_path)
    fig = joint_figure(store, joints=["left_knee", "right_knee_joint", "5"])
    axes = np.asarray(fig.axes).reshape(3, 3)
    knee = store.robot.joint_names.index("left_knee_joint")
    measured, reference = axes[0, 0].lines
    np.testing.assert_allclose(measured.get_ydata(), store["observations"]["joint_pos"][:, knee])
    np.testing.assert_allclose(reference.get_ydata(), store["observations"]["ref_joint_pos"][:, knee])
    np.testing.assert_allclose(measured.get_xdata(), np.arange(50) * 0.02)
    np.testing.assert_allclose(axes[0, 1].lines[0].get_ydata(), store["observations"]["joint_vel"][:, knee])
    motor = store.robot.motor_names.index("left_knee_joint")  # targets cover all 29 motors
    np.testing.assert_allclose(axes[0, 2].lines[0].get_ydata(), store["actions"]["target_pos_full"][:, motor])
    assert "left_knee_joint" in axes[0, 0].get_ylabel() and store.robot.joint_names[5] in axes[2, 0].get_ylabel()


def test_plot_joints_writes_png_and_limits_time(log_path: Path, tmp_path: Path) -> None:
    out = plot_joints(md.open(log_path), tmp_path / "j.png", start_s=0.2, end_s=0.5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = joint_figure(md.open(log_path), start_s=0.2, end_s=0.5)
    assert len(fig.axes) == 6 * 3  # default: the first six joints
    xs = fig.axes[0].lines[0].get_xdata()
    assert xs.min() >= 0.2 and xs.max() <= 0.5 and len(xs) == 16


def test_unknown_joint_lists_the_joints() -> None:
    with pytest.raises(md.SchemaError, match=r"no joint 'elbow'.*left_hip_pitch_joint"):
        resolve_joints(["left_hip_pitch_joint", "left_knee_joint"], ["elbow"])
    with pytest.raises(md.SchemaError, match="out of range"):
        resolve_joints(["a", "b"], ["7"])


def test_timing_histogram_png(log_path: Path, tmp_path: Path) -> None:
    report = timing_report(md.open(log_path)["observations"])
    assert plot_timing(report, tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_plot(log_path: Path, tmp_path: Path) -> None:
    from mimicdata_cli.main import app

    runner = CliRunner()
    out = tmp_path / "knees.png"
    result = runner.invoke(app, ["plot", str(log_path), "--joints", "left_knee,right_knee", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and out.stat().st_size > 10_000
    bad = runner.invoke(app, ["plot", str(log_path), "--joints", "nose"])
    assert bad.exit_code == 1 and "no joint 'nose'" in bad.output
