"""Model registry: the seed report's CNN, exactly, and the project's stronger designs.

Every model takes raw pixel values 0-255 (a ``Rescaling`` layer comes first) and ends in a
float32 softmax over the seven classes, so it trains under ``mixed_bfloat16`` safely.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pandas as pd
from keras import layers

from fer_utils import CLASSES, IMAGE_SIZE, OptionError

#: Batch-norm momentum of the project's own models: 0.9 (Keras: 0.99) lets the moving
#: statistics catch up within a few hundred steps, so short runs on small data evaluate well.
BN_MOMENTUM = 0.9


def seed_cnn(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dropout: float = 0.25,
             dense_dropout: float = 0.5) -> keras.Model:
    """The seed report's Sequential CNN.

    Four blocks (32, 64, 128, 256 filters) of ``[Conv2D 3x3 -> ReLU -> BatchNorm] x 2 ->
    MaxPool -> Dropout``, then ``Flatten -> [Dense(64) -> ReLU -> BatchNorm -> Dropout] x 2
    -> Dense(7, softmax)``. For 48x48x3 input: 1,326,567 trainable and 2,176
    non-trainable parameters, as the report prints.
    """
    stack = [keras.Input(input_shape), layers.Rescaling(1 / 255)]
    for filters in (32, 64, 128, 256):
        for _ in range(2):
            stack += [layers.Conv2D(filters, 3, padding="same", activation="relu"), layers.BatchNormalization()]
        stack += [layers.MaxPooling2D(2), layers.Dropout(dropout)]
    stack.append(layers.Flatten())
    for _ in range(2):
        stack += [layers.Dense(64, activation="relu"), layers.BatchNormalization(), layers.Dropout(dense_dropout)]
    stack.append(layers.Dense(len(CLASSES), activation="softmax", dtype="float32"))
    return keras.Sequential(stack, name="seed_cnn")


def _gap_classifier(inputs, features, dropout: float, name: str) -> keras.Model:
    """The project's head on ``features``: global average pooling, dropout, float32 softmax."""
    x = layers.Dropout(dropout)(layers.GlobalAveragePooling2D()(features))
    outputs = layers.Dense(len(CLASSES), activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def vgg_gap(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1), widths=(32, 64, 128, 256),
            dropout: float = 0.4, convs=(2, 2, 2, 2), block_dropout=0.0, name: str = "vgg_gap") -> keras.Model:
    """VGG-style CNN with global average pooling.

    Per block ``[Conv2D 3x3 (no bias) -> BatchNorm -> ReLU] x convs -> MaxPool`` (two
    convolutions per block by default), then ``Dropout(block_dropout)`` when it is above
    zero (one rate for all blocks, or one per block); then global average pooling,
    ``Dropout(dropout)`` and the softmax. About 1.2 M parameters by default, fewer FLOPs
    than a dense head would cost and much less overfitting than the seed CNN's ``Flatten``.
    """
    inputs = keras.Input(input_shape)
    return _gap_classifier(inputs, _vgg_blocks(inputs, widths, convs, block_dropout), dropout, name)


def vgg_fc(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1), widths=(32, 64, 128, 256), convs=(2, 2, 2, 2),
           block_dropout=0.0, units=(1024,), dropout: float = 0.5) -> keras.Model:
    """:func:`vgg_gap`'s blocks with a dense head that keeps where in the face each feature
    lies: ``Flatten -> [Dense (no bias) -> BatchNorm -> ReLU -> Dropout(dropout)]`` for each
    of ``units``, then the softmax (the strong from-scratch FER2013 VGGs, usef-kh/fer
    among them, flatten their last feature map into dense layers instead of pooling it)."""
    inputs = keras.Input(input_shape)
    x = layers.Flatten()(_vgg_blocks(inputs, widths, convs, block_dropout))
    for width in units:
        x = layers.Dense(width, use_bias=False)(x)
        x = layers.Activation("relu")(layers.BatchNormalization(momentum=BN_MOMENTUM)(x))
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="vgg_fc")


def _vgg_blocks(inputs, widths, convs, block_dropout):
    """The VGG blocks of :func:`vgg_gap` on ``inputs`` (raw pixels): their last feature map."""
    rates = [block_dropout] * len(widths) if isinstance(block_dropout, (int, float)) else list(block_dropout)
    for option, values in (("convs", convs), ("block_dropout", rates)):
        if len(values) != len(widths):
            raise ValueError(f"{option} {tuple(values)} must give one value per block of widths {tuple(widths)}")
    x = layers.Rescaling(1 / 255)(inputs)
    for filters, count, rate in zip(widths, convs, rates):
        for _ in range(count):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        if rate:
            x = layers.Dropout(rate)(x)
    return x


def vgg_lean(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dropout: float = 0.4) -> keras.Model:
    """:func:`vgg_gap` with one convolution instead of two in its first, full-resolution
    block: the costliest layer on a CPU goes, so a training step is about 1.25x faster
    (``benchmarks/train_throughput.py --model vgg_lean``) and more epochs fit a time budget."""
    return vgg_gap(input_shape, dropout=dropout, convs=(1, 2, 2, 2), name="vgg_lean")


def res_gap(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1), widths=(32, 64, 128, 256),
            dropout: float = 0.4) -> keras.Model:
    """:func:`vgg_gap` with a residual shortcut around each block's two convolutions."""
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    for filters in widths:
        shortcut = layers.Conv2D(filters, 1, use_bias=False)(x)
        for i in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
            x = layers.Activation("relu")(x) if i == 0 else x
        x = layers.Activation("relu")(layers.Add()([x, layers.BatchNormalization(momentum=BN_MOMENTUM)(shortcut)]))
        x = layers.MaxPooling2D(2)(x)
    return _gap_classifier(inputs, x, dropout, "res_gap")


