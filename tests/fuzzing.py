"""Shared pieces of the fuzz tests: corruptions of valid files, and the one outcome allowed.

Every reader, given a truncated or corrupted file, must either return a correct result or raise one
:class:`mimicdata.MimicDataError`; any other exception, or a hang, fails the test. The generated cases
are derandomised (the same 1000 inputs on every run), so CI is reproducible.

Hypothesis draws one 64-bit seed per case and the damage is derived from it with numpy's generator:
drawing structured lists through Hypothesis cost ~3x the reads themselves, and the suite's time budget
holds 1000 cases per reader only this way. A failure prints the seed, which replays the same damage.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from mimicdata.errors import MimicDataError

T = TypeVar("T")

# MIMICDATA_FUZZ_EXAMPLES lowers the count while developing; CI runs the default.
_PHASES = (Phase.explicit, Phase.generate) if os.environ.get("MIMICDATA_FUZZ_NO_SHRINK") else tuple(Phase)
FUZZ = settings(max_examples=int(os.environ.get("MIMICDATA_FUZZ_EXAMPLES", "1000")), deadline=None,
                derandomize=True, database=None, phases=_PHASES, report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
HANG_S = 120  # far above any honest read of these small files, even on a loaded machine

seeds = st.integers(min_value=0, max_value=2**63 - 1)

_BYTE_OPS = ("truncate", "flip", "zero", "insert", "delete", "repeat")
_TEXT_VALUES = ("nan", "inf", "-inf", "1e400", "", "x", "0", "-1", "1e-320", "NaN,", "\x00", "9" * 30)
_TEXT_OPS = ("number", "drop_line", "swap_lines", "dup_line", "truncate", "flip")
_ARRAY_OPS = ("nan", "inf", "drop", "empty", "scalar", "extra_dim", "cut_axis", "strings", "swap", "int", "huge")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def random_byte_ops(rng: np.random.Generator) -> list[tuple[str, int, bytes]]:
    """One to three byte-level damages (see :func:`corrupt_bytes`)."""
    return [(_pick(rng, _BYTE_OPS), int(rng.integers(1 << 30)), rng.bytes(int(rng.integers(1, 7))))
            for _ in range(int(rng.integers(1, 4)))]


def random_text_ops(rng: np.random.Generator) -> list[tuple[str, int, int, str]]:
    """One to three line/token-level damages (see :func:`corrupt_text`)."""
    return [(_pick(rng, _TEXT_OPS), int(rng.integers(1 << 30)), int(rng.integers(1 << 30)), _pick(rng, _TEXT_VALUES))
            for _ in range(int(rng.integers(1, 4)))]


def random_array_ops(rng: np.random.Generator) -> list[tuple[str, int, int]]:
    """One to three array-level damages (see :func:`corrupt_arrays`)."""
    return [(_pick(rng, _ARRAY_OPS), int(rng.integers(1 << 30)), int(rng.integers(1 << 30)))
            for _ in range(int(rng.integers(1, 4)))]


def corrupt_bytes(data: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    """Apply byte-level damage: cut at an offset, flip/zero/insert/delete/repeat bytes."""
    out = bytearray(data)
    for op, pos, payload in ops:
        if not out:
            break
        i = pos % len(out)
        if op == "truncate":
            del out[i:]
        elif op == "flip":
            out[i] ^= payload[0] or 0xFF
        elif op == "zero":
            out[i:i + len(payload) * 4] = bytes(len(out[i:i + len(payload) * 4]))
        elif op == "insert":
            out[i:i] = payload
        elif op == "delete":
            del out[i:i + payload[0] % 64 + 1]
        else:  # repeat a stretch, as a writer that retried a block would
            out[i:i] = out[i:i + payload[0] % 64 + 1]
    return bytes(out)


def corrupt_text(text: str, ops: list[tuple[str, int, int, str]]) -> str:
    """Apply line/token-level damage: a number replaced (NaN, inf, overflow, junk), lines dropped,
    swapped or repeated, a cut mid-line, a character changed."""
    lines = text.split("\n")
    for op, a, b, value in ops:
        if not lines:
            break
        i, j = a % len(lines), b % len(lines)
        if op == "number":
            tokens = lines[i].replace(",", " , ").split(" ")
            numeric = [k for k, t in enumerate(tokens) if t.strip().lstrip("-").replace(".", "", 1).isdigit()]
            if numeric:
                tokens[numeric[b % len(numeric)]] = value
                lines[i] = " ".join(tokens).replace(" , ", ",")
        elif op == "drop_line":
            del lines[i]
        elif op == "swap_lines":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "dup_line":
            lines.insert(i, lines[j])
        elif op == "truncate":
            joined = "\n".join(lines)
            lines = joined[:a % (len(joined) + 1)].split("\n")
        else:
            line = lines[i]
            if line:
                k = b % len(line)
                lines[i] = line[:k] + (value[:1] or "#") + line[k + 1:]
    return "\n".join(lines)


def corrupt_arrays(arrays: dict[str, np.ndarray], ops: list[tuple[str, int, int]]) -> dict[str, np.ndarray]:
    """Array-level damage for .npy/.npz content: wrong shapes, NaNs, wrong dtypes, missing or empty arrays."""
    out = dict(arrays)
    for op, a, b in ops:
        if not out:
            break
        keys = sorted(out)
        key = keys[a % len(keys)]
        arr = np.asarray(out[key])
        if op == "drop":
            del out[key]
        elif op == "swap":
            other = keys[b % len(keys)]
            out[key], out[other] = out[other], out[key]
        elif op == "empty":
            out[key] = arr[:0] if arr.ndim else np.zeros(0)
        elif op == "scalar":
            out[key] = np.asarray(arr.reshape(-1)[0] if arr.size else 0)
        elif op == "extra_dim":
            out[key] = arr[..., None]
        elif op == "cut_axis" and arr.ndim:
            axis = b % arr.ndim
            out[key] = np.take(arr, range(max(arr.shape[axis] - 1 - b % 3, 0)), axis=axis)
        elif op == "strings":
            out[key] = arr.astype(str) if arr.size else np.array(["x"])
        elif op == "int" and arr.dtype.kind == "f":
            out[key] = np.nan_to_num(arr * 1000).astype(np.int64)
        elif op in ("nan", "inf", "huge") and arr.dtype.kind == "f" and arr.size:
            flat = arr.astype(np.float64).reshape(-1).copy()
            flat[b % flat.size] = {"nan": np.nan, "inf": np.inf, "huge": 1e300}[op]
            out[key] = flat.reshape(arr.shape)
    return out


class Hang(Exception):
    """A reader ran for HANG_S seconds on a small file."""


@contextmanager
def no_hang(seconds: int = HANG_S) -> Iterator[None]:
    """Fail a read that runs for ``seconds``; the timer of pytest-timeout (also SIGALRM) is put back after."""
    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    began = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - began), 1e-3))


def clear_outcome(read: Callable[[], T]) -> T | None:
    """The reader's result, or None when it raised a MimicDataError; anything else propagates and fails."""
    with no_hang():
        try:
            return read()
        except MimicDataError as exc:
            assert str(exc).strip(), "an error must say what is wrong"
            return None
