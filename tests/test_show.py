"""`fkp show`: PNGs that are real pictures of faces with keypoints, and a report linking them."""

import re

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image
from synthetic_runs import write_run
from typer.testing import CliRunner

from competition import data
from competition.cli import app
from competition.evaluate import face_errors
from competition.folds import make_folds
from competition.plots import SIDE_COLOURS, FacePanel, face_grid, save_png
from competition.run import Run
from competition.schema import COORDINATES
from competition.show import worst_and_median

FIGURES = ("validation_faces.png", "learning_curves.png", "rmse_per_keypoint.png")


@pytest.fixture(scope="module")
def shown(tmp_path_factory, sample_dir):
    """`fkp show` on a synthetic run of the sample (OOF = truth + noise)."""
    training = data.load_training(sample_dir)
    runs_dir = tmp_path_factory.mktemp("runs")
    write_run(
        runs_dir / "a",
        training,
        data.load_test(sample_dir),
        make_folds(training, 3, seed=42),
        noise=2.0,
        tta_noise=1.5,
        seed=0,
    )
    result = CliRunner().invoke(app, ["show", "--run", "a", "--runs-dir", str(runs_dir), "--data", str(sample_dir)])
    assert result.exit_code == 0, result.output
    return runs_dir, result.stdout


def test_show_writes_the_figures_and_a_report_that_links_them(shown):
    runs_dir, stdout = shown
    run = Run(runs_dir / "a")
    plots = run.plots_dir
    for name in FIGURES:
        assert str(plots / name) in stdout
        with Image.open(plots / name) as image:
            image.verify()  # a complete, valid PNG
        with Image.open(plots / name) as image:
            pixels = np.asarray(image.convert("L"), float)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 500
        assert pixels.std() > 10  # something is drawn
    report = run.report_path.read_text()
    assert re.findall(r"\]\((plots/[a-z_]+\.png)\)", report)[::2] == [f"plots/{n}" for n in FIGURES]
    assert re.search(r"no TTA \d\.\d{4}, TTA \d\.\d{4}", report)
    assert re.search(
        r"By annotation style .*all faces \d\.\d{4}, full-style \d\.\d{4}, partial-style \d\.\d{4}", report
    )
    assert not list(runs_dir.rglob("*.tmp"))


def test_the_validation_grid_shows_real_faces(shown):
    """The face grid is mostly photograph: its grey levels spread like faces', not like a blank chart."""
    runs_dir, _ = shown
    with Image.open(Run(runs_dir / "a").plots_dir / "validation_faces.png") as image:
        rgb = np.asarray(image.convert("RGB"), float)
    level = rgb.mean(axis=2)
    mid_grey = (np.ptp(rgb, axis=2) < 8) & (level > 30) & (level < 220)  # neither background, text nor markers
    assert mid_grey.mean() > 0.5
    assert len(np.unique(level[mid_grey].round())) > 150


def _pixel_at(figure, ax, png, x, y):
    """The RGB values around data point (x, y) of ``ax`` in the saved ``png``."""
    with Image.open(png) as image:
        rgb = np.asarray(image.convert("RGB"), float) / 255
    column, row = ax.transData.transform((x, y))
    row = rgb.shape[0] - row
    return rgb[int(row) - 1 : int(row) + 2, int(column) - 1 : int(column) + 2].reshape(-1, 3)


def _near(pixels, colour, tolerance=0.12):
    return (np.abs(pixels - np.array(to_rgb(colour))).max(axis=1) < tolerance).any()


def test_a_left_right_mix_up_shows_in_the_colours(tmp_path, training):
    """Keypoints are coloured by the subject's side, so a swapped prediction puts the left colour
    where the right eye is."""
    face = np.full((96, 96), 128, np.uint8)
    truth = np.full(30, np.nan)
    truth[COORDINATES.index("left_eye_center_x") : COORDINATES.index("left_eye_center_y") + 1] = (66, 38)
    truth[COORDINATES.index("right_eye_center_x") : COORDINATES.index("right_eye_center_y") + 1] = (30, 38)
    swapped = truth.copy()
    swapped[[0, 1, 2, 3]] = truth[[2, 3, 0, 1]]  # the left eye predicted on the right one and vice versa
    swapped[[1, 3]] += 12  # and lower, to keep the dots clear of the truth rings
    figure = face_grid([FacePanel(face, swapped, truth, "swapped")], "mix-up", columns=1)
    png = save_png(figure, tmp_path / "swap.png")
    ax = figure.axes[0]
    assert _near(_pixel_at(figure, ax, png, 30, 50), SIDE_COLOURS["left"])  # left dot on the image left
    assert _near(_pixel_at(figure, ax, png, 66, 50), SIDE_COLOURS["right"])
    assert not _near(_pixel_at(figure, ax, png, 30, 50), SIDE_COLOURS["right"])


def test_face_grid_draws_each_face_and_its_points(training):
    rows = np.flatnonzero(training.style == "full")[:3]
    panels = [
        FacePanel(training.images[r], training.keypoints[r] + 1.5, training.keypoints[r], f"row {r}") for r in rows
    ]
    figure = face_grid(panels, "faces", columns=2)
    drawn = [ax for ax in figure.axes if ax.get_images()]
    assert len(drawn) == 3
    for ax, row in zip(drawn, rows):
        np.testing.assert_array_equal(ax.get_images()[0].get_array(), training.images[row])
        offsets = np.concatenate([c.get_offsets() for c in ax.collections])
        labelled = training.keypoints[row].reshape(-1, 2)
        for points in (labelled, labelled + 1.5):  # the truth rings and the predicted dots
            present = ~np.isnan(points).any(axis=1)
            assert all(np.isclose(offsets, p).all(axis=1).any() for p in points[present])


def test_worst_and_median_faces_by_hand():
    errors = np.array([1.0, 5.0, np.nan, 3.0, 2.0, 4.0, 0.5])
    worst, median = worst_and_median(errors, 2)
    assert worst.tolist() == [1, 5]  # errors 5 and 4
    assert median.tolist() == [3, 4]  # errors 3 and 2, either side of the median of the six scored


def test_face_errors_count_only_labelled_coordinates():
    truth = np.array([[10.0, np.nan, 20.0], [np.nan, np.nan, np.nan]])
    predicted = np.array([[13.0, 99.0, 24.0], [1.0, 2.0, 3.0]])
    errors = face_errors(truth, predicted)
    assert errors[0] == pytest.approx(np.sqrt((9 + 16) / 2))
    assert np.isnan(errors[1])
