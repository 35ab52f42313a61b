"""Helpers shared by the CLI modules: one clear error line, and the human-readable inspect tree."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from mimicdata.errors import MimicDataError

# optional packages -> the extra of pyproject.toml that installs them
EXTRAS = {"mujoco": "sim", "matplotlib": "sim", "av": "sim", "torch": "train", "jax": "train", "optax": "train",
          "s3fs": "s3", "tensorboardX": "train", "tqdm": "train", "onnx": "onnx", "onnxruntime": "onnx"}


@contextmanager
def fail_on_error() -> Iterator[None]:
    """Turn library errors (and the OS errors a bad path gives) into one line on stderr and exit 1."""
    try:
        yield
    except ModuleNotFoundError as exc:  # an optional dependency: say which extra brings it
        top = (exc.name or "").split(".")[0]
        extra = EXTRAS.get(top)
        if extra is not None:
            typer.echo(f"error: this needs the optional package {top!r}: pip install 'mimicdata[{extra}]'", err=True)
        elif "pip install" in str(exc):  # the library already said which extra to install
            typer.echo(f"error: {exc}", err=True)
        else:
            raise
        raise typer.Exit(1) from None
    except (MimicDataError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # disk full, I/O errors
        typer.echo(f"error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", err=True)
        raise typer.Exit(1) from None


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)[:14]


def print_inspect(info: dict[str, Any]) -> None:
    """A readable tree of `inspect_store` output."""
    echo = typer.echo
    robot = info.get("robot")
    echo(f"{info['url']}")
    echo(f"  format v{info['format_version']}, written by {info['producer']['name']} "
         f"{info['producer']['version']} at {info['created']}")
    if robot:
        echo(f"  robot {robot['name']}: {robot['joints']} joints, {robot['bodies']} bodies, quat {info['quat_order']}")
    if info.get("fps"):
        echo(f"  fps {info['fps']:g}")
    for key, value in (info.get("attrs") or {}).items():
        text = str(value)
        if len(text) > 100:  # big attributes (statistics, settings): the --json output has them whole
            kind = f"{len(value)} keys" if isinstance(value, dict) else f"{len(text)} characters"
            text = f"{text[:70]}... ({kind}; see --json)"
        echo(f"  attr {key} = {text}")
    for warning in info.get("warnings", []):
        echo(f"  warning: {warning}")
    check = info.get("fps_check")
    if check and check.get("message"):
        echo(f"  {'' if check.get('ok') in (True, None) else '! '}fps check: {check['message']}")
    for name, s in info["streams"].items():
        head = f"  {name}: {s['schema']} v{s['version']}, {s['rows']} rows"
        if s.get("fps"):
            head += f" @ {s['fps']:g} Hz"
        head += f", {_bytes(s['stored_bytes'])} stored / {_bytes(s['raw_bytes'])} raw"
        if s.get("ratio") is not None:
            head += f" ({s['ratio']:.2f}x)"
        echo(head)
        if s.get("uncommitted_rows"):
            echo(f"    ! {s['uncommitted_rows']} row(s) past the last committed segment (ignored)")
        if "segments" in s:
            g = s["segments"]
            echo(f"    segments: {g['count']} (length min {g['min_len']}, "
                 f"mean {g['mean_len']:.1f}, max {g['max_len']})")
        table = s.get("table") or []
        if table:
            keys = [k for k in table[0] if k not in ("start", "end", "start_time", "end_time")]
            echo("    " + "  ".join(f"{k[:14]:>14s}" for k in keys))
            for row in table[:20]:
                echo("    " + "  ".join(f"{_cell(row[k]):>14s}" for k in keys))
            if s["rows"] > 20:
                echo(f"    ... {s['rows'] - 20} more (mimicdata query PATH \"select * from {name}\")")
        t = s.get("timing")
        if t and "mean_period_ms" in t:
            line = (f"    timing: {t['span_s']:.2f} s, period {t['mean_period_ms']:.3f} ms mean, "
                    f"jitter {t['jitter_ms']:.3f} ms, longest gap {t['max_gap_ms']:.3f} ms")
            if "missed_ticks" in t:
                line += f", missed ticks {t['missed_ticks']}"
            echo(line)
            if t.get("slower_than_declared"):
                echo(f"    ! loop ran slower than the declared {s['fps']:g} Hz "
                     f"(measured {t['measured_hz']:.2f} Hz)")
            if t.get("faster_than_declared"):
                echo(f"    ! timestamps run faster than the declared {s['fps']:g} Hz "
                     f"(measured {t['measured_hz'] or float('inf'):.2f} Hz)")
            if t.get("backwards"):
                echo(f"    ! timestamps go backwards {t['backwards']} time(s)")
            if t.get("non_monotonic", 0) > t.get("backwards", 0):
                echo(f"    ! {t['non_monotonic'] - t.get('backwards', 0)} repeated timestamp(s)")
        elif t:
            echo(f"    timing: {t.get('span_s', 0):.2f} s ({t.get('clock', '')})")
        width = max((len(f) for f in s["arrays"]), default=0)
        for field, a in s["arrays"].items():
            shape = "x".join(str(d) for d in a["shape"])
            lossy = f" lossy {a['lossy']['mantissa_bits']}b (rel.err <= {a['lossy']['max_relative_error']:.1e})" \
                if a.get("lossy") else ""
            ratio = f"{a['ratio']:.2f}x" if a.get("ratio") is not None else "-"
            echo(f"    {field:<{width}}  {a['dtype']:<7} {shape:<14} [{','.join(a['dims'])}] {a['unit']:<10} "
                 f"chunks {'x'.join(map(str, a['chunks']))}  {'|'.join(a['codecs'])}  "
                 f"{_bytes(a['stored_bytes'])} ({ratio}){lossy}")
