"""CMG reference-motion generation: ours against a faithful re-implementation of the seed's design.

    python benchmarks/cmg_generate.py                 # 4096 envs, 500 pregenerated frames, realtime fill of 100
    python benchmarks/cmg_generate.py --envs 1024 --frames 100 --baseline-frames 3   # quicker

Both sides run the same network (the original's evaluation size: 4 experts, 512 wide, gating 512; random
weights: speed does not depend on training) and are checked to give the same frames. Each variant runs
in a child process of its own, so its peak resident memory (``ru_maxrss``) is its own:

* **ours, pregenerated** — ``CMGMotionGenerator(mode="pregenerated")``: experts blended at the outputs
  (``sum_k g_k (x W_k + b_k)``, one GEMM over the gated inputs), frames written into one preallocated
  [envs, frames, 65] block.
* **seed, pregenerated** — the seed's MoE blends the expert *weights* per sample (a [envs, in, out]
  tensor per layer: 4 GiB for the 512x512 layer at 4096 envs) and fills a preallocated
  [envs, frames, 58] buffer (its own memory formula).
* **ours, realtime fill** — ``buffer_size`` calls of ``get_motion()`` in realtime mode: one batched step
  each, written into the tensor ring buffer.
* **seed, realtime fill** — generate ``buffer_size`` frames with the blended-weight model, push each
  env's frames into its own ``collections.deque`` in a Python loop, then pop them env by env.

The seed's model steps are slow enough on a CPU that they run for ``--baseline-frames`` frames and the
totals are extrapolated linearly (every step does the same work); its Python deque bookkeeping runs in
full. Peak memory: ``peak`` is the child's maximum RSS, ``working`` that minus its RSS after torch and
the model were loaded. torch runs single-threaded (``--threads``): on a shared 2-core machine two
threads are 10-25x slower.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("ours_pregen", "seed_pregen", "ours_realtime", "seed_realtime")


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_checkpoint(path: Path) -> None:
    import torch
    from mimicdata_trainers.cmg import save_checkpoint
    from mimicdata_trainers.cmg.model import CMGModel, ModelConfig

    import mimicdata as md

    torch.manual_seed(0)
    model = CMGModel(ModelConfig(frame_dim=65, hidden=512, experts=4, gate_hidden=512))
    torch.nn.init.normal_(model.layers[-1].weight, std=0.002)
    mean = torch.zeros(65)
    mean[58] = 0.78
    model.set_stats(mean, torch.full((65,), 0.5), torch.zeros(3), torch.ones(3))
    save_checkpoint(path, model, robot="g1_29dof", joint_names=list(md.load_robot("g1_29dof").joint_names), fps=50.0)


class SeedModel:
    """The seed's forward pass: expert weights blended per sample, then a batched matrix product."""

    def __init__(self, model: object) -> None:
        self.m = model

    def __call__(self, frame: torch.Tensor, command: torch.Tensor) -> torch.Tensor:

        m = self.m
        x = (frame - m.frame_mean) / m.frame_std
        h = torch.cat([x, (command - m.command_mean) / m.command_std], -1)
        gates = torch.softmax(m.gate(h), -1)
        for i, layer in enumerate(m.layers):
            w = torch.einsum("be,eio->bio", gates, layer.weight)  # [B, in, out]
            h = torch.bmm(h.unsqueeze(1), w).squeeze(1) + gates @ layer.bias
            if i < len(m.layers) - 1:
                h = torch.nn.functional.elu(h)
        return (x + h) * m.frame_std + m.frame_mean


