"""The inference head (``competition.head``): each step against answers worked out by hand or planted in the
data, its out-of-fold use (``cross_fit_predict``), its JSON form and its Keras layers."""

import json

import numpy as np
import pytest

from competition.evaluate import rmse
from competition.head import ALL, BlendWeights, RunHead, SecondStage, SpecialistChoice, cross_fit_predict
from competition.schema import COORDINATES, SPECIALISTS

PARTIAL = [0, 1, 2, 3, 20, 21, 28, 29]  # the partial specialist's columns: eye centres, nose tip, bottom lip
OTHERS = [c for c in range(30) if c not in PARTIAL]
BOTH = ["full", "partial"]


def _stack(full: np.ndarray, partial: np.ndarray) -> np.ndarray:
    """(2, N, 30): the full specialist's (N, 30) predictions, and the partial one's (N, 30), NaN off its 8."""
    partial = partial.copy()
    partial[:, OTHERS] = np.nan
    return np.stack([full, partial])


def _round_trip(step):
    """The step as its JSON text holds it."""
    return type(step).from_dict(json.loads(json.dumps(step.to_dict())))


def test_the_partial_specialists_columns_are_the_eight_the_tests_assume():
    assert [COORDINATES.index(c) for c in SPECIALISTS["partial"].coordinates] == PARTIAL


# --- SpecialistChoice ----------------------------------------------------------------------------


def _two_specialists(partial_offset: dict[tuple[str, int], float]):
    """Four faces per (style, fold), folds 0 and 1; truth 40 wherever labelled (all 30 on a full-style face,
    the 8 partial ones on a partial-style face). The full network is 1 px high everywhere; the partial network
    ``partial_offset[(style, fold)]`` px high on its 8."""
    cells = [(style, fold) for style in ("full", "partial") for fold in (0, 1)]
    style = np.repeat([style for style, _ in cells], 4).astype(object)
    fold = np.repeat([fold for _, fold in cells], 4)
    truth = np.full((len(style), 30), np.nan)
    truth[style == "full"] = 40.0
    truth[np.ix_(style == "partial", PARTIAL)] = 40.0
    offsets = np.repeat([partial_offset[cell] for cell in cells], 4)
    predictions = _stack(np.full((len(style), 30), 41.0), 40.0 + offsets[:, None] * np.ones((1, 30)))
    return predictions, truth, style, fold


def test_the_fixed_order_takes_the_partial_specialists_eight_coordinates_by_default():
    """The default preference, smallest first: partial answers its 8 coordinates, full the other 22."""
    predictions = _stack(np.zeros((3, 30)), np.ones((3, 30)))
    choice = SpecialistChoice(BOTH).fit(predictions, np.full((3, 30), np.nan), np.array(["full"] * 3))
    answers = choice.predict(predictions, np.array(["full", "partial", "full"]))
    assert (answers[:, PARTIAL] == 1).all() and (answers[:, OTHERS] == 0).all()
    assert choice.sources("partial") == ["partial" if c in PARTIAL else "full" for c in range(30)]


def test_the_fixed_order_follows_the_preference_given():
    predictions = _stack(np.zeros((2, 30)), np.ones((2, 30)))
    style = np.array(["full", "partial"])
    choice = SpecialistChoice(BOTH, prefer=["full", "partial"]).fit(predictions, np.full((2, 30), np.nan), style)
    assert (choice.predict(predictions, style) == 0).all()
    # the stack's order is not the preference: partial listed first, still preferred first by default
    swapped = SpecialistChoice(["partial", "full"]).fit(predictions[::-1], np.full((2, 30), np.nan), style)
    assert swapped.predict(predictions[::-1], style).sum() == 2 * 8


