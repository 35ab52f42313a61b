"""Rendering a clip: MuJoCo offscreen video where GL works, PNG filmstrip fallback where it does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mimicdata.render import render_clip
from mimicdata.retarget.clip import ClipSpec
from mimicdata.retarget.pipeline import retarget_to_store


@pytest.fixture(scope="module")
def tiny_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    url = tmp_path_factory.mktemp("render") / "expert.zarr"
    spec = [ClipSpec(str(shared_data / "mocap/bvhtoolbox/test_mocapbank.bvh"), "crouch", start=150, stop=156)]
    assert retarget_to_store(spec, url, workers=0, progress=False).ok
    return url


def _blue_pixels(path: Path) -> int:
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((img[..., 2] > 120) & (img[..., 0] < 100)).sum())


def test_falls_back_to_filmstrip_without_gl(tiny_store: Path, tmp_path: Path) -> None:
    # A backend MuJoCo cannot load stands in for a machine without any GL context.
    result = render_clip(tiny_store, 0, tmp_path / "clip.mp4", backend="no-such-gl")
    assert result.kind == "png_filmstrip" and result.path == tmp_path / "clip.png"
    assert "no OpenGL context" in result.reason and "no-such-gl" in result.reason
    assert not (tmp_path / "clip.mp4").exists()
    assert _blue_pixels(result.path) > 200  # stick figures were drawn


def test_filmstrip_on_request(tiny_store: Path, tmp_path: Path) -> None:
    result = render_clip(tiny_store, 0, tmp_path / "strip.mp4", backend="filmstrip", filmstrip_frames=3)
    assert result.kind == "png_filmstrip" and result.frames == 3 and result.reason == "filmstrip requested"
    width, height = Image.open(result.path).size
    assert width > 2 * height


def test_unknown_clip_is_an_error(tiny_store: Path, tmp_path: Path) -> None:
    with pytest.raises(IndexError, match="no clip 5; the store has 1 clip"):
        render_clip(tiny_store, 5, tmp_path / "x.mp4")


def test_mp4_with_offscreen_gl(tiny_store: Path, tmp_path: Path) -> None:
    av = pytest.importorskip("av", reason="PyAV writes the MP4")
    result = render_clip(tiny_store, 0, tmp_path / "clip.mp4", width=160, height=120, backend="egl")
    if result.kind != "mp4":
        pytest.skip(f"no EGL context on this machine ({result.reason}); the fallback is tested above")
    with av.open(str(result.path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == result.frames == 9
    assert frames[0].shape == (120, 160, 3) and frames[0].std() > 5  # not a blank image
