"""`fkp export`: one model holding a whole run, matching the run's own fold-averaged predictions."""

import importlib.util

import numpy as np
import pandas as pd
import pytest
from conftest import fkp

from competition import data
from competition.run import Run

FACES = 64  # or all the bundled sample's test faces, where it has fewer


def test_an_unknown_format_is_one_line_and_exit_2(tmp_path):
    result = fkp("export", "--run", "any", "--runs-dir", tmp_path, "--format", "tflite")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "fkp: --format: unknown format 'tflite': one of keras, saved_model, onnx"
    ]


def test_exporting_a_missing_run_is_one_line_and_exit_2(tmp_path):
    result = fkp("export", "--run", "nope", "--runs-dir", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"fkp: {tmp_path / 'nope'}: not a run folder (no run.json): run `fkp cv` first"
    ]


def run_exported(format: str, path, faces: np.ndarray) -> np.ndarray:
    """The exported artifact run as a user would: .keras reloaded, SavedModel in TensorFlow, ONNX in onnxruntime."""
    if format == "keras":
        import keras

        import competition.models.layers  # noqa: F401  (registers fkp's layers, which the .keras file names)

        return keras.saving.load_model(path).predict(faces, verbose=0)
    if format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # kept: its functions need the object alive
        return loaded.serve(faces).numpy()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path))
    return session.run(None, {session.get_inputs()[0].name: faces})[0]


@pytest.mark.slow
@pytest.mark.parametrize("format,needs", [("keras", None), ("saved_model", "tensorflow"), ("onnx", "onnxruntime")])
@pytest.mark.parametrize("tta", [True, False], ids=["tta", "no-tta"])
def test_the_exported_run_gives_the_runs_own_fold_average(learned_run, run_data, format, needs, tta):
    """Both specialists of both folds, their average, the per-coordinate choice and second stage in one artifact: its
    predictions on 64 test faces match `fkp blend`'s average of the run's test files to 1e-3 px."""
    from competition.blend import test_answers
    from competition.run import variant

    if needs and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{needs} is not installed (pip install 'fkp[export]')")
    if format == "onnx" and not tta:
        pytest.skip("one ONNX conversion (about a minute on 2 cores) is enough")
    flag = "--tta" if tta else "--no-tta"
    result = fkp("export", "--run", "learned", "--runs-dir", learned_run / "runs", "--format", format, flag)
    assert result.exit_code == 0, result.output
    run = Run(learned_run / "runs" / "learned")
    assert sorted(run.spec.specialists) == ["full", "partial"]
    test = data.load_test(run_data)
    faces = test.images[:FACES, ..., None].astype(np.float32)
    full_style = pd.Series("full", index=test.image_ids)
    assert run.spec.resolved.inference.prefer_by_style  # the choice for full-style faces, as a photo's face is
    assert np.abs(run.head(variant(tta)).second_stage.weights_).max() > 1e-3  # and its second stage moves the answer
    expected = test_answers(run, tta, False, full_style).loc[test.image_ids[:FACES]].to_numpy()
    got = run_exported(format, run.export_path(format), faces)
    assert got.shape == (len(faces), 30)
    assert np.abs(got - expected).max() < 1e-3
    if tta:  # the other variant differs: the flag reached the graph
        other = test_answers(run, False, False, full_style).loc[test.image_ids[:FACES]].to_numpy()
        assert np.abs(got - other).max() > 1e-2
