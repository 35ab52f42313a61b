"""Converters between mimicdata stores and other formats, one module per format.

Each module exposes ``detect(path) -> bool`` and ``convert(src, dst, *, overwrite, ...) -> ConvertReport``
(into a store); exporters also ``export(store, out, *, overwrite, ...)``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from mimicdata.errors import MimicDataError

# format name -> module; imported lazily so a converter's dependencies load only when used
FORMATS = {
    "seedlog": "mimicdata.convert.seedlog",           # BeyondMimic seed pickle / JSON logs
    "lerobot": "mimicdata.convert.lerobot",           # LeRobot v3.0 dataset directory
    "diffusion_policy": "mimicdata.convert.diffusion_policy",  # diffusion_policy Zarr replay buffer
    "mcap": "mimicdata.convert.mcap",                 # ROS 2 bag (MCAP)
}


@dataclass
class ConvertReport:
    """What a conversion did. ``stopped_at`` says where a truncated or corrupted input ended."""

    source: str
    destination: str
    format: str
    rows: dict[str, int] = field(default_factory=dict)
    stopped_at: str | None = None
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.stopped_at is None and not self.problems


def converter(name: str) -> ModuleType:
    """The module of a format, with a clear error for an unknown name."""
    if name not in FORMATS:
        raise MimicDataError(f"unknown format {name!r}; known formats: {', '.join(FORMATS)}")
    return importlib.import_module(FORMATS[name])


def detect_format(path: str | Path) -> str:
    """Guess the format of an input path."""
    if "://" not in str(path) and not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist")
    for name in FORMATS:
        try:
            module = converter(name)
        except ModuleNotFoundError:
            continue
        if module.detect(path):
            return name
    raise MimicDataError(f"cannot tell the format of {path}; pass --from ({', '.join(FORMATS)})")
