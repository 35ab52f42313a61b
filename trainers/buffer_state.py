"""The one explicit state of a replay buffer (brax-style): a value that says everything about it.

:meth:`ExperienceBuffer.state` returns a :class:`BufferState`; :meth:`ExperienceBuffer.from_state`
builds a buffer from one. Both encodings of a buffer go through it and nothing else touches the
buffer's private fields: ``state_dict()`` / ``load_state_dict()`` (the torch convention, for
``torch.save``) and the store snapshot of :mod:`.snapshot` (one row per committed entry).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mimicdata.errors import StateError

if TYPE_CHECKING:
    import torch

__all__ = ["BufferState", "PrioritySettings"]

KINDS = ("ExperienceBuffer", "PrioritizedExperienceBuffer")


@dataclass(frozen=True)
class PrioritySettings:
    """What a prioritised buffer adds: its exponents, the beta schedule position and the sum-tree leaves."""

    alpha: float
    beta: float
    beta_increment: float
    epsilon: float
    sample_calls: int
    leaves: torch.Tensor   # (capacity,) float64: p ** alpha per slot, 0 where nothing can be drawn
    fanout: int = 16

    def priorities(self) -> torch.Tensor:
        """Raw priorities ``p`` of every slot (0 for slots that cannot be drawn)."""
        return raw_priorities(self.leaves, self.alpha)


def raw_priorities(leaves: torch.Tensor, alpha: float) -> torch.Tensor:
    """``p`` from sum-tree leaves ``p ** alpha`` (alpha 0: 1 wherever a slot can be drawn)."""
    return leaves.pow(1.0 / alpha) if alpha > 0 else (leaves > 0).to(leaves.dtype)


@dataclass(frozen=True)
class BufferState:
    """Geometry, ring position, stored data and sampling state of a replay buffer.

    ``storage`` maps each field to a ``(buffer_len, batch_size, ...)`` tensor; ``head`` is the row
    ``record`` writes next; ``total_samples`` counts committed entries since the start (overwritten
    ones too); ``torn`` says the head row is committed data being rewritten; ``recorded`` names the
    fields of the head row recorded since the last ``inc()``; ``rng`` is the generator state
    (``torch.Generator.get_state()``; None keeps the generator as it is); ``priority`` is None for the uniform buffer.
    """

    kind: str
    buffer_len: int
    batch_size: int
    head: int
    total_samples: int
    storage: Mapping[str, torch.Tensor]
    rng: torch.Tensor | None
    torn: bool = False
    recorded: tuple[str, ...] = ()
    priority: PrioritySettings | None = None

    @property
    def capacity(self) -> int:
        return self.buffer_len * self.batch_size

    @property
    def committed(self) -> int:
        """Entries that can be drawn (a row being rewritten cannot)."""
        committed = min(self.total_samples, self.capacity)
        return committed - self.batch_size if self.torn else committed

    def check(self) -> BufferState:
        """Refuse a state that no buffer could have been in (a corrupted or hand-edited one)."""
        if self.kind not in KINDS:
            raise StateError(f"buffer state kind {self.kind!r} is not one of {list(KINDS)}")
        if (self.priority is None) != (self.kind == "ExperienceBuffer"):
            raise StateError(f"buffer state of kind {self.kind} {'lacks' if self.priority is None else 'has'} "
                             "priority settings")
        if not (0 <= self.head < self.buffer_len) or self.total_samples < 0:
            raise StateError(f"buffer state: head {self.head} / total_samples {self.total_samples} out of range "
                             f"for buffer_len {self.buffer_len}")
        for name, tensor in self.storage.items():
            if tuple(tensor.shape[:2]) != (self.buffer_len, self.batch_size):
                raise StateError(f"buffer state: field {name!r} has shape {tuple(tensor.shape)}, expected "
                                 f"({self.buffer_len}, {self.batch_size}, ...)")
        if self.priority is not None and tuple(self.priority.leaves.shape) != (self.capacity,):
            raise StateError(f"buffer state: {self.priority.leaves.numel()} priority leaves for "
                             f"{self.capacity} slots")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The ``state_dict()`` form: plain keys, tensors on the CPU."""
        out: dict[str, Any] = {
            "kind": self.kind, "buffer_len": self.buffer_len, "batch_size": self.batch_size,
            "head": self.head, "total_samples": self.total_samples, "torn": self.torn,
            "recorded": list(self.recorded), "storage": {k: t.cpu() for k, t in self.storage.items()},
            "rng": None if self.rng is None else self.rng.cpu()}
        if self.priority is not None:
            p = self.priority
            out.update(alpha=p.alpha, beta=p.beta, beta_increment=p.beta_increment, epsilon=p.epsilon,
                       sample_calls=p.sample_calls, leaves=p.leaves.cpu().clone(), fanout=p.fanout)
        return out

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> BufferState:
        """Read a ``state_dict()``; a missing key is a :class:`StateError` naming it."""
        try:
            priority = None
            if "leaves" in state:
                priority = PrioritySettings(
                    float(state["alpha"]), float(state["beta"]), float(state["beta_increment"]),
                    float(state["epsilon"]), int(state["sample_calls"]), state["leaves"],
                    int(state.get("fanout", 16)))
            return cls(str(state["kind"]), int(state["buffer_len"]), int(state["batch_size"]), int(state["head"]),
                       int(state["total_samples"]), dict(state["storage"]), state.get("rng"),
                       bool(state.get("torn", False)), tuple(state.get("recorded", ())), priority)
        except KeyError as exc:
            raise StateError(f"buffer state has no {exc.args[0]!r}") from None
