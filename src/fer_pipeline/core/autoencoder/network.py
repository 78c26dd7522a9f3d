"""The convolutional autoencoder for 48x48 faces (``ConvAutoencoder``) and its file.

Plain PyTorch: a few stride-2 convolutions down to a latent vector and their mirror back up. An
autoencoder file (``save_autoencoder`` / ``load_autoencoder``) holds ``autoencoder_bundle``: the
constructor arguments and the CPU weights, loadable with ``weights_only=True``. Its training is
``core.autoencoder.training``; latent-space oversampling is ``core.autoencoder.oversampling``.

Only torch / numpy / stdlib at module level (the GPU box may lack the rest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.classes import IMAGE_SIZE
from fer_pipeline.core.model_files import load_weights, not_a_model, read_bundle
from fer_pipeline.files import atomic_path

#: Where an autoencoder file comes from (the catalog's ``autoencoder_model``).
AUTOENCODER_ORIGIN = "autoencoders are written by `kedro run --pipelines autoencoder` (data/06_models/autoencoder.pt)"


# --------------------------------------------------------------------------------------- model
def _conv_block(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.2, inplace=True),
    )


def _deconv_block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=False),  # doubles H and W
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.2, inplace=True),
    )


class ConvAutoencoder(nn.Module):
    """(B,1,48,48) floats in [0,1] -> latent (B, latent_dim) -> (B,1,48,48) in [0,1] (sigmoid).

    Encoder: stride-2 convolutions 48 -> 24 -> 12 -> 6 with c, 2c, 4c channels (c =
    base_channels), then a linear layer to the latent vector. The decoder mirrors it with
    stride-2 transposed convolutions (last one to c/2 channels) and a 3x3 output convolution.
    """

    def __init__(self, latent_dim: int = 128, base_channels: int = 32) -> None:
        super().__init__()
        if latent_dim < 1 or base_channels < 1:
            raise ValueError("latent_dim and base_channels must be positive")
        self.latent_dim = int(latent_dim)
        self.base_channels = int(base_channels)
        c = self.base_channels
        self._bottleneck_shape = (4 * c, IMAGE_SIZE // 8, IMAGE_SIZE // 8)
        bottleneck = 4 * c * (IMAGE_SIZE // 8) ** 2
        # strided convolutions; at full resolution only the thin output layers: ~25 MMAC per face
        self.encoder = nn.Sequential(
            _conv_block(1, c, 4, 2, 1),  # 24
            _conv_block(c, 2 * c, 4, 2, 1),  # 12
            _conv_block(2 * c, 4 * c, 4, 2, 1),  # 6
            nn.Flatten(),
            nn.Linear(bottleneck, self.latent_dim),
        )
        self.decoder_input = nn.Sequential(nn.Linear(self.latent_dim, bottleneck), nn.LeakyReLU(0.2, inplace=True))
        self.decoder = nn.Sequential(
            _deconv_block(4 * c, 2 * c),  # 12
            _deconv_block(2 * c, c),  # 24
            _deconv_block(c, max(c // 2, 1)),  # 48
            nn.Conv2d(max(c // 2, 1), 1, 3, 1, 1),
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B,1,48,48) -> (B, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B,1,48,48) in [0,1]."""
        return self.decoder(self.decoder_input(z).view(-1, *self._bottleneck_shape))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    def config(self) -> dict:
        """Constructor arguments as plain Python types (stored next to the weights)."""
        return {"latent_dim": self.latent_dim, "base_channels": self.base_channels}


def autoencoder_bundle(model: ConvAutoencoder) -> dict[str, Any]:
    """``{"config", "state_dict"}`` with CPU tensors: what an autoencoder file holds."""
    return {"config": model.config(),
            "state_dict": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}}


def save_autoencoder(path: str | Path, model: ConvAutoencoder) -> None:
    """``torch.save(autoencoder_bundle(model))``, atomically (``files.atomic_path``), loadable with
    weights_only=True."""
    with atomic_path(path) as tmp:
        torch.save(autoencoder_bundle(model), tmp)


def load_autoencoder(path: str | Path, map_location: str | torch.device = "cpu") -> ConvAutoencoder:
    """Inverse of ``save_autoencoder``; the model comes back in eval mode. ``ModelFileError`` for
    any other file (``core.model_files.read_bundle``)."""
    payload = read_bundle(path, AUTOENCODER_ORIGIN)
    try:
        model = ConvAutoencoder(**payload["config"])
    except (TypeError, ValueError) as error:  # a bundle, but its config is not this autoencoder's
        raise not_a_model(path, f"its config is not this project's autoencoder: {error}", AUTOENCODER_ORIGIN) from error
    load_weights(model, payload["state_dict"], path, AUTOENCODER_ORIGIN)
    return model.to(map_location).eval()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B,1,H,W) decoder output, floats in [0,1] -> uint8 (B,H,W)."""
    return x.float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8).squeeze(1).cpu().numpy()


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s weights."""
    return next(model.parameters()).device
