"""`mimic-train adaptive`: the sampler against the speed-hazard failure model on a real store."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from mimicdata_cli.train import app  # noqa: E402
from mimicdata_trainers.adaptive import AdaptiveMotionSampler  # noqa: E402
from mimicdata_trainers.failure_model import SpeedHazardFailureModel  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tests.test_per_cli import moving_expert_store  # noqa: E402

runner = CliRunner()


def test_failure_model_hazard_follows_joint_speed(tmp_path: Path) -> None:
    store = moving_expert_store(tmp_path / "e.zarr")
    sampler = AdaptiveMotionSampler.from_store(store, seed=0)  # 3 + 2 one-second bins
    model = SpeedHazardFailureModel.from_store(sampler, store, rate=0.5, power=2.0, seed=0)
    hazard = model.hazard.numpy()
    assert hazard.shape == (5,) and np.all((hazard > 0) & (hazard < 1))
    assert hazard[2] > hazard[0] and hazard[4] > hazard[3]  # the sped-up second halves are riskier
    clip, frame, failed = model.run_episodes(torch.tensor([0] * 2000), torch.tensor([0] * 2000), 10.0)
    assert bool((frame[~failed] == 149).all())  # survivors end at the clip's last frame, not failed
    ended_bins = sampler.bins_of(clip[failed], frame[failed])
    assert set(ended_bins.tolist()) <= {0, 1, 2}
    rate = float(failed.double().mean())
    expected = 1 - np.prod(1 - hazard[:3])
    assert rate == pytest.approx(expected, abs=0.04)


def test_adaptive_command_concentrates_on_hard_bins_and_saves(tmp_path: Path) -> None:
    store = moving_expert_store(tmp_path / "e.zarr")
    result = runner.invoke(app, ["adaptive", "--store", str(store), "--iterations", "40", "--num-envs", "512",
                                 "--ema-alpha", "0.2", "--hazard-rate", "0.5", "--out", str(tmp_path / "s.zarr")])
    assert result.exit_code == 0, result.output
    entropy = [float(x) for x in re.findall(r"entropy (\d\.\d+)", result.output)]
    assert len(entropy) == 10 and entropy[-1] < 0.99  # moved away from uniform
    share = [float(x) for x in re.findall(r"starts in hardest bins (\d+\.\d)%", result.output)]
    assert share[-1] > 30.0  # hardest bin is 1 of 5 bins (20 % under uniform sampling)
    back = AdaptiveMotionSampler.load(tmp_path / "s.zarr")
    assert back.updates == 40 and float(back.probabilities().min()) >= 0.1 / 5 * (1 - 1e-12)


def test_adaptive_command_errors_are_one_line(tmp_path: Path) -> None:
    store = moving_expert_store(tmp_path / "e.zarr")
    bad = runner.invoke(app, ["adaptive", "--store", str(store), "--uniform-ratio", "1.5"])
    assert bad.exit_code == 1 and "uniform_ratio must be in [0.0, 1.0]" in bad.output
    task = tmp_path / "task.json"
    task.write_text('{"robot": "g1", "motion_file": "x", "reward_weights": {"pose": 1},'
                    ' "adaptive_sampling": {"kernel_size": -2}}')
    bad_task = runner.invoke(app, ["adaptive", "--store", str(store), "--task", str(task)])
    assert bad_task.exit_code == 1
    assert "task.json: adaptive_sampling.kernel_size must be an integer >= 1" in bad_task.output
