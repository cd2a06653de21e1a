"""A small convnet classifier: the domain feature network of the evaluation suite.

Two conv stages (conv 3x3, BatchNorm, ReLU, conv 3x3, BatchNorm, ReLU, 2x2 max-pool), then a
fully connected feature layer and a linear head. Its feature layer is what domain FID / KID /
precision / recall are measured in; its head gives the classifier score and label histograms.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ConvClassifier(nn.Module):
    """``(N, channels, image_size, image_size)`` images in [0, 1] to ``(N, num_classes)`` logits.

    Args:
        channels, image_size: input geometry (``image_size`` divisible by ``2 ** len(widths)``).
        num_classes: outputs of the head.
        widths: channels of each conv stage; each stage halves the resolution.
        feature_dim: size of the feature layer (``features(x)``).
        dropout: dropout before the head (training only).
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64),
        feature_dim: int = 128,
        dropout: float = 0.3,
    ):
        super().__init__()
        if image_size % 2 ** len(widths):
            raise ValueError(
                f"image_size={image_size} must be divisible by 2**{len(widths)} "
                "(one halving per width)"
            )
        stages, c_in = [], channels
        for width in widths:
            stages.append(_stage(c_in, width))
            c_in = width
        side = image_size // 2 ** len(widths)
        self.body = nn.Sequential(*stages, nn.Flatten())
        self.feature = nn.Sequential(
            nn.Linear(c_in * side * side, feature_dim), nn.ReLU(inplace=True)
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))
        self.num_features = feature_dim
        self.num_classes = num_classes

    def features(self, x: Tensor) -> Tensor:
        """``(N, feature_dim)`` activations of the feature layer."""
        return self.feature(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
