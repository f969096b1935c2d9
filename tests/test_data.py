"""The data layer: the synthetic generator, the MOSI pickle loader (three layouts) and
the validation shared by both (docs/handout.md, "Data files met in the wild").

The synthetic generator's constants are being tuned, so nothing here pins exact label
values or modality strengths: only the structure docs/handout.md promises.
"""

from __future__ import annotations

import gzip
import logging
import math
import pickle

import numpy as np
import pytest
import torch

from msa_ablate.data import MODALITIES, SPLITS, from_arrays
from msa_ablate.data.pickles import load_pickle as load_mosi
from msa_ablate.data.synthetic import make_synthetic_mosi, synthetic_arrays
from msa_ablate.errors import ConfigError, DataError, UserError

SMALL = 0.05  # about 64 / 11 / 34 clips: fast, and still every property shows

_RAW_CACHE: dict = {}


def _small_raw(seed: int = 0) -> dict:
    """synthetic_arrays(seed, SMALL), generated once per seed; callers must not mutate it."""
    if seed not in _RAW_CACHE:
        _RAW_CACHE[seed] = synthetic_arrays(seed=seed, scale=SMALL)
    return _RAW_CACHE[seed]


def _copy(raw: dict) -> dict:
    return {s: {k: np.array(v, copy=True) for k, v in d.items()} for s, d in raw.items()}


@pytest.fixture
def raw() -> dict:
    """A private, mutable copy of the small synthetic data in the handout's layout."""
    return _copy(_small_raw())


def _dump(obj, path) -> str:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return str(path)


def _content_mask(x: np.ndarray) -> np.ndarray:
    """(N, T) True where a step holds anything (a padded step is all zeros)."""
    return ~(x == 0).all(-1)


# =============================================================================== synthetic
def test_full_scale_sizes_steps_dims():
    data = make_synthetic_mosi(seed=0, scale=1.0)
    summary = data.summary()
    assert summary["sizes"] == {"train": 1284, "valid": 229, "test": 686}
    assert summary["steps"] == {"text": 50, "audio": 50, "vision": 50}
    assert summary["dims"] == {"text": 300, "audio": 74, "vision": 35}
    for name, split in data.splits.items():
        n = summary["sizes"][name]
        assert split.labels.shape == (n,) and split.labels.dtype == torch.float32
        for m, dim in summary["dims"].items():
            assert split.features[m].shape == (n, 50, dim)
            assert split.features[m].dtype == torch.float32


def test_small_scale_shapes():
    raw = _small_raw()
    assert set(raw) == set(SPLITS)
    sizes = {s: d["labels"].shape[0] for s, d in raw.items()}
    # scale 0.05 of 1284 / 229 / 686, rounded
    assert sizes == {"train": 64, "valid": 11, "test": 34}
    for s, d in raw.items():
        n = sizes[s]
        assert d["labels"].shape == (n, 1)  # the handout's mosi_raw.pkl layout
        assert d["text"].shape == (n, 50, 300)
        assert d["audio"].shape == (n, 50, 74)
        assert d["vision"].shape == (n, 50, 35)
        assert len(d["id"]) == n and len(set(d["id"].tolist())) == n


def test_tiny_scale_keeps_every_split_nonempty():
    data = make_synthetic_mosi(seed=0, scale=1e-4)
    assert all(len(data.splits[s]) >= 2 for s in SPLITS)


def test_same_seed_same_arrays():
    a, b = synthetic_arrays(seed=3, scale=SMALL), synthetic_arrays(seed=3, scale=SMALL)
    for s in SPLITS:
        assert a[s].keys() == b[s].keys()
        for k in a[s]:
            np.testing.assert_array_equal(a[s][k], b[s][k], err_msg=f"{s}/{k}")


def test_different_seed_different_arrays():
    a, b = _small_raw(0), _small_raw(1)
    for s in SPLITS:
        for k in (*MODALITIES, "labels"):
            assert a[s][k].shape != b[s][k].shape or not np.array_equal(a[s][k], b[s][k]), f"{s}/{k}"


