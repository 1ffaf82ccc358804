"""Connecting to Ray: a cluster when an address is given, else a local instance sized to the machine."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)


def connect(address: str | None = None, num_cpus: int | None = None) -> dict:
    """Initialise Ray once per process; returns the cluster's resources.

    ``address`` (or ``$RAY_ADDRESS``) joins an existing cluster; otherwise a local Ray
    starts with the CPUs this process can keep busy (its affinity within a container's CPU
    limit: :func:`~neurolake.store.pools.usable_cpus`) and the GPUs Ray detects itself.
    """
    import ray

    from neurolake.store.pools import usable_cpus

    if not log.isEnabledFor(logging.DEBUG):
        # Ray's own loggers print a start-up banner (token authentication, dashboard, ...) at
        # WARNING/INFO; a user sees them only with ``neurolake -v``.
        logging.getLogger("ray").setLevel(logging.ERROR)
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            log.info("connecting to Ray at %s", address)
            # `ray start` turns token authentication on by itself when this machine has a
            # token (~/.ray/auth_token, which a local Ray writes on its first start); a client
            # given an address does not, and is refused. Present the token when there is one
            # (a cluster without authentication ignores it); RAY_AUTH_MODE, when set, decides.
            from ray._private.authentication.authentication_token_setup import (
                maybe_enable_token_auth_if_token_available,
            )

            maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
            ray.init(address=address, log_to_driver=False)
        else:
            # A local Ray advertises the loopback address only. Its gRPC servers still listen on
            # every interface (Ray 2.60 has no setting for that), so what keeps other hosts out
            # is the token authentication Ray turns on for a local cluster: leave RAY_AUTH_MODE
            # unset. Give --ray-address to work with a cluster.
            # address="local": always a new instance, never a stale cluster that an earlier
            # `ray start` left in /tmp/ray/ray_current_cluster.
            # Ray starts its workers at nice 15, to keep the driver responsive; here the
            # workers do the computing, and on a machine shared with other work (at nice 0)
            # they would yield the CPUs to it while this process would not.
            ray.init(
                address="local",
                _node_ip_address="127.0.0.1",
                num_cpus=num_cpus or usable_cpus(),
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                logging_level=logging.ERROR,
                _system_config={"worker_niceness": 0},
            )
    return ray.cluster_resources()


def connected() -> bool:
    """Whether this process is connected to Ray."""
    import ray

    return ray.is_initialized()


def disconnect() -> None:
    """Leave Ray (a local instance this process started stops)."""
    import ray

    ray.shutdown()


def put(value: Any) -> Any:
    """``value`` in the object store, once: its reference, which other processes of the
    cluster read (those of its node as views of shared memory, not copies)."""
    import ray

    return ray.put(value)


def get(ref: Any) -> Any:
    """The value of a reference :func:`put` made."""
    import ray

    return ray.get(ref)


def node_id() -> str:
    """The id of the Ray node this process runs on."""
    import ray

    return str(ray.get_runtime_context().get_node_id())
