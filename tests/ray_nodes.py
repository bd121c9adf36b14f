"""Ray nodes started as a user starts them (``ray start --head``, ``ray start --address``), for the cluster tests.

Each node is a ``ray start --block`` process in a session of its own: its GCS, raylet and workers share
its process group, so :meth:`RayNode.kill` ends exactly the processes this test started (by that group's
id), the way a killed terminal or a lost machine ends a node. ``ray stop`` is never used: it would stop
every Ray on the machine.

Every node gets the environment of :func:`node_env`: ``RAY_TMPDIR`` under the test's short temp folder
(so Ray's pointer file ``ray/ray_current_cluster`` and its sessions stay there, never in the real
``/tmp/ray``) and ``HOME`` there too (so ``~/.ray/auth_token`` is the test's own token).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
IMPRINT = str(Path(sys.executable).with_name("imprint"))
READY = "Ray runtime started"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def node_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a node or command of these tests: Ray's temp folder and HOME under ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env.update({"RAY_TMPDIR": str(root), "HOME": str(root / "home"), "RAY_USAGE_STATS_ENABLED": "0",
                "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", **extra})
    return env


def make_token(root: Path) -> str:
    """Generate ``~/.ray/auth_token`` in the tests' HOME with Ray's own command; return the token."""
    env = node_env(root)
    Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    return (Path(env["HOME"]) / ".ray" / "auth_token").read_text().strip()


@dataclass
class RayNode:
    process: subprocess.Popen
    log: Path
    address: str

    def kill(self) -> None:
        """End this node's processes (its process group), as a lost machine ends them."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def alive(self) -> bool:
        return self.process.poll() is None


def _start(args: list[str], root: Path, name: str, env: dict[str, str], address: str) -> RayNode:
    log = root / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    node = RayNode(proc, log, address)
    deadline = time.monotonic() + 90
    while READY not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            node.kill()
            raise RuntimeError(f"ray start {name} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    return node


def start_head(root: Path, cpus: int = 1, **env: str) -> RayNode:
    """``ray start --head`` on free ports, as Ray ships (token authentication on when a token exists)."""
    port = free_port()
    args = ["--head", "--port", str(port), "--num-cpus", str(cpus), "--include-dashboard", "false",
            "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port())]
    return _start(args, root, "head", node_env(root, **env), f"127.0.0.1:{port}")


def start_worker(head: RayNode, root: Path, name: str, cpus: int = 1, **env: str) -> RayNode:
    """``ray start --address HEAD`` (token mode, as a worker of a token cluster must be started)."""
    args = ["--address", head.address, "--num-cpus", str(cpus), "--dashboard-agent-listen-port", str(free_port())]
    return _start(args, root, name, node_env(root, RAY_AUTH_MODE="token", **env), head.address)
