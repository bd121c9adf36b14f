"""Render a 3-D object (a GLB) to an orbit of RGBA views: the multi-view captures of Objaverse.

``render_views(glb, cfg, rng)`` loads the file with trimesh (a scene: meshes with
their materials and textures), normalises the object to the unit box at the origin
(centre of its bounds at 0, longest side 1), and renders ``cfg.views`` views on an
orbit about the up axis (+y, as glTF defines it): azimuths in order, evenly spaced from a random start, so the view number is
the ``frame_index`` and neighbouring views are neighbouring angles. The elevation,
the start azimuth and the light intensity are drawn once per object from ``rng``.
Each view is an RGBA uint8 image on black, alpha 255 where the object is (depth > 0:
OSMesa ignores pyrender's RGBA flag, and a depth test is the same on every backend),
with its camera (pose, intrinsics, angles) as a dict.

Backends:

- ``pyrender`` (default): pyrender-maintained on the CPU through OSMesa
  (``libosmesa6``) or EGL (``libegl1``; a GPU when there is one). The OpenGL
  platform is chosen when the first view is rendered, never at import:
  ``PYOPENGL_PLATFORM`` when set, else ``cfg.platform`` (``auto``: OSMesa when its
  library is present, the fastest on a CPU, else EGL; choose ``egl`` on a GPU
  machine). PyOpenGL binds its platform at its first import, so one process renders
  with one platform.
- ``blender``: Cycles through Blender (``bpy``) in its own environment, as a
  subprocess (``bpy`` needs numpy < 2, imprint needs numpy 2). Set
  ``IMPRINT_BLENDER`` to the command: a Blender binary (``blender``, run as
  ``blender -b --python-exit-code 1 -P SCRIPT -- ARGS``) or a Python with ``bpy``
  installed (``/opt/bpy/bin/python``, run as ``python SCRIPT -- ARGS``); see
  :data:`BLENDER_SCRIPT` and ``docs/sources-objaverse-sav.md``. Slower (0.25-0.4 s a
  view) but path-traced, with the file's own alpha.
"""

from __future__ import annotations

import atexit
import ctypes.util
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imprint.errors import ImprintError

BACKENDS = ("pyrender", "blender")
PLATFORMS = ("auto", "osmesa", "egl")
GLB_MAGIC = b"glTF"
INSTALL_HINT = ("run scripts/system-deps.sh as root (or `make install`) for the OpenGL libraries "
                "(libosmesa6 / libegl1), and `pip install pyrender-maintained` (imprint's dependency)")

View = tuple[np.ndarray, dict[str, Any]]


class RenderError(ImprintError, RuntimeError):
    """The object could not be rendered (bad file, no triangles, renderer missing)."""


class DecodeError(RenderError):
    """The file is not a GLB / cannot be parsed as a 3-D scene."""


class RendererUnavailable(RenderError):
    """The renderer itself is missing (a set-up problem, not a bad object): the message says what to install."""


