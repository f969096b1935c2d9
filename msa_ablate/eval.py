"""Evaluate finished runs again: ``python -m msa_ablate.eval RUN_DIR... [split=test] [data.path=FILE]
[data.KEY=VALUE] [robustness=true] [device=auto]``

Each run's model is rebuilt from its record (``metrics.json``'s config) and loads its selected
weights (``model.pt``). By default it is scored on a split of its own data: the run's recorded
test metrics again. ``data.path=FILE`` (or any ``data.KEY=VALUE``) scores it on other data of the
same dims. ``robustness=true`` runs the test-time robustness pass (msa_ablate/robustness.py, with
conf/eval/robustness.yaml's settings) instead. A RUN_DIR may be a sweep: every completed run under it.

Results go beside the run's record, which stays as it is: ``eval_SPLIT.json`` (and its
``eval_SPLIT_predictions.csv``), ``robustness.json``; on other data the name ends with a digest
of that data (``eval_test_1a2b3c4d.json``). Bad input: one line naming it, exit 2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from msa_ablate import records
from msa_ablate.data import SPLITS, MSAData
from msa_ablate.data.fingerprint import fingerprint
from msa_ablate.errors import ConfigError, DataError, UserError, one_of
from msa_ablate.records import RunRecord
from msa_ablate.robustness import robustness
from msa_ablate.run import build_loss, build_model, load_data, resolve_device, write_predictions
from msa_ablate.train import predict, score

log = logging.getLogger(__name__)

CONF = Path(__file__).resolve().parents[1] / "conf"
PICKLE = "msa_ablate.data.pickles.load_pickle"


def run_folders(path: Path) -> list[Path]:
    """``path`` if it holds a run's record, else every run folder under it (earlier runs set aside
    in ``previous/`` left out)."""
    if (path / records.FILE).exists():
        return [path]
    found = sorted(f.parent for f in path.rglob(records.FILE) if records.PREVIOUS not in f.relative_to(path).parts)
    if not found:
        raise ConfigError(f"{path}: no run folder (with {records.FILE}) here or under it")
    return found


def with_data(config: Mapping, overrides: Mapping[str, object]) -> tuple[DictConfig, str]:
    """The run's config with ``data.KEY=VALUE`` overrides applied, and the suffix its result files
    take: none for the run's own data, else a digest of the other data. ``data.path`` on a run of
    generated data switches to reading that file, with the run's alignment and label range."""
    cfg = OmegaConf.create(dict(config))
    if not overrides:
        return cfg, ""
    if "path" in overrides and "path" not in cfg.data:
        cfg.data = {"_target_": PICKLE, "path": None, "align": cfg.data.get("align", "none"),
                    "label_range": cfg.data.get("label_range", [-3, 3])}
    for key, value in overrides.items():
        if key not in cfg.data and key != "path":
            raise ConfigError(f"data.{key}: no such setting of this run's data (it has {', '.join(cfg.data)})")
        cfg.data[key] = value
    spec = OmegaConf.to_container(cfg.data, resolve=True)
    content = {k: v for k, v in fingerprint(spec).items() if k != "file"}
    digest = hashlib.sha256(json.dumps([{k: v for k, v in spec.items() if k != "path"}, content],
                                       sort_keys=True, default=str).encode()).hexdigest()[:8]
    return cfg, f"_{digest}"


def load_run(folder: Path, data_overrides: Mapping[str, object], device: torch.device
             ) -> tuple[RunRecord, DictConfig, torch.nn.Module, MSAData, str]:
    """A completed run's record, config, model (its selected weights, in eval mode) and data, and the
    suffix of its result files; data whose dims or label range the model does not fit is refused."""
    record = records.read(folder)
    if record.status != "completed" or record.config is None:
        raise ConfigError(f"{folder / records.FILE}: not a completed run's record ({record.status or 'none'})")
    weights = folder / "model.pt"
    if not weights.exists():
        raise ConfigError(f"{weights}: not found (runs keep their model from msa_ablate 0.1.0 on; "
                          "train it again with resume=false)")
    cfg, suffix = with_data(record.config, data_overrides)
    data = load_data(cfg).to(device)
    trained = record.data or {}
    if list(data.label_range) != list(trained.get("label_range", data.label_range)):
        raise DataError(f"{data.source}: labels in {list(data.label_range)}, but the model was trained for "
                        f"{trained['label_range']}")
    model = build_model(cfg, data, record.choices or {})
    wanted = {m: d for m, d in (trained.get("dims") or {}).items() if m in model.modalities}
    if any(data.dims[m] != d for m, d in wanted.items()):
        raise DataError(f"{data.source}: feature dims {data.dims} do not fit the model, trained on {wanted}")
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return record, cfg, model.to(device).eval(), data, suffix


