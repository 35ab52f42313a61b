"""Import a ROS 2 bag in MCAP form into a store, one stream per topic at the topic's own rate.

No ROS install is needed: messages are decoded from the schemas stored in the bag with the
``mcap`` and ``mcap-ros2-support`` packages (``pip install 'mimicdata[mcap]'``).

- ``sensor_msgs/JointState`` -> ``position``, ``velocity``, ``effort`` of shape ``(joint,)`` in the
  robot's joint order, matched by name (each message may name its joints in any order, or only
  some of them: the others are NaN). A joint name the robot does not have refuses the bag, listing
  the bag's names and the robot's.
- Every other topic -> one field per numeric field of the message, nested names joined with
  ``_`` (``sensor_msgs/Imu``: ``orientation`` (wxyz), ``angular_velocity``, ``linear_acceleration``,
  their covariances; ``nav_msgs/Odometry``: ``position``, ``orientation``, ``linear_velocity``,
  ``angular_velocity``, ``pose_covariance``, ``twist_covariance``). ``x, y, z`` messages become
  3-vectors and quaternions wxyz 4-vectors; an array of messages (Unitree ``LowState.motor_state``)
  gives one array per numeric sub-field (``motor_state_q``). Strings, and arrays that are empty or
  change length in the topic's first batch, are left out (listed per topic); a topic with no numeric
  field left, or not in ROS 2's CDR encoding, is skipped and listed in the report.
- Times: ``timestamp`` is the bag's receive time (``log_time``) and ``header_stamp`` the message's
  header stamp, both int64 ns since the Unix epoch. A stream's ``fps`` is its median rate.

Messages are read in log-time order and written in batches per topic, so memory stays bounded
whatever the bag's size. A truncated or corrupted bag is one error and leaves no store behind:
the store is written beside the destination and moved into place only once the bag was read to
its end.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.convert import ConvertReport
from mimicdata.errors import CorruptStoreError, MimicDataError, StoreExistsError, ValidationError

MAGIC = b"\x89MCAP0\r\n"
BATCH_ROWS = 4096
JOINT_STATE = "sensor_msgs/msg/JointState"
# Flattened field names of well-known messages -> the names a user expects.
RENAMES = {
    "nav_msgs/msg/Odometry": {"pose_pose_position": "position", "pose_pose_orientation": "orientation",
                              "twist_twist_linear": "linear_velocity", "twist_twist_angular": "angular_velocity"},
}
JOINT_FIELDS = {"position": "rad", "velocity": "rad/s", "effort": "N*m"}  # (revolute joints, as on the G1)


class McapFormatError(CorruptStoreError):
    """The bag cannot be read (truncated, corrupted, or not MCAP)."""


def detect(path: str | Path) -> bool:
    """True for a file that starts with the MCAP magic."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


# ------------------------------------------------------------------------------------- messages
def flatten(message: Any, prefix: str = "") -> dict[str, Any]:
    """Numeric content of a decoded ROS 2 message: ``{"header_stamp": ns, "orientation": [w, x, y, z], ...}``.

    Values are Python/NumPy scalars or 1-D arrays; strings and lists of messages are left out.
    """
    out: dict[str, Any] = {}
    for slot in getattr(type(message), "__slots__", ()):
        value = getattr(message, slot)
        name = f"{prefix}{slot}"
        slots = tuple(getattr(type(value), "__slots__", ()))
        if slots == ("sec", "nanosec"):  # builtin_interfaces/Time (and Duration)
            out[name] = np.int64(value.sec) * 1_000_000_000 + np.int64(value.nanosec)
        elif set(slots) in ({"x", "y", "z"}, {"x", "y", "z", "w"}) and all(_is_number(getattr(value, s))
                                                                          for s in slots):
            order = ("w", "x", "y", "z") if "w" in slots else ("x", "y", "z")
            out[name] = np.array([getattr(value, s) for s in order], np.float64)
        elif slots:
            out.update(flatten(value, f"{name}_"))
        elif isinstance(value, (bool, np.bool_)):
            out[name] = np.bool_(value)
        elif _is_number(value):
            out[name] = np.float64(value) if isinstance(value, (float, np.floating)) else np.int64(value)
        elif isinstance(value, (bytes, bytearray)):
            out[name] = np.frombuffer(bytes(value), np.uint8)
        elif isinstance(value, (list, tuple, np.ndarray)) and all(_is_number(v) for v in value):
            arr = np.asarray(value)
            out[name] = arr.astype(np.float64 if arr.dtype.kind == "f" or arr.size == 0 else arr.dtype)
        elif isinstance(value, (list, tuple)) and value and all(type(v) is type(value[0]) for v in value) \
                and getattr(type(value[0]), "__slots__", ()):
            # An array of messages (Unitree LowState's motor_state[35]): one array per numeric sub-field.
            items = [flatten(v) for v in value]
            for key in items[0]:
                parts = [np.asarray(item.get(key)) for item in items]
                if all(p.shape == parts[0].shape and p.dtype != object for p in parts):
                    out[f"{name}_{key}"] = np.stack(parts)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def stream_name(topic: str, taken: set[str]) -> str:
    """``/imu/data`` -> ``imu_data`` (unique among `taken`)."""
    base = re.sub(r"[^A-Za-z0-9_]+", "_", topic).strip("_") or "topic"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


