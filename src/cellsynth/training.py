"""One way to train every network in cellsynth: a Lightning ``Trainer`` with a progress bar, a checkpoint
each epoch, resume from the last checkpoint after a kill, and seeds.

A generator that trains several networks in turn (STOUTER pretrains two graph encoders, then the
diffusion model) calls :func:`train` once per stage with its own ``stage`` name; each stage checkpoints
under ``checkpoint_dir/checkpoints/<stage>/`` and a rerun skips finished stages and resumes the one
that was interrupted. A checkpoint that cannot be loaded (truncated by a kill or a full disk) is renamed
``<name>.damaged``, never deleted, and the stage resumes from the previous intact checkpoint, or from the
start, with a warning that says which. Checkpoints are read with ``torch.load(weights_only=True)``, whose
restricted unpickler builds tensors and plain containers only and runs no code. A module that generates with
an exponential moving average of its network's weights declares :class:`EMA` in its ``configure_callbacks``.

Where training runs is a :class:`Placement`: the accelerator, the devices per node, the nodes and Lightning's
strategy. More than one process trains data-parallel (DDP): Lightning starts the other processes of a node
by rerunning the command (``strategy="ddp"``), or a cluster launcher (``srun``, ``torchrun``) starts them all;
every process runs the whole program, each trains on its share of every epoch's batches (Lightning's
distributed sampler over :func:`loader`'s permutation) and only rank 0 writes checkpoints. See docs/scale.md.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import tempfile
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from cellsynth.errors import ConfigError
from cellsynth.placement import STRATEGIES, Placement, is_rank_zero, module_on, resolve_device

__all__ = [
    "EMA",
    "STRATEGIES",
    "Placement",
    "TrainingModule",
    "is_rank_zero",
    "loader",
    "module_on",
    "resolve_device",
    "seed_everything",
    "train",
]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) quietly."""
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    L.seed_everything(seed, workers=True, verbose=False)


class _EpochShuffle(torch.utils.data.Sampler[int]):
    """A permutation of ``range(n)`` drawn from ``(seed, epoch)``; Lightning calls ``set_epoch``."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def loader(dataset: torch.utils.data.Dataset, *, batch_size: int, seed: int) -> torch.utils.data.DataLoader:
    """A shuffling loader whose order depends only on ``(seed, epoch)`` (exact resume)."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=_EpochShuffle(len(dataset), seed), drop_last=False
    )


