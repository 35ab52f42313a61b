"""What one logged record of a stream looks like: its fields, and the fixed-size slot it occupies.

A stream's layout is fixed by its first record (or by :meth:`StreamingLogger.declare`): field names,
dtypes and shapes. Every later record must match it, which is what lets :meth:`StreamingLogger.log`
copy a record into a preallocated shared-memory slot with one numpy assignment per field.

Slot order (byte offsets chosen here, not by numpy, so the checks below are one call each):
``_seq``, ``_wall``, ``_mono`` (int64 logger bookkeeping), then float64 fields that must be finite,
then float32 fields that must be finite (each group contiguous, so a single dot product over the
group detects NaN/Inf in any of its fields), then everything else. Slots are padded to 64 bytes so
two records never share a cache line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mimicdata.errors import SchemaError, ValidationError
from mimicdata.schema import ROBOT_DIMS, Robot, load_schema

# Fields the logger fills in when a record does not carry them.
TIMESTAMP = "timestamp"        # wall clock, int64 ns since the Unix epoch
MONOTONIC = "monotonic_ns"     # time.monotonic_ns() of the logging process
COUNTER = "counter_step"       # per-stream step counter
HEADER = (("_seq", "int64"), ("_wall", "int64"), ("_mono", "int64"))
SLOT_ALIGN = 64
# Streams whose name is a shipped schema are written with that schema; anything else is custom.
SCHEMA_STREAMS = ("observations", "actions")
NUMERIC_KINDS = "biuf"


@dataclass(frozen=True)
class FieldLayout:
    """One field a record carries: numpy dtype name, shape of one row, whether NaN/Inf is allowed."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    allow_nan: bool = False
    unit: str = ""

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def checked(self) -> bool:
        """Whether log() checks this field for NaN/Inf."""
        return self.np_dtype.kind == "f" and not self.allow_nan