def run_variant(variant: str, ckpt: str, envs: int, frames: int, buffer: int, base_frames: int) -> dict:
    import torch
    from mimicdata_trainers.cmg import CMGMotionGenerator, load_model

    out: dict = {"variant": variant}
    if variant.startswith("ours"):
        mode = "pregenerated" if variant == "ours_pregen" else "realtime"
        gen = CMGMotionGenerator(ckpt, num_envs=1, device="cpu", mode=mode, preload_duration=2, buffer_size=1)
        base = _rss_mib()
        cmd = torch.rand(envs, 3) * torch.tensor([1.5, 0.4, 1.0]) - torch.tensor([0.3, 0.2, 0.5])
        if variant == "ours_pregen":  # the constructor pregenerates too: time the reset with new commands
            gen = CMGMotionGenerator(ckpt, num_envs=envs, device="cpu", mode=mode, preload_duration=frames)
            t0 = time.perf_counter()
            gen.reset(commands=cmd)
            out["seconds"] = time.perf_counter() - t0
            out["frames"] = frames
        else:
            gen = CMGMotionGenerator(ckpt, num_envs=envs, device="cpu", mode=mode, buffer_size=buffer)
            gen.reset(commands=cmd)
            t0 = time.perf_counter()
            for _ in range(buffer):
                gen.get_motion()
            out["seconds"] = time.perf_counter() - t0
            out["frames"] = buffer
        out["step_s"] = out["seconds"] / out["frames"]
    else:
        model, _ = load_model(ckpt)
        seed = SeedModel(model)
        base = _rss_mib()
        frame = model.frame_mean.expand(envs, 65).clone()
        cmd = torch.rand(envs, 3)
        with torch.no_grad():
            if variant == "seed_pregen":
                store = torch.zeros(envs, frames, 58)  # preallocated, as the seed's memory formula says
                t0 = time.perf_counter()
                for t in range(base_frames):
                    frame = seed(frame, cmd)
                    store[:, t] = frame[:, :58]
                out["step_s"] = (time.perf_counter() - t0) / base_frames
                out["seconds"] = out["step_s"] * frames
                out["frames"] = frames
            else:
                buffers = [deque(maxlen=buffer) for _ in range(envs)]
                t0 = time.perf_counter()
                steps = []
                for _ in range(base_frames):
                    frame = seed(frame, cmd)
                    steps.append(frame[:, :58])
                step_s = (time.perf_counter() - t0) / base_frames
                traj = torch.stack(steps * (buffer // base_frames + 1), 1)[:, :buffer]  # same shape as a full fill
                t1 = time.perf_counter()
                for i in range(envs):  # the seed's per-env Python loop
                    buffers[i].clear()
                    for t in range(buffer):
                        buffers[i].append(traj[i, t])
                for _ in range(buffer):  # and consumption, env by env
                    torch.stack([buffers[i].popleft() for i in range(envs)])
                out["bookkeeping_s"] = time.perf_counter() - t1
                out["step_s"] = step_s
                out["seconds"] = step_s * buffer + out["bookkeeping_s"]
                out["frames"] = buffer
    out["peak_mib"] = _peak_mib()
    out["working_mib"] = out["peak_mib"] - base
    return out


def check_equal(ckpt: str) -> float:
    import torch
    from mimicdata_trainers.cmg import load_model

    model, _ = load_model(ckpt)
    frame, cmd = model.frame_mean + 0.1 * torch.randn(64, 65), torch.randn(64, 3)
    with torch.no_grad():
        return float((model(frame, cmd) - SeedModel(model)(frame, cmd)).abs().max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", type=int, default=4096)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--buffer", type=int, default=100, help="realtime buffer_size (frames filled)")
    p.add_argument("--baseline-frames", type=int, default=3, help="seed model steps actually run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="variants to run")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--ckpt", help=argparse.SUPPRESS)
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    if a.variant:
        print(json.dumps(run_variant(a.variant, a.ckpt, a.envs, a.frames, a.buffer, a.baseline_frames)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(Path(tmp) / "cmg_bench.pt")
        make_checkpoint(Path(ckpt))
        diff = check_equal(ckpt)
        print(f"torch {torch.__version__}, {a.threads} thread(s); {a.envs} envs; max |ours - seed| per step "
              f"{diff:.2e}")
        results = {}
        for variant in a.only:
            cmd = [sys.executable, __file__, "--variant", variant, "--ckpt", ckpt, "--envs", str(a.envs),
                   "--frames", str(a.frames), "--buffer", str(a.buffer), "--baseline-frames",
                   str(a.baseline_frames), "--threads", str(a.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if res.returncode != 0:
                print(f"{variant}: failed ({res.returncode}): {res.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            results[variant] = r
            extra = f", bookkeeping {r['bookkeeping_s']:.2f} s" if "bookkeeping_s" in r else ""
            est = " (extrapolated)" if variant.startswith("seed") else ""
            print(f"{variant:<14} {r['frames']:>4} frames: {r['seconds']:8.2f} s{est}  "
                  f"({1e3 * r['step_s']:.1f} ms/step{extra}); peak RSS {r['peak_mib']:.0f} MiB, "
                  f"working {r['working_mib']:.0f} MiB")
        for kind in ("pregen", "realtime"):
            ours, seed = results.get(f"ours_{kind}"), results.get(f"seed_{kind}")
            if ours and seed:
                print(f"{kind}: speed-up x{seed['seconds'] / ours['seconds']:.1f} (target >= 2), working memory "
                      f"{ours['working_mib']:.0f} vs {seed['working_mib']:.0f} MiB; ours peak "
                      f"{ours['peak_mib'] / 1024:.2f} GiB (target <= 1 GiB)")


if __name__ == "__main__":
    main()
