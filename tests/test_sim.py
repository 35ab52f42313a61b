"""Simulated G1 deployment loop: record format, physics sanity over 60 s, tracking, determinism."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mujoco")

from mimicdata.errors import SchemaError
from mimicdata.robots import g1
from mimicdata.sim import ACTION_KEYS, OBSERVATION_KEYS, G1DeployLoop, obs_dim, simulate_deployment
from mimicdata.sim.policy import ScriptedTrackingPolicy
from mimicdata.sim.reference import ReferenceMotion
from mimicdata.sim.support import PelvisBand

SECONDS = 60.0
FADE_STEPS = 100  # the reference fades in over 2 s


class Run:
    """60 s of one robot: the records plus per-step physics state the records do not carry."""

    def __init__(self, robot: str) -> None:
        self.loop = G1DeployLoop(robot=robot, seed=3)
        m = self.loop.model
        self.obs, self.act, pelvis_z, band, held = [], [], [], [], []
        absent = [j for j in g1.G1_29DOF_JOINTS if j not in self.loop.joint_names]
        self.absent_adr = [m.jnt_qposadr[m.joint(j).id] for j in absent]
        self.absent_default = np.array([g1.DEFAULT_JOINT_POS[j] for j in absent])
        for _ in range(round(SECONDS * 50)):
            o, a = self.loop.step()
            self.obs.append(o)
            self.act.append(a)
            pelvis_z.append(self.loop.data.qpos[2])
            band.append(np.linalg.norm(self.loop.band.last_force))
            held.append(self.loop.data.qpos[self.absent_adr].copy())
        self.pelvis_z = np.array(pelvis_z)
        self.band_force = np.array(band)
        self.held = np.array(held)
        self.final_qpos = self.loop.data.qpos.copy()
        self.final_qvel = self.loop.data.qvel.copy()

    def stack(self, records: list[dict], key: str) -> np.ndarray:
        return np.stack([r[key] for r in records])


@pytest.fixture(scope="module", params=["g1_29dof", "g1_23dof"])
def run(request: pytest.FixtureRequest) -> Run:
    return Run(request.param)


def test_records_have_exactly_the_seed_fields(run: Run) -> None:
    n = len(run.loop.joint_names)
    o, a = run.obs[0], run.act[0]
    assert tuple(o) == OBSERVATION_KEYS and tuple(a) == ACTION_KEYS
    shapes = {
        "ref_joint_pos": (n,),
        "ref_joint_vel": (n,),
        "motion_anchor_ori": (6,),
        "ang_vel": (3,),
        "joint_pos": (n,),
        "joint_vel": (n,),
        "prev_action": (n,),
        "full_obs": (obs_dim(n),),
        "raw_action": (n,),
        "scaled_action": (n,),
        "target_pos_full": (29,),
        "kps": (n,),
        "kds": (n,),
    }
    for key, shape in shapes.items():
        value = o.get(key, a.get(key))
        assert value.dtype == np.float32 and value.shape == shape, key
    assert run.loop.obs_dim == obs_dim(n) == (154 if n == 29 else 124)
    steps = [r["counter_step"] for r in run.obs]
    assert steps == list(range(len(run.obs))) == [r["counter_step"] for r in run.act]
    assert all(isinstance(s, int) for s in steps[:3])


def test_full_obs_is_the_concatenation_fed_to_the_policy(run: Run) -> None:
    default = g1.default_joint_pos(run.loop.robot).astype(np.float32)
    for o in run.obs[::97]:
        parts = [o["ref_joint_pos"], o["ref_joint_vel"], o["motion_anchor_ori"], o["ang_vel"]]
        parts += [o["joint_pos"] - default, o["joint_vel"], o["prev_action"]]
        np.testing.assert_allclose(o["full_obs"], np.concatenate(parts), rtol=0, atol=1e-6)


def test_actions_scale_into_pd_targets(run: Run) -> None:
    gains = g1.actuator_gains(run.loop.robot)
    index = [g1.G1_29DOF_JOINTS.index(j) for j in run.loop.joint_names]
    absent = [i for i in range(29) if i not in index]
    default_full = g1.default_joint_pos("g1_29dof")
    raw = run.stack(run.act, "raw_action")
    scaled = run.stack(run.act, "scaled_action")
    target = run.stack(run.act, "target_pos_full")
    np.testing.assert_allclose(scaled, raw * gains["action_scale"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(target[:, index], default_full[index] + scaled, atol=1e-5)
    np.testing.assert_array_equal(
        target[:, absent], np.broadcast_to(default_full[absent], (len(target), 6 if absent else 0))
    )
    np.testing.assert_array_equal(run.act[5]["kps"], gains["stiffness"].astype(np.float32))
    np.testing.assert_array_equal(run.act[5]["kds"], gains["damping"].astype(np.float32))
    prev = run.stack(run.obs, "prev_action")
    np.testing.assert_array_equal(prev[0], 0.0)
    np.testing.assert_array_equal(prev[1:], raw[:-1])
    # Noisy (the reference alone is smooth: its second differences are ~1e-3) but sane actions.
    assert np.std(np.diff(raw, 2, axis=0)) > 0.02 and np.abs(raw).max() < 10


def test_sixty_seconds_stay_finite_upright_and_inside_joint_ranges(run: Run) -> None:
    for key in OBSERVATION_KEYS[:-1]:
        assert np.isfinite(run.stack(run.obs, key)).all(), key
    assert np.isfinite(run.final_qpos).all() and np.isfinite(run.final_qvel).all()
    # Standing height 0.757 m, the deepest squat takes the pelvis down ~9 cm.
    assert 0.62 < run.pelvis_z.min() < 0.72 and 0.74 < run.pelvis_z.max() < 0.78
    quat = run.final_qpos[3:7]
    assert abs(quat[0]) > 0.99  # pelvis still level and facing forward
    assert np.linalg.norm(run.final_qpos[:2]) < 0.1  # no drifting away
    ranges = np.array([run.loop.model.joint(j).range for j in run.loop.joint_names])
    q = run.stack(run.obs, "joint_pos")
    assert (q >= ranges[:, 0] - 0.02).all() and (q <= ranges[:, 1] + 0.02).all()
    assert np.abs(run.stack(run.obs, "ang_vel")).max() < 3.0


def test_robot_tracks_the_reference(run: Run) -> None:
    err = (run.stack(run.obs, "ref_joint_pos") - run.stack(run.obs, "joint_pos"))[FADE_STEPS:]
    assert np.sqrt(np.mean(err**2)) < 0.04
    assert np.abs(err).max() < 0.25
    # The motion is real: the reference moves well beyond the tracking error.
    ref = run.stack(run.obs, "ref_joint_pos")
    assert (ref.max(0) - ref.min(0)).max() > 0.5
    knee = run.loop.joint_names.index("left_knee_joint")
    assert ref[:, knee].max() - ref[:, knee].min() > 0.5


def test_band_carries_little_of_the_weight(run: Run) -> None:
    weight = 9.81 * sum(run.loop.model.body_mass)
    assert run.band_force.mean() < 0.05 * weight and run.band_force.max() < 0.25 * weight


def test_anchor_orientation_is_a_near_identity_rotation(run: Run) -> None:
    six = run.stack(run.obs, "motion_anchor_ori").reshape(-1, 3, 2)
    np.testing.assert_allclose(np.linalg.norm(six, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.einsum("ni,ni->n", six[:, :, 0], six[:, :, 1]), 0.0, atol=1e-5)
    # Robot torso follows the reference torso, so R_robot^T R_ref stays close to identity...
    identity = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert np.abs(six - identity).max() < 0.2
    # ...but is a real measurement, not a constant.
    assert np.abs(six - identity).max() > 1e-3


def test_absent_joints_stay_at_default(run: Run) -> None:
    # The 29-DoF robot has none; the 23-DoF robot's waist roll/pitch and wrist pitch/yaw are welded.
    assert run.held.shape == (len(run.obs), 29 - len(run.loop.joint_names))
    if run.held.size:
        assert np.abs(run.held - run.absent_default).max() < 5e-3


def test_reference_velocity_is_the_derivative_of_position() -> None:
    ref = ReferenceMotion("g1_29dof")
    h = 1e-5
    for t in (0.5, 1.3, 7.7, 33.0):
        (p0, _), (p1, _), (_, v) = ref(t - h), ref(t + h), ref(t)
        np.testing.assert_allclose((p1 - p0) / (2 * h), v, atol=1e-5)
    pos, vel = ref(0.0)
    np.testing.assert_array_equal(pos, g1.default_joint_pos("g1_29dof"))
    np.testing.assert_array_equal(vel, 0.0)


def test_reference_stays_inside_joint_ranges_and_23dof_keeps_absent_joints_fixed() -> None:
    doc_ranges = np.array([g1.parse_mjcf()[1][j] for j in g1.G1_29DOF_JOINTS])
    full, small = ReferenceMotion("g1_29dof"), ReferenceMotion("g1_23dof")
    absent = [g1.G1_29DOF_JOINTS.index(j) for j in g1.G1_23DOF_DROPPED]
    for t in np.linspace(0, 60, 601):
        pos, _ = full(t)
        assert (pos > doc_ranges[:, 0] + 0.05).all() and (pos < doc_ranges[:, 1] - 0.05).all()
        pos23, vel23 = small(t)
        np.testing.assert_array_equal(pos23[absent], g1.default_joint_pos("g1_29dof")[absent])
        np.testing.assert_array_equal(vel23[absent], 0.0)


def test_same_seed_same_records_and_reset_replays() -> None:
    a = list(simulate_deployment(seconds=1.0, seed=7))
    b = list(simulate_deployment(seconds=1.0, seed=7))
    c = list(simulate_deployment(seconds=1.0, seed=8))
    assert len(a) == 50
    for (oa, aa), (ob, ab) in zip(a, b, strict=True):
        np.testing.assert_array_equal(oa["full_obs"], ob["full_obs"])
        np.testing.assert_array_equal(aa["raw_action"], ab["raw_action"])
    assert not np.array_equal(a[-1][1]["raw_action"], c[-1][1]["raw_action"])
    loop = G1DeployLoop(seed=7)
    first = [loop.step() for _ in range(10)]
    loop.reset()
    assert loop.counter_step == 0 and loop.sim_time == 0.0
    again = [loop.step() for _ in range(10)]
    for (o1, a1), (o2, a2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(o1["full_obs"], o2["full_obs"])
        np.testing.assert_array_equal(a1["target_pos_full"], a2["target_pos_full"])
    np.testing.assert_array_equal(first[-1][0]["full_obs"], a[9][0]["full_obs"])


def test_rate_sets_decimation_and_sim_time() -> None:
    loop = G1DeployLoop(rate_hz=100.0)
    assert loop.decimation == 2 and loop.control_dt == pytest.approx(0.01)
    for _ in range(25):
        loop.step()
    assert loop.sim_time == pytest.approx(0.25)
    assert G1DeployLoop().decimation == 4
    assert len(list(simulate_deployment(seconds=0.5, rate_hz=100.0, robot="g1_23dof"))) == 50


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="rate_hz=30"):
        G1DeployLoop(rate_hz=30.0)
    with pytest.raises(SchemaError, match="g1_12dof"):
        G1DeployLoop(robot="g1_12dof")
    with pytest.raises(ValueError, match="seconds"):
        next(simulate_deployment(seconds=-1.0))
    with pytest.raises(ValueError, match="same length"):
        ScriptedTrackingPolicy(np.zeros(3), np.ones(4))
    with pytest.raises(ValueError, match="noise_std"):
        ScriptedTrackingPolicy(np.zeros(3), np.ones(3), noise_std=-1.0)


def test_policy_pi_correction_and_anti_windup() -> None:
    policy = ScriptedTrackingPolicy(
        np.zeros(2), np.full(2, 0.5), feedback_gain=1.0, integral_gain=0.1, integral_limit=0.2, noise_std=0.0
    )
    ref = np.array([0.3, 0.0])
    np.testing.assert_allclose(policy(ref, ref), [0.6, 0.0])  # on target: feed-forward only
    blocked = np.array([0.0, 0.0])
    for _ in range(100):  # a blocked joint: the integral saturates at 0.2 rad
        raw = policy(ref, blocked)
    np.testing.assert_allclose(raw * 0.5, [0.3 + 0.3 + 0.2, 0.0])


def test_band_pulls_back_and_is_slack_when_high() -> None:
    import mujoco

    m = g1.build_g1_model()
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key("stand").id)
    d.qpos[:3] = (0.1, -0.05, 0.75)
    mujoco.mj_forward(m, d)
    band = PelvisBand(body_id=m.body("pelvis").id)
    band.apply(m, d)
    f = d.xfrc_applied[band.body_id]
    assert f[0] < 0 and f[1] > 0 and f[2] == 0.0 and np.allclose(f[3:], 0.0, atol=1e-9)
    d.qpos[2] = 0.4  # sagging below the rope length: lifted
    d.qpos[3:7] = (np.cos(0.1), np.sin(0.1), 0.0, 0.0)  # rolled 0.2 rad: righted
    mujoco.mj_forward(m, d)
    band.apply(m, d)
    assert f[2] > 0 and f[3] < 0


def test_importing_sim_does_not_import_mujoco() -> None:
    code = "import sys, mimicdata.sim, mimicdata.robots.g1; assert 'mujoco' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_records_append_to_observation_and_action_stores() -> None:
    import mimicdata as md

    records = list(simulate_deployment(seconds=0.4, robot="g1_23dof"))
    store = md.create(
        "memory://test_sim_records",
        schema=["observations", "actions"],
        robot="g1_23dof",
        fps=50.0,
        dims={"obs": obs_dim(23)},
    )
    stamps = np.arange(len(records), dtype=np.int64) * 20_000_000
    for i, stream in enumerate(("observations", "actions")):
        batch = {k: np.stack([r[i][k] for r in records]) for k in records[0][i]}
        store[stream].append({**batch, "timestamp": stamps})
    np.testing.assert_array_equal(store["actions"]["target_pos_full"][3], records[3][1]["target_pos_full"])
    assert store["observations"].num_rows == 20
    store.close()
