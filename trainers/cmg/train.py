"""Train the CMG on an expert store: ``train(store, out, config) -> TrainResult``.

Windows of qpos/qvel come through the training data path (``md.WindowDataset`` + ``md.batches``),
never across a clip. Each window gives ``rollout_steps + 1`` frames and their commands (the smoothed
heading-frame velocity, see :mod:`features`). The loss is the normalised MSE of a multi-step
autoregressive rollout; at every step each sample independently feeds the true frame (teacher
forcing, probability decaying per epoch) or its own prediction (scheduled sampling). Each sample is
mirrored left/right with probability ``mirror_prob`` (frames *and* commands, from the robot
description). Speed bins are balanced by sampling weights, not by duplicating windows. Inputs and
targets always come from the same window: the original swapped in a standing first frame but kept the
old target. Whole clips are held out for validation, where the model's open-loop rollout is compared
with a constant-pose and a constant-velocity predictor.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mimicdata_trainers.cmg.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from mimicdata_trainers.cmg.data import speed_weights, split_segments, summarise
from mimicdata_trainers.cmg.features import frame_dim, frames_from_qpos, robot_mirror, smoothed_commands
from mimicdata_trainers.cmg.model import CMGModel, ModelConfig

import mimicdata as md
from mimicdata.errors import ValidationError

LAST = "cmg_last.pt"


@dataclass
class TrainConfig:
    """Training recipe (defaults: the original CMG's, with its bugs fixed)."""

    epochs: int = 1000
    batch_size: int = 512
    steps_per_epoch: int | None = None  # default: one pass worth of windows
    lr: float = 3e-4
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    rollout_steps: int = 3           # autoregressive steps backpropagated through
    eval_steps: int = 10             # open-loop steps in validation
    command_window: int = 25         # frames averaged into a command (centred; 0.5 s at 50 Hz)
    teacher_forcing_start: float = 1.0
    teacher_forcing_decay: float = 0.99
    teacher_forcing_min: float = 0.1
    input_noise: float = 0.05        # on the first input frame, in standard deviations
    mirror_prob: float = 0.5
    speed_bins: int = 8
    val_fraction: float = 0.1        # of clips
    max_val_windows: int = 4096
    std_floor: float = 0.1
    hidden: int = 512
    experts: int = 8
    gate_hidden: int = 512
    layers: int = 3
    checkpoint_every: int = 50       # epochs between DIR/cmg_epochNNNN.pt
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """A JSON or YAML file of the fields above; unknown keys are an error."""
        import yaml

        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValidationError(f"{path}: not a JSON/YAML config ({str(exc).splitlines()[0]})") from None
        if not isinstance(values, dict):
            raise ValidationError(f"{path}: the config must be a mapping of field: value")
        return cls.from_dict({**values, **{k: v for k, v in overrides.items() if v is not None}}, str(path))

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValidationError(f"{where}: unknown settings {unknown}; known: {sorted(known)}")
        config = cls(**values)
        if config.command_window < 1 or config.command_window % 2 == 0:
            raise ValidationError(f"{where}: command_window must be odd and >= 1")
        if config.rollout_steps < 1 or config.eval_steps < 1 or config.batch_size < 1 or config.epochs < 1:
            raise ValidationError(f"{where}: rollout_steps, eval_steps, batch_size and epochs must be >= 1")
        return config


@dataclass
class TrainResult:
    best_val: float
    final: Path
    best: Path
    history: list[dict[str, float]] = field(default_factory=list)


def _to_training_tensors(batch: dict[str, Any], num_joints: int, half: int, steps: int, device: torch.device
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (B, steps+1, D) and the commands of each transition (B, steps, 3) from a qpos/qvel batch."""
    qpos, qvel = np.asarray(batch["qpos"]), np.asarray(batch["qvel"])
    b, w = qpos.shape[:2]
    frames = frames_from_qpos(qpos.reshape(b * w, -1), qvel.reshape(b * w, -1)).reshape(b, w, -1)
    commands = smoothed_commands(frames, num_joints, half)  # for frames half .. w-half-1
    x = frames[:, half:half + steps + 1]
    c = commands[:, 1:steps + 1]  # transition j -> j+1 is driven by the command at frame j+1
    return torch.from_numpy(np.ascontiguousarray(x)).to(device), torch.from_numpy(np.ascontiguousarray(c)).to(device)


def _mirror(x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor, perm: torch.Tensor, fsign: torch.Tensor,
            csign: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = mask.view(-1, 1, 1)
    return torch.where(m, x[..., perm] * fsign, x), torch.where(m, c * csign, c)


def rollout_losses(model: CMGModel, x: torch.Tensor, c: torch.Tensor, dt: float, num_joints: int
                   ) -> dict[str, float]:
    """Open-loop normalised MSE of the model and of constant-pose / constant-velocity predictors."""
    std = model.frame_std
    with torch.no_grad():
        pred = model.rollout(x[:, 0], c)[:, 1:]
        truth = x[:, 1:]
        hold = x[:, :1].expand_as(truth)
        steps = torch.arange(1, truth.shape[1] + 1, device=x.device, dtype=x.dtype).view(1, -1, 1)
        const_vel = hold.clone()
        const_vel[..., :num_joints] = hold[..., :num_joints] + hold[..., num_joints:2 * num_joints] * steps * dt

        def err(p: torch.Tensor) -> float:
            return float((((p - truth) / std) ** 2).mean())

        return {"model": err(pred), "const_pose": err(hold), "const_vel": err(const_vel)}


def train(store: str | Path, out: str | Path, config: TrainConfig | None = None, *, resume: bool = True,
          progress: bool = True, log: Any = print) -> TrainResult:
    """Train on the clips of expert store ``store``; checkpoints and TensorBoard logs go to ``out``.

    With ``resume`` and ``out/cmg_last.pt`` present, training continues from it (same store robot,
    same model config required).
    """
    config = config or TrainConfig()
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValidationError("device 'cuda' requested but CUDA is not available")
    out = Path(out)
    half = config.command_window // 2
    span = max(config.rollout_steps, config.eval_steps) + 1 + 2 * half
    ds = md.WindowDataset(str(store), fields=["qpos", "qvel"], window=span)
    with md.open(str(store)) as src:
        robot_meta = src.meta.get("robot") or {}
        robot, joints = robot_meta.get("name"), list(robot_meta.get("joint_names") or [])
        fps = float(src[ds.stream].fps or src.fps or 0)
        if not robot or not joints or fps <= 0:
            raise ValidationError(f"{store}: the store names no robot joints or frame rate")
        mirror = robot_mirror(robot)
        segments = src[ds.stream].segments()
        train_segs, val_segs = split_segments(len(segments), config.val_fraction, config.seed)
        summary = summarise(src[ds.stream], len(joints), half, mirror, train_segs, config.std_floor)
    num_joints, dt = len(joints), 1.0 / fps
    seg_of, frame_of = ds.windows()
    weights = speed_weights(seg_of, frame_of, summary.speed, train_segs, half + 1, config.speed_bins)
    val_pool = np.flatnonzero(np.isin(seg_of, val_segs)) if len(val_segs) else np.flatnonzero(weights > 0)
    val_idx = val_pool[np.linspace(0, len(val_pool) - 1, min(len(val_pool), config.max_val_windows)).astype(int)]

    mc = ModelConfig(frame_dim=frame_dim(num_joints), hidden=config.hidden, experts=config.experts,
                     gate_hidden=config.gate_hidden, layers=config.layers)
    torch.manual_seed(config.seed)
    model = CMGModel(mc)
    model.set_stats(*(torch.from_numpy(a) for a in (summary.frame_mean, summary.frame_std, summary.command_mean,
                                                    summary.command_std)))
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_epoch, best, history = 0, math.inf, []
    if resume and (out / LAST).is_file():
        start_epoch, best, history = _resume(out / LAST, model, opt, robot, mc, device)
        log(f"resuming from {out / LAST} at epoch {start_epoch}")
    meta = {"robot": robot, "joint_names": joints, "fps": fps,
            "command_range": [summary.command_min.tolist(), summary.command_max.tolist()],
            "train_config": {**dataclasses.asdict(config), "store": str(store)}}
    perm = torch.as_tensor(mirror.frame_perm, device=device)
    fsign = torch.as_tensor(mirror.frame_sign, device=device)
    csign = torch.as_tensor(mirror.command_sign, device=device)
    steps_per_epoch = config.steps_per_epoch or max(1, int(np.count_nonzero(weights)) // config.batch_size)
    val_batch = ds.gather(val_idx) if len(val_idx) else None
    vx, vc = (_to_training_tensors(val_batch, num_joints, half, config.eval_steps, device)
              if val_batch is not None else (None, None))
    writer = _writer(out)
    rng = torch.Generator(device="cpu").manual_seed(config.seed + 7919 * start_epoch)
    bar = _progress(progress, config.epochs, start_epoch)
    try:
        for epoch in range(start_epoch, config.epochs):
            tf = max(config.teacher_forcing_min, config.teacher_forcing_start * config.teacher_forcing_decay ** epoch)
            model.train()
            total = 0.0
            batches = iter(md.batches(ds, config.batch_size, shuffle=True, seed=config.seed + epoch, to="numpy",
                                      weights=weights, prefetch=1))
            n = 0
            try:
                for n, batch in enumerate(batches, 1):
                    x, c = _to_training_tensors(batch, num_joints, half, config.rollout_steps, device)
                    loss = _step_loss(model, x, c, tf, config, rng, perm, fsign, csign)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    opt.step()
                    total += float(loss.detach())
                    if n >= steps_per_epoch:
                        break
            finally:
                batches.close()  # stops the prefetch thread of an epoch cut short
            if not math.isfinite(total):
                raise ValidationError(f"training diverged at epoch {epoch + 1} (non-finite loss)")
            model.eval()
            row = {"epoch": epoch + 1, "train_loss": total / max(n, 1), "teacher_forcing": tf}
            if vx is not None:
                row.update({f"val_{k}": v for k, v in rollout_losses(model, vx, vc, dt, num_joints).items()})
            score = row.get("val_model", row["train_loss"])
            history.append(row)
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(k.replace("_", "/", 1), v, epoch + 1)
            state = {"epoch": epoch + 1, "best_val": min(best, score), "history": history,
                     "optimizer": opt.state_dict()}
            if score < best:
                best = score
                save_checkpoint(out / "cmg_best.pt", model, state=state, **meta)
            if (epoch + 1) % config.checkpoint_every == 0:
                save_checkpoint(out / f"cmg_epoch{epoch + 1:04d}.pt", model, state=state, **meta)
            save_checkpoint(out / LAST, model, state=state, **meta)
            if bar is not None:
                bar.set_postfix(loss=f"{row['train_loss']:.4f}", val=f"{score:.4f}")
                bar.update(1)
    finally:
        writer.close()
        if bar is not None:
            bar.close()
        ds.close()
    final = save_checkpoint(out / "cmg_final.pt", model, state={"epoch": config.epochs, "best_val": best,
                                                               "history": history}, **meta)
    (out / "history.json").write_text(json.dumps(history, indent=1))
    return TrainResult(best, final, out / "cmg_best.pt", history)


def _step_loss(model: CMGModel, x: torch.Tensor, c: torch.Tensor, tf: float, config: TrainConfig,
               rng: torch.Generator, perm: torch.Tensor, fsign: torch.Tensor, csign: torch.Tensor) -> torch.Tensor:
    b, steps = x.shape[0], c.shape[1]
    flip = (torch.rand(b, generator=rng) < config.mirror_prob).to(x.device)
    x, c = _mirror(x, c, flip, perm, fsign, csign)
    std = model.frame_std
    inp = x[:, 0] + torch.randn(x[:, 0].shape, generator=rng).to(x.device) * config.input_noise * std
    teacher = (torch.rand(b, steps, generator=rng) < tf).to(x.device)  # per sample and step
    loss = x.new_zeros(())
    for j in range(steps):
        pred = model(inp, c[:, j])
        loss = loss + (((pred - x[:, j + 1]) / std) ** 2).mean()
        inp = torch.where(teacher[:, j:j + 1], x[:, j + 1], pred)
    return loss / steps


def _resume(path: Path, model: CMGModel, opt: torch.optim.Optimizer, robot: str, mc: ModelConfig,
            device: torch.device) -> tuple[int, float, list[dict[str, float]]]:
    payload = read_checkpoint(path, robot)
    if payload["model_config"] != mc.to_dict():
        raise CheckpointError(f"{path}: model config {payload['model_config']} differs from this run's "
                              f"{mc.to_dict()}; use another --out or the same config")
    model.load_state_dict(payload["model"])
    state = payload.get("state", {})
    if "optimizer" in state:
        opt.load_state_dict(state["optimizer"])
    model.to(device)
    return int(state.get("epoch", 0)), float(state.get("best_val", math.inf)), list(state.get("history", []))


def _writer(out: Path) -> Any:
    """TensorBoard scalars under out/tb (tensorboardX, in the ``train`` extra)."""
    from tensorboardX import SummaryWriter

    out.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(str(out / "tb"))


def _progress(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="cmg train", unit="epoch")
