"""What is in a data file: ``python -m msa_ablate.data FILE [--json]``

The layout (handout/MultiBench, MulT, MMSA) and why; per split the number of clips; per modality
the dims, the steps, the clips' real lengths (min / median / max) and the side that pads; the
labels' range and how many fall in each class; non-finite cells; ids found in more than one
split; the file's fingerprint; which ``data=`` config fits it, and what a step-wise fusion would
need. A file that cannot be read: one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from msa_ablate.data import MODALITIES, from_arrays
from msa_ablate.data.fingerprint import file_fingerprint
from msa_ablate.data.pickles import layout, read_pickle, unexpected
from msa_ablate.errors import UserError
from msa_ablate.metrics import SIMS_BOUNDS, metric_set, sims_classes

CONFIGS = Path(__file__).resolve().parents[2] / "conf" / "data"


def histogram(labels: np.ndarray, label_range: tuple[float, float]) -> dict[str, int]:
    """How many labels fall in each class of the range's metrics (MOSI's 7 rounded classes,
    CH-SIMS's 5 intervals)."""
    if metric_set(label_range) == "mosi":
        classes = np.round(np.clip(labels, -3, 3)).astype(int)
        return {str(c): int((classes == c).sum()) for c in range(-3, 4)}
    bounds = SIMS_BOUNDS[5]
    classes = sims_classes(np.clip(labels, -1, 1), 5)
    return {f"({bounds[i]:g}, {bounds[i + 1]:g}]": int((classes == i).sum()) for i in range(5)}


def inspect(path: str) -> dict:
    raw, source = read_pickle(path)
    labels = np.concatenate([np.asarray(raw[s].get("labels", raw[s].get("regression_labels"))).reshape(-1)
                             for s in raw if isinstance(raw[s], dict)]) if isinstance(raw, dict) else np.zeros(0)
    numeric = labels.dtype.kind in "iuf"  # other labels: from_arrays names the file and key
    label_range = (-1.0, 1.0) if numeric and labels.size and np.abs(labels).max() <= 1 else (-3.0, 3.0)
    data = from_arrays(raw, source=source, clip_labels=True, label_range=label_range)
    name, why = layout(raw)
    train = data.splits["train"]
    modalities = {}
    for m in MODALITIES:
        lengths = np.concatenate([split.masks[m].sum(1).numpy() for split in data.splits.values()])
        modalities[m] = {"dims": data.dims[m], "steps": data.steps[m], "padding": data.padding[m],
                         "real_lengths": {"min": int(lengths.min()), "median": float(np.median(lengths)),
                                          "max": int(lengths.max())},
                         "nonfinite_cells": sum(c[m] for c in data.nonfinite_cells.values())}
    ids = {s: set(split.ids) for s, split in data.splits.items()}
    shared = {f"{a}&{b}": len(ids[a] & ids[b]) for i, a in enumerate(ids) for b in list(ids)[i + 1:]}
    differences, size_gap = {}, {}  # per dataset config of this label range: how the file differs from its files
    for file in sorted(CONFIGS.glob("*.yaml")):
        config = yaml.safe_load(file.read_text())
        if config.get("expect") and tuple(config["label_range"]) == label_range:
            differences[f"data={file.stem}"] = unexpected(data, config["name"], config["expect"])
            size_gap[f"data={file.stem}"] = sum(abs(np.log(len(data.splits[s]) / n))
                                                for s, n in config["expect"]["sizes"].items())
    fits = [name for name, differ in differences.items() if not differ]
    if not fits and differences:  # fewest differences, then the nearest split sizes
        closest = min(differences, key=lambda name: (len(differences[name]), size_gap[name]))
        fits = [f"none exactly; the closest is {closest} ({'; '.join(differences[closest])})"]
    return {
        "file": source, "fingerprint": file_fingerprint(path), "layout": name, "layout_because": why,
        "sizes": {s: len(split) for s, split in data.splits.items()},
        "modalities": modalities,
        "aligned": bool(data.aligned),
        "labels": {"min": float(labels.min()), "max": float(labels.max()), "range": list(label_range),
                   "metrics": metric_set(label_range), "classes": histogram(labels, label_range),
                   "outside_range": sum((data.clipped_labels or {}).values()),
                   "per_modality": sorted(train.unimodal)},
        "ids": {"clips with an id": sum(len(i) for i in ids.values()), "shared between splits": shared},
        "fits": fits,
        "stepwise_fusions": "run as they are: the modalities are aligned" if data.aligned else
                            "need data.align=resample or data.align=pool (the modalities have steps of their own)",
    }


def show(report: dict) -> str:
    fp = report["fingerprint"]
    lines = [f"{report['file']}  ({fp['bytes']:,} bytes, sha256 {fp['sha256'][:16]}...)",
             f"layout: {report['layout']} ({report['layout_because']})",
             f"clips: {', '.join(f'{s} {n}' for s, n in report['sizes'].items())}",
             f"aligned: {'yes, one step per word' if report['aligned'] else 'no, each modality at its own rate'}"]
    for m, info in report["modalities"].items():
        length = info["real_lengths"]
        lines.append(f"  {m:7} dims {info['dims']:4}  steps {info['steps']:4}  real lengths {length['min']}/"
                     f"{length['median']:g}/{length['max']} (min/median/max)  padding {info['padding']}  "
                     f"non-finite cells {info['nonfinite_cells']}")
    labels = report["labels"]
    lines += [f"labels: {labels['min']:g} .. {labels['max']:g}, read as {labels['range']} ({labels['metrics']}'s "
              f"metrics); {labels['outside_range']} outside it",
              "  " + "  ".join(f"{c}: {n}" for c, n in labels["classes"].items())]
    if labels["per_modality"]:
        lines.append(f"  a label per modality too: {', '.join(labels['per_modality'])}")
    ids = report["ids"]
    lines.append(f"ids: {ids['clips with an id']} clips have one; shared between splits: "
                 f"{', '.join(f'{k} {v}' for k, v in ids['shared between splits'].items()) or '-'}")
    lines += [f"fits: {', '.join(report['fits'])}", f"step-wise fusions (sum_lstm, concat_lstm, self_attention): "
              f"{report['stepwise_fusions']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msa_ablate.data", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="a data pickle")
    parser.add_argument("--json", action="store_true", help="the report as JSON, for a script")
    args = parser.parse_args(argv)
    try:
        report = inspect(args.file)
    except UserError as e:
        print(f"msa_ablate.data: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else show(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