def test_by_style_the_specialist_that_scores_best_on_each_styles_faces_answers_them():
    """Partial-style faces: the partial network is 0.5 px off, the full one 1 px: partial answers their 8.
    Full-style faces: the partial network is 2 px off: full answers all 30 there, against the fixed order."""
    offsets = {("full", 0): 2.0, ("full", 1): 2.0, ("partial", 0): 0.5, ("partial", 1): 0.5}
    predictions, truth, style, _ = _two_specialists(offsets)
    choice = SpecialistChoice(BOTH, by_style=True).fit(predictions, truth, style)
    assert choice.sources("full") == ["full"] * 30
    assert choice.sources("partial") == ["partial" if c in PARTIAL else "full" for c in range(30)]
    # 8 full-style faces 1 px off on 30 coordinates, 8 partial-style 0.5 px off on 8: (8*30*1 + 8*8*0.25) / (8*38)
    assert np.isclose(rmse(truth, choice.predict(predictions, style)), np.sqrt((240 + 16) / 304))
    fixed = SpecialistChoice(BOTH).fit(predictions, truth, style)
    # the fixed order takes the partial network's 2 px on full-style faces' 8: (8*22*1 + 8*8*4 + 16) / 304
    assert np.isclose(rmse(truth, fixed.predict(predictions, style)), np.sqrt((176 + 256 + 16) / 304))


def test_by_style_fitted_on_no_face_follows_the_preference():
    predictions = _stack(np.zeros((2, 30)), np.ones((2, 30)))
    style = np.array(["full", "partial"])
    unfitted = SpecialistChoice(BOTH, by_style=True).fit(predictions[:, :0], np.empty((0, 30)), style[:0])
    assert (unfitted.predict(predictions, style)[:, PARTIAL] == 1).all()
    assert (unfitted.predict(predictions, style)[:, OTHERS] == 0).all()


def test_each_folds_choice_is_measured_on_the_other_folds_only():
    """On full-style faces the partial network wins in fold 0 (0.5 px against 1) and loses in fold 1 (3 px):
    fold 0's faces take the choice made on fold 1 (full), fold 1's the choice made on fold 0 (partial)."""
    offsets = {("full", 0): 0.5, ("full", 1): 3.0, ("partial", 0): 0.5, ("partial", 1): 0.5}
    predictions, truth, style, fold = _two_specialists(offsets)
    answers = cross_fit_predict(SpecialistChoice(BOTH, by_style=True), predictions, truth, style, fold)
    nose = COORDINATES.index("nose_tip_x")
    assert (answers[(style == "full") & (fold == 0), nose] == 41.0).all()  # full's answer
    assert (answers[(style == "full") & (fold == 1), nose] == 43.0).all()  # partial's answer
    assert (answers[style == "partial", nose] == 40.5).all()  # partial wins on partial-style faces in both folds


# --- SecondStage ----------------------------------------------------------------------------------


def test_offsets_are_each_coordinates_mean_error_on_the_faces_labelled_with_it():
    """Hand-computed: coordinate 0 is off by +1, -1 and +2 on three faces; coordinate 1 is labelled on one
    face only (+1); the others on none (left alone)."""
    truth = np.full((3, 30), np.nan)
    truth[:, 0] = [10.0, 12.0, 20.0]
    truth[1, 1] = 5.0
    predicted = np.full((3, 30), 30.0)
    predicted[:, 0] = [9.0, 13.0, 18.0]
    predicted[1, 1] = 4.0
    stage = SecondStage("offsets", alpha=20.0).fit(predicted[None], truth)
    assert np.allclose(stage.intercept_[:2], [2 / 3, 1.0]) and (stage.intercept_[2:] == 0).all()
    assert (stage.weights_ == 0).all()
    corrected = stage.predict(predicted[None])
    assert np.allclose(corrected[:, 0], [9 + 2 / 3, 13 + 2 / 3, 18 + 2 / 3]) and np.allclose(corrected[:, 2:], 30.0)


def test_offsets_cancel_an_error_every_face_shares():
    rng = np.random.default_rng(4)
    truth = rng.normal(48, 8, (200, 30))
    shared = rng.normal(0, 2, 30)
    predicted = truth + shared + rng.normal(0, 0.01, truth.shape)
    stage = SecondStage("offsets").fit(predicted[None], truth)
    np.testing.assert_allclose(stage.intercept_, -shared, atol=0.01)
    assert rmse(truth, predicted) > 1.0 and rmse(truth, stage.predict(predicted[None])) < 0.02


