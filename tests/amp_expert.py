"""A small synthetic expert_trajectory store for the AMP tests: a G1 stepping in place while drifting
forward (sinusoidal hips/knees, pelvis translating), with bodies from C MuJoCo forward kinematics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import mimicdata as md


def write_expert_store(url: str | Path, robot: str = "g1_29dof", clips: tuple[int, ...] = (80, 60),
                       fps: float = 50.0) -> Path:
    import mujoco

    from mimicdata.robots import g1

    model = g1.build_g1_model(robot)
    data = mujoco.MjData(model)
    joints = g1.robot_joints(robot)
    adr = [model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in joints]
    store = md.create(url, "expert_trajectory", robot=robot, fps=fps, overwrite=True)
    for c, n in enumerate(clips):
        t = np.arange(n) / fps
        qpos = np.tile(model.key("stand").qpos, (n, 1))
        qpos[:, 0] = 0.5 * t + 0.1 * c
        phase = 2 * np.pi * 1.2 * t
        for side, sign in (("left", 1.0), ("right", -1.0)):
            for name, amp in (("hip_pitch", 0.35), ("knee", 0.3), ("ankle_pitch", 0.15)):
                j = f"{side}_{name}_joint"
                if j in joints:
                    qpos[:, adr[joints.index(j)]] += sign * amp * np.sin(phase)
        robot_q = np.concatenate([qpos[:, :7], qpos[:, adr]], axis=1)
        qvel = np.zeros((n, 6 + len(joints)))
        qvel[1:, :3] = np.diff(robot_q[:, :3], axis=0) * fps
        qvel[1:, 6:] = np.diff(robot_q[:, 7:], axis=0) * fps
        body_pos, body_quat = [], []
        for q in qpos:
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            body_pos.append(data.xpos[1:].copy())
            body_quat.append(data.xquat[1:].copy())
        frames = {"qpos": robot_q.astype(np.float32), "qvel": qvel.astype(np.float32),
                  "body_pos": np.array(body_pos, np.float32), "body_quat": np.array(body_quat, np.float32)}
        store.append_segment("clips", frames=frames, row={"name": f"clip{c}", "source": "synthetic", "fps": fps})
    store.close()
    return Path(url)