class JointOrder:
    """Maps each JointState's own name list onto the robot's joint order (cached per name list)."""

    def __init__(self, robot_joints: list[str], topic: str) -> None:
        self.robot_joints = robot_joints
        self.topic = topic
        self.index = {n: i for i, n in enumerate(robot_joints)}
        self.cache: dict[tuple[str, ...], np.ndarray] = {}
        self.seen: set[str] = set()

    def rows(self, msg: Any, number: int) -> dict[str, np.ndarray]:
        names = tuple(msg.name)
        idx = self.cache.get(names)
        if idx is None:
            unknown = [n for n in names if n not in self.index]
            if unknown or len(set(names)) != len(names):
                what = f"joint names {unknown} that the robot does not have" if unknown else "repeated joint names"
                raise ValidationError(f"{self.topic}: message #{number} of the bag has {what}. Names in the bag: "
                                      f"{list(names)}; the robot's joints: {self.robot_joints}")
            idx = self.cache[names] = np.array([self.index[n] for n in names], np.int64)
            self.seen.update(names)
        out = {}
        for key in ("position", "velocity", "effort"):
            values = np.asarray(getattr(msg, key), np.float64)
            full = np.full(len(self.robot_joints), np.nan)
            if values.size == len(names):
                full[idx] = values
            elif values.size:
                raise ValidationError(f"{self.topic}: message #{number} of the bag has {len(names)} joint names but "
                                      f"{values.size} {key} values")
            out[key] = full
        return out


# ------------------------------------------------------------------------------------- topics
@dataclass
class _Topic:
    """Rows of one topic waiting to be written, and the stream they go to once its layout is known."""

    topic: str
    type: str
    name: str
    joints: JointOrder | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    stream: Any = None
    layout: dict[str, tuple[str, tuple[int, ...]]] | None = None  # field -> (dtype, shape)
    skipped: str | None = None
    left_out: list[str] = field(default_factory=list)
    decode: Any = None  # bytes -> decoded message
    written: int = 0
    fps: float | None = None


def _row(topic: _Topic, decoded: Any, log_time: int, number: int) -> dict[str, Any]:
    if topic.joints is not None:
        row: dict[str, Any] = topic.joints.rows(decoded, number)
        stamp = getattr(getattr(decoded, "header", None), "stamp", None)
        if stamp is not None:
            row["header_stamp"] = np.int64(stamp.sec) * 1_000_000_000 + np.int64(stamp.nanosec)
    else:
        renames = RENAMES.get(topic.type, {})
        row = {renames.get(k, k): v for k, v in flatten(decoded).items()}
        if "timestamp" in row:
            row["msg_timestamp"] = row.pop("timestamp")
    row["timestamp"] = np.int64(log_time)
    return row


def _layout(rows: list[dict[str, Any]]) -> tuple[dict[str, tuple[str, tuple[int, ...]]], list[str]]:
    """Field dtypes and shapes from the first batch of a topic, and the fields left out: arrays that
    are empty or change length (images, optional lists) have no fixed column."""
    layout, left_out = {}, []
    for key, value in rows[0].items():
        arr = np.asarray(value)
        if arr.ndim and (0 in arr.shape or any(np.shape(r.get(key)) != arr.shape for r in rows)):
            left_out.append(key)
        else:
            layout[key] = (str(arr.dtype), arr.shape)
    return layout, left_out