@pytest.fixture(scope="module")
def distorted():
    """Predictions that are a linear map of the truth (each coordinate mixed with the others, scaled, moved),
    on faces with labels missing at random."""
    rng = np.random.default_rng(0)
    truth = rng.normal(48, 8, (400, 30))
    mixing = np.eye(30) * 0.9 + rng.normal(0, 0.02, (30, 30))
    predicted = truth @ mixing + rng.normal(0, 1, 30)
    labels = np.where(rng.random(truth.shape) < 0.3, np.nan, truth)
    return truth, predicted, labels


def test_linear_undoes_a_linear_distortion_and_its_dense_form_is_the_same_map(distorted):
    """Unpenalised, the linear stage recovers the truth exactly; its matrix-and-bias form (a Dense layer's
    weights) maps keypoints the same."""
    truth, predicted, labels = distorted
    stage = SecondStage("linear", alpha=0.0).fit(predicted[None], labels)
    assert rmse(truth, predicted) > 1.0
    np.testing.assert_allclose(stage.predict(predicted[None]), truth, atol=1e-6)
    kernel, bias = stage.affine()
    np.testing.assert_allclose(predicted @ kernel + bias, stage.predict(predicted[None]), atol=1e-9)


def test_a_large_alpha_shrinks_the_linear_stage_to_the_offsets(distorted):
    _, predicted, labels = distorted
    shrunk = SecondStage("linear", alpha=1e6).fit(predicted[None], labels)
    offsets = SecondStage("offsets").fit(predicted[None], labels)
    np.testing.assert_allclose(shrunk.predict(predicted[None]), offsets.predict(predicted[None]), atol=1e-2)
    assert np.abs(shrunk.weights_).max() < 1e-3


def test_a_coordinate_no_face_is_labelled_with_is_left_alone(distorted):
    truth, predicted, labels = distorted
    labels = labels.copy()
    labels[:, 7] = np.nan
    stage = SecondStage("linear", alpha=0.0).fit(predicted[None], labels)
    corrected = stage.predict(predicted[None])
    np.testing.assert_array_equal(corrected[:, 7], predicted[:, 7])
    np.testing.assert_allclose(np.delete(corrected, 7, axis=1), np.delete(truth, 7, axis=1), atol=1e-6)


@pytest.mark.parametrize("kind", SecondStage.KINDS)
def test_a_second_stage_fitted_on_no_face_changes_nothing(kind, distorted):
    _, predicted, _ = distorted
    stage = SecondStage(kind).fit(np.empty((1, 0, 30)), np.empty((0, 30)))
    np.testing.assert_array_equal(stage.predict(predicted[None]), predicted)


def test_each_folds_second_stage_is_fitted_on_the_other_folds_only():
    """Fold 0's faces are 1 px high, fold 1's 3 px: fold 0 takes fold 1's offset (-3) and ends 2 px low, fold 1
    takes fold 0's (-1) and ends 2 px high. Offsets fitted on all faces (-2) would leave every face 1 px off."""
    fold = np.repeat([0, 1], 8)
    truth = np.full((16, 30), 40.0)
    truth[::2, OTHERS] = np.nan  # half the faces partial-style
    predicted = 40.0 + np.where(fold == 0, 1.0, 3.0)[:, None] * np.ones((1, 30))
    corrected = cross_fit_predict(SecondStage("offsets"), predicted[None], truth, np.full(16, "full"), fold)
    np.testing.assert_allclose(corrected[fold == 0], 38.0)
    np.testing.assert_allclose(corrected[fold == 1], 42.0)


# --- RunHead ----------------------------------------------------------------------------------------


