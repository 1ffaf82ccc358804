"""``neurolake ingest``: stream a corpus through a model on Ray into the lake, exactly once.

Why Ray core actors rather than Ray Data: a part is the unit of writing and of
commit (a writer owns whole shards), so the natural task is "process part P", not a
stream of rows. Each model actor is built once and turns whole parts into committed
data; CPU tasks decode a part's audio ahead of it. No activations pass through the
driver: actors write the lake themselves. The driver keeps at most two parts in
flight per actor, so decoding cannot run ahead of the models and fill memory, and a
slow store holds the actor (its writer applies backpressure) and hence the driver.
Actors are restarted when their process dies and the part is retried; re-running a
part rewrites identical bytes, and resuming runs only uncommitted parts.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from neurolake.cluster.pool import ActorPool, RemoteError, gpu_share
from neurolake.cluster.progress import progress_bar
from neurolake.cluster.ray_env import connect
from neurolake.errors import LakeError, PlanError, is_storage_error, one_line
from neurolake.ingest import DEFAULT_MAX_DURATION_S
from neurolake.ingest.decode import decode_part
from neurolake.ingest.part import PartProcessor, PartResult
from neurolake.ingest.planning import PlannedCorpus, plan_corpus
from neurolake.models import load_model
from neurolake.store import Lake, LayerSpec, Location
from neurolake.store.lease import DEFAULT_TTL_S, RunLease

log = logging.getLogger(__name__)


@dataclass
class IngestSummary:
    run_id: str
    lake_url: str
    parts_total: int
    parts_run: int
    parts_already_committed: int
    utterances_done: int = 0
    utterances_failed: int = 0
    utterances_skipped: int = 0
    plan_errors: int = 0
    audio_seconds: float = 0.0
    frames: int = 0
    bytes_raw: int = 0
    wall_seconds: float = 0.0
    nodes: dict[str, int] = field(default_factory=dict)
    parts_failed: list[str] = field(default_factory=list)


def default_run_id(corpus_spec: str, model_spec: str) -> str:
    corpus = re.sub(r"[^A-Za-z0-9._-]+", "-", str(corpus_spec).rstrip("/").rsplit("/", 1)[-1]).strip("-.") or "corpus"
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", model_spec.split(":", 1)[0]) or "model"
    return f"{model}-{corpus}"[:120]


def default_layers(adapter) -> list:
    """What to capture when no ``--layers`` is given: the model's blocks, not every sub-module.

    The transformer layers where the model has a run of numbered sibling modules that hold
    attention (the longest such run: wav2vec2's, HuBERT's or Whisper's encoder layers, however
    few, and not the seven convolutions of their feature encoder, which outnumber the layers
    of a small or distilled model); else the longest run of numbered siblings when there is
    one of three or more (the convolutions of Wav2Letter); else the capturable top-level
    modules (``frontend, conv1..conv7, head`` of the demo model). Dropout and activation-only
    modules are left out: they repeat their neighbour's values.
    """
    layers = adapter.capturable_layers()
    modules = dict(adapter.module.named_modules())
    skip = ("Dropout", "ReLU", "GELU", "Tanh", "Identity")
    layers = [layer for layer in layers if not type(modules.get(layer.name)).__name__.startswith(skip)]
    runs: dict[str, list] = {}
    for layer in layers:
        parent, _, last = layer.name.rpartition(".")
        if parent and last.isdigit():
            runs.setdefault(parent, []).append(layer)
    blocks = [run for run in runs.values() if all(_holds_attention(modules.get(layer.name)) for layer in run)]
    if blocks:
        return max(blocks, key=len)
    longest = max(runs.values(), key=len, default=[])
    if len(longest) >= 3:
        return longest
    return [layer for layer in layers if "." not in layer.name] or layers


def _holds_attention(module: Any) -> bool:
    """Whether ``module`` is or holds an attention module (a transformer or conformer layer)."""
    return module is not None and any("attention" in type(m).__name__.lower() for m in module.modules())


def plan_ingest(
    corpus: str,
    model: str,
    layers: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    part_rows: int | None = None,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    alignments: str | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: bool | None = None,
) -> tuple[Any, PlannedCorpus]:
    """The adapter and the plan (headers only), for ``--dry-run`` and for :func:`ingest`.
    ``workers``: Ray tasks reading headers (:func:`~neurolake.ingest.planning.plan_corpus`)."""
    adapter = load_model(model)
    specs = _layer_specs(_chosen_layers(adapter, layers))
    return adapter, plan_corpus(
        corpus,
        adapter,
        specs,
        storage_options=storage_options,
        part_rows=part_rows,
        max_duration_s=max_duration_s,
        alignments=alignments,
        workers=workers,
        ray_address=ray_address,
        progress=progress,
    )


class ModelWorker:
    """What each model actor holds: the model, built once, and the part processor of the run.

    The pool gives it two parts at once (``per_actor=2``): one in the forward pass while the
    other is labelled, compressed and committed (:class:`PartProcessor` serialises the forward
    passes). An actor that dies (out of memory, a crash in native code) is restarted; a part
    is tried at most :data:`MAX_PART_ATTEMPTS` times, then its failing utterances are isolated
    (see :func:`_isolate`).
    """

    def __init__(self, lake: Location, run_id, model_spec, layers, *, threads: int = 1, device: str = "cpu", **kwargs):
        import threading

        import torch

        torch.set_num_threads(max(1, threads))
        # The model is built now, while the driver may still be planning; the run is
        # opened at the first part (it may not exist yet).
        self.adapter = load_model(model_spec, device=device)
        _warm_up_labels(self.adapter)
        self._args = (lake, run_id, model_spec, layers)
        self._kwargs = dict(kwargs, device=device, adapter=self.adapter)
        self._lock = threading.Lock()
        self.processor = None

    def _processor(self):
        with self._lock:
            if self.processor is None:
                self.processor = PartProcessor(*self._args, **self._kwargs)
        return self.processor

    def process(self, part, utterances, decoded, extra_errors, lease=None, exclude=None):
        return self._processor().process(part, utterances, decoded, extra_errors, lease=lease, exclude=exclude)

    def probe(self, utterances, sample_rate, storage_options):
        decoded = [d for d in decode_part(utterances, sample_rate, storage_options) if d.audio is not None]
        if decoded:
            self._processor().probe(decoded)

    def pid(self) -> int:
        return os.getpid()

    def device(self) -> str:
        """Where the model runs: ``cpu`` or ``cuda``."""
        return self.adapter.device.type


def _warm_up_labels(adapter) -> None:
    """Load the compiled labelling kernels before the first part (numba's cache takes ~0.3 s)."""
    import numpy as np

    from neurolake.labels.frames import label_utterance

    letters = [t for t in adapter.tokens if len(t) == 1 and t.isalpha()]
    if not letters:
        return
    log_probs = np.log(np.full((8, len(adapter.tokens)), 1.0 / len(adapter.tokens), dtype=np.float32))
    try:
        label_utterance(log_probs, adapter.tokens, letters[0], frame_shift_s=adapter.frame_shift_s)
    except Exception:
        log.debug("label warm-up failed", exc_info=True)


def ingest(
    lake_url: str | Location,
    corpus: str,
    model: str,
    *,
    layers: Sequence[str] | None = None,
    run_id: str | None = None,
    ray_address: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    actors: int | None = None,
    threads: int | None = None,
    gpus: int | None = None,
    part_rows: int | None = None,
    max_batch: int = 16,
    progress: bool | None = None,
    on_part_done=None,
    only_parts: Sequence[str] | None = None,
    lease_ttl_s: float = DEFAULT_TTL_S,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    relevance: bool | None = None,
    alignments: str | None = None,
) -> IngestSummary:
    """Ingest ``corpus`` through ``model`` into run ``run_id`` of the lake; resumes if it exists.

    With ``relevance``, every captured layer on the output frame grid also gets its relevance
    stored per frame (gradient x activation of the log-probability of the predicted token,
    :meth:`~neurolake.models.adapter.ModelAdapter.relevance`), written and committed with the
    part's activations; ``None`` keeps what an existing run has (none for a new run).
    ``only_parts`` limits the work to those pending parts (``verify --repair`` re-does the
    damaged ones and nothing else). ``alignments``: a directory of forced-aligner TextGrids
    (:func:`~neurolake.ingest.planning.plan_corpus`). ``gpus``: the GPUs the model actors use
    in all (see :func:`actor_shares`); by default those the cluster has when the ingest starts,
    so a cluster that adds GPU nodes on demand (KubeRay's or the cluster launcher's autoscaler,
    which start with none) needs it given, 0 runs the models on CPUs."""
    for name, value in (("actors", actors), ("threads", threads), ("max_batch", max_batch)):
        if value is not None and value < 1:
            raise PlanError(f"{name} must be at least 1, got {value}")
    if gpus is not None and gpus < 0:
        raise PlanError(f"gpus must be at least 0, got {gpus}")
    t0 = time.perf_counter()
    # One Location (URL and storage options) for the lake from here on; ``storage_options``
    # also open the corpus and its audio.
    lake = Lake.open(lake_url, storage_options, create=True)
    run_id = run_id or default_run_id(corpus, model)
    adapter = load_model(model)
    chosen = _chosen_layers(adapter, layers)
    layer_names = [layer.name for layer in chosen]
    relevance_layers = _relevance_layers(lake, run_id, adapter, layer_names, relevance)
    # A run that is already complete needs no Ray at all; otherwise the model actors are
    # started first and build their models while this process reads the corpus headers.
    finished = run_id in lake.list_runs() and not _wanted(lake.run(run_id).pending_parts(), only_parts)
    pool: ActorPool | None = None
    # One writer per run: a second ingest of the run stops here with a clear message.
    lease = RunLease(lake.loc.child("runs", run_id), ttl_s=lease_ttl_s) if not finished else None
    if lease is not None:
        lease.acquire()
    outage = False
    try:
        if not finished:
            pool = _start_actors(actors, threads, gpus, ray_address, lake.loc, run_id, model, layer_names, max_batch)
        planned = plan_corpus(
            corpus,
            adapter,
            _layer_specs(chosen),
            storage_options=storage_options,
            part_rows=part_rows,
            max_duration_s=max_duration_s,
            alignments=alignments,
            ray_address=ray_address,
            progress=progress,
        )
        run = lake.create_run(
            run_id,
            model=adapter.spec,
            corpus=planned.corpus_manifest(),
            layers=planned.layers,
            plan=planned.plan,
            relevance=relevance_layers,
        )
        pending = _wanted(run.pending_parts(), only_parts)
        summary = IngestSummary(
            run_id=run_id,
            lake_url=lake.url,
            parts_total=len(planned.plan.parts),
            parts_run=len(pending),
            parts_already_committed=len(planned.plan.parts) - len(pending),
            plan_errors=len(planned.errors),
            utterances_skipped=planned.skipped,
        )
        if pending and not pool:  # finished a moment ago, and since then parts were lost
            pool = _start_actors(actors, threads, gpus, ray_address, lake.loc, run_id, model, layer_names, max_batch)
        if pending:
            _run_parts(
                summary,
                planned,
                pending,
                pool,
                adapter,
                storage_options,
                progress,
                on_part_done,
                t0,
                lease,
                actor_args=(lake.loc, run_id, model, layer_names),
            )
    except LakeError as exc:
        outage = is_storage_error(exc)
        raise
    finally:
        if pool is not None:
            pool.close()
        if lease is not None and outage:
            lease.abandon()  # storage that answers no more cannot take the release either
        elif lease is not None:
            try:
                lease.release()
            except Exception as exc:
                log.info("could not release the lease on run %s (%s); it expires in %g s", run_id, exc, lease.ttl_s)
    summary.utterances_failed += len([e for e in planned.errors if e["utterance_id"]]) if pending else 0
    summary.wall_seconds = time.perf_counter() - t0
    return summary


def _relevance_layers(lake: Lake, run_id: str, adapter, layer_names: list[str], relevance: bool | None) -> list[str]:
    """The layers whose relevance the run stores (see :func:`ingest`)."""
    if relevance is None:
        return list(lake.run(run_id).manifest.get("relevance", [])) if run_id in lake.list_runs() else []
    if not relevance:
        return []
    chosen = [name for name in layer_names if adapter.on_output_grid(name)]
    if not chosen:
        raise PlanError(
            f"--relevance: none of the captured layers ({', '.join(layer_names)}) is on the model's output "
            "frame grid; capture one that is"
        )
    return chosen


def _wanted(pending: list, only_parts: Sequence[str] | None) -> list:
    return pending if only_parts is None else [u for u in pending if u.part_id in set(only_parts)]


def _chosen_layers(adapter, layers: Sequence[str] | None) -> list:
    return adapter.select_layers(layers) if layers else default_layers(adapter)


def _layer_specs(chosen) -> list[LayerSpec]:
    return [LayerSpec(layer.name, layer.units, module=layer.module_path) for layer in chosen]


def actor_shares(actors: int | None, threads: int | None, cpus: int, gpus: int) -> tuple[int, float, int]:
    """``(actors, GPUs each, torch threads each)`` for a cluster of ``cpus`` CPUs and ``gpus`` GPUs.

    By default one actor per GPU, else one per two CPUs. More actors than GPUs share them
    (:func:`~neurolake.cluster.pool.gpu_share`). Two actors on one GPU are two processes with
    an interpreter lock each: the labels, the cube rows and the commits of one part run while
    the other's forward has the GPU (one actor's lock caps the CPU side, see the README's
    ingest figures).
    """
    n_actors = actors or (gpus if gpus else max(1, cpus // 2))
    share = gpu_share(n_actors, gpus)
    # On CPU the models get every core: decoding and writing are a smaller share of the
    # work. (One single-threaded actor per core was tried: on real batches of the demo
    # model it is no faster than one actor with two threads, and it doubles start-up and
    # memory; large models gain from threads.)
    # The thread count can change the last bits of a forward pass (the order of sums), so a
    # lake is byte-for-byte reproducible for a given number of threads per actor.
    threads = threads or (max(1, cpus // n_actors) if not gpus else 1)
    return n_actors, share, threads


def _start_actors(
    actors, threads, gpus, ray_address, lake: Location, run_id, model, layer_names, max_batch
) -> ActorPool:
    """Connect to Ray and start the model actors (see :func:`actor_shares`); ``gpus``: in all,
    else the cluster's now."""
    resources = connect(ray_address)
    cpus = int(resources.get("CPU", 0))
    if gpus is None:
        gpus = int(resources.get("GPU", 0))
        if not gpus and not cpus:
            log.warning(
                "the Ray cluster has no CPU or GPU to run models on yet (one that adds nodes on demand?): "
                "one model actor on the CPU is asked for; give --gpus N for N GPU actors"
            )
    n_actors, share, threads = actor_shares(actors, threads, max(1, cpus), gpus)
    log.info("%d model actors, %d torch threads each, %g GPU each", n_actors, threads, share)
    # SPREAD: one model per node first, so a cluster's nodes all work from the start.
    return ActorPool(
        ModelWorker,
        [(lake, run_id, model, layer_names)] * n_actors,
        kwargs={
            "device": "cuda" if gpus else "cpu",
            "max_batch": max_batch,
            "threads": threads,
        },
        per_actor=2,
        num_cpus=1,
        num_gpus=share,
        max_restarts=-1,
        max_task_retries=MAX_PART_ATTEMPTS - 1,
        spread=True,
        address=ray_address,
    )


def _run_parts(
    summary,
    planned,
    pending,
    pool: ActorPool,
    adapter,
    storage_options,
    progress,
    on_part_done,
    t0,
    lease=None,
    actor_args: tuple = (),
) -> None:
    first_part = planned.plan.parts[0].part_id
    queue: list[tuple[Any, dict[str, str] | None]] = [(part, None) for part in pending]
    bar = progress_bar(planned.audio_seconds, f"ingest {summary.run_id}", unit="s audio", enabled=progress)
    probes: list[ActorPool] = []
    rounds: dict[str, int] = {}
    storage_failures: dict[str, int] = {}

    def probe_pool() -> ActorPool:
        """A model actor of its own for probes: restarted as often as probes crash it."""
        if not probes:
            probes.append(
                ActorPool(
                    ModelWorker,
                    [actor_args],
                    kwargs={"device": "cpu", "max_batch": 1},
                    num_cpus=0,
                    max_restarts=-1,
                )
            )
        return probes[0]

    def submit() -> None:
        while queue and (a := pool.free_actor()) is not None:
            part, exclude = queue.pop(0)
            utts = [planned.utterances[p.utterance_id] for p in part.utterances]
            # Decoding runs on the node of the actor that will take the part, so the audio
            # stays on that node.
            decoded = pool.near(a, decode_part, utts, adapter.sample_rate, dict(storage_options or {}))
            extra = planned.errors if part.part_id == first_part else []
            token = lease.token if lease is not None else None
            pool.submit(a, "process", part, utts, decoded, extra, token, exclude, tag=(part, exclude))

    submit()
    try:
        while pool.busy:
            if lease is not None:
                lease.check()  # the heartbeat found the lease taken over: stop submitting
            (part, exclude), a, result, error = pool.next_done()
            if error is not None:
                if is_storage_error(error):  # not the model: no use isolating utterances
                    # Each request was retried already (S3_RETRIES). A store that answers no more
                    # stops the run; one that answers fails this part alone, after a second try.
                    if not _storage_answers(actor_args[0]):
                        raise LakeError(
                            f"the lake's storage failed while part {part.part_id} was written ({_reason(error)}); "
                            f"the {summary.parts_already_committed + sum(summary.nodes.values())} parts committed "
                            "so far are kept: run the same ingest again once the storage answers"
                        ) from error
                    storage_failures[part.part_id] = storage_failures.get(part.part_id, 0) + 1
                    if storage_failures[part.part_id] < MAX_STORAGE_ATTEMPTS:
                        log.warning(
                            "part %s: the lake's storage failed (%s); trying again", part.part_id, _reason(error)
                        )
                        queue.insert(0, (part, exclude))
                    else:
                        summary.parts_failed.append(
                            f"{part.part_id}: the lake's storage failed while it was written, "
                            f"{MAX_STORAGE_ATTEMPTS} times ({_reason(error)})"
                        )
                    submit()
                    continue
                # A part can also fail because the other part its actor held crashed the
                # process; so it is isolated again (up to MAX_ISOLATIONS times) before it is
                # given up.
                rounds[part.part_id] = rounds.get(part.part_id, 0) + 1
                if rounds[part.part_id] > MAX_ISOLATIONS:
                    summary.parts_failed.append(f"{part.part_id}: {_reason(error)}")
                    submit()
                    continue
                log.warning(
                    "part %s failed %d times (%s); isolating the utterances the model fails on",
                    part.part_id,
                    MAX_PART_ATTEMPTS,
                    _reason(error),
                )
                utts = [
                    planned.utterances[p.utterance_id] for p in part.utterances if p.utterance_id not in (exclude or {})
                ]
                failing = dict(exclude or {}, **_isolate(utts, adapter.sample_rate, storage_options, probe_pool()))
                queue.insert(0, (part, failing))
                submit()
                continue
            _account(summary, result, pool.node_of(a, wait=True) or "?")
            elapsed = max(time.perf_counter() - t0, 1e-9)
            bar.update(result.audio_seconds)
            bar.set_postfix_str(
                f"{summary.utterances_done} utt, {summary.frames / elapsed:,.0f} frames/s, {summary.bytes_raw / 1e6:,.0f} MB"
            )
            if on_part_done is not None:
                on_part_done(result)
            submit()
    finally:
        bar.close()
        for probe in probes:
            probe.close()


MAX_PART_ATTEMPTS = 3
MAX_ISOLATIONS = 3
#: Tries of a part whose writes fail on storage that still answers (each request retried already).
MAX_STORAGE_ATTEMPTS = 2


def _storage_answers(lake: Location, tries: int = 4, pause_s: float = 1.0) -> bool:
    """Whether the lake's storage answers at all: its ``lake.json`` is found, in one of a few tries
    of a few quick attempts (a dead endpoint is told apart in seconds, not after the minute that
    the lake's own retries take)."""
    probe = lake.with_retries(2)
    for attempt in range(tries):
        try:
            if probe.exists("lake.json"):
                return True
        except Exception as exc:
            if not is_storage_error(exc):
                raise
        if attempt + 1 < tries:
            time.sleep(pause_s)
    return False


def _reason(error: RemoteError) -> str:
    """One line of what a failed call raised (its cause, not Ray's wrapping)."""
    if error.process_died:
        return f"{type(error.cause).__name__}: the model process died (out of memory, or a crash in native code)"
    return f"{type(error.cause).__name__}: {one_line(error.cause, 300)}"


def _isolate(utterances: list, sample_rate: int, storage_options, probe: ActorPool) -> dict[str, str]:
    """The utterances the model fails on, each probed alone: ``id -> reason``.

    A probe runs the model on one utterance and writes nothing. Probing each utterance once
    costs one crash of the probe actor per bad utterance (a restart: a new process and the
    model loaded again, seconds to minutes) and one forward of the part's audio; bisection
    would cost about 2k log2(n) probes for k bad utterances of n, most of them crashes, and
    twice the forwards.
    """
    failing: dict[str, str] = {}
    options = dict(storage_options or {})
    for utterance in utterances:
        probe.wait_alive(0)  # after a probe crashed the actor, calls fail until Ray restarts it
        try:
            probe.call(0, "probe", [utterance], sample_rate, options)
        except RemoteError as error:
            failing[utterance.utterance_id] = _reason(error)
    return failing


def _account(summary: IngestSummary, result: PartResult, node: str) -> None:
    summary.utterances_done += result.utterances_done
    summary.utterances_failed += result.utterances_failed
    summary.audio_seconds += result.audio_seconds
    summary.frames += result.frames
    summary.bytes_raw += result.bytes_raw
    summary.nodes[node] = summary.nodes.get(node, 0) + 1


def repair(
    lake_url: str | Location,
    run_id: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    ray_address: str | None = None,
    progress: bool | None = None,
) -> tuple[list[str], IngestSummary | None]:
    """Re-do exactly the committed parts of a run whose files are damaged; returns their ids.

    The damaged parts' markers are removed (the parts become invisible), and ingest runs them
    again with the run's own model, corpus, layers and plan (a re-run part rewrites the same
    bytes). Parts that were never committed stay as they are.
    """
    lake = Lake.open(lake_url, storage_options)
    run = lake.run(run_id)
    damaged = sorted(run.damaged_parts())
    if not damaged:
        return [], None
    with RunLease(run.loc, purpose="repair"):  # no ingest writes the run while parts are uncommitted
        run.uncommit(*damaged)
    manifest = run.manifest
    # The planner closes a part as soon as it holds part_rows frames, so the smallest part but
    # the last one gives back the part_rows that made this plan.
    used = [sum(p.n_frames for p in u.utterances) for u in run.plan.parts]
    part_rows = min(used[:-1]) if len(used) > 1 else used[0]
    summary = ingest(
        lake.loc,
        str(manifest["corpus"]["spec"]),
        str(manifest["model"]["spec"]),
        layers=[layer.name for layer in run.layers],
        run_id=run_id,
        ray_address=ray_address,
        storage_options=storage_options,
        part_rows=part_rows,
        progress=progress,
        only_parts=damaged,
        alignments=manifest["corpus"].get("alignments"),
    )
    return damaged, summary
