"""The mirror axis of a data folder's labels, estimated from the data.

Labels put pixel column i's centre at i + c for some convention c, so a mirrored face's keypoints
lie at x -> T - x with T = 95 + 2c. Another download may follow another convention, and half a
pixel costs more than most levers gain. A network trained without flips learns the labels'
convention; on a face I and its mirror I', a keypoint k and its left/right partner p(k) satisfy
x'_k = T - x_p(k), so each face gives T ~ m(I')_k + m(I)_p(k). The median over faces and
keypoints is the estimate, stored with the folds (`fkp folds --estimate-mirror-axis`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .config import Config
from .data import TrainingSet
from .folds import Folds
from .jobs import fold_seed

ESTIMATE_EPOCHS = 12  # of the config's full network, without flips: enough to place points within a pixel


def axis_from_predictions(
    on_faces: np.ndarray, on_mirrored: np.ndarray, permutation: np.ndarray, labelled: np.ndarray
) -> float:
    """The median of m(I')_k + m(I)_p(k) over faces and keypoints: (N, K, 2) predictions on faces and
    on their mirrors, ``permutation`` the keypoints' left/right partners, ``labelled`` (N, K) the keypoints
    each face has (a keypoint the network never learnt on such faces says nothing about the axis)."""
    both = labelled & labelled[:, permutation]
    return float(np.median((on_mirrored[..., 0] + on_faces[:, permutation, 0])[both]))


def estimate_mirror_axis(
    training: TrainingSet, folds: Folds, config: Config, fold: int = 0, epochs: int = ESTIMATE_EPOCHS
) -> float:
    """Train the config's full specialist on one fold's training faces without flips, and read the axis off
    its predictions on the fold's validation faces and their mirrors. Loads Keras: run in a fold's process."""
    from .machine import stderr_silenced

    with stderr_silenced(True):  # the backend's C++ start-up lines
        from .train import build_fold_model, prepare_fold, train_stage
        from .tta import predict_pixels

    settings = config.specialist("full")
    # no flips; under a cosine, validated on the last epoch alone: nothing reads the scores, and scoring every
    # epoch took a third of the estimate's time on 2 cores (plateau halving needs every epoch's)
    cosine = settings.train.schedule == "cosine"
    settings = dataclasses.replace(
        settings,
        augment=dataclasses.replace(settings.augment, flip=0.0),
        train=dataclasses.replace(
            settings.train, epochs=epochs, max_minutes=0.0, validate_every=epochs if cosine else 1
        ),
    )
    prepared = prepare_fold("full", fold, settings, training, folds, fold_seed(config, fold))
    model = build_fold_model(prepared, settings)
    train_stage(model, prepared, settings.train, epochs=epochs, log_prefix=f"[mirror axis, fold {fold}]")
    images = training.images[prepared.val_rows]
    shape = (len(images), -1, 2)
    on_faces = predict_pixels(model, images).reshape(shape)
    on_mirrored = predict_pixels(model, np.ascontiguousarray(images[:, :, ::-1])).reshape(shape)
    labelled = ~np.isnan(training.keypoints[np.ix_(prepared.val_rows, prepared.specialist.columns[::2])])
    return axis_from_predictions(on_faces, on_mirrored, prepared.specialist.flip_permutation, labelled)
