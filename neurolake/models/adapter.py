"""The model adapter protocol and layer capture.

A :class:`ModelAdapter` gives the token list (blank at id 0), the sample rate,
the exact number of output frames for any input length (:meth:`~ModelAdapter.num_frames`;
the planner sizes the lake's row space with it before inference), and a forward
pass that returns log-probabilities ``[B, T, C]`` together with any captured
layers, each resampled onto the output frame grid as ``[B, T, units]``.

Capturable layers are the named submodules whose output (the first tensor where
a module returns a tuple) is ``[B, units, frames]`` or ``[B, frames, units]``.
A dry forward at two input lengths tells which axis is time (the one that grows)
and how the layer's frame rate relates to the output's. A layer ``k`` times finer
in time is mean-pooled over windows of ``k`` frames (output frame ``t`` averages
layer frames ``k t .. k t + k - 1``, frames past the layer's end counting as
zeros, as zeroed padding does in a batch); a layer ``k`` times coarser repeats each
frame ``k`` times. Either way the factor is a property of the architecture, not
of the padded batch length, so a padded batch and a single utterance agree.
A layer with fewer frames than the output grid is zero-filled at the end.

Padded batches give, on every valid frame, what each utterance gives alone:
sequential convolution models zero each layer's output past each utterance's
valid length inside the forward (padding then acts exactly like the
convolution's own zero padding at the end of a lone utterance); wav2vec2 models
with group-normalised feature extractors (whose normalisation spans the whole
time axis) run the extractor one utterance at a time and the transformer batched
with its padding mask; waveform normalisation is per utterance over its valid samples.
"""

from __future__ import annotations

import abc
import contextlib
import fnmatch
import functools
import hashlib
import io
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from neurolake.corpora.audio import SAMPLE_RATE
from neurolake.corpora.records import open_url
from neurolake.errors import InputError, SpecError
from neurolake.models.framing import zero_beyond

logger = logging.getLogger(__name__)

#: Tokens that mark a word boundary, in order of preference.
WORD_BOUNDARY_TOKENS = (" ", "|")

_SPEC_HELP = "use demo, wav2letter:PATH, wav2vec2:BUNDLE_OR_PATH, hf:ID_OR_PATH or python:MODULE:FACTORY"
_DEMO_RESOURCE = "data/demo_model.pt"
# Output frames between the two dry-run lengths: enough that a rate factor is exact
# when the layer's stride divides the model's hop, and still a cheap forward.
_PROBE_EXTRA_FRAMES = 32

Hook = Callable[[nn.Module, Any, Any], Any]


@dataclass(frozen=True)
class LayerInfo:
    """A capturable layer.

    Attributes:
        name: the layer's name in the lake; its module path.
        module_path: dotted path of the submodule (``"encoder.transformer.layers.3"``).
        units: channels of its output, the ``units`` axis of its ``[frames, units]`` cube.
    """

    name: str
    module_path: str
    units: int


@dataclass(frozen=True)
class UnitEdit:
    """Units of one layer held at fixed values during a forward (an ablation).

    Attributes:
        units: indices along the layer's unit axis.
        values: one value per unit; ``None`` sets them to zero.
    """

    units: tuple[int, ...]
    values: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ForwardOutput:
    """What :meth:`ModelAdapter.forward` returns for a batch of ``B`` utterances.

    Attributes:
        log_probs: ``[B, T, C]`` float32 natural-log token probabilities; frames at or
            past ``frame_lengths[b]`` are padding.
        frame_lengths: ``[B]`` int64 valid output frames per utterance
            (``num_frames`` of its length); ``T`` is their maximum.
        captured: layer name -> ``[B, T, units]`` float32 on the output frame grid,
            zero at or past ``frame_lengths[b]``; on the model's device.
        hypotheses: the transcripts of a model that generates text (``[B, T, 0]`` log-probs
            then: it has no per-frame token posteriors); ``None`` for a CTC model.
    """

    log_probs: torch.Tensor
    frame_lengths: torch.Tensor
    captured: dict[str, torch.Tensor]
    hypotheses: list[str] | None = None


@dataclass(frozen=True)
class _Geometry:
    """How a layer's output maps onto the output grid."""

    time_axis: int  # 1 or 2 of the layer's [B, ., .] output
    units: int
    pool: int  # layer frames averaged into one output frame
    repeat: int  # output frames per layer frame


