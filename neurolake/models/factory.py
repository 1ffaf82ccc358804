"""A user network from ``python:MODULE:FACTORY``."""

import importlib

import torch
from torch import nn

from neurolake.errors import SpecError
from neurolake.models.adapter import ModelAdapter
from neurolake.models.framing import zero_beyond


class FactoryAdapter(ModelAdapter):
    """A user network from ``python:MODULE:FACTORY`` (contract in the module docstring)."""

    def __init__(self, module: nn.Module, *, spec: str, device: str | torch.device = "cpu") -> None:
        tokens = getattr(module, "tokens", None)
        if not callable(getattr(module, "num_frames", None)) or tokens is None:
            raise SpecError(
                f"{spec}: the factory's module needs a 'tokens' list and a 'num_frames(num_samples)' method"
            )
        super().__init__(module, spec=spec, kind="python", tokens=tokens, device=device)

    def num_frames(self, num_samples: int) -> int:
        return int(self.module.num_frames(int(num_samples)))

    def _run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.module(zero_beyond(waveforms, lengths, dim=1))


def load_factory(target: str, spec: str, device: str | torch.device) -> FactoryAdapter:
    module_name, _, factory_name = target.partition(":")
    if not module_name or not factory_name or ":" in factory_name:
        raise SpecError(f"{spec}: a python model spec reads python:MODULE:FACTORY, e.g. python:mypkg.models:build")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except ImportError as exc:
        raise SpecError(f"{spec}: cannot import {module_name!r} ({exc})") from exc
    except AttributeError as exc:
        raise SpecError(f"{spec}: module {module_name!r} has no {factory_name!r}") from exc
    module = factory()
    if not isinstance(module, nn.Module):
        raise SpecError(f"{spec}: {factory_name}() returned {type(module).__name__}, not a torch.nn.Module")
    return FactoryAdapter(module, spec=spec, device=device)
