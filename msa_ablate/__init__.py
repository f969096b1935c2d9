"""msa_ablate: Hydra-driven ablation sweeps for multimodal sentiment analysis on CMU-MOSI features."""

__version__ = "0.1.0"