def test_front_zero_padding():
    all_lengths = []
    for s, d in _small_raw().items():
        masks = {m: _content_mask(d[m]) for m in MODALITIES}
        text = masks["text"]
        # every modality is zero on exactly the same steps
        for m in MODALITIES:
            np.testing.assert_array_equal(masks[m], text, err_msg=f"{s}/{m}")
        # zero steps are a prefix: once content starts it never stops
        assert (np.diff(text.astype(int), axis=1) >= 0).all(), s
        lengths = text.sum(1)
        assert (lengths >= 1).all(), s
        assert text[:, -1].all(), s  # content is at the END
        all_lengths.append(lengths)
    lengths = np.concatenate(all_lengths)
    assert len(np.unique(lengths)) > 5  # lengths vary
    assert (lengths < 50).any()  # some clips are actually padded


def test_labels_are_means_of_integer_ratings():
    labels = np.concatenate([d["labels"].reshape(-1) for d in _small_raw().values()]).astype(np.float64)
    assert labels.min() >= -3 and labels.max() <= 3
    assert (labels == 0).any()
    # the mean of 3, 4 or 5 integer ratings: label * k is an integer for one of k = 3, 4, 5
    k_ok = np.zeros(labels.shape, bool)
    for k in (3, 4, 5):
        k_ok |= np.abs(labels * k - np.round(labels * k)) < 1e-4
    assert k_ok.all(), labels[~k_ok]
    assert len(np.unique(labels)) > 5  # not a handful of classes


def test_audio_nonfinite_cells_reported_and_zeroed():
    raw = _small_raw()
    total_pos = sum(int(np.isposinf(d["audio"]).sum()) for d in raw.values())
    total_neg = sum(int(np.isneginf(d["audio"]).sum()) for d in raw.values())
    assert total_pos > 0 and total_neg > 0  # COVAREP-like +-inf cells
    expected = {s: {m: int((~np.isfinite(d[m])).sum()) for m in MODALITIES} for s, d in raw.items()}

    data = make_synthetic_mosi(seed=0, scale=SMALL)
    assert data.nonfinite_cells == expected
    assert data.summary()["nonfinite_cells"] == expected
    for s, split in data.splits.items():
        for m, x in split.features.items():
            assert torch.isfinite(x).all(), f"{s}/{m}"
            src = raw[s][m]
            bad = ~np.isfinite(src)
            assert (x.numpy()[bad] == 0).all()
            np.testing.assert_array_equal(x.numpy()[~bad], src[~bad])
        np.testing.assert_array_equal(split.labels.numpy(), raw[s]["labels"].reshape(-1))


def test_audio_feature_scales_differ_widely():
    audio = _small_raw()["train"]["audio"]
    steps = audio[_content_mask(audio)]  # (content steps, 74)
    steps = steps[np.isfinite(steps).all(1)]
    std = steps.std(0)
    assert (std > 0).all()
    assert std.max() / std.min() > 100


@pytest.mark.parametrize("scale", [0.0, -0.5, 1.5, math.nan])
@pytest.mark.parametrize("make", [synthetic_arrays, make_synthetic_mosi])
def test_scale_out_of_range(make, scale):
    with pytest.raises(ConfigError, match=r"data\.scale") as info:
        make(seed=0, scale=scale)
    assert isinstance(info.value, UserError)
    assert "\n" not in str(info.value)


# ============================================================================= load_mosi
def _seed_layout(raw: dict) -> dict:
    return raw  # labels (N, 1), ids as str


def _mult_layout(raw: dict) -> dict:
    out = {}
    for s, d in raw.items():
        n = d["labels"].shape[0]
        out[s] = {
            "text": d["text"],
            "audio": d["audio"][..., :5].copy(),
            "vision": d["vision"][..., :20].copy(),
            "labels": d["labels"].reshape(n, 1, 1),
            "id": np.array([i.encode() for i in d["id"]]),  # byte strings
        }
        assert out[s]["id"].dtype.kind == "S"
    return out


def _mmsa_layout(raw: dict) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for s, d in raw.items():
        labels = d["labels"].reshape(-1)
        lengths = _content_mask(d["text"]).sum(1)
        out[s] = {
            "text": d["text"],
            "audio": d["audio"],
            "vision": d["vision"],
            "regression_labels": labels,  # (N,), no 'labels' key
            "classification_labels": (np.sign(labels) + 1).astype(np.int64),
            "raw_text": np.array([f"clip {i} says something" for i in range(len(labels))]),
            "audio_lengths": lengths.astype(np.int64),
            "vision_lengths": lengths.astype(np.int64),
            "text_bert": rng.standard_normal((len(labels), 50, 768)).astype(np.float32),
            "id": d["id"],
        }
    return out


