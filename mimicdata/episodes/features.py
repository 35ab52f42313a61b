"""Per-frame features of an episodes store, declared the way LeRobot declares them.

A feature is what LeRobot's ``features`` dict holds for one key: ``dtype`` (a numeric dtype, ``bool``,
``string``, ``image`` or ``video``), ``shape`` and ``names`` (plus ``info`` for videos). An episodes store
keeps each feature in one field of its ``frames`` stream:

- numeric and bool vectors of any shape as they are (LeRobot's ``[1]`` scalars as scalar fields);
- ``image`` and ``video`` as uint8 ``(height, width, channels)`` frames, one chunk per frame (a video is
  decoded on import and encoded again on export; ``info`` keeps its codec settings);
- ``string`` as category codes.

The field is named like the feature (``observation.state``, ``observation.images.head``), except for
stores written before episodes v1.1 and the recorder's short declarations (``state=``, ``cameras=``),
whose fields are ``state``, ``action`` and ``image.<camera>``: :attr:`Feature.field` says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mimicdata.errors import SchemaError, ValidationError

LEROBOT_DEFAULTS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
NUMERIC = ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
           "uint8", "uint16", "uint32", "uint64", "bool")
VISUAL = ("image", "video")
DTYPES = (*NUMERIC, "string", *VISUAL)
STATE, ACTION, IMAGE_PREFIX = "observation.state", "action", "observation.images."
SHORT_IMAGE_PREFIX = "image."
# frame fields the store fills in itself; a feature may not take these names
RESERVED = ("timestamp", "frame_index", "episode_index", "task", "index", "task_index")
# optional LeRobot features every store accepts undeclared (present in every episode or in none)
OPTIONAL = {"next.reward": ("float32", (1,)), "next.done": ("bool", (1,))}


@dataclass(frozen=True)
class Feature:
    """One per-frame feature. ``shape`` is LeRobot's (``(1,)`` for scalars; ``(H, W, C)`` for images)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    names: Any = None
    info: dict[str, Any] | None = None
    field: str = ""
    required: bool = True
    alias: str | None = None  # short key add_frame also takes (state, action, image.<camera>)

    @property
    def visual(self) -> bool:
        return self.dtype in VISUAL

    @property
    def is_string(self) -> bool:
        return self.dtype == "string"

    @property
    def has_stats(self) -> bool:
        """Statistics are kept for numbers and pixels (LeRobot keeps none for strings)."""
        return self.required and not self.is_string

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one frame's value in the store."""
        if not self.visual and self.shape == (1,):
            return ()
        return self.shape

    @property
    def storage_dtype(self) -> np.dtype:
        if self.visual:
            return np.dtype(np.uint8)
        return np.dtype(object) if self.is_string else np.dtype(self.dtype)

    def field_doc(self) -> dict[str, Any]:
        """The declaration of this feature's field in the ``frames`` stream."""
        if self.visual:
            return {"dtype": "uint8", "shape": list(self.shape), "unit": "rgb" if self.shape[2] == 3 else "pixel",
                    "required": self.required, "chunk_rows": 1, "codec": "image",
                    "description": f"LeRobot {self.dtype} feature {self.name}, HxWxC uint8 frames."}
        return {"dtype": self.dtype, "shape": list(self.frame_shape), "unit": "mixed", "required": self.required,
                "description": f"LeRobot feature {self.name}."}

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape), "names": self.names,
                               "field": self.field}
        if self.info is not None:
            doc["info"] = self.info
        if not self.required:
            doc["required"] = False
        if self.alias:
            doc["alias"] = self.alias
        return doc

    def lerobot(self) -> dict[str, Any]:
        """This feature as an entry of LeRobot's ``features`` dict."""
        doc: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape), "names": self.names}
        if self.dtype == "video":
            doc["info"] = self.info or {}
        return doc

    # ----------------------------------------------------------------------------------- one frame's value
    def coerce(self, value: Any, where: str) -> np.ndarray:
        """Check one frame's value and return it in the stored dtype and shape; one clear error if bad."""
        key = self.alias or self.field
        if self.visual:
            return self._coerce_image(value, key, where)
        if self.is_string:
            if not isinstance(value, str):
                raise ValidationError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
            return np.asarray(value, dtype=object)
        arr = np.asarray(value)
        if arr.shape != self.frame_shape and arr.size == int(np.prod(self.frame_shape, dtype=np.int64)) \
                and self.frame_shape in ((), (1,)):
            arr = arr.reshape(self.frame_shape)  # LeRobot gives scalars as (1,) arrays
        if arr.shape != self.frame_shape:
            raise ValidationError(f"{where}: {key!r} has shape {arr.shape}, expected {self.frame_shape}")
        if arr.dtype.kind not in "fiub":
            raise ValidationError(f"{where}: {key!r} has dtype {arr.dtype}, expected {self.dtype}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = np.flatnonzero(~np.isfinite(arr.reshape(-1))).tolist()
            raise ValidationError(f"{where}: {key!r} holds NaN/Inf at components {bad}")
        if self.dtype == "bool":
            if arr.dtype.kind != "b" and not np.isin(arr, (0, 1)).all():
                raise ValidationError(f"{where}: {key!r} is a bool feature, got {arr.tolist()}")
            return arr.astype(bool)
        return arr.astype(self.dtype)

    def _coerce_image(self, img: Any, key: str, where: str) -> np.ndarray:
        if not isinstance(img, np.ndarray) and hasattr(img, "mode") and hasattr(img, "size"):
            img = np.asarray(img)  # a PIL image, as LeRobot's add_frame accepts
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
            kind = img.dtype if isinstance(img, np.ndarray) else type(img).__name__
            raise ValidationError(f"{where}: {key!r} has dtype {kind}; images must be uint8 HxWxC "
                                  f"(convert floats in [0, 1] with (img * 255).round().astype(np.uint8))")
        h, w, c = self.shape
        if img.ndim == 2 and c == 1:
            img = img[:, :, None]
        if img.shape == (c, h, w) and (c, h, w) != (h, w, c):
            img = np.moveaxis(img, 0, -1)  # channels first, as torch tensors are
        if img.shape != (h, w, c):
            raise ValidationError(f"{where}: {key!r} has shape {img.shape}, the camera is declared {(h, w, c)}")
        return img


# ------------------------------------------------------------------------------------------ declaration
def _shape(name: str, doc: Mapping[str, Any]) -> tuple[int, ...]:
    shape = doc.get("shape")
    if isinstance(shape, int):
        shape = [shape]
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape):
        raise SchemaError(f"feature {name!r}: shape must be a list of positive integers, got {shape!r}")
    return tuple(int(d) for d in shape)


