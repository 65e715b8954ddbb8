"""Training throughput: (A) the bare model on in-memory float tensors against (B) what
``fer_utils.train`` runs: uint8 images as seeded-order batches (``Batches``) into the
training model, whose augmentation and channel repetition run inside the training step.

The two sides alternate (A, B, A, B, ...) so that a shared machine's drifting speed hits
both alike; prints images/s per pass and the median B/A ratio of ``--pairs`` pairs with
its range (the input side should cost little: >= 0.9). Synthetic data.

    python benchmarks/train_throughput.py [--model vgg_gap] [--images 2048] [--batch 64] [--pairs 5]
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from fer_utils.augment import build_augmentation
from fer_utils.inference import model_input
from fer_utils.models import DEFAULT_CHANNELS, build_model
from fer_utils.train import Batches, resolve_precision, training_model


def sides(model_name: str, n: int, batch: int, precision: str):
    """The two compiled models and their one-epoch datasets."""
    keras.mixed_precision.set_global_policy(resolve_precision(precision))
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n)
    channels = DEFAULT_CHANNELS[model_name]
    bare = build_model(model_name)
    bare.compile("adam", "categorical_crossentropy")
    x = tf.constant(model_input(images, channels))
    y = tf.constant(np.eye(7, dtype=np.float32)[labels])
    model_only = tf.data.Dataset.from_tensors((x, y)).unbatch().batch(batch).cache()
    keras.mixed_precision.set_global_policy("float32")
    augmentation = build_augmentation(0)
    keras.mixed_precision.set_global_policy(resolve_precision(precision))
    trainer = training_model(build_model(model_name), augmentation, channels)
    trainer.compile("adam", "categorical_crossentropy")
    pipeline = Batches(images, labels, batch_size=batch, weights={i: 1.0 for i in range(7)}, seed=0)
    return (bare, model_only, None), (trainer, pipeline, pipeline.steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg_gap")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--precision", default="auto", choices=("auto", "mixed_bfloat16", "float32"))
    args = parser.parse_args()
    both = sides(args.model, args.images, args.batch, args.precision)
    for model, data, steps in both:  # warm-up: tracing and the first cache pass
        model.fit(data, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
    ratios = []
    for pair in range(args.pairs):
        speeds = []
        for model, data, steps in both:
            start = time.perf_counter()
            model.fit(data, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
            speeds.append(args.images / (time.perf_counter() - start))
        ratios.append(speeds[1] / speeds[0])
        print(f"pair {pair + 1}: model only {speeds[0]:7.1f} images/s, pipeline + training model "
              f"{speeds[1]:7.1f} images/s, ratio {ratios[-1]:.2f}", flush=True)
    print(f"{args.model} {resolve_precision(args.precision)} batch {args.batch}: pipeline/model ratio median "
          f"{np.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}, {args.pairs} pairs)")


if __name__ == "__main__":
    main()
