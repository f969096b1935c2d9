"""msa_ablate's Hydra sweeper (``hydra/sweeper=msa_ablate``, the default of every multirun)."""
