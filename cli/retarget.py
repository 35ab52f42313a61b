"""`mimicdata retarget`, `extract` and `render`: human motion capture to G1 expert trajectories."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from mimicdata_cli._common import fail_on_error


def retarget(
    inputs: Annotated[list[str], typer.Argument(help="Motion files (.bvh .npy .npz .csv), folders of them, "
                                                     "or a manifest written by `mimicdata extract`.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output expert_trajectory store (path or URL).")],
    robot: Annotated[str, typer.Option(help="Robot model the IK runs on.")] = "g1_29dof",
    fps: Annotated[float, typer.Option(help="Frame rate of the stored trajectory (Hz).")] = 50.0,
    joints: Annotated[str | None, typer.Option(help="Restrict to this robot's joints, e.g. g1_23dof.")] = None,
    mapping: Annotated[Path | None, typer.Option("--map", help="YAML/JSON file: key point -> joint name, "
                                                               "for skeletons that are not recognised.")] = None,
    workers: Annotated[int | None, typer.Option(help="Local Dask worker processes (default: one per CPU; "
                                                     "0 = no Dask, run in this process).")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Address of an existing dask.distributed "
                                                       "scheduler, e.g. tcp://10.0.0.5:8786.")] = None,
    source_fps: Annotated[float | None, typer.Option(help="Frame rate of inputs that do not store one "
                                                          "(.npy positions; CSV default 30).")] = None,
    unit: Annotated[str, typer.Option(help="Length unit of the inputs: auto, m, cm, mm, in.")] = "auto",
    up_axis: Annotated[str, typer.Option(help="Up axis of the inputs: auto, y, z.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output store.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Retarget motion capture to the robot: IK on the MuJoCo model, feet on the floor, resampled to --fps,
    one clip per input clip in an expert_trajectory store with a per-clip quality report.

    A clip that fails is reported with its error while the others complete; the exit code is then 1.
    """
    from mimicdata.motion.io import ReadOptions
    from mimicdata.retarget.clip import RetargetSettings
    from mimicdata.retarget.pipeline import retarget_to_store

    settings = RetargetSettings(robot=robot, joints=joints, fps=fps, mapping=str(mapping) if mapping else None,
                                read=ReadOptions(unit=unit, up_axis=up_axis, source_fps=source_fps, robot=robot))
    with fail_on_error():
        report = retarget_to_store(inputs, out, settings=settings, workers=workers, scheduler=scheduler,
                                   overwrite=overwrite, progress=not quiet)
    typer.echo(report.summary())
    for clip in report.clips:
        q = clip["quality"]
        problems = _bounds(q)
        if problems:
            typer.echo(f"warning: clip {clip['clip_index']} ({clip['name']}): {'; '.join(problems)}", err=True)
    if not report.ok:
        raise typer.Exit(1)


def _bounds(q: dict) -> list[str]:
    out = []
    if q["penetration_max_cm"] > 1.0:
        out.append(f"foot penetration {q['penetration_max_cm']:.2f} cm")
    if q["kp_err_leg_mean_cm"] > 5.0:
        out.append(f"leg key-point error {q['kp_err_leg_mean_cm']:.2f} cm")
    if q["limit_violations"]:
        out.append(f"{q['limit_violations']} joint-limit violations")
    return out


def extract(
    inputs: Annotated[list[str], typer.Argument(help="Motion files or folders to choose clips from.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest JSON file to write.")],
    pattern: Annotated[list[str] | None, typer.Option("--pattern", "-p", help="Glob on the clip name or "
                                                                              "path; repeat for several.")] = None,
    min_duration: Annotated[float | None, typer.Option(help="Drop clips shorter than this (s).")] = None,
    max_duration: Annotated[float | None, typer.Option(help="Drop clips longer than this (s).")] = None,
    frames: Annotated[str | None, typer.Option(help="Frame range START:STOP applied to every clip "
                                                    "(either side may be empty).")] = None,
    source_fps: Annotated[float | None, typer.Option(help="Frame rate of inputs that store none.")] = None,
) -> None:
    """Choose clips by name pattern, duration and frame range into a manifest for `mimicdata retarget`."""
    from mimicdata.retarget.extract import build_manifest, write_manifest

    frame_range = _parse_range(frames) if frames else None
    with fail_on_error():
        entries = build_manifest(inputs, patterns=pattern or (), min_duration=min_duration,
                                 max_duration=max_duration, frames=frame_range, source_fps=source_fps)
        write_manifest(entries, out)
    total = sum(e.duration for e in entries)
    typer.echo(f"{len(entries)} clip(s), {total:.1f} s in all -> {out}")
    for e in entries:
        typer.echo(f"  {e.name}: frames {e.start}:{e.stop} @ {e.fps:g} Hz ({e.duration:.1f} s) {e.source}")


