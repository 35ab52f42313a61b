"""Appends to a store forever; the crash test kills it with SIGKILL at random moments after its first commit.

Every row carries its own global row number, so the test can check that what survives is an exact prefix.
"""

from __future__ import annotations

import sys

import numpy as np

import mimicdata as md

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from tests.helpers import act_batch, episode_frames, obs_batch


def main(path: str, kind: str) -> None:
    try:
        store = md.open(path, "a")
    except md.StoreNotFoundError:
        if kind == "log":
            store = md.create(path, ["observations", "actions"], robot="g1_29dof", fps=50, dims={"obs": 160})
        else:
            store = md.create(path, "episodes", robot="g1_29dof", fps=50, dims={"state": 29, "action": 29})
    print("ready", flush=True)
    rng = np.random.default_rng()
    first = True
    while True:
        if kind == "log":
            n = int(rng.integers(1, 300))
            start = store["observations"].num_rows
            store["observations"].append(obs_batch(n, start=start))
            store["actions"].append(act_batch(n, start=store["actions"].num_rows))
        else:
            n = int(rng.integers(2, 40))
            start = store["frames"].num_rows
            frames = episode_frames(n, image=(8, 8), t0=1_790_000_000_000_000_000 + start * 20_000_000)
            frames["state"][:, 0] = np.arange(start, start + n)
            store.append_segment("episodes", frames=frames, row={"task": "t", "success": 1})
        if first:  # the test kills only after this line: every run commits at least once, whatever the speed
            print("committed", flush=True)
            first = False


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
