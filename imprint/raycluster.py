"""Which Ray a command runs on, and the only code that calls ``ray.init``.

- **No address named** (no ``--ray-address``, no ``RAY_ADDRESS``): a private local Ray, sized by
  ``--workers``, started for this command and stopped after it (:func:`start_local`). It never joins a
  cluster nobody named: not the one a stale ``/tmp/ray/ray_current_cluster`` points to (left behind by a
  ``ray start`` whose process was killed), not another user's ``ray start`` on a shared machine.
- **An address named**: that cluster is joined (:func:`join`), as Ray ships today:

  - token authentication, which ``ray start --head`` turns on: when ``RAY_AUTH_MODE`` is unset and a
    token is available where Ray's own loader looks (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``,
    ``~/.ray/auth_token``), token mode is turned on, the rule Ray applies to a cluster it finds on this
    machine by itself; ``RAY_AUTH_MODE`` set by the user is respected;
  - an address where nothing answers fails at once (a TCP probe, :data:`PROBE_TIMEOUT_S`), and one where
    something else answers (the dashboard's port, a firewall that swallows packets after the handshake)
    within about 35 s (Ray's own connect budget, :data:`CONNECT_BUDGET`, unless the user set it), each
    with a :class:`RayClusterError` that says what to check.

Ray's internals used here (token setup, address resolution, config reload) are imported defensively: a
Ray without them gets the plain ``ray.init``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from imprint.errors import ImprintError

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
# Ray's connect loop is 20 attempts of about 45 s each (over 10 minutes) against an address that accepts TCP
# but is no Ray head; this makes it 2 attempts of about 16 s. Values the user exported are kept.
CONNECT_BUDGET = {"RAY_py_gcs_connect_timeout_s": "5", "RAY_gcs_server_port_wait_time_s": "2"}
# Settings that hold for every ray.init here: no dashboard of our own, Ray leaves the logging alone, and the
# workers' stdout/stderr are shown by the driver (a cluster's workers have no other terminal).
INIT_SETTINGS: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}

HOST_PORT = "HOST:PORT as `ray start --head` printed it (e.g. 10.0.0.5:6379; not the dashboard's http://…:8265)"
WHAT_TO_CHECK = ("check that the cluster's head is running (`ray status` on it), that this is its address as "
                 "`ray start --head` printed it (host:6379 by default; not the dashboard's :8265), and that "
                 "this machine can reach that port; or drop --ray-address and RAY_ADDRESS to run on a private "
                 "local Ray")


class RayClusterError(ImprintError, ConnectionError):
    """A named Ray cluster cannot be joined; the message says what to check."""


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What a command runs on: shown in its log, so a user sees which cluster was used."""

    address: str | None  # None: a private local Ray
    nodes: int
    cpus: float
    gpus: float

    def describe(self) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "a private local Ray"
        gpus = f", {self.gpus:g} GPUs" if self.gpus else ""
        return f"{where}: {self.nodes} node(s), {self.cpus:g} CPUs{gpus}"


def named_address(address: str | None) -> tuple[str, str] | None:
    """The cluster the user named, and where they named it: ``--ray-address``, else ``RAY_ADDRESS``."""
    if address:
        return address, "--ray-address"
    env = os.environ.get("RAY_ADDRESS", "").strip()
    return (env, "RAY_ADDRESS") if env else None


def start_local(ray: Any, cpus: int, temp_dir: str | None = None) -> None:
    """A private local Ray with ``cpus`` CPUs (``address="local"``: never a cluster found on this machine)."""
    ray.init(address="local", num_cpus=cpus, _temp_dir=temp_dir, **INIT_SETTINGS)


def join(ray: Any, address: str, origin: str) -> None:
    """Connect this process to the cluster at ``address`` (named by ``origin``), or raise RayClusterError."""
    host, port = resolve(address, origin)
    probe(host, port, address, origin)
    token = enable_token_auth()
    try:
        with connect_budget():
            ray.init(address=address, **INIT_SETTINGS)
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:  # RayError: AuthenticationError
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise join_error(exc, address, origin, f"{host}:{port}", token) from exc


