"""`mimicdata demo`: the main job on an embedded default — a simulated G1 deployment log, inspected and queried."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer
from mimicdata_cli._common import print_inspect

from mimicdata.report import inspect_store
from mimicdata.store import create

BATCH_STEPS = 250  # 5 s at 50 Hz per append


def run_demo(outdir: Path, *, seconds: float = 20.0, robot: str = "g1_29dof", overwrite: bool = False,
             rate_hz: float = 50.0) -> Path:
    """Simulate the G1 control loop in MuJoCo, write ``OUTDIR/g1_deploy.zarr``, print inspect and a query."""
    import polars as pl

    from mimicdata.sim.g1_loop import obs_dim, simulate_deployment

    path = Path(outdir) / "g1_deploy.zarr"
    store = create(path, ["observations", "actions"], robot=robot, fps=rate_hz, overwrite=overwrite,
                   dims={"obs": obs_dim(len(_joints(robot)))},
                   attrs={"source": "mimicdata demo", "clock": "simulation time (MuJoCo, dt 0.005, decimation 4)",
                          "policy": "scripted tracking of a squat/sway/arm-swing reference"})
    t0 = time.time_ns()
    period_ns = round(1e9 / rate_hz)
    obs_rows: list[dict] = []
    act_rows: list[dict] = []
    started = time.perf_counter()
    with store:
        for step, (obs, act) in enumerate(simulate_deployment(seconds=seconds, rate_hz=rate_hz, robot=robot)):
            stamp = t0 + step * period_ns
            obs_rows.append({**obs, "timestamp": stamp, "monotonic_ns": step * period_ns})
            act_rows.append({**act, "timestamp": stamp, "monotonic_ns": step * period_ns})
            if len(obs_rows) == BATCH_STEPS:
                _flush(store, obs_rows, act_rows)
        _flush(store, obs_rows, act_rows)
    elapsed = time.perf_counter() - started
    steps = round(seconds * rate_hz)
    typer.echo(f"simulated {steps} control steps ({seconds:g} s at {rate_hz:g} Hz) in {elapsed:.1f} s "
               f"-> {path}\n")
    print_inspect(inspect_store(str(path)))
    typer.echo("\nTracking error per second (left knee, rad) — a Polars query over the store:")
    from mimicdata import scan

    knee = _joints(robot).index("left_knee_joint")
    frame = (scan(str(path), "observations")
             .with_columns(second=pl.col("counter_step") // int(rate_hz),
                           err=(pl.col("joint_pos").arr.get(knee) - pl.col("ref_joint_pos").arr.get(knee)).abs())
             .group_by("second").agg(steps=pl.len(), mean_abs_err=pl.col("err").mean(), max_abs_err=pl.col("err").max())
             .sort("second").collect())
    with pl.Config(tbl_rows=12):
        typer.echo(str(frame))
    expert = retarget_demo_clip(Path(outdir), robot=robot, overwrite=overwrite)
    typer.echo(f'\nTry: mimicdata query {path} "select count(*) as steps, avg(counter_step) from actions"')
    typer.echo(f"     mimicdata render {expert} --clip 0 --out clip.mp4")
    return path


def retarget_demo_clip(outdir: Path, *, robot: str, overwrite: bool) -> Path:
    """Retarget the bundled MocapBank clip to the G1 (in this process) and show its quality report."""
    from importlib import resources

    from mimicdata.retarget import RetargetSettings, retarget_to_store

    clip = resources.files("mimicdata") / "data" / "mocapbank" / "mocapbank_walk.bvh"
    out = outdir / "expert.zarr"
    typer.echo(f"\nRetargeting the bundled MocapBank clip to {robot} -> {out}")
    with resources.as_file(clip) as path:
        settings = RetargetSettings(joints=None if robot == "g1_29dof" else robot)
        report = retarget_to_store([path], out, settings=settings, workers=0, overwrite=overwrite, progress=False)
    q = report.clips[0]["quality"]
    typer.echo(f"  {report.source_frames} source frames -> {report.output_frames} frames at 50 fps in "
               f"{report.wall_seconds:.1f} s; key-point error {q['kp_err_mean_cm']:.1f} cm mean "
               f"(legs {q['kp_err_leg_mean_cm']:.1f} cm), foot penetration {q['penetration_max_cm']:.1f} cm, "
               f"joint-limit violations {q['limit_violations']}")
    return out


def _joints(robot: str) -> list[str]:
    from mimicdata.schema import load_robot

    return list(load_robot(robot).joint_names)


def _flush(store: object, obs_rows: list[dict], act_rows: list[dict]) -> None:
    if not obs_rows:
        return
    for name, rows in (("observations", obs_rows), ("actions", act_rows)):
        batch = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}
        store[name].append(batch)  # type: ignore[index]
        rows.clear()
