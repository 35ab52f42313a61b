"""The seed's policy interface (enable_logging / log_dir) around a simulated G1 loop, and the example."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mimicdata.logger import load_log
from mimicdata.logger.deploy import PolicyLogging, run_policy_loop
from mimicdata.sim import ACTION_KEYS, OBSERVATION_KEYS, G1DeployLoop

REPO = Path(__file__).resolve().parents[1]


def test_g1_loop_at_50_hz_logs_the_seed_fields(tmp_path: Path) -> None:
    loop = G1DeployLoop(robot="g1_23dof", rate_hz=50.0, seed=2)
    logging = PolicyLogging(True, tmp_path / "logs", robot="g1_23dof", fps=50.0)
    assert logging.path is not None and logging.path.parent == tmp_path / "logs"
    assert logging.path.name.startswith("log_") and logging.path.suffix == ".zarr"
    seen: list[float] = []
    result = run_policy_loop(loop.step, seconds=1.0, rate_hz=50.0, policy_logging=logging,
                             on_step=lambda i, obs, act: seen.append(float(obs["joint_pos"][0])))
    assert result.steps == 50 and result.log_status is not None and result.log_status.written == 100
    assert result.wall_s >= 1.0  # paced to real time: it sleeps to each of 50 deadlines 20 ms apart
    log = load_log(result.log_path)
    obs, act = log["observations"], log["actions"]
    assert set(OBSERVATION_KEYS) | {"timestamp", "monotonic_ns"} == set(obs)
    assert set(ACTION_KEYS) | {"timestamp", "monotonic_ns"} == set(act)
    np.testing.assert_array_equal(obs["joint_pos"][:, 0], np.float32(seen))
    np.testing.assert_array_equal(act["counter_step"], np.arange(50))
    assert (np.diff(obs["monotonic_ns"]) > 0).all()  # each record stamped when logged


def test_disabled_logging_writes_nothing(tmp_path: Path) -> None:
    logging = PolicyLogging(False, tmp_path / "logs")
    loop = G1DeployLoop(rate_hz=50.0)
    result = run_policy_loop(loop.step, seconds=0.2, rate_hz=50.0, policy_logging=logging, realtime=False)
    assert result.steps == 10 and result.log_path is None and not (tmp_path / "logs").exists()


def test_a_crashing_policy_still_leaves_its_log(tmp_path: Path) -> None:
    loop = G1DeployLoop(rate_hz=50.0)
    logging = PolicyLogging(True, tmp_path, robot="g1_29dof", fps=50.0)
    calls = 0

    def step() -> tuple[dict, dict]:
        nonlocal calls
        calls += 1
        if calls == 8:
            raise RuntimeError("policy diverged")
        return loop.step()

    with pytest.raises(RuntimeError, match="diverged"):
        run_policy_loop(step, seconds=1.0, rate_hz=50.0, policy_logging=logging, realtime=False)
    assert logging.logger is not None and logging.logger.status.written == 14
    assert load_log(logging.path)["actions"].num_rows == 7


def test_example_script_runs(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "examples" / "deploy_g1_logging.py"), "--seconds", "0.5",
                             "--log-dir", str(tmp_path), "--fast"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "25 steps" in result.stdout and "50 records written, 0 dropped" in result.stdout
    assert len(list(tmp_path.glob("log_*.zarr"))) == 1
