"""`mimicdata plot` and `mimicdata timing`: look at deployment logs (the seed's analyze_logs.py, done properly)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from mimicdata_cli._common import fail_on_error

StorePath = Annotated[str, typer.Argument(help="Log store path or URL.")]


def plot(
    path: StorePath,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("joints.png"),
    joints: Annotated[list[str] | None, typer.Option(
        "--joints", "-j", help="Joint names (left_knee_joint or left_knee) or indices; repeat or comma-separate. "
                               "Default: the first 6.")] = None,
    start: Annotated[float | None, typer.Option(help="Seconds after the session start to begin at.")] = None,
    end: Annotated[float | None, typer.Option(help="Seconds after the session start to stop at.")] = None,
) -> None:
    """Draw joint trajectories (position, velocity, action vs reference) of a log to a PNG."""
    from mimicdata.plot import plot_joints
    from mimicdata.store import open as open_store

    names = [j.strip() for item in (joints or []) for j in item.split(",") if j.strip()]
    with fail_on_error():
        store = open_store(path, "r")
        written = plot_joints(store, out, joints=names or None, start_s=start, end_s=end)
    typer.echo(f"wrote {written}")


def timing(
    path: StorePath,
    stream: Annotated[list[str] | None, typer.Option(
        "--stream", "-s", help="Stream(s) to report (default: every stream with a clock).")] = None,
    expected_hz: Annotated[float | None, typer.Option(
        "--hz", help="Nominal control rate (default: the stream's fps, else the median period).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Also draw the period histogram(s) to this PNG (stream name added if several).")] = None,
) -> None:
    """Timing report: control period histogram, jitter, missed deadlines, gaps, and records the logger dropped."""
    from mimicdata.store import open as open_store
    from mimicdata.timing import format_timing_report, timing_report, timing_reports

    with fail_on_error():
        store = open_store(path, "r")
        if stream:
            missing = [s for s in stream if s not in store.streams]
            if missing:
                typer.echo(f"error: no stream(s) {missing} in {path}; streams: {list(store.streams)}", err=True)
                raise typer.Exit(1)
            reports = {s: timing_report(store[s], expected_hz=expected_hz) for s in stream}
        else:
            reports = timing_reports(store, expected_hz=expected_hz)
    if as_json:
        typer.echo(json.dumps(reports, indent=2))
    else:
        for report in reports.values():
            typer.echo(format_timing_report(report))
    if out is not None:
        from mimicdata.plot import plot_timing

        for name, report in reports.items():
            target = out if len(reports) == 1 else out.with_name(f"{out.stem}_{name}{out.suffix or '.png'}")
            if "histogram" in report:
                typer.echo(f"wrote {plot_timing(report, target)}")


def register(app: typer.Typer) -> None:
    """Add `plot` and `timing` to the root app."""
    app.command()(plot)
    app.command()(timing)