@dataclass(frozen=True)
class StreamLayout:
    """The fields of one logged stream and how the logger fills the automatic ones."""

    stream: str
    schema: str | None                    # shipped schema name, or None for a custom stream
    fields: tuple[FieldLayout, ...]       # fields the caller passes in every record
    auto: tuple[str, ...]                 # fields the logger fills (timestamp, monotonic_ns, counter_step)
    fps: float | None = None
    dims: dict[str, int] = field(default_factory=dict)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def slot_dtype(self) -> tuple[np.dtype, dict[str, tuple[int, int]]]:
        """The structured dtype of one slot, and the (offset, count) of the float64/float32 check blocks."""
        groups = [
            [f for f in self.fields if f.checked and f.np_dtype.itemsize == 8],
            [f for f in self.fields if f.checked and f.np_dtype.itemsize == 4],
        ]
        checked = {f.name for g in groups for f in g}
        rest = sorted((f for f in self.fields if f.name not in checked),
                      key=lambda f: -f.np_dtype.alignment)
        names, formats, offsets = [], [], []
        offset = 0

        def place(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> None:
            nonlocal offset
            offset = -(-offset // dtype.alignment) * dtype.alignment
            names.append(name)
            formats.append((dtype, shape) if shape else dtype)
            offsets.append(offset)
            offset += dtype.itemsize * math.prod(shape)

        for name, dtype in HEADER:
            place(name, np.dtype(dtype), ())
        blocks: dict[str, tuple[int, int]] = {}
        for key, group in zip(("float64", "float32"), groups, strict=True):
            if group:
                start = -(-offset // group[0].np_dtype.alignment) * group[0].np_dtype.alignment
                count = 0
                for f in group:
                    place(f.name, f.np_dtype, f.shape)
                    count += math.prod(f.shape)
                blocks[key] = (start, count)
        for f in rest:
            place(f.name, f.np_dtype, f.shape)
        itemsize = max(SLOT_ALIGN, -(-offset // SLOT_ALIGN) * SLOT_ALIGN)
        dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})
        return dtype, blocks

    def store_fields(self) -> dict[str, dict[str, Any]]:
        """Field specs for ``Store.add_stream`` of a custom stream (the time field is added by the store)."""
        out: dict[str, dict[str, Any]] = {}
        for f in self.fields:
            out[f.name] = {"dtype": f.dtype, "shape": list(f.shape), "unit": f.unit, "required": True}
            if f.allow_nan:
                out[f.name]["allow_nan"] = True
        if MONOTONIC in self.auto:
            out[MONOTONIC] = {"dtype": "int64", "shape": [], "unit": "ns", "time": "monotonic_ns",
                              "description": "time.monotonic_ns() of the logging process at log()."}
        if COUNTER in self.auto:
            out[COUNTER] = {"dtype": "int64", "shape": [], "unit": "step",
                            "description": "Per-stream step counter of the logger (dropped records leave gaps)."}
        return out

    def to_json(self) -> str:
        return json.dumps({"stream": self.stream, "schema": self.schema, "auto": list(self.auto),
                           "fps": self.fps, "dims": self.dims,
                           "fields": [{"name": f.name, "dtype": f.dtype, "shape": list(f.shape),
                                       "allow_nan": f.allow_nan, "unit": f.unit} for f in self.fields]})

    @classmethod
    def from_json(cls, text: str) -> StreamLayout:
        doc = json.loads(text)
        fields = tuple(FieldLayout(f["name"], f["dtype"], tuple(f["shape"]), f["allow_nan"], f.get("unit", ""))
                       for f in doc["fields"])
        return cls(doc["stream"], doc["schema"], fields, tuple(doc["auto"]), doc.get("fps"), doc.get("dims", {}))


# ---------------------------------------------------------------------------------------- building
def _as_array(stream: str, name: str, value: Any) -> np.ndarray:
    if isinstance(value, (str, bytes)) or (isinstance(value, np.ndarray) and value.dtype.kind in "SUO"):
        raise ValidationError(f"{stream}.{name}: strings cannot be logged per record "
                              f"(store them once with StreamingLogger(attrs=...) instead)")
    arr = np.asarray(value)
    if arr.dtype.kind not in NUMERIC_KINDS:
        raise ValidationError(f"{stream}.{name}: cannot log a value of dtype {arr.dtype} "
                              f"({type(value).__name__}); pass numbers or numeric numpy arrays")
    return arr


def custom_layout(stream: str, record: Mapping[str, Any] | None, *,
                  fields: Mapping[str, Mapping[str, Any]] | None = None, fps: float | None = None) -> StreamLayout:
    """Layout of a user stream (e.g. a 1 kHz ``imu``): from explicit field specs, else from a first record.

    Python floats become float64, Python ints int64; numpy values keep their dtype.
    """
    specs: dict[str, FieldLayout] = {}
    for name, spec in (fields or {}).items():
        try:
            dtype = np.dtype(spec["dtype"]).name
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"{stream}.{name}: a field spec needs a numpy 'dtype' ({exc})") from None
        specs[name] = FieldLayout(name, dtype, tuple(int(d) for d in spec.get("shape", ())),
                                  bool(spec.get("allow_nan", False)), str(spec.get("unit", "")))
    for name, value in (record or {}).items():
        if name not in specs:
            arr = _as_array(stream, name, value)
            specs[name] = FieldLayout(name, arr.dtype.name, tuple(arr.shape))
    if not specs:
        raise ValidationError(f"{stream}: a record needs at least one field")
    for name in specs:
        if not isinstance(name, str) or not name or name.startswith("_") or "/" in name:
            raise ValidationError(f"{stream}: field name {name!r} is not allowed (no leading '_', no '/')")
    auto = tuple(k for k in (TIMESTAMP, MONOTONIC, COUNTER) if k not in specs)
    return StreamLayout(stream, None, tuple(specs.values()), auto, fps)


def schema_layout(stream: str, schema: str, record: Mapping[str, Any], robot: Robot | None,
                  fps: float | None = None) -> StreamLayout:
    """Layout of a stream of a shipped schema (``observations``, ``actions``) fixed by its first record.

    Unknown fields, missing required fields and shapes that disagree with the robot are errors here,
    at the first ``log()``, rather than seconds later in the writer.
    """
    doc = load_schema(schema)
    spec = doc.streams.get(stream) or (next(iter(doc.streams.values())) if len(doc.streams) == 1 else None)
    if spec is None:
        raise SchemaError(f"schema {schema!r} has streams {list(doc.streams)}, not {stream!r}")
    unknown = sorted(k for k in record if spec.field_for(k) is None)
    if unknown:
        raise ValidationError(f"{stream}: unknown field(s) {unknown}; schema {schema} v{doc.version} has "
                              f"{sorted(spec.fields)} (log other data to a custom stream name)")
    auto = tuple(k for k in (TIMESTAMP, MONOTONIC, COUNTER) if k in spec.fields and k not in record)
    missing = sorted(k for k, f in spec.fields.items() if f.required and k not in record and k not in auto)
    if missing:
        raise ValidationError(f"{stream}: missing required field(s) {missing} (schema {schema} v{doc.version})")
    dims = dict(robot.dims()) if robot else {}
    free: dict[str, int] = {}
    out = []
    for name, value in record.items():
        f = spec.field_for(name)
        assert f is not None
        if f.dtype == "string":
            raise ValidationError(f"{stream}.{name}: string fields cannot be logged per record")
        arr = _as_array(stream, name, value)
        used = [d for d in f.shape if isinstance(d, str)]
        if robot is None and set(used) & set(ROBOT_DIMS):
            raise SchemaError(f"{stream}.{name} has shape {list(f.shape)}: pass robot=... to the logger")
        if arr.ndim != len(f.shape):
            raise ValidationError(f"{stream}.{name}: expected {len(f.shape)} dimension(s) {list(f.shape)}, "
                                  f"got shape {arr.shape}")
        shape = []
        for d, size in zip(f.shape, arr.shape, strict=True):
            if isinstance(d, int):
                expected = d
            elif d in dims:
                expected = dims[d]
            else:
                expected = free.setdefault(d, int(size))  # a free dimension ('obs') is fixed by this record
            if size != expected:
                what = f"robot {robot.name} has {expected} {d}s" if robot and d in dims else f"{d} = {expected}"
                raise ValidationError(f"{stream}.{name}: expected shape {list(f.shape)} ({what}), "
                                      f"got {arr.shape}")
            shape.append(int(expected))
        target = f.storage_dtype
        if not np.can_cast(arr.dtype, target, casting="same_kind"):
            raise ValidationError(f"{stream}.{name}: dtype {arr.dtype} cannot be stored as {target}")
        out.append(FieldLayout(name, target.name, tuple(shape), f.allow_nan, f.unit))
    return StreamLayout(stream, schema, tuple(out), auto, fps, free)
