"""Record demonstrations of a simulated Unitree G1 at 50 Hz, saving episodes synchronously or in the background.

The flow of the asynchronous-saving design: record an episode, reset the environment, save the
episode, repeat. With ``--mode sync`` the save blocks before the next episode can start; with
``--mode async`` it is handed to a background thread and recording continues at once.

    python examples/record_g1_episodes.py --out /tmp/g1_demo.zarr --episodes 3 --seconds 4 --mode async
    python examples/record_g1_episodes.py --out /tmp/g1_demo.zarr --mode sync --resume   # adds episodes

Each frame stores the measured joint positions (state), the policy's raw action, one 240x320 RGB
camera image and the wall-clock time the frame was captured. ``--camera render`` renders the robot
with MuJoCo (``MUJOCO_GL=egl`` on headless machines; software rendering on a CPU-only machine takes
~100 ms a frame, too slow for 50 Hz, and the fps check at the end says so), ``--camera synthetic``
draws a cheap image from the joint angles instead, ``--camera none`` records no image. At the end the
script prints the episode table, how long each save blocked the loop, and the frame-rate check.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from mimicdata.episodes import EpisodeRecorder, episode_table, fps_check
from mimicdata.sim import G1DeployLoop

HEIGHT, WIDTH = 240, 320


class Camera:
    """A MuJoCo camera following the pelvis (offscreen rendering)."""

    def __init__(self, loop: G1DeployLoop) -> None:
        import mujoco

        self.loop = loop
        self.renderer = mujoco.Renderer(loop.model, HEIGHT, WIDTH)
        self.cam = mujoco.MjvCamera()
        self.cam.distance, self.cam.azimuth, self.cam.elevation = 2.8, 140.0, -15.0
        self.pelvis = loop.model.body("pelvis").id

    def __call__(self) -> np.ndarray:
        self.cam.lookat[:] = self.loop.data.xpos[self.pelvis]
        self.renderer.update_scene(self.loop.data, camera=self.cam)
        return self.renderer.render()


def synthetic_camera(loop: G1DeployLoop) -> np.ndarray:
    """A 240x320 image computed from the joint angles (about 1 ms): bands whose colour follows each joint."""
    q = loop.data.qpos[7:]
    rows = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None]
    bands = np.repeat(q.astype(np.float32), -(-WIDTH // len(q)))[:WIDTH][None, :]
    red = 127.5 * (1.0 + np.sin(3.0 * bands + 4.0 * rows))
    green = np.broadcast_to(255.0 * rows, red.shape)
    blue = 127.5 * (1.0 + np.cos(2.0 * bands))
    return np.stack([red, green, np.broadcast_to(blue, red.shape)], axis=-1).astype(np.uint8)


def record_episode(rec: EpisodeRecorder, loop: G1DeployLoop, camera: Callable[[], np.ndarray] | None,
                   seconds: float, task: str) -> np.ndarray:
    """Run the 50 Hz loop for ``seconds``, adding one frame per tick; returns the measured periods (s)."""
    period = loop.control_dt
    next_tick = time.perf_counter()
    stamps = []
    for _ in range(round(seconds * loop.rate_hz)):
        stamp = time.time_ns()
        obs, act = loop.step()
        frame = {"state": obs["joint_pos"], "action": act["raw_action"], "timestamp": stamp, "task": task}
        if camera is not None:
            frame["image.head"] = camera()
        rec.add_frame(frame)
        stamps.append(time.perf_counter())
        next_tick += period
        delay = next_tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.perf_counter()  # late: do not try to catch up with a burst
    return np.diff(stamps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="g1_episodes.zarr", help="episodes store to create or resume")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each episode")
    parser.add_argument("--reset-seconds", type=float, default=1.0, help="time the environment reset takes")
    parser.add_argument("--mode", choices=("sync", "async"), default="async")
    parser.add_argument("--camera", choices=("render", "synthetic", "none"), default="render")
    parser.add_argument("--resume", action="store_true", help="add episodes to an existing store")
    parser.add_argument("--task", default="stand and track the reference motion")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")

    loop = G1DeployLoop("g1_29dof", seed=0, rate_hz=50.0)
    camera: Callable[[], np.ndarray] | None = {
        "render": lambda: Camera(loop), "synthetic": lambda: lambda: synthetic_camera(loop), "none": lambda: None,
    }[args.camera]()
    cameras = {} if camera is None else {"head": (HEIGHT, WIDTH)}
    setup = {"fps": loop.rate_hz, "state": list(loop.joint_names), "action": list(loop.joint_names),
             "robot": "g1_29dof", "cameras": cameras}
    rec = (EpisodeRecorder.resume(args.out, **setup) if args.resume
           else EpisodeRecorder.create(args.out, overwrite=True, **setup))
    if args.mode == "async":
        rec.enable_async_saving(max_queue_size=4, save_timeout=120.0)
    blocked = []
    try:
        for _ in range(args.episodes):
            periods = record_episode(rec, loop, camera, args.seconds, args.task)
            late = int((periods > 1.5 * loop.control_dt).sum())
            # reset the environment (a real robot walks back to its start pose meanwhile)
            loop.reset()
            time.sleep(args.reset_seconds)
            began = time.perf_counter()
            index = rec.next_episode_index
            if args.mode == "async":
                queued = rec.save_episode_async(success=True, metadata={"mode": args.mode})
            else:
                rec.save_episode(success=True, metadata={"mode": args.mode})
                queued = False
            blocked.append(time.perf_counter() - began)
            print(f"episode {index}: {len(periods) + 1} frames, period {1e3 * periods.mean():.2f} ms "
                  f"(max {1e3 * periods.max():.1f}, {late} late); save blocked the loop "
                  f"{1e3 * blocked[-1]:.1f} ms{' (queued)' if queued else ''}")
        if args.mode == "async":
            began = time.perf_counter()
            rec.wait_for_async_saves()
            print(f"waited {time.perf_counter() - began:.2f} s for background saves; "
                  f"status {rec.get_async_save_status()}")
            for result in rec.get_async_save_results():
                print("  ", result)
    finally:
        rec.close()
    print(episode_table(args.out))
    check = fps_check(args.out)
    print(f"fps check: {check['message']}")
    print(f"save blocked the loop: mean {1e3 * np.mean(blocked):.1f} ms, max {1e3 * np.max(blocked):.1f} ms "
          f"({args.mode})")


if __name__ == "__main__":
    main()