@dataclass(frozen=True)
class RenderConfig:
    """How objects are rendered; every draw comes from the per-object rng.

    ``views`` azimuths on one orbit; ``size`` square pixels; ``elevation`` degrees
    above the horizon (drawn once per object, uniform in the range); ``fov`` vertical
    field of view (degrees); the camera distance makes the unit box's bounding sphere
    fill ``fill`` of the frame's half-height, so the object never touches the border;
    ``light_intensity`` the key light's intensity range (drawn per object) and
    ``ambient`` the ambient light; ``backend`` pyrender | blender; ``platform``
    auto | osmesa | egl (pyrender; auto: OSMesa if present, else EGL); ``gl_threads``
    llvmpipe threads (``LP_NUM_THREADS``, when not set already; 1 suits one-CPU Ray
    tasks, 0 leaves Mesa's default); ``max_faces`` refuses larger objects (a counted
    ``failed_render``); ``blender_samples`` Cycles samples per pixel (blender).
    """

    views: int = 12
    size: int = 256
    elevation: tuple[float, float] = (10.0, 30.0)
    fov: float = 40.0
    fill: float = 0.85
    light_intensity: tuple[float, float] = (2.0, 4.0)
    ambient: float = 0.35
    backend: str = "pyrender"
    platform: str = "auto"
    gl_threads: int = 1
    max_faces: int = 2_000_000
    blender_samples: int = 32

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ValueError("views must be >= 1")
        if not 16 <= self.size <= 4096:
            raise ValueError("size must be in 16..4096 pixels")
        lo, hi = self.elevation
        if not -89.0 <= lo <= hi <= 89.0:
            raise ValueError("elevation must be (lo, hi) degrees with -89 <= lo <= hi <= 89")
        if not 5.0 <= self.fov <= 120.0:
            raise ValueError("fov must be in 5..120 degrees")
        if not 0.1 <= self.fill <= 1.0:
            raise ValueError("fill must be in 0.1..1")
        if not 0.0 <= self.light_intensity[0] <= self.light_intensity[1]:
            raise ValueError("light_intensity must be (lo, hi) with 0 <= lo <= hi")
        if self.ambient < 0:
            raise ValueError("ambient must be >= 0")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}, got {self.platform!r}")
        if self.gl_threads < 0:
            raise ValueError("gl_threads must be >= 0")
        if self.max_faces < 1 or self.blender_samples < 1:
            raise ValueError("max_faces and blender_samples must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- geometry


def look_at(eye: np.ndarray, target: np.ndarray | None = None, up: np.ndarray | None = None) -> np.ndarray:
    """Camera-to-world pose (OpenGL convention: the camera looks down its -z, its y up); world up is +y (glTF)."""
    target = np.zeros(3) if target is None else target
    up = np.array([0.0, 1.0, 0.0]) if up is None else up
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-8:  # looking straight along up
        right = np.array([1.0, 0.0, 0.0])
    right = right / np.linalg.norm(right)
    true_up = np.cross(back, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, true_up, back, eye
    return pose


@dataclass(frozen=True)
class Orbit:
    """The per-object draws: where the orbit starts, its elevation and the light."""

    azimuth0: float
    elevation: float
    light: float

    @classmethod
    def draw(cls, cfg: RenderConfig, rng: np.random.Generator) -> "Orbit":
        return cls(azimuth0=float(rng.uniform(0.0, 360.0)), elevation=float(rng.uniform(*cfg.elevation)),
                   light=float(rng.uniform(*cfg.light_intensity)))


UNIT_BOX_RADIUS = math.sqrt(3.0) / 2.0


def camera_distance(cfg: RenderConfig, radius: float = UNIT_BOX_RADIUS) -> float:
    """Distance at which a sphere of ``radius`` about the origin spans ``cfg.fill`` of the half-frame.

    The sphere's silhouette then has half-angle ``asin(fill * sin(fov / 2)) < fov / 2``
    from every direction, so the object inside it never touches the border.
    """
    return radius / (math.sin(math.radians(cfg.fov) / 2.0) * cfg.fill)


def cameras(cfg: RenderConfig, orbit: Orbit, radius: float = UNIT_BOX_RADIUS) -> list[dict[str, Any]]:
    """The views' cameras, in orbit order: angles, camera-to-world pose, intrinsics in pixels.

    Poses are in the object's normalised glTF frame (y up, as every GLB is), OpenGL
    camera convention (looking down the camera's -z, its +y up). Azimuth 0 looks from +z.
    ``radius`` is the object's bounding-sphere radius about the origin (the distance
    follows it, so every object fills the frame alike).
    """
    dist = camera_distance(cfg, radius)
    el = math.radians(orbit.elevation)
    focal = cfg.size / (2.0 * math.tan(math.radians(cfg.fov) / 2.0))
    out = []
    for k in range(cfg.views):
        az_deg = (orbit.azimuth0 + 360.0 * k / cfg.views) % 360.0
        az = math.radians(az_deg)
        # glTF is y-up: the orbit turns about +y, elevation lifts the camera towards +y
        eye = dist * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
        out.append({"view": k, "azimuth_deg": round(az_deg, 4), "elevation_deg": round(orbit.elevation, 4),
                    "distance": round(dist, 6), "yfov_deg": cfg.fov,
                    "pose": np.round(look_at(eye), 8).tolist(), "convention": "opengl_cam2world_gltf_yup",
                    "intrinsics": {"fx": focal, "fy": focal, "cx": cfg.size / 2.0, "cy": cfg.size / 2.0,
                                   "width": cfg.size, "height": cfg.size}})
    return out


# ---------------------------------------------------------------------------------------------- loading


def check_glb(path: str | Path) -> None:
    """Refuse a file that is not a binary glTF (magic ``glTF``, version 2, length in the header)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as exc:
        raise DecodeError(f"{path} cannot be read: {exc}") from None
    if len(head) < 12 or head[:4] != GLB_MAGIC:
        raise DecodeError(f"{path} is not a GLB (starts with {head[:4]!r}, expected b'glTF')")
    version = int.from_bytes(head[4:8], "little")
    length = int.from_bytes(head[8:12], "little")
    if version != 2:
        raise DecodeError(f"{path} is glTF version {version}, expected 2")
    size = path.stat().st_size
    if length != size:
        raise DecodeError(f"{path} is truncated or padded: header says {length} bytes, file has {size}")


def load_meshes(source: "str | Path | Any", max_faces: int) -> list[Any]:
    """The object's triangle meshes in world coordinates, with their visuals (materials, textures)."""
    import trimesh

    scene: Any
    if isinstance(source, (str, Path)):
        if str(source).lower().endswith(".glb"):
            check_glb(source)
        try:
            scene = trimesh.load(str(source), force="scene")
        except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
            raise DecodeError(f"{source} cannot be loaded as a 3-D scene: {type(exc).__name__}: {exc}") from None
    elif isinstance(source, trimesh.Scene):
        scene = source
    elif isinstance(source, trimesh.Trimesh):
        scene = trimesh.Scene(source)
    else:
        raise TypeError(f"render_views takes a path, a trimesh.Scene or a trimesh.Trimesh, got {type(source)}")
    meshes = [m for m in scene.dump(concatenate=False)
              if isinstance(m, trimesh.Trimesh) and len(m.faces) > 0]
    if not meshes:
        raise RenderError(f"{source if isinstance(source, (str, Path)) else 'the scene'} has no triangle mesh")
    faces = sum(len(m.faces) for m in meshes)
    if faces > max_faces:
        raise RenderError(f"the object has {faces} faces, over max_faces={max_faces}")
    return meshes


def normalise(meshes: list[Any]) -> dict[str, Any]:
    """Centre the meshes' joint bounds at the origin and scale the longest side to 1 (in place).

    Returns the transform (``centre``, ``scale``, original ``bounds``) and the
    normalised object's bounding-sphere ``radius`` about the origin (<= sqrt(3)/2).
    """
    lo = np.min([m.bounds[0] for m in meshes], axis=0)
    hi = np.max([m.bounds[1] for m in meshes], axis=0)
    extent = float(np.max(hi - lo))
    if not np.isfinite(extent) or extent <= 0:
        raise RenderError(f"the object has degenerate bounds {lo.tolist()} .. {hi.tolist()}")
    centre = (lo + hi) / 2.0
    scale = 1.0 / extent
    for m in meshes:
        m.apply_translation(-centre)
        m.apply_scale(scale)
    radius = max(float(np.linalg.norm(m.vertices, axis=1).max()) for m in meshes)
    return {"centre": centre.tolist(), "scale": scale, "bounds": [lo.tolist(), hi.tolist()],
            "radius": max(radius, 1e-3)}


# ---------------------------------------------------------------------------------------------- pyrender


def _library_present(name: str) -> bool:
    found = ctypes.util.find_library(name)
    if found is None:
        return False
    try:
        ctypes.CDLL(found)
    except OSError:
        return False
    return True


def resolve_platform(cfg: RenderConfig) -> str:
    """The OpenGL platform: PYOPENGL_PLATFORM when set, else cfg.platform; ``auto``: OSMesa when its library
    is present (the fastest on a CPU: 5 ms a 256-px view against EGL's 8), else EGL."""
    env = os.environ.get("PYOPENGL_PLATFORM")
    if env:
        return env
    if cfg.platform != "auto":
        return cfg.platform
    if _library_present("OSMesa"):
        return "osmesa"
    if _library_present("EGL"):
        return "egl"
    raise RendererUnavailable(f"no off-screen OpenGL library (libOSMesa or libEGL) was found: {INSTALL_HINT}")


def setup_gl(cfg: RenderConfig) -> str:
    """Select the OpenGL platform for this process (before PyOpenGL is imported) and return it."""
    platform = resolve_platform(cfg)
    if platform not in ("osmesa", "egl"):
        raise RendererUnavailable(f"PYOPENGL_PLATFORM={platform!r} cannot render off-screen; use osmesa or egl")
    loaded = sys.modules.get("OpenGL.platform")
    if loaded is not None:
        current = type(getattr(loaded, "PLATFORM", None)).__name__.lower()
        if platform not in current:
            raise RendererUnavailable(
                f"PyOpenGL was already imported with another platform ({current}); set "
                f"PYOPENGL_PLATFORM={platform} before anything imports OpenGL, or render in a fresh process")
    os.environ["PYOPENGL_PLATFORM"] = platform
    if cfg.gl_threads:
        os.environ.setdefault("LP_NUM_THREADS", str(cfg.gl_threads))
    return platform


_RENDERERS: dict[tuple[int, str], Any] = {}


class _ContextKeyed(dict):
    """pyrender's shader-program cache, keyed by the context's address rather than its pointer object.

    pyrender keys compiled programs by ``OpenGL.contextdata.getContext()``; under OSMesa
    that is a new ctypes pointer object on every call, so every frame missed the cache
    and compiled its shaders again: 3 MB leaked per frame (a worker died after a few
    hundred objects) and ~3x slower. Normalising the key fixes both.
    """

    @staticmethod
    def _norm(key: Any) -> Any:
        if isinstance(key, tuple) and key and hasattr(key[0], "contents"):
            return (ctypes.cast(key[0], ctypes.c_void_p).value, *key[1:])
        return key

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self._norm(key))

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(self._norm(key))

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(self._norm(key), value)


def _fix_program_cache(renderer: Any) -> None:
    """Install :class:`_ContextKeyed` as the renderer's program cache (pyrender-maintained 1.0.1 internals)."""
    cache = getattr(getattr(renderer, "_renderer", None), "_program_cache", None)
    if cache is None or not isinstance(getattr(cache, "_program_cache", None), dict):
        import warnings

        warnings.warn("pyrender's shader cache is not where pyrender-maintained 1.0.1 keeps it: under OSMesa every "
                      "frame may recompile its shaders (slow, leaks memory); pin pyrender-maintained==1.0.1",
                      RuntimeWarning, stacklevel=2)
        return
    fixed = _ContextKeyed()
    for key, value in cache._program_cache.items():
        fixed[key] = value
    cache._program_cache = fixed


def _renderer(size: int, platform: str) -> Any:
    """One off-screen renderer per (size, platform) per process, created on first use."""
    key = (size, platform)
    if key not in _RENDERERS:
        try:
            import pyrender
        except ImportError as exc:
            raise RendererUnavailable(f"pyrender cannot be imported ({exc}): {INSTALL_HINT}") from None
        if not _RENDERERS:  # free contexts before the interpreter tears PyOpenGL down (else it prints noise)
            atexit.register(release_renderers)
        try:
            renderer = pyrender.OffscreenRenderer(size, size)
        except Exception as exc:  # noqa: BLE001 - missing libraries surface as many exception types
            raise RendererUnavailable(f"cannot create a {platform} OpenGL context ({type(exc).__name__}: "
                                      f"{exc}): {INSTALL_HINT}") from None
        _fix_program_cache(renderer)
        _RENDERERS[key] = renderer
    return _RENDERERS[key]


def release_renderers() -> None:
    """Free the cached OpenGL contexts of this process."""
    while _RENDERERS:
        _, renderer = _RENDERERS.popitem()
        renderer.delete()
    atexit.unregister(release_renderers)


def _pyrender_views(meshes: list[Any], cfg: RenderConfig, orbit: Orbit, cams: list[dict[str, Any]]) -> list[View]:
    platform = setup_gl(cfg)
    renderer = _renderer(cfg.size, platform)
    import pyrender

    scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[cfg.ambient] * 3)
    for m in meshes:
        try:
            scene.add(pyrender.Mesh.from_trimesh(m, smooth=True))  # the file's own vertex normals
        except Exception as exc:  # noqa: BLE001 - bad materials / textures in the file
            raise RenderError(f"pyrender cannot take a mesh of the object: {type(exc).__name__}: {exc}") from None
    cam_node = scene.add(pyrender.PerspectiveCamera(yfov=math.radians(cfg.fov), znear=0.05, zfar=100.0))
    head = scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=orbit.light))
    key = scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=orbit.light * 0.5),
                    pose=look_at(np.array([0.3, 1.0, 0.4])))  # a key light from above
    del key
    views = []
    for cam in cams:
        pose = np.asarray(cam["pose"])
        scene.set_pose(cam_node, pose)
        scene.set_pose(head, pose)
        color, depth = renderer.render(scene, flags=pyrender.RenderFlags.RGBA)
        views.append((_rgba(color, depth), cam))
    return views


