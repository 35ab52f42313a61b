"""Converting the seed's logs (streaming pickle, DataLogger pickle/pickle.gz, JSON lines, JSON) into stores."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import mimicdata as md
from mimicdata.convert import seedlog

SESSION = "20251113_143022"
T0 = 1_763_044_222.0  # the seed's _timestamp: time.time() floats


@pytest.fixture(scope="module")
def records() -> list[tuple[dict, dict]]:
    """Observation/action records of a simulated 23-joint G1 (the seed's robot), with the seed's _timestamp."""
    from mimicdata.sim import simulate_deployment

    out = []
    for i, (obs, act) in enumerate(simulate_deployment(seconds=1.0, rate_hz=50.0, robot="g1_23dof", seed=1)):
        out.append(({**obs, "_timestamp": T0 + 0.02 * i}, {**act, "_timestamp": T0 + 0.02 * i + 0.001}))
    return out


def write_streaming_pickle(folder: Path, records: list[tuple[dict, dict]], prefix: str = "") -> None:
    """What the seed's StreamingPickleLogger writes: one pickle.dump per record, per stream file."""
    folder.mkdir(parents=True, exist_ok=True)
    for idx, name in ((0, "observations"), (1, "actions")):
        with open(folder / f"{prefix}{name}_{SESSION}.pkl", "ab") as fh:
            for pair in records:
                pickle.dump(pair[idx], fh, protocol=pickle.HIGHEST_PROTOCOL)


def as_json(record: dict) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in record.items()}


def check_round_trip(store: md.Store, records: list[tuple[dict, dict]], n: int | None = None) -> None:
    n = len(records) if n is None else n
    for idx, name in ((0, "observations"), (1, "actions")):
        stream = store[name]
        assert stream.num_rows == n and stream.schema == name
        for field in records[0][idx]:
            if field == "_timestamp":
                expected = np.array([round(r[idx]["_timestamp"] * 1e9) for r in records[:n]])
                np.testing.assert_array_equal(stream["timestamp"], expected)
            else:
                expected = np.stack([np.asarray(r[idx][field]) for r in records[:n]])
                np.testing.assert_allclose(stream[field], expected.astype(stream[field].dtype), err_msg=field)


def test_detect(tmp_path: Path, records: list) -> None:
    write_streaming_pickle(tmp_path / "logs", records[:2])
    assert seedlog.detect(tmp_path / "logs")
    assert seedlog.detect(tmp_path / "logs" / f"actions_{SESSION}.pkl")
    assert not seedlog.detect(tmp_path)  # no log files directly in it
    md.create(tmp_path / "store.zarr").close()
    assert not seedlog.detect(tmp_path / "store.zarr")


def test_pickle_needs_explicit_permission(tmp_path: Path, records: list) -> None:
    write_streaming_pickle(tmp_path / "logs", records[:3])
    with pytest.raises(seedlog.PickleRefusedError, match="runs code"):
        seedlog.convert(tmp_path / "logs", tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()  # refused before anything was written


def test_streaming_pickle_round_trip(tmp_path: Path, records: list) -> None:
    write_streaming_pickle(tmp_path / "logs", records, prefix="g1_")
    report = seedlog.convert(tmp_path / "logs", tmp_path / "out.zarr", allow_pickle=True)
    assert report.ok and report.rows == {"actions": 50, "observations": 50}
    store = md.open(tmp_path / "out.zarr")
    assert store.robot.name == "g1_23dof" and store.attrs["session_id"] == SESSION
    check_round_trip(store, records)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "pkl_list", "pkl_gz"])
def test_other_seed_formats(tmp_path: Path, records: list, fmt: str) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    for idx, name in ((0, "observations"), (1, "actions")):
        rows = [pair[idx] for pair in records]
        if fmt == "jsonl":  # DataLogger(format="jsonl"): arrays as lists, one object per line
            (folder / f"{name}_{SESSION}.jsonl").write_text("".join(json.dumps(as_json(r)) + "\n" for r in rows))
        elif fmt == "json":
            (folder / f"{name}_{SESSION}.json").write_text(json.dumps({"records": [as_json(r) for r in rows]}))
        elif fmt == "pkl_list":  # DataLogger(format="pickle"): the whole file is one list
            (folder / f"{name}_{SESSION}.pkl").write_bytes(pickle.dumps(rows))
        else:
            (folder / f"{name}_{SESSION}.pkl.gz").write_bytes(gzip.compress(pickle.dumps(rows)))
    report = seedlog.convert(folder, tmp_path / "out.zarr", allow_pickle=fmt.startswith("pkl"))
    assert report.ok, report
    check_round_trip(md.open(tmp_path / "out.zarr"), records)


def test_truncated_pickle_converts_up_to_the_cut(tmp_path: Path, records: list) -> None:
    folder = tmp_path / "logs"
    write_streaming_pickle(folder, records)
    obs = folder / f"observations_{SESSION}.pkl"
    sizes = [len(pickle.dumps(r[0], protocol=pickle.HIGHEST_PROTOCOL)) for r in records]
    cut = sum(sizes[:37]) + sizes[37] // 2  # killed while writing record 37
    obs.write_bytes(obs.read_bytes()[:cut])
    report = seedlog.convert(folder, tmp_path / "out.zarr", allow_pickle=True)
    assert not report.ok and report.rows["observations"] == 37 and report.rows["actions"] == 50
    assert f"observations_{SESSION}.pkl: record 37 (byte {sum(sizes[:37])} of {cut})" in report.stopped_at
    assert "truncated" in report.stopped_at
    store = md.open(tmp_path / "out.zarr")
    np.testing.assert_array_equal(store["observations"]["counter_step"], np.arange(37))


