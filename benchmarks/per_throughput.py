"""Prioritised replay throughput: `sample(B)` + `update_priorities(B)` per second at capacity 10^6.

    python benchmarks/per_throughput.py --quick
    python benchmarks/per_throughput.py --setup        # once: install the peers (below) and build torchrl's C++

Compared in the same run, in interleaved rounds, each iteration with fresh random priorities:

* **tree only** — mimicdata_trainers.SumTree (float64, stratified) against torchrl's raw
  ``PrioritizedSampler`` (C++ segment trees, float32 default and float64), cpprb's
  ``PrioritizedReplayBuffer`` with a 1-float field, and a numpy baseline (cumsum + searchsorted
  over all priorities each sample: what a naive implementation does).
* **buffer with data** — ``PrioritizedExperienceBuffer`` returning a batch of transitions
  (obs 64 + next_obs 64 + action 29 float32, reward, done) against torchrl's
  ``TensorDictPrioritizedReplayBuffer`` (LazyTensorStorage) and cpprb with the same fields.
* **memory per stored transition** — priority structures only (our tensors' bytes; the peers' RSS
  growth when they are built and filled, since their trees live in C++).

torchrl and cpprb are benchmark-only dependencies, installed by ``--setup`` into a folder of their own
(``--deps``, default ~/.cache/mimicdata/per-bench-deps) with pip's ``--target`` so the project's
environment is untouched. torchrl 0.14.1's shipped extension does not load with torch 2.13, so
``--setup`` rebuilds it from the C++ sources inside the wheel (about 1.5-3 min on 2 cores). A peer that
is missing is reported as "not measured". torch runs single-threaded (``torch.set_num_threads(1)``):
on a shared 2-core machine two threads are 10-25x slower.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEPS = Path.home() / ".cache" / "mimicdata" / "per-bench-deps"
PEERS = ["cpprb==11.0.0", "torchrl==0.14.1", "tensordict==0.15.3", "orjson", "pyvers"]
_SETUP_PY = """
import os, sys
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension
csrc = os.environ["TORCHRL_CSRC"]
setup(name="torchrl_ext", ext_modules=[CppExtension("_torchrl", [os.path.join(csrc, "pybind.cpp"),
      os.path.join(csrc, "utils.cpp")], extra_compile_args=["-O3"])], cmdclass={"build_ext": BuildExtension})
"""


def setup_peers(deps: Path) -> None:
    """pip-install the peers into ``deps`` (no dependencies pulled: torch and numpy come from this venv)
    and rebuild torchrl's C++ extension against the installed torch."""
    deps.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(deps), "--no-deps",
                    "--upgrade", *PEERS], check=True)
    csrc = deps / "torchrl" / "csrc"
    with tempfile.TemporaryDirectory() as build:
        Path(build, "setup.py").write_text(_SETUP_PY)
        env = dict(os.environ, TORCHRL_CSRC=str(csrc), MAX_JOBS="2")
        print(f"building torchrl's extension from {csrc} (1.5-3 min) ...", flush=True)
        subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=build, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        built = next(Path(build).glob("_torchrl*.so"))
        target = deps / "torchrl" / built.name
        target.unlink(missing_ok=True)
        shutil.copy2(built, target)
    print(f"peers installed in {deps}")


_MEMORY_PROBE = """
import os, sys, numpy as np, torch
sys.path.insert(0, {deps!r})
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
n = {n}
x = torch.rand(n, dtype=torch.float64); idx = torch.arange(n); ones = np.ones((n, 1), np.float32)
where, prio = np.arange(n), np.random.rand(n)
if {kind!r} == "cpprb":
    import cpprb
    before = rss()
    rb = cpprb.PrioritizedReplayBuffer(n, {{"x": {{"shape": 1}}}}, alpha=0.6)
    rb.add(x=ones)
    rb.update_priorities(where, prio)
    print((rss() - before) / n - 4)  # less the 4-byte field itself
else:
    from torchrl.data.replay_buffers.samplers import PrioritizedSampler
    dtype = torch.float32 if {kind!r} == "torchrl_f32" else torch.float64
    p = x.to(dtype)
    before = rss()
    sampler = PrioritizedSampler(n, 0.6, 0.4, dtype=dtype)
    sampler.update_priority(idx, p)
    print((rss() - before) / n)
"""


