"""Create and open stores.

On disk a store is a plain Zarr v3 group::

    store.zarr/zarr.json                 attributes.mimicdata: format, producer, robot, schemas, streams
    store.zarr/<stream>/zarr.json        attributes.mimicdata: schema, version, spec, dims, committed_rows
    store.zarr/<stream>/<field>/         one array per field, shape (rows, *field_shape)
    store.zarr/mimicdata.lock            present while a writer has the store open

See README.md ("On-disk format") for the full description.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from mimicdata._version import __version__
from mimicdata.errors import (
    CorruptStoreError,
    ReadOnlyError,
    SchemaError,
    SchemaVersionError,
    StoreExistsError,
    StoreNotFoundError,
    ValidationError,
    storage_error,
)
from mimicdata.migrate import plan_migration
from mimicdata.schema import (
    ROBOT_DIMS,
    FieldSpec,
    Robot,
    Schema,
    StreamSpec,
    load_robot,
    load_schema,
    parse_version,
)
from mimicdata.storage import Location, WriterLock, parse_url, zarr_store
from mimicdata.stream import META, Stream

FORMAT_VERSION = 1
CUSTOM = "custom"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


class Store:
    """A mimicdata store: named streams of rows sharing one robot and time base."""

    def __init__(self, location: Location, zstore: Any, root: zarr.Group, mode: str,
                 lock: WriterLock | None) -> None:
        self.location = location
        self.zstore = zstore
        self.root = root
        self.mode = mode
        self._lock = lock
        self._write_guard = threading.RLock()
        self.closed = False
        self.meta: dict[str, Any] = dict(root.attrs.asdict().get(META, {}))
        robot = self.meta.get("robot")
        self.robot: Robot | None = Robot.from_doc(robot) if robot else None
        self.streams: dict[str, Stream] = {}
        self.warnings: list[str] = []

    # ------------------------------------------------------------------------------------------ access
    def __getitem__(self, name: str) -> Stream:
        try:
            return self.streams[name]
        except KeyError:
            raise KeyError(f"{self.location}: no stream {name!r}; streams: {list(self.streams)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.streams

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        robot = self.robot.name if self.robot else None
        return f"<Store {self.location} mode={self.mode!r} robot={robot} streams={list(self.streams)}>"

    @property
    def fps(self) -> float | None:
        return self.meta.get("fps")

    @property
    def attrs(self) -> dict[str, Any]:
        """User attributes (a copy); change them with :meth:`update_attrs`."""
        return dict(self.meta.get("attrs", {}))

    @property
    def schemas(self) -> dict[str, str]:
        """Schema name -> version of every stream."""
        return {s.name: f"{s.schema} v{s.schema_version}" for s in self.streams.values()}

    def update_attrs(self, values: Mapping[str, Any]) -> None:
        """Merge JSON-serialisable values into the store's user attributes."""
        self._require_writable()
        with self._write_guard:
            meta = dict(self.meta, attrs={**self.meta.get("attrs", {}), **dict(values)})
            self.root.update_attributes({META: meta})
            self.meta = meta

    def _require_writable(self) -> None:
        if self.mode == "r":
            raise ReadOnlyError(f"{self.location}: opened read-only; open with mode='a' to write")
        if self.closed:
            raise ReadOnlyError(f"{self.location}: store is closed")

    # --------------------------------------------------------------------------------------- streams
    def add_stream(self, name: str, fields: Mapping[str, Mapping[str, Any]] | None = None, *,
                   schema: str | None = None, fps: float | None = None, time_field: str | None = None,
                   dims: Mapping[str, int] | None = None, chunk_rows: int | None = None,
                   lossy: Mapping[str, int] | None = None, segments_of: str | None = None,
                   codecs: Mapping[str, str] | None = None) -> Stream:
        """Add a stream: either a stream of a shipped schema (``schema="observations"``) or a custom
        one described inline by ``fields`` (``{"acc": {"dtype": "float32", "shape": [3], "unit": "m/s^2"}}``).
        With both, ``fields`` adds this store's own fields to the schema's stream (kept in its metadata).
        """
        self._require_writable()
        if name in self.streams:
            raise SchemaError(f"{self.location}: stream {name!r} already exists")
        if not name or "/" in name or name.startswith((".", "_")) or name == "mimicdata.lock":
            raise SchemaError(f"stream name {name!r} is not allowed (no '/', no leading '.' or '_')")
        if schema is not None:
            doc = _load_schema_ref(schema)
            spec = doc.streams.get(name) or (next(iter(doc.streams.values())) if len(doc.streams) == 1 else None)
            if spec is None:
                raise SchemaError(f"schema {schema!r} has streams {list(doc.streams)}, not {name!r}")
            spec = StreamSpec(**{**spec.__dict__, "name": name})
            if fields:  # a schema stream extended by fields of this store (e.g. an episodes store's features)
                spec = _extend_spec(spec, fields)
            schema, version = doc.name, doc.version
        else:
            if not fields:
                raise SchemaError(f"custom stream {name!r} needs fields")
            doc_fields = {k: dict(v) for k, v in fields.items()}
            if time_field and time_field not in doc_fields:
                doc_fields[time_field] = {"dtype": "int64", "shape": [], "unit": "ns", "time": "unix_ns",
                                          "description": "Wall-clock time, ns since the Unix epoch."}
            time = {"field": time_field, "unit": "ns"} if time_field else ({"fps": True} if fps else {})
            spec = StreamSpec.from_doc(name, {"fields": doc_fields, "time": time,
                                              "chunk_rows": chunk_rows or 4096, "segments_of": segments_of})
            schema, version = CUSTOM, "1.0"
        if chunk_rows:
            spec = StreamSpec(**{**spec.__dict__, "chunk_rows": int(chunk_rows)})
        for field_name, bits in (lossy or {}).items():
            f = spec.field_for(field_name)
            if f is None or f.dtype not in ("float32", "float64"):
                raise SchemaError(f"lossy precision: {name}.{field_name} is not a float field of the stream")
            if not 1 <= int(bits) <= (23 if f.dtype == "float32" else 52):
                raise SchemaError(f"lossy precision for {name}.{field_name}: {bits} mantissa bits is out of range")
        # a schema may declare lossy fields itself; the caller's `lossy` adds to / overrides it
        lossy = {**{k: f.mantissa_bits for k, f in spec.fields.items() if f.mantissa_bits}, **dict(lossy or {})}
        if lossy:  # state the precision (and so the error bound) in the stored schema too
            spec = StreamSpec(**{**spec.__dict__, "fields": {
                k: FieldSpec(**{**f.__dict__, "mantissa_bits": int(lossy[k]) if k in lossy else f.mantissa_bits})
                for k, f in spec.fields.items()}})
        all_dims = dict(self.robot.dims()) if self.robot else {}
        all_dims.update({k: int(v) for k, v in (dims or {}).items()})
        used = {d for f in spec.fields.values() for d in f.shape if isinstance(d, str)}
        if not self.robot and used & set(ROBOT_DIMS):
            raise SchemaError(f"stream {name!r} has joint/body dimensions {sorted(used & set(ROBOT_DIMS))} "
                              f"but the store has no robot; pass robot=...")
        meta = {"schema": schema, "version": version, "spec": spec.to_doc(),
                "fps": float(fps) if fps else self.fps, "dims": {k: v for k, v in all_dims.items() if k in used},
                "committed_rows": 0, "fields_present": [], "categories": {},
                "lossy": {k: int(v) for k, v in (lossy or {}).items()}, "codecs": dict(codecs or {}),
                "created": _now(), "min_reader": __version__}
        with self._write_guard:
            group = self.root.create_group(name, attributes={META: meta})
            self.streams[name] = Stream(self, name, group, meta, spec)
            self.meta = dict(self.meta, streams=[*self.meta.get("streams", []), name])
            self.root.update_attributes({META: self.meta})
        return self.streams[name]

    def append_segment(self, segment_stream: str, frames: Mapping[str, Any] | None = None,
                       row: Mapping[str, Any] | None = None) -> int:
        """Commit one segment (episode, clip, trajectory): its frames first, then its row.

        ``frames`` is a batch for the segmented stream; ``None`` closes a segment over the frames
        appended since the last one. ``start``, ``end``, the ``*_index`` field and ``start_time`` /
        ``end_time`` are filled in. A crash before the row is committed leaves the segment absent.
        Returns the segment's index.
        """
        self._require_writable()
        seg = self[segment_stream]
        if not seg.spec.segments_of:
            raise SchemaError(f"stream {segment_stream!r} is not a segment table")
        target = self[seg.spec.segments_of]
        with self._write_guard:
            start = target.num_rows
            if frames is not None:
                target.append(_with_frame_indices(target, seg, frames, start))
            end = target.committed_rows
            if end <= start:
                raise ValidationError(f"{self.location}: empty {segment_stream[:-1]} (no frames to commit)")
            index = seg.num_rows
            values: dict[str, Any] = {k: v for k, v in (row or {}).items()}
            fixed = {"start": start, "end": end}
            index_field = next((k for k in seg.spec.fields if k.endswith("_index")), None)
            if index_field:
                fixed[index_field] = index
            clash = sorted(set(values) & set(fixed))
            if clash:
                raise ValidationError(f"{segment_stream}: {clash} are filled in by the store; do not pass them")
            values.update(fixed)
            stamps = target.spec.time_field
            if stamps and "start_time" in seg.spec.fields and "start_time" not in values:
                times = target._read_physical(stamps, start, end)
                values["start_time"], values["end_time"] = int(times[0]), int(times[-1])
            try:
                seg.append({k: np.asarray([v]) for k, v in values.items()})
            except ValidationError:
                target.truncate(start)  # the frames must not outlive a segment row that was refused
                raise
            return index

    # ------------------------------------------------------------------------------------------ close
    def close(self) -> None:
        """Finish writing: trim arrays to the committed rows and release the writer lock."""
        if self.closed:
            return
        try:
            if self.mode != "r":
                with self._write_guard:
                    for stream in self.streams.values():
                        stream._trim_arrays()
        except OSError as exc:  # trimming is tidying only: the committed rows are already safe
            raise storage_error(exc, f"{self.location}: closing") from None
        finally:
            self.closed = True
            if self._lock is not None:
                self._lock.release()


