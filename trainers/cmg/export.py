"""ONNX export of a CMG checkpoint for deployment (a TWIST-style stack runs the generator in ONNX).

The graph is one model step in physical units, normalisation included: inputs ``frame`` [batch, D]
and ``command`` [batch, 3] (vx, vy, yaw rate in the heading frame), output ``next_frame`` [batch, D];
the batch dimension is dynamic. The robot, joint order, fps and frame layout go into the model's
metadata. ``check_onnx`` runs the file with onnxruntime against torch (the ``onnx`` extra).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from mimicdata_trainers.cmg.checkpoint import load_model
from mimicdata_trainers.cmg.features import COMMAND_FIELDS, ROOT_FIELDS

from mimicdata.errors import ValidationError

OPSET = 17


def export_onnx(checkpoint: str | Path, out: str | Path, *, robot: str | None = None) -> Path:
    """Write the checkpoint's model to ``out`` (.onnx); returns the path."""
    model, payload = load_model(checkpoint, robot)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    d = model.config.frame_dim
    example = (model.frame_mean.unsqueeze(0).repeat(2, 1), model.command_mean.unsqueeze(0).repeat(2, 1))
    with warnings.catch_warnings():  # the TorchScript exporter: no onnxscript needed, deprecated since 2.9
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, example, str(out), input_names=["frame", "command"], output_names=["next_frame"],
                          dynamic_axes={"frame": {0: "batch"}, "command": {0: "batch"}, "next_frame": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    import onnx

    proto = onnx.load(str(out))
    layout = [f"{j}.pos" for j in payload["joint_names"]] + [f"{j}.vel" for j in payload["joint_names"]]
    meta = {"robot": payload["robot"], "fps": str(payload["fps"]), "frame_dim": str(d),
            "frame_layout": json.dumps(layout + list(ROOT_FIELDS)), "command_layout": json.dumps(COMMAND_FIELDS),
            "producer": "mimicdata.cmg"}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    return out


def check_onnx(checkpoint: str | Path, onnx_path: str | Path, *, batch: int = 64, seed: int = 0,
               atol: float = 1e-4) -> float:
    """Max abs difference between onnxruntime and torch on frames around the data's statistics;
    raises :class:`ValidationError` when it exceeds ``atol`` (relative to the frame's std)."""
    import onnxruntime as ort

    model, _ = load_model(checkpoint)
    g = torch.Generator().manual_seed(seed)
    frame = model.frame_mean + model.frame_std * torch.randn(batch, model.config.frame_dim, generator=g)
    command = model.command_mean + model.command_std * torch.randn(batch, 3, generator=g)
    with torch.no_grad():
        expected = model(frame, command).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["next_frame"], {"frame": frame.numpy(), "command": command.numpy()})
    err = float(np.max(np.abs(got - expected) / model.frame_std.numpy()))
    if not err <= atol:
        raise ValidationError(f"{onnx_path}: onnxruntime differs from torch by {err:.3g} std (tolerance {atol})")
    return err