@pytest.mark.parametrize(
    "layout, dims",
    [
        (_seed_layout, {"text": 300, "audio": 74, "vision": 35}),
        (_mult_layout, {"text": 300, "audio": 5, "vision": 20}),
        # MMSA: the tool reads 'text' (not 'text_bert') and ignores the other extra keys
        (_mmsa_layout, {"text": 300, "audio": 74, "vision": 35}),
    ],
    ids=["seed", "mult", "mmsa"],
)
def test_load_layouts(tmp_path, raw, layout, dims):
    arrays = layout(raw)
    path = _dump(arrays, tmp_path / "mosi.pkl")
    data = load_mosi(path)
    assert data.source == path
    assert data.dims == dims  # from the file, not hard-coded
    summary = data.summary()
    assert summary["steps"] == {"text": 50, "audio": 50, "vision": 50}
    assert summary["sizes"] == {s: raw[s]["labels"].shape[0] for s in SPLITS}
    for s in SPLITS:
        split = data.splits[s]
        assert set(split.features) == set(MODALITIES)
        np.testing.assert_array_equal(split.labels.numpy(), raw[s]["labels"].reshape(-1))
        for m in MODALITIES:
            src = arrays[s][m]
            x = split.features[m].numpy()
            assert x.shape == src.shape and x.dtype == np.float32
            assert np.isfinite(x).all()
            finite = np.isfinite(src)
            np.testing.assert_array_equal(x[finite], src[finite])
            assert (x[~finite] == 0).all()
            assert data.nonfinite_cells[s][m] == int((~finite).sum())


def test_stated_dims_are_checked(tmp_path, raw):
    path = _dump(_mult_layout(raw), tmp_path / "mosi.pkl")
    assert load_mosi(path, dims={"text": 300, "audio": 5, "vision": 20}).dims["audio"] == 5
    with pytest.raises(DataError) as info:
        load_mosi(path, dims={"text": 300, "audio": 74, "vision": 35})
    _check_data_error(info.value, path, ["data.dims", "'audio': 5"])


def test_load_expands_user(tmp_path, monkeypatch, raw):
    monkeypatch.setenv("HOME", str(tmp_path))
    _dump(raw, tmp_path / "mosi.pkl")
    assert len(load_mosi("~/mosi.pkl").splits["train"]) == raw["train"]["labels"].shape[0]


def _inject_nonfinite(raw: dict) -> None:
    """NaN, +inf and -inf cells in every modality of every split (in place)."""
    for d in raw.values():
        d["text"][0, -1, 0] = np.nan
        d["text"][1, -1, 1] = np.inf
        d["text"][1, -2, 2] = -np.inf
        d["audio"][0, -1, 10] = np.nan
        d["audio"][1, -1, 11:14] = np.inf
        d["vision"][0, -1, :2] = -np.inf
        d["vision"][1, -3, 4] = np.nan
        d["vision"][1, -3, 5] = np.inf


def test_nonfinite_cells_zeroed_and_counted(tmp_path, raw):
    _inject_nonfinite(raw)
    expected = {s: {m: int((~np.isfinite(d[m])).sum()) for m in MODALITIES} for s, d in raw.items()}
    # every split and modality has some, at least the ones injected above
    assert all(expected[s]["text"] >= 3 and expected[s]["vision"] >= 4 and expected[s]["audio"] >= 4
               for s in SPLITS)
    data = load_mosi(_dump(raw, tmp_path / "mosi.pkl"))
    assert data.nonfinite_cells == expected
    for s in SPLITS:
        f = {m: data.splits[s].features[m] for m in MODALITIES}
        assert all(torch.isfinite(x).all() for x in f.values())
        assert f["text"][0, -1, 0] == 0 and f["text"][1, -1, 1] == 0 and f["text"][1, -2, 2] == 0
        assert (f["audio"][1, -1, 11:14] == 0).all() and f["audio"][0, -1, 10] == 0
        assert (f["vision"][0, -1, :2] == 0).all() and f["vision"][1, -3, 4:6].eq(0).all()