def test_a_run_head_corrects_the_choices_answers():
    """The full network 1 px high everywhere, the partial one 0.5 px: the choice takes partial's 8; the offsets
    then take 0.5 px off those and 1 px off the others: every answer is the truth."""
    predictions, truth, style, _ = _two_specialists(
        {cell: 0.5 for cell in [(s, f) for s in ("full", "partial") for f in (0, 1)]}
    )
    head = RunHead(SpecialistChoice(BOTH), SecondStage("offsets")).fit(predictions, truth, style)
    np.testing.assert_allclose(head.second_stage.intercept_[PARTIAL], -0.5)
    np.testing.assert_allclose(head.second_stage.intercept_[OTHERS], -1.0)
    np.testing.assert_allclose(head.predict(predictions, style), 40.0)
    alone = RunHead(SpecialistChoice(BOTH)).fit(predictions, truth, style)
    np.testing.assert_array_equal(alone.predict(predictions, style)[:, PARTIAL], 40.5)


def test_given_the_folds_a_run_heads_second_stage_learns_from_the_cross_fitted_choice():
    """Full-style faces: partial 0.5 px high in fold 0, 3 px in fold 1; full 1 px everywhere. Cross-fitted, fold
    0's full-style faces take full (+1, chosen on fold 1), fold 1's take partial (+3); partial-style faces take
    partial (+0.5). A partial coordinate's offset: -(4*1 + 4*3 + 8*0.5) / 16 = -1.25. In sample the choice is
    full on full-style faces (partial's 4.625 px^2 against 1): -(8*1 + 8*0.5) / 16 = -0.75. Others: -1."""
    offsets = {("full", 0): 0.5, ("full", 1): 3.0, ("partial", 0): 0.5, ("partial", 1): 0.5}
    predictions, truth, style, fold = _two_specialists(offsets)
    crossed = RunHead(SpecialistChoice(BOTH, by_style=True), SecondStage("offsets"))
    crossed.fit(predictions, truth, style, fold)
    np.testing.assert_allclose(crossed.second_stage.intercept_[PARTIAL], -1.25)
    np.testing.assert_allclose(crossed.second_stage.intercept_[OTHERS], -1.0)
    in_sample = RunHead(SpecialistChoice(BOTH, by_style=True), SecondStage("offsets")).fit(predictions, truth, style)
    np.testing.assert_allclose(in_sample.second_stage.intercept_[PARTIAL], -0.75)
    assert crossed.choice.sources("full") == in_sample.choice.sources("full") == ["full"] * 30


def _noisy_specialists(faces: int = 300, seed: int = 0):
    """Full- and partial-style faces in 3 folds; the full network off by N(0, 1), the partial one by N(0, 0.5)
    on left_eye_center and right_eye_center and N(0, 3) on nose_tip and mouth_center_bottom_lip; both with a
    linear error a second stage can learn."""
    rng = np.random.default_rng(seed)
    style = np.where(rng.random(faces) < 0.4, "full", "partial").astype(object)
    truth = rng.normal(48, 8, (faces, 30))
    truth[np.ix_(style == "partial", OTHERS)] = np.nan
    centre = np.where(np.isnan(truth), 48.0, truth)
    full = centre * 1.02 + rng.normal(0, 1, centre.shape)
    partial_noise = np.where(np.isin(np.arange(30), [0, 1, 2, 3]), 0.5, 3.0)
    partial = centre * 1.02 + rng.normal(0, 1, centre.shape) * partial_noise
    return _stack(full, partial), truth, style, np.arange(faces) % 3


def test_a_run_heads_cross_fitted_answers_never_see_the_held_out_folds_truth():
    """Change fold 2's truth: fold 2's answers stay as they were to the bit; the other folds' change (their
    fits saw fold 2)."""
    predictions, truth, style, fold = _noisy_specialists()
    head = RunHead(SpecialistChoice(BOTH, by_style=True), SecondStage("linear", alpha=1.0))
    answers = cross_fit_predict(head, predictions, truth, style, fold)
    changed = truth.copy()
    changed[fold == 2] += np.random.default_rng(5).normal(0, 10, changed[fold == 2].shape)
    again = cross_fit_predict(head, predictions, changed, style, fold)
    np.testing.assert_array_equal(again[fold == 2], answers[fold == 2])
    assert not np.allclose(again[fold != 2], answers[fold != 2])
    assert not hasattr(head.choice, "choice_") and not hasattr(head.second_stage, "weights_")  # clones were fitted


