"""Convert the seed's deployment logs (BeyondMimic ``common/data_logger.py``) into a store.

Formats read, all named ``[<prefix>_]<stream>_YYYYMMDD_HHMMSS.<ext>`` (one file per stream and
session; ``<stream>`` is ``observations``, ``actions`` or anything else the policy logged):

- ``.pkl``: StreamingPickleLogger, one ``pickle.dump`` per record (a dict of numpy arrays plus
  ``counter_step`` and ``_timestamp`` = ``time.time()``); or DataLogger's pickle format, one pickled
  list of such dicts. ``.pkl.gz``: the same, gzip-compressed.
- ``.jsonl``: DataLogger's JSON lines, one record per line, arrays as lists.
- ``.json``: a JSON array of records (or an object holding one under ``records``/``data``).

Loading pickle runs code stored in the file, so pickle files are refused unless
``allow_pickle=True`` (``--allow-pickle``). Truncated or corrupted input is converted up to the last
valid record; the report says where each file stopped (record index, byte offset or line), and
after a corrupted pickle record the reader looks for the next record boundary and goes on.

Mapping: ``_timestamp`` (float seconds) -> ``timestamp`` (int64 ns); ``observations``/``actions``
whose fields fit the shipped schemas are stored with them, anything else as a custom stream of the
same name. The robot is told from the joint count (23 -> g1_23dof, 29 -> g1_29dof) unless given.
"""

from __future__ import annotations

import gzip
import io
import json
import mmap
import pickle
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.convert import ConvertReport
from mimicdata.errors import MimicDataError, SchemaError, ValidationError
from mimicdata.logger.layout import SCHEMA_STREAMS, StreamLayout, custom_layout, schema_layout
from mimicdata.schema import Robot, load_robot

FILE_RE = re.compile(r"^(?P<stem>.+?)_(?P<session>\d{8}_\d{6})\.(?P<ext>pkl|pkl\.gz|jsonl|json)$")
PICKLE_EXTS = ("pkl", "pkl.gz")
ROBOT_BY_JOINTS = {23: "g1_23dof", 29: "g1_29dof"}
BATCH_ROWS = 4096
MAX_RESYNC_BYTES = 1 << 20  # how far past a corrupted pickle record to look for the next one


class PickleRefusedError(MimicDataError, PermissionError):
    """A pickle log was given without ``allow_pickle=True``."""


@dataclass(frozen=True)
class SeedFile:
    path: Path
    stream: str
    session: str
    ext: str


@dataclass
class Stop:
    """Where and why a file's reader stopped early (or skipped a damaged stretch)."""

    where: str
    why: str
    final: bool = True


def _parse(path: Path) -> SeedFile | None:
    m = FILE_RE.match(path.name)
    if not m or not path.is_file():
        return None
    stem = m["stem"]
    stream = next((s for s in SCHEMA_STREAMS if stem == s or stem.endswith("_" + s)), stem)
    stream = re.sub(r"[^A-Za-z0-9_-]", "_", stream).lstrip("._") or "records"
    return SeedFile(path, stream, m["session"], m["ext"])


def _seed_files(src: Path) -> list[SeedFile]:
    if src.is_file():
        return [f for f in [_parse(src)] if f]
    if src.is_dir() and not (src / "zarr.json").exists():
        return [f for f in (_parse(p) for p in sorted(src.iterdir())) if f]
    return []


def detect(path: str | Path) -> bool:
    """True for a seed log file, or a folder holding seed log files."""
    return bool(_seed_files(Path(path)))


# --------------------------------------------------------------------------------------- readers
def _open_pickle_bytes(sf: SeedFile, stops: list[Stop]) -> Any:
    """The file's bytes as a seekable file-like object that supports find(): mmap, or decompressed gzip."""
    if sf.ext == "pkl.gz":
        data = sf.path.read_bytes()
        try:
            return _Bytes(gzip.decompress(data))
        except (EOFError, OSError, zlib.error) as exc:  # truncated or damaged gzip: keep what decompresses
            # final: nothing past the damage can be read, even when every record before it is whole
            stops.append(Stop(f"{sf.path.name}: gzip stream", f"damaged or truncated ({exc})"))
            return _Bytes(_salvage_gzip(data))
    if sf.path.stat().st_size == 0:
        return _Bytes(b"")
    with open(sf.path, "rb") as fh:  # mapped, not read: a pickle log can be larger than memory
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


