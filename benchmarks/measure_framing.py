"""Measure how `fkp predict` frames a face: rewrites competition/framing.toml.

The anchors (eye centres, bottom lip) are averaged over the training labels; their place inside
OpenCV's Haar face box is averaged over the training faces the detector finds, each seen padded
by half a face and doubled (photos.measure_framing).

    python benchmarks/measure_framing.py --data ../shared/fkp-data
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import ROOT, default_data_dir

from competition import data
from competition.io import write_toml
from competition.predict import measure_framing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, default=ROOT / "competition" / "framing.toml")
    args = parser.parse_args()
    measured = measure_framing(data.load_training(args.data))
    header = (
        f"# Where `fkp predict` puts a face's anchors, measured by benchmarks/measure_framing.py on\n"
        f"# {args.data.resolve().name}: {measured['faces']} training faces, the Haar box on {measured['detected']}.\n"
        "# in_face: mean label pixels in a 96x96 competition face; in_box: mean place inside the\n"
        "# detector's box (fractions of its width and height from its top-left corner).\n"
    )
    write_toml(measured, args.out, header)
    print(f"{args.out}: {measured}")


if __name__ == "__main__":
    main()