def test_loader_does_not_modify_callers_arrays(raw):
    _inject_nonfinite(raw)
    before = _copy(raw)
    data = from_arrays(raw, source="in-memory")
    for s in SPLITS:
        for k in raw[s]:
            np.testing.assert_array_equal(raw[s][k], before[s][k], err_msg=f"{s}/{k}")  # NaN == NaN here
    # and the tensors do not share memory with the caller's arrays
    data.splits["train"].features["audio"].fill_(7.0)
    data.splits["train"].labels.fill_(7.0)
    np.testing.assert_array_equal(raw["train"]["audio"], before["train"]["audio"])
    np.testing.assert_array_equal(raw["train"]["labels"], before["train"]["labels"])


# ------------------------------------------------------------------------ validation errors
def _set(split: str, key: str, fn):
    def mutate(raw):
        raw[split][key] = fn(raw[split][key])
        return raw
    return mutate


def _drop(split: str, key: str | None = None):
    def mutate(raw):
        if key is None:
            del raw[split]
        else:
            del raw[split][key]
        return raw
    return mutate


def _nan_label(value):
    def fn(labels):
        labels = labels.copy()
        labels[3] = value
        return labels
    return fn


def _to_mmsa_with_nan_label(raw):
    for d in raw.values():
        d["regression_labels"] = d.pop("labels").reshape(-1)
    raw["valid"]["regression_labels"][0] = np.nan
    return raw


# (id, mutation of the raw dict -> object to pickle, substrings the message must hold)
INVALID = [
    ("list_not_dict", lambda raw: [raw["train"], raw["valid"], raw["test"]], ["list"]),
    ("missing_split", _drop("valid"), ["'valid'"]),
    ("split_not_dict", lambda raw: {**raw, "train": [1, 2]}, ["'train'", "list"]),
    ("missing_text", _drop("train", "text"), ["'train'", "'text'"]),
    ("missing_audio", _drop("test", "audio"), ["'test'", "'audio'"]),
    ("missing_labels", _drop("test", "labels"), ["'test'", "labels"]),
    ("count_mismatch", _set("valid", "audio", lambda x: x[:-1]), ["'valid'", "'audio'", "samples"]),
    ("labels_two_per_clip", _set("train", "labels", lambda y: np.repeat(y, 2, axis=1)),
     ["'train'", "'labels'"]),
    ("labels_nan", _set("train", "labels", _nan_label(np.nan)), ["'train'", "'labels'", "non-finite"]),
    ("labels_inf", _set("test", "labels", _nan_label(-np.inf)), ["'test'", "'labels'", "non-finite"]),
    ("mmsa_labels_nan", _to_mmsa_with_nan_label, ["'valid'", "'regression_labels'", "non-finite"]),
    ("labels_not_numbers", _set("train", "labels", lambda y: np.array([None] * len(y), dtype=object)),
     ["'train'", "'labels'"]),
    ("text_rank_2", _set("train", "text", lambda x: x[:, :, 0]), ["'train'", "'text'", "rank"]),
    ("vision_rank_4", _set("valid", "vision", lambda x: x[..., None]), ["'valid'", "'vision'", "rank"]),
    ("ragged_audio", _set("train", "audio", lambda x: [x[0], x[1][:, :3]]), ["'train'", "'audio'"]),
    ("dims_differ_between_splits", _set("test", "vision", lambda x: x[..., :20]), ["'test'", "'vision'"]),
    # modalities may differ in steps (unaligned data), but a modality keeps its steps across splits
    ("audio_steps_differ_between_splits", _set("valid", "audio", lambda x: x[:, 10:]),
     ["'valid'", "40 steps per clip in 'audio', but the train split has 50"]),
    ("steps_differ_between_splits", lambda raw: {**raw, "test": {k: v[:, 10:] if k in MODALITIES else v
                                                                 for k, v in raw["test"].items()}},
     ["'test'", "40 steps per clip in 'text', but the train split has 50"]),
    ("labels_are_booleans", _set("train", "labels", lambda y: y > 0), ["'train'", "'labels'", "bool", "true/false"]),
    ("complex_features", _set("valid", "vision", lambda x: x + 1j), ["'valid'", "'vision'", "complex numbers"]),
]


