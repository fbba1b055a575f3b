"""`fkp audit`: the training labels most likely wrong, found where they lie far from honest out-of-fold answers.

A run's out-of-fold answer for a face (``evaluate.oof_answers``: the networks of the folds that did not see it,
through the run's inference head; with several runs, their blend fitted on the other folds) never saw the
face's label, so a label far from it is either a hard face or a wrong label. Every face is scored on its
labelled keypoints only:

- **keypoint z-scores**: each labelled keypoint's miss (the distance from label to answer, px) divided by that
  keypoint's typical out-of-fold miss, the median over every face labelled with it (``keypoint_scales``): a
  robust scale that the wrong labels themselves barely move, one per keypoint over both annotation styles (the
  same network answers a keypoint for both), so a 4 px miss on an eye centre and on a mouth corner are weighed
  each by what is usual for it. z = 1 is a typical miss.
- **explanations**: each kind of error, if it were the truth, would remove part of the face's squared z-scores
  (its *gain*): ``swap`` (one left/right pair of the schema exchanged: the label matches the mirrored answer,
  the answer with that pair's points exchanged), ``misplaced`` (one keypoint far off: its own z²), ``shift``
  (the whole face's labels moved by one vector: the z-weighted mean miss removed from every keypoint, on faces
  with at least ``SHIFT_MIN_KEYPOINTS`` labels). The face's finding is the explanation with the largest gain;
  its ``score`` is the square root of that gain, in z units (a swap or a misplaced keypoint scores its own
  z-score; a shift scores its z-scores' coherent part), discounted on a face whose other keypoints are missed
  too: divided by the square root of the mean z² the explanation leaves, where that exceeds ``NOISE_FLOOR``.
  A wrong label leaves the face's other keypoints answered as usual; a hard face (turned, blurred, framed
  unusually) is missed everywhere, and its misses say less about its labels.
- **near-duplicates** (``near_duplicates``): faces whose 16x16 thumbnails correlate above
  ``DUPLICATE_CORRELATION`` (candidates from a 64-bit average hash, in bands, so never all pairs), identical
  pixels included; a pair whose shared keypoints differ by more than ``DUPLICATE_Z`` typical misses is a
  ``duplicate-conflict``, reported on the face whose labels lie further from its answer, scored by that
  largest difference in z units. A face keeps its highest-scoring finding.

``audit`` ranks the faces; ``write_audit`` writes the ranked CSV, contact sheets and an index page;
``proposed_corrections`` turns the findings with a mechanical fix (a swap swapped back, a misplaced keypoint
dropped) into lines of ``corrections.csv`` for the user to review.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .corrections import COLUMNS, CORRECTIONS, NOTE, corrections_path, read_corrections
from .data import TrainingSet
from .errors import InputError
from .io import write_csv, write_text
from .run import Run
from .schema import COORDINATES, FLIP_PAIRS, IMAGE_SIZE, KEYPOINTS

KINDS = ("swap", "misplaced", "shift", "duplicate-conflict")
FIXABLE = ("swap", "misplaced")  # kinds with a mechanical fix: swapped back, dropped
SHIFT_MIN_KEYPOINTS = 3  # a shift needs more labels than a misplaced keypoint has: at least 3
SHIFT_PENALTY = 2.0  # z² a shift must gain beyond a misplaced keypoint: it fits one vector to many points
NOISE_FLOOR = 1.5  # mean z² of the keypoints a face's explanation leaves, beyond which its score is discounted
DUPLICATE_CORRELATION = 0.98  # thumbnails this alike are the same photograph
DUPLICATE_Z = 4.0  # labels of duplicates this many typical misses apart conflict
FACES_PER_SHEET = 20  # 4 x 5 faces per page
DEFAULT_LIMIT = 100  # five pages
FINDING_COLUMNS = [
    "rank",
    "row",
    "kind",
    "keypoint",
    "label_x",
    "label_y",
    "prediction_x",
    "prediction_y",
    "score",
    "partner",
    "dx",
    "dy",
]
_PAIRS = [(KEYPOINTS.index(a), KEYPOINTS.index(b)) for a, b in FLIP_PAIRS]


@dataclass(frozen=True)
class Audit:
    """Every face's finding, best first (FINDING_COLUMNS; ``partner``: the swapped keypoint, or the other row of a
    duplicate; ``dx``, ``dy``: label minus answer of the keypoint, or the face's shift), and what it used."""

    findings: pd.DataFrame
    scales: pd.Series  # keypoint -> its typical out-of-fold miss (px)
    faces: int  # faces audited (with an out-of-fold answer)
    source: str  # the run or runs, in words
    answers: pd.DataFrame  # the out-of-fold answers audited: training row x COORDINATES


