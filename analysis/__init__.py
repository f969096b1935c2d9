"""Sweep analysis: from Hydra multirun folders to tidy runs, comparison tables and plots.

In layers, each importing only from those before it: runs (folders or runs.csv -> one row per
run) -> labels (each configuration named by what it changes) -> tables, stats, robustness,
predictions, published (numbers) -> render (text), plots (PNGs) -> sections (REPORT.md's, with
the words of templates/report.yaml) -> summarize.py and report.py (the command lines).
"""