def _rgba(color: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """RGBA on black with alpha = depth > 0 (OSMesa returns RGB only; EGL's alpha would be blended)."""
    alpha = depth > 0
    out = np.zeros((*depth.shape, 4), dtype=np.uint8)
    out[..., :3] = np.where(alpha[..., None], color[..., :3], 0)
    out[..., 3] = alpha * np.uint8(255)
    return out


# ---------------------------------------------------------------------------------------------- blender

#: The Blender script (run inside Blender's own Python): imports the GLB, normalises it to the
#: unit box, renders the orbit with Cycles on a transparent film and writes ``<out>/<000>.png``
#: (RGBA). Arguments after ``--``: glb, out dir, size, samples, fov, ambient, then the cameras as
#: JSON (a file). Blender's importer turns glTF's y-up into its z-up; the cameras (glTF frame) are
#: turned the same way.
BLENDER_SCRIPT = r'''
import json, math, sys
import bpy
from mathutils import Matrix, Vector

argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
glb, out, size, samples, fov, ambient, cams_file, light = argv[:8]
size, samples, fov, ambient, light = int(size), int(samples), float(fov), float(ambient), float(light)
cams = json.load(open(cams_file))

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=glb)
objs = [o for o in bpy.context.scene.objects if o.type == "MESH"]
if not objs:
    sys.exit("no mesh in " + glb)
lo = Vector((math.inf,) * 3); hi = Vector((-math.inf,) * 3)
for o in objs:
    for c in o.bound_box:
        w = o.matrix_world @ Vector(c)
        lo = Vector(map(min, lo, w)); hi = Vector(map(max, hi, w))
scale = 1.0 / max(hi - lo); centre = (lo + hi) / 2
roots = [o for o in bpy.context.scene.objects if o.parent is None]
for o in roots:
    o.matrix_world = Matrix.Scale(scale, 4) @ Matrix.Translation(-centre) @ o.matrix_world

scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = samples
scene.cycles.device = "CPU"
scene.render.film_transparent = True
scene.render.resolution_x = scene.render.resolution_y = size
scene.render.image_settings.file_format = "PNG"
scene.render.image_settings.color_mode = "RGBA"
world = bpy.data.worlds.new("w"); scene.world = world
world.use_nodes = True
world.node_tree.nodes["Background"].inputs[1].default_value = ambient
cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
scene.collection.objects.link(cam); scene.camera = cam
cam.data.sensor_fit = "VERTICAL"; cam.data.angle = math.radians(fov)
sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
scene.collection.objects.link(sun); sun.data.energy = light
YUP_TO_ZUP = Matrix(((1, 0, 0, 0), (0, 0, -1, 0), (0, 1, 0, 0), (0, 0, 0, 1)))
for c in cams:
    pose = YUP_TO_ZUP @ Matrix(c["pose"])
    cam.matrix_world = pose; sun.matrix_world = pose
    scene.render.filepath = f"{out}/{c['view']:03d}.png"
    bpy.ops.render.render(write_still=True)
'''


def blender_command(script: Path, args: list[str]) -> list[str]:
    """The command that runs ``script`` under ``IMPRINT_BLENDER`` (a Blender binary or a Python with bpy)."""
    spec = os.environ.get("IMPRINT_BLENDER") or shutil.which("blender")
    if not spec:
        raise RendererUnavailable(
            "the blender backend needs Blender: set IMPRINT_BLENDER to a blender binary or to the python of an "
            "environment with bpy (python3.11 -m venv /opt/bpy && /opt/bpy/bin/pip install bpy 'numpy<2'); "
            "see docs/sources-objaverse-sav.md")
    cmd = shlex.split(spec)
    if Path(cmd[0]).name.startswith("python"):
        return [*cmd, str(script), "--", *args]
    return [*cmd, "-b", "--python-exit-code", "1", "-P", str(script), "--", *args]


def _blender_views(glb: Path, cfg: RenderConfig, orbit: Orbit, cams: list[dict[str, Any]],
                   timeout: float = 600.0) -> list[View]:
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="imprint-blender-") as tmp:
        tmp_path = Path(tmp)
        script = tmp_path / "render_orbit.py"
        script.write_text(BLENDER_SCRIPT)
        (tmp_path / "cams.json").write_text(json.dumps(cams))
        args = [str(Path(glb).resolve()), str(tmp_path), str(cfg.size), str(cfg.blender_samples), str(cfg.fov),
                str(cfg.ambient), str(tmp_path / "cams.json"), str(orbit.light)]
        proc = subprocess.run(blender_command(script, args), capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RenderError(f"blender failed (exit {proc.returncode}): {proc.stderr[-2000:] or proc.stdout[-2000:]}")
        views = []
        for cam in cams:
            png = tmp_path / f"{cam['view']:03d}.png"
            if not png.is_file():
                raise RenderError(f"blender wrote no {png.name}: {proc.stdout[-2000:]}")
            with Image.open(png) as im:
                views.append((np.asarray(im.convert("RGBA")).copy(), cam))
    return views


# ---------------------------------------------------------------------------------------------- entry points


def check_renderer(cfg: RenderConfig) -> None:
    """Fail early, before any download, when ``cfg``'s renderer cannot run here (:class:`RendererUnavailable`).

    pyrender: selects the OpenGL platform and creates this process's context (a tiny
    one, kept for reuse). blender: resolves the command. Cheap after the first call.
    """
    if cfg.backend == "blender":
        blender_command(Path("check.py"), [])
        return
    _renderer(cfg.size, setup_gl(cfg))


def render_views(obj: "str | Path | Any", cfg: RenderConfig, rng: np.random.Generator) -> list[View]:
    """Render ``obj`` (a GLB path, a trimesh Scene or Trimesh) to ``cfg.views`` RGBA views in orbit order.

    Returns ``[(rgba uint8 HxWx4, camera dict), ...]``; the camera dicts also carry the
    normalisation (``centre``, ``scale``) applied to the object. Raises
    :class:`DecodeError` for a file that is not a GLB or does not parse,
    :class:`RenderError` for an object that cannot be rendered, and
    :class:`RendererUnavailable` when the renderer is not installed.
    """
    orbit = Orbit.draw(cfg, rng)
    if cfg.backend == "blender" and not isinstance(obj, (str, Path)):
        raise TypeError("the blender backend renders files: pass the GLB's path")
    meshes = load_meshes(obj, cfg.max_faces)  # blender too: the same normalisation, so the same cameras
    norm = normalise(meshes)
    cams = cameras(cfg, orbit, norm["radius"])
    if cfg.backend == "blender":
        views = _blender_views(Path(obj), cfg, orbit, cams)
    else:
        views = _pyrender_views(meshes, cfg, orbit, cams)
    for _, cam in views:
        cam["normalisation"] = norm
        cam["light_intensity"] = orbit.light
    return views


def demo_object(kind: str = "box", texture_seed: int = 0) -> Any:
    """A small textured object (trimesh, y-up like glTF) for tests and the benchmark: ``box`` or ``sphere``."""
    import trimesh
    from PIL import Image

    rng = np.random.default_rng(texture_seed)
    tex = (rng.integers(0, 255, (8, 8, 3), dtype=np.uint8).repeat(16, 0).repeat(16, 1))
    if kind == "box":
        mesh = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    elif kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    else:
        raise ValueError(f"kind must be box or sphere, got {kind!r}")
    v = mesh.vertices
    uv = np.stack([(np.arctan2(v[:, 2], v[:, 0]) / (2 * np.pi)) % 1.0,  # around the up axis (y) ...
                   (v[:, 1] - v[:, 1].min()) / max(np.ptp(v[:, 1]), 1e-9)], axis=1)  # ... and along it
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(tex), metallicFactor=0.0,
                                                   roughnessFactor=0.8)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return mesh