class _Bytes(io.BytesIO):
    """In-memory bytes with mmap's find() and len(), for the resynchronisation after a damaged record."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.data = data

    def find(self, sub: bytes, start: int, end: int) -> int:
        return self.data.find(sub, start, end)

    def __len__(self) -> int:
        return len(self.data)


def _read_pickles(sf: SeedFile, stops: list[Stop]) -> Iterator[dict[str, Any]]:
    f = _open_pickle_bytes(sf, stops)
    try:
        yield from _load_all(sf, f, stops)
    finally:
        f.close()


def _load_all(sf: SeedFile, f: Any, stops: list[Stop]) -> Iterator[dict[str, Any]]:
    """Every pickled record of ``f``; a damaged record is skipped when a valid one follows it."""
    size, index = len(f), 0
    while True:
        pos = f.tell()
        if pos >= size:
            return
        try:
            obj = pickle.load(f)  # only with allow_pickle=True
        except EOFError:
            stops.append(Stop(f"{sf.path.name}: record {index} (byte {pos} of {size})", "truncated record"))
            return
        except Exception as exc:
            nxt = _next_pickle(f, size, pos + 1)
            if nxt is None:
                why = ("truncated record" if "truncated" in str(exc) else
                       f"corrupted ({type(exc).__name__}: {exc}); no valid record after it")
                stops.append(Stop(f"{sf.path.name}: record {index} (byte {pos} of {size})", why))
                return
            stops.append(Stop(f"{sf.path.name}: record {index} (bytes {pos}-{nxt} of {size})",
                              f"corrupted ({type(exc).__name__}), skipped", final=False))
            f.seek(nxt)
            continue
        if isinstance(obj, list):  # DataLogger's format: the whole file is one list of records
            yield from (r for r in obj if isinstance(r, dict))
        elif isinstance(obj, dict):
            yield obj
        else:
            stops.append(Stop(f"{sf.path.name}: record {index}", f"not a dict but {type(obj).__name__}",
                              final=False))
        index += 1


def _salvage_gzip(data: bytes) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    for i in range(0, len(data), 1 << 16):
        try:
            out += d.decompress(data[i:i + (1 << 16)])
        except zlib.error:
            break
    return bytes(out)


def _next_pickle(f: Any, size: int, start: int) -> int | None:
    """Offset of the next loadable pickle (PROTO opcode 0x80 + version) after a damaged stretch."""
    end = min(size, start + MAX_RESYNC_BYTES)
    pos = f.find(b"\x80", start, end)
    while pos != -1:
        f.seek(pos + 1)
        if pos + 1 < size and 2 <= f.read(1)[0] <= 5:
            f.seek(pos)
            try:
                if isinstance(pickle.load(f), dict | list):
                    return pos
            except Exception:
                pass
        pos = f.find(b"\x80", pos + 1, end)
    return None


def _read_jsonl(sf: SeedFile, stops: list[Stop]) -> Iterator[dict[str, Any]]:
    lines = sf.path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            last = number == len(lines) or all(not rest.strip() for rest in lines[number:])
            stops.append(Stop(f"{sf.path.name}: line {number}", f"{'truncated' if last else 'bad'} JSON ({exc})",
                              final=last))
            continue
        if isinstance(obj, dict):
            yield obj
        else:
            stops.append(Stop(f"{sf.path.name}: line {number}", "not a JSON object", final=False))


def _read_json(sf: SeedFile, stops: list[Stop]) -> Iterator[dict[str, Any]]:
    text = sf.path.read_text(errors="replace")
    decoder = json.JSONDecoder()
    body = text.lstrip()
    if body.startswith("["):
        start = text.index("[")
    else:
        m = re.search(r'"(records|data)"\s*:\s*\[', text) if body.startswith("{") else None
        if m is None:
            stops.append(Stop(f"{sf.path.name}: char 0", "no JSON array of records (nor records/data key)"))
            return
        start = m.end() - 1
    pos, index = start + 1, 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            stops.append(Stop(f"{sf.path.name}: record {index} (char {pos})", "truncated: the array never ends"))
            return
        if text[pos] == "]":
            return
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError as exc:
            stops.append(Stop(f"{sf.path.name}: record {index} (char {pos})", f"truncated or bad JSON ({exc})"))
            return
        if isinstance(obj, dict):
            yield obj
        index += 1


def read_records(sf: SeedFile, stops: list[Stop]) -> Iterator[dict[str, Any]]:
    """The records of one seed file; problems are appended to ``stops``."""
    if sf.ext in PICKLE_EXTS:
        return _read_pickles(sf, stops)
    return _read_jsonl(sf, stops) if sf.ext == "jsonl" else _read_json(sf, stops)


# -------------------------------------------------------------------------------------- writing
def _map_record(record: dict[str, Any]) -> dict[str, Any]:
    """Seed record -> mimicdata record: ``_timestamp`` (s) becomes ``timestamp`` (int64 ns)."""
    out = {k: v for k, v in record.items() if not k.startswith("_")}
    if "_timestamp" in record:
        out["timestamp"] = round(float(record["_timestamp"]) * 1e9)
    return out


def _robot_for(records: dict[str, dict[str, Any]], robot: str | None) -> Robot | None:
    if robot:
        return load_robot(robot)
    for stream, key in (("observations", "joint_pos"), ("actions", "raw_action"), ("observations", "ref_joint_pos")):
        if stream in records and key in records[stream]:
            n = int(np.asarray(records[stream][key]).shape[-1])
            if n in ROBOT_BY_JOINTS:
                return load_robot(ROBOT_BY_JOINTS[n])
            raise SchemaError(f"cannot tell the robot from {n} joints in {stream}.{key}; pass robot=... "
                              f"(known: {', '.join(f'{k} joints: {v}' for k, v in ROBOT_BY_JOINTS.items())})")
    return None


class _StreamWriter:
    """Checks records against the stream's layout (fixed by its first record) and appends in batches."""

    def __init__(self, store: Any, name: str, first: dict[str, Any], robot: Robot | None, notes: list[str]) -> None:
        self.name = name
        layout: StreamLayout | None = None
        if name in SCHEMA_STREAMS and "timestamp" in first:
            try:
                layout = schema_layout(name, name, first, robot)
            except (ValidationError, SchemaError) as exc:
                notes.append(f"{name}: stored as a custom stream, its records do not fit schema {name} ({exc})")
        if layout is not None:
            store.add_stream(name, schema=name, dims=layout.dims or None)
        else:
            layout = custom_layout(name, {k: v for k, v in first.items() if k != "timestamp"})
            fields = {k: v for k, v in layout.store_fields().items() if k in first}  # no auto fields here
            store.add_stream(name, fields=fields, time_field="timestamp" if "timestamp" in first else None)
        self.layout = layout
        self.stream = store[name]
        self.keys = set(first)
        self.columns: dict[str, list[Any]] = {k: [] for k in first}
        self.rows = 0

    def check(self, record: dict[str, Any]) -> str | None:
        """Why a record cannot be stored, or None."""
        if set(record) != self.keys:
            extra, missing = sorted(set(record) - self.keys), sorted(self.keys - set(record))
            return f"fields differ from the first record (unknown {extra}, missing {missing})"
        for f in self.layout.fields:
            try:
                arr = np.asarray(record[f.name])
            except Exception as exc:
                return f"{f.name}: not an array ({exc})"
            if arr.shape != f.shape:
                return f"{f.name}: shape {arr.shape}, expected {f.shape}"
            if arr.dtype.kind not in "biuf":
                return f"{f.name}: dtype {arr.dtype} is not numeric"
            if f.checked and not np.isfinite(arr).all():
                return f"{f.name}: holds NaN/Inf"
        return None

    def add(self, record: dict[str, Any]) -> None:
        for k, v in record.items():
            self.columns[k].append(v)
        if len(self.columns[next(iter(self.columns))]) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        n = len(next(iter(self.columns.values())))
        if n:
            self.stream.append({k: np.asarray(v) for k, v in self.columns.items()})
            self.rows += n
            self.columns = {k: [] for k in self.columns}


