"""`mimicdata`: the command-line face of the library. Command bodies call library functions only."""

from __future__ import annotations

import importlib
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from mimicdata_cli._common import fail_on_error, print_inspect

app = typer.Typer(
    name="mimicdata",
    help="Versioned, chunked, queryable stores for humanoid motion-imitation data (Zarr v3 + Arrow).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StorePath = Annotated[str, typer.Argument(help="Store path or URL (local path, memory://name, s3://bucket/key).")]


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


@app.command()
def inspect(
    path: StorePath,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON (stable keys).")] = False,
) -> None:
    """Schema, robot, streams, arrays (shape, dtype, chunks, codecs, bytes, ratio), segments and timing."""
    from mimicdata.report import inspect_store

    with fail_on_error():
        info = inspect_store(path)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
    else:
        print_inspect(info)


@app.command()
def validate(path: StorePath) -> None:
    """Full check: schema conformance, lengths vs index, NaN/Inf, monotonic timestamps, readable chunks.

    Exits 1 and lists the problems when the store is not valid.
    """
    from mimicdata.report import validate_store
    from mimicdata.store import open as open_store

    with fail_on_error():
        open_store(path, "r")  # a store that cannot even be opened is one error line, not a list
        problems = validate_store(path)
    if problems:
        for p in problems:
            typer.echo(f"problem: {p}", err=True)
        typer.echo(f"{path}: INVALID ({len(problems)} problem(s))", err=True)
        raise typer.Exit(1)
    typer.echo(f"{path}: valid")


@app.command()
def query(path: StorePath,
          sql: Annotated[str, typer.Argument(help="Polars SQL; every stream is a table named after it.")],
          output_format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
          out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
          limit: Annotated[int, typer.Option(help="Rows shown by the table format.")] = 20) -> None:
    """Run SQL over a store, e.g. `mimicdata query log.zarr "select count(*) from observations"`."""
    import polars as pl

    from mimicdata.query import sql as run_sql

    with fail_on_error():
        try:
            frame = run_sql(path, sql)
        except pl.exceptions.PolarsError as exc:  # bad SQL: polars' first line says what is wrong
            typer.echo(f"error: query failed: {str(exc).strip().splitlines()[0]}", err=True)
            raise typer.Exit(1) from None
    if output_format == OutputFormat.parquet:
        if out is None:
            typer.echo("--format parquet needs --out FILE", err=True)
            raise typer.Exit(2)
        frame.write_parquet(out)
        typer.echo(f"wrote {frame.height} rows to {out}")
        return
    if output_format == OutputFormat.table:
        with pl.Config(tbl_rows=limit, tbl_cols=12, fmt_str_lengths=40):
            text = str(frame)
    elif output_format == OutputFormat.csv:
        text = _flat(frame).write_csv()
    else:
        text = frame.write_json()
    if out:
        out.write_text(text)
    else:
        typer.echo(text.rstrip("\n"))


def _flat(frame: object) -> object:
    """CSV has no lists: spread fixed-size list columns into one column per element."""
    import polars as pl

    assert isinstance(frame, pl.DataFrame)
    cols = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Array | pl.List):
            width = frame[name].list.len().max() if isinstance(dtype, pl.List) else dtype.size
            cols += [frame[name].arr.get(i).alias(f"{name}[{i}]") if isinstance(dtype, pl.Array)
                     else frame[name].list.get(i).alias(f"{name}[{i}]") for i in range(int(width or 0))]
        else:
            cols.append(frame[name])
    return pl.DataFrame(cols)


@app.command()
def demo(outdir: Annotated[Path, typer.Argument(help="Folder to write the demo store(s) into.")] = Path("demo_out"),
         seconds: Annotated[float, typer.Option(help="Simulated seconds of the 50 Hz G1 control loop.")] = 20.0,
         robot: Annotated[str, typer.Option(help="g1_29dof or g1_23dof.")] = "g1_29dof",
         overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output.")] = False) -> None:
    """Simulate a Unitree G1 control loop at 50 Hz (MuJoCo), store observations + actions, inspect, query."""
    from mimicdata_cli.demo import run_demo

    with fail_on_error():
        run_demo(outdir, seconds=seconds, robot=robot, overwrite=overwrite)


@app.command()
def schemas() -> None:
    """List the shipped schemas (with versions) and robot descriptions."""
    from mimicdata.schema import robot_names, schema_names, schema_versions

    for name in schema_names():
        typer.echo(f"schema {name}: versions {', '.join(schema_versions(name))}")
    for name in robot_names():
        typer.echo(f"robot {name}")


# Commands that live in their own modules (one noun per module), each with register(app).
for _module in ("convert", "logs", "retarget"):
    importlib.import_module(f"mimicdata_cli.{_module}").register(app)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