# --- BlendWeights -----------------------------------------------------------------------------------

MIXTURE = np.array([0.6, 0.0, 0.4])  # the third member's weight, the second one's zero


@pytest.fixture
def mixture():
    """Three members of 30 coordinates; the truth is 0.6 x the first + 0.4 x the third, a third unlabelled."""
    rng = np.random.default_rng(0)
    members = rng.normal(48, 10, (3, 400, 30))
    truth = np.einsum("mnc,m->nc", members, MIXTURE) + rng.normal(0, 0.01, (400, 30))
    truth[rng.random(truth.shape) < 0.3] = np.nan
    return members, truth, np.full(400, "full", dtype=object)


@pytest.mark.parametrize(
    "weights",
    [
        BlendWeights(method="nnls"),
        BlendWeights(method="ridge", alpha=1e-6),
        BlendWeights(method="elasticnet", alpha=1e-6),
    ],
    ids=["nnls", "ridge", "elasticnet"],
)
def test_weights_recover_a_known_mixture(mixture, weights):
    members, truth, style = mixture
    weights.fit(members, truth, style)
    np.testing.assert_allclose(weights.coef_[ALL], np.tile(MIXTURE, (30, 1)), atol=0.01)
    np.testing.assert_allclose(weights.intercept_[ALL], 0, atol=0.5)
    assert rmse(truth, weights.predict(members, style)) < 0.05


def test_only_labelled_faces_count(mixture):
    """Where a face is unlabelled the members may say anything: the weights must not notice."""
    members, truth, style = mixture
    members = members.copy()
    members[:, np.isnan(truth)] = 1e4
    weights = BlendWeights().fit(members, truth, style)
    np.testing.assert_allclose(weights.coef_[ALL], np.tile(MIXTURE, (30, 1)), atol=0.01)


def test_nnls_gives_a_run_that_only_hurts_no_weight():
    rng = np.random.default_rng(1)
    truth = rng.normal(48, 5, (300, 30))
    good = truth + rng.normal(0, 1, truth.shape)
    contrary = -truth  # points the other way: least squares would weigh it negatively
    weights = BlendWeights().fit(np.stack([good, contrary]), truth, np.full(300, "full"))
    assert (weights.coef_[ALL][:, 1] == 0).all()
    assert (weights.coef_[ALL][:, 0] > 0.9).all()


def test_weights_fitted_on_no_face_are_equal(mixture):
    members, truth, style = mixture
    weights = BlendWeights(by_style=True).fit(members[:, :0], truth[:0], style[:0])
    np.testing.assert_allclose(weights.predict(members, style), members.mean(axis=0))
    np.testing.assert_allclose(BlendWeights.average(3).predict(members, style), members.mean(axis=0))


def test_held_out_faces_are_blended_by_weights_that_never_saw_them(mixture):
    members, truth, style = mixture
    fold = np.arange(len(truth)) % 4
    blended = cross_fit_predict(BlendWeights(), members, truth, style, fold)
    changed = truth.copy()
    changed[fold == 2] = np.random.default_rng(5).normal(48, 10, changed[fold == 2].shape)
    again = cross_fit_predict(BlendWeights(), members, changed, style, fold)
    np.testing.assert_array_equal(again[fold == 2], blended[fold == 2])
    assert not np.allclose(again[fold != 2], blended[fold != 2])


def _in_sample_nnls(members, truth):
    from scipy.optimize import nnls

    return np.stack(
        [members[:, :, c].T @ nnls(members[:, :, c].T, truth[:, c])[0] for c in range(truth.shape[1])], axis=1
    )


