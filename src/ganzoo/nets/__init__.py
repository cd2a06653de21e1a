"""Plain ``nn.Module`` networks: no optimizers, no losses, no training steps.

Discriminators output logits of shape ``(N,)``; generators output samples shaped like the data.
"""

from ganzoo.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from ganzoo.nets.infogan import InfoGANDiscriminator, InfoGANGenerator
from ganzoo.nets.mlp import MLPDiscriminator, MLPGenerator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "InfoGANDiscriminator",
    "InfoGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
]
