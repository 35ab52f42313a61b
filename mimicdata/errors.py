"""Errors raised by mimicdata.

Every error is a :class:`MimicDataError` and also the builtin a caller would naturally catch
(a missing store is a ``FileNotFoundError``, a bad batch a ``ValueError``), so code that does not know
mimicdata still handles them sensibly. Messages name the store, stream, field and row concerned.
"""

from __future__ import annotations


class MimicDataError(Exception):
    """Base class of every mimicdata error."""


class SchemaError(MimicDataError, ValueError):
    """A schema document, or a store's metadata, does not follow the schema language."""


class SchemaVersionError(SchemaError):
    """A store was written with a schema version this mimicdata cannot read or write."""


class ValidationError(MimicDataError, ValueError):
    """Data handed to a writer does not match the stream's schema (unknown field, shape, dtype, NaN)."""


class StoreExistsError(MimicDataError, FileExistsError):
    """Creating a store where something already exists, without ``overwrite=True``."""


class StoreNotFoundError(MimicDataError, FileNotFoundError):
    """No mimicdata store at the given location."""


class StoreLockedError(MimicDataError, RuntimeError):
    """Another live writer holds the store."""


class ReadOnlyError(MimicDataError, PermissionError):
    """Writing to a store opened read-only, or to a location that cannot be written."""


class CorruptStoreError(MimicDataError, OSError):
    """Stored bytes or metadata cannot be decoded."""


class ConfigError(MimicDataError, ValueError):
    """A setting is malformed or out of range: a hyperparameter, a task file value, an unknown option name."""


class StateError(MimicDataError, ValueError):
    """A saved or live state does not allow the operation: a snapshot or sampler state that is missing,
    of another class or inconsistent with its store; a buffer sampled while empty or half recorded."""


class OutOfRangeError(MimicDataError, IndexError):
    """An index outside a buffer, tree or clip."""


class StorageWriteError(MimicDataError, OSError):
    """The storage refused a write (I/O error); rows committed before it stay readable."""


class StorageFullError(StorageWriteError):
    """The disk or quota is full; rows committed before it stay readable."""


_READ_ONLY_ERRNOS = frozenset({13, 1, 30})  # EACCES, EPERM, EROFS
_FULL_ERRNOS = frozenset({28, 122})  # ENOSPC, EDQUOT


def storage_error(exc: OSError, what: str) -> MimicDataError:
    """The project's error for an ``OSError`` met while writing ``what`` (a mimicdata error passes through).

    Read-only file systems and denied permissions become :class:`ReadOnlyError`, a full disk
    :class:`StorageFullError`, anything else :class:`StorageWriteError`; the message names the OS reason.
    """
    if isinstance(exc, MimicDataError):
        return exc
    reason = exc.strerror or str(exc)
    error: MimicDataError
    if exc.errno in _READ_ONLY_ERRNOS:
        error = ReadOnlyError(f"{what}: {reason} (read-only location?)")
    elif exc.errno in _FULL_ERRNOS:
        error = StorageFullError(f"{what}: {reason}; what was committed before stays readable")
    else:
        error = StorageWriteError(f"{what}: {reason}")
    error.errno = exc.errno  # type: ignore[attr-defined]  # callers may still test errno.ENOSPC
    return error
