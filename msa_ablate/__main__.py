"""``python -m msa_ablate [overrides]``: one run, or a sweep with ``-m``."""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from msa_ablate.config import default_config  # (importing it registers the config schemas with Hydra)
from msa_ablate.errors import UserError
from msa_ablate.hydra_errors import one_line_errors
from msa_ablate.jobs import Terminated, overridden_keys, run_job

# conf/hydra/launcher/ takes the plugins' own names, so Hydra checks those files against the
# plugins' schemas (what we want) and warns that the matching is deprecated (noise here).
warnings.filterwarnings("ignore", message="(?s).*is validated against ConfigStore schema with the same name")


CONF = Path(__file__).resolve().parents[1] / "conf"  # the checkout's (the install is editable)


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float:
    """Returns the best validation value of ``trainer.select_metric`` (a pack's mean over its
    seeds), for sweepers to optimise."""
    hc = HydraConfig.get()
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith(("hydra", "schema")) and v is not None}
    try:
        overridden = overridden_keys(hc.overrides.task)
        # A progress bar where the output is a terminal, and jobs run one at a time in it.
        bar = sys.stderr.isatty() and (hc.mode == RunMode.RUN or hc.launcher._target_.endswith("BasicLauncher"))
        records = run_job(cfg, Path(hc.runtime.output_dir), choices, job_num=hc.job.get("num") or 0,
                          overridden=overridden, default=default_config(), bar=bar,
                          varied=[k for k in str(hc.job.env_set.get("MSA_ABLATE_VARIED", "")).split(",") if k])
    except UserError as e:
        if hc.mode == RunMode.MULTIRUN:
            raise  # the sweeper records the failed job, runs the rest, and names it at the end
        print(f"msa_ablate: error: {e}", file=sys.stderr)
        sys.exit(2)
    values = [r.valid[cfg.trainer.select_metric] for r in records]
    return sum(math.nan if v is None else v for v in values) / len(values)  # a pack's mean


if __name__ == "__main__":
    try:
        with one_line_errors():
            main()
    except (KeyboardInterrupt, Terminated) as stop:  # the record says interrupted, the checkpoint resumes it
        how = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        print(f"msa_ablate: interrupted ({how}): the run's record says so, and the same command goes on from its "
              "last epoch", file=sys.stderr)
        sys.exit(stop.code if isinstance(stop, Terminated) else 130)
