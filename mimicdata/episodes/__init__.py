"""Recording episodes: frames with real timestamps, atomic episode commits, background saving.

>>> from mimicdata.episodes import EpisodeRecorder, episode_table
>>> rec = EpisodeRecorder.create("memory://episodes-doc", fps=50, state=2, action=2, overwrite=True)
>>> rec.enable_async_saving(max_queue_size=4)
>>> for t in range(10):
...     rec.add_frame({"state": [0.0, t], "action": [t, 0.0], "task": "wave"})
>>> rec.save_episode_async(success=True)
True
>>> rec.wait_for_async_saves(timeout=30)
True
>>> episode_table(rec.store)["length"].to_list()
[10]
>>> rec.close()

Storage: an ``episodes`` store (streams ``frames`` and ``episodes``) plus a custom ``episode_info``
stream with per-episode statistics and user metadata (see :mod:`mimicdata.episodes.info`); the
recording setup is in the store attributes under ``"recording"`` and the dataset statistics under
``"dataset_stats"``.
"""

from __future__ import annotations

from mimicdata.episodes.buffer import EpisodeBuffer
from mimicdata.episodes.config import RecordingConfig
from mimicdata.episodes.query import dataset_stats, episode_metadata, episode_stats, episode_table, fps_check
from mimicdata.episodes.recorder import EpisodeRecorder
from mimicdata.episodes.saver import AsyncEpisodeSaver, EpisodeSaveResult

__all__ = [
    "AsyncEpisodeSaver", "EpisodeBuffer", "EpisodeRecorder", "EpisodeSaveResult", "RecordingConfig",
    "dataset_stats", "episode_metadata", "episode_stats", "episode_table", "fps_check",
]