#: name -> builder; every builder takes ``input_shape`` first.
MODELS = {"seed_cnn": seed_cnn, "vgg_gap": vgg_gap, "vgg_fc": vgg_fc, "vgg_lean": vgg_lean, "res_gap": res_gap}
#: The input channels each model is trained with by default (the seed loaded RGB).
DEFAULT_CHANNELS = {"seed_cnn": 3, "vgg_gap": 1, "vgg_fc": 1, "vgg_lean": 1, "res_gap": 1}


def check_model_options(name: str, options: dict) -> None:
    """Refuse an unknown model name or an option its builder does not take, by name."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(MODELS)})")
    accepted = set(inspect.signature(MODELS[name]).parameters) - {"input_shape", "name"}
    unknown = set(options) - accepted
    if unknown:
        raise ValueError(f"model {name} takes no option {', '.join(sorted(unknown))} "
                         f"(it takes {', '.join(sorted(accepted)) or 'none'})")


def build_model(name: str, input_shape=None, **options) -> keras.Model:
    """Build a registered model by name with builder ``options``; ``input_shape`` defaults
    to its usual channels."""
    check_model_options(name, options)
    shape = input_shape or (IMAGE_SIZE, IMAGE_SIZE, DEFAULT_CHANNELS[name])
    return MODELS[name](shape, **options)


def parameter_counts(model: keras.Model) -> tuple[int, int]:
    """``(trainable, non_trainable)`` parameter counts, as ``model.summary()`` prints them."""
    count = lambda weights: int(sum(w.numpy().size for w in weights))  # noqa: E731
    return count(model.trainable_weights), count(model.non_trainable_weights)


def layer_table(model: keras.Model):
    """One row per layer: name, type, output shape and parameter count."""
    return pd.DataFrame([{"layer": layer.name, "type": type(layer).__name__,
                          "output shape": str(tuple(layer.output.shape[1:])),
                          "parameters": layer.count_params()} for layer in model.layers])


def flops_per_image(model: keras.Model) -> int:
    """Floating-point operations of one forward pass (2 per multiply-add of the
    convolution and dense layers; normalisation, pooling and activations left out)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kernel = layer.kernel.shape  # (kh, kw, c_in, c_out)
            height, width = layer.output.shape[1:3]
            total += 2 * height * width * kernel[0] * kernel[1] * kernel[2] * kernel[3]
        elif isinstance(layer, layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)


def cost_table(names, variants: dict | None = None) -> pd.DataFrame:
    """Input shape, trainable and non-trainable parameters, and MFLOPs for one 48x48 image,
    one row per registry model of ``names`` (its default options), then one per configured
    network of ``variants`` (``{label: {"model": registry name, **builder options}}``)."""
    rows = []
    for label, variant in (variants or {}).items():
        if "model" not in variant or label in names:
            raise OptionError(f"model_variants: {label}: needs a 'model' (a registry name) and a label "
                              f"of its own, not one of {', '.join(names)}")
    configured = [(name, name, {}) for name in names]
    configured += [(label, v["model"], {k: o for k, o in v.items() if k != "model"})
                   for label, v in (variants or {}).items()]
    for label, name, options in configured:
        model = build_model(name, **options)
        trainable, frozen = parameter_counts(model)
        rows.append({"model": label, "input": str(model.input_shape[1:]), "trainable": trainable,
                     "non-trainable": frozen, "MFLOPs per image": round(flops_per_image(model) / 1e6, 1)})
    return pd.DataFrame(rows).set_index("model")


def compute_dtype(model: keras.Model) -> str:
    """The arithmetic ``model`` computes in: ``bfloat16`` when any layer does, else ``float32``."""
    return "bfloat16" if any(layer.dtype_policy.compute_dtype == "bfloat16" for layer in model.layers) else "float32"


def export_for_inference(model: keras.Model, precision: str = "float32") -> keras.Model:
    """A copy of a trained model without optimizer state, computing in ``precision``:
    ``float32`` (fast on any CPU), or ``bfloat16`` (half the file size, for models that
    must stay under a size limit; fast on CPUs with bf16 arithmetic). The output softmax
    stays float32. Works for any model, registry options included."""
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")
    output = model.layers[-1].name
    policy = keras.dtype_policies.DTypePolicy(precision)

    def retype(config):
        for layer in config["layers"]:
            if layer["class_name"] != "InputLayer" and layer["config"]["name"] != output:
                layer["config"]["dtype"] = keras.dtype_policies.serialize(policy)
        return config

    copy = type(model).from_config(retype(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def average_weights(models: list, names: list | None = None) -> keras.Model:
    """The uniform weight average of models of one architecture (a "model soup", Wortsman et
    al. 2022), computed and returned in float32: every variable, batch-norm statistics included.
    It makes sense for models trained from one start (the annealed continuations of one run).
    Only the layers and the shapes of their variables are compared, not options such as dropout."""
    names = names or [f"model {i + 1}" for i in range(len(models))]

    def layout(model):
        return [(type(layer).__name__, [tuple(w.shape) for w in layer.weights]) for layer in model.layers]

    first = layout(models[0])
    for model, name in zip(models[1:], names[1:], strict=True):
        if layout(model) != first:
            raise ValueError(f"{name}: not the layers of {names[0]}; only models of one architecture can be averaged")
    soup = export_for_inference(models[0], "float32")
    soup.set_weights([np.mean([np.asarray(w, np.float32) for w in weights], axis=0)
                      for weights in zip(*(model.get_weights() for model in models))])
    return soup
