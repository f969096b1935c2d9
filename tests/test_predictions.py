"""Every completed run keeps its selected model (model.pt) and its predictions (predictions.csv)."""

import numpy as np
import pandas as pd
import pytest
import torch

from msa_ablate.metrics import regression_metrics
from msa_ablate.run import build_model, load_data
from tests.conftest import compose_config, run_tiny, run_tiny_records



def test_the_predictions_give_the_records_metrics_and_the_weights_give_the_predictions(tmp_path):
    record = run_tiny(tmp_path)
    table = pd.read_csv(tmp_path / "predictions.csv", keep_default_na=False)
    assert list(table.columns) == ["split", "index", "id", "label", "prediction"]
    sizes = record["data"]["sizes"]
    assert table.split.value_counts().to_dict() == {"test": sizes["test"], "valid": sizes["valid"]}
    assert table.id.str.startswith("synthetic_").all()
    for split in ("valid", "test"):
        rows = table[table.split == split]
        assert rows["index"].tolist() == list(range(len(rows)))
        scores = regression_metrics(rows.prediction.to_numpy(np.float32), rows.label.to_numpy(np.float32), (-3, 3))
        assert scores == pytest.approx({k: v for k, v in record[split].items() if k != "loss"}, abs=1e-6)

    cfg = compose_config()
    data = load_data(cfg)
    model = build_model(cfg, data, record["choices"])
    model.load_state_dict(torch.load(tmp_path / "model.pt"))
    model.eval()
    with torch.no_grad():
        again = model(data.splits["test"].inputs(torch.arange(len(data.splits["test"]))))
    assert again.tolist() == pytest.approx(table[table.split == "test"].prediction.tolist(), abs=1e-6)


def test_a_run_that_never_reads_test_keeps_no_test_predictions(tmp_path):
    run_tiny(tmp_path, "trainer.evaluate_test=false")
    assert set(pd.read_csv(tmp_path / "predictions.csv").split) == {"valid"}


def test_each_member_of_a_seed_pack_keeps_its_own(tmp_path):
    records = run_tiny_records(tmp_path, "trainer.pack_seeds=true", "seeds=[1,2]")
    tables = [pd.read_csv(tmp_path / f"seed_{r['seed']}" / "predictions.csv") for r in records]
    assert all((tmp_path / f"seed_{r['seed']}" / "model.pt").exists() for r in records)
    assert not np.allclose(tables[0].prediction, tables[1].prediction)
    for record, table in zip(records, tables):  # the member alone, up to the pack's float rounding
        test = table[table.split == "test"]
        corr = regression_metrics(test.prediction.to_numpy(np.float32), test.label.to_numpy(np.float32), (-3, 3))
        assert corr["Corr"] == pytest.approx(record["test"]["Corr"], abs=1e-4)
