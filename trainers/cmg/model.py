"""The conditional motion generator: a mixture of experts blended at the outputs.

``CMGModel(frame, command) -> next frame``, all in physical units: the z-score statistics of frames
and commands are buffers of the module, so training, the generator, rollouts and the ONNX export
normalise in exactly one way (the original z-scores motion, min-max scales commands in training and
normalises differently again in evaluation).

Each expert layer computes ``sum_k g_k (x W_k + b_k)`` with ``g`` from a gating network. That equals
``x (sum_k g_k W_k) + sum_k g_k b_k`` — the original's per-sample weight blending — but never
materialises a ``[batch, in, out]`` weight per sample (4 GiB for one 512x512 layer at 4096 envs):
the gated inputs ``[g_1 x, ..., g_E x]`` (``batch x experts x in``) meet the stacked weights in one
matrix product.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the network. The original CMG: 8 experts, 512 wide, gating 512 wide."""

    frame_dim: int
    command_dim: int = 3
    hidden: int = 512
    experts: int = 8
    gate_hidden: int = 512
    layers: int = 3  # expert layers: in -> hidden (-> hidden)* -> frame_dim

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class MoELinear(nn.Module):
    """``y = sum_k g_k (x W_k + b_k)`` for gates ``g`` (batch, experts) that sum to one."""

    def __init__(self, experts: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(experts, d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(experts, d_out))
        bound = 1.0 / math.sqrt(d_in)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        experts, d_in, d_out = self.weight.shape
        gated = (gates.unsqueeze(-1) * x.unsqueeze(-2)).reshape(*x.shape[:-1], experts * d_in)
        return gated @ self.weight.reshape(experts * d_in, d_out) + gates @ self.bias


class CMGModel(nn.Module):
    """Previous frame + command -> next frame, in physical units (normalisation inside).

    The network predicts the change of the normalised frame; the statistics are buffers, saved in the
    state dict and exported with the graph.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d_in = config.frame_dim + config.command_dim
        self.gate = nn.Sequential(nn.Linear(d_in, config.gate_hidden), nn.ELU(),
                                  nn.Linear(config.gate_hidden, config.experts))
        sizes = [d_in] + [config.hidden] * (config.layers - 1) + [config.frame_dim]
        self.layers = nn.ModuleList(MoELinear(config.experts, a, b) for a, b in itertools.pairwise(sizes))
        nn.init.zeros_(self.layers[-1].weight)  # start as "nothing changes": a stable first rollout
        for name, dim in (("frame", config.frame_dim), ("command", config.command_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def set_stats(self, frame_mean: torch.Tensor, frame_std: torch.Tensor, command_mean: torch.Tensor,
                  command_std: torch.Tensor) -> None:
        for name, value in (("frame_mean", frame_mean), ("frame_std", frame_std), ("command_mean", command_mean),
                            ("command_std", command_std)):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32))

    def normalise_frame(self, frame: torch.Tensor) -> torch.Tensor:
        return (frame - self.frame_mean) / self.frame_std

    def forward(self, frame: torch.Tensor, command: torch.Tensor) -> torch.Tensor:
        """Next frame (..., frame_dim) from frame (..., frame_dim) and command (..., command_dim)."""
        x = self.normalise_frame(frame)
        c = (command - self.command_mean) / self.command_std
        h = torch.cat([x, c], dim=-1)
        gates = torch.softmax(self.gate(h), dim=-1)
        for i, layer in enumerate(self.layers):
            h = layer(h, gates)
            if i < len(self.layers) - 1:
                h = nn.functional.elu(h)
        return (x + h) * self.frame_std + self.frame_mean

    @torch.no_grad()
    def rollout(self, frame: torch.Tensor, commands: torch.Tensor) -> torch.Tensor:
        """Frames (B, T+1, D) from a start (B, D) and commands (B, T, 3): the start, then T generated."""
        out = frame.new_empty(frame.shape[0], commands.shape[1] + 1, frame.shape[-1])
        out[:, 0] = frame
        for t in range(commands.shape[1]):
            frame = self(frame, commands[:, t])
            out[:, t + 1] = frame
        return out
