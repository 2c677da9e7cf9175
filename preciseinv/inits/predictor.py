"""The network that predicts a step's solution: a small UNet g(inputs, t), in pure torch.

It is sized by the diffusion model's state shape (C, h, w): ``in_channels`` and ``out_channels`` follow C, and
it keeps a resolution level only while both sides still halve evenly (a 32-px pixel state and a 64-px SD latent
take every level of ``mults``; a 4-px state one). At the defaults (``configs/predictor/small_unet.yaml``: width
32, mults (1, 2)) it has about 0.3 M parameters, against the mini DDPM's 1.06 M and SD1.5's 860 M.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, dim) sinusoidal features of timesteps t (B,) on the diffusion model's 0..1000 scale."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the timestep's features added in between, and a skip connection."""

    def __init__(self, cin: int, cout: int, emb: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(math.gcd(groups, cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(math.gcd(groups, cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]  # (B, cout, h, w)
        return self.conv2(F.silu(self.norm2(h))) + self.skip(x)


class SmallUNet(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, state_size: tuple[int, int] = (32, 32),
                 width: int = 32, mults: tuple[int, ...] = (1, 2), groups: int = 8):
        super().__init__()
        levels = 1
        while levels < len(mults) and all(side % 2 ** levels == 0 and side >> levels >= 4 for side in state_size):
            levels += 1
        chans = [width * m for m in mults[:levels]]
        self.width, emb = width, 4 * width
        self.embed = nn.Sequential(nn.Linear(width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(in_channels, width, 3, padding=1)
        self.down, c = nn.ModuleList(), width
        for ch in chans:
            self.down.append(ResBlock(c, ch, emb, groups))
            c = ch
        self.mid = ResBlock(c, c, emb, groups)
        self.up = nn.ModuleList()
        for ch in reversed(chans):
            self.up.append(ResBlock(c + ch, ch, emb, groups))
            c = ch
        self.out = nn.Sequential(nn.GroupNorm(math.gcd(groups, c), c), nn.SiLU(), nn.Conv2d(c, out_channels, 3,
                                                                                           padding=1))
        nn.init.zeros_(self.out[-1].weight)  # untrained, it predicts zero: the start it corrects
        nn.init.zeros_(self.out[-1].bias)
        self.size_multiple = 2 ** (levels - 1)  # what its input's sides must be a multiple of (each level halves)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, in_channels, h, w), t (B,) timesteps -> (B, out_channels, h, w)."""
        emb = self.embed(timestep_embedding(t, self.width))  # (B, 4 width)
        h, skips = self.inp(x), []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.down) - 1:
                h = F.avg_pool2d(h, 2)
        h = self.mid(h, emb)
        for i, block in enumerate(self.up):
            if i:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


def predicted_state(net: nn.Module, sampler, k: int, x_prev: torch.Tensor, x_ddim: torch.Tensor,
                    eps_ddim: torch.Tensor) -> torch.Tensor:
    """The learned start of step k, x_ddim + sqrt(1 - a_k) g([x*_{k-1}, eps_ddim], t_k) (B, C, h, w): the predictor
    corrects the DDIM start's noise eps_ddim (B, C, h, w) given the state below x*_{k-1} (B, C, h, w); a zero
    correction is the DDIM start exactly. Training and inference both call this."""
    t = torch.full((x_prev.shape[0],), float(sampler.schedule.timesteps[k]), device=x_prev.device)  # (B,)
    correction = net(torch.cat([x_prev, eps_ddim], dim=1).float(), t).float()  # (B, C, h, w), in noise units
    return x_ddim + sampler.state_gain(k) * correction


FORMAT = "preciseinv-predictor/1"
WEIGHTS, INFO = "predictor.safetensors", "predictor.json"


def save_predictor(folder, net: nn.Module, info: dict) -> None:
    """The weights (safetensors) and ``info`` (the identity of the model it was trained for, the network's config,
    the training's figures) in ``folder``, each written atomically, the weights first: a folder with
    predictor.json is complete."""
    import json
    from pathlib import Path

    from safetensors.torch import save

    from preciseinv.outputs.atomic import atomic_write_bytes

    state = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(Path(folder) / WEIGHTS, save(state, metadata={"format": FORMAT}))
    atomic_write_bytes(Path(folder) / INFO, json.dumps({"format": FORMAT, **info}, indent=2).encode())


def load_predictor(folder) -> tuple[nn.Module, dict]:
    """(the network in eval mode, its info) of a folder ``save_predictor`` wrote; anything else is one line."""
    import json
    from pathlib import Path

    from hydra.utils import instantiate
    from safetensors.torch import load_file

    from preciseinv.errors import PreciseInvError

    folder = Path(folder).expanduser()
    if not (folder / INFO).is_file() or not (folder / WEIGHTS).is_file():
        raise PreciseInvError(f"init.path={str(folder)!r} holds no trained predictor ({INFO} and {WEIGHTS}): give "
                              "the output_dir of python -m preciseinv.learn_init")
    info = json.loads((folder / INFO).read_text())
    if info.get("format") != FORMAT:
        raise PreciseInvError(f"{str(folder / INFO)!r} is not a predictor of this version (format "
                              f"{info.get('format')!r}, expected {FORMAT!r}): train it again with learn_init")
    net = instantiate(info["network"])
    net.load_state_dict(load_file(str(folder / WEIGHTS)))
    return net.eval().requires_grad_(False), info
