"""A writer killed with SIGKILL at random moments leaves a store that opens, validates and holds a prefix."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mimicdata as md
from mimicdata.report import validate_store

SCRIPT = Path(__file__).parent / "scripts" / "crash_writer.py"
KILLS = 12  # per kind: 24 random kills in all


def _run_and_kill(path: Path, kind: str, rng: random.Random) -> None:
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(path), kind], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for expected in ("ready", "committed"):  # a known point: the store exists and holds this run's first commit
        line = proc.stdout.readline()
        if line.strip() != expected:
            proc.kill()
            raise AssertionError(f"writer did not say {expected!r}: {line}{proc.stderr.read() if proc.stderr else ''}")
    time.sleep(rng.uniform(0.0, 0.4))  # then a random moment: inside a later commit or between two
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("kind", ["log", "episodes"])
def test_sigkill_at_random_moments_leaves_a_valid_prefix(tmp_path: Path, kind: str) -> None:
    rng = random.Random(1234 if kind == "log" else 4321)
    path = tmp_path / f"{kind}.zarr"
    seen = 0
    for _ in range(KILLS):
        _run_and_kill(path, kind, rng)
        assert validate_store(str(path)) == []
        store = md.open(path)
        if kind == "log":
            rows = store["observations"]["counter_step"]
            np.testing.assert_array_equal(rows, np.arange(len(rows)))  # a prefix: no holes, no fill rows
            acts = store["actions"]["counter_step"]
            np.testing.assert_array_equal(acts, np.arange(len(acts)))
        else:
            frames = store["frames"]
            np.testing.assert_array_equal(frames["state"][:, 0], np.arange(frames.num_rows))
            segs = frames.segments()
            assert len(segs) == 0 or segs[-1, 1] == frames.num_rows  # no half episode is visible
            rows = frames["state"][:, 0]
        assert len(rows) > seen  # nothing committed earlier was lost, and this run's first commit is there
        seen = len(rows)
