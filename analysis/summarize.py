"""Compare the runs of one or more sweeps: python analysis/summarize.py [FOLDER ...] [--runs CSV]

With no folder, the newest sweep under multirun/ that has runs. Runs are grouped by what ran
(their records' resolved config and data); each configuration is labelled by what it changes
from the baseline, and compared with it by seed: n, n paired, mean ± sample std, the difference
with its 95% confidence interval, the paired t-test's p, that p adjusted for the table's
comparisons (Holm by default), and Wilcoxon's p where enough seeds are paired. One table of all
configurations, then one per factor varied alone. Writes runs.csv, summary.md and plots/.
With --published, each configuration that re-implements a published model beside what its
sources reported (msa_ablate/published.csv), also in published.md. With --robustness, each
configuration's test-time robustness (its runs' robustness.json) and its effective robustness
against the baseline, with a plot per factor of the metric against the level; with --ensemble,
each configuration's seeds averaged clip by clip and scored as one model; with --bootstrap N, a
column of each run's bootstrap interval of --metric (the last two from the runs' predictions.csv).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import yaml

from analysis.labels import apply_filters, parse_filters, with_labels
from analysis.plots import write_plots, write_robustness_plots
from analysis.predictions import ensemble, with_bootstrap
from analysis.render import FORMATS, ensemble_text, published_text, render, robustness_text, summary_head
from analysis.robustness import robustness_table, usable
from analysis.runs import output_folder, read_folders, read_runs, write_runs
from analysis.stats import ADJUSTMENTS
from analysis.tables import beside_published, compare, one_factor_tables
from msa_ablate.metrics import METRIC_SETS, SCORE_NAMES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="sweep or run folders (default: the newest sweep)")
    parser.add_argument("--runs", type=Path, help="a runs.csv (as this writes) instead of folders")
    parser.add_argument("--metric", "--sort", default="Corr", choices=SCORE_NAMES,
                        help="metric to sort by and test against the baseline")
    parser.add_argument("--split", choices=("test", "valid"), default="test")
    parser.add_argument("--baseline", help="the configuration (a label as shown) to compare with")
    parser.add_argument("--adjust", choices=ADJUSTMENTS, default="holm", help="multiple-comparison correction")
    parser.add_argument("--format", choices=(*FORMATS, "csv"), default="terminal")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=V1[,V2]", help="keep matching runs")
    parser.add_argument("--has0", action="store_true", help="also show Has0_acc_2 and Has0_F1_score")
    parser.add_argument("--published", action="store_true",
                        help="also each configuration that re-implements a published model beside what was published")
    parser.add_argument("--robustness", action="store_true",
                        help="also each configuration's test-time robustness (robustness.json) and its effective "
                             "robustness against the baseline's, with plots of the metric against the level")
    parser.add_argument("--ensemble", action="store_true",
                        help="also each configuration's seeds averaged prediction by prediction, scored as one model")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help="a column of each run's percentile bootstrap 95%% interval of --metric over its clips "
                             "(N resamples, seeded), averaged over seeds (default: none)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--out", type=Path, help="where to write runs.csv, summary.md, plots (default: first folder)")
    args = parser.parse_args(argv)

    try:
        if args.runs:
            if not args.runs.is_file():
                raise FileNotFoundError(f"--runs {args.runs}: no such file")
            folders, runs = [args.runs.parent], read_runs(args.runs)
        else:
            folders, runs = read_folders(args.folders)
        runs = apply_filters(runs, parse_filters(args.filter))
        kw = {"metric": args.metric, "split": args.split, "baseline": args.baseline, "adjust": args.adjust,
              "has0": args.has0}
        labelled, base, held = with_labels(runs, args.baseline)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))  # one line, exit 2
    scored_by = sorted({m for name in set(runs.metrics) for m in METRIC_SETS.get(name, ())})
    if args.metric != "loss" and args.metric not in scored_by:
        parser.error(f"--metric {args.metric}: not a metric of these runs' data (they are scored by "
                     f"{', '.join(scored_by)}, and loss)")
    if args.bootstrap < 0:
        parser.error(f"--bootstrap {args.bootstrap}: the number of resamples must be positive (0: none)")
    if args.metric == "loss" and (args.ensemble or args.bootstrap):
        parser.error("--ensemble and --bootstrap score predictions.csv, which holds no loss: choose another --metric")
    if args.split == "test" and runs["test_Corr"].isna().all() and runs["valid_Corr"].notna().any():
        parser.error("these runs never read the test split (trainer.evaluate_test=false, as in "
                     "hparams_search=optuna): use --split valid")
    try:
        out = output_folder(args.out or folders[0])
    except ValueError as e:
        parser.error(str(e))
    written = [] if args.runs and out == args.runs.parent else [write_runs(runs, out / "runs.csv")]

    searches = {file: yaml.safe_load(file.read_text()) for file in (f / "optimization_results.yaml" for f in folders)
                if file.exists()}  # an Optuna search: its best trial
    lines = summary_head(runs, labelled, base, held, folders, searches, args.split, args.adjust)
    root = args.runs.parent if args.runs else Path()  # where the runs' paths start
    if args.bootstrap:
        runs, line = with_bootstrap(runs, root, args.metric, args.split, args.bootstrap)
        lines.append(line)
    sections = [("all configurations", compare(runs, **kw))]
    sections += [(f"one factor: {f}", t) for f, t in one_factor_tables(runs, **kw).items()]
    blocks = [(title, partial(render, table, args.metric, adjust=args.adjust)) for title, table in sections]
    if args.robustness:
        robust, notes = usable(labelled)
        table = robustness_table(robust, base, args.metric, args.adjust) if len(robust) else None
        blocks.append((f"robustness: test {args.metric} under perturbation",
                       partial(robustness_text, table, notes, args.metric, adjust=args.adjust)))
    if args.ensemble:
        table, line = ensemble(labelled, root, args.metric, args.split)
        blocks.append((f"ensembles of each configuration's seeds: {args.split} {args.metric}",
                       partial(ensemble_text, table, line, args.metric, args.split)))
    text = "\n".join(lines) + "".join(f"\n\n## {title}\n\n{block(fmt=args.format)}" for title, block in blocks)
    print(text)
    summary = out / "summary.md"
    summary.write_text("\n".join(lines) + "".join(
        f"\n\n## {title}\n\n{block(fmt='markdown')}" for title, block in blocks) + "\n")
    written.append(summary)
    if args.published:
        title = "published results beside these runs"
        beside = beside_published(labelled, args.split)
        print(f"\n## {title}\n\n{published_text(beside, args.format)}")
        written.append(out / "published.md")
        written[-1].write_text(f"# {title}\n\n{published_text(beside, 'markdown')}\n")
    if not args.no_plots:
        written += write_plots(labelled, base, out / "plots", metric=args.metric, split=args.split)
        if args.robustness and len(robust):
            written += write_robustness_plots(labelled, robust, base, out / "plots", metric=args.metric)
    print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
