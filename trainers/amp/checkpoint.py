"""Checkpoints: one ``.npz`` per save, written to a temporary name and renamed (a crash never leaves half
a file). It holds the whole train state (resume continues exactly where the run stopped), the policy
alone (what evaluation loads, without the expert store) and a JSON header (config, iteration, seed)."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mimicdata.errors import CorruptStoreError, MimicDataError, ValidationError


class CheckpointNotFoundError(MimicDataError, FileNotFoundError):
    """No checkpoint where one was asked for (a path, or a run folder to resume)."""

BEST = "amp_ppo_best.npz"
_INTERVAL = re.compile(r"amp_ppo_(\d{6,})\.npz$")


def interval_name(iteration: int) -> str:
    return f"amp_ppo_{iteration:06d}.npz"


def save(path: Path, meta: dict[str, Any], state: Any, policy: Any) -> Path:
    arrays = {f"state/{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(jax.device_get(state)))}
    arrays.update({f"policy/{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(jax.device_get(policy)))})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read(path: str | Path) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """(meta, {"state": leaves, "policy": leaves}); one clear error for a missing or damaged file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path) as npz:
            meta = json.loads(bytes(npz["meta"]).decode())
            groups: dict[str, list[np.ndarray]] = {"state": [], "policy": []}
            for key in sorted(k for k in npz.files if "/" in k):
                groups[key.split("/")[0]].append(npz[key])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptStoreError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from None
    return meta, groups


def restore(template: Any, leaves: list[np.ndarray], what: str) -> Any:
    """`leaves` in the structure of `template` (arrays or ShapeDtypeStructs), shapes checked."""
    flat, treedef = jax.tree.flatten(template)
    if len(flat) != len(leaves) or any(tuple(t.shape) != tuple(x.shape) for t, x in zip(flat, leaves, strict=False)):
        raise ValidationError(f"the checkpoint's {what} does not match this configuration (different networks, "
                              f"robot, number of environments or devices)")
    return jax.tree.unflatten(treedef, [np.asarray(x, dtype=t.dtype) for t, x in zip(flat, leaves, strict=True)])


def newest_interval(out_dir: Path) -> Path | None:
    found = sorted((int(m.group(1)), p) for p in out_dir.glob("amp_ppo_*.npz") if (m := _INTERVAL.search(p.name)))
    return found[-1][1] if found else None


def prune(out_dir: Path, keep: int) -> None:
    found = sorted((int(m.group(1)), p) for p in out_dir.glob("amp_ppo_*.npz") if (m := _INTERVAL.search(p.name)))
    for _, path in found[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)
