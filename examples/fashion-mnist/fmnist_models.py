"""The Fashion-MNIST teacher and student architectures.

`edge-distill` builds the student from the reference ``fmnist_models:student`` in
``edge-distill.toml`` and loads ``student.safetensors`` into it. Inputs are 1x28x28
images scaled to [0, 1]; outputs are logits over the 10 classes in ``LABELS``.
"""

from torch import nn

LABELS = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
# The four upper-body classes that Fashion-MNIST models confuse most.
HIGH_RISK_CLASSES = [0, 2, 4, 6]


def teacher() -> nn.Module:
    """About 420k parameters: three conv blocks and a wide classifier."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def student() -> nn.Module:
    """About 56k parameters: two small conv blocks and a classifier whose first
    Linear holds most of the weights (so int4 weight-only has something to compress)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    print("teacher", count_parameters(teacher()), "student", count_parameters(student()))
