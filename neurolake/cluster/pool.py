"""Work on Ray without Ray in the caller: an actor pool with bounded calls in flight, and a task map.

The rest of neurolake never imports ``ray``; it hands plain classes and functions to
:class:`ActorPool` and :func:`task_map`, and gets plain values or a :class:`RemoteError` back.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from neurolake.cluster.ray_env import connect, node_id
from neurolake.errors import NeurolakeError, root_cause

log = logging.getLogger(__name__)

__all__ = ["ActorPool", "RemoteError", "cluster_cpus", "task_map"]

# What Ray raises when the process of an actor or task died rather than the code in it.
_DEATHS = ("ActorDiedError", "RayActorError", "ActorUnavailableError", "WorkerCrashedError")


class RemoteError(NeurolakeError):
    """A call that failed on a worker: what it raised (``cause``), or the death of its process.

    Attributes:
        cause: the innermost exception (the user code's own, not Ray's wrapping).
        process_died: the worker process died (out of memory, a crash in native code).
    """

    def __init__(self, exc: BaseException) -> None:
        self.cause = root_cause(exc)
        self.process_died = type(self.cause).__name__ in _DEATHS
        super().__init__(str(self.cause))
        self.__cause__ = exc


class _Node:
    """Mixed into every pool actor: the id of the node it runs on."""

    def neurolake_node_id(self) -> str:
        return node_id()


class ActorPool:
    """Actors of one class, each taking at most ``per_actor`` calls at once.

    Args:
        cls: a plain class; its instances live in the actors.
        args: one tuple of constructor arguments per actor (the pool's size).
        kwargs: constructor keyword arguments shared by all actors.
        per_actor: calls one actor holds at once (the actor runs them on as many threads).
        num_cpus, num_gpus: what each actor reserves.
        max_restarts: times Ray restarts an actor whose process died (-1: always).
        max_task_retries: times a call is retried on the restarted actor.
        spread: place the actors one per node first.
        address: join the Ray cluster there (else ``$RAY_ADDRESS``, else a local Ray).
    """

    def __init__(
        self,
        cls: type,
        args: Sequence[tuple],
        *,
        kwargs: dict[str, Any] | None = None,
        per_actor: int = 1,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_restarts: int = 0,
        max_task_retries: int = 0,
        spread: bool = False,
        address: str | None = None,
    ) -> None:
        connect(address)
        hosted = type(f"{cls.__name__}OnRay", (cls, _Node), {"__module__": __name__})
        options: dict[str, Any] = {
            "num_cpus": num_cpus,
            "max_restarts": max_restarts,
            "max_task_retries": max_task_retries,
            "max_concurrency": per_actor,
        }
        if num_gpus:
            options["num_gpus"] = num_gpus
        if spread:
            options["scheduling_strategy"] = "SPREAD"
        remote_cls: Any = ray.remote(hosted).options(**options)
        self.per_actor = per_actor
        self._actors: list[Any] = [remote_cls.remote(*a, **(kwargs or {})) for a in args]
        self._node_refs = [actor.neurolake_node_id.remote() for actor in self._actors]
        self._nodes: list[str | None] = [None] * len(self._actors)
        self.load = [0] * len(self._actors)
        self._in_flight: dict[Any, tuple[int, Any]] = {}
        self._tasks: dict[Callable[..., Any], Any] = {}
        self._owner = True

    def view(self, indices: Iterable[int]) -> ActorPool:
        """A pool of some of these actors that can be passed to another actor or task, which
        then calls them itself. It does not own them: its :meth:`close` stops nothing."""
        picked = list(indices)
        view = object.__new__(ActorPool)
        view.per_actor = self.per_actor
        view._actors = [self._actors[a] for a in picked]
        view._node_refs = [self._node_refs[a] for a in picked]
        view._nodes = [self._nodes[a] for a in picked]
        view.load = [0] * len(picked)
        view._in_flight = {}
        view._tasks = {}
        view._owner = False
        return view

    def __len__(self) -> int:
        return len(self._actors)

    def __enter__(self) -> ActorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def node_of(self, a: int, wait: bool = False) -> str | None:
        """The node actor ``a`` runs on, or ``None`` while it is still being placed (``wait``: block)."""
        if self._nodes[a] is None:
            ready, _ = ray.wait([self._node_refs[a]], timeout=None if wait else 0)
            if ready:
                try:
                    self._nodes[a] = ray.get(ready[0])
                except ray.exceptions.RayError:
                    return None
        return self._nodes[a]

    def free_actor(self) -> int | None:
        """The least loaded actor that can take another call, or ``None``."""
        a = min(range(len(self.load)), key=self.load.__getitem__)
        return a if self.load[a] < self.per_actor else None

    def near(self, a: int, fn: Callable[..., Any], *args: Any, retries: int = 3) -> Any:
        """Run ``fn(*args)`` as a task on actor ``a``'s node (anywhere while it is unplaced).

        The task reserves no CPU (the pool's bound on calls in flight bounds it too); the
        returned handle can be passed to :meth:`submit` in place of its value.
        """
        node = self.node_of(a)
        options: dict[str, Any] = {"num_cpus": 0, "max_retries": retries}
        if node:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        if fn not in self._tasks:  # registered with Ray once per pool, not per call
            self._tasks[fn] = ray.remote(fn)
        return self._tasks[fn].options(**options).remote(*args)

    def submit(self, a: int, method: str, *args: Any, tag: Any = None) -> None:
        """Call ``method(*args)`` on actor ``a``; :meth:`next_done` gives it back with ``tag``."""
        self._in_flight[getattr(self._actors[a], method).remote(*args)] = (a, tag)
        self.load[a] += 1

    @property
    def busy(self) -> bool:
        return bool(self._in_flight)

    def next_done(self) -> tuple[Any, int, Any, RemoteError | None]:
        """Wait for the next call to finish: ``(tag, actor, value, error)``."""
        done, _ = ray.wait(list(self._in_flight), num_returns=1)
        a, tag = self._in_flight.pop(done[0])
        self.load[a] -= 1
        try:
            return tag, a, ray.get(done[0]), None
        except ray.exceptions.RayError as exc:
            return tag, a, None, RemoteError(exc)

    def call(self, a: int, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``method(*args)`` on actor ``a`` and wait; :class:`RemoteError` if it failed."""
        try:
            return ray.get(getattr(self._actors[a], method).remote(*args), timeout=timeout)
        except ray.exceptions.RayError as exc:
            raise RemoteError(exc) from exc

    def broadcast(self, method: str, *args: Any) -> list[Any]:
        """Call ``method(*args)`` on every actor at once; their values in actor order."""
        try:
            return ray.get([getattr(actor, method).remote(*args) for actor in self._actors])
        except ray.exceptions.RayError as exc:
            raise RemoteError(exc) from exc

    def broadcast_later(self, method: str, *args: Any) -> Callable[[], list[Any]]:
        """Start ``method(*args)`` on every actor and return at once; calling the returned
        function waits for their values (as :meth:`broadcast` gives them)."""
        try:
            refs = [getattr(actor, method).remote(*args) for actor in self._actors]
        except ray.exceptions.RayError as exc:
            raise RemoteError(exc) from exc

        def values() -> list[Any]:
            try:
                return ray.get(refs)
            except ray.exceptions.RayError as exc:
                raise RemoteError(exc) from exc

        return values

    def wait_alive(self, a: int, deadline_s: float = 300) -> None:
        """Block until actor ``a`` answers again (after a call crashed it and Ray restarts it)."""
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                ray.get(self._actors[a].neurolake_node_id.remote(), timeout=60)
                return
            except ray.exceptions.RayError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        """Stop every actor (a :meth:`view` stops none). Calls in flight are abandoned; their
        outcomes (errors, mostly, once the actors are gone) are taken here, so that Ray does
        not print them as unhandled."""
        abandoned = list(self._in_flight)
        for actor in self._actors if self._owner else []:
            ray.kill(actor)
        self._actors = []
        self._in_flight.clear()
        if abandoned:
            ready, _ = ray.wait(abandoned, num_returns=len(abandoned), timeout=10)
            for ref in ready:
                with contextlib.suppress(ray.exceptions.RayError):
                    ray.get(ref, timeout=0)


def task_map(
    fn: Callable[..., Any],
    items: Iterable[Any],
    *,
    workers: int,
    num_cpus: float = 1,
    address: str | None = None,
    on_result: Callable[[int, Any], None] | None = None,
    spread: bool = False,
    shared: Any = None,
) -> list[Any]:
    """``[fn(item) for item in items]`` as Ray tasks, at most ``workers`` running at once.

    Items are submitted in the given order (put the heaviest first for balance); results come
    back in the same order. ``on_result(index, value)`` is called as each task finishes (a
    progress bar). ``spread``: over the nodes (tasks that reserve no CPU would
    otherwise all stay on this node). ``shared``: a value that every call reads, put in the
    object store once and passed first, ``fn(shared, item)`` (numpy arrays in it reach the
    tasks of a node without a copy, read-only). :class:`RemoteError` if any task fails.
    """
    connect(address)
    options: dict[str, Any] = {"num_cpus": num_cpus}
    if spread:
        options["scheduling_strategy"] = "SPREAD"
    remote: Any = ray.remote(fn).options(**options)
    items = list(items)
    leading = () if shared is None else (ray.put(shared),)
    results: dict[int, Any] = {}
    pending: dict[Any, int] = {}
    next_item = 0
    try:
        while next_item < len(items) or pending:
            while next_item < len(items) and len(pending) < workers:
                pending[remote.remote(*leading, items[next_item])] = next_item
                next_item += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                results[index] = ray.get(ref)
                if on_result is not None:
                    on_result(index, results[index])
    except ray.exceptions.RayError as exc:
        for ref in pending:
            ray.cancel(ref)
        raise RemoteError(exc) from exc
    return [results[i] for i in range(len(items))]


def gpu_share(actors: int, gpus: int) -> float:
    """The share of a GPU each of ``actors`` model actors reserves on ``gpus`` GPUs: 1 while
    there are enough, else ``1 / k`` where ``k`` actors must share one, so that every actor
    fits (three actors on two GPUs take half a GPU each, not two thirds, which would leave the
    third waiting for ever); 0 without GPUs."""
    return 1.0 / math.ceil(actors / gpus) if gpus else 0.0


def cluster_gpus(gpus: int | None, address: str | None = None) -> int:
    """``gpus`` when given (a cluster that adds GPU nodes on demand has none at first),
    else the GPUs the Ray cluster has now (connecting first)."""
    resources = connect(address)
    return int(resources.get("GPU", 0)) if gpus is None else gpus


def cluster_cpus(address: str | None = None) -> int:
    """CPUs of the Ray cluster (connecting first)."""
    return max(1, int(connect(address).get("CPU", 1)))
