"""A G1 policy loop at 50 Hz in MuJoCo that logs exactly the seed's observation and action records.

The seed (BeyondMimic deploy) turned logging on with ``BeyondMimic(..., enable_logging=True,
log_dir="./logs/beyond_mimic")``. Here the policy class holds a :class:`PolicyLogging` with the same
two options; the loop runs the simulated G1 (``mimicdata.sim.G1DeployLoop``: scripted tracking
policy, 29 or 23 joints), paced to real time like a robot's control loop.

    python examples/deploy_g1_logging.py --seconds 10 --log-dir ./logs/beyond_mimic
    mimicdata timing logs/beyond_mimic/log_*.zarr
    mimicdata plot logs/beyond_mimic/log_*.zarr --joints left_knee,right_knee --out knees.png

Ctrl-C stops the loop; everything logged until then is in the store.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mimicdata.logger import load_log
from mimicdata.logger.deploy import PolicyLogging, run_policy_loop


class SimulatedBeyondMimic:
    """The seed's policy interface: ``enable_logging`` / ``log_dir``; ``run()`` one step, ``exit()``."""

    def __init__(self, robot: str = "g1_29dof", rate_hz: float = 50.0, enable_logging: bool = False,
                 log_dir: str | Path = "./logs/beyond_mimic", seed: int = 0) -> None:
        from mimicdata.sim import G1DeployLoop

        self.loop = G1DeployLoop(robot=robot, seed=seed, rate_hz=rate_hz)
        self.logging = PolicyLogging(enable_logging, log_dir, robot=robot, fps=rate_hz)

    def run(self) -> tuple[dict, dict]:
        """One control step: observe, act, step the physics; returns the records the seed logs."""
        return self.loop.step()

    def exit(self) -> None:
        self.logging.exit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to run the loop")
    parser.add_argument("--rate", type=float, default=50.0, help="control rate in Hz")
    parser.add_argument("--robot", default="g1_29dof", choices=["g1_29dof", "g1_23dof"])
    parser.add_argument("--log-dir", default="./logs/beyond_mimic", help="folder for the session's store")
    parser.add_argument("--no-logging", action="store_true", help="run without logging (enable_logging=False)")
    parser.add_argument("--fast", action="store_true", help="do not pace to real time")
    args = parser.parse_args()

    policy = SimulatedBeyondMimic(args.robot, args.rate, enable_logging=not args.no_logging, log_dir=args.log_dir)
    result = run_policy_loop(policy.run, seconds=args.seconds, rate_hz=args.rate,
                             policy_logging=policy.logging, realtime=not args.fast)
    print(f"{result.steps} steps in {result.wall_s:.2f} s ({result.late_steps} started late)")
    if result.log_path is None:
        return
    status = result.log_status
    assert status is not None
    print(f"log: {result.log_path} ({status.written} records written, {status.dropped} dropped)")
    with load_log(result.log_path) as log:
        obs, act = log["observations"], log["actions"]
        print(f"observations: {obs.num_rows} rows, fields {sorted(obs)}")
        print(f"actions: {act.num_rows} rows, fields {sorted(act)}")
        print(log.to_polars("actions", ["counter_step", "timestamp"]).tail(3))


if __name__ == "__main__":
    main()
