"""How a generator samples by default: the ``sampling`` section of its config.

Every generator's config has a ``sampling`` section with one name for each setting across generators:

- ``batch_size``: series (stations' weeks or users) generated together (:class:`Sampling`);
- for the diffusion generators (STOUTER, DiffWave, MSTDiff's traffic branch), also ``sampler``,
  ``steps`` and ``precision``: the Gaussian sampler a ``generate`` call without one runs, and the precision
  of the network's products in it (:class:`GaussianSampling`), checked
  against the length of the chain, and resolved the same way everywhere by
  :meth:`SamplingConfig.resolve_sampler`: the config's default when none is given,
  :data:`~cellsynth.diffusion.gaussian.DEFAULT_STEPS` for another sampler given without steps.

A ``generate`` call takes the same names: ``sampler=``, ``steps=``, ``batch_size=``, ``precision=``
(:meth:`SamplingConfig.resolve_precision`).
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

import pydantic

from cellsynth.diffusion.gaussian import DEFAULT_STEPS, SAMPLERS, Precision, check_precision
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators.base import ConfigSection, GeneratorConfig

__all__ = ["GaussianSampling", "Sampling", "SamplingConfig"]


class Sampling(ConfigSection):
    """The ``sampling`` section of every generator."""

    batch_size: int = pydantic.Field(256, ge=1, description="Series generated together (memory vs speed).")


class GaussianSampling(Sampling):
    """The ``sampling`` section of a generator that samples a Gaussian diffusion."""

    sampler: Literal["ddpm", "ddim", "dpm-solver"] = pydantic.Field("ddim", description="Default sampler.")
    steps: int | None = pydantic.Field(
        50, ge=1, description="Steps of the default sampler (None: all T for ddpm, 50 ddim, 20 dpm-solver)."
    )
    precision: Precision = pydantic.Field(
        "float32",
        description="Precision of the denoising network's products while sampling: 'bfloat16' (torch.autocast) "
        "gave STOUTER about 2x the rate on a CPU with AVX-512 BF16 (not measured on a GPU); on a device without "
        "native bfloat16 kernels (13x slower there) it warns and runs float32; the chain stays float32.",
    )


class SamplingConfig(GeneratorConfig):
    """Base of the configs of generators that sample a Gaussian diffusion; ``chain_field`` names the field
    that holds the chain's length ``T`` (the most steps a sampler can take)."""

    chain_field: ClassVar[str] = "num_train_timesteps"
    moved_fields: ClassVar[dict[str, str]] = {
        "sampler": "sampling.sampler",
        "sampling_steps": "sampling.steps",
        "generation_batch_size": "sampling.batch_size",
        "sample_batch_size": "sampling.batch_size",
    }

    sampling: GaussianSampling = pydantic.Field(default_factory=GaussianSampling)

    @pydantic.model_validator(mode="after")
    def _steps_fit_the_chain(self):
        chain = getattr(self, self.chain_field)
        if self.sampling.steps is not None and self.sampling.steps > chain:
            raise ValueError(f"sampling.steps ({self.sampling.steps}) > {self.chain_field} ({chain})")
        return self

    def sampling_options(self, options: dict, model: str) -> dict:
        """``{"sampler", "steps", "precision"}`` of a ``generate`` call's extra ``options`` of those names,
        each resolved against this config; any other option is a :class:`DataError` naming ``model``."""
        unknown = sorted(set(options) - {"sampler", "steps", "precision"})
        if unknown:
            raise DataError(
                f"{model}.generate got unknown option(s) {unknown}; it takes sampler, steps, precision, progress "
                "and batch_size"
            )
        sampler, steps = self.resolve_sampler(options.get("sampler"), options.get("steps"))
        return {
            "sampler": sampler,
            "steps": steps,
            "precision": self.resolve_precision(options.get("precision")),
        }

    def resolve_precision(self, precision: str | None = None) -> str:
        """The network precision of a ``generate`` call given ``precision`` (None: ``sampling.precision``)."""
        return check_precision(self.sampling.precision if precision is None else precision)

    def resolve_sampler(self, sampler: str | None = None, steps: int | None = None) -> tuple[str, int | None]:
        """``(sampler, steps)`` of a ``generate`` call given these (None: not given). No sampler: the
        config's, with ``sampling.steps`` unless ``steps`` is given; another sampler without ``steps``: its
        :data:`~cellsynth.diffusion.gaussian.DEFAULT_STEPS` (None: the whole chain)."""
        sampler = self.sampling.sampler if sampler is None else sampler
        allowed = get_args(type(self.sampling).model_fields["sampler"].annotation)
        if sampler not in allowed:
            raise ConfigError(
                f"unknown sampler {sampler!r} for {type(self).__name__}; choose one of {', '.join(allowed)}"
                + ("" if set(allowed) == set(SAMPLERS) else f" (of {', '.join(SAMPLERS)})")
            )
        if steps is None:
            steps = self.sampling.steps if sampler == self.sampling.sampler else DEFAULT_STEPS[sampler]
        return sampler, steps
