"""Real faults for the commands that write stores: `mimicdata retarget --out` and `mimicdata convert` onto
a disk that fills up or is read-only. Each ends in one `error:` line and a non-zero exit, never a
traceback, and leaves no output that looks complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mimicdata_cli.main import app
from typer.testing import CliRunner

import mimicdata as md
from mimicdata.report import validate_store
from tests.conftest import SmallDisk
from tests.helpers import act_batch, obs_batch

REPO = Path(__file__).resolve().parents[1]
WALK = REPO / "mimicdata" / "data" / "mocapbank" / "mocapbank_walk.bvh"
SESSION = "20251113_143022"


def _one_error_line(result: object) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception  # type: ignore[attr-defined]
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    text = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    return errors[0]


@pytest.fixture(scope="module")
def short_walk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled MocapBank walk cut to its first 40 frames (a valid BVH; the IK stays quick)."""
    lines = WALK.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Frames:"))
    path = tmp_path_factory.mktemp("bvh") / "walk40.bvh"
    path.write_text("\n".join([*lines[:at], "Frames:\t40", *lines[at + 1:at + 42]]) + "\n")
    return path


@pytest.fixture(scope="module")
def seed_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seed JSON-lines log pair (observations + actions) of 400 records each (~2 MB of text)."""
    folder = tmp_path_factory.mktemp("seed")
    for name, batch in (("observations", obs_batch(400)), ("actions", act_batch(400))):
        with open(folder / f"{name}_{SESSION}.jsonl", "w") as fh:
            for i in range(400):
                record = {k: v[i].tolist() for k, v in batch.items() if k != "timestamp"}
                fh.write(json.dumps({**record, "_timestamp": 1_763_044_222.0 + 0.02 * i}) + "\n")
    return folder


def _retarget(source: Path, out: Path) -> object:
    return CliRunner().invoke(app, ["retarget", str(source), "--out", str(out), "--workers", "0", "--quiet"])


def test_retarget_onto_a_read_only_disk(small_disk: SmallDisk, short_walk: Path) -> None:
    small_disk.read_only()
    line = _one_error_line(_retarget(short_walk, small_disk.path / "expert.zarr"))
    assert "Read-only file system" in line and "expert.zarr" in line


def test_retarget_onto_a_disk_that_fills(small_disk: SmallDisk, short_walk: Path) -> None:
    small_disk.fill(leave=40_000)  # room for the store's metadata, not for the clip
    out = small_disk.path / "expert.zarr"
    line = _one_error_line(_retarget(short_walk, out))
    assert "No space left" in line
    assert not out.exists() or (validate_store(str(out)) == [] and md.open(out)["clips"].num_rows == 0)


def _convert(src: Path, dst: Path) -> object:
    return CliRunner().invoke(app, ["convert", str(src), str(dst), "--from", "seedlog"])


def test_convert_onto_a_read_only_disk(small_disk: SmallDisk, seed_logs: Path) -> None:
    small_disk.read_only()
    line = _one_error_line(_convert(seed_logs, small_disk.path / "run.zarr"))
    assert "Read-only file system" in line


def test_convert_onto_a_disk_that_fills(small_disk: SmallDisk, seed_logs: Path) -> None:
    small_disk.fill(leave=200_000)  # the store starts, the rows do not fit
    out = small_disk.path / "run.zarr"
    line = _one_error_line(_convert(seed_logs, out))
    assert "No space left" in line and "removed" in line
    assert not out.exists()  # no partial output that could pass for a whole conversion
    small_disk.free()
    result = _convert(seed_logs, out)  # with room, the same command succeeds
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert md.open(out)["observations"].num_rows == 400