def _parse_range(text: str) -> tuple[int, int | None]:
    try:
        start, stop = text.split(":")
        return int(start or 0), int(stop) if stop else None
    except ValueError:
        raise typer.BadParameter(f"--frames must look like START:STOP, got {text!r}") from None


def render(
    store: Annotated[str, typer.Argument(help="An expert_trajectory store.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Video (.mp4, .gif) or filmstrip (.png).")] = Path(
        "clip.mp4"),
    clip: Annotated[int, typer.Option(help="Clip number (see `mimicdata inspect`).")] = 0,
    start: Annotated[int, typer.Option(help="First frame of the clip to render.")] = 0,
    end: Annotated[int | None, typer.Option(help="Render up to this frame of the clip (excluded; "
                                                 "default: its end).")] = None,
    stride: Annotated[int, typer.Option(help="Render every n-th frame (the video keeps real time).")] = 1,
    width: Annotated[int, typer.Option(help="Frame width in pixels.")] = 640,
    height: Annotated[int, typer.Option(help="Frame height in pixels.")] = 480,
    filmstrip: Annotated[bool, typer.Option("--filmstrip", help="Draw a PNG filmstrip without OpenGL.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Render one clip with MuJoCo offscreen (EGL/OSMesa) so you can see the retargeted motion; where no
    OpenGL context can be had, a PNG filmstrip of stick figures is written instead (and said so).

    Software rendering is slow (a few frames/s): progress is shown on stderr, there is no time limit
    (Ctrl-C stops), and --start/--end/--stride render part of a long clip.
    """
    from mimicdata.render import FrameRange, render_clip

    suffix = out.suffix.lower()
    if suffix not in (".mp4", ".gif", ".png"):
        typer.echo(f"error: --out {out}: use a .mp4 or .gif video, or a .png filmstrip", err=True)
        raise typer.Exit(2)
    filmstrip = filmstrip or suffix == ".png"
    with fail_on_error():
        result = render_clip(store, clip, out, width=width, height=height,
                             backend="filmstrip" if filmstrip else "auto",
                             frames=FrameRange(start, end, stride),
                             progress=None if quiet else _render_progress(f"clip {clip}"))
    if result.reason and not filmstrip:
        typer.echo(f"note: {result.reason}; wrote a filmstrip instead", err=True)
    typer.echo(f"wrote {result.path} ({result.kind}, {result.frames} frames)")


def _render_progress(label: str, every_s: float = 5.0) -> Callable[[int, int], None]:
    """A progress callback printing one line to stderr at most every ``every_s`` seconds, and the last."""
    first: list[tuple[float, int]] = []  # time and count of the first frame: the rate leaves start-up out
    shown = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if not first:
            first.append((now, done))
        elif now - shown[0] < every_s and done < total:
            return
        shown[0] = now
        t0, d0 = first[0]
        rate = (done - d0) / (now - t0) if now > t0 else 0.0
        left = f", ~{(total - done) / rate:.0f} s left" if done < total and rate > 0 else ""
        typer.echo(f"rendering {label}: frame {done}/{total} ({100 * done / total:.0f}%, {rate:.1f} frames/s"
                   f"{left})", err=True)
    return show


def register(app: typer.Typer) -> None:
    """Add the retarget, extract and render commands to the root app."""
    app.command()(retarget)
    app.command()(extract)
    app.command()(render)
