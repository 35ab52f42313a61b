"""`mimicdata convert`: other formats into stores, and stores out to other formats."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from mimicdata_cli._common import fail_on_error


def convert(
    src: Annotated[str, typer.Argument(help="Input: a log folder/file, a dataset folder, or a store.")],
    dst: Annotated[str, typer.Argument(help="Output store path/URL (or output folder with --to).")],
    from_format: Annotated[str | None, typer.Option("--from", help="Input format: seedlog, lerobot, "
                                                    "diffusion_policy, mcap (guessed when left out).")] = None,
    to_format: Annotated[str | None, typer.Option("--to", help="Export a store to this format (lerobot).")] = None,
    allow_pickle: Annotated[bool, typer.Option(
        "--allow-pickle", help="Allow reading pickle files. Unpickling RUNS CODE stored in the file: use only "
                               "on logs you produced or trust.")] = False,
    repo_id: Annotated[str, typer.Option(help="repo_id recorded in a LeRobot export.")] = "local/mimicdata",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    video: Annotated[bool | None, typer.Option(
        "--video/--images", help="LeRobot export: cameras as one mp4 per camera (AV1, PyAV) or as PNG images "
                                 "in the data files (default: as each feature is declared).")] = None,
) -> None:
    """Convert into a store (seed pickle/JSON logs, LeRobot v3.0, diffusion_policy) or out of one (--to lerobot).

    Reading the seed's .pkl logs unpickles them, which can execute arbitrary code from the file;
    it is refused unless --allow-pickle is given. A truncated or corrupted input is converted up to
    the last valid record, the stopping point is reported, and the exit code is 1.
    """
    from mimicdata.convert import converter, detect_format
    from mimicdata.errors import StorageWriteError

    fresh = overwrite or "://" in dst or not Path(dst).exists()
    with fail_on_error():
        try:
            if to_format:
                module = converter(to_format)
                extra = {"video": video} if to_format == "lerobot" else {}
                report = module.export(src, Path(dst), repo_id=repo_id, overwrite=overwrite, **extra)
            else:
                name = from_format or detect_format(src)
                module = converter(name)
                kwargs = {"allow_pickle": allow_pickle} if name == "seedlog" else {}
                report = module.convert(src, dst, overwrite=overwrite, **kwargs)
        except StorageWriteError as exc:  # disk full mid-way: a partial output must not pass for a whole one
            if not (fresh and "://" not in dst and Path(dst).exists()):
                raise
            shutil.rmtree(dst, ignore_errors=True)
            raise type(exc)(f"{exc}; the partial output {dst} was removed") from None
    for stream, rows in report.rows.items():
        typer.echo(f"{stream}: {rows} rows")
    for topic, why in report.details.get("skipped", {}).items():  # mcap: topics that are not streams
        typer.echo(f"skipped {topic}: {why}", err=True)
    for problem in report.problems:
        typer.echo(f"problem: {problem}", err=True)
    if report.stopped_at:
        typer.echo(f"stopped at {report.stopped_at}; everything before it was converted", err=True)
    typer.echo(f"{report.source} -> {report.destination} ({report.format})" + ("" if report.ok else ": INCOMPLETE"))
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(convert)
