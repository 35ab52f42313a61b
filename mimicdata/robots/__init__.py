"""Vendored robot models (MJCF + meshes) and their actuator constants.

Robot descriptions themselves (names, limits, gains) live in ``schemas/robots/<name>.json`` and are
loaded by :func:`mimicdata.load_robot`; this package only locates the model files that ship with
mimicdata and, in :mod:`mimicdata.robots.g1`, derives the G1 constants.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

from mimicdata.errors import SchemaError

G1_MJCF = "unitree_g1/g1.xml"

# Robot name -> MJCF path relative to this package. Both G1 variants share one model: the 23-DoF
# robot is the 29-DoF body with six joints held at their default.
_MJCF: dict[str, str] = {"g1_29dof": G1_MJCF, "g1_23dof": G1_MJCF}

__all__ = ["G1_MJCF", "mjcf_path"]


def mjcf_path(robot_name: str) -> Path:
    """Filesystem path of the MJCF that ships with mimicdata for ``robot_name``.

    Works from a source checkout and from an installed wheel (the files are package data).
    Raises :class:`~mimicdata.errors.SchemaError` (a ``ValueError``) for a robot without a
    vendored model, ``FileNotFoundError`` when the package data is missing (a broken install).
    """
    try:
        relpath = _MJCF[robot_name]
    except KeyError:
        known = ", ".join(sorted(_MJCF))
        raise SchemaError(f"no vendored MJCF for robot {robot_name!r}; known: {known}") from None
    resource = files(__name__).joinpath(relpath)
    # Wheels install as plain directories, so as_file yields the real path and stays valid after
    # the context exits; zipped installs are not supported (MuJoCo needs the mesh folder on disk).
    with as_file(resource) as path:
        real = Path(path)
    if not real.is_file():
        raise FileNotFoundError(f"vendored MJCF for {robot_name!r} is missing: {real}")
    return real