def _flush(store: Any, topic: _Topic) -> None:
    if not topic.rows or topic.skipped:
        topic.rows.clear()
        return
    if topic.stream is None:
        layout, topic.left_out = _layout(topic.rows)
        if set(layout) <= {"timestamp", "header_stamp"}:
            varying = f" (arrays {topic.left_out} are empty or change length)" if topic.left_out else ""
            topic.skipped, topic.rows = f"no numeric fields{varying}", []
            return
        times = np.array([r["timestamp"] for r in topic.rows], np.int64)
        steps = np.diff(times)
        steps = steps[steps > 0]
        topic.fps = float(1e9 / np.median(steps)) if steps.size else None
        fields = {}
        for key, (dtype, shape) in layout.items():
            joint = topic.joints is not None and key in JOINT_FIELDS
            spec: dict[str, Any] = {"dtype": dtype, "shape": ["joint"] if joint else list(shape),
                                    "unit": JOINT_FIELDS[key] if joint else "",
                                    "description": f"{topic.topic} ({topic.type}): {key}"}
            if key == "header_stamp":
                spec.update(time="unix_ns", unit="ns", description=f"{topic.topic}: header stamp, ns since the "
                                                                   "Unix epoch")
            if dtype.startswith("float"):
                spec["allow_nan"] = True  # ROS uses NaN for "not measured"
            fields[key] = spec
        fields["timestamp"] = {"dtype": "int64", "shape": [], "unit": "ns", "time": "unix_ns",
                               "description": f"{topic.topic}: receive time in the bag (log_time), ns since the "
                                              "Unix epoch"}
        topic.layout = layout
        topic.stream = store.add_stream(topic.name, fields=fields, fps=topic.fps, time_field="timestamp")
    assert topic.layout is not None
    batch = {}
    for key, (dtype, shape) in topic.layout.items():
        values = [r.get(key) for r in topic.rows]
        bad = next((i for i, v in enumerate(values) if np.shape(v) != shape), None)
        if bad is not None:
            raise ValidationError(f"{topic.topic}: field {key!r} has shape {np.shape(values[bad])} in message "
                                  f"{topic.written + bad}, {shape} before")
        batch[key] = np.asarray(values, dtype=dtype)
    batch["timestamp"] = np.array([r["timestamp"] for r in topic.rows], np.int64)
    topic.written += topic.stream.append(batch)
    topic.rows.clear()


# ------------------------------------------------------------------------------------- reading
def _decoder_factory() -> Any:
    try:
        from mcap_ros2.decoder import DecoderFactory
    except ModuleNotFoundError:  # pragma: no cover - the extra is part of dev
        raise MimicDataError("reading MCAP needs the mcap extra: pip install 'mimicdata[mcap]'") from None
    return DecoderFactory()


def _new_topic(schema: Any, channel: Any, factory: Any, topics: dict[int, _Topic], joint_names: list[str]) -> _Topic:
    kind = schema.name if schema is not None else ""
    topic = _Topic(channel.topic, kind, stream_name(channel.topic, {t.name for t in topics.values()}))
    if kind == JOINT_STATE:
        topic.joints = JointOrder(joint_names, channel.topic)
    try:
        topic.decode = factory.decoder_for(channel.message_encoding, schema)
    except Exception as exc:  # a schema text the ROS 2 parser rejects
        topic.skipped = f"its schema cannot be parsed ({type(exc).__name__}: {exc})"
    else:
        if topic.decode is None:
            topic.skipped = f"not a ROS 2 (CDR) topic (message encoding {channel.message_encoding!r})"
    return topic