def _extend_spec(spec: StreamSpec, fields: Mapping[str, Mapping[str, Any]]) -> StreamSpec:
    """A schema stream plus extra fields; a required field of the schema cannot be redeclared."""
    clash = sorted(k for k in fields if k in spec.fields and spec.fields[k].required)
    if clash:
        raise SchemaError(f"stream {spec.name!r}: {clash} are required fields of the schema; choose other names")
    doc = spec.to_doc()
    doc["fields"] = {**doc["fields"], **{k: dict(v) for k, v in fields.items()}}
    return StreamSpec.from_doc(spec.name, doc)


def _with_frame_indices(target: Stream, seg: Stream, frames: Mapping[str, Any], start: int) -> dict[str, Any]:
    """Fill the frames' own ``<segment>_index`` and ``frame_index`` columns when the caller left them out."""
    out = dict(frames)
    n = len(np.asarray(next(iter(frames.values()))))
    pending = target.committed_rows - start  # frames appended earlier for this same segment
    index_field = next((k for k in seg.spec.fields if k.endswith("_index")), None)
    if index_field and index_field in target.spec.fields and index_field not in out:
        out[index_field] = np.full(n, seg.num_rows, np.int64)
    if "frame_index" in target.spec.fields and "frame_index" not in out:
        out["frame_index"] = np.arange(pending, pending + n, dtype=np.int64)
    return out


