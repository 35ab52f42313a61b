"""The ``episode_info`` stream: one row per committed episode with its statistics and user metadata.

Why a custom stream and not store attributes: rows are appended with the same commit protocol as
the frames (a kill never leaves half a row), they read as a table (``to_arrow`` / Polars), and the
dataset statistics can always be rebuilt from them. Fields, for every feature with statistics (numbers
and pixels; named by the feature's stored field, e.g. ``observation.state`` or ``state``)::

    episode_index, length                     int64
    metadata                                  JSON text (user metadata given to save_episode)
    <field>.{min,max,mean,std}                float64, the feature's shape ((1,) for scalars)
    <image field>.{min,max,mean,std}          float64 (C,)   per channel, pixel values 0..255
    <image field>.hist                        int64 (C, 256) per-channel histogram (exact merges)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mimicdata.episodes.config import RecordingConfig
from mimicdata.episodes.stats import ImageStats, Summary, VectorStats
from mimicdata.stream import Stream

MOMENTS = ("min", "max", "mean", "std")


def info_fields(config: RecordingConfig) -> dict[str, dict[str, Any]]:
    """Field declarations of the ``episode_info`` stream for a recording setup."""
    fields: dict[str, dict[str, Any]] = {
        "episode_index": {"dtype": "int64", "shape": [], "unit": "episode",
                          "description": "Episode these statistics belong to."},
        "length": {"dtype": "int64", "shape": [], "unit": "frame", "description": "Frames in the episode."},
        "metadata": {"dtype": "string", "shape": [], "unit": "json",
                     "description": "User metadata of the episode, JSON text."},
    }
    for feature in config.stat_features:
        if feature.visual:
            channels = feature.shape[2]
            for stat in MOMENTS:
                fields[f"{feature.field}.{stat}"] = {
                    "dtype": "float64", "shape": [channels], "unit": "0..255",
                    "description": f"Per-channel {stat} of the pixels of {feature.name}."}
            fields[f"{feature.field}.hist"] = {"dtype": "int64", "shape": [channels, 256], "unit": "pixels",
                                               "description": f"Per-channel histogram of {feature.name}."}
            continue
        shape = list(feature.frame_shape) or [1]
        for stat in MOMENTS:
            fields[f"{feature.field}.{stat}"] = {"dtype": "float64", "shape": shape, "unit": "mixed",
                                                 "description": f"Per-component {stat} of {feature.name}."}
    return fields


def info_row(index: int, length: int, summaries: Mapping[str, Summary], metadata: str) -> dict[str, np.ndarray]:
    """One ``episode_info`` row (a batch of one) from an episode's summaries."""
    row: dict[str, Any] = {"episode_index": [index], "length": [length], "metadata": [metadata]}
    for feature, summary in summaries.items():
        vec = summary.vector() if isinstance(summary, ImageStats) else summary
        row[f"{feature}.min"], row[f"{feature}.max"] = [vec.min], [vec.max]
        row[f"{feature}.mean"], row[f"{feature}.std"] = [vec.mean], [vec.std]
        if isinstance(summary, ImageStats):
            row[f"{feature}.hist"] = [summary.hist]
    return {k: np.asarray(v) for k, v in row.items()}


def episode_summaries(info: Stream, features: list[str], start: int = 0, stop: int | None = None
                      ) -> list[dict[str, Summary]]:
    """Mergeable summaries of episodes ``[start, stop)`` read back from ``episode_info`` (``features``:
    stored field names; image features are those with a histogram)."""
    stop = info.num_rows if stop is None else min(stop, info.num_rows)
    if stop <= start:
        return []
    counts = info.read("length", start, stop)
    cols = {f"{f}.{s}": info.read(f"{f}.{s}", start, stop) for f in features for s in MOMENTS}
    hists = {f: info.read(f"{f}.hist", start, stop) for f in features if f"{f}.hist" in info.spec.fields}
    out = []
    for i in range(stop - start):
        row: dict[str, Summary] = {}
        for f in features:
            if f in hists:
                row[f] = ImageStats(hists[f][i].astype(np.int64))
            else:
                row[f] = VectorStats.from_summary(int(counts[i]), cols[f"{f}.mean"][i], cols[f"{f}.std"][i],
                                                  cols[f"{f}.min"][i], cols[f"{f}.max"][i])
        out.append(row)
    return out


def load_summaries(info: Stream, config: RecordingConfig, episodes: int) -> dict[str, Summary]:
    """Dataset summaries merged from the first ``episodes`` rows of ``episode_info``."""
    features = [f.field for f in config.stat_features]
    merged: dict[str, Summary] = {}
    for row in episode_summaries(info, features, 0, episodes):
        for f, s in row.items():
            merged[f] = merged[f].merge(s) if f in merged else s  # type: ignore[arg-type]
    return merged
