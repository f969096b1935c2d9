"""msa_ablate's Hydra plugins: the sweeper of every multirun (``hydra/sweeper=msa_ablate``), and the
SLURM launcher behind ``hydra/launcher=submitit_slurm`` (slurm.py)."""