def evaluate_run(folder: Path, split: str = "test", data_overrides: Mapping[str, object] | None = None,
                 device: torch.device = torch.device("cpu")) -> dict:
    """Scores a finished run on ``split``; writes ``eval_SPLIT[_DATA].json`` and its predictions."""
    record, cfg, model, data, suffix = load_run(folder, data_overrides or {}, device)
    predictions = predict(model, data.splits[split], cfg.trainer.eval_batch_size)
    result = {"split": split, "identity": record.identity, "data": data.summary(),
              "metrics": score(predictions, data.splits[split], build_loss(cfg)),
              "provenance": records.provenance(device)}
    result["data"]["fingerprint"] = fingerprint(OmegaConf.to_container(cfg.data, resolve=True))
    records.write_json(folder / f"eval_{split}{suffix}.json", result)
    write_predictions(folder / f"eval_{split}{suffix}_predictions.csv", {split: (data.splits[split], predictions)})
    return result


def robustness_settings() -> dict:
    """conf/eval/robustness.yaml's settings: what ``+eval=robustness`` gives a training run."""
    return OmegaConf.to_container(OmegaConf.load(CONF / "eval" / "robustness.yaml"))


def robustness_run(folder: Path, data_overrides: Mapping[str, object] | None = None,
                   device: torch.device = torch.device("cpu"), **settings) -> dict:
    """The robustness pass on a finished run: writes ``robustness[_DATA].json`` beside its record."""
    record, cfg, model, data, suffix = load_run(folder, data_overrides or {}, device)
    settings = {**robustness_settings(), **settings}
    result = {"identity": record.identity,
              **robustness(model, data, build_loss(cfg), batch_size=cfg.trainer.eval_batch_size, **settings)}
    records.write_json(folder / f"robustness{suffix}.json", result)
    log.info("%s: robustness pass in %.1f s", folder, result["seconds"])
    return result


def parse(args: Sequence[str]) -> tuple[list[Path], dict, dict]:
    """RUN_DIRs, the evaluator's settings and the data overrides, from ``KEY=VALUE`` arguments."""
    folders, settings, data = [], {"split": "test", "device": "auto", "robustness": False}, {}
    for arg in args:
        if "=" not in arg or Path(arg).exists():  # Hydra names sweep folders KEY=VALUE,...
            folders.append(Path(arg))
            continue
        key, value = arg.split("=", 1)
        parsed = OmegaConf.from_dotlist([f"v={value}"]).v  # YAML values: numbers, lists, booleans
        if key.startswith("data.") and len(key) > 5:
            data[key[5:]] = parsed
        elif key in settings:
            settings[key] = parsed
        else:
            raise ConfigError(f"{key}: no such setting (there are {', '.join(settings)}, data.KEY)")
    if not folders:
        raise ConfigError("no RUN_DIR given: python -m msa_ablate.eval RUN_DIR [split=test] [data.path=FILE]")
    if not isinstance(settings["robustness"], bool):
        raise ConfigError(f"robustness={settings['robustness']}: must be true or false")
    one_of("split", settings["split"], SPLITS)
    return folders, settings, data


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        folders, settings, data = parse(args)
        device = resolve_device(str(settings["device"]))
        for folder in [run for path in folders for run in run_folders(path)]:
            start = time.perf_counter()
            if settings["robustness"]:
                result = robustness_run(folder, data, device, split=settings["split"])
                text = ", ".join(f"{t} {v['Corr']:.4f}" for t, v in result["relative"]["noise"].items())
                print(f"{folder}: robustness ({result['split']}), area under Corr with noise: {text}")
            else:
                result = evaluate_run(folder, settings["split"], data, device)
                metrics = result["metrics"]
                print(f"{folder}: {settings['split']} ({result['data']['source']}) Corr {metrics.get('Corr'):.4f}, "
                      f"MAE {metrics['MAE']:.4f} in {time.perf_counter() - start:.1f} s")
    except UserError as e:
        print(f"msa_ablate.eval: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
