"""The one place that makes imgaug 0.4.0 (2020) import and run on NumPy 2.

imgaug reads ``np.sctypes`` at import and uses the removed aliases ``np.complex`` and
``np.bool`` in a few augmenters. We restore exactly those names, only when missing, then import.
Every module of fkp gets imgaug from here.
"""

from __future__ import annotations

import numpy as np

_SCTYPES = {
    "int": [np.int8, np.int16, np.int32, np.int64],
    "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
    "float": [np.float16, np.float32, np.float64],
    "complex": [np.complex64, np.complex128],
    "others": [bool, object, bytes, str, np.void],
}


def _restore_numpy1_names() -> None:
    for name, value in (("sctypes", _SCTYPES), ("complex", complex), ("bool", np.bool_)):
        try:
            getattr(np, name)
        except AttributeError:
            setattr(np, name, value)


_restore_numpy1_names()

import imgaug  # noqa: E402
import imgaug.augmenters as iaa  # noqa: E402

__all__ = ["imgaug", "iaa"]
