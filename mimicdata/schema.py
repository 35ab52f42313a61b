"""Schema documents and robot descriptions: loading, resolving named dimensions, versions, migrations.

The documents themselves are language-neutral JSON in the ``schemas/`` folder (package
``mimicdata_schemas``); this module only reads them. A schema names one or more *streams*; each stream
lists its fields with dtype, shape (integers or named dimensions), unit and whether it is required.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from mimicdata.errors import SchemaError, SchemaVersionError

SCHEMA_FORMAT = 1
DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
          "uint32", "uint64", "bool", "string"}
# Named dimensions whose size (and labels) come from the robot description.
ROBOT_DIMS = {"joint": "joint_names", "motor": "motor_names", "body": "body_names",
              "qpos": "qpos_names", "qvel": "qvel_names"}


def _schemas_root() -> Any:
    return resources.files("mimicdata_schemas")


def parse_version(text: str) -> tuple[int, int]:
    """``"1.2"`` -> ``(1, 2)``; a clear error for anything else."""
    try:
        major, minor = (int(part) for part in str(text).split("."))
    except ValueError:
        raise SchemaError(f"schema version {text!r} is not of the form MAJOR.MINOR") from None
    return major, minor


# ---------------------------------------------------------------------------------------------- fields
@dataclass(frozen=True)
class FieldSpec:
    """One field of a stream: a column of the stream, stored as one Zarr array of shape (rows, *shape)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    unit: str = ""
    required: bool = True
    description: str = ""
    time: str | None = None          # "unix_ns" or "monotonic_ns" for clock fields
    allow_nan: bool = False
    chunk_rows: int | None = None
    codec: str = "default"
    mantissa_bits: int | None = None  # opt-in lossy precision (float fields only)

    @classmethod
    def from_doc(cls, name: str, doc: dict[str, Any]) -> FieldSpec:
        if not isinstance(doc, dict):
            raise SchemaError(f"field {name!r}: expected an object, got {type(doc).__name__}")
        dtype = doc.get("dtype")
        if dtype not in DTYPES:
            raise SchemaError(f"field {name!r}: unknown dtype {dtype!r} (one of {sorted(DTYPES)})")
        shape = doc.get("shape", [])
        if not isinstance(shape, list) or not all(isinstance(d, (int, str)) for d in shape):
            raise SchemaError(f"field {name!r}: shape must be a list of integers and dimension names")
        known = {"dtype", "shape", "unit", "required", "description", "time", "allow_nan", "chunk_rows",
                 "codec", "mantissa_bits", "dims"}
        unknown = set(doc) - known
        if unknown:
            raise SchemaError(f"field {name!r}: unknown keys {sorted(unknown)}")
        bits = doc.get("mantissa_bits")
        if bits is not None and (dtype not in ("float32", "float64") or not 1 <= int(bits) <= 52):
            raise SchemaError(f"field {name!r}: mantissa_bits needs a float field and 1..52 bits")
        return cls(name=name, dtype=dtype, shape=tuple(shape), unit=doc.get("unit", ""),
                   required=bool(doc.get("required", True)), description=doc.get("description", ""),
                   time=doc.get("time"), allow_nan=bool(doc.get("allow_nan", False)),
                   chunk_rows=doc.get("chunk_rows"), codec=doc.get("codec", "default"),
                   mantissa_bits=None if bits is None else int(bits))

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape), "unit": self.unit,
                               "required": self.required, "description": self.description}
        for key in ("time", "chunk_rows", "mantissa_bits"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        if self.allow_nan:
            doc["allow_nan"] = True
        if self.codec != "default":
            doc["codec"] = self.codec
        return doc

    @property
    def storage_dtype(self) -> np.dtype:
        """The numpy dtype of the stored array (strings are int32 category codes)."""
        return np.dtype("int32") if self.dtype == "string" else np.dtype(self.dtype)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """Names of the non-row dimensions, integers rendered as ``dim<i>``."""
        return tuple(d if isinstance(d, str) else f"dim{i}" for i, d in enumerate(self.shape))

    def resolve(self, dims: dict[str, int]) -> tuple[int, ...] | None:
        """Concrete shape, or None while a free dimension is still unknown."""
        out = []
        for d in self.shape:
            if isinstance(d, int):
                out.append(d)
            elif d in dims:
                out.append(int(dims[d]))
            else:
                return None
        return tuple(out)


# --------------------------------------------------------------------------------------------- streams
@dataclass(frozen=True)
class StreamSpec:
    """A stream of a schema: fields plus how time is kept and whether it is a segment table."""

    name: str
    fields: dict[str, FieldSpec]
    time: dict[str, Any] = field(default_factory=dict)
    chunk_rows: int = 4096
    segments_of: str | None = None
    patterns: dict[str, FieldSpec] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, name: str, doc: dict[str, Any]) -> StreamSpec:
        if not isinstance(doc, dict) or not isinstance(doc.get("fields"), dict):
            raise SchemaError(f"stream {name!r}: needs a 'fields' object")
        fields = {k: FieldSpec.from_doc(k, v) for k, v in doc["fields"].items()}
        patterns = {k: FieldSpec.from_doc(k + "*", v) for k, v in doc.get("patterns", {}).items()}
        time = doc.get("time", {}) or {}
        if time.get("field") and time["field"] not in fields:
            raise SchemaError(f"stream {name!r}: time field {time['field']!r} is not one of its fields")
        return cls(name=name, fields=fields, time=time, chunk_rows=int(doc.get("chunk_rows", 4096)),
                   segments_of=doc.get("segments_of"), patterns=patterns)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"fields": {k: f.to_doc() for k, f in self.fields.items()},
                               "time": self.time, "chunk_rows": self.chunk_rows}
        if self.segments_of:
            doc["segments_of"] = self.segments_of
        if self.patterns:
            doc["patterns"] = {k: f.to_doc() for k, f in self.patterns.items()}
        return doc

    @property
    def time_field(self) -> str | None:
        return self.time.get("field")

    def field_for(self, name: str) -> FieldSpec | None:
        """The spec of a field, including pattern fields such as ``image.front``."""
        if name in self.fields:
            return self.fields[name]
        for prefix, spec in self.patterns.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return FieldSpec(**{**spec.__dict__, "name": name})
        return None