class _StepSeed(Callback):
    """Reseed torch, numpy and random before every optimisation step from ``(seed, global step)``.

    Dropout and diffusion noise then depend only on the seed and the step, not on whatever else consumed
    random numbers (Lightning draws some when it builds a data iterator, at different moments on a fresh
    start and on a resume), so a run resumed from a checkpoint continues exactly as an uninterrupted one.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step_seed = (self.seed * 1_000_003 + trainer.global_step) % 2**32
        # Each process of a data-parallel run draws its own noise, rank 0 that of a one-process run. XOR with a
        # multiple of 2**32 / golden ratio moves another rank's seeds ~2**31 steps away, beyond any run's length.
        step_seed ^= (0x9E3779B9 * trainer.global_rank) % 2**32
        torch.manual_seed(step_seed)
        np.random.seed(step_seed)  # noqa: NPY002 - third-party code may use the legacy global RNG
        random.seed(step_seed)


class EMA(Callback):
    """An exponential moving average of a LightningModule's network ``module.<source>``, kept as another of its
    submodules, ``module.<target>`` (created by :meth:`setup` as a frozen copy, unless the module has one).

    After every training batch, at optimiser step ``n`` (the trainer's global step, counted after the step):

    .. math::  d_n = \\min\\Big(d,\\ \\frac{1 + n}{10 + n}\\Big), \\qquad
               \\theta_{ema} \\leftarrow d_n\\, \\theta_{ema} + (1 - d_n)\\, \\theta

    The warm-up ``(1 + n) / (10 + n)`` averages the early weights, far from the optimum, over fewer steps;
    ``decay = 0`` keeps the last weights. Buffers (running statistics) are copied, not averaged.

    Why a submodule: it moves with the module between devices and is saved in every checkpoint with the
    module's weights (as ``<target>.*``), so a resumed run continues the same average and a finished stage
    reloads it. A module declares it where it declares its optimiser::

        def configure_callbacks(self):
            return [EMA(self.ema_decay)]  # after training, self.ema is the average of self.net
    """

    def __init__(self, decay: float, *, source: str = "net", target: str = "ema") -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.source, self.target = float(decay), source, target

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Before Lightning restores a checkpoint into the module: the copy then receives its saved average.
        if getattr(pl_module, self.target, None) is None:
            averaged = copy.deepcopy(getattr(pl_module, self.source)).requires_grad_(False)
            setattr(pl_module, self.target, averaged)

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = trainer.global_step
        decay = min(self.decay, (1 + n) / (10 + n))
        averaged, current = getattr(pl_module, self.target), getattr(pl_module, self.source)
        for p_ema, p in zip(averaged.parameters(), current.parameters(), strict=True):
            p_ema.lerp_(p, 1 - decay)
        for b_ema, b in zip(averaged.buffers(), current.buffers(), strict=True):
            b_ema.copy_(b)


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=r".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=r".*tensorboardX.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated.*")
    # Data-parallel: each process logs the losses of its own share of the batches (history is rank 0's).
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")


class TrainingModule(L.LightningModule):
    """A LightningModule whose per-epoch ``history`` (a list the subclass appends to) is saved in its
    checkpoints and restored on resume, so a resumed or already finished stage reports every epoch, not
    only those run in this process."""

    history: list

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["cellsynth_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("cellsynth_history", []))


def train(
    module: L.LightningModule,
    train_loader: torch.utils.data.DataLoader,
    *,
    max_epochs: int,
    stage: str,
    seed: int,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    placement: Placement | None = None,
    gradient_clip_val: float | None = 1.0,
) -> L.LightningModule:
    """Fit ``module`` for ``max_epochs`` epochs, checkpointing each epoch and resuming if possible.

    Without ``checkpoint_dir`` the checkpoints go to a temporary directory that is removed afterwards.
    Returns the module with the weights of the last epoch, on the CPU, in every process (data-parallel
    processes hold the same weights). Build ``module`` after calling :func:`seed_everything` so that its
    initial weights are seeded too; the data loader must shuffle by epoch: use :func:`loader`. ``placement``:
    where to train (default: one device, a GPU when there is one).
    """
    placement = (placement or Placement()).check()
    _quiet_lightning()
    seed_everything(seed)
    with tempfile.TemporaryDirectory(prefix="cellsynth-") as scratch:
        root = Path(checkpoint_dir) if checkpoint_dir is not None else Path(scratch)
        ckpt_dir = root / "checkpoints" / stage
        trainer = L.Trainer(
            max_epochs=max_epochs,
            accelerator=placement.accelerator,
            devices=placement.devices,
            num_nodes=placement.num_nodes,
            strategy=_strategy(placement, module),
            logger=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            gradient_clip_val=gradient_clip_val,
            callbacks=[
                _StepSeed(seed),
                ModelCheckpoint(dirpath=ckpt_dir, filename="{epoch:04d}", save_last=True, save_top_k=1),
            ],
            default_root_dir=root,
            num_sanity_val_steps=0,
        )
        if getattr(trainer.strategy, "_start_method", "popen") != "popen":
            raise ConfigError(
                f"Lightning would train {placement.processes} processes by forking this one (an interactive "
                "session: a notebook or the REPL), which cellsynth does not support: run the training as a "
                "script or the `cellsynth fit` command"
            )
        resume = _resume_checkpoint(ckpt_dir, stage)
        # weights_only: a checkpoint holds tensors and plain containers; nothing in it is code to run.
        trainer.fit(module, train_loader, ckpt_path=str(resume) if resume else None, weights_only=True)
    return module.cpu()


def _strategy(placement: Placement, module: L.LightningModule) -> str:
    """Lightning's strategy for ``module``: a module that optimises by hand (a GAN's critic and generator in
    turn) leaves one network's parameters out of each step's loss, which DDP refuses unless it looks for
    unused parameters; so with several processes, ``auto`` and ``ddp`` become
    ``ddp_find_unused_parameters_true`` for it."""
    if (
        placement.processes > 1
        and placement.strategy in ("auto", "ddp")
        and not module.automatic_optimization
    ):
        return "ddp_find_unused_parameters_true"
    return placement.strategy


def _resume_checkpoint(ckpt_dir: Path, stage: str) -> Path | None:
    """The checkpoint a rerun resumes ``stage`` from: ``last.ckpt``, else the newest other one in ``ckpt_dir``;
    ``None`` to train the stage from the start.

    A checkpoint that cannot be loaded (truncated by a kill or a full disk, overwritten...) is renamed
    ``<name>.damaged`` (kept, never deleted: it may still be worth something to its owner) and the next one is
    tried; one warning says which were set aside and where training starts from.
    """
    if not ckpt_dir.is_dir():
        return None
    last = ckpt_dir / "last.ckpt"
    others = sorted(
        (p for p in ckpt_dir.glob("*.ckpt") if p.name != last.name), key=lambda p: p.stat().st_mtime_ns
    )
    damaged: list[str] = []
    chosen = None
    for path in [last, *reversed(others)]:
        try:
            problem = _unloadable(path)
            if problem is None:
                chosen = path
                break
            damaged.append(f"{path} ({problem}; renamed {_set_aside(path).name})")
        except FileNotFoundError:
            continue  # absent, or set aside meanwhile by another process of a data-parallel run
    if damaged:
        outcome = f"resuming from {chosen.name}" if chosen else "training this stage from the start"
        warnings.warn(
            f"{stage}: damaged checkpoint(s) set aside: {'; '.join(damaged)}; {outcome}",
            UserWarning,
            stacklevel=3,
        )
    return chosen


def _unloadable(path: Path) -> str | None:
    """Why ``path`` is not a loadable Lightning checkpoint, in a few words; ``None`` if it is one."""
    with path.open("rb") as file:
        if file.read(4) != b"PK\x03\x04":  # torch.save writes a zip archive
            return "not a PyTorch checkpoint (no zip header)"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise  # cannot read the file at all (permissions...): not damage; the CLI names the file
    except (
        Exception
    ) as err:  # corrupt bytes surface as RuntimeError, UnpicklingError, EOFError, ValueError...
        first = str(err).split(". ")[0].splitlines()[0] if str(err) else ""
        return f"truncated or corrupt ({type(err).__name__}: {first[:120]})"
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        return "not a Lightning checkpoint (no state_dict)"
    return None


def _set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.damaged`` (``.damaged-2``, ... if taken) and return the new path."""
    aside = path.with_name(path.name + ".damaged")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{n}")
    path.rename(aside)
    return aside