def _in_sample_least_squares(members, truth):
    fitted = []
    for c in range(truth.shape[1]):
        design = np.column_stack([members[:, :, c].T, np.ones(len(truth))])
        fitted.append(design @ np.linalg.lstsq(design, truth[:, c])[0])
    return np.stack(fitted, axis=1)


@pytest.mark.parametrize(
    "runs, weights, in_sample",
    [
        (200, BlendWeights(method="nnls"), _in_sample_nnls),
        (60, BlendWeights(method="ridge", alpha=1e-6, positive=False), _in_sample_least_squares),
    ],
    ids=["nnls", "ridge"],
)
def test_pure_noise_runs_cannot_buy_a_better_blend_score(runs, weights, in_sample):
    """Runs of pure noise, unrelated to the truth: weights fitted on the very faces they are scored on would
    look far better than the truth's spread; cross-fitted, the blend must not."""
    rng = np.random.default_rng(2)
    truth = rng.normal(48, 3, (90, 30))
    noise = rng.normal(48, 10, (runs, 90, 30))
    fold = np.arange(90) % 3
    style = np.full(90, "full", dtype=object)
    spread = np.sqrt(np.mean((truth - truth.mean(axis=0)) ** 2))  # the best any honest noise blend can do
    assert rmse(truth, in_sample(noise, truth)) < 0.7 * spread  # what a leaking score would report
    assert rmse(truth, cross_fit_predict(weights, noise, truth, style, fold)) > spread


def test_weights_per_style_correct_a_bias_each_style_has_its_own():
    """One member, off by +3 px on full-style faces and -3 px on partial-style ones: weights shared by both
    styles cannot remove both biases; weights per style do, cross-fitted too."""
    rng = np.random.default_rng(3)
    style = np.where(rng.random(600) < 0.3, "full", "partial").astype(object)
    truth = rng.normal(48, 10, (600, 30))
    member = truth + np.where(style == "full", 3.0, -3.0)[:, None] + rng.normal(0, 0.1, truth.shape)
    fold = np.arange(600) % 3
    shared, by_style = BlendWeights("ridge", alpha=1e-3), BlendWeights("ridge", alpha=1e-3, by_style=True)
    assert rmse(truth, cross_fit_predict(shared, member[None], truth, style, fold)) > 2.5
    assert rmse(truth, cross_fit_predict(by_style, member[None], truth, style, fold)) < 0.2
    by_style.fit(member[None], truth, style)
    assert set(by_style.coef_) == {"full", "partial"}
    np.testing.assert_allclose(by_style.intercept_["full"], -3.0, atol=0.1)
    np.testing.assert_allclose(by_style.intercept_["partial"], 3.0, atol=0.1)


# --- JSON ---------------------------------------------------------------------------------------------


def _fitted_steps():
    """(step, its input, the faces' styles) for each class, fitted on data where every fitted attribute matters."""
    predictions, truth, style, fold = _noisy_specialists()
    runs = np.stack([predictions[0], np.where(np.isnan(predictions[1]), predictions[0], predictions[1])])
    chosen = SpecialistChoice(BOTH).fit(predictions, truth, style).predict(predictions, style)[None]
    return [
        (SpecialistChoice(BOTH, by_style=True).fit(predictions, truth, style), predictions, style),
        (SpecialistChoice(BOTH, prefer=["full", "partial"]).fit(predictions, truth, style), predictions, style),
        (SecondStage("linear", alpha=1.0).fit(chosen, truth), chosen, style),
        (SecondStage("offsets").fit(chosen, truth), chosen, style),
        (
            RunHead(SpecialistChoice(BOTH, by_style=True), SecondStage("linear", 1.0)).fit(
                predictions, truth, style, fold
            ),
            predictions,
            style,
        ),
        (RunHead(SpecialistChoice(BOTH)).fit(predictions, truth, style), predictions, style),
        (BlendWeights("ridge", alpha=1.0).fit(runs, truth, style), runs, style),
        (BlendWeights("nnls", by_style=True).fit(runs, truth, style), runs, style),
    ]


