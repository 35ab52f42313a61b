"""What a recording session declares (rate, robot, per-frame features) and the checks made when resuming.

The declaration is kept in the store's user attributes under ``"recording"``: ``fps``, ``robot`` and
``features`` (LeRobot's features dict, each entry with the ``field`` that holds it, see
:mod:`mimicdata.episodes.features`). For readers of stores written before episodes v1.1 it also keeps
the older keys ``state_dim``, ``action_dim``, ``state_names``, ``action_names`` and ``cameras`` where
those features exist; a v1.0 document (only those keys) is read as the features it describes.
Reopening a store for recording compares the stored declaration with the caller's and refuses any
difference, naming each one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mimicdata.episodes.features import (
    ACTION,
    IMAGE_PREFIX,
    SHORT_IMAGE_PREFIX,
    STATE,
    Feature,
    feature_from_doc,
    optional_features,
    parse_features,
)
from mimicdata.errors import SchemaError

RECORDING_ATTR = "recording"
INFO_STREAM = "episode_info"      # per-episode statistics and user metadata (a custom stream)
STATS_ATTR = "dataset_stats"      # dataset statistics, refreshed after every committed episode
OPTIONAL_FRAME_FIELDS = ("next.reward", "next.done")


def _vector(name: str, spec: int | Sequence[str], alias: str) -> Feature:
    if isinstance(spec, bool) or not isinstance(spec, (int, Sequence)) or isinstance(spec, str):
        raise SchemaError(f"{alias}: give a size or a list of names, got {spec!r}")
    if isinstance(spec, int):
        if spec < 1:
            raise SchemaError(f"{alias}: size must be >= 1, got {spec}")
        return Feature(name, "float32", (spec,), None, None, alias, True, alias)
    names = [str(n) for n in spec]
    if not names or len(set(names)) != len(names):
        raise SchemaError(f"{alias}: names must be non-empty and unique, got {names}")
    return Feature(name, "float32", (len(names),), names, None, alias, True, alias)


def _camera(cam: str, hw: Sequence[int]) -> Feature:
    if not cam or "/" in cam or "." in cam:
        raise SchemaError(f"camera name {cam!r}: use letters, digits and '_' (no '.' or '/')")
    if len(hw) not in (2, 3) or (len(hw) == 3 and hw[2] != 3) or min(hw[:2]) < 1:
        raise SchemaError(f"camera {cam!r}: give (height, width) of RGB frames, got {tuple(hw)}")
    short = SHORT_IMAGE_PREFIX + cam
    return Feature(IMAGE_PREFIX + cam, "image", (int(hw[0]), int(hw[1]), 3), ["height", "width", "channels"],
                   None, short, True, short)


@dataclass(frozen=True)
class RecordingConfig:
    """Rate, robot and per-frame features of a recording; frames must match it."""

    fps: float
    robot: str | None
    features: dict[str, Feature]  # declared features, LeRobot name -> Feature, in declaration order

    @classmethod
    def declare(cls, *, fps: float, robot: str | None, state: int | Sequence[str] | None = None,
                action: int | Sequence[str] | None = None, cameras: Mapping[str, Sequence[int]] | None = None,
                features: Mapping[str, Mapping[str, Any]] | None = None) -> RecordingConfig:
        """``features`` is LeRobot's features dict; ``state``/``action``/``cameras`` are the recorder's short
        declarations of ``observation.state``, ``action`` and ``observation.images.<camera>`` (fields
        ``state``, ``action``, ``image.<camera>``)."""
        if not fps or fps <= 0:
            raise SchemaError(f"fps must be positive, got {fps}")
        feats = collect_features(state=state, action=action, cameras=cameras, features=features)
        if not feats:
            raise SchemaError("declare the frames' features: features={...} (LeRobot's dict) or state=/action=")
        return cls(float(fps), robot, feats)

    # ------------------------------------------------------------------------------------ documents
    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"fps": self.fps, "robot": self.robot,
                               "features": {k: f.to_doc() for k, f in self.features.items()}}
        doc.update(self._legacy())
        return doc

    def _legacy(self) -> dict[str, Any]:
        """The v1.0 keys, where their features exist (older mimicdata and scripts read them)."""
        out: dict[str, Any] = {}
        for key, name in (("state", STATE), ("action", ACTION)):
            f = self.features.get(name)
            if f is not None and len(f.shape) == 1:
                out[f"{key}_dim"], out[f"{key}_names"] = f.shape[0], f.names if isinstance(f.names, list) else None
        out["cameras"] = {k[len(IMAGE_PREFIX):]: list(f.shape[:2]) for k, f in self.features.items()
                          if f.visual and k.startswith(IMAGE_PREFIX)}
        return out

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> RecordingConfig:
        try:
            fps, robot = float(doc["fps"]), doc.get("robot")
            if "features" in doc:
                feats = {str(k): feature_from_doc(str(k), v) for k, v in doc["features"].items()}
                return cls(fps, robot, feats)
            # episodes v1.0: state/action sizes and same-size cameras under short field names
            legacy = cls.declare(fps=fps, robot=robot, state=doc.get("state_names") or int(doc["state_dim"]),
                                 action=doc.get("action_names") or int(doc["action_dim"]),
                                 cameras={k: (int(v[0]), int(v[1])) for k, v in (doc.get("cameras") or {}).items()})
            return legacy
        except (KeyError, TypeError, ValueError, IndexError, SchemaError) as exc:
            raise SchemaError(f"the store's 'recording' attributes are malformed ({exc!r})") from None

    # ---------------------------------------------------------------------------------------- views
    @property
    def all_features(self) -> dict[str, Feature]:
        """Declared features plus the optional ones accepted undeclared (``next.reward``, ``next.done``)."""
        return {**self.features, **optional_features(self.features)}

    def lookup(self) -> dict[str, Feature]:
        """Every key a frame may use (LeRobot name, stored field, short alias) -> its feature."""
        out: dict[str, Feature] = {}
        for f in self.all_features.values():
            short = "state" if f.name == STATE else (SHORT_IMAGE_PREFIX + f.name[len(IMAGE_PREFIX):]
                                                     if f.visual and f.name.startswith(IMAGE_PREFIX) else None)
            for key in (short, f.name, f.field, f.alias):
                if key:
                    out[key] = f
        return out

    @property
    def stat_features(self) -> list[Feature]:
        return [f for f in self.features.values() if f.has_stats]

    def frame_fields(self) -> dict[str, dict[str, Any]]:
        """Declarations of the feature fields of the ``frames`` stream (added to the schema's own)."""
        return {f.field: f.field_doc() for f in self.all_features.values()}

    # ------------------------------------------------------------------------------- short-form views
    @property
    def state_dim(self) -> int:
        f = self.features.get(STATE)
        return f.shape[0] if f is not None else 0

    @property
    def action_dim(self) -> int:
        f = self.features.get(ACTION)
        return f.shape[0] if f is not None else 0

    @property
    def cameras(self) -> dict[str, tuple[int, int]]:
        return {k: (int(v[0]), int(v[1])) for k, v in self._legacy()["cameras"].items()}

    @property
    def image_fields(self) -> list[str]:
        return [f.field for f in self.features.values() if f.visual]

    # ---------------------------------------------------------------------------------- comparison
    def differences(self, declared: RecordingConfig) -> list[str]:
        """Human-readable differences between this (stored) config and a declared one."""
        out = []
        mine_doc, theirs_doc = self.to_doc(), declared.to_doc()
        for key in ("fps", "robot", "state_dim", "action_dim", "state_names", "action_names", "cameras"):
            mine, theirs = mine_doc.get(key), theirs_doc.get(key)
            if key.endswith("_names") and theirs is None:
                continue  # not declaring names accepts the stored ones
            if mine != theirs:
                out.append(f"{key}: store has {mine!r}, recorder declares {theirs!r}")
        for name in dict.fromkeys([*self.features, *declared.features]):
            a, b = self.features.get(name), declared.features.get(name)
            if a is None or b is None:
                if name not in (STATE, ACTION) and not name.startswith(IMAGE_PREFIX):
                    out.append(f"feature {name!r}: {'absent from the store' if a is None else 'not declared'}")
                continue
            if b.names is None:
                b = Feature(b.name, b.dtype, b.shape, a.names, b.info, b.field, b.required, b.alias)
            if (a.dtype, a.shape, a.names, a.field) != (b.dtype, b.shape, b.names, b.field) \
                    and name not in (STATE, ACTION) and not name.startswith(IMAGE_PREFIX):
                out.append(f"feature {name!r}: store has {a.lerobot()}, recorder declares {b.lerobot()}")
        return out


def collect_features(*, state: int | Sequence[str] | None = None, action: int | Sequence[str] | None = None,
                     cameras: Mapping[str, Sequence[int]] | None = None,
                     features: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Feature]:
    """LeRobot's features dict plus the short declarations, checked (possibly empty)."""
    feats = dict(parse_features(features or {}))
    short: list[Feature] = []
    if state is not None:
        short.append(_vector(STATE, state, "state"))
    if action is not None:
        short.append(_vector(ACTION, action, "action"))
    short += [_camera(str(cam), hw) for cam, hw in (cameras or {}).items()]
    for f in short:
        if f.name in feats:
            raise SchemaError(f"{f.name!r} is declared twice (in features and as {f.alias}=)")
        feats[f.name] = f
    fields = [f.field for f in feats.values()]
    clash = sorted({x for x in fields if fields.count(x) > 1})
    if clash:
        raise SchemaError(f"features {clash} would share a stored field")
    return feats
