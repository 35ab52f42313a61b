"""`mimicdata render` on long clips: a frame range and stride, progress, and one error line on failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mimicdata_cli.main import app
from typer.testing import CliRunner

import mimicdata as md
from mimicdata.render import ClipNotFoundError, FrameRange, load_clip, render_clip, write_video
from tests.helpers import expert_frames


@pytest.fixture(scope="module")
def expert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two clips (30 and 50 frames at 50 Hz) of valid G1 trajectories, written without IK."""
    path = tmp_path_factory.mktemp("render") / "expert.zarr"
    store = md.create(path, "expert_trajectory", robot="g1_29dof", fps=50)
    for name, n in (("a", 30), ("b", 50)):
        frames = expert_frames(n)
        frames["qpos"][:, 2] = 0.8  # standing height, so the robot is in view
        store.append_segment("clips", frames=frames, row={"name": name, "source": f"{name}.bvh", "fps": 50.0})
    store.close()
    return path


def test_frame_range_and_stride_pick_the_stored_frames(expert: Path) -> None:
    qpos, body_pos, _, fps, _ = load_clip(expert, 1, FrameRange(10, 40, 3))
    stored = md.open(expert)["frames"].read("body_pos", 30 + 10, 30 + 40)[::3]
    assert len(qpos) == len(body_pos) == 10 and fps == pytest.approx(50 / 3)  # real time kept
    np.testing.assert_allclose(body_pos, stored)
    assert len(load_clip(expert, 0)[0]) == 30  # default: the whole clip


@pytest.mark.parametrize("frames", [FrameRange(40, 20), FrameRange(0, 51), FrameRange(-1), FrameRange(stride=0)])
def test_bad_frame_ranges_are_clear_errors(expert: Path, frames: FrameRange) -> None:
    with pytest.raises(md.MimicDataError, match=r"clip 1: (frame range|stride)"):
        load_clip(expert, 1, frames)


def test_cli_errors_are_one_line(expert: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for args, needle in ((["--clip", "7"], "no clip 7; the store has 2"),
                         (["--clip", "1", "--start", "45", "--end", "30"], "frame range 45:30"),
                         (["--filmstrip", "--out", str(tmp_path / "missing" / "x.png")], "missing")):
        result = runner.invoke(app, ["render", str(expert), "--out", str(tmp_path / "x.mp4"), *args])
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr
    assert isinstance(ClipNotFoundError("x"), IndexError)


def test_filmstrip_of_a_range(expert: Path, tmp_path: Path) -> None:
    result = render_clip(expert, 1, tmp_path / "s.png", backend="filmstrip", filmstrip_frames=4,
                         frames=FrameRange(0, 50, 5))
    assert result.kind == "png_filmstrip" and result.frames == 4 and result.path.stat().st_size > 0


def test_video_streams_progress_for_every_frame_and_has_no_time_limit(expert: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    result = render_clip(expert, 0, tmp_path / "c.mp4", width=64, height=48, frames=FrameRange(0, 30, 6),
                         progress=lambda done, total: seen.append((done, total)))
    if result.kind != "mp4":
        pytest.skip(f"no OpenGL context here ({result.reason}); the filmstrip path is tested above")
    assert seen == [(i, 5) for i in range(1, 6)] and result.frames == 5
    assert (tmp_path / "c.mp4").stat().st_size > 0
    assert not list(tmp_path.glob(".*partial*"))


def test_a_failed_encode_leaves_no_file_under_the_requested_name(tmp_path: Path) -> None:
    def frames() -> object:
        yield np.zeros((48, 64, 3), np.uint8)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_video(frames(), tmp_path / "v.gif", fps=10)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
