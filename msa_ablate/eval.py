"""Evaluate finished runs again: ``python -m msa_ablate.eval RUN_DIR... [split=test] [data.path=FILE]
[data.KEY=VALUE] [robustness=true] [device=auto]``

Each run's model is rebuilt from its record (``metrics.json``'s config) and loads its selected
weights (``model.pt``). By default it is scored on a split of its own data: the run's recorded
test metrics again. ``data.path=FILE`` (or any ``data.KEY=VALUE``) scores it on other data of the
same dims. ``robustness=true`` runs the test-time robustness pass (msa_ablate/robustness.py, with
conf/eval/robustness.yaml's settings) instead. A RUN_DIR may be a sweep: every completed run under
it is evaluated, and each other run named in one line; exit 2 where none was evaluated.

Results go beside the run's record, which stays as it is: ``eval_SPLIT.json`` (and its
``eval_SPLIT_predictions.csv``), ``robustness.json``; on data other than the run recorded (another
file, other settings, or its own file changed since) the name ends with a digest of that data
(``eval_test_1a2b3c4d.json``). Bad input: one line naming it, exit 2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
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


def data_digest(spec: Mapping, content: Mapping) -> str:
    """What data a result is of: its settings and its fingerprint, less where the file is."""
    plain = [{k: v for k, v in spec.items() if k != "path"}, {k: v for k, v in content.items() if k != "file"}]
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:8]


def with_data(record: RunRecord, overrides: Mapping[str, object]) -> tuple[DictConfig, str]:
    """The run's config with ``data.KEY=VALUE`` overrides applied, and the suffix its result files
    take: none for the data the run recorded (its settings and fingerprint), else a digest of the
    data read now, the run's own file changed since included. ``data.path`` on a run of generated
    data switches to reading that file, with the run's alignment and label range."""
    cfg = OmegaConf.create(dict(record.config))
    if "path" in overrides and "path" not in cfg.data:
        cfg.data = {"_target_": PICKLE, "path": None, "align": cfg.data.get("align", "none"),
                    "label_range": cfg.data.get("label_range", [-3, 3])}
    for key, value in overrides.items():
        if key not in cfg.data and key != "path":
            raise ConfigError(f"data.{key}: no such setting of this run's data (it has {', '.join(cfg.data)})")
        cfg.data[key] = value
    spec = OmegaConf.to_container(cfg.data, resolve=True)
    digest = data_digest(spec, fingerprint(spec))
    recorded = data_digest(record.config["data"], (record.data or {}).get("fingerprint") or {})
    return cfg, "" if digest == recorded else f"_{digest}"


def load_run(folder: Path, data_overrides: Mapping[str, object], device: torch.device
             ) -> tuple[RunRecord, DictConfig, torch.nn.Module, MSAData, str]:
    """A completed run's record, config, model (its selected weights, in eval mode) and data, and the
    suffix of its result files; data whose dims or label range the model does not fit is refused."""
    record = records.read(folder)
    if record.status != "completed" or record.config is None:
        raise ConfigError(f"{folder}: not a completed run ({record.status or 'no status'}), not evaluated")
    weights = folder / "model.pt"
    if not records.readable(weights):
        raise ConfigError(f"{weights}: missing or unreadable (runs before msa_ablate 0.1.0 kept none); "
                          "the run's own command trains it again")
    cfg, suffix = with_data(record, data_overrides)
    data = load_data(cfg).to(device)
    trained = record.data or {}
    if list(data.label_range) != list(trained.get("label_range", data.label_range)):
        raise DataError(f"{data.source}: labels in {list(data.label_range)}, but the model was trained for "
                        f"{trained['label_range']}")
    model = build_model(cfg, data, record.choices or {})
    wanted = {m: d for m, d in (trained.get("dims") or {}).items() if m in model.modalities}
    if any(data.dims[m] != d for m, d in wanted.items()):
        raise DataError(f"{data.source}: feature dims {data.dims} do not fit the model, trained on {wanted}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as e:
        raise ConfigError(f"{weights}: not a model's weights ({type(e).__name__}); the run's own command with "
                          "resume=false trains it again") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # torch lists every mismatching tensor: the first says enough
        first = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise ConfigError(f"{weights}: not this run's model (its record builds another): {first}") from None
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


def evaluate_one(folder: Path, settings: Mapping, data: Mapping[str, object], device: torch.device) -> None:
    """The evaluation, or the robustness pass, of one run, and one line saying how it went."""
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


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        folders, settings, data = parse(args)
        device = resolve_device(str(settings["device"]))
        runs = [run for path in folders for run in run_folders(path)]
    except UserError as e:
        print(f"msa_ablate.eval: error: {e}", file=sys.stderr)
        return 2
    evaluated = 0
    for folder in runs:  # a run that cannot be evaluated is named, and the others are evaluated
        try:
            evaluate_one(folder, settings, data, device)
            evaluated += 1
        except UserError as e:
            print(f"msa_ablate.eval: error: {e}", file=sys.stderr)
        except OSError as e:  # results beside the record: a read-only run folder, a full disk
            print(f"msa_ablate.eval: error: {folder}: cannot write its results there ({e.strerror or e})",
                  file=sys.stderr)
    return 0 if evaluated else 2


if __name__ == "__main__":
    sys.exit(main())
