"""One LightningModule per family, named after its paper."""

from ganzoo.models.base import GenerativeModel
from ganzoo.models.gan import GAN

__all__ = ["GAN", "GenerativeModel"]
