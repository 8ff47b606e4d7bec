"""The baselines STOUTER and MSTDiff were compared against, one module each (reached by name through
:func:`cellsynth.generators.get`):

- station traffic, conditioned on stations as STOUTER is (:mod:`cellsynth.generators.conditioning`): TCN-GAN
  (:mod:`.tcn_gan`), a convolutional VAE (:mod:`.vae`) and DiffWave (:mod:`.diffwave`);
- users' traffic (:mod:`.users`) and users' trajectories (:mod:`.trajectories`).

Nothing is imported here: importing a package runs its ``__init__``, and TimeGeo (which fits counts) should not
load the networks and Lightning of the station baselines beside it."""