def peer_memory(kind: str, n: int, deps: Path) -> float | None:
    """Bytes per transition of a peer's priority structures: RSS growth in a fresh process (their trees
    live in C++), inputs allocated before the first reading."""
    code = _MEMORY_PROBE.format(deps=str(deps), n=n, kind=kind)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def run_rounds(cases: dict[str, Callable[[], None]], rounds: int, iters: int) -> dict[str, float]:
    """Median iterations/s of each case over ``rounds`` interleaved rounds of ``iters`` iterations."""
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, step in cases.items():
            step()  # warm: first call after another case touched the caches
            start = time.perf_counter()
            for _ in range(iters):
                step()
            rates[name].append(iters / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def tree_cases(n: int, batch: int, peers: dict[str, object], memory: dict[str, float]) -> dict[str, Callable]:
    import torch
    from mimicdata_trainers.sumtree import SumTree

    rng = np.random.default_rng(0)
    cases: dict[str, Callable] = {}
    tree = SumTree(n)
    tree.fill(torch.from_numpy(rng.random(n)))
    gen = torch.Generator().manual_seed(0)
    tree_bytes = sum(t.nbytes for t in (*tree._levels, tree._block_min, tree._block_max, tree._stale, tree._last_pos))
    memory["mimicdata SumTree (float64)"] = tree_bytes / n

    def ours() -> None:
        idx, leaf = tree.sample_stratified(batch, generator=gen)
        (leaf / tree.min_nonzero()).pow_(-0.4)  # importance weights, as the peers compute them
        tree.update(idx, torch.rand(batch, dtype=torch.float64, generator=gen))

    cases["mimicdata SumTree f64"] = ours

    prio = rng.random(n) ** 0.6

    def numpy_baseline() -> None:
        cum = np.cumsum(prio)
        idx = np.searchsorted(cum, rng.random(batch) * cum[-1], side="right").clip(max=n - 1)
        (prio[idx] / prio.min()) ** -0.4
        prio[idx] = rng.random(batch) ** 0.6

    cases["numpy cumsum+searchsorted"] = numpy_baseline

    if "torchrl" in peers:
        from torchrl.data.replay_buffers.samplers import PrioritizedSampler

        class Sized:  # the raw sampler only asks the storage for its length
            ndim = 1

            def __len__(self) -> int:
                return n

        for label, dtype in (("f32", torch.float32), ("f64", torch.float64)):
            sampler = PrioritizedSampler(n, 0.6, 0.4, dtype=dtype)
            sampler.update_priority(torch.arange(n), torch.rand(n, dtype=dtype))

            def trl(sampler: PrioritizedSampler = sampler, dtype: torch.dtype = dtype) -> None:
                idx, _ = sampler.sample(Sized(), batch)
                sampler.update_priority(idx, torch.rand(batch, dtype=dtype))

            cases[f"torchrl sampler {label}"] = trl
    if "cpprb" in peers:
        import cpprb

        rb = cpprb.PrioritizedReplayBuffer(n, {"x": {"shape": 1}}, alpha=0.6)
        rb.add(x=np.zeros((n, 1), np.float32))

        def cpp() -> None:
            out = rb.sample(batch, beta=0.4)
            rb.update_priorities(out["indexes"], rng.random(batch))

        cases["cpprb (index-only)"] = cpp
    return cases


def buffer_cases(n: int, batch: int, peers: dict[str, object]) -> dict[str, Callable]:
    import torch
    from mimicdata_trainers.per import PrioritizedExperienceBuffer

    rng = np.random.default_rng(1)
    data = {"obs": rng.standard_normal((n, 64), np.float32), "next_obs": rng.standard_normal((n, 64), np.float32),
            "action": rng.standard_normal((n, 29), np.float32), "reward": rng.standard_normal(n).astype(np.float32),
            "done": rng.random(n) < 0.01}
    cases: dict[str, Callable] = {}
    buf = PrioritizedExperienceBuffer(n, 1, seed=0)
    buf.extend({k: torch.from_numpy(v) for k, v in data.items()})
    gen = torch.Generator().manual_seed(1)

    def ours() -> None:
        out = buf.sample(batch)
        buf.update_priorities(out["indices"], torch.randn(batch, generator=gen))

    cases["mimicdata PrioritizedExperienceBuffer"] = ours
    if "torchrl" in peers:
        from tensordict import TensorDict
        from torchrl.data import LazyTensorStorage, TensorDictPrioritizedReplayBuffer

        rb = TensorDictPrioritizedReplayBuffer(alpha=0.6, beta=0.4, storage=LazyTensorStorage(n), batch_size=batch)
        rb.extend(TensorDict({k: torch.from_numpy(v) for k, v in data.items()}, batch_size=[n]))

        def trl() -> None:
            out = rb.sample()
            rb.update_priority(out["index"], torch.rand(batch))

        cases["torchrl TensorDictPrioritizedReplayBuffer"] = trl
    if "cpprb" in peers:
        import cpprb

        spec = {"obs": {"shape": 64}, "next_obs": {"shape": 64}, "action": {"shape": 29}, "reward": {},
                "done": {"dtype": np.bool_}}
        crb = cpprb.PrioritizedReplayBuffer(n, spec, alpha=0.6)
        crb.add(**data)

        def cpp() -> None:
            out = crb.sample(batch, beta=0.4)
            crb.update_priorities(out["indexes"], rng.random(batch))

        cases["cpprb PrioritizedReplayBuffer"] = cpp
    return cases


def load_peers(deps: Path) -> dict[str, object]:
    peers: dict[str, object] = {}
    if deps.is_dir():
        sys.path.insert(0, str(deps))
    try:
        import cpprb

        peers["cpprb"] = cpprb
    except ImportError as exc:
        print(f"cpprb: not measured ({exc}); run with --setup")
    try:
        import logging

        logging.getLogger("torchrl").setLevel(logging.ERROR)
        from torchrl.data.replay_buffers import samplers

        samplers.PrioritizedSampler(4, 0.6, 0.4)  # raises when the C++ trees did not load
        peers["torchrl"] = samplers
    except Exception as exc:  # ImportError, or RuntimeError("SumSegmentTreeFp32 is not available")
        print(f"torchrl: not measured ({type(exc).__name__}: {str(exc)[:80]}); run with --setup")
    return peers


def report(title: str, rates: dict[str, float], ours: str, batch: int) -> list[str]:
    peers = {k: v for k, v in rates.items() if k != ours and not k.startswith("numpy")}
    lines = [f"{title} (batch {batch}; median of rounds; higher is better)"]
    for name, rate in sorted(rates.items(), key=lambda kv: -kv[1]):
        ratio = rates[ours] / rate
        lines.append(f"  {name:<48}{rate:>9.0f} it/s   {1e3 / rate:7.2f} ms/it   ours / this = {ratio:5.2f}x")
    if peers:
        best = max(peers, key=lambda k: peers[k])
        lines.append(f"  => ours vs the fastest peer ({best}): {rates[ours] / peers[best]:.2f}x (target >= 1.0x)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds x 15 iterations instead of 7 x 60")
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--deps", type=Path, default=DEFAULT_DEPS, help="folder holding torchrl/cpprb")
    parser.add_argument("--setup", action="store_true", help="install the peers into --deps, then exit")
    parser.add_argument("--skip-buffers", action="store_true", help="tree-only comparison (less memory)")
    args = parser.parse_args()
    if args.setup:
        setup_peers(args.deps)
        return
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(REPO))
    peers = load_peers(args.deps)
    rounds, iters = (3, 15) if args.quick else (7, 60)
    print(f"capacity {args.capacity:,}, torch {torch.__version__}, 1 thread, {rounds} rounds x {iters} iterations")
    memory: dict[str, float] = {}
    cases = tree_cases(args.capacity, args.batch, peers, memory)
    lines = report("priority tree: sample + update", run_rounds(cases, rounds, iters), "mimicdata SumTree f64",
                   args.batch)
    del cases
    gc.collect()
    if not args.skip_buffers:
        cases = buffer_cases(args.capacity, args.batch, peers)
        lines += report("buffer with data: sample (incl. fetch) + update_priorities",
                        run_rounds(cases, rounds, iters), "mimicdata PrioritizedExperienceBuffer", args.batch)
        del cases
    probes = {"torchrl": [("torchrl_f32", "torchrl PrioritizedSampler f32 (sum+min trees, RSS)"),
                          ("torchrl_f64", "torchrl PrioritizedSampler f64 (sum+min trees, RSS)")],
              "cpprb": [("cpprb", "cpprb PrioritizedReplayBuffer (sum+min trees, RSS)")]}
    for peer, kinds in probes.items():
        for kind, label in kinds if peer in peers else []:
            value = peer_memory(kind, args.capacity, args.deps)
            if value is not None:
                memory[label] = value
    lines.append("priority-structure memory per stored transition (data not included)")
    lines += [f"  {k:<56}{v:6.1f} B" for k, v in memory.items()]
    if torch.cuda.is_available():
        from mimicdata_trainers.sumtree import SumTree

        tree = SumTree(args.capacity, device="cuda")
        tree.fill(torch.rand(args.capacity, dtype=torch.float64, device="cuda"))

        def gpu() -> None:
            idx, _ = tree.sample_stratified(args.batch)
            tree.update(idx, torch.rand(args.batch, dtype=torch.float64, device="cuda"))

        def synced() -> None:
            gpu()
            torch.cuda.synchronize()

        rate = run_rounds({"gpu": synced}, rounds, iters)["gpu"]
        lines.append(f"GPU ({torch.cuda.get_device_name()}): SumTree f64 sample + update {rate:.0f} it/s")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
