"""Objaverse: selection through the objaverse package against a local server, GLB download with statuses,
rendering, the ledger (rerun, retry_failed), and records through run_ingest.

The server on 127.0.0.1 serves a fake Objaverse tree made here (gzip ``object-paths.json.gz``,
``metadata/000-00N.json.gz``, ``lvis-annotations.json.gz``, textured GLBs made with trimesh) and,
like Hugging Face, answers a GLB request with a 302 carrying ``X-Linked-Etag`` (the sha256) to a
"CDN" path. It counts every request, so the tests can say what was downloaded twice.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import trimesh
from helpers import balanced, read_records

from imprint.executor import LocalExecutor
from imprint.ingest.config import IngestConfig
from imprint.ingest.job import run_ingest
from imprint.ingest.ledger import load_status
from imprint.ingest.objaverse import HF_PREFIX, ObjaverseError, fetch_objaverse, objaverse_api
from imprint.ingest.render import RenderConfig, RendererUnavailable, demo_object, render_views

SIZE, VIEWS = 64, 4
RCFG = RenderConfig(views=VIEWS, size=SIZE)


def _uid(name: str) -> str:
    return hashlib.md5(name.encode()).hexdigest()


BOX, BALL, NC, AGE = _uid("box"), _uid("ball"), _uid("nc"), _uid("age")
NOTGLB, MISSING, BADSUM, POINTS = _uid("notglb"), _uid("missing"), _uid("badsum"), _uid("points")
SHARD = {BOX: "000-000", BALL: "000-000", NC: "000-000", AGE: "000-000",
         NOTGLB: "000-001", MISSING: "000-001", BADSUM: "000-001", POINTS: "000-001"}
LICENCE = {BOX: "by", BALL: "cc0", NC: "by-nc", AGE: "by", NOTGLB: "by", MISSING: "by-sa", BADSUM: "by",
           POINTS: "by"}


def _annotation(uid: str) -> dict:
    return {"uid": uid, "name": f"object {uid[:6]}", "license": LICENCE[uid], "isAgeRestricted": uid == AGE,
            "viewerUrl": f"https://sketchfab.com/3d-models/{uid}",
            "user": {"username": f"artist_{uid[:4]}", "displayName": "An Artist",
                     "profileUrl": f"https://sketchfab.com/artist_{uid[:4]}"}}


def _scene_glb() -> bytes:
    """Two textured meshes placed by the scene graph: a ball on a box (glTF is y-up)."""
    scene = trimesh.Scene()
    scene.add_geometry(demo_object("sphere", 1), node_name="ball")
    scene.add_geometry(demo_object("box", 2), node_name="base",
                       transform=trimesh.transformations.translation_matrix([0.0, -0.6, 0.0]))
    return scene.export(file_type="glb")


def _gz(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps(data).encode()))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("objaverse-remote")
    paths = {uid: f"glbs/{SHARD[uid]}/{uid}.glb" for uid in SHARD}
    _gz(root / "object-paths.json.gz", paths)
    for shard in ("000-000", "000-001"):
        _gz(root / "metadata" / f"{shard}.json.gz", {u: _annotation(u) for u in SHARD if SHARD[u] == shard})
    _gz(root / "lvis-annotations.json.gz", {"box": [BOX, NC], "ball": [BALL], "teapot": [MISSING]})
    glbs = {BOX: demo_object("box", 0).export(file_type="glb"), BALL: _scene_glb(),
            NC: demo_object("box", 3).export(file_type="glb"), AGE: demo_object("box", 4).export(file_type="glb"),
            NOTGLB: b"<html><body>rate limited</body></html>",
            BADSUM: demo_object("sphere", 5).export(file_type="glb"),
            POINTS: trimesh.Scene(trimesh.PointCloud(np.random.default_rng(0).random((50, 3)))).export(
                file_type="glb")}
    for uid, data in glbs.items():
        (root / paths[uid]).parent.mkdir(parents=True, exist_ok=True)
        (root / paths[uid]).write_bytes(data)
    return root


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?")[0]
        self.server.requests[path] += 1
        if path.startswith("/objaverse/glbs/"):
            rel = path[len("/objaverse/"):]
            file = self.server.root / rel
            if not file.is_file():
                return self._send(404, b"not found")
            sha = hashlib.sha256(file.read_bytes()).hexdigest()
            if BADSUM in rel:
                sha = "0" * 64
            self.send_response(302)
            self.send_header("Location", f"/cdn/{rel}")
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        for prefix in ("/objaverse/", "/cdn/"):
            if path.startswith(prefix):
                file = self.server.root / path[len(prefix):]
                if file.is_file():
                    return self._send(200, file.read_bytes(), etag='"cdn-etag-1"')
        return self._send(404, b"not found")

    def _send(self, code: int, body: bytes, etag: str | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        if etag:
            self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: Counter = Counter()


@pytest.fixture(scope="module")
def server(tree: Path):
    srv = _Server(tree)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/objaverse/"
    yield srv
    srv.shutdown()
    srv.server_close()


def _quiet(_msg: str) -> None:
    pass


def _fetch(out: Path, url: str, **kw) -> Path:
    kw.setdefault("views", VIEWS)
    kw.setdefault("render_cfg", RCFG)
    return fetch_objaverse(out, base_url=url, executor=LocalExecutor(), **kw)


def _glb_requests(srv: _Server) -> Counter:
    return Counter({p: n for p, n in srv.requests.items() if p.startswith("/objaverse/glbs/")})


def _check_views(obj_dir: Path) -> None:
    from PIL import Image

    for k in range(VIEWS):
        with Image.open(obj_dir / f"{k:03d}.png") as im:
            assert im.mode == "RGBA" and im.size == (SIZE, SIZE)
            rgba = np.asarray(im)
        alpha = rgba[..., 3] > 127
        assert 0.03 < alpha.mean() < 0.6, f"view {k}: coverage {alpha.mean():.3f}"
        assert not (alpha[0].any() or alpha[-1].any() or alpha[:, 0].any() or alpha[:, -1].any()), "touches border"
        assert rgba[..., :3][alpha].mean() > 20, "the object is lit"
        assert not rgba[..., :3][~alpha].any(), "background is black"


# ------------------------------------------------------------------------------------------------ the job


def test_fetch_statuses_rerun_and_retry(server: _Server, tmp_path: Path) -> None:
    root = _fetch(tmp_path, server.url)
    assert root == tmp_path / "raw" / "objaverse"
    report = json.loads((root / "report.json").read_text())
    assert report["selection"]["licence_by-nc"] == 1 and report["selection"]["age_restricted"] == 1
    assert report["selected"] == 6 and report["objects"] == 2
    assert report["counts"] == {"bad_checksum": 1, "failed_decode": 1, "failed_download": 1, "failed_render": 1,
                                "ok": 2}
    ledger = load_status(root / "status")
    assert {u: st.status for u, st in ledger.items()} == {
        BOX: "ok", BALL: "ok", NOTGLB: "failed_decode", MISSING: "failed_download", BADSUM: "bad_checksum",
        POINTS: "failed_render"}
    assert "404" in ledger[MISSING].error and "not a GLB" in ledger[NOTGLB].error
    assert "advertised" in ledger[BADSUM].error and "no triangle" in ledger[POINTS].error
    assert {f["item"]: f["status"] for f in report["failures"]} == {
        u: st.status for u, st in ledger.items() if not st.ok}
    # the bad download is not kept; the good ones are, in the objaverse package's own layout
    assert not (root / "cache" / "glbs" / "000-001" / f"{BADSUM}.glb").exists()
    assert (root / "cache" / "glbs" / "000-000" / f"{BOX}.glb").is_file()
    assert not (root / "renders" / NC).exists() and not (root / "renders" / AGE).exists()

    meta = json.loads((root / "renders" / BOX / "meta.json").read_text())
    assert meta["licence"] == "by" and meta["licence_name"] == "CC BY 4.0" and meta["category"] == "box"
    assert meta["attribution"]["author"] == f"artist_{BOX[:4]}"
    assert meta["attribution"]["url"] == f"https://sketchfab.com/3d-models/{BOX}"
    assert meta["views"] == [f"{k:03d}.png" for k in range(VIEWS)] and len(meta["cameras"]) == VIEWS
    azimuths = [c["azimuth_deg"] for c in meta["cameras"]]
    assert np.allclose(np.diff(np.unwrap(np.radians(azimuths))), 2 * np.pi / VIEWS)  # the orbit, in order
    assert 10 <= meta["cameras"][0]["elevation_deg"] <= 30
    for uid in (BOX, BALL):
        _check_views(root / "renders" / uid)

    index_requests = {p: n for p, n in server.requests.items() if not p.startswith(("/objaverse/glbs/", "/cdn/"))}
    assert all(n == 1 for n in index_requests.values()), index_requests
    glb_first = _glb_requests(server)
    assert all(n == 1 for n in glb_first.values()) and len(glb_first) == 6

    # a rerun asks the server for nothing at all
    before = Counter(server.requests)
    mtime = (root / "renders" / BOX / "000.png").stat().st_mtime_ns
    _fetch(tmp_path, server.url)
    assert server.requests == before
    assert (root / "renders" / BOX / "000.png").stat().st_mtime_ns == mtime
    again = json.loads((root / "report.json").read_text())
    assert again["attempted"] == 0 and again["this_run"] == {} and again["objects"] == 2

    # retry_failed redoes exactly the failed ones (the bad GLB and the point cloud are fetched again)
    _fetch(tmp_path, server.url, retry_failed=True)
    retried = _glb_requests(server) - glb_first
    assert set(retried) == {f"/objaverse/glbs/000-001/{u}.glb" for u in (NOTGLB, MISSING, BADSUM)}
    retry = json.loads((root / "report.json").read_text())
    assert retry["attempted"] == 4 and retry["this_run"] == {"bad_checksum": 1, "failed_decode": 1,
                                                              "failed_download": 1, "failed_render": 1}

    # records through the ordinary ingest; its report counts the objects that failed before it, one each
    ing = run_ingest("objaverse", root, tmp_path, IngestConfig(), LocalExecutor())
    rows = read_records(tmp_path, "objaverse").to_pylist()
    assert ing["kept"] == len(rows) == 2 * VIEWS and balanced(ing)
    assert ing["seen"] == 2 * VIEWS + 4 and ing["dropped"] == {"bad_checksum": 1, "failed_decode": 1,
                                                               "failed_download": 1, "failed_render": 1}
    assert {f["item"] for f in ing["failures"]} == {NOTGLB, MISSING, BADSUM, POINTS}
    assert ing["materialise"]["selected"] == 6 and "failures" not in ing["materialise"]
    # every record carries its object's own licence and its author's credit
    box = [r for r in rows if r["group_id"] == BOX]
    assert {r["licence"] for r in box} == {"CC BY 4.0"}
    assert {r["licence"] for r in rows if r["group_id"] == BALL} == {"CC0 1.0"}
    assert {r["attribution"] for r in box} == {
        f'"object {BOX[:6]}" by An Artist (https://sketchfab.com/artist_{BOX[:4]}), '
        f"https://sketchfab.com/3d-models/{BOX}"}
    assert {r["group_id"] for r in rows} == {BOX, BALL}
    assert {(r["group_id"], r["category"]) for r in rows} == {(BOX, "box"), (BALL, "ball")}
    assert all(r["instance_id"] == "1" and r["width"] == SIZE for r in rows)
    assert sorted(r["frame_index"] for r in rows if r["group_id"] == BOX) == list(range(VIEWS))
    assert all(r["frame_name"] == f"{r['frame_index']:03d}" for r in rows)


def test_licence_filter_and_lvis_selection(server: _Server, tmp_path: Path) -> None:
    root = _fetch(tmp_path / "a", server.url, licences={"by-nc"})
    assert sorted(p.name for p in (root / "renders").iterdir()) == [NC]
    assert json.loads((root / "renders" / NC / "meta.json").read_text())["licence_name"] == "CC BY-NC 4.0"

    root = _fetch(tmp_path / "b", server.url, lvis_categories=["box", "ball"], limit=1)
    report = json.loads((root / "report.json").read_text())
    assert report["selection"]["requested"] == 3 and report["selected"] == 1  # box, nc, ball; one taken
    with pytest.raises(ObjaverseError, match="unknown LVIS categories: unicorn"):
        _fetch(tmp_path / "c", server.url, lvis_categories=["unicorn"])
    with pytest.raises(ObjaverseError, match="unknown licence"):
        _fetch(tmp_path / "c", server.url, licences={"cc-by"})
    with pytest.raises(ObjaverseError, match="not Objaverse uids"):
        _fetch(tmp_path / "c", server.url, uids=["Not-A-Uid"])


def test_explicit_uids_and_env_url(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMPRINT_OBJAVERSE_URL", server.url.rstrip("/"))
    root = fetch_objaverse(tmp_path, uids=[f"{BALL}.glb", _uid("nope")], views=2,
                           render_cfg=RenderConfig(size=48))
    report = json.loads((root / "report.json").read_text())
    assert report["base_url"] == server.url and report["selection"]["unknown_uid"] == 1
    assert report["objects"] == 1 and sorted(p.name for p in (root / "renders" / BALL).glob("*.png")) == [
        "000.png", "001.png"]


def test_render_settings_are_pinned_and_a_killed_chunk_is_redone(server: _Server, tmp_path: Path) -> None:
    root = _fetch(tmp_path, server.url, uids=[BOX])
    with pytest.raises(ObjaverseError, match="other settings"):
        _fetch(tmp_path, server.url, uids=[BOX], views=2)
    views = {p.name: p.read_bytes() for p in (root / "renders" / BOX).glob("*.png")}
    # a chunk killed after rendering, before its ledger part and marker: it is run again; the GLB is in
    # the cache (not fetched again) and the views come out the same
    (root / "status" / "part-00000.parquet").unlink()
    (root / "status" / "_parts" / "part-00000.json").unlink()
    (root / "renders" / f"{BOX}.tmp-1-1").mkdir()  # and a half-written render folder
    before = _glb_requests(server)
    _fetch(tmp_path, server.url, uids=[BOX])
    assert _glb_requests(server) == before
    assert load_status(root / "status")[BOX].status == "cached"
    assert {p.name: p.read_bytes() for p in (root / "renders" / BOX).glob("*.png")} == views
    assert sorted(p.name for p in (root / "renders").iterdir()) == [BOX]
    # --overwrite renders again with the new settings (fetching the GLB it no longer has)
    _fetch(tmp_path, server.url, uids=[BOX], views=2, overwrite=True)
    assert sorted(p.name for p in (root / "renders" / BOX).glob("*.png")) == ["000.png", "001.png"]


def test_missing_renderer_fails_before_any_download(server: _Server, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMPRINT_BLENDER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    before = Counter(server.requests)
    with pytest.raises(ObjaverseError, match="IMPRINT_BLENDER"):
        _fetch(tmp_path, server.url, render_cfg=RenderConfig(backend="blender"))
    assert server.requests == before


def test_a_torn_index_download_is_fetched_again(server: _Server, tmp_path: Path) -> None:
    """The objaverse package downloads straight to the final name: a kill leaves a truncated .json.gz."""
    cache = tmp_path / "raw" / "objaverse" / "cache"
    cache.mkdir(parents=True)
    (cache / "object-paths.json.gz").write_bytes(gzip.compress(json.dumps({BOX: "x"}).encode())[:15])
    root = _fetch(tmp_path, server.url, uids=[BOX])
    assert json.loads((root / "report.json").read_text())["objects"] == 1


def test_objaverse_api_is_restored(server: _Server, tmp_path: Path) -> None:
    import objaverse

    saved_path, saved_opener = objaverse._VERSIONED_PATH, urllib.request._opener
    with objaverse_api(server.url, tmp_path / "cache") as api:
        assert sorted(api.load_uids()) == sorted(SHARD)
        assert (tmp_path / "cache" / "object-paths.json.gz").is_file()
        assert api.load_annotations([BOX])[BOX]["license"] == "by"
    assert objaverse._VERSIONED_PATH == saved_path and urllib.request._opener is saved_opener
    assert HF_PREFIX.endswith("/resolve/main/")


def test_unreachable_index_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ObjaverseError, match="objaverse-url"):
        _fetch(tmp_path, "http://127.0.0.1:9/none/")


@pytest.mark.ray
@pytest.mark.slow
def test_renders_on_ray_workers(server: _Server, tmp_path: Path, ray_local) -> None:
    from imprint.executor import RayExecutor

    root = fetch_objaverse(tmp_path, uids=[BOX, BALL], views=VIEWS, base_url=server.url, render_cfg=RCFG,
                           executor=RayExecutor())
    assert json.loads((root / "report.json").read_text())["objects"] == 2
    _check_views(root / "renders" / BALL)


# ------------------------------------------------------------------------------------------------ the renderer


def test_render_views_orbit_and_alpha(tmp_path: Path) -> None:
    glb = tmp_path / "ball.glb"
    glb.write_bytes(_scene_glb())
    cfg = RenderConfig(views=6, size=SIZE)
    views = render_views(glb, cfg, np.random.default_rng(7))
    assert len(views) == 6
    again = render_views(glb, cfg, np.random.default_rng(7))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(views, again))  # seeded
    for k, (rgba, cam) in enumerate(views):
        assert rgba.shape == (SIZE, SIZE, 4) and rgba.dtype == np.uint8
        alpha = rgba[..., 3]
        assert set(np.unique(alpha)) <= {0, 255}
        assert 0.05 < (alpha > 0).mean() < 0.6
        assert cam["view"] == k and cam["normalisation"]["scale"] > 0
        pose = np.asarray(cam["pose"])
        assert np.isclose(np.linalg.norm(pose[:3, 3]), cam["distance"])
    assert not np.array_equal(views[0][0], views[3][0])  # the opposite side differs
    elevations = {render_views(glb, RenderConfig(views=1, size=32), np.random.default_rng(s))[0][1]["elevation_deg"]
                  for s in range(3)}
    assert len(elevations) == 3 and all(10 <= e <= 30 for e in elevations)


def test_render_config_is_validated() -> None:
    with pytest.raises(ValueError, match="backend"):
        RenderConfig(backend="povray")
    with pytest.raises(ValueError, match="elevation"):
        RenderConfig(elevation=(40.0, 10.0))
    with pytest.raises(ValueError, match="views"):
        RenderConfig(views=0)


def test_blender_backend_without_blender_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMPRINT_BLENDER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    glb = tmp_path / "box.glb"
    glb.write_bytes(demo_object("box").export(file_type="glb"))
    with pytest.raises(RendererUnavailable, match="IMPRINT_BLENDER"):
        render_views(glb, RenderConfig(backend="blender", views=2), np.random.default_rng(0))


def test_shader_programs_are_compiled_once() -> None:
    """pyrender keyed its program cache by a new object per call under OSMesa: a recompile (and 3 MB) per frame."""
    from imprint.ingest import render as R

    for i in range(3):
        render_views(demo_object("sphere", i), RenderConfig(views=4, size=32), np.random.default_rng(i))
    assert R._RENDERERS
    for renderer in R._RENDERERS.values():
        assert len(renderer._renderer._program_cache._program_cache) <= 2


def test_blender_backend_without_blender_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    """The Blender backend runs in its own environment (bpy needs numpy < 2); without one, a clear error."""
    from imprint.ingest.render import RenderError

    monkeypatch.delenv("IMPRINT_BLENDER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    glb = tmp_path / "ball.glb"
    glb.write_bytes(_scene_glb())
    with pytest.raises(RenderError, match="IMPRINT_BLENDER"):
        render_views(glb, RenderConfig(views=2, size=SIZE, backend="blender"), np.random.default_rng(1))