@dataclass(frozen=True)
class Schema:
    """A versioned schema document."""

    name: str
    version: str
    description: str
    streams: dict[str, StreamSpec]
    migrate_from: dict[str, list[dict[str, Any]]]
    doc: dict[str, Any]

    @property
    def version_tuple(self) -> tuple[int, int]:
        return parse_version(self.version)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Schema:
        if doc.get("schema_format") != SCHEMA_FORMAT:
            raise SchemaError(f"schema document has schema_format {doc.get('schema_format')!r}, "
                              f"this mimicdata reads format {SCHEMA_FORMAT}")
        for key in ("name", "version", "streams"):
            if key not in doc:
                raise SchemaError(f"schema document lacks {key!r}")
        parse_version(doc["version"])
        streams = {k: StreamSpec.from_doc(k, v) for k, v in doc["streams"].items()}
        for s in streams.values():
            if s.segments_of and s.segments_of not in streams:
                raise SchemaError(f"stream {s.name!r} segments unknown stream {s.segments_of!r}")
        return cls(name=doc["name"], version=doc["version"], description=doc.get("description", ""),
                   streams=streams, migrate_from=doc.get("migrate_from", {}), doc=doc)


def schema_names() -> list[str]:
    """Names of the shipped schemas."""
    return sorted(p.name for p in _schemas_root().iterdir()
                  if p.is_dir() and p.name not in ("robots", "__pycache__", "fixtures"))


@cache
def schema_versions(name: str) -> list[str]:
    """Shipped versions of a schema, oldest first."""
    folder = _schemas_root() / name
    if not folder.is_dir():
        raise SchemaError(f"unknown schema {name!r}; known schemas: {', '.join(schema_names())}")
    versions = [p.name[1:-5] for p in folder.iterdir() if p.name.startswith("v") and p.name.endswith(".json")]
    return sorted(versions, key=parse_version)


@cache
def load_schema(name: str, version: str | None = None) -> Schema:
    """Load a shipped schema; the newest version unless one is named."""
    versions = schema_versions(name)
    version = version or versions[-1]
    if version not in versions:
        latest = versions[-1]
        if parse_version(version) > parse_version(latest):
            raise SchemaVersionError(f"schema {name!r} v{version} is newer than this mimicdata knows "
                                     f"(latest v{latest})")
        raise SchemaError(f"schema {name!r} has no version {version!r} (known: {', '.join(versions)})")
    text = (_schemas_root() / name / f"v{version}.json").read_text()
    return Schema.from_doc(json.loads(text))


# ---------------------------------------------------------------------------------------------- robots
@dataclass(frozen=True)
class Robot:
    """A robot description: joint/body names in the order every array uses, quaternion order."""

    name: str
    joint_names: tuple[str, ...]
    motor_names: tuple[str, ...]
    body_names: tuple[str, ...]
    qpos_names: tuple[str, ...]
    qvel_names: tuple[str, ...]
    quat_order: str = "wxyz"
    doc: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Robot:
        try:
            joints = tuple(doc["joint_names"])
        except KeyError:
            raise SchemaError(f"robot description {doc.get('name')!r} lacks joint_names") from None
        if len(set(joints)) != len(joints):
            raise SchemaError(f"robot {doc.get('name')!r}: duplicate joint names")
        quat = doc.get("quat_order", "wxyz")
        if quat not in ("wxyz", "xyzw"):
            raise SchemaError(f"robot {doc.get('name')!r}: quat_order must be 'wxyz' or 'xyzw', got {quat!r}")
        return cls(name=doc["name"], joint_names=joints,
                   motor_names=tuple(doc.get("motor_names", joints)),
                   body_names=tuple(doc.get("body_names", ())),
                   qpos_names=tuple(doc.get("qpos_names", ())),
                   qvel_names=tuple(doc.get("qvel_names", ())), quat_order=quat, doc=doc)

    def dims(self) -> dict[str, int]:
        """Sizes of the robot-bound named dimensions."""
        return {dim: len(getattr(self, attr)) for dim, attr in ROBOT_DIMS.items()}

    def labels(self, dim: str) -> tuple[str, ...] | None:
        attr = ROBOT_DIMS.get(dim)
        return getattr(self, attr) if attr else None

    def joint_indices(self, names: list[str]) -> list[int]:
        """Positions of the named joints; unknown names are an error listing them."""
        unknown = [n for n in names if n not in self.joint_names]
        if unknown:
            raise SchemaError(f"robot {self.name!r} has no joint(s) {unknown}; "
                              f"its joints are {list(self.joint_names)}")
        return [self.joint_names.index(n) for n in names]


def robot_names() -> list[str]:
    folder = _schemas_root() / "robots"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


@cache
def load_robot(name: str) -> Robot:
    """Load a shipped robot description by name (``g1_29dof``, ``g1_23dof``)."""
    path = _schemas_root() / "robots" / f"{name}.json"
    if not path.is_file():
        raise SchemaError(f"unknown robot {name!r}; known robots: {', '.join(robot_names()) or 'none'}")
    return Robot.from_doc(json.loads(path.read_text()))