def test_corrupted_pickle_record_is_skipped_and_the_rest_converted(tmp_path: Path, records: list) -> None:
    folder = tmp_path / "logs"
    write_streaming_pickle(folder, records)
    act = folder / f"actions_{SESSION}.pkl"
    sizes = [len(pickle.dumps(r[1], protocol=pickle.HIGHEST_PROTOCOL)) for r in records]
    data = bytearray(act.read_bytes())
    start = sum(sizes[:10])
    data[start:start + 40] = b"\xff" * 40  # record 10's header is garbage
    act.write_bytes(bytes(data))
    report = seedlog.convert(folder, tmp_path / "out.zarr", allow_pickle=True)
    assert report.stopped_at is None and not report.ok
    assert any("record 10" in p and "corrupted" in p and "skipped" in p for p in report.problems)
    steps = md.open(tmp_path / "out.zarr")["actions"]["counter_step"]
    np.testing.assert_array_equal(steps, [i for i in range(50) if i != 10])


def test_truncated_json_files(tmp_path: Path, records: list) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    lines = [json.dumps(as_json(r[0])) for r in records]
    (folder / f"observations_{SESSION}.jsonl").write_text("\n".join(lines[:20]) + "\n" + lines[20][:100])
    array = json.dumps([as_json(r[1]) for r in records])
    (folder / f"actions_{SESSION}.json").write_text(array[: len(array) // 2])
    report = seedlog.convert(folder, tmp_path / "out.zarr")
    assert report.rows["observations"] == 20 and 0 < report.rows["actions"] < 50
    assert f"observations_{SESSION}.jsonl: line 21" in report.stopped_at
    assert f"actions_{SESSION}.json: record {report.rows['actions']}" in report.stopped_at


def test_bad_record_is_reported_and_skipped(tmp_path: Path, records: list) -> None:
    folder = tmp_path / "logs"
    rows = [pair for pair in records]
    broken = dict(rows[5][0], joint_pos=np.zeros(22, np.float32))
    nan = dict(rows[6][0], ang_vel=np.array([0, np.nan, 0], np.float32))
    rows[5] = (broken, rows[5][1])
    rows[6] = (nan, rows[6][1])
    write_streaming_pickle(folder, rows)
    report = seedlog.convert(folder, tmp_path / "out.zarr", allow_pickle=True)
    assert report.rows["observations"] == 48 and report.rows["actions"] == 50
    assert any("observations record 5: joint_pos: shape (22,), expected (23,)" in p for p in report.problems)
    assert any("observations record 6: ang_vel: holds NaN/Inf" in p for p in report.problems)


def test_records_outside_the_schema_become_a_custom_stream(tmp_path: Path) -> None:
    """The seed's own test script logged observations {joint_pos, joint_vel, imu} and actions {target_pos}."""
    folder = tmp_path / "logs"
    folder.mkdir()
    with open(folder / f"observations_{SESSION}.pkl", "wb") as fh:
        for i in range(30):
            pickle.dump({"joint_pos": np.full(29, i), "joint_vel": np.zeros(29), "imu": np.ones(4),
                         "_timestamp": T0 + i * 0.01}, fh)
    report = seedlog.convert(folder, tmp_path / "out.zarr", allow_pickle=True)
    assert report.ok and report.rows == {"observations": 30}
    assert any("custom stream" in note for note in report.details["notes"])
    stream = md.open(tmp_path / "out.zarr")["observations"]
    assert stream.schema == "custom" and stream["imu"].shape == (30, 4)
    np.testing.assert_array_equal(stream["joint_pos"][:, 0], np.arange(30))


def test_newest_session_is_taken_and_others_listed(tmp_path: Path, records: list) -> None:
    folder = tmp_path / "logs"
    write_streaming_pickle(folder, records[:5])
    (folder / "observations_20240101_000000.jsonl").write_text(json.dumps(as_json(records[0][0])) + "\n")
    report = seedlog.convert(folder, tmp_path / "out.zarr", allow_pickle=True)
    assert report.details["session"] == SESSION and report.details["other_sessions"] == ["20240101_000000"]
    old = seedlog.convert(folder, tmp_path / "old.zarr", session="20240101_000000")
    assert old.rows == {"observations": 1}


def test_cli_convert_reports_truncation_with_nonzero_exit(tmp_path: Path, records: list) -> None:
    from mimicdata_cli.main import app

    folder = tmp_path / "logs"
    write_streaming_pickle(folder, records)
    obs = folder / f"observations_{SESSION}.pkl"
    obs.write_bytes(obs.read_bytes()[:-50])
    runner = CliRunner()
    refused = runner.invoke(app, ["convert", str(folder), str(tmp_path / "a.zarr")])
    assert refused.exit_code == 1 and "runs code" in refused.output
    result = runner.invoke(app, ["convert", str(folder), str(tmp_path / "b.zarr"), "--allow-pickle"])
    assert result.exit_code == 1 and "stopped at" in result.output and "INCOMPLETE" in result.output
    assert md.open(tmp_path / "b.zarr")["observations"].num_rows == 49
    help_text = " ".join(runner.invoke(app, ["convert", "--help"]).output.replace("│", " ").split())
    assert "Unpickling RUNS CODE" in help_text and "--allow-pickle" in help_text
