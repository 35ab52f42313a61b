"""Shared fixtures. Real data lives in ../shared beside the checkout (CI has it; users do not)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# XLA's CPU backend spends most of a test's MJX compile in LLVM's optimiser; the tests run a handful of
# iterations, so unoptimised code is the faster trade (compile 128 s -> 93 s for the AMP training step on
# 2 cores). Results are compared within one configuration only. A caller's own XLA_FLAGS win.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data (real mocap and a LeRobot v3.0 dataset)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return path


class SmallDisk:
    """A 3 MiB tmpfs mounted for one test: real ``ENOSPC`` after :meth:`fill`, real ``EROFS`` after
    :meth:`read_only` (CI runs as root, where chmod cannot make anything read-only)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fill(self, leave: int = 0) -> None:
        """Write a filler file until the file system refuses, then give ``leave`` bytes back."""
        filler = self.path / ".filler"
        with open(filler, "ab", buffering=0) as fh:
            for block in (1 << 16, 1 << 12, 1 << 9, 1):
                try:
                    while fh.write(b"\0" * block):
                        pass
                except OSError:
                    continue
        if leave:
            os.truncate(filler, max(0, filler.stat().st_size - leave))

    def free(self) -> None:
        (self.path / ".filler").unlink(missing_ok=True)

    def read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A real small file system (tmpfs, 3 MiB); skipped only where mounting is refused (not root, no tmpfs)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield SmallDisk(mount)
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)  # a child still holds a file
