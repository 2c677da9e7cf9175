"""How an image becomes the clean state x0 that the inversion starts from (``encoder=`` in the config).

- ``mean`` (default): the VAE encoder's posterior mean (the identity for pixel models).
- ``decoder_inversion``: the latent the decoder maps closest to the image, z* = argmin ||D(z) - x||^2, from the
  posterior mean (Hong et al., ICLR 2024): the reconstruction decode(sample(x*_T)) can then beat the autoencoder
  round trip decode(encode(x)), the ceiling of every inversion that starts from the mean.
"""

from preciseinv.encoders.decoder_inversion import DecoderInversion, DecoderSubproblem
from preciseinv.encoders.mean import Encoding, PosteriorMean

__all__ = ["DecoderInversion", "DecoderSubproblem", "Encoding", "PosteriorMean"]
