"""Which Ray a command uses, tried as a user would: ``ray start`` clusters on this machine, ``imprint`` commands.

- Without ``--ray-address`` / ``RAY_ADDRESS`` a command starts a private local Ray: a stale pointer to a dead
  cluster never breaks it, and a live ``ray start`` cluster is neither joined nor disturbed.
- With one, it joins that cluster as Ray ships it (token authentication on), with no extra setting.
- A dead address fails at once, an address where something else listens within a minute, in one line.
- A node lost mid-job costs only its unfinished part: the job finishes with the local run's bytes and its
  report says which part ran again.

Each node is a ``ray start --block`` process group this module starts and kills by its id (never
``ray stop``). Ray's temp folder (its pointer file ``ray/ray_current_cluster``) and HOME (the token in
``~/.ray/auth_token``) live under a short temp folder of the test, so the real ``/tmp/ray`` and ``~/.ray``
of this machine are never touched. Every run is compared, byte for byte, with the same job on a clean machine
(in-process, no Ray at all; Ray and local runs write the same bytes, ``test_ray.py``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ray_nodes import IMPRINT, RayNode, free_port, make_token, node_env, start_head, start_worker

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SOURCE = "mvimgnet"  # 4 groups: 4 parts of one group each
TESTS = Path(__file__).resolve().parent
PROBE = ("import sys, ray; ray.init(address=sys.argv[1], include_dashboard=False, configure_logging=False); "
         "print(ray.get_runtime_context().get_job_id(), sum(1 for n in ray.nodes() if n['Alive']))")


def short_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # Ray's socket paths have a length limit


def ingest(sample_roots, out: Path, root: Path, *extra: str, **env: str) -> subprocess.CompletedProcess:
    """``imprint ingest mvimgnet`` with one group per part, in the environment of ``root``."""
    cmd = [IMPRINT, "ingest", SOURCE, "--root", str(sample_roots[SOURCE]), "--out", str(out),
           "--set", "groups_per_part=1", *extra]
    return subprocess.run(cmd, env=node_env(root, **env), capture_output=True, text=True, timeout=300)


def parts(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "records" / SOURCE).glob("part-*.parquet"))}


def counts(out: Path) -> tuple[int, int, dict[str, int]]:
    report = json.loads((out / "records" / SOURCE / "report.json").read_text())
    return report["seen"], report["kept"], report["dropped"]


def probe(root: Path, head: RayNode) -> tuple[int, int]:
    """Connect a driver to ``head``: (its job number, alive nodes). Job numbers count every driver ever joined."""
    out = subprocess.run([sys.executable, "-c", PROBE, head.address], env=node_env(root, RAY_AUTH_MODE="token"),
                         capture_output=True, text=True, timeout=120, check=True)
    job, nodes = out.stdout.split()
    return int.from_bytes(bytes.fromhex(job), "little"), int(nodes)


@dataclass
class Cluster:
    root: Path
    head: RayNode
    workers: list[RayNode] = field(default_factory=list)


@pytest.fixture(scope="module")
def cluster():
    """``ray start --head`` (1 CPU, token authentication on as Ray ships) plus one ``ray start`` worker (1 CPU)."""
    root = short_root()
    make_token(root)
    head = start_head(root, cpus=1)
    c = Cluster(root, head)
    try:
        c.workers.append(start_worker(head, root, "worker", cpus=1))
        yield c
    finally:
        for node in [*c.workers, head]:
            node.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(sample_roots, tmp_path_factory):
    """The same job on a clean machine: the settings the command resolves, run in-process (no Ray at all)."""
    from imprint.config import load_config
    from imprint.executor import LocalExecutor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest

    out = tmp_path_factory.mktemp("clean")
    cfg = load_config(IngestConfig, None, ["groups_per_part=1"])
    run_ingest(SOURCE, sample_roots[SOURCE], out, cfg, LocalExecutor())
    assert len(parts(out)) == 4
    return out


def test_a_stale_pointer_to_a_dead_cluster_never_breaks_a_local_run(sample_roots, reference, short_tmp, tmp_path,
                                                                     monkeypatch):
    from ray._private.services import canonicalize_bootstrap_address

    # What a `ray start --head` killed with its terminal leaves behind: Ray's pointer to a cluster now dead.
    dead_port = free_port()
    pointer = short_tmp / "ray" / "ray_current_cluster"
    pointer.parent.mkdir()
    pointer.write_text(f"127.0.0.1:{dead_port}")
    monkeypatch.setenv("RAY_TMPDIR", str(short_tmp))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Ray's own lookup finds it there: a bare ray.init() would try to join that dead address
    assert canonicalize_bootstrap_address(None).endswith(f":{dead_port}")

    run = ingest(sample_roots, tmp_path / "out", short_tmp, "--workers", "1")
    assert run.returncode == 0, run.stderr
    assert run.stderr.startswith("ray: a private local Ray: 1 node(s), 1 CPUs\n")
    assert "Token authentication" not in run.stderr  # Ray's banner on every local start: not shown
    assert parts(tmp_path / "out") == parts(reference)
    assert pointer.read_text() == f"127.0.0.1:{dead_port}"


def test_a_local_run_neither_joins_nor_disturbs_a_live_cluster(cluster, sample_roots, reference, tmp_path):
    pointer = cluster.root / "ray" / "ray_current_cluster"  # written by `ray start --head`: the live cluster
    before = pointer.read_text()
    job0, nodes0 = probe(cluster.root, cluster.head)
    run = ingest(sample_roots, tmp_path / "out", cluster.root, "--workers", "1")
    assert run.returncode == 0, run.stderr
    assert "ray: a private local Ray: 1 node(s), 1 CPUs" in run.stderr
    job1, nodes1 = probe(cluster.root, cluster.head)
    assert job1 == job0 + 1  # no driver joined the cluster between the two probes
    assert nodes1 == nodes0 == 2 and cluster.head.alive() and pointer.read_text() == before
    assert parts(tmp_path / "out") == parts(reference)


def test_a_named_cluster_is_joined_with_no_extra_setting(cluster, sample_roots, reference, tmp_path):
    job0, _ = probe(cluster.root, cluster.head)
    # No RAY_AUTH_MODE: the token `ray get-auth-token` wrote to ~/.ray/auth_token is found as Ray finds it.
    by_flag = ingest(sample_roots, tmp_path / "flag", cluster.root, "--ray-address", cluster.head.address)
    by_env = ingest(sample_roots, tmp_path / "env", cluster.root, RAY_ADDRESS=cluster.head.address)
    job1, _ = probe(cluster.root, cluster.head)
    for run in (by_flag, by_env):
        assert run.returncode == 0, run.stderr
        assert run.stderr.startswith(f"ray: the Ray cluster at {cluster.head.address}: 2 node(s), 2 CPUs\n")
        assert "Token authentication" not in run.stderr
    assert job1 == job0 + 3  # both commands joined it
    assert parts(tmp_path / "flag") == parts(tmp_path / "env") == parts(reference)


@pytest.mark.parametrize("token,says", [("missing", "no token was found here"),
                                        ("wrong", "the token found here (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
                                                  "~/.ray/auth_token) is not the cluster's")])
def test_a_cluster_whose_token_is_not_here_says_so_in_one_line(cluster, sample_roots, tmp_path, token, says):
    env = {"HOME": str(tmp_path / "elsewhere")}
    if token == "wrong":
        env["RAY_AUTH_TOKEN"] = "0123456789abcdef" * 2
    run = ingest(sample_roots, tmp_path / "out", cluster.root, "--ray-address", cluster.head.address, **env)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"imprint ingest: the Ray cluster at {cluster.head.address} (--ray-address) requires "
                           f"its token and {says}")
    assert "run `ray get-auth-token` on the head" in last


@pytest.mark.parametrize("how", ["--ray-address", "RAY_ADDRESS"])
def test_a_dead_address_fails_at_once_in_one_line(sample_roots, short_tmp, tmp_path, how):
    address = f"127.0.0.1:{free_port()}"
    extra = ["--ray-address", address] if how == "--ray-address" else []
    run = ingest(sample_roots, tmp_path / "out", short_tmp, *extra, **({"RAY_ADDRESS": address} if not extra else {}))
    assert run.returncode == 1
    assert run.stderr.startswith(f"imprint ingest: no Ray cluster at {address} ({how}): Connection refused")
    assert "`ray start --head` printed" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "records").exists()


def test_an_address_where_something_else_listens_fails_within_a_minute(sample_roots, short_tmp, tmp_path):
    from imprint.raycluster import resolve

    # A TCP server that is not a Ray head (a dashboard port, a proxy), where Ray would connect: Ray alone
    # retries for over 10 minutes. The subprocess timeout only guards against a hang; the time is reported.
    host, _ = resolve("127.0.0.1:1", "test")  # Ray connects to this machine's address for 127.0.0.1
    server = socket.create_server((host, 0))
    threading.Thread(target=lambda: [server.accept() for _ in range(64)], daemon=True).start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        t0 = time.monotonic()
        run = ingest(sample_roots, tmp_path / "out", short_tmp, "--ray-address", address)
        print(f"failed after {time.monotonic() - t0:.1f} s")
    finally:
        server.close()
    assert run.returncode == 1 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert "accepts connections but no Ray cluster answered there" in last and "host:6379" in last


def test_a_lost_node_costs_only_its_unfinished_parts(cluster, sample_roots, reference, tmp_path):
    flags = tmp_path / "flags"
    flags.mkdir()
    doomed = start_worker(cluster.head, cluster.root, "doomed", cpus=1, IMPRINT_TEST_DOOMED="1")
    out = tmp_path / "out"
    cmd = [sys.executable, str(TESTS / "ray_tasks.py"), str(flags), "ingest", SOURCE, "--root",
           str(sample_roots[SOURCE]), "--out", str(out), "--set", "groups_per_part=1",
           "--ray-address", cluster.head.address]
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(cmd, env=node_env(cluster.root), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not list(flags.glob("started-*")):
                assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "driver.log").read_text()
                time.sleep(0.1)
            doomed.kill()  # mid-job: a part is running there
            rc = driver.wait(timeout=300)
        finally:
            doomed.kill()
            if driver.poll() is None:
                driver.kill()
    text = (tmp_path / "driver.log").read_text()
    assert rc == 0, text
    assert parts(out) == parts(reference)
    lost = [p.name.removeprefix("started-") for p in flags.glob("started-*")]
    report = json.loads((out / "records" / SOURCE / "report.json").read_text())
    assert [r["part"] for r in report["retried_parts"]] == lost and report["retried_parts"][0]["retries"] >= 1
    assert report["failed_parts"] == [] and counts(out) == counts(reference)
    assert f"1 part(s) ran again after their worker or node was lost: {lost[0]}" in text
