"""Inference speed of a model that computes in bfloat16 against its float32 copy, on this CPU.

    python benchmarks/bf16_inference.py [MODEL.keras] [--images 1024] [--passes 5]

Default model: the shipped one (a bfloat16 export). The two sides alternate pass by pass; prints
each side's median images per second with its range, the float32/bfloat16 ratio and how often
the two predict the same class. Shows why ``load_model`` computes such a model in float32 where
the CPU has no bf16 arithmetic (AVX2), and keeps bfloat16 where it has (AVX512-BF16, AMX).
"""

import argparse
import statistics
import time

import keras
import numpy as np

from fer_utils.models import export_for_inference
from fer_utils.train import cpu_supports_bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="a .keras model (default: the shipped one)")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    from fer_utils.predict import DEFAULT_MODEL  # noqa: PLC0415

    stored = keras.models.load_model(args.model or DEFAULT_MODEL)  # as stored, whatever the CPU
    models = {"bfloat16": export_for_inference(stored, "bfloat16"), "float32": export_for_inference(stored)}
    images = np.random.default_rng(0).random((args.images, 48, 48, stored.input_shape[-1]), np.float32)
    rates = {name: [] for name in models}
    for model in models.values():
        model.predict(images[:256], batch_size=256, verbose=0)  # compiled before timing
    for _ in range(args.passes):
        for name, model in models.items():
            start = time.perf_counter()
            model.predict(images, batch_size=256, verbose=0)
            rates[name].append(args.images / (time.perf_counter() - start))
    print(f"CPU with bf16 arithmetic: {'yes' if cpu_supports_bf16() else 'no'}")
    for name, values in rates.items():
        print(f"{name}: median {statistics.median(values):.0f} images/s (range {min(values):.0f}-{max(values):.0f}, "
              f"{args.passes} passes)")
    print(f"float32 / bfloat16: {statistics.median(rates['float32']) / statistics.median(rates['bfloat16']):.2f}x")
    same = np.mean(models["bfloat16"].predict(images, verbose=0).argmax(1) == models["float32"].predict(
        images, verbose=0).argmax(1))
    print(f"same predicted class: {same:.4f}")


if __name__ == "__main__":
    main()