def _messages(src: Path) -> Iterator[tuple[Any, Any, Any]]:
    """(schema, channel, message) in log-time order; any reading failure becomes one McapFormatError."""
    _decoder_factory()  # the extra is there
    from mcap.reader import make_reader

    try:
        with open(src, "rb") as f:
            head = f.read(len(MAGIC))
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - len(MAGIC)))
            tail = f.read()
            if head != MAGIC:
                raise McapFormatError(f"{src}: not an MCAP file (no MCAP magic at the start)")
            if tail != MAGIC:
                raise McapFormatError(f"{src}: truncated MCAP bag ({size} bytes, no footer at the end); the recording "
                                      "was cut off (`mcap recover` can salvage the complete chunks)")
            f.seek(0)
            reader = make_reader(f, validate_crcs=True)
            yield from reader.iter_messages(log_time_order=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{src} does not exist") from None
    except Exception as exc:  # McapError, CRC, decompression and struct errors come as many types
        if isinstance(exc, MimicDataError):
            raise
        raise McapFormatError(f"{src}: corrupted MCAP bag: {type(exc).__name__}: {exc}") from None


def convert(src: str | Path, dst: str | Path, *, overwrite: bool = False, robot: str = "g1_29dof",
            batch_rows: int = BATCH_ROWS) -> ConvertReport:
    """Import the ROS 2 bag `src` into a new store at `dst` (see the module docstring)."""
    import mimicdata as md
    from mimicdata.storage import parse_url

    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist")
    loc = parse_url(dst)
    target = loc.url
    if loc.kind == "local":
        assert loc.path is not None
        if loc.path.exists() and (not loc.path.is_dir() or any(loc.path.iterdir())):
            if not overwrite:
                raise StoreExistsError(f"{loc.path} already exists; pass overwrite=True (--overwrite) to replace it")
            if not (loc.path / "zarr.json").is_file():
                raise StoreExistsError(f"refusing to overwrite {loc.path}: it is not a Zarr store")
        target = str(loc.path.with_name(loc.path.name + ".partial"))
    store = md.create(target, None, robot=robot, overwrite=overwrite or loc.kind == "local",
                      attrs={"mcap": {"source": str(src)}})
    topics: dict[int, _Topic] = {}
    try:
        joint_names = list(store.robot.joint_names) if store.robot else []
        factory = _decoder_factory()
        for number, (schema, channel, message) in enumerate(_messages(src)):
            topic = topics.get(channel.id)
            if topic is None:
                topic = topics[channel.id] = _new_topic(schema, channel, factory, topics, joint_names)
            if topic.skipped:
                continue
            try:
                decoded = topic.decode(message.data)
            except Exception as exc:  # CDR decoding errors come as many types
                raise McapFormatError(f"{src}: corrupted MCAP bag: message {number} on {channel.topic} cannot be "
                                      f"decoded as {topic.type} ({type(exc).__name__}: {exc})") from None
            topic.rows.append(_row(topic, decoded, message.log_time, number))
            if len(topic.rows) >= batch_rows:
                _flush(store, topic)
        for topic in topics.values():
            _flush(store, topic)
        report = _report(src, dst, topics, joint_names)
        store.update_attrs({"mcap": {"source": str(src), "topics": report.details["topics"],
                                     "skipped": report.details["skipped"]}})
        store.close()
    except BaseException:
        _discard(store)
        raise
    if loc.kind == "local":
        assert loc.path is not None
        if loc.path.exists():
            shutil.rmtree(loc.path)
        Path(target).rename(loc.path)
    return report


def _report(src: Path, dst: str | Path, topics: dict[int, _Topic], joint_names: list[str]) -> ConvertReport:
    report = ConvertReport(str(src), str(dst), "mcap")
    report.details["topics"] = {}
    report.details["skipped"] = {}
    for t in topics.values():
        if t.skipped:
            report.details["skipped"][t.topic] = f"{t.type}: {t.skipped}"
            continue
        report.rows[t.name] = t.written
        info: dict[str, Any] = {"stream": t.name, "type": t.type, "messages": t.written, "fps": t.fps}
        if t.left_out:
            info["fields_left_out"] = t.left_out
        if t.joints is not None:
            info["joints_missing"] = [n for n in joint_names if n not in t.joints.seen]
        report.details["topics"][t.topic] = info
    return report


def _discard(store: Any) -> None:
    """Delete the store of a failed import (best effort: the error being raised matters more)."""
    try:
        store.close()
        if store.location.kind == "local":
            shutil.rmtree(store.location.path, ignore_errors=True)
        else:
            from zarr.core.sync import sync

            sync(store.zstore.clear())
    except Exception:  # cleanup must not hide the original error
        pass
