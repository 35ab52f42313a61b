"""Throughput of the simulated G1 deployment loop (mimicdata.sim.G1DeployLoop).

Claim: the loop runs many times faster than real time on one CPU core, so ``mimicdata demo`` and
paced deploy-loop examples are never limited by the simulation.

Baseline, measured in the same run: bare ``mujoco.mj_step`` on the same compiled model (same
contacts, same integrator) with constant controls. The loop does that physics plus the reference
motion, reference-pose kinematics, the policy, the band and record building; the ratio
``loop physics steps/s / bare mj_step steps/s`` is the share of time left to physics.

    python benchmarks/sim_g1.py --quick     # ~10 s
    python benchmarks/sim_g1.py             # 60 s of simulated motion per robot, best of 3
"""

from __future__ import annotations

import argparse
import time


def bare_mj_step_rate(robot: str, steps: int) -> float:
    """Physics steps per second of plain mj_step on the loop's model, standing pose, fixed ctrl."""
    import mujoco

    from mimicdata.robots.g1 import build_g1_model

    m = build_g1_model(robot)
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key("stand").id)
    start = time.perf_counter()
    for _ in range(steps):
        mujoco.mj_step(m, d)
    return steps / (time.perf_counter() - start)


def loop_rate(robot: str, control_steps: int) -> tuple[float, float]:
    """(control steps/s, physics steps/s) of G1DeployLoop over ``control_steps`` steps."""
    from mimicdata.sim import G1DeployLoop

    loop = G1DeployLoop(robot=robot)
    start = time.perf_counter()
    for _ in range(control_steps):
        loop.step()
    rate = control_steps / (time.perf_counter() - start)
    return rate, rate * loop.decimation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 s of simulated motion, one repeat")
    args = parser.parse_args()
    seconds, repeats = (10.0, 1) if args.quick else (60.0, 3)
    control_steps = round(seconds * 50)
    print(f"G1 deploy loop, 50 Hz control, sim dt 0.005 s, {seconds:g} s simulated, best of {repeats}")
    print(
        f"{'robot':10s} {'loop ctrl/s':>12s} {'x real time':>12s} {'loop phys/s':>12s} "
        f"{'bare phys/s':>12s} {'loop/bare':>10s}"
    )
    for robot in ("g1_29dof", "g1_23dof"):
        ctrl, phys = max(loop_rate(robot, control_steps) for _ in range(repeats))
        bare = max(bare_mj_step_rate(robot, control_steps * 4) for _ in range(repeats))
        print(f"{robot:10s} {ctrl:12.0f} {ctrl / 50.0:12.1f} {phys:12.0f} {bare:12.0f} {phys / bare:10.2f}")


if __name__ == "__main__":
    main()
