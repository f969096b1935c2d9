"""A CMU-MOSI pickle, in any of the three layouts met in the wild.

- the handout's / MultiBench ``mosi_raw.pkl``: 'labels' (N, 1) or (N, 1, 1);
- MulT ``mosi_data.pkl``: 'labels' (N, 1, 1), byte-string ids, 5-d audio / 20-d vision;
- MMSA ``aligned_50.pkl``: 'regression_labels' (N,), plus keys this tool does not use.

The layout is told apart by its label key alone, and feature dims come from the file;
``dims``, where given, states the dims the file must have.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping

from msa_ablate.data import MOSIData, from_arrays
from msa_ablate.data.fingerprint import data_file
from msa_ablate.errors import DataError

GZIP = b"\x1f\x8b"


def load_mosi(path: str, dims: Mapping[str, int] | None = None, clip_labels: bool = False) -> MOSIData:
    file = data_file(path)
    with file.open("rb") as f:
        if f.read(2) == GZIP:
            raise DataError(f"{file}: a gzip-compressed file; decompress it (gunzip -k {file}) and set data.path "
                            "to the .pkl it gives")
        f.seek(0)
        try:
            try:
                raw = pickle.load(f)
            except UnicodeDecodeError:  # a pickle written by Python 2 (some MOSI copies are)
                f.seek(0)
                raw = pickle.load(f, encoding="latin1")
        except Exception as e:  # unpickling garbage can raise almost anything; all of it means "not MOSI"
            detail = " ".join(f"{type(e).__name__}: {e}".split())[:200]  # one line, however odd the bytes
            raise DataError(f"{file}: not a readable pickle ({detail})") from None
    data = from_arrays(raw, source=str(file), clip_labels=clip_labels)
    if dims is not None and data.dims != dict(dims):
        raise DataError(f"{file}: feature dims {data.dims} differ from data.dims={dict(dims)}")
    return data