def cluster_info(ray: Any, address: str | None) -> ClusterInfo:
    totals = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return ClusterInfo(address, nodes, float(totals.get("CPU", 0)), float(totals.get("GPU", 0)))


def resolve(address: str, origin: str) -> tuple[str, int]:
    """The host and port Ray will connect to for ``address`` (``auto`` read from Ray's pointer file)."""
    if address.startswith("ray://"):  # Ray Client: the client server's port, 10001 by default
        parts = urlsplit(address)
        return parts.hostname or "", parts.port or 10001
    try:
        from ray._private.services import canonicalize_bootstrap_address

        resolved = canonicalize_bootstrap_address(address) or address
    except ImportError:  # pragma: no cover - a Ray without it: take the address as written
        resolved = address
    except ConnectionError:  # "auto", and no `ray start` on this machine
        raise RayClusterError(f"{origin}={address!r} names the cluster started with `ray start` on this machine, "
                              f"and there is none; give the head's {HOST_PORT}") from None
    except ValueError:
        resolved = ""
    host, _, port = resolved.rpartition(":")
    if not host or not port.isdigit():
        raise RayClusterError(f"{origin}={address!r} is not a Ray address: give the head's {HOST_PORT}")
    return host.strip("[]"), int(port)


def probe(host: str, port: int, address: str, origin: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail at once when nothing listens at ``host:port`` (Ray itself would retry for minutes)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.timeout:
        reason = f"no answer within {timeout:g} s"
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    raise RayClusterError(f"no Ray cluster at {address} ({origin}): {reason} from {host}:{port}; {WHAT_TO_CHECK}")


def enable_token_auth() -> bool:
    """Turn Ray's token authentication on when a token is available and ``RAY_AUTH_MODE`` is unset.

    ``ray start --head`` turns token authentication on and writes the token to ``~/.ray/auth_token``; Ray's
    own client finds it only for a cluster it discovers by itself, never for a named address. This applies
    Ray's own rule (and Ray's own token loader) to the named address. Returns whether token mode is on.
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode.lower() == "token"
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # pragma: no cover - a Ray without token authentication
        return False
    return bool(maybe_enable_token_auth_if_token_available(warn_if_disabled=False))


@contextlib.contextmanager
def connect_budget() -> Iterator[None]:
    """Bound Ray's connect retries (:data:`CONNECT_BUDGET`) for the block; settings the user exported win."""
    added = {k: v for k, v in CONNECT_BUDGET.items() if k not in os.environ}
    os.environ.update(added)
    _reload_ray_config()
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _reload_ray_config() -> None:
    """Make Ray re-read its ``RAY_*`` settings (Ray does the same when it turns token mode on)."""
    try:
        import ray._raylet as raylet
    except ImportError:  # pragma: no cover
        return
    config = getattr(raylet, "Config", None)  # compiled; absent from Ray's type stubs
    if config is not None:
        config.initialize("")


def join_error(exc: BaseException, address: str, origin: str, target: str, token: bool) -> RayClusterError:
    """The one-line reason a connection that passed the probe still failed."""
    text = " ".join(f"{type(exc).__name__} {exc} {exc.__cause__ or ''}".split())
    if any(k in text for k in ("AuthenticationError", "InvalidAuthToken", "Unauthenticated")):
        mode = os.environ.get("RAY_AUTH_MODE", "")
        where = "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
        if "no authentication token was found" in text.lower() or not (token or mode):
            have = f"no token was found here {where}"
        elif token:
            have = f"the token found here {where} is not the cluster's"
        else:
            have = f"RAY_AUTH_MODE={mode} is set here (unset it)"
        return RayClusterError(f"the Ray cluster at {address} ({origin}) requires its token and {have}: run "
                               f"`ray get-auth-token` on the head and put the token in ~/.ray/auth_token on this "
                               f"machine, or export RAY_AUTH_TOKEN")
    return RayClusterError(f"{target} accepts connections but no Ray cluster answered there ({origin}={address}): "
                           f"{WHAT_TO_CHECK}")
