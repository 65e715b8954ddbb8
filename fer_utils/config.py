"""Training options as plain data, importable without TensorFlow (the CLI builds its flags from them)."""

from __future__ import annotations

from dataclasses import dataclass, field

#: The seed report's augmentation: rotation 10 degrees, 10% width/height shift, shear,
#: 10% zoom, horizontal flip, ``nearest`` fill.
SEED_AUGMENTATION = {"rotation": 10.0, "shift": 0.1, "shear": 0.1, "zoom": 0.1,
                     "flip": True, "erasing": 0.0}


@dataclass
class TrainConfig:
    """Every training option; the defaults are the project's recipe for ``vgg_gap``."""

    model: str = "vgg_gap"
    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "adamw"          # adam | adamw | sgd
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4        # adamw only
    schedule: str = "cosine"          # cosine | plateau | constant
    warmup_epochs: int = 1            # cosine only
    label_smoothing: float = 0.0
    class_weighted: bool = True       # the seed's weighted categorical cross-entropy
    augmentation: dict = field(default_factory=lambda: dict(SEED_AUGMENTATION))
    early_stopping: int = 0           # patience in epochs; 0 disables
    time_budget: float = 0.0          # minutes of training not to exceed; 0: no limit
    precision: str = "auto"           # auto | mixed_bfloat16 | float32
    strategy: str = "default"         # default | mirrored | multiworker
    seed: int = 0
    verbose: int = 2                  # Keras progress: 1 bar, 2 one line per epoch

    def __post_init__(self):
        choices = {"optimizer": ("adam", "adamw", "sgd"), "schedule": ("cosine", "plateau", "constant"),
                   "precision": ("auto", "mixed_bfloat16", "float32"),
                   "strategy": ("default", "mirrored", "multiworker")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