# ------------------------------------------------------------------------------------ create / open
def _prepare_location(loc: Location, zstore: Any, overwrite: bool) -> None:
    if loc.kind == "local":
        assert loc.path is not None
        path = loc.path
        if path.exists():
            if not path.is_dir() or any(path.iterdir()):
                if not overwrite:
                    raise StoreExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
                if not (path / "zarr.json").is_file():
                    raise StoreExistsError(f"refusing to overwrite {path}: it is not a Zarr store")
                shutil.rmtree(path)
        parent = path.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True)
            except OSError as exc:
                raise ReadOnlyError(f"cannot create {parent}: {exc.strerror}") from None
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, f"cannot create {path}") from None
    else:
        from zarr.core.sync import sync

        existing = sync(zstore.exists("zarr.json"))
        if existing and not overwrite:
            raise StoreExistsError(f"{loc} already exists; pass overwrite=True to replace it")
        if existing:
            sync(zstore.clear())


def create(url: str | Path, schema: str | list[str] | None = None, *, robot: str | Robot | None = None,
           fps: float | None = None, dims: Mapping[str, int] | None = None,
           lossy: Mapping[str, int] | None = None, overwrite: bool = False,
           attrs: Mapping[str, Any] | None = None, storage_options: dict[str, Any] | None = None,
           fields: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None) -> Store:
    """Create a store for one or more schemas and a robot; returns it open for appending (locked).

    ``schema`` names shipped schemas, newest version by default or ``"name@1.0"`` for an older one.
    ``fields`` adds this store's own fields to schema streams: ``{"frames": {"observation.effort": {...}}}``.

    >>> store = create("memory://doc", ["observations", "actions"], robot="g1_29dof", fps=50, dims={"obs": 160})
    >>> sorted(store.streams)
    ['actions', 'observations']
    """
    loc = parse_url(url)
    robot_obj = load_robot(robot) if isinstance(robot, str) else robot
    schemas = [schema] if isinstance(schema, str) else list(schema or [])
    docs: list[Schema] = [_load_schema_ref(s) for s in schemas]  # fail on a bad name before touching disk
    zstore = zarr_store(loc, read_only=False, storage_options=storage_options)
    made_dir = loc.kind == "local" and loc.path is not None and not loc.path.exists()
    _prepare_location(loc, zstore, overwrite)
    lock = WriterLock(loc, zstore)
    try:
        lock.acquire()
        meta = {"format": "mimicdata", "format_version": FORMAT_VERSION,
                "producer": {"name": "mimicdata", "version": __version__}, "created": _now(),
                "robot": _robot_doc(robot_obj), "quat_order": robot_obj.quat_order if robot_obj else "wxyz",
                "fps": float(fps) if fps else None, "time_base": "unix_ns",
                "schemas": [{"name": d.name, "version": d.version} for d in docs],
                "streams": [], "attrs": dict(attrs or {})}
        # not overwrite=True: that would clear the folder, lock file included
        root = zarr.create_group(store=zstore, attributes={META: meta})
        store = Store(loc, zstore, root, "a", lock)
        for doc in docs:
            for stream_name in doc.streams:
                stream_lossy = {k: v for k, v in (lossy or {}).items()
                                if doc.streams[stream_name].field_for(k) is not None}
                store.add_stream(stream_name, schema=f"{doc.name}@{doc.version}", dims=dims, lossy=stream_lossy,
                                 fields=(fields or {}).get(stream_name))
        unused = set(lossy or {}) - {k for s in store.streams.values() for k in s.meta["lossy"]}
        if unused:
            raise SchemaError(f"lossy precision given for unknown field(s) {sorted(unused)}")
        return store
    except OSError as exc:  # disk full or read-only while writing the metadata: leave no half-made store
        lock.release()  # (a no-op when the lock was never taken)
        if loc.kind == "local" and loc.path is not None:  # what was written here; a folder given empty stays
            for part in (loc.path,) if made_dir else tuple(loc.path.iterdir()):
                if part.is_dir():
                    shutil.rmtree(part, ignore_errors=True)
                else:
                    part.unlink(missing_ok=True)
        raise storage_error(exc, f"cannot create {loc}") from None
    except BaseException:
        lock.release()
        raise


