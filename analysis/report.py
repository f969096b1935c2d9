"""REPORT.md of the study: python analysis/report.py STUDY_SWEEP ... [--improved SWEEP ...] [--out DIR]

One section per question of the handout (1, 2.1-2.5, 3), each with its table, its plot, and
sentences whose every number is computed from the runs (their words: analysis/templates/report.yaml);
and where the study's runs have robustness.json, one on their robustness (summarize.py
--robustness's table, and a sentence); with --published (a ``+experiment=published`` sweep), one
table of the published models' presets and the baseline under the one trainer, beside what their
sources published.
The report names its data (and, for the built-in data, what its construction implies for each
question), its code (its runs' commits), the commands that made them, the seeds and the
correction for many comparisons.
It writes runs.csv beside REPORT.md, one row per run, from which
``python analysis/report.py --runs DIR/runs.csv --out DIR`` makes the same REPORT.md, byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.labels import with_labels
from analysis.published import is_synthetic
from analysis.runs import load_runs, output_folder, read_folders, read_runs, write_runs
from analysis.sections import QUESTIONS, header, published, question_1, question_2, question_3, robustness
from analysis.stats import ADJUSTMENTS
from msa_ablate.metrics import SCORE_NAMES


def report(runs: pd.DataFrame, out: Path, metric: str = "Corr", adjust: str = "holm",
           designed_on: str = "data.seed=0") -> Path:
    """``runs``: the study's, question 3's and the published models', told apart by their ``part`` column."""
    plots = out / "report_plots"
    plots.mkdir(parents=True, exist_ok=True)
    study, base, _ = with_labels(runs[runs.part == "study"])
    synthetic = study.data.map(is_synthetic).all()
    parts = [*header(runs, adjust), *question_1(study, base, plots, out)]
    for factor in QUESTIONS:
        parts += question_2(study, base, factor, plots, out, metric, adjust, synthetic) if base else []
    parts += [*question_3(runs[runs.part == "improved"], plots, out, adjust, designed_on),
              *robustness(study, base, metric, adjust), *published(runs[runs.part == "published"], metric, adjust)]
    path = out / "REPORT.md"
    path.write_text("\n".join(parts) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="the study's sweep folders (default: the newest sweep)")
    parser.add_argument("--improved", type=Path, action="append", default=[],
                        help="a +experiment=improved sweep folder, for question 3 (repeat for other data)")
    parser.add_argument("--published", type=Path, action="append", default=[],
                        help="a +experiment=published sweep folder: the published models under one trainer (repeat)")
    parser.add_argument("--runs", type=Path, help="a runs.csv this wrote, instead of folders")
    parser.add_argument("--out", type=Path, help="folder for REPORT.md, runs.csv and the plots (default: first folder)")
    parser.add_argument("--metric", default="Corr", choices=SCORE_NAMES)
    parser.add_argument("--adjust", choices=ADJUSTMENTS, default="holm")
    parser.add_argument("--designed-on", default="data.seed=0",
                        help="the data setting the improved model was designed on")
    args = parser.parse_args(argv)
    try:
        if args.runs:
            runs = read_runs(args.runs)
            if "part" not in runs:  # summarize.py's table: one sweep's runs, read as the study
                runs = runs.assign(part="study")
            out = output_folder(args.out or args.runs.parent)
        else:
            folders, study = read_folders(args.folders)
            improved = load_runs(args.improved) if args.improved else study.iloc[:0]
            published_runs = [load_runs(args.published).assign(part="published")] if args.published else []
            runs = pd.concat([study.assign(part="study"), improved.assign(part="improved"), *published_runs],
                             ignore_index=True)
            out = output_folder(args.out or folders[0])
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    written = [report(runs, out, args.metric, args.adjust, args.designed_on)]
    if not args.runs:
        written.append(write_runs(runs, out / "runs.csv"))
    print(f"wrote {', '.join(map(str, written))} and {out / 'report_plots'}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
