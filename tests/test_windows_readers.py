"""Existing readers on the data path: the disc-obs cache as a WindowDataset, aligned to the clips of frames."""

from __future__ import annotations

import numpy as np
import pytest

import mimicdata as md
from mimicdata.retarget.disc_obs import DiscObsSpec, disc_obs, disc_obs_dataset
from tests.helpers import expert_frames


def expert_store(url, lengths=(40, 3, 25)) -> None:
    bodies = len(md.load_robot("g1_29dof").body_names)
    store = md.create(url, "expert_trajectory", robot="g1_29dof", fps=50)
    for i, n in enumerate(lengths):
        frames = expert_frames(n, nb=bodies)
        frames["qpos"][:, 3:7] = [1.0, 0.0, 0.0, 0.0]  # a valid root quaternion
        store.append_segment("clips", frames, {"name": f"c{i}", "source": "synthetic", "fps": 50.0})
    store.close()


def test_disc_obs_cache_as_windows_inside_clips(tmp_path) -> None:
    url = tmp_path / "expert.zarr"
    expert_store(url)
    spec = DiscObsSpec(history=2)
    with pytest.raises(md.ValidationError, match="no up-to-date discriminator-observation cache"):
        disc_obs_dataset(url, spec, build=False)
    ds = disc_obs_dataset(url, spec, window=2)  # builds the cache on first use
    with md.open(url) as store:
        obs = disc_obs(store, spec)
        assert obs.status == "hit"
        segments = store["frames"].segments()
    assert ds.stream == spec.stream_name and ds.segments.tolist() == segments.tolist()
    assert len(ds) == 39 + 2 + 24
    batch = ds.gather(np.arange(len(ds)))
    rows = segments[batch["segment"], 0] + batch["frame"]
    np.testing.assert_array_equal(batch["obs"][:, 0], obs.obs[rows])
    np.testing.assert_array_equal(batch["obs"][:, 1], obs.obs[rows + 1])
    assert next(iter(md.batches(ds, 16, seed=0)))["obs"].shape == (16, 2, obs.obs.shape[1])


def test_segments_from_needs_an_aligned_segmented_stream(tmp_path) -> None:
    url = tmp_path / "expert.zarr"
    expert_store(url)
    with pytest.raises(md.ValidationError, match="has no segment table"):
        md.WindowDataset(url, fields=["qpos"], stream="frames", segments_from="clips")
    with pytest.raises(md.ValidationError, match="not a stream"):
        md.WindowDataset(url, fields=["qpos"], stream="frames", segments_from="nope")
    with md.open(url, "a") as store:
        store.add_stream("extra", {"v": {"dtype": "float32", "shape": []}})
        store["extra"].append({"v": np.zeros(5, np.float32)})
    with pytest.raises(md.ValidationError, match="aligned row for row"):
        md.WindowDataset(url, stream="extra", segments_from="frames")


def test_readme_training_data_path_runs(tmp_path, monkeypatch) -> None:
    import re
    from pathlib import Path

    blocks = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(), re.S)
    ours = [b for b in blocks if "md.WindowDataset" in b]
    assert ours, "README has no training data path example"
    monkeypatch.chdir(tmp_path)
    expert_store(tmp_path / "expert.zarr", lengths=(120,))  # what the quick start above it writes
    namespace: dict = {}
    exec(compile(ours[0], "README.md", "exec"), namespace)
    assert len(namespace["ds"]) == 111 and namespace["item"]["qpos"].shape == (10, 36)
    assert namespace["batch"]["qpos"].shape[1:] == (10, 36)


@pytest.mark.parametrize("path", ["direct", "zarr"])
def test_gathers_match_the_stream_reader_for_every_field_shape(tmp_path, monkeypatch, path: str) -> None:
    import mimicdata.gather as gather

    if path == "zarr":  # a codec chain the direct decoder does not know goes through zarr-python

        class UnknownLayout(gather.ChunkCodec):
            @classmethod
            def for_array(cls, array: object) -> None:
                return None

        monkeypatch.setattr(gather, "ChunkCodec", UnknownLayout)  # the gathers only; the writer keeps its codec
    url = tmp_path / "expert.zarr"
    expert_store(url, lengths=(300, 2100))
    fields = ["qpos", "body_pos", "body_quat"]
    ds = md.WindowDataset(url, fields=fields, offsets=[-1, 0])
    with md.open(url) as store:
        truth = {f: store["frames"].read(f) for f in fields}
    for reader in (ds.chunk_reader(max_bytes=1 << 20), ds.load()):
        batch = ds.gather(np.arange(len(ds)), reader)
        anchors = ds.segments[batch["segment"], 0] + batch["frame"]
        for f in fields:
            np.testing.assert_array_equal(batch[f][:, 1], truth[f][anchors])
            np.testing.assert_array_equal(batch[f][:, 0], truth[f][anchors - 1])