def keypoint_scales(labels: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """(15,) each keypoint's typical out-of-fold miss: the median distance (px) from label to answer over the
    faces labelled with it (``labels``, ``answers``: (N, 15, 2), NaN where unlabelled); 1 px where none is."""
    miss = np.linalg.norm(labels - answers, axis=2)
    scales = np.array([np.median(column[~np.isnan(column)]) if (~np.isnan(column)).any() else 1.0 for column in miss.T])
    return np.where(scales > 0, scales, 1.0)


def _points(frame: np.ndarray) -> np.ndarray:
    return frame.reshape(len(frame), len(KEYPOINTS), 2)


def explain(labels: np.ndarray, answers: np.ndarray, scales: np.ndarray) -> pd.DataFrame:
    """Each face's best explanation of its misses (row order of ``labels``): kind, keypoint index, partner
    index (swap), score (z units), dx, dy. ``labels``, ``answers``: (N, 15, 2) px, NaN where unlabelled."""
    n = len(labels)
    labelled = ~np.isnan(labels).any(axis=2)
    residual = np.where(labelled[..., None], labels - answers, 0.0)  # (N, 15, 2)
    z2 = (residual**2).sum(axis=2) / scales**2  # squared z-scores, 0 where unlabelled

    # one keypoint far off
    worst = np.argmax(z2, axis=1)
    gain_misplaced = z2[np.arange(n), worst]

    # a left/right pair exchanged: the label matches the answer with the pair's points exchanged
    gain_swap = np.full(n, -np.inf)
    swap_pair = np.zeros(n, int)
    for p, (a, b) in enumerate(_PAIRS):
        both = labelled[:, a] & labelled[:, b]
        crossed = (((labels[:, a] - answers[:, b]) ** 2).sum(axis=1) / scales[..., a] ** 2) + (
            ((labels[:, b] - answers[:, a]) ** 2).sum(axis=1) / scales[..., b] ** 2
        )
        gain = np.where(both, z2[:, a] + z2[:, b] - np.nan_to_num(crossed, nan=np.inf), -np.inf)
        better = gain > gain_swap
        gain_swap[better], swap_pair[better] = gain[better], p

    # the whole face moved: the weighted least-squares shift (weights 1 / scale²) removed from every keypoint
    weight = labelled / scales**2  # (N, 15)
    total = weight.sum(axis=1)
    shift = (residual * weight[..., None]).sum(axis=1) / np.maximum(total, 1e-12)[:, None]  # (N, 2)
    gain_shift = (shift**2).sum(axis=1) * total - SHIFT_PENALTY
    gain_shift[labelled.sum(axis=1) < SHIFT_MIN_KEYPOINTS] = -np.inf

    gains = np.stack([gain_swap, gain_misplaced, gain_shift], axis=1)
    best = np.argmax(gains, axis=1)
    kind = np.array(KINDS[:3])[best]
    keypoint = np.where(best == 0, [_PAIRS[p][0] for p in swap_pair], worst)
    # a swap names the pair's keypoint that lies further from its answer
    a, b = np.array(_PAIRS)[swap_pair].T
    keypoint = np.where((best == 0) & (z2[np.arange(n), b] > z2[np.arange(n), a]), b, keypoint)
    partner = np.where(best == 0, np.where(keypoint == a, b, a), -1)
    delta = residual[np.arange(n), keypoint]
    delta = np.where((best == 2)[:, None], shift, delta)
    gain = np.maximum(gains[np.arange(n), best], 0.0)
    # the misses the explanation leaves, per keypoint it leaves: a badly answered face (a hard face, not a wrong
    # label) keeps large misses on every keypoint, and its finding is discounted by them
    explained_keypoints = np.array([2, 1, 1])[best]
    left = np.maximum(labelled.sum(axis=1) - explained_keypoints, 1)
    unexplained = np.maximum(z2.sum(axis=1) - gain - np.where(best == 2, SHIFT_PENALTY, 0.0), 0.0) / left
    score = np.sqrt(gain / np.maximum(unexplained / NOISE_FLOOR, 1.0)) if NOISE_FLOOR else np.sqrt(gain)
    score[~labelled.any(axis=1)] = 0.0
    return pd.DataFrame(
        {"kind": kind, "keypoint": keypoint, "partner": partner, "score": score, "dx": delta[:, 0], "dy": delta[:, 1]}
    )


def _thumbnails(images: np.ndarray, side: int) -> np.ndarray:
    """(N, side*side) block means of 96x96 faces."""
    block = IMAGE_SIZE // side
    return images.reshape(len(images), side, block, side, block).mean(axis=(2, 4)).reshape(len(images), -1)


def near_duplicates(images: np.ndarray, threshold: float = DUPLICATE_CORRELATION, bucket: int = 64) -> np.ndarray:
    """(P, 2) pairs of rows (first < second) whose 16x16 thumbnails correlate above ``threshold``.

    Candidates share one of four 16-bit bands of an 8x8 average hash (each block above the face's mean); a band
    value shared by more than ``bucket`` faces is skipped (a plain face), so the cost grows with the faces,
    not their pairs."""
    bits = _thumbnails(images, 8)
    bits = bits > bits.mean(axis=1, keepdims=True)
    weights = 1 << np.arange(16, dtype=np.int64)
    candidates = []
    for band in range(4):
        keys = bits[:, 16 * band : 16 * (band + 1)].astype(np.int64) @ weights
        order = np.argsort(keys, kind="stable")
        bounds = np.flatnonzero(np.diff(keys[order])) + 1
        for group in np.split(order, bounds):
            if 2 <= len(group) <= bucket:
                first, second = np.triu_indices(len(group), 1)
                candidates.append(np.stack([group[first], group[second]], axis=1))
    if not candidates:
        return np.zeros((0, 2), int)
    pairs = np.unique(np.sort(np.concatenate(candidates), axis=1), axis=0)
    thumbs = _thumbnails(images.astype(np.float32), 16)
    thumbs -= thumbs.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(thumbs, axis=1)
    thumbs /= np.where(norms > 0, norms, 1.0)[:, None]
    correlation = np.einsum("ij,ij->i", thumbs[pairs[:, 0]], thumbs[pairs[:, 1]])
    flat = norms[pairs].max(axis=1) == 0  # two blank faces
    return pairs[(correlation >= threshold) | flat]


def duplicate_conflicts(
    images: np.ndarray, labels: np.ndarray, answers: np.ndarray, scales: np.ndarray
) -> pd.DataFrame:
    """Near-duplicate faces whose shared labels differ by more than DUPLICATE_Z typical misses: one line per
    pair, on the face whose labels lie further from its answer (row positions of ``labels``): row, other, the
    keypoint index that differs most, score (that difference in z units)."""
    pairs = near_duplicates(images)
    found = []
    miss = np.linalg.norm(labels - answers, axis=2) / scales  # NaN where unlabelled
    for first, second in pairs:
        apart = np.linalg.norm(labels[first] - labels[second], axis=1) / scales  # NaN unless both labelled
        if np.isnan(apart).all() or np.nanmax(apart) <= DUPLICATE_Z:
            continue
        keypoint = int(np.nanargmax(apart))
        further = first if np.nansum(miss[first]) >= np.nansum(miss[second]) else second
        found.append((further, second if further == first else first, keypoint, float(apart[keypoint])))
    return pd.DataFrame(found, columns=["row", "other", "keypoint", "score"])


def audit_answers(training: TrainingSet, answers: pd.DataFrame, source: str) -> Audit:
    """Findings of every face with an out-of-fold answer (``answers``: training row x COORDINATES)."""
    rows = answers.index.to_numpy()
    labels = _points(training.keypoints[rows].astype(np.float64))
    predicted = _points(answers[list(COORDINATES)].to_numpy(np.float64))
    scales = keypoint_scales(labels, predicted)
    explained = explain(labels, predicted, scales)
    explained["row"] = rows
    explained["other"] = -1
    duplicates = duplicate_conflicts(training.images[rows], labels, predicted, scales)
    for position, other, keypoint, score in duplicates.itertuples(index=False):
        if score > explained.at[position, "score"]:
            residual = labels[position, keypoint] - predicted[position, keypoint]
            explained.loc[position, ["kind", "keypoint", "partner", "score", "dx", "dy", "other"]] = [
                "duplicate-conflict",
                keypoint,
                -1,
                score,
                *residual,
                rows[other],
            ]
    explained = explained[explained["score"] > 0]
    order = np.lexsort((explained["row"].to_numpy(), -explained["score"].to_numpy()))
    explained = explained.iloc[order].reset_index(drop=True)
    position = pd.Series(np.arange(len(rows)), index=rows)[explained["row"]].to_numpy()
    keypoint = explained["keypoint"].to_numpy(int)
    label = labels[position, keypoint]
    answer = predicted[position, keypoint]
    partner = [
        KEYPOINTS[p] if kind == "swap" else str(other) if kind == "duplicate-conflict" else ""
        for kind, p, other in explained[["kind", "partner", "other"]].itertuples(index=False)
    ]
    findings = pd.DataFrame(
        {
            "rank": np.arange(1, len(explained) + 1),
            "row": explained["row"].to_numpy(int),
            "kind": explained["kind"].to_numpy(),
            "keypoint": [KEYPOINTS[k] for k in keypoint],
            "label_x": label[:, 0].round(3),
            "label_y": label[:, 1].round(3),
            "prediction_x": answer[:, 0].round(3),
            "prediction_y": answer[:, 1].round(3),
            "score": explained["score"].to_numpy(float).round(3),
            "partner": partner,
            "dx": explained["dx"].to_numpy(float).round(3),
            "dy": explained["dy"].to_numpy(float).round(3),
        }
    )
    return Audit(
        findings, pd.Series(scales, index=list(KEYPOINTS)), len(rows), source, answers[list(COORDINATES)].copy()
    )


def run_answers(runs: list[Run], training: TrainingSet, tta: bool | None = None) -> tuple[pd.DataFrame, str]:
    """The out-of-fold answers an audit uses: one run's (its inference head cross-fitted, TTA per ``tta`` or the
    run's config), or several runs' blend (nnls weights fitted on the other folds, as `fkp blend` scores it);
    and the source in words. ``runs`` must have been checked against ``training``."""
    from .blend import check_same_folds
    from .config import load_blend_config
    from .evaluate import oof_answers
    from .head import BlendWeights, cross_fit_predict
    from .run import variant

    training = training.head(runs[0].spec.limit)
    answers = {run.name: oof_answers(run, variant(run.tta_used(tta)), training) for run in runs}
    if len(runs) == 1:
        (answer,) = answers.values()
        if answer.empty:
            raise InputError(runs[0].path, "no face has out-of-fold answers: finish a fold with `fkp cv`")
        return answer, f"run {runs[0].name}"
    check_same_folds(runs)
    rows = answers[runs[0].name].index
    for frame in answers.values():
        rows = rows.intersection(frame.index)
    fold = answers[runs[0].name].loc[rows, "fold"].to_numpy()
    if len(np.unique(fold)) < 2:
        raise InputError("--runs", "the runs share out-of-fold faces from one fold only: a blend needs two")
    stack = np.stack([frame.loc[rows, list(COORDINATES)].to_numpy() for frame in answers.values()])
    labels = training.keypoints[rows.to_numpy()]
    blended = cross_fit_predict(
        BlendWeights.from_config(load_blend_config("nnls")), stack, labels, training.style[rows.to_numpy()], fold
    )
    frame = pd.DataFrame(blended, index=rows, columns=list(COORDINATES)).assign(fold=fold)
    return frame, f"the nnls blend of runs {', '.join(run.name for run in runs)}"


def audit(runs: list[Run], training: TrainingSet, tta: bool | None = None) -> Audit:
    """Every audited face's finding, best first, from ``runs``' out-of-fold answers."""
    answers, source = run_answers(runs, training, tta)
    return audit_answers(training.head(runs[0].spec.limit), answers, source)


def proposed_corrections(
    findings: pd.DataFrame, training: TrainingSet, existing: pd.DataFrame | None = None
) -> pd.DataFrame:
    """corrections.csv lines (COLUMNS and note) for the findings with a mechanical fix: a swap swapped back (each
    keypoint of the pair moved to the other's label), a misplaced keypoint dropped; after the ``existing``
    corrections, whose rows and keypoints keep their fix."""
    lines = [] if existing is None else existing[[*COLUMNS, NOTE]].values.tolist()
    taken = {(row, keypoint) for row, keypoint, *_ in lines}
    dropped = {row for row, keypoint, *_ in lines if keypoint == "all"}
    for finding in findings.itertuples(index=False):
        if finding.kind not in FIXABLE or finding.row in dropped:
            continue
        note = f"audit rank {finding.rank}: {finding.kind}, score {finding.score:.1f}"
        if finding.kind == "swap":
            label = training.keypoints[finding.row].reshape(-1, 2)
            first, second = KEYPOINTS.index(finding.keypoint), KEYPOINTS.index(finding.partner)
            fix = [
                (finding.keypoint, *label[second].round(3).tolist()),
                (finding.partner, *label[first].round(3).tolist()),
            ]
        else:
            fix = [(finding.keypoint, np.nan, np.nan)]
        if any((finding.row, keypoint) in taken for keypoint, *_ in fix):
            continue
        for keypoint, x, y in fix:
            taken.add((finding.row, keypoint))
            lines.append([finding.row, keypoint, x, y, note])
    return pd.DataFrame(lines, columns=[*COLUMNS, NOTE])


def write_audit(
    result: Audit, training: TrainingSet, out: Path, *, limit: int, propose: bool, data_dir: Path
) -> list[Path]:
    """The audit's files in ``out``: findings.csv (the top ``limit``), sheet-<n>.png (FACES_PER_SHEET faces
    each), index.md, and with ``propose`` corrections.proposed.csv; return their paths."""
    from .plots import audit_sheet, save_png

    top = result.findings.head(limit)
    written = [out / "findings.csv"]
    write_csv(top, written[0])
    for old in out.glob("sheet-*.png"):  # an earlier audit's pages beyond this one's
        old.unlink()
    sheets = []
    pages = math.ceil(len(top) / FACES_PER_SHEET)
    for page in range(pages):
        chunk = top.iloc[page * FACES_PER_SHEET : (page + 1) * FACES_PER_SHEET]
        path = out / f"sheet-{page + 1}.png"
        save_png(
            audit_sheet(
                [_sheet_face(finding, training, result.answers) for finding in chunk.itertuples(index=False)],
                f"fkp audit of {result.source}: findings {chunk['rank'].iloc[0]}-{chunk['rank'].iloc[-1]} "
                f"of {len(result.findings)} (page {page + 1} of {pages})",
            ),
            path,
        )
        sheets.append(path)
    written += sheets
    proposal_path = None
    if propose:
        fixes = corrections_path(data_dir)
        existing = read_corrections(fixes, len(training)) if fixes.is_file() else None
        proposal = proposed_corrections(top, training, existing)
        proposal_path = out / "corrections.proposed.csv"
        write_csv(proposal, proposal_path)
        written.append(proposal_path)
    index = out / "index.md"
    write_text(index_page(result, top, sheets, proposal_path, data_dir), index)
    return [index, *written]


def _sheet_face(finding, training: TrainingSet, answers: pd.DataFrame):
    from .plots import AuditFace

    row = finding.row
    labels = training.keypoints[row].reshape(-1, 2)
    suspect = [KEYPOINTS.index(finding.keypoint)]
    if finding.kind == "swap":
        suspect.append(KEYPOINTS.index(finding.partner))
    if finding.kind == "shift":
        suspect = [int(k) for k in np.flatnonzero(~np.isnan(labels).any(axis=1))]
    detail = {
        "swap": "_".join(w for w in finding.keypoint.split("_") if w not in ("left", "right")) + " left<>right",
        "misplaced": finding.keypoint,
        "shift": f"shift ({finding.dx:+.1f}, {finding.dy:+.1f}) px",
        "duplicate-conflict": f"{finding.keypoint} vs row {finding.partner}",
    }[finding.kind]
    return AuditFace(
        training.images[row],
        labels,
        answers.loc[row, list(COORDINATES)].to_numpy(float).reshape(-1, 2),
        suspect,
        f"#{finding.rank} row {row}: {finding.kind} {finding.score:.1f}\n{detail}",
    )


def index_page(result: Audit, top: pd.DataFrame, sheets: list[Path], proposal: Path | None, data_dir: Path) -> str:
    counts = top["kind"].value_counts()
    lines = [
        f"# fkp audit of {result.source}",
        "",
        f"{result.faces} training faces audited against their out-of-fold answers; the {len(top)} most suspect "
        "below (score: how far the label lies from the answer, in typical out-of-fold misses of the keypoint; "
        "rows numbered as the folds file numbers them, from 0). Kinds: "
        + ", ".join(f"{counts.get(kind, 0)} {kind}" for kind in KINDS)
        + ".",
        "",
        "In the contact sheets the label is green dots, the answer red crosses, the suspect keypoints circled in "
        "yellow.",
        "",
    ]
    if proposal is not None:
        lines += [
            f"Proposed corrections ({FIXABLE[0]}s swapped back, {FIXABLE[1]} keypoints dropped): "
            f"[{proposal.name}]({proposal.name}). Review it, then copy it to `{data_dir / CORRECTIONS}` "
            "for `fkp cv` to train on the corrected labels.",
            "",
        ]
    lines += ["## Contact sheets", ""]
    for sheet in sheets:
        lines += [f"![{sheet.stem}]({sheet.name})", ""]
    lines += ["## Findings", "", "| rank | row | kind | keypoint | label | answer | score | partner |"]
    lines += ["| ---: | ---: | --- | --- | --- | --- | ---: | --- |"]
    for f in top.itertuples(index=False):
        lines.append(
            f"| {f.rank} | {f.row} | {f.kind} | {f.keypoint} | ({f.label_x:.1f}, {f.label_y:.1f}) | "
            f"({f.prediction_x:.1f}, {f.prediction_y:.1f}) | {f.score:.1f} | {f.partner} |"
        )
    return "\n".join(lines) + "\n"
