"""ganzoo: GAN families implemented faithfully, trained under one roof, compared honestly."""

__version__ = "0.1.0"

from ganzoo import config as _config  # noqa: E402,F401  (registers the OmegaConf resolvers)
