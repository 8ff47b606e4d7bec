"""The default Gaussian sampler of the diffusion generators (STOUTER, DiffWave and MSTDiff's traffic branch).

A config that derives from :class:`SamplingConfig` gets ``sampler`` and ``sampling_steps`` (the sampler a
``generate`` call without one runs), a check that the steps fit in the chain, and :meth:`SamplingConfig.sampling`,
which resolves a call's ``(sampler, steps)`` the same way everywhere: the config's default when none is given,
:data:`~cellsynth.diffusion.gaussian.DEFAULT_STEPS` for another sampler given without steps.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

import pydantic

from cellsynth.diffusion.gaussian import DEFAULT_STEPS, SAMPLERS
from cellsynth.errors import ConfigError
from cellsynth.generators.base import GeneratorConfig

__all__ = ["SamplingConfig"]


class SamplingConfig(GeneratorConfig):
    """Base of the configs of generators that sample a Gaussian diffusion; ``chain_field`` names the field
    that holds the chain's length ``T`` (the most steps a sampler can take)."""

    chain_field: ClassVar[str] = "num_train_timesteps"

    sampler: Literal["ddpm", "ddim", "dpm-solver"] = pydantic.Field("ddim", description="Default sampler.")
    sampling_steps: int | None = pydantic.Field(
        50, ge=1, description="Steps of the default sampler (None: all T for ddpm, 50 ddim, 20 dpm-solver)."
    )

    @pydantic.model_validator(mode="after")
    def _steps_fit_the_chain(self):
        chain = getattr(self, self.chain_field)
        if self.sampling_steps is not None and self.sampling_steps > chain:
            raise ValueError(f"sampling_steps ({self.sampling_steps}) > {self.chain_field} ({chain})")
        return self

    def sampling(self, sampler: str | None = None, steps: int | None = None) -> tuple[str, int | None]:
        """``(sampler, steps)`` of a ``generate`` call given these (None: not given). No sampler: the
        config's, with ``sampling_steps`` unless ``steps`` is given; another sampler without ``steps``: its
        :data:`~cellsynth.diffusion.gaussian.DEFAULT_STEPS` (None: the whole chain)."""
        sampler = self.sampler if sampler is None else sampler
        allowed = get_args(type(self).model_fields["sampler"].annotation)
        if sampler not in allowed:
            raise ConfigError(
                f"unknown sampler {sampler!r} for {type(self).__name__}; choose one of {', '.join(allowed)}"
                + ("" if set(allowed) == set(SAMPLERS) else f" (of {', '.join(SAMPLERS)})")
            )
        if steps is None:
            steps = self.sampling_steps if sampler == self.sampler else DEFAULT_STEPS[sampler]
        return sampler, steps
