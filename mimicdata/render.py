"""Look at a retargeted clip: MuJoCo offscreen video, or a PNG filmstrip where no GL can be had.

MuJoCo picks its OpenGL backend (``MUJOCO_GL``) once, when it is imported, so each backend is
tried in a fresh subprocess (EGL, then OSMesa, unless ``MUJOCO_GL`` is set). If none gives a
context, the clip is drawn as a stick-figure filmstrip with matplotlib (no GL needed) and the
result says why.

Long clips: software rendering (OSMesa) runs at a few frames per second, so a 6434-frame clip takes
many minutes. The subprocess reports each frame (``progress``), has no time limit, streams frames
into the encoder (memory stays flat), and writes to a temporary file renamed into place only when
the video is whole. ``start``/``end``/``stride`` render part of a clip, or every n-th frame.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mimicdata.errors import MimicDataError

GL_BACKENDS = ("egl", "osmesa")
_NO_GL_EXIT = 3  # the subprocess's exit code when it cannot get an OpenGL context


class RenderError(MimicDataError, RuntimeError):
    """Rendering failed for a reason other than a missing OpenGL context (encoder, disk, crash)."""


class ClipNotFoundError(MimicDataError, IndexError):
    """The store has no clip of that number."""


@dataclass(frozen=True)
class FrameRange:
    """Frames ``start, start + stride, ...`` below ``end`` of a clip (``end=None``: to its end)."""

    start: int = 0
    end: int | None = None
    stride: int = 1

    def resolve(self, frames: int, where: str) -> tuple[int, int, int]:
        """``(start, end, stride)`` checked against a clip of ``frames`` frames."""
        end = frames if self.end is None else self.end
        if self.stride < 1:
            raise MimicDataError(f"{where}: stride must be >= 1, got {self.stride}")
        if not 0 <= self.start < end <= frames:
            raise MimicDataError(f"{where}: frame range {self.start}:{end} is not inside the clip's "
                                 f"{frames} frames (0 <= start < end <= {frames})")
        return self.start, end, self.stride


@dataclass(frozen=True)
class RenderResult:
    """What was written: ``kind`` is ``"mp4"``, ``"gif"`` or ``"png_filmstrip"``; `reason` says why a
    fallback was used (empty when the requested output was produced)."""

    path: Path
    kind: str
    frames: int
    reason: str = ""


def load_clip(url: str | Path, clip: int, frames: FrameRange | None = None
              ) -> tuple[np.ndarray, np.ndarray, list[str], float, str]:
    """(model qpos (T, nq of the full robot model), body_pos, body names, fps, robot) of one clip, or of
    the chosen frames of it (``fps`` is then the rate of the frames kept: ``fps / stride``)."""
    import mimicdata as md
    from mimicdata.motion.kinematics import load_robot_model

    with md.open(url) as store:
        clips = store["clips"]
        if not 0 <= clip < clips.num_rows:
            raise ClipNotFoundError(f"{url}: no clip {clip}; the store has {clips.num_rows} clip(s)")
        start, end = int(clips.read("start")[clip]), int(clips.read("end")[clip])
        first, last, stride = (frames or FrameRange()).resolve(end - start, f"{url} clip {clip}")
        rows = store["frames"]
        qpos = rows.read("qpos", start + first, start + last)[::stride].astype(np.float64)
        body_pos = rows.read("body_pos", start + first, start + last)[::stride].astype(np.float64)
        robot = store.robot
        fps = float(clips.read("fps")[clip]) / stride
    model = load_robot_model(robot.name)
    full = np.zeros((len(qpos), model.nq))
    full[:, :7] = qpos[:, :7]
    for k, joint in enumerate(robot.joint_names):  # a 23-DoF clip leaves the other joints at zero
        full[:, 7 + model.joint_names.index(joint)] = qpos[:, 7 + k]
    return full, body_pos, list(robot.body_names), fps, robot.name


def render_clip(url: str | Path, clip: int = 0, out: str | Path = "clip.mp4", *, width: int = 640,
                height: int = 480, backend: str = "auto", filmstrip_frames: int = 8,
                frames: FrameRange | None = None,
                progress: Callable[[int, int], None] | None = None) -> RenderResult:
    """Render clip `clip` of an expert_trajectory store to `out` (.mp4 or .gif), falling back to a
    PNG filmstrip (``out`` with suffix ``.png``) when no GL backend works.

    ``backend``: ``"auto"`` (MUJOCO_GL if set, else EGL then OSMesa), a MUJOCO_GL name, or
    ``"filmstrip"`` to skip MuJoCo rendering. ``frames`` picks a range / stride of the clip;
    ``progress(done, total)`` is called as frames are rendered. There is no time limit: stop a
    render with Ctrl-C. Raises :class:`RenderError` when the video cannot be written.
    """
    qpos, body_pos, body_names, fps, robot = load_clip(url, clip, frames)
    return render_frames(qpos, body_pos, body_names, robot, fps, out, width=width, height=height, backend=backend,
                         filmstrip_frames=filmstrip_frames, progress=progress)


def render_frames(qpos: np.ndarray, body_pos: np.ndarray, body_names: list[str], robot: str, fps: float,
                  out: str | Path, *, width: int = 640, height: int = 480, backend: str = "auto",
                  filmstrip_frames: int = 8, progress: Callable[[int, int], None] | None = None) -> RenderResult:
    """Render model qpos frames (T, nq) of `robot` to `out` as :func:`render_clip` does (any motion:
    a clip, a policy rollout); `body_pos` (T, bodies, 3) and `body_names` feed the filmstrip fallback."""
    out = Path(out)
    failures = []
    if backend != "filmstrip":
        candidates = [backend] if backend != "auto" else (
            [os.environ["MUJOCO_GL"]] if os.environ.get("MUJOCO_GL") else list(GL_BACKENDS))
        for gl in candidates:
            error = _render_in_subprocess(qpos, robot, fps, out, width, height, gl, progress)
            if error is None:
                return RenderResult(path=out, kind=out.suffix.lstrip(".").lower(), frames=len(qpos))
            failures.append(f"{gl}: {error}")
    png = out.with_suffix(".png")
    filmstrip(body_pos, body_names, robot, png, fps=fps, panels=filmstrip_frames)
    reason = "filmstrip requested" if backend == "filmstrip" else "no OpenGL context: " + "; ".join(failures)
    return RenderResult(path=png, kind="png_filmstrip", frames=min(filmstrip_frames, len(qpos)), reason=reason)


def _render_in_subprocess(qpos: np.ndarray, robot: str, fps: float, out: Path, width: int, height: int,
                          gl: str, progress: Callable[[int, int], None] | None = None) -> str | None:
    """Run :func:`_render_video` with MUJOCO_GL=`gl` in a fresh interpreter; None on success.

    No timeout: the child prints one ``frame <done> <total>`` line per frame, which feeds ``progress``;
    a long clip simply takes long. Its stderr goes to a file (read after it ends, so a chatty child
    cannot fill a pipe and stall)."""
    with tempfile.TemporaryDirectory() as tmp:
        qfile = Path(tmp) / "qpos.npy"
        np.save(qfile, qpos)
        args = json.dumps({"qpos": str(qfile), "robot": robot, "fps": fps, "out": str(out.resolve()),
                           "width": width, "height": height})
        env = {**os.environ, "MUJOCO_GL": gl, "PYOPENGL_PLATFORM": gl if gl != "glfw" else ""}
        with open(Path(tmp) / "stderr.txt", "w+") as err:
            proc = subprocess.Popen([sys.executable, "-c", "import sys, mimicdata.render as r; r._main(sys.argv[1])",
                                     args], env=env, stdout=subprocess.PIPE, stderr=err, text=True)
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    parts = line.split()
                    if progress is not None and len(parts) == 3 and parts[0] == "frame":
                        progress(int(parts[1]), int(parts[2]))
                code = proc.wait()
            except BaseException:  # Ctrl-C or a failing callback: do not leave the renderer running
                proc.kill()
                proc.wait()
                raise
            err.seek(0)
            lines = [line for line in err.read().strip().splitlines() if line.strip()]
    if code == 0:
        return None
    last = lines[-1] if lines else f"exit code {code}"
    if code == _NO_GL_EXIT:
        return last
    # Anything else is a real error (bad store, encoder failure), not a missing GL: do not mask it.
    raise RenderError(f"rendering {out} with MUJOCO_GL={gl} failed: {last}")


def _main(args_json: str) -> None:
    args = json.loads(args_json)
    try:  # MuJoCo binds its GL backend on import; a missing library fails right here
        import mujoco
    except Exception as exc:  # any failure here means: this GL backend is unusable
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(_NO_GL_EXIT)
    model = _scene_model(args["robot"])
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, args["width"])
    model.vis.global_.offheight = max(model.vis.global_.offheight, args["height"])
    try:
        renderer = mujoco.Renderer(model, args["height"], args["width"])
    except Exception as exc:  # no usable GL context
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(_NO_GL_EXIT)
    _render_video(renderer, model, np.load(args["qpos"]), args["fps"], Path(args["out"]))


def _scene_model(robot: str) -> Any:
    """The robot model plus a checkered floor (so motion over the ground is visible)."""
    import mujoco

    from mimicdata.robots import mjcf_path

    spec = mujoco.MjSpec.from_file(str(mjcf_path(robot)))
    spec.add_texture(name="grid", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                     rgb1=[0.2, 0.3, 0.4], rgb2=[0.1, 0.2, 0.3], width=512, height=512)
    spec.add_material(name="grid", textures=["", "grid"], texrepeat=[8, 8], reflectance=0.1)
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05], material="grid")
    spec.worldbody.add_light(pos=[0, 0, 4], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                             castshadow=False)  # shadows double the software-rendering time
    model = spec.compile()
    model.vis.headlight.ambient[:] = 0.35
    model.vis.headlight.diffuse[:] = 0.6
    return model


def _render_video(renderer: Any, model: Any, qpos: np.ndarray, fps: float, out: Path) -> None:
    import mujoco

    data = mujoco.MjData(model)
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    camera.trackbodyid = 1
    camera.distance, camera.elevation, camera.azimuth = 3.0, -15.0, 135.0

    def frames() -> Iterator[np.ndarray]:
        for i, q in enumerate(qpos):
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)  # the tracking camera follows the subtree centre of mass
            renderer.update_scene(data, camera)
            yield renderer.render()
            print(f"frame {i + 1} {len(qpos)}", flush=True)

    write_video(frames(), out, fps)
    renderer.close()


def write_video(frames: Iterable[np.ndarray], out: Path, fps: float) -> None:
    """Write RGB frames as H.264 MP4 (PyAV, streamed) or animated GIF (Pillow), chosen by the suffix.

    The video goes to a temporary name beside ``out`` and is renamed into place once whole, so an
    interrupted or failed render never leaves a truncated file under the requested name.
    """
    partial = out.with_name(f".{out.name}.partial{out.suffix}")
    try:
        _encode(frames, partial, fps)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


def _encode(frames: Iterable[np.ndarray], out: Path, fps: float) -> None:
    if out.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f.copy()) for f in frames]
        images[0].save(out, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return
    try:
        import av
    except ImportError:
        raise RuntimeError("writing MP4 needs PyAV (pip install av); or ask for a .gif") from None
    from fractions import Fraction

    with av.open(str(out), mode="w", format="mp4") as container:
        stream = None
        for f in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
                stream.width, stream.height = f.shape[1], f.shape[0]
                stream.pix_fmt = "yuv420p"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        if stream is not None:
            container.mux(stream.encode())


def filmstrip(body_pos: np.ndarray, body_names: list[str], robot: str, out: Path, *, fps: float,
              panels: int = 8) -> Path:
    """Draw `panels` evenly spaced frames as stick figures (bodies joined to their parents) in a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mimicdata.motion.kinematics import load_robot_model

    model = load_robot_model(robot)
    parent = {n: model.body_names[p] for n, p in zip(model.body_names, model.parent, strict=True) if p >= 0}
    index = {n: i for i, n in enumerate(body_names)}
    bones = [(index[c], index[p]) for c, p in parent.items() if c in index and p in index]
    picks = np.unique(np.linspace(0, len(body_pos) - 1, min(panels, len(body_pos))).round().astype(int))
    fig = plt.figure(figsize=(2.6 * len(picks), 3.4))
    for n, t in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), n + 1, projection="3d")
        pts = body_pos[t]
        centre = pts[0]
        for a, b in bones:
            ax.plot(*zip(pts[a], pts[b], strict=True), color="tab:blue", lw=2)
        gx, gy = np.meshgrid(np.linspace(-0.6, 0.6, 7) + centre[0], np.linspace(-0.6, 0.6, 7) + centre[1])
        ax.plot_wireframe(gx, gy, np.zeros_like(gx), color="0.8", lw=0.5)
        ax.set(xlim=(centre[0] - 0.6, centre[0] + 0.6), ylim=(centre[1] - 0.6, centre[1] + 0.6), zlim=(0, 1.4),
               title=f"t = {t / fps:.2f} s")
        ax.set_box_aspect((1, 1, 1.2))
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
