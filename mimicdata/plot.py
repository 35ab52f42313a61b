"""PNG plots of deployment logs: joint trajectories against the reference, and the control period.

matplotlib is imported lazily and used through its object API with the Agg canvas (no pyplot, no
global backend switch), so plotting works headless and leaves the caller's matplotlib state alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mimicdata.errors import SchemaError

if TYPE_CHECKING:
    from mimicdata.store import Store
    from mimicdata.stream import Stream

DEFAULT_JOINTS = 6


def _require_matplotlib() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError:  # pragma: no cover - depends on the install
        raise ModuleNotFoundError("plotting needs matplotlib: pip install 'mimicdata[sim]' "
                                  "(or pip install matplotlib)") from None
    return Figure, FigureCanvasAgg


def _seconds(store: Store, stream: Stream) -> np.ndarray:
    """Time axis in seconds from the session start (monotonic clock when logged)."""
    attrs = store.attrs
    if "monotonic_ns" in stream.fields:
        mono = stream.read("monotonic_ns").astype(np.int64)
        start = attrs.get("start_monotonic_ns", int(mono[0]) if len(mono) else 0)
        return (mono - start) / 1e9
    stamps = stream.timestamps()
    if stamps is not None:
        start = attrs.get("start_time_ns", int(stamps[0]) if len(stamps) else 0)
        return (stamps - start) / 1e9
    return np.arange(stream.num_rows) / (stream.fps or 1.0)


def _window(t: np.ndarray, start_s: float | None, end_s: float | None) -> np.ndarray:
    lo = -np.inf if start_s is None else start_s
    hi = np.inf if end_s is None else end_s
    return (t >= lo) & (t <= hi)


def resolve_joints(names: Sequence[str], joints: Sequence[str | int] | None) -> list[int]:
    """Indices of the requested joints: names (``left_knee_joint`` or ``left_knee``) or indices."""
    if not joints:
        return list(range(min(DEFAULT_JOINTS, len(names))))
    out = []
    for j in joints:
        if isinstance(j, int) or (isinstance(j, str) and j.isdigit()):
            i = int(j)
            if not 0 <= i < len(names):
                raise SchemaError(f"joint index {i} is out of range: the log has {len(names)} joints")
            out.append(i)
            continue
        name = j if j in names else f"{j}_joint"
        if name not in names:
            raise SchemaError(f"no joint {j!r} in the log; joints: {', '.join(names)}")
        out.append(list(names).index(name))
    return out


def _joint_stream(store: Store) -> Stream:
    for name in ("observations", "frames", *store.streams):
        if name in store.streams and "joint_pos" in store[name].fields:
            return store[name]
    raise SchemaError(f"{store.location}: no stream with joint_pos to plot (streams: {list(store.streams)})")


def plot_joints(store: Store, out: str | Path, *, joints: Sequence[str | int] | None = None,
                start_s: float | None = None, end_s: float | None = None, dpi: int = 100) -> Path:
    """Joint trajectories to a PNG (see :func:`joint_figure`); returns the path written."""
    fig = joint_figure(store, joints=joints, start_s=start_s, end_s=end_s, dpi=dpi)
    path = Path(out)
    fig.savefig(path, format="png")
    return path


def joint_figure(store: Store, *, joints: Sequence[str | int] | None = None, start_s: float | None = None,
                 end_s: float | None = None, dpi: int = 100) -> Any:
    """A matplotlib Figure of joint trajectories: one row per joint; columns position, velocity, action.

    Position and velocity are measured (``joint_pos``/``joint_vel``) against the reference
    (``ref_joint_pos``/``ref_joint_vel``) when the log has it. The action column shows the PD target
    (``actions.target_pos_full`` for that joint's motor, else ``scaled_action``) against the reference.
    """
    Figure, FigureCanvasAgg = _require_matplotlib()
    obs = _joint_stream(store)
    count = obs.shape_of("joint_pos")[0]
    names = list(store.robot.joint_names) if store.robot else [f"joint {i}" for i in range(count)]
    chosen = resolve_joints(names, joints)
    t = _seconds(store, obs)
    keep = _window(t, start_s, end_s)
    acts = store.streams.get("actions")
    action_key = None
    if acts is not None and acts.num_rows:
        action_key = "target_pos_full" if "target_pos_full" in acts.fields else (
            "scaled_action" if "scaled_action" in acts.fields else None)
    columns = [("position", "joint_pos", "ref_joint_pos", "rad"), ("velocity", "joint_vel", "ref_joint_vel", "rad/s")]
    fig = Figure(figsize=(5.0 * (len(columns) + (action_key is not None)), 2.2 * len(chosen)), dpi=dpi)
    FigureCanvasAgg(fig)
    ncols = len(columns) + (action_key is not None)
    axes = fig.subplots(len(chosen), ncols, squeeze=False, sharex=True)
    data = {k: obs.read(k) for k in ("joint_pos", "joint_vel", "ref_joint_pos", "ref_joint_vel") if k in obs.fields}
    if action_key is not None:
        assert acts is not None
        ta = _seconds(store, acts)
        keep_a = _window(ta, start_s, end_s)
        action = acts.read(action_key)
        motor_names = list(store.robot.motor_names) if store.robot else names
    for row, j in enumerate(chosen):
        for col, (title, key, ref, unit) in enumerate(columns):
            ax = axes[row][col]
            if key in data:
                ax.plot(t[keep], data[key][keep, j], lw=1.0, label="measured")
            if ref in data:
                ax.plot(t[keep], data[ref][keep, j], lw=1.0, ls="--", label="reference")
            ax.set_ylabel(f"{names[j]}\n{title} [{unit}]", fontsize=7)
        if action_key is not None:
            ax = axes[row][-1]
            k = motor_names.index(names[j]) if action_key == "target_pos_full" and names[j] in motor_names else j
            ax.plot(ta[keep_a], action[keep_a, k], lw=1.0, label=f"action ({action_key})")
            if "ref_joint_pos" in data and action_key == "target_pos_full":
                ax.plot(t[keep], data["ref_joint_pos"][keep, j], lw=1.0, ls="--", label="reference")
            ax.set_ylabel(f"{names[j]}\naction [rad]", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("time since session start [s]")
    for ax in axes[0]:
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{store.location}: {len(t[keep])} samples", fontsize=9)
    fig.tight_layout()
    return fig


def plot_timing(report: dict[str, Any], out: str | Path, *, dpi: int = 100) -> Path:
    """The control-period histogram of a :func:`mimicdata.timing.timing_report` to a PNG."""
    fig = timing_figure(report, dpi=dpi)
    path = Path(out)
    fig.savefig(path, format="png")
    return path


def timing_figure(report: dict[str, Any], *, dpi: int = 100) -> Any:
    """A matplotlib Figure of the control-period histogram (log counts), nominal period and deadline."""
    Figure, FigureCanvasAgg = _require_matplotlib()
    if "histogram" not in report:
        raise ValueError(f"stream {report.get('stream')!r}: no period histogram (too few samples or no clock)")
    h = report["histogram"]
    edges = np.asarray(h["edges_ms"])
    fig = Figure(figsize=(7, 3.5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.bar(edges[:-1], h["counts"], width=np.diff(edges), align="edge")
    ax.set_yscale("log")
    nominal = 1000.0 / report["nominal_hz"]
    ax.axvline(nominal, color="k", ls="--", lw=1, label=f"nominal {nominal:.3f} ms")
    ax.axvline(report["missed_deadlines"]["threshold_ms"], color="r", ls=":", lw=1, label="deadline")
    ax.set_xlabel("control period [ms]")
    ax.set_ylabel("count")
    ax.set_title(f"{report['stream']}: {report['samples']} samples, {report['missed_deadlines']['count']} missed "
                 f"deadlines, {h['overflow']} beyond the axis", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
