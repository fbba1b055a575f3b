"""The one place that makes Keras Tuner's state files atomic.

Keras Tuner 1.4 writes ``oracle.json`` and each ``trial.json`` in place; a search killed during
that write leaves an empty or truncated file, and the resume then fails inside ``json.loads``.
We replace its one JSON writer with a write to a sibling file renamed over the target, then
import. Every module of fkp gets Keras Tuner from here.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras_tuner
from keras_tuner.src import utils as _utils

from .io import atomic_path


def _save_json_atomically(path, obj) -> str:
    text = json.dumps(obj)
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)
    return text


_utils.save_json = _save_json_atomically

__all__ = ["keras_tuner"]