def state_dict_sha256(module: nn.Module) -> str:
    """SHA-256 over a module's state dict: names, dtypes, shapes and raw bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ModelAdapter(abc.ABC):
    """The interface the pipeline uses for every model (see the module docstring).

    Subclasses implement :meth:`num_frames` and :meth:`_run`, and
    :meth:`_masking_hooks` where padding must be zeroed inside the network.

    Attributes:
        module: the network; capturable layer names are its submodule paths.
        kind: ``"demo"``, ``"wav2letter"``, ``"wav2vec2"``, ``"hf"``, ``"hf-whisper"`` or ``"python"``.
        tokens: output tokens, blank at index 0 (empty for a model that :attr:`transcribes`).
        transcribes: the model generates its transcript with a decoder (Whisper) instead of
            emitting CTC token posteriors per frame; :meth:`forward` then returns ``hypotheses``.
        max_samples: the longest input the model takes (Whisper's 30 s window), or ``None``.
        weights_sha256: SHA-256 of the weights file, or of the state dict
            (:func:`state_dict_sha256`) where there is no single file.
        device: where the network runs.
    """

    sample_rate: int = SAMPLE_RATE
    transcribes: bool = False
    max_samples: int | None = None

    def __init__(
        self,
        module: nn.Module,
        *,
        spec: str,
        kind: str,
        tokens: Sequence[str],
        weights_sha256: str | None = None,
        config: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self._spec = spec
        self.kind = kind
        self.tokens = list(tokens) if self.transcribes else checked_tokens(tokens, spec)
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.weights_sha256 = weights_sha256 or state_dict_sha256(module)
        self._config = dict(config or {})

    # ------------------------------------------------------------ model specifics

    @abc.abstractmethod
    def num_frames(self, num_samples: int) -> int:
        """Exact output frames for an utterance of ``num_samples`` samples (0 if too short)."""

    @abc.abstractmethod
    def _run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Run the network: ``[B, S]`` float32 zero-padded, ``[B]`` samples -> ``[B, T, C]`` log-probs."""

    def _masking_hooks(self, lengths: torch.Tensor) -> list[tuple[nn.Module, Hook]]:
        """Forward hooks that zero padding inside the network for a batch of ``lengths`` samples."""
        return []

    # ----------------------------------------------------------------- properties

    @property
    def word_boundary(self) -> str:
        """The token that separates words (``" "`` or ``"|"``; a space for a model that transcribes)."""
        if self.transcribes:
            return " "
        return next(token for token in WORD_BOUNDARY_TOKENS if token in self.tokens)

    @functools.cached_property
    def hop_samples(self) -> float:
        """Input samples per output frame (320.0 for a 50 frames/s model at 16 kHz)."""
        start, span = self.sample_rate, 600 * self.sample_rate
        frames = self.num_frames(start + span) - self.num_frames(start)
        if frames <= 0:
            raise SpecError(f"model {self._spec!r}: num_frames does not grow with the input length")
        return span / frames

    @property
    def frame_shift_s(self) -> float:
        """Seconds between output frames."""
        return self.hop_samples / self.sample_rate

    @property
    def frame_rate_hz(self) -> float:
        """Output frames per second."""
        return self.sample_rate / self.hop_samples

    @functools.cached_property
    def min_samples(self) -> int:
        """Fewest input samples that give at least one output frame."""
        high = 1
        while self.num_frames(high) < 1:
            high *= 2
            if high > 60 * self.sample_rate:
                raise SpecError(f"model {self._spec!r}: num_frames is 0 even for a minute of audio")
        low = high // 2  # num_frames(low) < 1 <= num_frames(high)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if self.num_frames(middle) >= 1 else (middle, high)
        return high

    @property
    def spec(self) -> dict[str, Any]:
        """JSON-able description for ``run.json``: spec string, kind, weights hash, tokens, frame rate."""
        description = {
            "spec": self._spec,
            "kind": self.kind,
            "weights_sha256": self.weights_sha256,
            "tokens": list(self.tokens),
            "blank": 0,
            "word_boundary": self.word_boundary,
            "sample_rate": self.sample_rate,
            "frame_rate_hz": self.frame_rate_hz,
            "frame_shift_s": self.frame_shift_s,
        }
        if self.transcribes:
            description["transcribes"] = True
            description["max_samples"] = self.max_samples
        if self._config:
            description["config"] = self._config
        return description

    # ---------------------------------------------------------------------- layers

    def capturable_layers(self) -> list[LayerInfo]:
        """Every layer :meth:`forward` can capture, in module order."""
        return [LayerInfo(name, name, geometry.units) for name, geometry in self._geometries.items()]

    def select_layers(self, globs: Iterable[str]) -> list[LayerInfo]:
        """The capturable layers matching any of ``globs`` (:mod:`fnmatch` patterns over
        module paths; ``*`` also matches dots), in module order.

        Raises:
            SpecError: a glob matches no capturable layer; the message lists some that exist.
        """
        layers = self.capturable_layers()
        chosen: set[str] = set()
        for glob in globs:
            matched = {layer.name for layer in layers if fnmatch.fnmatchcase(layer.name, glob)}
            if not matched:
                raise SpecError(
                    f"layer pattern {glob!r} matches no capturable layer of {self._spec!r}; "
                    f"available: {_some(layer.name for layer in layers)}"
                )
            chosen |= matched
        return [layer for layer in layers if layer.name in chosen]

    @functools.cached_property
    def _geometries(self) -> dict[str, _Geometry]:
        """Dry forwards at two lengths: time axis, units and rate factor of every module output."""
        short = max(self.sample_rate, self.min_samples)
        long = short + _PROBE_EXTRA_FRAMES * max(1, round(self.hop_samples))
        names = [name for name, _ in self.module.named_modules() if name]
        modules = dict(self.module.named_modules())
        shapes: list[dict[str, list[tuple[tuple[int, ...], bool] | None]]] = []
        for length in (short, long):
            seen: dict[str, list[tuple[tuple[int, ...], bool] | None]] = {name: [] for name in names}
            hooks = [(modules[name], _shape_recorder(seen[name])) for name in names]
            waveform = 0.1 * torch.randn(1, length, generator=torch.Generator().manual_seed(0))
            log_probs = self._hooked_run(waveform.to(self.device), torch.tensor([length], device=self.device), hooks)
            self._check_output(log_probs, 1, self.num_frames(length))
            shapes.append(seen)
        delta = self.num_frames(long) - self.num_frames(short)
        geometries = {}
        for name in names:
            geometry = _geometry(shapes[0][name], shapes[1][name], delta)
            if geometry is None:
                logger.debug(
                    "%s: %s is not capturable (output shapes %s, %s)",
                    self._spec,
                    name,
                    shapes[0][name],
                    shapes[1][name],
                )
            else:
                geometries[name] = geometry
        return geometries

    # --------------------------------------------------------------------- forward

    def forward(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | Sequence[int],
        layers: Iterable[str | LayerInfo] = (),
        *,
        capture_dtype: torch.dtype = torch.float32,
        edits: Mapping[str, UnitEdit] | None = None,
    ) -> ForwardOutput:
        """Run a batch and capture ``layers``.

        Args:
            waveforms: ``[B, S]`` float32 16 kHz mono, zero-padded past each length.
            lengths: ``[B]`` valid samples per utterance, each in ``[1, S]``.
            layers: layer names (or :class:`LayerInfo` s) from :meth:`capturable_layers`.
            capture_dtype: dtype of the captured tensors. A layer on the output grid is
                recorded in it (the hook's copy converts); pooling onto the grid is done in
                float32 first. ``torch.float16`` (what the lake stores) converts in torch,
                ~15x faster than numpy's float16 conversion.
            edits: layer name -> :class:`UnitEdit`: those units of the layer's output are
                replaced (on every frame, padding included) before the rest of the network
                sees them; a captured layer shows the edited values. Run one utterance per
                batch when the values are not zero, so that padding stays zero.

        Raises:
            InputError: bad shapes or lengths, or an utterance too short for one output frame.
            SpecError: a layer that is not capturable, or a network whose output
                disagrees with its ``num_frames`` or token list.
        """
        waveforms, lengths = self._checked_batch(waveforms, lengths)
        counts = [self.num_frames(n) for n in lengths.tolist()]
        short = [index for index, count in enumerate(counts) if count < 1]
        if short:
            raise InputError(
                f"utterance {short[0]} of the batch has {int(lengths[short[0]])} samples, too "
                f"short for one output frame of {self._spec!r} (needs {self.min_samples})"
            )
        names = self._capture_names(layers)
        modules = dict(self.module.named_modules())
        outputs: dict[str, list[torch.Tensor | None]] = {name: [] for name in names}
        # Masking hooks go first: the capture hooks then see (and clone) the masked output.
        hooks = (
            self._masking_hooks(lengths)
            + self._edit_hooks(edits or {})
            + [(modules[name], _recorder(outputs[name], self._recording_dtype(name, capture_dtype))) for name in names]
        )
        log_probs = self._hooked_run(waveforms, lengths, hooks)
        frames = max(counts)
        self._check_output(log_probs, len(counts), frames)
        frame_lengths = torch.tensor(counts, dtype=torch.int64, device=self.device)
        captured = {name: self._on_grid(name, outputs[name], frame_lengths, capture_dtype) for name in names}
        return ForwardOutput(log_probs.float(), frame_lengths, captured)

    def _capture_names(self, layers: Iterable[str | LayerInfo]) -> list[str]:
        """Layer names of ``layers``; :class:`SpecError` for one that is not capturable."""
        names = [layer.name if isinstance(layer, LayerInfo) else layer for layer in layers]
        unknown = [name for name in names if name not in self._geometries]
        if unknown:
            raise SpecError(
                f"{unknown[0]!r} is not a capturable layer of {self._spec!r}; available: {_some(self._geometries)}"
            )
        return names

    def attribution(
        self, waveform: torch.Tensor, lower: str, upper: str, units: Sequence[int], frames: Sequence[int]
    ) -> torch.Tensor:
        """Gradient x activation of every unit of ``lower`` on the summed activations of ``units``
        of ``upper`` over output ``frames`` of one utterance. ``[lower units]`` float64

        ``upper`` must come after ``lower`` in the forward pass. The contribution of unit ``i``
        is ``sum_t a_i(t) * d(target) / d a_i(t)`` over every frame ``t`` of ``lower`` (the
        receptive field reaches past the target frames); for a linear map this is exactly the
        share of the target that flows through ``i``.
        """
        waveforms, lengths = self._checked_batch(waveform.reshape(1, -1), [int(waveform.numel())])
        for name in (lower, upper):
            if name not in self._geometries:
                raise SpecError(f"{name!r} is not a capturable layer of {self._spec!r}")
        modules = dict(self.module.named_modules())
        leaves: list[torch.Tensor] = []
        uppers: list[torch.Tensor | None] = []

        def at_lower(module: nn.Module, inputs: Any, output: Any) -> Any:
            tensor = _first_tensor(output)
            if tensor is None:
                return None
            leaf = tensor.detach().clone().requires_grad_(True)
            leaves.append(leaf)
            passed = leaf.clone()  # what the network goes on with (an in-place op must not touch the leaf)
            return passed if isinstance(output, torch.Tensor) else (passed, *output[1:])

        def at_upper(module: nn.Module, inputs: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            uppers.append(None if tensor is None else tensor.clone())

        hooks = [*self._masking_hooks(lengths), (modules[lower], at_lower), (modules[upper], at_upper)]
        with torch.enable_grad(), _installed(hooks):
            self._run(waveforms, lengths)
        if len(leaves) != 1 or not uppers:
            raise SpecError(
                f"layers {lower!r} and {upper!r} of {self._spec!r} cannot be attributed (each must run once)"
            )
        frame_lengths = torch.tensor([self.num_frames(int(lengths[0]))], device=self.device)
        grid = self._on_grid(upper, uppers, frame_lengths)[0]  # [T, units]
        index = torch.as_tensor(list(frames), dtype=torch.int64, device=self.device)
        target = grid[index][:, torch.as_tensor(list(units), dtype=torch.int64, device=self.device)].sum()
        if not target.requires_grad:
            raise SpecError(f"layer {upper!r} does not depend on layer {lower!r} in {self._spec!r}")
        (gradient,) = torch.autograd.grad(target, leaves[0])
        contribution = self._on_grid(lower, [gradient * leaves[0].detach()], frame_lengths)[0]
        return contribution.sum(dim=0).double().cpu()

    def relevance(self, waveform: torch.Tensor, layer: str, targets: Sequence[int]) -> torch.Tensor:
        """Per-frame relevance of ``layer``'s units for one utterance. ``[frames, units]`` float64

        Entry ``[t, i]`` is ``a_i(t) * d log p_t(targets[t]) / d a_i(t)``: the activation of unit
        ``i`` at output frame ``t`` times the gradient of that frame's log-probability of its
        target token (the predicted one for a GradNAP) - gradient x activation, one backward
        pass per frame. ``layer`` must be on the output frame grid (one row per output frame).
        """
        return self.relevances(waveform, [layer], targets)[1][layer]

    def on_output_grid(self, layer: str) -> bool:
        """Whether ``layer`` has one frame per output frame (its relevance is defined per frame)."""
        geometry = self._geometries.get(layer)
        if geometry is None:
            raise SpecError(f"{layer!r} is not a capturable layer of {self._spec!r}")
        return geometry.pool == 1 and geometry.repeat == 1

    def relevances(
        self, waveform: torch.Tensor, layers: Sequence[str], targets: Sequence[int] | None = None
    ) -> tuple[list[int], dict[str, torch.Tensor]]:
        """:meth:`relevance` of several layers at once: ``(targets, layer -> [frames, units]
        float64)``, from one forward and one backward pass per frame (each reaching every
        layer). Without ``targets``, each frame's target is the token this forward predicts
        there (the argmax of its log-probabilities).

        On the demo model (one torch thread, 150 frames, conv5 to conv7) this took 1.0-1.2 s
        against 1.8-2.0 s for one layer at a time; a vmapped backward over 50 frames at once
        (``is_grads_batched``) gave the same values in 1.8 s, so frames stay one per pass."""
        waveforms, lengths = self._checked_batch(waveform.reshape(1, -1), [int(waveform.numel())])
        for layer in layers:
            if layer not in self._geometries:
                raise SpecError(f"{layer!r} is not a capturable layer of {self._spec!r}")
        n_frames = self.num_frames(int(lengths[0]))
        if targets is not None and len(targets) != n_frames:
            raise SpecError(f"{len(targets)} targets for an utterance of {n_frames} frames")
        modules = dict(self.module.named_modules())
        leaves: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
        reached: list[bool] = []

        def leaf_hook(found: list[torch.Tensor]) -> Hook:
            def at_layer(module: nn.Module, inputs: Any, output: Any) -> Any:
                tensor = _first_tensor(output)
                if tensor is None:
                    return None
                # The first layer reached becomes a leaf: no backward pass goes below it. Later
                # ones stay in the graph (a detached copy would cut the gradient on its way down
                # to the earlier layers).
                kept = tensor if reached else tensor.detach().clone().requires_grad_(True)
                reached.append(True)
                found.append(kept)
                passed = kept.clone()  # what the network goes on with (an in-place op must not touch it)
                return passed if isinstance(output, torch.Tensor) else (passed, *output[1:])

            return at_layer

        hooks = [*self._masking_hooks(lengths), *((modules[layer], leaf_hook(leaves[layer])) for layer in layers)]
        with torch.enable_grad(), _installed(hooks):
            log_probs = self._run(waveforms, lengths)[0]  # [T, tokens]
        for layer in layers:
            if len(leaves[layer]) != 1:
                raise SpecError(f"layer {layer!r} of {self._spec!r} runs more than once per forward")
        if targets is None:
            targets = log_probs[:n_frames].argmax(dim=-1).tolist()
        frame_lengths = torch.tensor([n_frames], device=self.device)
        activations = {}
        for layer in layers:
            activations[layer] = self._on_grid(layer, [leaves[layer][0].detach()], frame_lengths)[0]  # [T, units]
            if activations[layer].shape[0] != n_frames or not self.on_output_grid(layer):
                raise SpecError(f"layer {layer!r} is not on the output frame grid")
        out = {layer: torch.zeros(n_frames, self._geometries[layer].units, dtype=torch.float64) for layer in layers}
        inputs = [leaves[layer][0] for layer in layers]
        for t, token in enumerate(targets):
            gradients = torch.autograd.grad(
                log_probs[t, int(token)], inputs, retain_graph=t + 1 < n_frames, allow_unused=True
            )
            for layer, gradient in zip(layers, gradients, strict=True):
                if gradient is None:  # the layer does not reach the output (a dead branch)
                    continue
                grid = self._on_grid(layer, [gradient], frame_lengths)[0]
                out[layer][t] = (grid[t] * activations[layer][t]).double().cpu()
        return [int(token) for token in targets], out

    def _edit_hooks(self, edits: Mapping[str, UnitEdit]) -> list[tuple[nn.Module, Hook]]:
        modules = dict(self.module.named_modules())
        hooks = []
        for name, edit in edits.items():
            geometry = self._geometries.get(name)
            if geometry is None:
                raise SpecError(
                    f"{name!r} is not a capturable layer of {self._spec!r}; available: {_some(self._geometries)}"
                )
            bad = [u for u in edit.units if not 0 <= int(u) < geometry.units]
            if bad:
                raise SpecError(f"unit {bad[0]} is out of range for layer {name!r} ({geometry.units} units)")
            if edit.values is not None and len(edit.values) != len(edit.units):
                raise SpecError(f"layer {name!r}: {len(edit.units)} units but {len(edit.values)} values")
            index = torch.tensor([int(u) for u in edit.units], dtype=torch.int64, device=self.device)
            values = None if edit.values is None else torch.tensor(edit.values, dtype=torch.float32, device=self.device)
            hooks.append((modules[name], _editing_hook(3 - geometry.time_axis, index, values)))
        return hooks

    def _hooked_run(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, hooks: Sequence[tuple[nn.Module, Hook]]
    ) -> torch.Tensor:
        with torch.no_grad(), _installed(hooks):
            return self._run(waveforms, lengths)

    def _checked_batch(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(waveforms, torch.Tensor) or waveforms.dim() != 2 or not waveforms.is_floating_point():
            raise InputError(
                f"waveforms must be a [batch, samples] float tensor, got "
                f"{getattr(waveforms, 'shape', type(waveforms).__name__)}"
            )
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.shape[0] != waveforms.shape[0] or lengths.is_floating_point():
            raise InputError(
                f"lengths must be [batch] integers matching waveforms {tuple(waveforms.shape)}, "
                f"got {tuple(lengths.shape)} {lengths.dtype}"
            )
        if lengths.numel() == 0 or int(lengths.min()) < 1 or int(lengths.max()) > waveforms.shape[1]:
            raise InputError(f"lengths must lie in [1, {waveforms.shape[1]}] samples, got {lengths.tolist()}")
        # Samples past the longest utterance carry nothing; dropping them keeps T = max frames.
        return (waveforms[:, : int(lengths.max())].to(self.device, torch.float32), lengths.to(self.device, torch.int64))

    def _check_output(self, log_probs: torch.Tensor, batch: int, frames: int) -> None:
        expected = (batch, frames, len(self.tokens))
        if tuple(log_probs.shape) != expected:
            raise SpecError(
                f"model {self._spec!r} returned log-probabilities of shape {tuple(log_probs.shape)} "
                f"where num_frames and the {len(self.tokens)} tokens give {expected}"
            )

    def _on_grid(
        self,
        name: str,
        outputs: list[torch.Tensor | None],
        frame_lengths: torch.Tensor,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Captured outputs of one layer -> ``[B, T, units]`` ``dtype`` on the output grid."""
        geometry = self._geometries[name]
        batch, frames = frame_lengths.shape[0], int(frame_lengths.max())
        if len(outputs) == 1 and outputs[0] is not None and outputs[0].shape[0] == batch:
            parts = [(outputs[0], frames)]
        elif len(outputs) == batch and all(out is not None and out.shape[0] == 1 for out in outputs):
            # The network ran this layer once per utterance (see Wav2Vec2Adapter).
            parts = list(zip(outputs, frame_lengths.tolist(), strict=True))
        else:
            raise SpecError(
                f"layer {name!r} of {self._spec!r} produced {len(outputs)} outputs for a batch of "
                f"{batch}; a module called several times per forward cannot be captured"
            )
        grids = []
        for output, count in parts:
            # The recorder converted the output to ``dtype`` already where nothing is pooled
            # (see :meth:`_recording_dtype`); pooling averages in float32 first.
            values = output if output.dtype == dtype and geometry.pool == 1 else output.float()
            if geometry.time_axis == 2:
                values = values.transpose(1, 2)
            if values.dim() != 3 or values.shape[2] != geometry.units:
                raise SpecError(
                    f"layer {name!r} of {self._spec!r} changed shape: {tuple(output.shape)}, "
                    f"expected {geometry.units} units on axis {3 - geometry.time_axis}"
                )
            grids.append(_resampled(values, geometry, count))
        return _framed(grids, frame_lengths, frames, dtype)

    def _recording_dtype(self, name: str, capture_dtype: torch.dtype) -> torch.dtype | None:
        """The dtype a layer's output is recorded in: ``capture_dtype`` where no frames are
        pooled (the conversion is then exact there and saves a copy), else the output's own."""
        return capture_dtype if self._geometries[name].pool == 1 else None


def _framed(grids: list[torch.Tensor], frame_lengths: torch.Tensor, frames: int, dtype: torch.dtype) -> torch.Tensor:
    """``[B, frames, units]`` ``dtype``, C order (the store compresses row blocks), from one
    ``[b, <=frames, units]`` tensor per run of the layer: each copied once, converted on the
    way, and zero on every frame past its utterance's length.

    The recorded outputs are the adapter's own copies, so one already in place (a layer on
    the output grid, recorded in ``dtype``) is zeroed where it stands: one copy of each
    captured layer in all, where padding, converting and masking made three more.
    """
    first = grids[0]
    batch, units = int(frame_lengths.shape[0]), first.shape[2]
    if len(grids) == 1 and first.shape[:2] == (batch, frames) and first.dtype == dtype and first.is_contiguous():
        grid = first
    else:
        grid = torch.empty((batch, frames, units), dtype=dtype, device=first.device)
        row = 0
        for values in grids:
            rows, n = values.shape[0], values.shape[1]
            grid[row : row + rows, :n] = values
            grid[row : row + rows, n:] = 0
            row += rows
    beyond = torch.arange(frames, device=grid.device)[None, :] >= frame_lengths.to(grid.device)[:, None]
    return grid.masked_fill_(beyond[:, :, None], 0)


def read_checkpoint(url: str, spec: str, required: Sequence[str]) -> tuple[dict[str, Any], str]:
    """``(checkpoint dict, SHA-256 of the file)``; the dict has every key in ``required``."""
    fs, path = open_url(url)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError as exc:
        raise SpecError(f"{spec}: checkpoint {url!r} not found") from exc
    except OSError as exc:
        raise SpecError(f"{spec}: cannot read checkpoint {url!r} ({exc})") from exc
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise SpecError(f"{spec}: {url!r} is not a readable checkpoint ({exc})") from exc
    missing = [key for key in required if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise SpecError(f"{spec}: checkpoint lacks {missing}; it must be a dict with keys {list(required)}")
    if not isinstance(checkpoint["config"], dict):
        raise SpecError(f"{spec}: the checkpoint's 'config' must be a dict")
    return checkpoint, hashlib.sha256(data).hexdigest()


def load_state(module: nn.Module, state_dict: Mapping[str, torch.Tensor], spec: str) -> None:
    try:
        module.load_state_dict(state_dict)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise SpecError(f"{spec}: the weights do not fit the configured architecture ({exc})") from exc


# ------------------------------------------------------------------------ helpers


def checked_tokens(tokens: Sequence[str], spec: str) -> list[str]:
    tokens = list(tokens)
    if len(tokens) < 2 or not all(isinstance(token, str) for token in tokens) or len(set(tokens)) != len(tokens):
        raise SpecError(f"{spec}: tokens must be at least two distinct strings, blank first")
    if not any(token in tokens for token in WORD_BOUNDARY_TOKENS):
        raise SpecError(f"{spec}: tokens need a word boundary token (' ' or '|')")
    return tokens


def check_output_size(tokens: Sequence[str], outputs: int, spec: str) -> None:
    if len(tokens) != outputs:
        raise SpecError(f"{spec}: {len(tokens)} tokens for a model with {outputs} outputs")


def _some(names: Iterable[str], limit: int = 12) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > limit else shown or "(none)"


@contextlib.contextmanager
def _installed(hooks: Sequence[tuple[nn.Module, Hook]]) -> Iterator[None]:
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _first_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((item for item in output if isinstance(item, torch.Tensor)), None)
    return None


def _editing_hook(unit_axis: int, index: torch.Tensor, values: torch.Tensor | None) -> Hook:
    """Replace ``index`` along ``unit_axis`` of a module's (first tensor) output."""

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        tensor = _first_tensor(output)
        if tensor is None:
            return None
        edited = tensor.clone()
        units_last = edited.movedim(unit_axis, -1)  # a view of the clone
        if values is None:
            units_last[..., index] = 0
        else:
            units_last[..., index] = values.to(edited.dtype)
        if isinstance(output, torch.Tensor):
            return edited
        items = list(output)
        items[next(i for i, item in enumerate(items) if item is tensor)] = edited
        return type(output)(items) if isinstance(output, list) else tuple(items)

    return hook


def _recorder(store: list[torch.Tensor | None], dtype: torch.dtype | None = None) -> Hook:
    """A hook that stores a copy of the module's (first tensor) output, converted to ``dtype``
    on the way where the output is float16, bfloat16 or float32 (a conversion as exact as
    through float32; None: the output's own dtype)."""

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        tensor = _first_tensor(output)
        if tensor is None:
            store.append(None)
            return
        # A copy: an in-place activation after this module would overwrite the tensor.
        tensor = tensor.detach()
        if dtype is not None and tensor.dtype in _EXACTLY_CONVERTED:
            store.append(tensor.to(dtype, copy=True))
        else:
            store.append(tensor.clone())

    return hook


#: Output dtypes whose conversion to a capture dtype gives what converting through float32 gives.
_EXACTLY_CONVERTED = (torch.float16, torch.bfloat16, torch.float32)


def _shape_recorder(store: list[tuple[tuple[int, ...], bool] | None]) -> Hook:
    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        tensor = _first_tensor(output)
        store.append(None if tensor is None else (tuple(tensor.shape), tensor.is_floating_point()))

    return hook


def zeroing_hook(valid: torch.Tensor) -> Hook:
    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return zero_beyond(output, valid, dim=2)

    return hook


def _geometry(short: list, long: list, delta_frames: int) -> _Geometry | None:
    """Geometry from a module's output shapes at two input lengths ``delta_frames`` output frames apart."""
    if len(short) != 1 or len(long) != 1 or short[0] is None or long[0] is None:
        return None
    (a, a_float), (b, b_float) = short[0], long[0]
    if not (a_float and b_float) or len(a) != 3 or len(b) != 3 or a[0] != 1 or b[0] != 1:
        return None
    if a[1] != b[1] and a[2] == b[2]:
        axis, units, delta = 1, a[2], b[1] - a[1]
    elif a[2] != b[2] and a[1] == b[1]:
        axis, units, delta = 2, a[1], b[2] - a[2]
    else:
        return None
    if delta <= 0:
        return None
    # Up to one frame of slack: floor divisions can make a layer grow by one more or less.
    if delta >= delta_frames:
        pool = round(delta / delta_frames)
        return _Geometry(axis, units, pool, 1) if abs(delta - pool * delta_frames) <= 1 else None
    repeat = round(delta_frames / delta)
    return _Geometry(axis, units, 1, repeat) if abs(delta * repeat - delta_frames) <= 1 else None


def _resampled(values: torch.Tensor, geometry: _Geometry, frames: int) -> torch.Tensor:
    """``[b, L, units]`` layer frames -> at most ``frames`` output frames ``[b, <=frames, units]``."""
    if geometry.repeat > 1:
        return values[:, : math.ceil(frames / geometry.repeat)].repeat_interleave(geometry.repeat, dim=1)[:, :frames]
    if geometry.pool == 1:
        return values[:, :frames]
    k = geometry.pool
    values = values[:, : frames * k]
    windows = math.ceil(values.shape[1] / k)
    # Frames past the end of the layer count as zeros, like the zeroed padding of a
    # batch, so a window cut short by the end averages the same alone as in a batch.
    padded = nn.functional.pad(values, (0, 0, 0, windows * k - values.shape[1]))
    return padded.reshape(values.shape[0], windows, k, values.shape[2]).mean(dim=2)


def _padded(sequences: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack ``[L_i, ...]`` tensors into ``[B, max L_i, ...]``, zero-padded."""
    return nn.utils.rnn.pad_sequence(list(sequences), batch_first=True)
