"""Prioritised and uniform experience buffers: the PER formulas, the MimicKit interface, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from mimicdata_trainers.per import ExperienceBuffer, PrioritizedExperienceBuffer  # noqa: E402
from scipy import stats  # noqa: E402


def _filled(buffer_len: int = 10, batch_size: int = 4, **kwargs: object) -> PrioritizedExperienceBuffer:
    buf = PrioritizedExperienceBuffer(buffer_len, batch_size, seed=0, **kwargs)  # type: ignore[arg-type]
    for step in range(buffer_len):
        buf.record("s", torch.full((batch_size, 3), float(step)))
        buf.record("a", torch.arange(batch_size) + step * batch_size)
        buf.inc()
    return buf


def test_mimickit_interface_records_rows_and_samples_dicts() -> None:
    buf = _filled(buffer_len=5, batch_size=4)
    assert buf.get_sample_count() == 20 and buf.get_total_samples() == 20
    batch = buf.sample(8)
    assert set(batch) == {"s", "a", "indices", "weights"}
    assert batch["s"].shape == (8, 3) and batch["weights"].dtype == torch.float32
    # the flat slot row * batch_size + env points back at what was recorded there
    assert torch.equal(batch["a"], batch["indices"])
    assert torch.equal(batch["s"][:, 0], (batch["indices"] // 4).to(torch.float32))


def test_sampling_frequencies_match_priorities_chi_square() -> None:
    alpha = 0.7
    buf = _filled(buffer_len=10, batch_size=4, alpha=alpha, beta_increment=0.0)
    errors = torch.linspace(-3.0, 5.0, 40)  # negative TD errors count by magnitude
    buf.update_priorities(torch.arange(40), errors)
    p = (errors.abs().double() + buf.epsilon) ** alpha
    counts = torch.zeros(40)
    for _ in range(200):  # 2e5 draws
        counts += torch.bincount(buf.sample(1000)["indices"], minlength=40)
    expected = (p / p.sum() * counts.sum()).numpy()
    assert stats.chisquare(counts.numpy(), expected).pvalue > 1e-3
    # the statistic can tell alpha apart: the same counts reject P ~ p^1
    p1 = errors.abs().double() + buf.epsilon
    assert stats.chisquare(counts.numpy(), (p1 / p1.sum() * counts.sum()).numpy()).pvalue < 1e-12


def test_weights_match_the_formula_over_the_whole_buffer() -> None:
    buf = _filled(buffer_len=100, batch_size=4, alpha=0.6, beta=0.5, beta_increment=0.0)
    errors = torch.rand(400, generator=torch.Generator().manual_seed(5)) * 2 + 0.5
    errors[7] = 0.0  # the smallest priority, which a batch of 16 almost never contains
    buf.update_priorities(torch.arange(400), errors)
    batch = buf.sample(16)
    assert 7 not in batch["indices"].tolist()
    p = (errors.double().abs() + buf.epsilon) ** 0.6
    prob = p / p.sum()
    w_all = (400 * prob) ** -0.5
    expected = w_all[batch["indices"]] / w_all.max()  # normalised by the largest weight in the buffer
    np.testing.assert_allclose(batch["weights"].numpy(), expected.numpy(), rtol=1e-6)
    assert float(batch["weights"].max()) < 0.2  # not by the batch's own maximum (which would be 1)


def test_beta_anneals_after_each_sample_and_stops_at_one() -> None:
    buf = _filled(beta=0.4, beta_increment=0.25)
    buf.update_priorities(torch.arange(40), torch.arange(40.0))
    used = []
    for _ in range(5):
        batch = buf.sample(16)
        leaf = buf.tree.get(batch["indices"])
        # recover the beta this batch used from its weights: w = (leaf / min_leaf)^-beta
        ratio = (leaf / buf.tree.min_nonzero()).numpy()
        mask = ratio > 1.01
        used.append(float(np.median(-np.log(batch["weights"].numpy()[mask]) / np.log(ratio[mask]))))
    np.testing.assert_allclose(used, [0.4, 0.65, 0.9, 1.0, 1.0], atol=1e-4)
    assert buf.beta == 1.0 and buf.sample_calls == 5


def test_new_entries_get_the_current_maximum_priority() -> None:
    buf = PrioritizedExperienceBuffer(6, 2, alpha=0.5, seed=0)
    buf.record("x", torch.zeros(2))
    buf.inc()
    assert buf.max_priority() == 1.0 and buf.priorities()[:2].tolist() == [1.0, 1.0]  # empty buffer: 1.0
    buf.update_priorities(torch.tensor([0, 1]), torch.tensor([0.02, 0.01]))  # TD errors far below 1
    buf.record("x", torch.zeros(2))
    buf.inc()
    # torchrl #2210: a fixed max of 1.0 would dwarf these errors forever; we use the buffer's max
    np.testing.assert_allclose(buf.priorities()[2:4].numpy(), [0.02 + 1e-6] * 2)
    buf.update_priorities(torch.tensor([1]), torch.tensor([7.0]))
    buf.record("x", torch.zeros(2))
    buf.inc()
    np.testing.assert_allclose(buf.priorities()[4:6].numpy(), [7.0 + 1e-6] * 2)


def test_repeated_indices_in_one_update_keep_the_last_error() -> None:
    buf = _filled(alpha=1.0)
    buf.update_priorities(torch.tensor([3, 3, 9, 3]), torch.tensor([5.0, 6.0, 2.0, 0.5]))
    assert buf.priorities()[3] == pytest.approx(0.5 + 1e-6)
    assert buf.priorities()[9] == pytest.approx(2.0 + 1e-6)
    assert buf.tree.total() == pytest.approx(38 * 1.0 + 0.5 + 2.0 + 2e-6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_errors_are_refused_and_nothing_changes(bad: float) -> None:
    buf = _filled()
    before = buf.priorities().clone()
    with pytest.raises(ValueError, match=r"error at position 1 \(index 5\)"):
        buf.update_priorities(torch.tensor([4, 5]), torch.tensor([1.0, bad]))
    assert torch.equal(buf.priorities(), before)


def test_negative_nan_infinite_raw_priorities_are_refused() -> None:
    buf = _filled()
    for bad, kind in ((-0.5, "negative"), (float("nan"), "NaN"), (float("inf"), "infinite")):
        with pytest.raises(ValueError, match=f"position 0 is {kind}"):
            buf.set_priorities(torch.tensor([2]), torch.tensor([bad]))
    buf.set_priorities(torch.tensor([2]), torch.tensor([4.0]))
    assert buf.priorities()[2] == pytest.approx(4.0)


def test_update_outside_committed_entries_is_refused() -> None:
    buf = PrioritizedExperienceBuffer(10, 2, seed=0)
    buf.record("x", torch.zeros(2))
    buf.inc()
    with pytest.raises(IndexError, match="index 2 is outside the 2 committed entries"):
        buf.update_priorities(torch.tensor([2]), torch.tensor([1.0]))


def test_a_row_being_rewritten_is_never_sampled() -> None:
    buf = _filled(buffer_len=3, batch_size=2)
    buf.record("s", torch.full((2, 3), -1.0))  # wraps onto row 0; "a" of row 0 still holds old data
    assert buf.get_sample_count() == 4
    buf.update_priorities(torch.tensor([0, 1, 2]), torch.tensor([9.0, 9.0, 9.0]))  # stale indices of row 0
    for _ in range(20):
        assert bool((buf.sample(32)["indices"] >= 2).all())
    buf.record("a", torch.tensor([100, 101]))
    buf.inc()
    assert buf.get_sample_count() == 6 and buf.priorities()[0] > 0
    seen = torch.cat([buf.sample(64)["indices"] for _ in range(10)])
    assert {0, 1} <= set(seen.tolist())


def test_uniform_buffer_has_the_same_interface() -> None:
    buf = ExperienceBuffer(4, 3, seed=1)
    for step in range(6):  # wraps
        buf.record("v", torch.full((3,), float(step)))
        buf.inc()
    batch = buf.sample(600)
    assert torch.equal(batch["weights"], torch.ones(600))
    assert set(batch["v"].tolist()) == {2.0, 3.0, 4.0, 5.0}  # only the newest 4 rows survive
    counts = torch.bincount(batch["indices"], minlength=12).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3
    buf.update_priorities(batch["indices"], torch.zeros(600))  # accepted, changes nothing
    with pytest.raises(ValueError, match="must be finite"):
        buf.update_priorities(torch.tensor([0]), torch.tensor([float("nan")]))
    buf.record("v", torch.zeros(3))  # tears row 2 (next to be overwritten)
    assert not bool(((buf.sample(300)["indices"] // 3) == 2).any())


def test_extend_is_record_inc_vectorised() -> None:
    a = PrioritizedExperienceBuffer(5, 2, seed=3)
    b = PrioritizedExperienceBuffer(5, 2, seed=3)
    data = torch.arange(14.0).reshape(14, 1)
    a.extend({"x": data})  # 7 rows into 5: the newest 5 survive
    for row in range(7):
        b.record("x", data[2 * row : 2 * row + 2])
        b.inc()
    assert torch.equal(a._storage["x"], b._storage["x"])
    assert (a._head, a.get_total_samples()) == (b._head, b.get_total_samples())
    assert torch.equal(a.priorities(), b.priorities())
    with pytest.raises(ValueError, match="non-zero multiple of batch_size 2"):
        a.extend({"x": torch.zeros(3, 1)})
    with pytest.raises(ValueError, match="differ from the buffer's"):
        a.extend({"y": torch.zeros(2, 1)})
    with pytest.raises(ValueError, match="3 priorities for 2 new entries"):
        a.extend({"x": torch.zeros(2, 1)}, priorities=torch.ones(3))
    assert a.get_total_samples() == 14  # refused calls changed nothing


def test_record_errors_name_the_problem() -> None:
    buf = PrioritizedExperienceBuffer(4, 2)
    with pytest.raises(ValueError, match="expected leading dimension batch_size=2"):
        buf.record("s", torch.zeros(3, 5))
    with pytest.raises(ValueError, match="reserved"):
        buf.record("weights", torch.zeros(2))
    with pytest.raises(ValueError, match="nothing has been recorded"):
        buf.inc()
    buf.record("s", torch.zeros(2, 5))
    buf.record("d", torch.zeros(2, dtype=torch.bool))
    buf.inc()
    with pytest.raises(ValueError, match=r"expected shape \(2, 5\) dtype torch.float32"):
        buf.record("s", torch.zeros(2, 4))
    with pytest.raises(ValueError, match="new field after 2 committed entries"):
        buf.record("late", torch.zeros(2))
    buf.record("s", torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"missing fields \['d'\]"):
        buf.inc()
    with pytest.raises(ValueError, match="holds no committed entries"):
        PrioritizedExperienceBuffer(4, 2).sample(3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": -0.1}, r"alpha must be in \[0.0, 1.0\]"),
        ({"alpha": 1.5}, r"alpha must be in \[0.0, 1.0\]"),
        ({"beta": 1.2}, r"beta must be in \[0.0, 1.0\]"),
        ({"beta_increment": -1e-3}, "beta_increment must be in"),
        ({"epsilon": 0.0}, r"epsilon must be in \(0.0, 1.0\]"),
        ({"epsilon": float("nan")}, "epsilon must be a finite number"),
        ({"buffer_len": 0}, "buffer_len must be a positive int"),
        ({"batch_size": 2.5}, "batch_size must be a positive int"),
    ],
)
def test_bad_buffer_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    args = {"buffer_len": 4, "batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        PrioritizedExperienceBuffer(**args)  # type: ignore[arg-type]


def test_reset_empties_contents_but_keeps_the_beta_schedule() -> None:
    buf = _filled(beta_increment=0.1)
    buf.sample(4)
    buf.reset()
    assert buf.get_sample_count() == 0 and buf.tree.total() == 0.0 and buf.fields == {}
    assert buf.beta == pytest.approx(0.5)
    buf.record("z", torch.zeros(4))
    buf.inc()
    assert buf.sample(2)["z"].shape == (2,)


def test_alpha_zero_is_uniform() -> None:
    buf = _filled(alpha=0.0, beta_increment=0.0)
    buf.update_priorities(torch.arange(40), torch.linspace(0, 100, 40))
    counts = sum(torch.bincount(buf.sample(500)["indices"], minlength=40) for _ in range(40))
    assert stats.chisquare(counts.numpy()).pvalue > 1e-3
    assert math.isclose(float(buf.sample(8)["weights"].min()), 1.0)


def test_importing_trainers_and_the_cli_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, mimicdata_trainers, mimicdata_trainers.per, mimicdata_cli.train; "
            "heavy = [m for m in ('torch', 'jax', 'mujoco') if m in sys.modules]; assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
