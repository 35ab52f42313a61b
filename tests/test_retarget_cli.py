"""`mimicdata extract`, `retarget` and `render` through the command line."""

from __future__ import annotations

from pathlib import Path

import typer
from mimicdata_cli.retarget import register
from typer.testing import CliRunner

import mimicdata as md

FIX = Path(__file__).parent / "fixtures" / "motion"


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Keep sub-command names even with few commands."""

    return app


def test_extract_retarget_render(shared_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    app = _app()
    manifest = tmp_path / "m.json"
    res = runner.invoke(app, ["extract", str(shared_data / "mocap/bvhtoolbox"), "--frames", "100:160",
                              "--out", str(manifest)])
    assert res.exit_code == 0, res.output
    assert "1 clip(s)" in res.output and "test_mocapbank: frames 100:160" in res.output
    out = tmp_path / "e.zarr"
    res = runner.invoke(app, ["retarget", str(manifest), "--out", str(out), "--workers", "0", "--joints",
                              "g1_23dof", "--fps", "30", "-q"])
    assert res.exit_code == 0, res.output
    assert "1 clip(s) written" in res.output
    with md.open(out) as store:
        assert store.robot.name == "g1_23dof" and store.fps == 30.0
        assert store["frames"].num_rows == 60 and store["frames"].read("qpos").shape == (60, 30)
    res = runner.invoke(app, ["render", str(out), "--out", str(tmp_path / "c.mp4"), "--filmstrip"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c.png").is_file() and "png_filmstrip" in res.output


def test_retarget_reports_failures_with_exit_code(shared_data: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(_app(), ["retarget", str(FIX / "custom_rig.bvh"), str(FIX / "malformed_frame.bvh"),
                                      "--out", str(tmp_path / "e.zarr"), "--workers", "0", "-q",
                                      "--map", str(FIX / "custom_rig_map.yaml")])
    assert res.exit_code == 1
    assert "1 clip(s) written" in res.output
    assert "FAILED clip 1" in res.output and "malformed_frame.bvh:20" in res.output


def test_unmappable_skeleton_without_map(tmp_path: Path) -> None:
    # custom_rig.bvh is now recognised by its hierarchy; this one has one leg and no arms.
    res = CliRunner().invoke(_app(), ["retarget", str(FIX / "hand_fk_yup.bvh"), "--out", str(tmp_path / "e.zarr"),
                                      "--workers", "0", "-q"])
    assert res.exit_code == 1
    assert "MappingError" in res.output and "skeleton not recognised" in res.output and "--map" in res.output
