"""The control-loop side of one logged stream: check a record and copy it into the stream's ring.

This is the only code that runs inside ``log()``. It allocates almost nothing, calls no I/O and takes
no lock another process could hold: a dict-key comparison, one numpy assignment per field, one dot
product per group of floats (NaN/Inf check), two clock reads and a few integer stores.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from mimicdata.errors import ValidationError
from mimicdata.logger.layout import StreamLayout
from mimicdata.logger.ring import H_DROPPED, H_NEXT_SEQ, H_READ, H_WRITE, HEADER_BYTES, Ring

_ndarray = np.ndarray
_time_ns = time.time_ns
_monotonic_ns = time.monotonic_ns
_isfinite = math.isfinite


class Producer:
    """Writes records of one stream into its ring; safe to call from several threads."""

    def __init__(self, layout: StreamLayout, ring: Ring, *, on_full: str = "drop", block_timeout: float = 0.0,
                 blocks: dict[str, tuple[int, int]] | None = None) -> None:
        self.layout = layout
        self.ring = ring
        self.stream = layout.stream
        self.keys = frozenset(layout.field_names)
        self.nkeys = len(self.keys)
        dtype, blocks = ring.dtype, layout.slot_dtype()[1] if blocks is None else blocks
        # (name, byte offset in the slot, bytes, row shape, dtype, view over all slots, is float,
        #  scalar writer: (typed memoryview over the file, log2(itemsize), index in slot) or None)
        self.items = [(f.name, dtype.fields[f.name][1], f.np_dtype.itemsize * math.prod(f.shape),
                       f.shape, f.np_dtype, ring.field(f.name), f.np_dtype.kind == "f",
                       self._scalar_writer(ring, f.np_dtype, dtype.fields[f.name][1]) if f.shape == () else None)
                      for f in layout.fields]
        self.mm = ring.mm
        self.slot_bytes = dtype.itemsize
        self.checks = [ring.block(offset, count, key) for key, (offset, count) in blocks.items()]
        # finite-checked floats outside the two blocks (float16): checked one by one
        self.odd_checks = [f.name for f in layout.fields if f.checked and f.np_dtype.itemsize not in (4, 8)]
        self.header = ring.header
        self.capacity = ring.capacity
        self.mask = ring.mask
        self.lock = threading.Lock()
        self.block = on_full == "block"
        self.block_timeout = float(block_timeout)
        self.write_index = 0
        self.read_cache = 0
        self.next_seq = 0
        self.dropped = 0
        self.closed = False
        # for loaned slots: the ring's field views, a scratch slot for drops, zeros to clear a slot
        self.views = {f.name: ring.field(f.name) for f in layout.fields}
        self.scratch = {f.name: np.zeros((1, *f.shape), f.np_dtype) for f in layout.fields}
        self.zero_slot = bytes(self.slot_bytes)
        self.slot_fields = {name: (offset, nbytes, dtype, shape)
                            for name, offset, nbytes, shape, dtype, *_ in self.items}

    @staticmethod
    def _scalar_writer(ring: Ring, dtype: np.dtype, offset: int) -> tuple[memoryview, int, int] | None:
        """A typed memoryview to store one Python int/float without numpy (int64, float64, float32)."""
        fmt = {"int64": "q", "float64": "d", "float32": "f"}.get(dtype.name)
        if fmt is None or offset % dtype.itemsize:
            return None
        return memoryview(ring.mm).cast(fmt), dtype.itemsize.bit_length() - 1, offset // dtype.itemsize

    def put(self, record: Mapping[str, Any]) -> bool:
        """Copy one record into the ring. False when it was dropped (ring full); raises on a bad record."""
        if len(record) != self.nkeys:  # with every expected key found below, the key sets are equal
            raise self._key_error(record)
        with self.lock:
            if self.closed:
                return False
            w = self.write_index
            if w - self.read_cache >= self.capacity:
                self.read_cache = self.header[H_READ]
                if w - self.read_cache >= self.capacity and not self._wait_for_space(w):
                    self.next_seq += 1  # the gap in sequence numbers is how the writer sees the drop
                    self.header[H_NEXT_SEQ] = self.next_seq
                    self.dropped += 1
                    self.header[H_DROPPED] = self.dropped
                    return False
            slot = w & self.mask
            base = HEADER_BYTES + slot * self.slot_bytes
            mm = self.mm
            for name, offset, nbytes, shape, dtype, view, is_float, scalar in self.items:
                try:
                    value = record[name]
                except (KeyError, TypeError):
                    raise self._key_error(record) from None
                cls = value.__class__
                if cls is _ndarray:
                    if value.dtype is dtype and value.shape == shape:
                        try:  # a raw byte copy: the fastest copy Python has (exact dtype, contiguous)
                            mm[base + offset:base + offset + nbytes] = value
                            continue
                        except (BufferError, ValueError, TypeError):
                            pass  # not C-contiguous: numpy copies it below
                    if value.shape == shape and (is_float or value.dtype.kind in "iub"):
                        view[slot] = value  # numpy converts the dtype
                        continue
                elif shape == () and (cls is int or (cls is float and is_float)):
                    try:
                        if scalar is not None and (cls is float) == is_float:
                            words, shift, index = scalar
                            words[(base >> shift) + index] = value  # no numpy call for a plain number
                        else:
                            view[slot] = value
                        continue
                    except (ValueError, OverflowError, TypeError):
                        raise ValidationError(f"{self.stream}.{name} (record {self.next_seq}): {value!r} does not "
                                              f"fit in {dtype}") from None
                self._assign_checked(name, view, slot, value, shape, is_float)
            for block in self.checks:
                row = block[slot]
                if not _isfinite(row.dot(row)):
                    self._check_finite(slot)  # raises unless the sum of squares merely overflowed
            if self.odd_checks:
                self._check_finite(slot)
            seq = self.next_seq
            word = base >> 3
            header = self.header
            header[word] = seq
            header[word + 1] = _time_ns()
            header[word + 2] = _monotonic_ns()
            self.next_seq = seq + 1
            self.header[H_NEXT_SEQ] = seq + 1
            self.write_index = w + 1
            self.header[H_WRITE] = w + 1  # publish last
        return True

    def loan(self) -> SlotLoan:
        """A context manager lending the next ring slot itself (see :meth:`StreamingLogger.slot`)."""
        return SlotLoan(self)

    def _publish(self, w: int, slot: int) -> None:
        """Make slot ``slot`` (write index ``w``) visible to the writer; the lock is held."""
        for block in self.checks:
            row = block[slot]
            if not _isfinite(row.dot(row)):
                self._check_finite(slot)
        if self.odd_checks:
            self._check_finite(slot)
        seq = self.next_seq
        word = (HEADER_BYTES + slot * self.slot_bytes) >> 3
        header = self.header
        header[word] = seq
        header[word + 1] = _time_ns()
        header[word + 2] = _monotonic_ns()
        self.next_seq = seq + 1
        header[H_NEXT_SEQ] = seq + 1
        self.write_index = w + 1
        header[H_WRITE] = w + 1  # publish last

    # ------------------------------------------------------------------------------- slow paths
    def _wait_for_space(self, w: int) -> bool:
        if not self.block:
            return False
        deadline = time.monotonic() + self.block_timeout
        while time.monotonic() < deadline:
            time.sleep(0.0002)
            self.read_cache = self.header[H_READ]
            if w - self.read_cache < self.capacity:
                return True
        return False

    def _key_error(self, record: Mapping[str, Any]) -> ValidationError:
        if not isinstance(record, Mapping):
            return ValidationError(f"{self.stream}: a record is a dict of field -> value, "
                                   f"got {type(record).__name__}")
        unknown = sorted(set(record) - self.keys)
        missing = sorted(self.keys - set(record))
        parts = []
        if unknown:
            parts.append(f"unknown field(s) {unknown}")
        if missing:
            parts.append(f"missing field(s) {missing}")
        return ValidationError(f"{self.stream}: record {self.next_seq}: {' and '.join(parts)}; every record "
                               f"of this stream carries exactly {sorted(self.keys)} (fixed by its first record)")

    def _assign_checked(self, name: str, view: np.ndarray, slot: int, value: Any, shape: tuple[int, ...],
                        is_float: bool) -> None:
        where = f"{self.stream}.{name} (record {self.next_seq})"
        try:
            arr = np.asarray(value)
        except Exception as exc:  # ragged lists and the like
            raise ValidationError(f"{where}: not an array of numbers ({exc})") from None
        if arr.dtype.kind not in "biuf":
            raise ValidationError(f"{where}: expected numbers, got {arr.dtype} ({type(value).__name__})")
        if arr.shape != shape:
            raise ValidationError(f"{where}: expected shape {shape}, got {arr.shape}")
        if not is_float and arr.dtype.kind == "f":
            raise ValidationError(f"{where}: the field holds integers ({view.dtype}), got {arr.dtype}")
        view[slot] = arr

    def _check_finite(self, slot: int) -> None:
        for f in self.layout.fields:
            if not f.checked:
                continue
            values = self.ring.field(f.name)[slot]
            bad = ~np.isfinite(values)
            if bad.any():
                where = f" at index {tuple(int(i) for i in np.argwhere(bad)[0])}" if values.ndim else ""
                raise ValidationError(f"{self.stream}.{f.name} (record {self.next_seq}): NaN/Inf{where}; "
                                      f"the field does not allow non-finite values")


class SlotRecord:
    """One ring slot lent to the caller: ``rec["joint_pos"]`` is a numpy view into shared memory
    (write it in place: ``rec["joint_pos"][:] = q``), ``rec["counter_step"] = 7`` stores a value (an
    array of the field's exact dtype and shape as one raw byte copy, like ``log()``)."""

    __slots__ = ("_base", "_fields", "_mm", "_views", "slot")

    def __init__(self, views: dict[str, np.ndarray], slot: int, mm: Any = None, base: int = 0,
                 fields: dict[str, tuple[int, int, np.dtype, tuple[int, ...]]] | None = None) -> None:
        self._views = views
        self.slot = slot
        self._mm, self._base, self._fields = mm, base, fields

    def __getitem__(self, name: str) -> np.ndarray:
        view = self._views[name]
        return view[self.slot] if view.ndim > 1 else view[self.slot:self.slot + 1].reshape(())

    def __setitem__(self, name: str, value: Any) -> None:
        if self._mm is not None and value.__class__ is _ndarray:
            offset, nbytes, dtype, shape = self._fields[name]  # type: ignore[index]
            if value.dtype is dtype and value.shape == shape:
                try:
                    start = self._base + offset
                    self._mm[start:start + nbytes] = value
                    return
                except (BufferError, ValueError, TypeError):
                    pass  # not C-contiguous: numpy copies it below
        self._views[name][self.slot] = value

    def keys(self) -> list[str]:
        return list(self._views)


class SlotLoan:
    """``with producer.loan() as rec``: the slot is zeroed on entry, checked (NaN/Inf) and published on
    a clean exit, abandoned when the body raises. With the ring full (drop mode) the body writes into a
    scratch slot that is then discarded and counted as dropped. The stream's lock is held meanwhile."""

    __slots__ = ("dropped", "p", "slot", "w")

    def __init__(self, producer: Producer) -> None:
        self.p = producer

    def __enter__(self) -> SlotRecord:
        p = self.p
        p.lock.acquire()
        try:
            w = p.write_index
            self.dropped = p.closed
            if not p.closed and w - p.read_cache >= p.capacity:
                p.read_cache = p.header[H_READ]
                self.dropped = w - p.read_cache >= p.capacity and not p._wait_for_space(w)
            if self.dropped:
                return SlotRecord(p.scratch, 0)
            self.w, self.slot = w, w & p.mask
            base = HEADER_BYTES + self.slot * p.slot_bytes
            p.mm[base:base + p.slot_bytes] = p.zero_slot  # no stale values of an older record
            return SlotRecord(p.views, self.slot, p.mm, base, p.slot_fields)
        except BaseException:
            p.lock.release()
            raise

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        p = self.p
        try:
            if self.dropped:
                if not p.closed:
                    p.next_seq += 1  # the gap in sequence numbers is how the writer sees the drop
                    p.header[H_NEXT_SEQ] = p.next_seq
                    p.dropped += 1
                    p.header[H_DROPPED] = p.dropped
            elif exc_type is None:
                p._publish(self.w, self.slot)
        finally:
            p.lock.release()
