"""Figures, drawn with matplotlib's object API (no pyplot state, no display needed), saved atomically.

Keypoints are coloured by the subject's side, the same colour for truth and prediction, so a
left/right mix-up shows at a glance: an orange dot inside a blue ring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import LogFormatter, MaxNLocator

from .io import atomic_path
from .schema import FIRST_PIXEL_CENTRE, IMAGE_SIZE, KEYPOINTS


def keypoint_side(keypoint: str) -> str:
    """ "left", "right" (the subject's) or "centre", from the keypoint's name."""
    words = keypoint.split("_")
    return "left" if "left" in words else "right" if "right" in words else "centre"


SIDE_COLOURS = {"left": "#ff8c00", "right": "#00b4ff", "centre": "#32cd32"}
SIDE_LABELS = {
    "left": "subject's left (image right)",
    "right": "subject's right (image left)",
    "centre": "centre line",
}
KEYPOINT_COLOURS = [SIDE_COLOURS[keypoint_side(k)] for k in KEYPOINTS]
BAR_COLOURS = ("#8c8c8c", "#5e3c99", "#1b7837")  # clear of the side colours, which name the keypoints


def save_png(figure: Figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` as a PNG, all at once or not at all."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


@dataclass(frozen=True)
class FacePanel:
    image: np.ndarray  # (96, 96) uint8
    predicted: np.ndarray  # (30,) pixels in COORDINATES order, NaN where not drawn
    truth: np.ndarray | None  # (30,) NaN where unlabelled; None for test faces
    title: str


def _legend(with_truth: bool) -> list[Line2D]:
    handles = [
        Line2D([], [], ls="", marker="o", ms=5, color=colour, mec="black", mew=0.5, label=SIDE_LABELS[side])
        for side, colour in SIDE_COLOURS.items()
    ]
    handles.append(Line2D([], [], ls="", marker="o", ms=4, color="white", mec="black", mew=0.5, label="dot: predicted"))
    if with_truth:
        handles.append(Line2D([], [], ls="", marker="o", ms=8, mfc="none", mec="black", mew=1.2, label="ring: truth"))
    return handles


def face_grid(panels: list[FacePanel], title: str, columns: int = 4) -> Figure:
    """Faces with their keypoints: predicted as dots, truth (where given) as rings joined to them."""
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(2.4 * columns, 2.55 * rows + 0.9), dpi=100, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, panel in zip(axes.flat, panels):
        ax.imshow(panel.image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        predicted = panel.predicted.reshape(-1, 2)
        if panel.truth is not None:
            truth = panel.truth.reshape(-1, 2)
            for (tx, ty), (px, py), colour in zip(truth, predicted, KEYPOINT_COLOURS):
                ax.plot([tx, px], [ty, py], color=colour, lw=0.8)
            ax.scatter(truth[:, 0], truth[:, 1], s=42, facecolors="none", edgecolors=KEYPOINT_COLOURS, linewidths=1.3)
        ax.scatter(predicted[:, 0], predicted[:, 1], s=16, c=KEYPOINT_COLOURS, edgecolors="black", linewidths=0.5)
        ax.set_xlim(-0.5, IMAGE_SIZE - 0.5)
        ax.set_ylim(IMAGE_SIZE - 0.5, -0.5)
        ax.set_title(panel.title, fontsize=8)
    figure.suptitle(title, fontsize=11)
    figure.legend(
        handles=_legend(any(p.truth is not None for p in panels)),
        loc="outside lower center",
        ncol=3,
        fontsize=8,
        frameon=False,
        facecolor="white",
    )
    return figure


@dataclass(frozen=True)
class AuditFace:
    """A face of `fkp audit`'s contact sheets."""

    image: np.ndarray  # (96, 96) uint8
    labels: np.ndarray  # (15, 2) the training label, NaN where unlabelled
    answers: np.ndarray  # (15, 2) the out-of-fold answer
    suspect: list[int]  # keypoints to circle
    caption: str


AUDIT_LABEL, AUDIT_ANSWER, AUDIT_SUSPECT = "#00e040", "#ff2020", "#ffd700"


def audit_sheet(faces: list[AuditFace], title: str, columns: int = 4, rows: int = 5) -> Figure:
    """A page of suspect faces: the label as green dots, the out-of-fold answer as red crosses (only where the
    face is labelled), each label joined to its answer, the suspect keypoints circled in yellow, and a caption."""
    figure = Figure(figsize=(2.3 * columns, 2.5 * rows + 0.7), dpi=90, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, face in zip(axes.flat, faces):
        ax.imshow(face.image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        shown = ~np.isnan(face.labels).any(axis=1)
        labels, answers = (
            face.labels - FIRST_PIXEL_CENTRE,
            face.answers - FIRST_PIXEL_CENTRE,
        )  # imshow centres pixel i at i
        for (lx, ly), (px, py) in zip(labels[shown], answers[shown]):
            ax.plot([lx, px], [ly, py], color="white", lw=0.6, alpha=0.8)
        ax.scatter(answers[shown, 0], answers[shown, 1], s=22, marker="x", c=AUDIT_ANSWER, linewidths=1.2)
        ax.scatter(labels[shown, 0], labels[shown, 1], s=14, c=AUDIT_LABEL, edgecolors="black", linewidths=0.4)
        suspect = [k for k in face.suspect if shown[k]]
        ax.scatter(
            labels[suspect, 0], labels[suspect, 1], s=110, facecolors="none", edgecolors=AUDIT_SUSPECT, linewidths=1.4
        )
        ax.set_xlim(-0.5, IMAGE_SIZE - 0.5)
        ax.set_ylim(IMAGE_SIZE - 0.5, -0.5)
        ax.set_title(face.caption, fontsize=7.5)
    figure.suptitle(title, fontsize=10)
    figure.legend(
        handles=[
            Line2D([], [], ls="", marker="o", ms=5, color=AUDIT_LABEL, mec="black", mew=0.4, label="label"),
            Line2D([], [], ls="", marker="x", ms=6, color=AUDIT_ANSWER, mew=1.2, label="out-of-fold answer"),
            Line2D([], [], ls="", marker="o", ms=10, mfc="none", mec=AUDIT_SUSPECT, mew=1.4, label="suspect"),
        ],
        loc="outside lower center",
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    return figure


def photo_figure(photo: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, title: str) -> Figure:
    """A photo (H, W, 3) with each face's detector box (x, y, w, h in array pixels) and keypoints ((F, 30) in
    the photo's label pixels) as dots coloured by side, at about the photo's own resolution (at most 1000 px)."""
    height, width = photo.shape[:2]
    inches = min(10.0, max(width, height) / 100) / max(width, height)
    figure = Figure(figsize=(max(width * inches, 4.0), height * inches + 0.9), dpi=100, layout="constrained")
    ax = figure.subplots()
    ax.imshow(photo, interpolation="antialiased")
    ax.set_axis_off()
    for (x, y, w, h), points in zip(boxes, keypoints):
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="white", linewidth=1, linestyle="--"))
        xy = points.reshape(-1, 2) - FIRST_PIXEL_CENTRE  # imshow centres pixel i at i
        size = float(np.clip(w / 8, 10, 60))
        ax.scatter(xy[:, 0], xy[:, 1], s=size, c=KEYPOINT_COLOURS, edgecolors="black", linewidths=0.6)
    ax.set_title(title, fontsize=10)
    figure.legend(handles=_legend(False)[:3], loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return figure


def learning_curves(histories: dict[str, dict[int, pd.DataFrame]]) -> Figure:
    """Training (dashed) and validation (solid) RMSE per epoch, one panel per specialist, one colour per fold."""
    figure = Figure(figsize=(5.5 * len(histories), 4), dpi=100, layout="constrained")
    axes = figure.subplots(1, len(histories), squeeze=False)[0]
    for ax, (name, folds) in zip(axes, histories.items()):
        for colour, (fold, history) in enumerate(sorted(folds.items())):
            epochs = np.arange(1, len(history) + 1)
            ax.plot(epochs, history["rmse"], ls="--", marker=".", color=f"C{colour}", label=f"fold {fold} training")
            scored = history["val_rmse"].notna().to_numpy()  # a run may validate every few epochs only
            ax.plot(
                epochs[scored],
                history["val_rmse"][scored],
                marker="o",
                ms=4,
                color=f"C{colour}",
                label=f"fold {fold} validation",
            )
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=f"{name} specialist", xlabel="epoch", ylabel="RMSE (pixels, log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    figure.suptitle("Learning curves", fontsize=11)
    return figure


def keypoint_bars(table: pd.DataFrame, title: str) -> Figure:
    """Grouped horizontal bars: one row per keypoint (and overall), one bar per column of ``table``;
    keypoint names in their side's colour."""
    figure = Figure(figsize=(7.5, 0.42 * len(table) + 1.5), dpi=100, layout="constrained")
    ax = figure.subplots()
    positions = np.arange(len(table))[::-1]
    height = 0.8 / len(table.columns)
    for i, column in enumerate(table.columns):
        offset = (len(table.columns) - 1) / 2 - i
        bars = ax.barh(
            positions + offset * height, table[column], height, label=column, color=BAR_COLOURS[i % len(BAR_COLOURS)]
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=2)
    ax.set_yticks(positions, table.index)
    for label in ax.get_yticklabels():
        name = label.get_text()
        label.set_color(SIDE_COLOURS[keypoint_side(name)] if name in KEYPOINTS else "black")
        label.set_fontweight("bold")
    ax.set_xlabel("RMSE (pixels)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    return figure
