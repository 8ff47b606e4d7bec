"""The station-traffic baselines STOUTER was compared against: TCN-GAN (:mod:`.tcn_gan`), a convolutional
VAE (:mod:`.vae`) and DiffWave (:mod:`.diffwave`), conditioned on stations as STOUTER is
(:mod:`cellsynth.generators.conditioning`)."""

from cellsynth.generators.baselines.diffwave import DiffWaveConfig, DiffWaveGenerator
from cellsynth.generators.baselines.tcn_gan import TCNGANConfig, TCNGANGenerator
from cellsynth.generators.baselines.vae import VAEConfig, VAEGenerator

__all__ = [
    "DiffWaveConfig",
    "DiffWaveGenerator",
    "TCNGANConfig",
    "TCNGANGenerator",
    "VAEConfig",
    "VAEGenerator",
]