def _pick_session(files: list[SeedFile], session: str | None, report: ConvertReport) -> list[SeedFile]:
    sessions = sorted({f.session for f in files})
    chosen = session or sessions[-1]
    if chosen not in sessions:
        raise MimicDataError(f"no session {chosen!r} among the logs: {', '.join(sessions)}")
    if len(sessions) > 1:
        report.details["other_sessions"] = [s for s in sessions if s != chosen]
    report.details["session"] = chosen
    return [f for f in files if f.session == chosen]


def convert(src: str | Path, dst: str | Path, *, allow_pickle: bool = False, overwrite: bool = False,
            robot: str | None = None, session: str | None = None) -> ConvertReport:
    """Convert one session of seed logs (a log folder, or one of its files) into the store ``dst``.

    The newest session is taken unless ``session`` (``YYYYMMDD_HHMMSS``) is given; other sessions are
    listed in ``report.details["other_sessions"]``.
    """
    import mimicdata

    src = Path(src)
    files = _seed_files(src)
    if not files:
        raise MimicDataError(f"{src}: no seed log files (<stream>_YYYYMMDD_HHMMSS.pkl/.pkl.gz/.jsonl/.json)")
    if src.is_file():
        files = [f for f in _seed_files(src.parent) if f.session == files[0].session]
    report = ConvertReport(str(src), str(dst), "seedlog")
    files = _pick_session(files, session, report)
    pickles = [f.path.name for f in files if f.ext in PICKLE_EXTS]
    if pickles and not allow_pickle:
        raise PickleRefusedError(f"{', '.join(pickles)}: loading pickle files runs code stored in them; pass "
                                 f"allow_pickle=True (--allow-pickle) only for logs you produced or trust")
    stops: list[Stop] = []
    iterators: dict[str, Iterator[dict[str, Any]]] = {}
    firsts: dict[str, dict[str, Any]] = {}
    for sf in files:  # one file per stream; a second file of the same stream is appended after the first
        it = (_map_record(r) for r in read_records(sf, stops))
        first = next(it, None)
        if first is None:
            report.problems.append(f"{sf.path.name}: no valid record")
            continue
        key = sf.stream
        if key in iterators:
            iterators[key] = _chain(iterators[key], [first], it)
        else:
            firsts[key], iterators[key] = first, _chain([first], it)
    notes: list[str] = []
    stamps = [r["timestamp"] for r in firsts.values() if "timestamp" in r]
    attrs = {"converted_from": "seedlog", "source": str(src), "session_id": report.details["session"]}
    if stamps:
        attrs["start_time_ns"] = min(stamps)
    with mimicdata.create(dst, robot=_robot_for(firsts, robot), overwrite=overwrite, attrs=attrs) as store:
        for name, records in iterators.items():
            writer = _StreamWriter(store, name, firsts[name], store.robot, notes)
            for index, record in enumerate(records):
                problem = writer.check(record)
                if problem:
                    report.problems.append(f"{name} record {index}: {problem}; skipped")
                else:
                    writer.add(record)
            writer.flush()
            report.rows[name] = writer.rows
    report.details["notes"] = notes
    report.problems += [f"{s.where}: {s.why}" for s in stops if not s.final]
    final = [f"{s.where} ({s.why})" for s in stops if s.final]
    report.stopped_at = "; ".join(final) or None
    return report


def _chain(*parts: Any) -> Iterator[dict[str, Any]]:
    for part in parts:
        yield from part
