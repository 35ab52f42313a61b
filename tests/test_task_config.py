"""Task configuration (tasks/g1_task.json) and G1 actuator constants computed from their formulas."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mimicdata_trainers.g1_config import check_gain_table, g1_actuator_config
from mimicdata_trainers.task_config import TaskConfigError, default_task_path, load_task_config

from mimicdata.robots import g1

SEED_TABLE = {  # design note 001, section 4.1: one stiffness/damping for every motor
    "5020": {"armature": 0.003609725, "stiffness": 99.098427777, "damping": 6.308801853},
    "7520_14": {"armature": 0.010177520, "stiffness": 99.098427777, "damping": 6.308801853},
    "7520_22": {"armature": 0.025101925, "stiffness": 99.098427777, "damping": 6.308801853},
}


def test_gains_follow_the_formulas_per_motor() -> None:
    cfg = g1_actuator_config("g1_29dof")
    w = 2 * math.pi * 10.0
    table = cfg.by_motor()
    for motor, (k, d) in {"5020": (14.2506, 0.90722), "7520_14": (40.1792, 2.55789), "7520_22": (99.0984, 6.30880),
                          "4010": (16.7783, 1.06814)}.items():
        arm = g1.MOTORS[motor].armature
        assert table[motor]["stiffness"] == pytest.approx(arm * w**2) == pytest.approx(k, rel=1e-5)
        assert table[motor]["damping"] == pytest.approx(2 * 2.0 * arm * w) == pytest.approx(d, rel=1e-5)
        assert table[motor]["action_scale"] == pytest.approx(0.25 * g1.MOTORS[motor].effort_limit / (arm * w**2))
    ankle = cfg.joint_names.index("left_ankle_pitch_joint")  # two 5020 motors through a linkage
    assert cfg.stiffness[ankle] == pytest.approx(2 * table["5020"]["stiffness"])
    assert cfg.effort_limit[ankle] == 2 * g1.MOTORS["5020"].effort_limit
    assert cfg.velocity_limit[ankle] == g1.MOTORS["5020"].velocity_limit
    # one source of truth: identical to the motor table module's own gains
    for key, values in g1.actuator_gains("g1_29dof").items():
        np.testing.assert_array_equal(getattr(cfg, key), values)
    assert g1_actuator_config("g1_23dof").num_joints == 23


def test_the_seed_table_is_reported_wrong_for_small_motors() -> None:
    problems = check_gain_table(SEED_TABLE)
    assert any(p.startswith("5020.stiffness: table has 99.0984, formula gives 14.2506") for p in problems)
    assert any(p.startswith("7520_14.damping") for p in problems)
    assert not any(p.startswith("7520_22") for p in problems)  # the seed's number is the 7520_22's
    formula = g1_actuator_config().by_motor()
    assert check_gain_table({m: {"stiffness": v["stiffness"]} for m, v in formula.items()}) == []
    assert check_gain_table({"7520_16": {"stiffness": 1.0}}) == ["7520_16: not a G1 motor type (known: 7520_14, "
                                                                 "7520_22, 5020, 4010)"]


def test_pd_torque_is_clipped_to_effort() -> None:
    cfg = g1_actuator_config()
    zeros = np.zeros(cfg.num_joints)
    tau = cfg.pd_torque(zeros, cfg.default_joint_pos, zeros)
    np.testing.assert_allclose(tau, 0.0, atol=1e-12)
    tau = cfg.pd_torque(np.full(cfg.num_joints, 100.0), cfg.default_joint_pos, zeros)
    np.testing.assert_allclose(tau, cfg.effort_limit)
    with pytest.raises(ValueError, match="last axis must be 29"):
        cfg.pd_torque(np.zeros(3), zeros, zeros)


def test_shipped_task_file_loads() -> None:
    task = load_task_config()
    assert task.path == default_task_path() and task.robot == "g1_29dof"
    replay = task.replay
    assert replay.enabled and (replay.alpha, replay.beta, replay.beta_increment) == (0.6, 0.4, 0.001)
    assert task.motion_sampling.uniform_ratio == 0.1 and task.motion_sampling.bin_seconds == 1.0
    assert task.motion_file == default_task_path().parent / "motions" / "walk.zarr"
    assert task.sim["decimation"] == 4 and task.reward_weights["pose"] == 1.0
    np.testing.assert_array_equal(task.actuators().stiffness, g1.actuator_gains()["stiffness"])


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "task.json"
    path.write_text(json.dumps(doc))
    return path


def _base() -> dict[str, Any]:
    return json.loads(default_task_path().read_text())


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_base())
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("adaptive_sampling", "alpha"), 1.5, r"task.json: adaptive_sampling.alpha must be in \[0.0, 1.0\], got 1.5"),
        (("adaptive_sampling", "beta"), "0.4", "adaptive_sampling.beta must be a finite number, got '0.4'"),
        (("adaptive_sampling", "epsilon"), 0, r"adaptive_sampling.epsilon must be in \(0.0, 1.0\]"),
        (("adaptive_sampling", "enabled"), "yes", "adaptive_sampling.enabled must be true or false"),
        (("adaptive_sampling", "kernel_size"), 0, "adaptive_sampling.kernel_size must be an integer >= 1"),
        (("adaptive_sampling", "uniform_ratio"), 2, "adaptive_sampling.uniform_ratio must be in"),
        (("adaptive_sampling", "alfa"), 0.6, r"adaptive_sampling has unknown key\(s\) \['alfa'\]"),
        (("robot",), "h1", "robot must be one of"),
        (("reward_weights", "pose"), -1, r"reward_weights.pose must be in \[0.0, inf\]"),
        (("reward_weights",), {}, "reward_weights needs at least one term"),
        (("control", "stiffness"), 99.098427777, "control.stiffness is one number for every motor"),
        (("control", "type"), "torque", "control.type must be 'pd'"),
        (("control", "overrides"), {"left_toe_joint": {"stiffness": 5.0}}, "unknown joint 'left_toe_joint'"),
        (("control", "overrides"), {"left_knee_joint": {"stiffness": -5.0}},
         "control.overrides.left_knee_joint.stiffness must be in"),
        (("sim", "decimation"), 0, "sim.decimation must be an integer >= 1"),
        (("motion_file",), "", "motion_file must be a non-empty string"),
        (("extra",), 1, r"top level has unknown key\(s\) \['extra'\]"),
    ],
)
def test_bad_values_give_errors_naming_file_and_key(tmp_path: Path, path: tuple[str, ...], value: Any,
                                                     message: str) -> None:
    with pytest.raises(TaskConfigError, match=message):
        load_task_config(_write(tmp_path, _with(path, value)))


def test_missing_keys_and_broken_json(tmp_path: Path) -> None:
    doc = _base()
    del doc["robot"]
    with pytest.raises(TaskConfigError, match=r"task\.json: robot is missing"):
        load_task_config(_write(tmp_path, doc))
    (tmp_path / "broken.json").write_text('{"robot": "g1",\n "motion_file": }')
    with pytest.raises(TaskConfigError, match=r"broken.json: not valid JSON \(line 2, column 17"):
        load_task_config(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError):
        load_task_config(tmp_path / "absent.json")


def test_overrides_and_disabled_replay_build_the_right_pieces(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    doc = _with(("control", "overrides"), {"left_knee_joint": {"stiffness": 120.0}})
    doc["adaptive_sampling"]["enabled"] = False
    task = load_task_config(_write(tmp_path, doc))
    act = task.actuators()
    knee = act.joint_names.index("left_knee_joint")
    assert act.stiffness[knee] == 120.0 and act.action_scale[knee] == pytest.approx(0.25 * 139.0 / 120.0)
    from mimicdata_trainers.per import ExperienceBuffer, PrioritizedExperienceBuffer

    buf = task.make_buffer(8, 4)
    assert type(buf) is ExperienceBuffer
    enabled = load_task_config().make_buffer(8, 4)
    assert isinstance(enabled, PrioritizedExperienceBuffer) and enabled.alpha == 0.6
    assert torch.is_tensor(act.as_torch()["stiffness"])


def test_trainer_errors_are_mimicdata_errors_and_builtins() -> None:
    torch = pytest.importorskip("torch")
    from mimicdata_trainers.adaptive import AdaptiveMotionSampler
    from mimicdata_trainers.per import PrioritizedExperienceBuffer
    from mimicdata_trainers.sumtree import SumTree

    from mimicdata.errors import ConfigError, MimicDataError, OutOfRangeError, StateError

    with pytest.raises(ConfigError) as bad:
        SumTree(0)
    assert isinstance(bad.value, MimicDataError) and isinstance(bad.value, ValueError)
    with pytest.raises(StateError, match="no committed entries"):
        PrioritizedExperienceBuffer(4, 1).sample(1)
    with pytest.raises(OutOfRangeError) as out:
        AdaptiveMotionSampler([10], 50.0).bins_of(torch.tensor([0]), torch.tensor([10]))
    assert isinstance(out.value, IndexError)
    assert issubclass(TaskConfigError, ConfigError)