def test_each_step_answers_the_same_read_back_from_json():
    for step, inputs, style in _fitted_steps():
        again = _round_trip(step)
        assert type(again) is type(step)
        np.testing.assert_array_equal(again.predict(inputs, style), step.predict(inputs, style), err_msg=repr(step))
        assert json.dumps(again.to_dict()) == json.dumps(step.to_dict())


# --- Keras layers -------------------------------------------------------------------------------------


def _keras_answers(model, inputs):
    import keras

    return keras.ops.convert_to_numpy(model(inputs))


def test_a_run_heads_keras_layers_answer_a_full_style_face_as_predict_does():
    """A choice that takes some of partial's columns and not others for full-style faces (its eye centres
    0.5 px off, its nose and lip 3 px), then a fitted linear stage: the Keras graph on each specialist's own
    columns answers as ``predict`` does on full-style faces."""
    import keras

    predictions, truth, style, fold = _noisy_specialists()
    head = RunHead(SpecialistChoice(BOTH, by_style=True), SecondStage("linear", alpha=1.0))
    head.fit(predictions, truth, style, fold)
    assert head.choice.sources("full") == ["partial"] * 4 + ["full"] * 26  # the planted noise, as chosen
    assert np.abs(head.second_stage.weights_).max() > 1e-3  # a stage that does more than offsets
    inputs = {"full": keras.Input((30,), name="full"), "partial": keras.Input((8,), name="partial")}
    model = keras.Model(inputs, _round_trip(head).to_keras(inputs, "full"))
    faces = {"full": predictions[0].astype(np.float32), "partial": predictions[1][:, PARTIAL].astype(np.float32)}
    full_style = np.full(predictions.shape[1], "full", dtype=object)
    np.testing.assert_allclose(_keras_answers(model, faces), head.predict(predictions, full_style), atol=1e-4)
    # without a second stage, the choice alone
    inputs = {"full": keras.Input((30,), name="full"), "partial": keras.Input((8,), name="partial")}
    model = keras.Model(inputs, RunHead(head.choice).to_keras(inputs, "full"))
    np.testing.assert_allclose(_keras_answers(model, faces), head.choice.predict(predictions, full_style), atol=1e-4)


def test_one_specialists_choice_as_keras_layers_passes_its_columns_through():
    import keras

    predictions, truth, style, _ = _noisy_specialists()
    choice = SpecialistChoice(["full"]).fit(predictions[:1], truth, style)
    inputs = {"full": keras.Input((30,), name="full")}
    model = keras.Model(inputs, choice.to_keras(inputs))
    np.testing.assert_allclose(
        _keras_answers(model, {"full": predictions[0].astype(np.float32)}), predictions[0], atol=1e-4
    )


@pytest.mark.parametrize("by_style", [False, True], ids=["shared", "by style"])
def test_blend_weights_as_keras_layers_answer_as_predict_does(by_style):
    import keras

    rng = np.random.default_rng(6)
    style = np.where(rng.random(300) < 0.5, "full", "partial").astype(object)
    truth = rng.normal(48, 8, (300, 30))
    runs = np.stack([truth + rng.normal(0.5, 1, truth.shape), truth + rng.normal(-1, 2, truth.shape)])
    weights = BlendWeights("ridge", alpha=1.0, positive=False, by_style=by_style).fit(runs, truth, style)
    for asked in ("full", "partial"):
        inputs = [keras.Input((30,), name="a"), keras.Input((30,), name="b")]
        model = keras.Model(inputs, _round_trip(weights).to_keras(inputs, asked))
        answers = _keras_answers(model, [run.astype(np.float32) for run in runs])
        expected = weights.predict(runs, np.full(300, asked, dtype=object))
        np.testing.assert_allclose(answers, expected, atol=1e-4)
    if by_style:
        assert not np.allclose(
            weights.predict(runs, np.full(300, "full", dtype=object)),
            weights.predict(runs, np.full(300, "partial", dtype=object)),
        )
