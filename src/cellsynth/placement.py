"""Where a run trains and samples, without Lightning: the :class:`Placement` of a training run (accelerator,
devices, nodes, strategy) and its checks, the torch device of an accelerator, a network on a device, and
whether this process is the one that writes (:func:`is_rank_zero`).

Apart from :mod:`cellsynth.training` because every generator's config and ``save`` need these, and the models
that train no network (the floors) should not pay Lightning's import (about 5 s on 2 cores) for them.
:mod:`cellsynth.training` re-exports every name here.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch

from cellsynth.errors import ConfigError

__all__ = ["STRATEGIES", "Placement", "is_rank_zero", "module_on", "resolve_device"]

#: Lightning strategies cellsynth trains with. Not the spawning ones (``ddp_spawn``, ``ddp_fork``): their
#: workers hand back only the weights to the calling process, not a module's history or EMA average.
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")


def resolve_device(accelerator: str) -> torch.device:
    """The torch device for a config's ``accelerator`` ("auto", "cpu" or "gpu"), as ``train`` picks it."""
    if accelerator in ("auto", "gpu") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator == "gpu":
        raise ConfigError("accelerator='gpu' but no CUDA device is available")
    return torch.device("cpu")


def module_on(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` itself when its weights already live on ``device``, else a copy moved there.

    Generators sample with this instead of ``module.to(device)``, which moves the module in place: a fitted
    generator is shared by the threads of ``--workers``, and even a CPU-to-CPU ``to`` rewrites state that a
    concurrent forward pass reads (an RNN's flat-weight references)."""
    tensors = [*module.parameters(), *module.buffers()]
    if all(t.device.type == device.type and device.index in (None, t.device.index) for t in tensors):
        return module
    return copy.deepcopy(module).to(device)


@dataclass(frozen=True)
class Placement:
    """Where :func:`train` trains: Lightning's ``accelerator`` ("auto", "cpu", "gpu"), ``devices`` per node
    (GPUs, or CPU processes), ``num_nodes`` machines and ``strategy`` (one of :data:`STRATEGIES`). One device
    on one node trains in this process; more train data-parallel, ``devices * num_nodes`` processes."""

    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"

    @property
    def processes(self) -> int:
        return self.devices * self.num_nodes

    def check(self) -> Placement:
        """``self`` if this machine can train so; else a :class:`ConfigError` that says what to change.

        A GPU run asks for at most ``torch.cuda.device_count()`` devices; a CPU run for at most
        ``os.cpu_count()`` processes (each trains on one core or more: more processes than cores only
        slow training down). Several nodes need a launcher that starts the other nodes' processes: SLURM
        (``srun``), ``torchrun``, or ``NODE_RANK``/``MASTER_ADDR`` set by hand; without one Lightning would
        wait for them forever.
        """
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)} (see docs/scale.md)"
            )
        if self.devices < 1 or self.num_nodes < 1:
            raise ConfigError(
                f"devices and num_nodes must be >= 1, got devices={self.devices}, num_nodes={self.num_nodes}"
            )
        device = resolve_device(self.accelerator)
        if device.type == "cuda" and self.devices > torch.cuda.device_count():
            raise ConfigError(
                f"devices={self.devices} but this machine has {torch.cuda.device_count()} GPU(s); "
                f"ask for at most {torch.cuda.device_count()} (per node)"
            )
        cores = os.cpu_count() or 1
        if device.type == "cpu" and self.devices > cores:
            raise ConfigError(
                f"devices={self.devices} CPU processes but this machine has {cores} core(s); ask for at most "
                f"{cores}, or train on GPUs (accelerator gpu)"
            )
        if self.num_nodes > 1 and not _cluster_launched():
            raise ConfigError(
                f"num_nodes={self.num_nodes} but no cluster launcher started this process: run it with srun "
                "(SLURM) or torchrun on every node, as docs/scale.md shows, or use num_nodes 1"
            )
        return self


def _cluster_launched() -> bool:
    """Whether a launcher that starts processes on several machines started this one: SLURM (``srun``),
    torchrun (TorchElastic), LSF, or Lightning's own variables set by hand on every node (``NODE_RANK``)."""
    from lightning.fabric.plugins.environments import (
        LSFEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    launchers = (SLURMEnvironment, TorchElasticEnvironment, LSFEnvironment)
    return any(env.detect() for env in launchers) or "NODE_RANK" in os.environ


#: The environment variables Lightning reads the process's rank from, in its order
#: (``lightning.fabric.utilities.rank_zero._get_rank``).
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def is_rank_zero() -> bool:
    """Whether this process writes what a run writes once (the saved model, messages): always when it
    trains alone; under data-parallel training only the process of global rank 0.

    Before Lightning has set the rank (or without Lightning imported), the rank is Lightning's own reading
    of the launcher's environment: the first of ``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID`` and
    ``JSM_NAMESPACE_RANK`` that is set, else 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    # lightning_utilities, not lightning: the same object Lightning's Trainer sets, without its import
    from lightning_utilities.core.rank_zero import rank_zero_only

    rank = getattr(rank_zero_only, "rank", None)
    if rank is None:
        rank = next((int(os.environ[key]) for key in _RANK_VARIABLES if key in os.environ), 0)
    return rank == 0
