"""The `mimicdata` CLI: inspect, validate, query, demo, and one clear error line for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mimicdata_cli.main import app
from typer.testing import CliRunner

import mimicdata as md
import mimicdata.report
from tests.helpers import act_batch, obs_batch

runner = CliRunner()


@pytest.fixture()
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log.zarr"
    store = md.create(path, ["observations", "actions"], robot="g1_29dof", fps=50, dims={"obs": 160})
    store["observations"].append(obs_batch(500))
    store["actions"].append(act_batch(500))
    store.close()
    return path


def test_help_on_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]  # type: ignore[union-attr]
    for name in commands:
        sub = runner.invoke(app, [name, "--help"])
        assert sub.exit_code == 0, name
        assert "Usage" in sub.output


def test_inspect_tree_and_stable_json(log: Path) -> None:
    text = runner.invoke(app, ["inspect", str(log)])
    assert text.exit_code == 0
    assert "observations: observations v1.1, 500 rows @ 50 Hz" in text.output
    assert "joint_pos" in text.output and "transpose" in text.output and "timing:" in text.output
    data = json.loads(runner.invoke(app, ["inspect", str(log), "--json"]).output)
    obs = data["streams"]["observations"]
    assert data["robot"]["name"] == "g1_29dof" and data["quat_order"] == "wxyz"
    assert obs["arrays"]["joint_pos"]["shape"] == [500, 29] and obs["arrays"]["joint_pos"]["dims"] == ["time", "joint"]
    assert obs["timing"]["mean_period_ms"] == pytest.approx(20.0) and obs["timing"]["missed_ticks"] == 0
    assert 0 < obs["ratio"] < 1


def test_inspect_reports_missed_ticks_and_slow_loops(tmp_path: Path) -> None:
    store = md.create(tmp_path / "slow.zarr", "actions", robot="g1_29dof", fps=50)
    batch = act_batch(100)
    batch["timestamp"] = batch["timestamp"][0] + np.cumsum(np.r_[0, np.full(99, 25_000_000)])  # 40 Hz, not 50
    batch["timestamp"][50:] += 60_000_000  # a 60 ms hole = 3 missed ticks at 20 ms
    store["actions"].append(batch)
    store.close()
    data = json.loads(runner.invoke(app, ["inspect", str(tmp_path / "slow.zarr"), "--json"]).output)
    timing = data["streams"]["actions"]["timing"]
    assert timing["slower_than_declared"] is True and timing["max_gap_ms"] == pytest.approx(85.0)
    assert "slower than the declared" in runner.invoke(app, ["inspect", str(tmp_path / "slow.zarr")]).output


def test_validate_ok_and_problems(log: Path) -> None:
    assert runner.invoke(app, ["validate", str(log)]).exit_code == 0
    chunk = next((log / "observations" / "joint_pos" / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.write_bytes(chunk.read_bytes()[:20])  # truncate a chunk file
    result = runner.invoke(app, ["validate", str(log)])
    assert result.exit_code == 1
    assert "observations.joint_pos: corrupted chunk" in result.output and "INVALID" in result.output


def test_validate_finds_nan_and_backwards_time(tmp_path: Path) -> None:
    store = md.create(tmp_path / "n.zarr", "actions", robot="g1_29dof", fps=50)
    store["actions"].append(act_batch(10))
    store.close()
    import zarr

    arr = zarr.open_array(str(tmp_path / "n.zarr/actions/raw_action"), mode="r+")
    arr[4, 2] = np.nan  # written behind mimicdata's back
    ts = zarr.open_array(str(tmp_path / "n.zarr/actions/timestamp"), mode="r+")
    ts[7] = 0
    out = runner.invoke(app, ["validate", str(tmp_path / "n.zarr")]).output
    assert "actions.raw_action: 1 NaN/Inf value(s), first at row 4" in out
    assert "timestamps go backwards" in out


def test_query_formats(log: Path, tmp_path: Path) -> None:
    sql = "select counter_step, joint_pos from observations where counter_step < 3"
    table = runner.invoke(app, ["query", str(log), sql])
    assert table.exit_code == 0 and "counter_step" in table.output
    csv = runner.invoke(app, ["query", str(log), sql, "--format", "csv"]).output.splitlines()
    assert csv[0].startswith("counter_step,joint_pos[0],joint_pos[1]") and len(csv) == 4
    rows = json.loads(runner.invoke(app, ["query", str(log), sql, "--format", "json"]).output)
    assert [r["counter_step"] for r in rows] == [0, 1, 2]
    out = tmp_path / "q.parquet"
    assert runner.invoke(app, ["query", str(log), sql, "--format", "parquet", "--out", str(out)]).exit_code == 0
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 3


@pytest.mark.parametrize("args,needle", [
    (["inspect", "/no/such/store.zarr"], "does not exist"),
    (["validate", "/no/such/store.zarr"], "does not exist"),
    (["query", "/no/such/store.zarr", "select 1"], "does not exist"),
])
def test_bad_paths_give_one_clear_line(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith(("error:", "problem:"))


def test_query_bad_sql_is_a_clear_error(log: Path) -> None:
    result = runner.invoke(app, ["query", str(log), "select nope from observations"])
    assert result.exit_code == 1 and result.output.startswith("error:")


def test_demo_writes_a_store_and_prints_inspect_and_query(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", str(tmp_path / "demo"), "--seconds", "2"])
    assert result.exit_code == 0, result.output
    assert "observations: observations v1.1, 100 rows @ 50 Hz" in result.output
    assert "mean_abs_err" in result.output
    store = md.open(tmp_path / "demo" / "g1_deploy.zarr")
    assert store["actions"].num_rows == 100 and md.report.validate_store(str(store.location)) == []
    again = runner.invoke(app, ["demo", str(tmp_path / "demo"), "--seconds", "1"])
    assert again.exit_code == 1 and "--overwrite" in again.output
    shutil.rmtree(tmp_path / "demo")


@pytest.mark.parametrize("damage", ["observations/zarr.json", "actions/kps/zarr.json", "zarr.json"])
def test_damaged_metadata_is_one_clear_error(log: Path, damage: str) -> None:
    path = log / damage
    path.write_text(path.read_text()[:60])  # a metadata file cut short
    for command in (["inspect", str(log)], ["validate", str(log)], ["query", str(log), "select 1 as x from actions"]):
        result = runner.invoke(app, command)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1, (command, result.output)
        assert lines[0].startswith("error:") and ("metadata" in lines[0] or "root zarr.json" in lines[0])


def test_a_folder_of_stores_is_named_in_the_error(log: Path) -> None:
    result = runner.invoke(app, ["inspect", str(log.parent)])
    assert result.exit_code == 1 and "it holds the store(s) log.zarr" in result.output


def test_convert_of_a_missing_input_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["convert", str(tmp_path / "nope"), str(tmp_path / "out.zarr")])
    assert result.exit_code == 1 and "does not exist" in result.output
    assert not (tmp_path / "out.zarr").exists()


def test_a_missing_optional_package_names_its_extra(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mujoco", None)  # as if MuJoCo were not installed
    monkeypatch.delitem(sys.modules, "mimicdata.sim.g1_loop", raising=False)
    result = runner.invoke(app, ["demo", str(log.parent / "demo")])
    assert result.exit_code == 1
    assert "pip install 'mimicdata[sim]'" in result.output
