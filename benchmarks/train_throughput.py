"""Training throughput: (a) model on in-memory tensors, (b) full tf.data pipeline + model.

Prints images/s of both, the ratio b/a (the pipeline should cost almost nothing: >= 0.9)
and the mixed_bfloat16 / float32 ratio of (a). Synthetic data; each figure is the best of
``--repeats`` passes, since a shared machine's speed varies from pass to pass.

    python benchmarks/train_throughput.py [--model vgg_gap] [--images 2048] [--batch 64] [--repeats 3]
"""

import argparse

import keras
import numpy as np
import tensorflow as tf

from fer_utils.augment import build_augmentation
from fer_utils.inference import model_input
from fer_utils.models import DEFAULT_CHANNELS, build_model
from fer_utils.train import make_dataset
from timing import best_seconds


def images_per_second(policy: str, model_name: str, n: int, batch: int, pipeline: bool, repeats: int) -> float:
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, n)
    channels = DEFAULT_CHANNELS[model_name]
    model = build_model(model_name)
    model.compile("adam", "categorical_crossentropy")
    if pipeline:
        data = make_dataset(images, labels, batch_size=batch, channels=channels, shuffle_seed=0,
                            weights={i: 1.0 for i in range(7)}, augmentation=build_augmentation(0))
    else:
        x = tf.constant(model_input(images, channels))
        y = tf.constant(np.eye(7, dtype=np.float32)[labels])
        data = tf.data.Dataset.from_tensors((x, y)).unbatch().batch(batch).cache()
    model.fit(data.take(4), epochs=1, verbose=0)  # warm-up: tracing and the first cache pass
    return n / best_seconds(lambda: model.fit(data, epochs=1, verbose=0), repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg_gap")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for policy in ("mixed_bfloat16", "float32"):
        for pipeline in (False, True):
            results[policy, pipeline] = images_per_second(policy, args.model, args.images, args.batch, pipeline,
                                                         args.repeats)
            print(f"{args.model} {policy:15s} {'pipeline+model' if pipeline else 'model only':15s} "
                  f"{results[policy, pipeline]:7.1f} images/s", flush=True)
    for policy in ("mixed_bfloat16", "float32"):
        print(f"pipeline/model ratio ({policy}): {results[policy, True] / results[policy, False]:.2f}")
    print(f"bf16/float32 ratio (model only): {results['mixed_bfloat16', False] / results['float32', False]:.2f}")


if __name__ == "__main__":
    main()
