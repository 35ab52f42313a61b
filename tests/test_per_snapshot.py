"""Replay buffers to and from stores: exact snapshot round trip, transitions built from frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mimicdata_trainers.per import ExperienceBuffer, PrioritizedExperienceBuffer  # noqa: E402
from mimicdata_trainers.snapshot import SNAPSHOT_ATTR, buffer_from_store, load_buffer, save_buffer  # noqa: E402

import mimicdata as md  # noqa: E402


def expert_store(path: Path | str, clip_lengths: tuple[int, ...] = (30, 1, 12), fps: float = 10.0) -> md.Store:
    """A small expert_trajectory store whose qpos[0] encodes (clip, frame) as clip * 1000 + frame."""
    store = md.create(path, "expert_trajectory", robot="g1_29dof", fps=fps)
    r = store.robot
    assert r is not None
    for clip, n in enumerate(clip_lengths):
        qpos = np.zeros((n, len(r.qpos_names)), np.float32)
        qpos[:, 0] = clip * 1000 + np.arange(n)
        store.append_segment("clips", frames={
            "qpos": qpos, "qvel": np.ones((n, len(r.qvel_names)), np.float32),
            "body_pos": np.zeros((n, len(r.body_names), 3), np.float32),
            "body_quat": np.tile(np.float32([1, 0, 0, 0]), (n, len(r.body_names), 1)),
        }, row={"name": f"clip{clip}", "source": "synthetic", "fps": fps})
    return store


def _trained_buffer() -> PrioritizedExperienceBuffer:
    buf = PrioritizedExperienceBuffer(6, 3, alpha=0.7, beta=0.3, beta_increment=0.05, seed=11)
    for step in range(8):  # wraps: head != 0, total > capacity
        buf.record("obs", torch.randn(3, 4))
        buf.record("act", torch.randint(0, 5, (3,)))
        buf.record("done", torch.tensor([False, step % 2 == 0, True]))
        buf.inc()
    for _ in range(3):
        batch = buf.sample(5)
        buf.update_priorities(batch["indices"], torch.randn(5))
    return buf


def test_snapshot_round_trip_restores_everything_exactly(tmp_path: Path) -> None:
    buf = _trained_buffer()
    save_buffer(buf, tmp_path / "snap.zarr", name="replay")
    back = load_buffer(tmp_path / "snap.zarr", name="replay")
    assert isinstance(back, PrioritizedExperienceBuffer)
    for name in ("obs", "act", "done"):
        assert torch.equal(back._storage[name], buf._storage[name]), name
    assert torch.equal(back.tree.leaves, buf.tree.leaves)
    assert (back.alpha, back.beta, back.beta_increment, back.epsilon) == (buf.alpha, buf.beta, buf.beta_increment,
                                                                        buf.epsilon)
    assert (back._head, back.get_total_samples(), back.sample_calls) == (buf._head, buf.get_total_samples(), 3)
    # same generator state: the restored buffer draws what the original would have drawn next
    a, b = buf.sample(7), back.sample(7)
    assert torch.equal(a["indices"], b["indices"]) and torch.equal(a["weights"], b["weights"])


def test_snapshot_into_an_open_store_and_uniform_buffers(tmp_path: Path) -> None:
    store = expert_store(tmp_path / "expert.zarr")
    buf = ExperienceBuffer(4, 2, seed=1)
    buf.extend({"x": torch.arange(6.0)})
    save_buffer(buf, store, name="uniform_replay")
    store.close()
    back = load_buffer(tmp_path / "expert.zarr", name="uniform_replay")
    assert type(back) is ExperienceBuffer and back.get_sample_count() == 6
    assert torch.equal(back._storage["x"][:3], buf._storage["x"][:3])
    reopened = md.open(tmp_path / "expert.zarr")
    assert reopened["uniform_replay"].read("priority").tolist() == [1.0] * 6
    assert reopened["frames"].num_rows == 43  # the expert data is untouched


def test_snapshot_refuses_half_rows_and_existing_names(tmp_path: Path) -> None:
    buf = _trained_buffer()
    buf.record("obs", torch.zeros(3, 4))
    with pytest.raises(ValueError, match="half recorded"):
        save_buffer(buf, tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr").exists()
    ok = _trained_buffer()
    store = md.create(tmp_path / "b.zarr", None)
    save_buffer(ok, store, name="r1")
    with pytest.raises(md.SchemaError, match="already exists"):
        save_buffer(ok, store, name="r1")
    store.close()


def test_an_unfinished_snapshot_is_not_loaded(tmp_path: Path) -> None:
    store = md.create(tmp_path / "c.zarr", None)
    save_buffer(_trained_buffer(), store, name="r")
    attrs = store.attrs[SNAPSHOT_ATTR]
    attrs["r"] = dict(attrs["r"], rows=attrs["r"]["rows"] + 1)  # rows written != rows promised
    store.update_attrs({SNAPSHOT_ATTR: attrs})
    store.close()
    with pytest.raises(ValueError, match="rows stored, snapshot says"):
        load_buffer(tmp_path / "c.zarr", name="r")
    with pytest.raises(ValueError, match="no replay snapshot 'missing'"):
        load_buffer(tmp_path / "c.zarr", name="missing")


def test_buffer_from_store_builds_transitions_inside_clips(tmp_path: Path) -> None:
    expert_store(tmp_path / "e.zarr", clip_lengths=(30, 1, 12)).close()
    buf = buffer_from_store(tmp_path / "e.zarr", fields=["qpos", "qvel"], seed=0)
    assert isinstance(buf, PrioritizedExperienceBuffer)
    assert buf.get_sample_count() == 29 + 0 + 11  # the 1-frame clip has no transition
    batch = buf.sample(200)
    here, nxt = batch["qpos"][:, 0], batch["next_qpos"][:, 0]
    assert torch.equal(nxt, here + 1)  # next frame of the same clip: never across a boundary
    assert set(batch["segment"].tolist()) <= {0, 2}
    assert torch.equal(batch["row"] - torch.where(batch["segment"] == 2, 31, 0), (here % 1000).long())
    assert set(batch) >= {"qvel", "next_qvel", "indices", "weights"}


def test_buffer_from_store_capacity_and_errors(tmp_path: Path) -> None:
    expert_store(tmp_path / "e.zarr").close()
    small = buffer_from_store(tmp_path / "e.zarr", fields=["qpos"], capacity=5, prioritized=False, next_state=False)
    assert type(small) is ExperienceBuffer and small.get_sample_count() == 5
    assert sorted(small._storage["qpos"][:, 0, 0].tolist()) == [2007, 2008, 2009, 2010, 2011]  # the newest
    with pytest.raises(ValueError, match="no field 'nope'"):
        buffer_from_store(tmp_path / "e.zarr", fields=["nope"])
    with pytest.raises(ValueError, match="string fields cannot go into a replay buffer"):
        buffer_from_store(tmp_path / "e.zarr", stream="clips", fields=["name"])


def test_in_memory_state_dict_round_trip() -> None:
    buf = _trained_buffer()
    clone = PrioritizedExperienceBuffer(6, 3, seed=99)
    clone.load_state_dict(buf.state_dict())
    assert torch.equal(clone.tree.leaves, buf.tree.leaves) and clone.beta == buf.beta
    a, b = buf.sample(9), clone.sample(9)
    assert torch.equal(a["indices"], b["indices"]) and torch.equal(a["obs"], b["obs"])
    with pytest.raises(ValueError, match="buffer_len=6 does not match this buffer's 5"):
        PrioritizedExperienceBuffer(5, 3).load_state_dict(buf.state_dict())
    with pytest.raises(ValueError, match="state is for 'PrioritizedExperienceBuffer', not ExperienceBuffer"):
        ExperienceBuffer(6, 3).load_state_dict(buf.state_dict())


def test_one_explicit_state_behind_state_dict_and_snapshot(tmp_path: Path) -> None:
    from mimicdata_trainers.buffer_state import BufferState

    from mimicdata.errors import StateError

    buf = _trained_buffer()
    state = buf.state()
    save_buffer(buf, tmp_path / "s.zarr")
    encodings = {"from_state": ExperienceBuffer.from_state(state).state(),
                 "state_dict": BufferState.from_dict(buf.state_dict()),
                 "snapshot": load_buffer(tmp_path / "s.zarr").state()}
    assert state.priority is not None
    for how, other in encodings.items():
        assert (other.kind, other.head, other.total_samples, other.torn) == (state.kind, state.head,
                                                                            state.total_samples, False), how
        assert other.storage.keys() == state.storage.keys(), how
        assert all(torch.equal(other.storage[k], state.storage[k]) for k in state.storage), how
        assert other.priority is not None and torch.equal(other.priority.leaves, state.priority.leaves), how
        assert torch.equal(other.rng, state.rng), how
    broken = buf.state_dict()
    del broken["head"]
    with pytest.raises(StateError, match="no 'head'"):
        buf.load_state_dict(broken)
    broken = buf.state_dict()
    broken["storage"]["obs"] = torch.zeros(2, 4)
    with pytest.raises(StateError, match="field 'obs' has shape"):
        buf.load_state_dict(broken)