def _load_schema_ref(ref: str) -> Schema:
    """``"observations"`` (newest version) or ``"observations@1.0"`` (a given, possibly older, version)."""
    name, _, version = ref.partition("@")
    return load_schema(name, version or None)


def _robot_doc(robot: Robot | None) -> dict[str, Any] | None:
    if robot is None:
        return None
    return {"name": robot.name, "joint_names": list(robot.joint_names), "motor_names": list(robot.motor_names),
            "body_names": list(robot.body_names), "qpos_names": list(robot.qpos_names),
            "qvel_names": list(robot.qvel_names), "quat_order": robot.quat_order}


def open(url: str | Path, mode: str = "r", *, break_lock: bool = False,
         storage_options: dict[str, Any] | None = None) -> Store:
    """Open a store read-only (``"r"``) or for appending (``"a"``), validating its metadata.

    Older schema versions are migrated (in memory for ``"r"``, on disk for ``"a"``); newer major
    versions are refused with the mimicdata version needed. Opening for append also discards an
    unfinished batch or segment left by a writer that died.
    """
    if mode not in ("r", "a"):
        raise ValueError(f"mode must be 'r' or 'a', not {mode!r}")
    loc = parse_url(url)
    if loc.kind == "local" and not (loc.path and loc.path.exists()):
        raise StoreNotFoundError(f"no store at {loc}: path does not exist")
    zstore = zarr_store(loc, read_only=(mode == "r"), storage_options=storage_options)
    try:
        root = zarr.open_group(store=zstore, mode="r" if mode == "r" else "r+")
    except FileNotFoundError:
        inside = sorted(p.name for p in loc.path.iterdir() if (p / "zarr.json").is_file()) if loc.path else []
        hint = f"; it holds the store(s) {', '.join(inside)}" if inside else ""
        raise StoreNotFoundError(f"no store at {loc}: no zarr.json (not a Zarr store){hint}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptStoreError(f"{loc}: cannot read the root zarr.json ({exc})") from None
    meta = root.attrs.asdict().get(META)
    if not isinstance(meta, dict) or meta.get("format") != "mimicdata":
        raise StoreNotFoundError(f"{loc} is a Zarr group but not a mimicdata store (no 'mimicdata' attributes)")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        needed = meta.get("producer", {}).get("version", "a newer version")
        raise SchemaVersionError(f"{loc}: store format v{meta['format_version']} needs mimicdata >= {needed} "
                                 f"(this is mimicdata {__version__}); upgrade with `pip install -U mimicdata`")
    lock = None
    if mode == "a":
        lock = WriterLock(loc, zstore)
        lock.acquire(break_lock=break_lock)
    try:
        store = Store(loc, zstore, root, mode, lock)
        for name in meta.get("streams", []):
            store.streams[name] = _open_stream(store, name)
        if mode == "a":
            _repair(store)
        return store
    except OSError as exc:  # repairing after a crash needs to write: read-only or full storage
        if lock is not None:
            lock.release()
        raise storage_error(exc, f"{loc}: cannot open for appending") from None
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _open_stream(store: Store, name: str) -> Stream:
    try:
        group = store.root[name]
    except KeyError:
        raise CorruptStoreError(f"{store.location}: stream {name!r} is listed but its group is missing") from None
    except (ValueError, TypeError) as exc:  # a damaged zarr.json
        raise CorruptStoreError(f"{store.location}: cannot read the metadata of stream {name!r} ({exc})") from None
    meta = dict(group.attrs.asdict().get(META) or {})
    if not meta.get("schema") or "version" not in meta:
        raise CorruptStoreError(f"{store.location}: stream {name!r} has no schema metadata")
    version = meta["version"]
    spec = StreamSpec.from_doc(name, meta["spec"])
    stream = Stream(store, name, group, meta, spec)  # type: ignore[arg-type]
    if meta["schema"] != CUSTOM:
        current = load_schema(meta["schema"])
        if parse_version(version)[0] > current.version_tuple[0]:
            raise SchemaVersionError(
                f"{store.location}: stream {name!r} uses schema {meta['schema']} v{version}; this mimicdata "
                f"{__version__} reads up to v{current.version}. It needs mimicdata >= {meta.get('min_reader', '?')}"
                f" (pip install -U 'mimicdata>={meta.get('min_reader', '0')}')")
        if parse_version(version) > current.version_tuple:
            if store.mode == "a":
                raise SchemaVersionError(
                    f"{store.location}: stream {name!r} is schema {meta['schema']} v{version}, newer than this "
                    f"mimicdata's v{current.version}; it can be read but not appended to (needs mimicdata >= "
                    f"{meta.get('min_reader', '?')})")
            msg = f"{name}: schema v{version} is newer than v{current.version}; unknown fields are ignored"
            store.warnings.append(msg)
            warnings.warn(msg, stacklevel=3)
        elif parse_version(version) < current.version_tuple:
            plan = plan_migration(meta["schema"], version, current, meta, name)
            if store.mode == "a":
                stream.apply_migration(plan)
            else:
                stream.spec, stream.aliases = plan.spec, plan.aliases
                stream.meta = dict(meta, version=current.version, fields_present=plan.fields_present)
                store.warnings.append(f"{name}: read through migration v{version} -> v{current.version}")
    _check_stream(store, stream)
    return stream


def _check_stream(store: Store, stream: Stream) -> None:
    """Metadata-level validation done on every open (the full data scan is `mimicdata validate`)."""
    where = f"{store.location} {stream.name}"
    present = stream.meta.get("fields_present", [])
    if stream.committed_rows:
        missing = [k for k, f in stream.spec.fields.items() if f.required and k not in stream.fields]
        if missing:
            raise CorruptStoreError(f"{where}: required field(s) {missing} have no stored array")
    if store.robot is not None:
        for dim, size in store.robot.dims().items():
            if dim in stream.dims and stream.dims[dim] != size:
                raise CorruptStoreError(f"{where}: dimension {dim!r} has size {stream.dims[dim]} but robot "
                                        f"{store.robot.name} has {size}")
    for phys in present:
        try:
            arr = stream.group[phys]
        except KeyError:
            raise CorruptStoreError(f"{where}: array {phys!r} is listed but missing") from None
        except (ValueError, TypeError) as exc:
            raise CorruptStoreError(f"{where}: cannot read the metadata of array {phys!r} ({exc})") from None
        if arr.shape[0] < stream.committed_rows:  # type: ignore[union-attr]
            raise CorruptStoreError(f"{where}/{phys}: {arr.shape[0]} rows stored but "  # type: ignore[union-attr]
                                    f"{stream.committed_rows} committed")


def _repair(store: Store) -> None:
    """After a crash: drop frames of an unfinished segment and trim arrays to the committed rows."""
    for stream in store.streams.values():
        if stream.segment_stream() is not None and stream.committed_rows > stream.num_rows:
            stream.truncate(stream.num_rows)
        else:
            stream._trim_arrays()
