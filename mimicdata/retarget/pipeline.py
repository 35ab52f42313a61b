"""Retarget many clips with Dask and write one ``expert_trajectory`` store.

One task prepares each clip (read, map, scale); its frames are then cut into overlapping ranges,
one IK task each, and a last task stitches and finishes the clip. Only the client writes to the
store, in input order, so there is exactly one writer and no race. A clip that fails is recorded
with its error (in the returned report and in the store's attributes); the others complete.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.motion.io import SUFFIXES, detect_format
from mimicdata.motion.mapping import KEYPOINTS
from mimicdata.progress import progress_printer
from mimicdata.retarget.clip import (
    ClipResult,
    ClipSpec,
    PreparedClip,
    RetargetSettings,
    finish_clip,
    prepare_clip,
    solve_range,
    split_ranges,
    stitch,
)
from mimicdata.retarget.ik import IKConfig

PIECE_FRAMES = 1500  # source frames per IK task; longer clips are split
OVERLAP_FRAMES = 30  # frames shared by neighbouring pieces, blended when stitching
# Dask starts workers with MALLOC_TRIM_THRESHOLD_=64 KiB. The IK frees and re-allocates arrays of
# megabytes every iteration, and trimming that often halves its speed (678 -> 318 frames/s measured
# in one process), so our workers keep glibc's adaptive default. Set the same on an external cluster.
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


@dataclass
class ClipFailure:
    """A clip that could not be retargeted, with the reason."""

    index: int
    source: str
    name: str
    error: str
    error_type: str


@dataclass
class RetargetReport:
    """What a run did: clips written (with quality), failures, and where the time went."""

    store: str
    clips: list[dict[str, Any]] = field(default_factory=list)
    failures: list[ClipFailure] = field(default_factory=list)
    source_frames: int = 0
    output_frames: int = 0
    ik_seconds: float = 0.0  # summed over tasks (worker time)
    write_seconds: float = 0.0  # client time spent appending to the store
    wall_seconds: float = 0.0
    workers: int = 0

    @property
    def ok(self) -> bool:
        """True when every clip was written."""
        return not self.failures

    def summary(self) -> str:
        """A few lines for people: totals and one line per failure."""
        lines = [f"{len(self.clips)} clip(s) written to {self.store}: {self.source_frames} source frames -> "
                 f"{self.output_frames} frames in {self.wall_seconds:.1f} s on {self.workers} worker(s)"]
        for f in self.failures:
            lines.append(f"FAILED clip {f.index} ({f.source}): {f.error_type}: {f.error}")
        return "\n".join(lines)


def expand_inputs(inputs: Iterable[str | Path]) -> list[ClipSpec]:
    """Clip specs for files, folders (every motion file inside, sorted) and extract manifests."""
    from mimicdata.retarget.extract import is_manifest, read_manifest

    specs: list[ClipSpec] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
            specs.extend(spec for f in files for spec in _file_specs(f))
        elif is_manifest(path):
            specs.extend(read_manifest(path))
        else:
            specs.extend(_file_specs(path))
    return specs


def _file_specs(path: Path) -> list[ClipSpec]:
    """One spec per clip in the file (LocoMuJoCo files may hold several trajectories)."""
    if path.suffix.lower() == ".npz" and path.is_file():
        try:
            if detect_format(path) == "locomujoco":
                with np.load(path, allow_pickle=False) as data:
                    splits = data["split_points"] if "split_points" in data.files else np.array([0, 1])
                n = max(1, len(splits) - 1)
                return [ClipSpec(source=str(path), name=f"{path.stem}_{c}" if n > 1 else path.stem,
                                 clip_in_file=c) for c in range(n)]
        except Exception:  # an unreadable file becomes a failed clip, reported later
            pass
    return [ClipSpec(source=str(path), name=path.stem)]


def retarget_to_store(inputs: Sequence[str | Path] | Sequence[ClipSpec], out: str | Path, *,
                      settings: RetargetSettings | None = None, workers: int | None = None,
                      scheduler: str | None = None, piece_frames: int = PIECE_FRAMES,
                      overlap: int = OVERLAP_FRAMES, overwrite: bool = False,
                      progress: bool | Callable[[str], None] = True,
                      attrs: dict[str, Any] | None = None) -> RetargetReport:
    """Retarget every clip of `inputs` and write them, in order, to a new store at `out`.

    ``workers``: size of the default ``LocalCluster`` (processes, one thread each; default one
    per CPU); ``0`` runs everything in this process without Dask. ``scheduler``: address of an
    existing ``dask.distributed`` scheduler to use instead.
    """
    import mimicdata as md

    settings = settings or RetargetSettings()
    specs = [s if isinstance(s, ClipSpec) else None for s in inputs]
    if all(s is not None for s in specs) and specs:
        clip_specs: list[ClipSpec] = specs  # type: ignore[assignment]
    else:
        clip_specs = expand_inputs(inputs)  # type: ignore[arg-type]
    if not clip_specs:
        raise ValueError("no input clips: give motion files, folders holding them, or a manifest")
    report = RetargetReport(store=str(out))
    run_attrs = {"retarget": {"settings": _settings_doc(settings), "keypoints": list(KEYPOINTS),
                              "inputs": len(clip_specs), "failures": []}}
    store = md.create(out, schema="expert_trajectory", robot=settings.output_robot, fps=settings.fps,
                      overwrite=overwrite, attrs={**(attrs or {}), **run_attrs})
    add_quality_stream(store)
    writer = _OrderedWriter(store, clip_specs, report, progress_printer(progress, len(clip_specs)))
    t0 = time.perf_counter()
    try:
        if workers == 0 and scheduler is None:
            report.workers = 1
            _run_inline(clip_specs, settings, writer)
        else:
            _run_dask(clip_specs, settings, writer, workers, scheduler, piece_frames, overlap, report)
    finally:
        report.wall_seconds = time.perf_counter() - t0
        writer.close()
        store.close()
    return report


QUALITY_STREAM = "retarget_quality"
DETAILS_BATCH = 32


class _OrderedWriter:
    """Collects finished clips and failures; writes clips to the store in input order.

    Per clip: the frames and the clips-stream row (one atomic ``append_segment``). The details
    (leg error, per-key-point error, rig) go to the ``retarget_quality`` stream in batches of
    DETAILS_BATCH clips and at the end; a crash may lose unflushed details, never a clip.
    Failures go to the store's attributes, which are small and rewritten only when one occurs.
    """

    def __init__(self, store: Any, specs: list[ClipSpec], report: RetargetReport,
                 progress: Callable[[str], None]) -> None:
        self.store, self.specs, self.report, self.progress = store, specs, report, progress
        self.done: dict[int, ClipResult | ClipFailure] = {}
        self.details: list[dict[str, Any]] = []  # retarget_quality rows not yet appended
        self.next = 0

    def fail(self, index: int, exc: BaseException) -> None:
        spec = self.specs[index]
        failure = ClipFailure(index=index, source=spec.source, name=spec.name or Path(spec.source).stem,
                              error=str(exc) or repr(exc), error_type=type(exc).__name__)
        self.done[index] = failure
        self.progress(f"clip {index} FAILED ({spec.source}): {failure.error_type}: {failure.error}")
        self._flush()

    def finish(self, index: int, result: ClipResult, ik_seconds: float) -> None:
        self.report.ik_seconds += ik_seconds
        self.done[index] = result
        self._flush()

    def _flush(self) -> None:
        failed = False
        while self.next in self.done:
            item = self.done.pop(self.next)
            if isinstance(item, ClipFailure):
                self.report.failures.append(item)
                failed = True
            else:
                self._write(self.next, item)
            self.next += 1
        if failed:
            self._record_failures()

    def _write(self, index: int, result: ClipResult) -> None:
        t0 = time.perf_counter()
        clip_index = self.store.append_segment("clips", frames=result.frames, row=result.row)
        info = result.info
        q = result.quality
        self.details.append({
            "clip_index": clip_index, "input_index": index, "kp_err_leg_mean_cm": q.kp_err_leg_mean_cm,
            "kp_err_per_keypoint_cm": list(q.per_keypoint_mean_cm.values()), "first_frame": info["first_frame"],
            "source_frames": info["source_frames"], "floor_shift_m": info["floor_shift_m"] + info["settle_shift_m"],
            "rig": info["rig"]})
        if len(self.details) >= DETAILS_BATCH:
            self._flush_details()
        self.report.write_seconds += time.perf_counter() - t0
        n = len(result.frames["qpos"])
        self.report.source_frames += int(info["source_frames"])
        self.report.output_frames += n
        self.report.clips.append({"clip_index": clip_index, "input": index, "name": result.name,
                                  "source": result.source, "frames": n, **info})
        self.progress(f"clip {index} -> {clip_index} {result.name}: {n} frames, key points "
                      f"{q.kp_err_mean_cm:.1f} cm (legs {q.kp_err_leg_mean_cm:.1f}), "
                      f"penetration {q.penetration_max_cm:.2f} cm, skating {q.skating_cm_s:.1f} cm/s")

    def _flush_details(self) -> None:
        """Append the buffered detail rows in one batch (a per-clip append cost 30% of the write)."""
        if not self.details:
            return
        batch = {k: np.array([d[k] for d in self.details]) for k in self.details[0]}
        for k in ("kp_err_leg_mean_cm", "kp_err_per_keypoint_cm", "floor_shift_m"):
            batch[k] = batch[k].astype(np.float32)
        self.store[QUALITY_STREAM].append(batch)
        self.details.clear()

    def _record_failures(self) -> None:
        doc = dict(self.store.attrs.get("retarget", {}))
        doc["failures"] = [asdict(f) for f in self.report.failures]
        self.store.update_attrs({"retarget": doc})

    def close(self) -> None:
        # Anything left (a run interrupted mid-way) is reported, never silently dropped.
        left = [self.done[i] for i in sorted(self.done) if isinstance(self.done[i], ClipFailure)]
        self.report.failures.extend(left)  # type: ignore[arg-type]
        self.done.clear()
        if not self.store.closed:
            t0 = time.perf_counter()
            self._flush_details()
            self.report.write_seconds += time.perf_counter() - t0
            if left:
                self._record_failures()


def add_quality_stream(store: Any) -> None:
    """The per-clip details stream (one row per written clip, keyed by clip_index)."""
    store.add_stream(QUALITY_STREAM, fields={
        "clip_index": {"dtype": "int64", "shape": [], "unit": "clip", "description": "Row of the clips stream."},
        "input_index": {"dtype": "int64", "shape": [], "unit": "clip", "description": "Position in the inputs."},
        "kp_err_leg_mean_cm": {"dtype": "float32", "shape": [], "unit": "cm",
                               "description": "Mean error of hip, knee, ankle and toe key points."},
        "kp_err_per_keypoint_cm": {"dtype": "float32", "shape": ["keypoint"], "unit": "cm",
                                   "description": "Mean error per key point (order: attrs.retarget.keypoints)."},
        "first_frame": {"dtype": "int64", "shape": [], "unit": "frame", "description": "First source frame."},
        "source_frames": {"dtype": "int64", "shape": [], "unit": "frame", "description": "Source frames used."},
        "floor_shift_m": {"dtype": "float32", "shape": [], "unit": "m", "description": "Vertical shift applied."},
        "rig": {"dtype": "string", "shape": [], "unit": "text", "description": "Recognised rig or mapping file."},
    }, dims={"keypoint": len(KEYPOINTS)})


def _run_inline(specs: list[ClipSpec], settings: RetargetSettings, writer: _OrderedWriter) -> None:
    for i, spec in enumerate(specs):
        try:
            t0 = time.perf_counter()
            prepared = prepare_clip(spec, settings)
            qpos = solve_range(prepared, 0, prepared.num_frames, settings)
            result = finish_clip(prepared, qpos, settings)
        except Exception as exc:  # one bad clip must not stop the batch
            writer.fail(i, exc)
            continue
        writer.finish(i, result, time.perf_counter() - t0)


def _timed_prepare(spec: ClipSpec, settings: RetargetSettings) -> tuple[PreparedClip, float]:
    t0 = time.perf_counter()
    return prepare_clip(spec, settings), time.perf_counter() - t0


def _num_frames(prepared: tuple[PreparedClip, float]) -> int:
    return prepared[0].num_frames


def _timed_solve(prepared: tuple[PreparedClip, float], start: int, stop: int,
                 settings: RetargetSettings) -> tuple[int, int, np.ndarray, float]:
    t0 = time.perf_counter()
    qpos = solve_range(prepared[0], start, stop, settings)
    return start, stop, qpos, time.perf_counter() - t0


def _timed_finish(prepared: tuple[PreparedClip, float], settings: RetargetSettings,
                  *pieces: tuple[int, int, np.ndarray, float]) -> tuple[ClipResult, float]:
    t0 = time.perf_counter()
    qpos = stitch([(a, b, q) for a, b, q, _ in pieces])
    result = finish_clip(prepared[0], qpos, settings)
    spent = prepared[1] + sum(p[3] for p in pieces) + time.perf_counter() - t0
    return result, spent


def _run_dask(specs: list[ClipSpec], settings: RetargetSettings, writer: _OrderedWriter,
              workers: int | None, scheduler: str | None, piece_frames: int, overlap: int,
              report: RetargetReport) -> None:
    from distributed import as_completed

    client, cluster = _connect(workers, scheduler)
    try:
        report.workers = len(client.scheduler_info().get("workers", {}))
        run = uuid.uuid4().hex[:8]
        role: dict[str, tuple[str, int]] = {}
        prepared_futures: dict[int, Any] = {}
        pieces: dict[int, list[Any]] = {}
        for i, spec in enumerate(specs):
            fut = client.submit(_timed_prepare, spec, settings, key=f"prepare-{run}-{i}")
            role[fut.key] = ("prepare", i)
            prepared_futures[i] = fut
        queue = as_completed(list(prepared_futures.values()))
        for fut in queue:
            kind, i = role.pop(fut.key)
            if fut.status != "finished":
                _fail_clip(writer, i, fut)
                prepared_futures.pop(i, None)
                pieces.pop(i, None)
                continue
            if kind == "prepare":
                # The frame count comes back in a tiny task so the clip's data stays on the workers.
                count = client.submit(_num_frames, fut, key=f"count-{run}-{i}")
                role[count.key] = ("count", i)
                queue.add(count)
            elif kind == "count":
                prep = prepared_futures[i]
                ranges = split_ranges(fut.result(), piece_frames, overlap)
                pieces[i] = [client.submit(_timed_solve, prep, a, b, settings, key=f"ik-{run}-{i}-{a}")
                             for a, b in ranges]
                final = client.submit(_timed_finish, prep, settings, *pieces[i], key=f"finish-{run}-{i}")
                role[final.key] = ("finish", i)
                queue.add(final)
            else:
                result, spent = fut.result()
                writer.finish(i, result, spent)
                # Drop our references so the workers can free the clip's intermediate results.
                prepared_futures.pop(i, None)
                pieces.pop(i, None)
                pieces.pop(i, None)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _fail_clip(writer: _OrderedWriter, index: int, fut: Any) -> None:
    try:
        exc = fut.exception()
    except Exception as err:  # a cancelled future has no exception object
        exc = err
    writer.fail(index, exc if isinstance(exc, BaseException) else RuntimeError(str(exc)))


def _connect(workers: int | None, scheduler: str | None) -> tuple[Any, Any]:
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    n = workers or _cpu_count()
    # One BLAS thread per worker: the IK's batched linear algebra would otherwise oversubscribe.
    env = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    with dask.config.set(WORKER_CONFIG):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                               env=env, silence_logs=logging.CRITICAL)
    return Client(cluster), cluster


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _settings_doc(settings: RetargetSettings) -> dict[str, Any]:
    """Settings as JSON; IK weights only where they differ from this version's defaults."""
    doc = {k: v for k, v in asdict(settings).items() if k not in ("ik", "read")}
    doc["read"] = {k: v for k, v in asdict(settings.read).items() if k not in ("start", "stop")}
    default = IKConfig()
    doc["ik"] = {k: v for k, v in asdict(settings.ik).items() if getattr(default, k) != getattr(settings.ik, k)}
    return doc