def feature_from_lerobot(name: str, doc: Mapping[str, Any], *, field_name: str | None = None,
                         required: bool = True, alias: str | None = None) -> Feature:
    """A :class:`Feature` from one entry of LeRobot's ``features`` dict; a clear error naming anything bad."""
    if not name or "/" in name or name.startswith((".", "_")):
        raise SchemaError(f"feature name {name!r} is not allowed (no '/', no leading '.' or '_')")
    if name in RESERVED:
        raise SchemaError(f"feature {name!r}: the store fills in {name!r} itself; do not declare it")
    if not isinstance(doc, Mapping):
        raise SchemaError(f"feature {name!r}: expected a mapping with dtype and shape, got {type(doc).__name__}")
    dtype = doc.get("dtype")
    if dtype not in DTYPES:
        raise SchemaError(f"feature {name!r} has dtype {dtype!r}, which an episodes store cannot hold "
                          f"(known: {', '.join(DTYPES)})")
    shape = _shape(name, doc)
    names = doc.get("names")
    if dtype in VISUAL:
        if len(shape) != 3:
            raise SchemaError(f"feature {name!r}: {dtype} shape must be (height, width, channels), got {shape}")
        if isinstance(names, list) and len(names) == 3 and str(names[0]).startswith("channel"):
            shape, names = (shape[1], shape[2], shape[0]), ["height", "width", "channels"]
        if shape[2] not in (1, 3, 4) or (dtype == "video" and shape[2] != 3):
            raise SchemaError(f"feature {name!r}: {shape[2]} channels; images take 1, 3 or 4, videos 3")
    if dtype == "string" and shape != (1,):
        raise SchemaError(f"feature {name!r}: a string feature holds one string per frame (shape [1]), got {shape}")
    info = dict(doc["info"]) if isinstance(doc.get("info"), Mapping) else None
    return Feature(name, str(dtype), shape, names, info, field_name or name, required, alias)


def parse_features(features: Mapping[str, Mapping[str, Any]]) -> dict[str, Feature]:
    """LeRobot's ``features`` dict as it is (its timestamp/frame_index/... entries are skipped: the store
    keeps those itself)."""
    if not isinstance(features, Mapping):
        raise SchemaError(f"features must be a mapping of name -> {{dtype, shape, names}}, got "
                          f"{type(features).__name__}")
    out = {}
    for name, doc in features.items():
        if name in LEROBOT_DEFAULTS:
            continue
        out[name] = feature_from_lerobot(str(name), doc)
    return out


def feature_from_doc(name: str, doc: Mapping[str, Any]) -> Feature:
    """A feature as kept in the store's recording attributes (see :meth:`Feature.to_doc`)."""
    return feature_from_lerobot(name, doc, field_name=doc.get("field") or name,
                                required=bool(doc.get("required", True)), alias=doc.get("alias"))


def optional_features(declared: Mapping[str, Feature]) -> dict[str, Feature]:
    """``next.reward`` / ``next.done`` where not declared: accepted undeclared, in every episode or none."""
    return {name: Feature(name, dtype, shape, None, None, name, False)
            for name, (dtype, shape) in OPTIONAL.items() if name not in declared}
