"""`fkp blend`: fold models' test predictions -> a submission in Kaggle's exact format.

Each specialist's test predictions are averaged over its folds; every IdLookupTable row takes
its coordinate from the specialist that owns it, clipped to the image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .cv import RunSpec
from .errors import InputError
from .evaluate import read_predictions
from .io import write_csv
from .schema import IMAGE_SIZE, SPECIALISTS, specialist_for


def fold_average(run_dir: Path, name: str, tta: bool, allow_partial: bool) -> pd.DataFrame:
    """One specialist's test predictions averaged over its finished folds, indexed by ImageId."""
    spec = RunSpec.read(run_dir)
    predictions = read_predictions(run_dir / name, "test_tta.csv" if tta else "test.csv", "ImageId")
    missing = sorted(set(range(spec.folds)) - set(predictions["fold"]))
    if missing and not allow_partial:
        raise InputError(
            run_dir / name,
            f"folds {missing} of {spec.folds} are missing: finish them with `fkp cv --fold K` "
            "or pass --allow-partial",
        )
    if len(missing) == spec.folds:
        raise InputError(run_dir / name, "no finished fold to blend")
    return predictions.drop(columns="fold").groupby(level=0).mean()


def submission(lookup: pd.DataFrame, predictions: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``RowId,Location`` for every lookup row, in its order, from each coordinate's specialist."""
    location = np.empty(len(lookup))
    owner = lookup["FeatureName"].map(specialist_for)
    for name, frame in predictions.items():
        asked = (owner == name).to_numpy()
        stacked = frame.stack()
        keys = pd.MultiIndex.from_arrays([lookup["ImageId"][asked], lookup["FeatureName"][asked]])
        values = stacked.reindex(keys).to_numpy()
        if np.isnan(values).any():
            raise InputError(f"{name} predictions", "no prediction for some asked ImageId: rerun `fkp cv`")
        location[asked] = values
    return pd.DataFrame({"RowId": lookup["RowId"], "Location": np.clip(location, 0, IMAGE_SIZE)})


def blend_run(run_dir: Path, lookup: pd.DataFrame, out: Path, *, allow_partial: bool = False) -> pd.DataFrame:
    spec = RunSpec.read(run_dir)
    predictions = {
        name: fold_average(run_dir, name, spec.config[name]["train"]["tta"], allow_partial) for name in SPECIALISTS
    }
    result = submission(lookup, predictions)
    write_csv(result, out)
    return result
