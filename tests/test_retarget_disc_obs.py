"""Cached discriminator observations: miss, hit, invalidation by spec, extension by new clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mimicdata as md
from mimicdata.retarget.clip import ClipSpec
from mimicdata.retarget.disc_obs import ATTRS_KEY, DiscObsSpec, disc_obs
from mimicdata.retarget.pipeline import retarget_to_store


@pytest.fixture()
def store_url(shared_data: Path, tmp_path: Path) -> Path:
    specs = [ClipSpec(str(shared_data / "mocap/bvhtools/test2.bvh"), "a", start=0, stop=40),
             ClipSpec(str(shared_data / "mocap/bvhtoolbox/test_mocapbank.bvh"), "b", start=0, stop=30)]
    url = tmp_path / "expert.zarr"
    assert retarget_to_store(specs, url, workers=0, progress=False).ok
    return url


def test_miss_then_hit(store_url: Path) -> None:
    spec = DiscObsSpec(history=2)
    with md.open(store_url, mode="a") as store:
        first = disc_obs(store, spec)
        assert first.status == "miss" and first.stream == f"disc_obs.{spec.key()}"
        frames = store["frames"]
        assert first.obs.shape[0] == frames.num_rows
        entry = store.attrs[ATTRS_KEY][spec.key()]
        assert entry["spec"] == spec.to_doc() and entry["rows"] == frames.num_rows
    with md.open(store_url) as store:  # read-only is enough for a hit
        again = disc_obs(store, spec)
        assert again.status == "hit"
        np.testing.assert_array_equal(again.obs, first.obs)


def test_observation_content_and_history(store_url: Path) -> None:
    spec = DiscObsSpec(history=3, key_bodies=("left_ankle_roll_link",), key_sites=("right_palm",))
    with md.open(store_url, mode="a") as store:
        obs = disc_obs(store, spec).obs
        qpos = store["frames"].read("qpos")
        start = int(store["frames"].segments()[1, 0])
    nj = qpos.shape[1] - 7
    single = 1 + 6 + 6 + nj + nj + 2 * 3
    assert obs.shape[1] == 3 * single
    np.testing.assert_allclose(obs[:, 0], qpos[:, 2], atol=1e-6)  # root height first
    np.testing.assert_allclose(obs[:, 13:13 + nj], qpos[:, 7:], atol=1e-6)  # then joint positions
    # Frame t holds [o_t, o_{t-1}, o_{t-2}], clamped at the clip's first frame (never the previous clip).
    np.testing.assert_array_equal(obs[start + 5, single:2 * single], obs[start + 4, :single])
    np.testing.assert_array_equal(obs[start, single:2 * single], obs[start, :single])
    np.testing.assert_array_equal(obs[start + 1, 2 * single:], obs[start, :single])


def test_spec_change_recomputes_into_a_new_stream(store_url: Path) -> None:
    with md.open(store_url, mode="a") as store:
        a = disc_obs(store, DiscObsSpec(history=2))
        b = disc_obs(store, DiscObsSpec(history=4))
        assert b.status == "miss" and b.stream != a.stream
        assert b.obs.shape[1] == 2 * a.obs.shape[1]
        assert set(store.attrs[ATTRS_KEY]) == {DiscObsSpec(history=2).key(), DiscObsSpec(history=4).key()}
        assert disc_obs(store, DiscObsSpec(history=2)).status == "hit"


def test_new_clips_extend_the_cache(store_url: Path) -> None:
    spec = DiscObsSpec()
    with md.open(store_url, mode="a") as store:
        before = disc_obs(store, spec).obs
        frames = store["frames"]
        start, end = frames.segments()[0]
        batch = {k: frames.read(k, start, end) for k in frames.fields}
        clips = store["clips"]
        row = {k: clips.read(k)[0] for k in clips.fields if k not in ("start", "end", "clip_index")}
        store.append_segment("clips", frames=batch, row={**row, "name": "again"})
        after = disc_obs(store, spec)
        assert after.status == "extended" and len(after.obs) == len(before) + (end - start)
        np.testing.assert_array_equal(after.obs[: len(before)], before)
        np.testing.assert_allclose(after.obs[len(before):], before[start:end], atol=1e-6)  # same clip, same obs


def test_read_only_store_computes_without_caching(store_url: Path) -> None:
    spec = DiscObsSpec(history=1)
    with md.open(store_url) as store:
        result = disc_obs(store, spec)
        assert result.status == "uncached" and spec.stream_name not in store.streams
    with pytest.raises(ValueError, match="key body 'no_such_link'"):
        with md.open(store_url, mode="a") as store:
            disc_obs(store, DiscObsSpec(key_bodies=("no_such_link",)))
