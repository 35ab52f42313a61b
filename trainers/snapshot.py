"""Replay buffers to and from mimicdata stores.

* :func:`save_buffer` writes a buffer's committed entries, their priorities, beta and counters into
  a custom stream of a store; :func:`load_buffer` rebuilds the buffer exactly (same slots, same
  priorities, same random-generator state, so the next ``sample`` draws what the original would).
* :func:`buffer_from_store` fills a buffer with transitions ``(frame t, frame t+1)`` taken from a
  stream's committed rows, never across a segment (clip or episode) boundary.

A snapshot is one stream with a row per stored entry (``slot``, ``priority``, ``leaf`` and one
column per buffer field) plus an entry under the store attribute ``replay_snapshots`` holding the
scalars. The attribute is written last: it is the commit mark, and a snapshot without it (a crash
while writing rows) is refused on load.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mimicdata.errors import ConfigError, StateError, ValidationError

from .buffer_state import BufferState, PrioritySettings, raw_priorities
from .per import RESERVED_KEYS, ExperienceBuffer, PrioritizedExperienceBuffer

if TYPE_CHECKING:
    import mimicdata as md

__all__ = ["SNAPSHOT_ATTR", "buffer_from_store", "load_buffer", "save_buffer", "transition_errors"]

SNAPSHOT_ATTR = "replay_snapshots"
SNAPSHOT_FORMAT = 1
_BOOKKEEPING = ("slot", "priority", "leaf")
_WRITE_ROWS = 65536  # rows per append: bounds the memory of one numpy copy
_TORCH_TO_DTYPE = {"float16": "float16", "float32": "float32", "float64": "float64", "int8": "int8",
                   "int16": "int16", "int32": "int32", "int64": "int64", "uint8": "uint8", "bool": "bool"}


def _open_for_write(target: str | Path | md.Store, overwrite: bool) -> tuple[md.Store, bool]:
    import mimicdata as md

    if isinstance(target, md.Store):
        return target, False
    return md.create(target, None, overwrite=overwrite), True


def _open_for_read(source: str | Path | md.Store) -> tuple[md.Store, bool]:
    import mimicdata as md

    if isinstance(source, md.Store):
        return source, False
    return md.open(source, mode="r"), True


def save_buffer(
    buffer: ExperienceBuffer, target: str | Path | md.Store, name: str = "replay", *, overwrite: bool = False
) -> None:
    """Write ``buffer`` into stream ``name`` of ``target`` (a store open for append, or a new store URL).

    Raises:
        mimicdata.errors.StateError: a row is half recorded (call ``inc()`` first).
        mimicdata.ValidationError: a field dtype has no store dtype.
        mimicdata.SchemaError: the store already has a stream called ``name``.
    """
    import torch

    state = buffer.state()
    if state.recorded:
        raise StateError(f"save_buffer: row {state.head} is half recorded ({list(state.recorded)}); "
                         "call inc() before saving")
    fields = buffer.fields
    clash = sorted(set(fields) & set(_BOOKKEEPING))
    if clash:
        raise ValidationError(f"save_buffer: buffer fields {clash} clash with snapshot columns {list(_BOOKKEEPING)}")
    spec: dict[str, dict[str, Any]] = {
        "slot": {"dtype": "int64", "shape": [], "unit": "slot", "description": "row * batch_size + env"},
        "priority": {"dtype": "float64", "shape": [], "unit": "1", "description": "p = |error| + epsilon"},
        "leaf": {"dtype": "float64", "shape": [], "unit": "1", "description": "p ** alpha (sum-tree leaf)"},
    }
    for field, (shape, dtype) in fields.items():
        key = str(dtype).removeprefix("torch.")
        if key not in _TORCH_TO_DTYPE:
            raise ValidationError(f"save_buffer: field {field!r} has dtype {dtype}, which a store cannot hold")
        spec[field] = {"dtype": _TORCH_TO_DTYPE[key], "shape": list(shape), "unit": "",
                       "description": "replay buffer field", "allow_nan": key.startswith("float")}
    store, owned = _open_for_write(target, overwrite)
    try:
        stream = store.add_stream(name, fields=spec)
        count, prio = state.committed, state.priority  # not half recorded: the committed slots are 0..count-1
        flat = {f: s.reshape(state.capacity, *s.shape[2:]) for f, s in state.storage.items()}
        for start in range(0, count, _WRITE_ROWS):
            slots = torch.arange(start, min(count, start + _WRITE_ROWS), device=buffer.device)
            batch = {f: t.index_select(0, slots).cpu().numpy() for f, t in flat.items()}
            if prio is not None:
                leaf = prio.leaves.index_select(0, slots)
                priority = raw_priorities(leaf, prio.alpha)
            else:
                leaf = priority = torch.ones(slots.numel(), dtype=torch.float64)
            batch.update(slot=slots.cpu().numpy(), leaf=leaf.cpu().numpy(), priority=priority.cpu().numpy())
            stream.append(batch)
        assert state.rng is not None
        scalars = {
            "format": SNAPSHOT_FORMAT, "kind": state.kind, "rows": count, "buffer_len": state.buffer_len,
            "batch_size": state.batch_size, "head": state.head, "total_samples": state.total_samples,
            "rng": base64.b64encode(state.rng.numpy().tobytes()).decode("ascii"),
        }
        if prio is not None:
            scalars.update(alpha=prio.alpha, beta=prio.beta, beta_increment=prio.beta_increment,
                           epsilon=prio.epsilon, sample_calls=prio.sample_calls, fanout=prio.fanout)
        snapshots = dict(store.attrs.get(SNAPSHOT_ATTR, {}))
        snapshots[name] = scalars
        store.update_attrs({SNAPSHOT_ATTR: snapshots})  # the commit mark: written last
    finally:
        if owned:
            store.close()


def load_buffer(
    source: str | Path | md.Store, name: str = "replay", *, device: str = "cpu"
) -> ExperienceBuffer | PrioritizedExperienceBuffer:
    """Rebuild the buffer saved by :func:`save_buffer` as stream ``name`` of ``source``."""
    import torch

    store, owned = _open_for_read(source)
    try:
        scalars = store.attrs.get(SNAPSHOT_ATTR, {}).get(name)
        if scalars is None:
            raise StateError(f"{store.location}: no replay snapshot {name!r} (attribute {SNAPSHOT_ATTR!r} "
                             f"lists {sorted(store.attrs.get(SNAPSHOT_ATTR, {}))}); an unfinished save is not loaded")
        if int(scalars.get("format", 0)) != SNAPSHOT_FORMAT:
            raise StateError(f"{store.location}: snapshot {name!r} has format {scalars.get('format')}, "
                             f"this code reads {SNAPSHOT_FORMAT}")
        stream = store[name]
        rows = int(scalars["rows"])
        if stream.num_rows != rows:
            raise StateError(f"{store.location} {name}: {stream.num_rows} rows stored, snapshot says {rows}")
        buffer_len, batch_size = int(scalars["buffer_len"]), int(scalars["batch_size"])
        capacity = buffer_len * batch_size
        slots = torch.from_numpy(stream.read("slot"))
        if rows and (int(slots.min()) < 0 or int(slots.max()) >= capacity or torch.unique(slots).numel() != rows):
            raise StateError(f"{store.location} {name}: slot column is not {rows} distinct slots in [0, {capacity})")

        def scattered(values: np.ndarray) -> torch.Tensor:  # snapshot rows -> their slots, zeros elsewhere
            values_t = torch.from_numpy(np.ascontiguousarray(values))
            out = torch.zeros((capacity, *values_t.shape[1:]), dtype=values_t.dtype)
            return out.index_copy_(0, slots, values_t)

        storage = {f: scattered(stream.read(f)).view(buffer_len, batch_size, *stream.shape_of(f))
                   for f in stream.fields if f not in _BOOKKEEPING}
        priority = None
        if scalars.get("kind") == "PrioritizedExperienceBuffer":
            priority = PrioritySettings(float(scalars["alpha"]), float(scalars["beta"]),
                                        float(scalars["beta_increment"]), float(scalars["epsilon"]),
                                        int(scalars["sample_calls"]), scattered(stream.read("leaf")),
                                        int(scalars["fanout"]))
        rng = torch.from_numpy(np.frombuffer(base64.b64decode(scalars["rng"]), dtype=np.uint8).copy())
        state = BufferState(str(scalars.get("kind")), buffer_len, batch_size, int(scalars["head"]),
                            int(scalars["total_samples"]), storage, rng, priority=priority)
        return ExperienceBuffer.from_state(state, device)
    finally:
        if owned:
            store.close()


def buffer_from_store(
    source: str | Path | md.Store,
    stream: str = "frames",
    fields: Sequence[str] | None = None,
    *,
    next_state: bool = True,
    capacity: int | None = None,
    prioritized: bool = True,
    device: str = "cpu",
    seed: int | None = None,
    **per_kwargs: Any,
) -> ExperienceBuffer:
    """A buffer holding one transition per consecutive pair of rows of ``stream`` inside a segment.

    Each entry has the chosen ``fields`` at row ``t`` and, with ``next_state``, ``next_<field>`` at row
    ``t + 1``, plus ``segment`` (segment number) and ``row`` (source row ``t``). A stream without a
    segment table is one segment. String fields are not supported (store codes are not features).
    ``capacity`` (default: all transitions) keeps the newest entries, like a ring buffer would.

    Raises:
        ValueError: a named field is missing or a string, or the stream yields no transition.
    """
    import torch

    import mimicdata as md

    store, owned = _open_for_read(source)
    try:
        src = store[stream]
        names = list(fields) if fields is not None else list(src.fields)
        where = f"{store.location} {stream}"
        for f in names:
            if f not in src.fields:
                raise ValueError(f"{where}: no field {f!r}; fields: {src.fields}")
            if src.field_spec(f).dtype == "string":
                raise ValueError(f"{where}.{f}: string fields cannot go into a replay buffer")
            if f in RESERVED_KEYS or f in ("segment", "row") or f.startswith("next_"):
                raise ValueError(f"{where}.{f}: name collides with a buffer column; pick other fields")
        # windows of 2 rows (t, t + 1) inside one segment: the data path's window index and bulk reads
        try:
            windows = md.WindowDataset(store, fields=names, stream=stream, window=2 if next_state else 1)
        except md.ValidationError as exc:
            raise ValueError(f"{where}: no segment has enough rows to form a transition ({exc})") from None
        batch = windows.gather(np.arange(len(windows)), windows.load())
        windows.close()
        rows = windows.segments[batch["segment"], 0] + batch["frame"]
        data: dict[str, torch.Tensor] = {"segment": torch.from_numpy(batch["segment"]),
                                         "row": torch.from_numpy(rows)}
        for f in names:
            data[f] = torch.from_numpy(np.ascontiguousarray(batch[f][:, 0]))
            if next_state:
                data[f"next_{f}"] = torch.from_numpy(np.ascontiguousarray(batch[f][:, 1]))
    finally:
        if owned:
            store.close()
    n = int(rows.size)
    length = n if capacity is None else capacity
    cls = PrioritizedExperienceBuffer if prioritized else ExperienceBuffer
    buffer = cls(length, 1, device=device, seed=seed, **per_kwargs)
    buffer.extend(data)
    return buffer


def transition_errors(batch: dict[str, Any], signal: str = "constant_velocity", dt: float | None = None) -> Any:
    """A per-transition error signal for batches drawn from a :func:`buffer_from_store` buffer.

    * ``"constant_velocity"``: how far the next joint angles are from a constant-velocity prediction,
      ``|q[t+1] - (q[t] + qdot[t] * dt)|`` over the joints (``qpos[7:]``, ``qvel[6:]``; rad). Needs
      ``dt`` (1 / fps) and the ``qpos``/``qvel`` fields with their ``next_`` versions.
    * ``"delta:<field>"``: ``|field[t+1] - field[t]|`` (L2 over the field's values).

    Returns a float64 tensor with one error per entry.
    """
    import torch

    if signal == "constant_velocity":
        missing = [k for k in ("qpos", "qvel", "next_qpos") if k not in batch]
        if missing:
            raise ValidationError(f"signal 'constant_velocity' needs fields {missing} (build with fields qpos, qvel)")
        if dt is None or not dt > 0:
            raise ValidationError(f"signal 'constant_velocity' needs dt > 0, got {dt!r}")
        q, qd, q_next = (batch[k].to(torch.float64) for k in ("qpos", "qvel", "next_qpos"))
        return torch.linalg.vector_norm(q_next[:, 7:] - q[:, 7:] - qd[:, 6:] * dt, dim=1)
    if signal.startswith("delta:"):
        field = signal.removeprefix("delta:")
        if field not in batch or f"next_{field}" not in batch:
            raise ValidationError(f"signal {signal!r} needs fields {field!r} and 'next_{field}' in the buffer")
        diff = batch[f"next_{field}"].to(torch.float64) - batch[field].to(torch.float64)
        return torch.linalg.vector_norm(diff.reshape(diff.shape[0], -1), dim=1)
    raise ConfigError(f"unknown error signal {signal!r}: use 'constant_velocity' or 'delta:<field>'")
