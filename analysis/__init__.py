"""Sweep analysis: from Hydra multirun folders to tidy runs, comparison tables and plots."""
