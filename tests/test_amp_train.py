"""AMP + PPO on the MJX G1 with a tiny configuration: smoke run, discriminator separation, checkpoints,
resume equal to an uninterrupted run, repeatability, evaluation, CLI, and expert-store errors.

MJX compiles for tens of seconds on a CPU, so one module-scoped session (compiled once) serves every
test that trains."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("mujoco.mjx")
from mimicdata_trainers.amp import checkpoint  # noqa: E402
from mimicdata_trainers.amp.config import default_config  # noqa: E402
from mimicdata_trainers.amp.disc_obs import load_expert  # noqa: E402
from mimicdata_trainers.amp.run import METRICS_STORE, prepare, run  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import mimicdata as md  # noqa: E402
from tests.amp_expert import write_expert_store  # noqa: E402

TINY = default_config().replace(
    env={"solver_iterations": 2, "ls_iterations": 3, "episode_seconds": 0.1},
    disc_obs={"history": 3},
    ppo={"num_envs": 4, "rollout_steps": 4, "minibatches": 2, "epochs": 1, "hidden": [32]},
    amp={"disc_hidden": [32], "disc_minibatch": 32, "replay_size": 64, "replay_insert": 16, "disc_steps": 16,
         "disc_learning_rate": 3e-3},
    train={"total_steps": 48, "checkpoint_every": 2, "keep_checkpoints": 2},
)


@pytest.fixture(scope="module")
def expert_url(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_expert_store(tmp_path_factory.mktemp("amp") / "expert.zarr")


@pytest.fixture(scope="module")
def session(expert_url: Path):
    return prepare(expert_url, TINY)


@pytest.fixture(scope="module")
def three_iterations(session, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run") / "run"
    lines: list[str] = []
    state = run(session, out, seed=3, log=lines.append)
    return out, state, lines


def _state_leaves(path: Path) -> list[np.ndarray]:
    return checkpoint.read(path)[1]["state"]


def test_expert_cache_in_the_store_keyed_by_spec(session, expert_url: Path) -> None:
    data = session.expert_data
    with md.open(expert_url) as store:
        name = data.spec.stream_name
        assert name in store.streams and store.attrs["amp_disc_obs"][data.spec.key()]["stream"] == name
        frames = store["frames"].num_rows
    assert data.history.shape[:2] == (frames - 2 * 2, 3)  # two clips lose their first history-1 frames
    again = load_expert(expert_url, TINY)
    assert again.status == "hit"
    np.testing.assert_array_equal(again.history, data.history)
    other = load_expert(expert_url, TINY.replace(disc_obs={"history": 2}), write_cache=False)
    assert other.status == "uncached" and other.spec.key() != data.spec.key()
    # the agent and the expert share one feature function: the newest frame of a window equals the
    # oldest frame of the window two steps later inside the same clip
    np.testing.assert_allclose(data.history[2, 0], data.history[0, 2], atol=1e-6)


def test_smoke_run_writes_metrics_checkpoints_and_events(three_iterations) -> None:
    out, _, lines = three_iterations
    iters = [line for line in lines if line.startswith("iter")]
    assert len(iters) == 3 and "episode_length" in iters[0] and "disc_loss" in iters[0]
    assert (out / checkpoint.BEST).is_file() or all("episode_return nan" in line for line in iters)
    assert sorted(p.name for p in out.glob("amp_ppo_0*.npz")) == ["amp_ppo_000002.npz", "amp_ppo_000003.npz"]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    with md.open(out / METRICS_STORE) as store:
        metrics = store["metrics"]
        assert metrics.read("iteration").tolist() == [1, 2, 3]
        assert metrics.read("env_steps").tolist() == [16, 32, 48]
        for name in ("episode_length", "task_reward", "disc_reward", "policy_loss", "value_loss", "disc_loss",
                     "approx_kl", "clip_fraction", "steps_per_second"):
            assert name in metrics.fields
        assert np.all(np.isfinite(metrics.read("disc_loss")))
    from mimicdata_cli.main import app

    result = CliRunner().invoke(app, ["query", str(out / METRICS_STORE), "select max(iteration) as n from metrics"])
    assert result.exit_code == 0 and "3" in result.output


def test_discriminator_separates_expert_from_random_policy(session, three_iterations) -> None:
    from mimicdata_trainers.amp.losses import disc_logits
    from mimicdata_trainers.amp.networks import normalize

    _, state, _ = three_iterations
    expert = normalize(state.disc_norm, session.expert.disc_obs, TINY.amp.obs_clip)
    agent = normalize(state.disc_norm, state.replay.data[: int(state.replay.count)], TINY.amp.obs_clip)
    le, la = disc_logits(state.disc_params, expert), disc_logits(state.disc_params, agent)
    accuracy = 0.5 * (float(np.mean(le > 0)) + float(np.mean(la < 0)))
    gap = float(le.mean()) - float(la.mean())
    assert accuracy > 0.85 and gap > 0.5, (accuracy, gap)  # an untrained discriminator sits near 0.5 and 0


def test_resume_equals_uninterrupted_and_runs_repeat(session, three_iterations, tmp_path: Path) -> None:
    full, _, lines = three_iterations
    part = tmp_path / "part"
    first: list[str] = []
    run(session, part, seed=3, iterations=2, log=first.append)
    with pytest.raises(md.StoreExistsError, match="--resume"):
        run(session, part, seed=3, iterations=1, log=lambda _: None)
    resumed: list[str] = []
    run(session, part, seed=99, resume=True, log=resumed.append)  # the run's own seed wins
    assert resumed[0].startswith("resumed from amp_ppo_000002.npz")
    for a, b in zip(_state_leaves(full / "amp_ppo_000003.npz"), _state_leaves(part / "amp_ppo_000003.npz"),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    strip = lambda line: re.sub(r"sps +\d+", "", line)  # noqa: E731  (wall-clock figure)
    assert [strip(x) for x in first] == [strip(x) for x in lines[:2]]  # a second run repeats the first exactly
    assert [strip(x) for x in resumed[1:]] == [strip(x) for x in lines[2:]]
    with md.open(part / METRICS_STORE) as store:
        assert store["metrics"].read("iteration").tolist() == [1, 2, 3]


def test_checkpoint_round_trip_and_damaged_file(session, three_iterations, tmp_path: Path) -> None:
    out, state, _ = three_iterations
    template = jax.eval_shape(session.trainer.init, jax.random.PRNGKey(0), session.expert)
    meta, groups = checkpoint.read(out / "amp_ppo_000003.npz")
    restored = checkpoint.restore(template, groups["state"], "train state")
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(jax.device_get(state)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert meta["iteration"] == 3 and meta["seed"] == 3 and meta["config"]["ppo"]["num_envs"] == 4
    broken = tmp_path / "broken.npz"
    broken.write_bytes((out / "amp_ppo_000003.npz").read_bytes()[:500])
    with pytest.raises(md.CorruptStoreError, match="cannot be read"):
        checkpoint.read(broken)


def test_eval_runs_the_policy_in_c_mujoco(three_iterations, tmp_path: Path) -> None:
    from mimicdata_cli.train import app

    out, _, _ = three_iterations
    ckpt = out / "amp_ppo_000003.npz"
    result = CliRunner().invoke(app, ["eval", "--checkpoint", str(ckpt), "--n-steps", "12", "--deterministic"])
    assert result.exit_code == 0, result.output
    found = re.search(r"steps 12 +episodes ended (\d+) +falls (\d+) +mean task reward", result.output)
    assert found and int(found.group(1)) >= 2  # 5-step episodes (or shorter, after a fall)
    from mimicdata_trainers.amp.evaluate import evaluate

    rec = evaluate(ckpt, 6, deterministic=True, record=tmp_path / "eval.mp4")
    assert rec.record.path.is_file() and rec.record.kind in ("mp4", "png_filmstrip")


def test_cli_amp_trains_and_resumes(session, expert_url: Path, tmp_path: Path, monkeypatch) -> None:
    import mimicdata_trainers.amp.run as run_module
    from mimicdata_cli.train import app

    def reuse(store: str, cfg):  # the compiled session, with the CLI's step budget
        return dataclasses.replace(session, config=session.config.replace(train={"total_steps": cfg.train.total_steps}))

    monkeypatch.setattr(run_module, "prepare", reuse)
    out = tmp_path / "cli"
    args = ["amp", "--store", str(expert_url), "--out", str(out), "--total-steps", "32", "--cpu"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "compiling" in first.output and first.output.count("\niter") == 2
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "error:" in again.output and "--resume" in again.output
    resumed = CliRunner().invoke(app, [*args[:-2], "48", "--cpu", "--resume"])
    assert resumed.exit_code == 0 and "resumed from amp_ppo_000002.npz" in resumed.output


@pytest.mark.parametrize(("kind", "message"), [
    ("missing", "does not exist|not found|No such"),
    ("fields", r"lack field\(s\) \['body_pos'\]"),
    ("robot", "for robot 'g1_23dof'"),
    ("short", "the longest clip has 5"),
])
def test_unusable_expert_store_gives_one_clear_error(kind: str, message: str, tmp_path: Path) -> None:
    from mimicdata_cli.train import app

    url = tmp_path / "expert.zarr"
    if kind == "fields":  # joint motion only: no body positions for the key bodies
        store = md.create(url, robot="g1_29dof", fps=50)
        store.add_stream("frames", fields={"qpos": {"dtype": "float32", "shape": ["qpos"]},
                                           "qvel": {"dtype": "float32", "shape": ["qvel"]}})
        store["frames"].append({"qpos": np.zeros((20, 36), np.float32), "qvel": np.zeros((20, 35), np.float32)})
        store.close()
    elif kind == "robot":
        write_expert_store(url, robot="g1_23dof", clips=(20,))
    elif kind == "short":
        write_expert_store(url, clips=(5, 4))
    result = CliRunner().invoke(app, ["amp", "--store", str(url), "--out", str(tmp_path / "o"), "--cpu"])
    assert result.exit_code == 1
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert re.search(message, result.output), result.output
