import numpy as np
import pandas as pd
import pytest

from competition.data import TrainingSet
from competition.errors import InputError
from competition.folds import folds_for, load_folds, make_folds, save_folds


def test_folds_are_disjoint_covering_and_deterministic(training):
    a = make_folds(training, 5, seed=1)
    b = make_folds(training, 5, seed=1)
    c = make_folds(training, 5, seed=2)
    assert np.array_equal(a.fold, b.fold)
    assert not np.array_equal(a.fold, c.fold)
    assert set(a.fold) == set(range(5))
    validation = np.concatenate([a.validation_rows(k) for k in range(5)])
    assert sorted(validation) == list(range(len(training)))
    for k in range(5):
        assert not set(a.training_rows(k)) & set(a.validation_rows(k))


def test_folds_are_stratified_by_annotation_style(training):
    folds = make_folds(training, 5, seed=0)
    overall = (training.style == "full").mean()
    for k in range(5):
        share = (training.style[folds.validation_rows(k)] == "full").mean()
        assert abs(share - overall) < 0.03


def test_identical_faces_share_a_fold(training):
    images = np.concatenate([training.images, training.images[:30]])
    keypoints = np.concatenate([training.keypoints, training.keypoints[:30]])
    doubled = TrainingSet(images, keypoints, "doubled")
    folds = make_folds(doubled, 5, seed=0)
    assert np.array_equal(folds.fold[:30], folds.fold[-30:])


def test_stored_folds_round_trip_and_refuse_other_data(tmp_path, training):
    path = tmp_path / "sample-k3.csv"
    folds, built = folds_for(training, path, 3, seed=4)
    assert built and path.exists()
    again, built = folds_for(training, path, 3, seed=99)
    assert not built and np.array_equal(again.fold, folds.fold) and again.seed == 4
    with pytest.raises(InputError, match="holds 3 folds, not 5"):
        folds_for(training, path, 5, seed=4)
    other = TrainingSet(training.images[:100], training.keypoints[:100], "other")
    with pytest.raises(InputError, match="built for another training set"):
        load_folds(path, other)


def test_one_fold_is_refused(training):
    with pytest.raises(InputError, match="at least 2 folds"):
        make_folds(training, 1, seed=0)


def test_save_writes_row_fold_style_and_the_style_is_read_back(tmp_path, training):
    folds = make_folds(training, 2, seed=0)
    save_folds(folds, tmp_path / "f.csv")
    header = (tmp_path / "f.csv").read_text().splitlines()[0]
    assert header == "row,fold,style"
    loaded = load_folds(tmp_path / "f.csv", training)
    assert (loaded.style == training.style).all() and (loaded.head(10).style == training.style[:10]).all()


def test_a_stored_style_that_disagrees_with_the_labels_is_refused(tmp_path, training):
    save_folds(make_folds(training, 2, seed=0), tmp_path / "f.csv")
    frame = pd.read_csv(tmp_path / "f.csv")
    row = int(np.flatnonzero(training.style == "full")[0])
    frame.loc[row, "style"] = "partial"
    frame.to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(InputError, match=f"line {row + 2}, column style: style 'partial' of training row {row}"):
        load_folds(tmp_path / "f.csv", training)


def test_an_estimated_mirror_axis_is_stored_with_the_folds_and_used_for_flips(tmp_path, training):
    import dataclasses

    from competition.schema import MIRROR_AXIS

    folds = make_folds(training, 2, seed=0)
    assert folds.mirror_axis is None and folds.flip_axis == MIRROR_AXIS == 97
    save_folds(dataclasses.replace(folds, mirror_axis=97.4), tmp_path / "f.csv")
    loaded = load_folds(tmp_path / "f.csv", training)
    assert loaded.mirror_axis == 97.4 and loaded.flip_axis == 97.4 and loaded.head(10).flip_axis == 97.4