def _check_data_error(err: DataError, path: str, parts: list[str]) -> None:
    msg = str(err)
    assert isinstance(err, UserError)
    assert "\n" not in msg, msg
    assert path in msg, msg
    for part in parts:
        assert part in msg, (part, msg)


@pytest.mark.parametrize("mutate, parts", [(m, p) for _, m, p in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_contents(tmp_path, raw, mutate, parts):
    path = _dump(mutate(raw), tmp_path / "bad.pkl")
    with pytest.raises(DataError) as info:
        load_mosi(path)
    _check_data_error(info.value, path, parts)


def test_missing_file(tmp_path):
    path = str(tmp_path / "nowhere" / "mosi.pkl")
    with pytest.raises(DataError) as info:
        load_mosi(path)
    _check_data_error(info.value, path, ["no such"])


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataError) as info:
        load_mosi(str(tmp_path))
    _check_data_error(info.value, str(tmp_path), ["a folder, not a data file"])


def test_a_device_is_not_a_file():
    with pytest.raises(DataError) as info:
        load_mosi("/dev/null")
    _check_data_error(info.value, "/dev/null", ["not a regular file"])


def test_a_gzip_compressed_pickle_says_how_to_open_it(tmp_path, raw):
    path = tmp_path / "mosi.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(raw)))
    with pytest.raises(DataError) as info:
        load_mosi(str(path))
    _check_data_error(info.value, str(path), ["gzip-compressed", f"gunzip -k {path}"])


@pytest.mark.parametrize(
    "content",
    [
        np.random.default_rng(0).bytes(256),  # random bytes
        b"hello world\n",                      # a text file
        b"\x80\x04\x8d" + b"\xff" * 7 + b"\x7f",  # a truncated protocol-4 pickle
    ],
    ids=["random", "text", "truncated"],
)
def test_not_a_pickle(tmp_path, content):
    path = tmp_path / "garbage.pkl"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_mosi(str(path))
    _check_data_error(info.value, str(path), ["pickle"])


# Corrupt files raise all sorts (OverflowError from a huge BYTEARRAY8 length, a persistent-id
# UnpicklingError with a newline in its text): each must still be a one-line DataError.
@pytest.mark.parametrize(
    "content",
    [
        b"\x80\x05\x96" + b"\xff" * 8,  # BYTEARRAY8 of length 2**64-1 -> OverflowError
        b"Pfoo\n.",                     # PERSID -> UnpicklingError with '\n' in its message
    ],
    ids=["overflow", "multiline"],
)
def test_corrupt_pickle_is_one_line_data_error(tmp_path, content):
    path = tmp_path / "garbage.pkl"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_mosi(str(path))
    _check_data_error(info.value, str(path), ["pickle"])


# A split whose keys mix types must still give the DataError, not a TypeError from sorting.
def test_mixed_type_keys_still_data_error(raw):
    raw["train"].pop("labels")
    raw["train"][0] = np.zeros(3)
    with pytest.raises(DataError, match="'train'"):
        from_arrays(raw, source="in-memory")


def test_an_empty_file_is_not_a_data_file(tmp_path):
    path = tmp_path / "empty.pkl"
    path.write_bytes(b"")
    with pytest.raises(DataError) as info:
        load_mosi(str(path))
    _check_data_error(info.value, str(path), ["an empty file"])


def test_labels_outside_the_range_are_refused_unless_clipping_is_asked_for(tmp_path, raw):
    raw["valid"]["labels"][0] = 3.5
    raw["valid"]["labels"][1] = -4.0
    path = _dump(raw, tmp_path / "mosi.pkl")
    with pytest.raises(DataError) as info:
        load_mosi(path)
    _check_data_error(info.value, path, ["'valid'", "2 label(s) outside [-3.0, 3.0]", "data.clip_labels=true"])
    data = load_mosi(path, clip_labels=True)
    assert data.splits["valid"].labels[:2].tolist() == [3.0, -3.0]
    assert data.summary()["clipped_labels"] == {"train": 0, "valid": 2, "test": 0}


def test_labels_inside_range_no_warning(tmp_path, raw, caplog):
    path = _dump(raw, tmp_path / "mosi.pkl")
    with caplog.at_level(logging.WARNING, logger="msa_ablate.data"):
        load_mosi(path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
