"""Check that an exported model (``python -m fer_utils export``, e.g. bfloat16) predicts as the
trained one does, on the same FER2013 images.

    python benchmarks/export_check.py TRAINED.keras EXPORTED.keras [--data PATH] [--usage PublicTest]

Prints both accuracies, how often the two predict the same class, and the exported model's
accuracy minus the trained one's with a paired bootstrap 95% interval (blank images left out,
as `python -m fer_utils evaluate` does). Where the CPU has no bf16 arithmetic, `load_model`
computes a bfloat16 export in float32: the check then measures the rounding of its weights only.
"""

import argparse
from pathlib import Path

import numpy as np

from fer_utils.data import load_dataset
from fer_utils.inference import predict_proba
from fer_utils.predict import load_model
from fer_utils.quality import blank_mask
from fer_utils.scoring import accuracy_gain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trained")
    parser.add_argument("exported")
    parser.add_argument("--data", default=Path(__file__).resolve().parents[2] / "shared/data/fer2013.zip")
    parser.add_argument("--usage", default="PublicTest")
    args = parser.parse_args()
    part = load_dataset(args.data).usage(args.usage)
    part = part.subset(~blank_mask(part.images))
    trained, exported = (predict_proba(load_model(path), part.images) for path in (args.trained, args.exported))
    for name, proba in (("trained", trained), ("exported", exported)):
        print(f"{name}: accuracy {np.mean(proba.argmax(axis=1) == part.labels):.4f} on {len(part.labels)} "
              f"{args.usage} images")
    print(f"same predicted class: {np.mean(trained.argmax(axis=1) == exported.argmax(axis=1)):.4f}; "
          f"largest probability difference {np.abs(trained - exported).max():.4f}")
    gain = accuracy_gain(part.labels, trained, exported)
    print(f"exported minus trained: {100 * gain['gain']:+.2f} points "
          f"(paired 95% CI {100 * gain['gain_ci'][0]:+.2f} to {100 * gain['gain_ci'][1]:+.2f})")


if __name__ == "__main__":
    main()
