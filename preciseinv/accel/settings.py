"""Speed settings, applied in one place for ``fit``, the Python API and the benchmark.

- TF32 for fp32 matrix products and convolutions on a GPU (always on: the solver's own arithmetic is fp32 and TF32
  loses nothing the residual can see at the paper's eta; the network runs under the preset's autocast anyway);
- ``channels_last`` memory format for a convolutional denoiser (UNets; cuDNN's bf16/fp16 kernels are NHWC);
- ``compile``: ``torch.compile`` of the denoiser's forward in place (the adapter keeps its module, so ``.config``,
  ``.dtype`` and ``.to`` work as on the uncompiled module), with the batch dimension dynamic from the first call and every other
  size static (``batch_dynamic``): the shrinking working set reuses one graph per grad mode and batch range (a batch
  of one has graphs of its own, and a network that branches on its batch, such as diffusers' resampling blocks at
  64 rows, splits the range there). Left to itself, dynamo would compile a static graph first and recompile a
  dynamic one at the second size (docs/benchmarks.md: on this project's CPU, SD1.5's gradient graph's recompile
  took longer than its first compile). ``compile_scope="regional"`` compiles the network's blocks instead
  of the whole network (regional compilation: ``REGIONS``, ResNet and attention blocks of a UNet, the transformer
  blocks of SD3 and FLUX): one graph per distinct block shape, so the compile takes a fraction of the whole
  network's while the fusions inductor finds (GroupNorm + SiLU, the attention block's projections) live inside the
  blocks; the glue between them runs eager. A mode that records CUDA graphs
  (``reduce-overhead``, ``max-autotune``) records one per shape: the model is then marked ``static_shapes`` and the
  solver loop pads its working set to a few bucket sizes (``preciseinv.solvers.buckets``), so the graphs are reused
  across iterations, timesteps and batches;
- ``cudnn_benchmark``: cuDNN times its convolution algorithms at each new input shape and keeps the fastest
  (``torch.backends.cudnn.benchmark``, process-wide, as torch keeps it: a later model in the process inherits it)
  instead of its heuristic pick. A shape's search is paid once per process (cuDNN caches it across batches and
  timesteps), so the working set is not padded for it (padding would cost network work at every iteration;
  ``method.buckets=true`` pads anyway); it cannot be combined with ``torch.use_deterministic_algorithms``
  (Lightning's ``trainer.deterministic=true``);
- the compute precision: ``autocast(device, precision)`` for a preset's ``precision`` (Lightning's names;
  ``bf16-true`` / ``16-true``: no autocast, the weights in half: ``TRUE_HALF``).
"""

from __future__ import annotations

import contextlib
import functools

import torch

from preciseinv.errors import PreciseInvError

AUTOCAST = {"bf16": torch.bfloat16, "bf16-mixed": torch.bfloat16, "fp16": torch.float16, "16-mixed": torch.float16}
# Lightning's "true" half precisions, as this engine runs them: the networks' weights in half with no autocast
# (GroupNorm and softmax in half too), the solver in fp32 (Lightning alone would make eps* half as well)
TRUE_HALF = {"bf16-true": "bfloat16", "16-true": "float16"}
PRECISIONS = ("32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", *TRUE_HALF)  # Lightning's names run here


def check_precision(precision, also: tuple[str, ...] = ()) -> str:
    """The precision's name (None: 32-true); one that this engine does not run is one line."""
    name = "32-true" if precision is None else str(precision)
    if name not in PRECISIONS and name not in also:
        raise PreciseInvError(f"precision={name} is not one this engine runs: 32-true; 16-mixed or bf16-mixed "
                              "(autocast); 16-true or bf16-true (weights in half, the solver in fp32)")
    return name


def configure_backends() -> None:
    """TF32 matmuls and convolutions (no effect on a CPU). Idempotent."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")


def autocast(device: torch.device | str, precision: str):
    """The autocast context of a precision name (``bf16-mixed``, ``16-mixed``, ``bf16``, ``fp16``; anything else:
    fp32, no autocast)."""
    dtype = AUTOCAST.get(str(precision))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_options(compile: bool | str) -> dict:
    """``torch.compile`` keyword arguments of a ``model.compile`` value: true (inductor, default mode), a mode name,
    or a backend name (``eager``, ``aot_eager``: dynamo without inductor, to debug graph breaks)."""
    if compile is True or str(compile).lower() == "true":
        return {}
    name = str(compile)
    if name in MODES:
        return {"mode": name}
    backends = torch._dynamo.list_backends(exclude_tags=())
    if name in backends:
        return {"backend": name}
    raise PreciseInvError(f"model.compile must be true, false, a mode ({', '.join(MODES)}) or a torch.compile "
                          f"backend (inductor, eager, aot_eager, cudagraphs, ...); got {name!r}")


def uses_cuda_graphs(compile: bool | str) -> bool:
    """Whether a ``model.compile`` value records CUDA graphs (one per input shape: the solver then pads its working
    set to bucket sizes). Plain inductor compiles a dynamic batch dimension after the second size it meets and
    needs no padding."""
    options = compile_options(compile) if compile else {}
    return options.get("mode") in ("reduce-overhead", "max-autotune") or options.get("backend") == "cudagraphs"


SCOPES = ("full", "regional")
# the blocks ``compile_scope="regional"`` compiles (the outermost of each, with the network's own
# ``_repeated_blocks``): a UNet's ResNet, attention (Transformer2DModel), down- and upsampling blocks (SD1.x, SD2.x,
# SDXL, the pixel-space models); SD3's and FLUX's transformer blocks
REGIONS = ("ResnetBlock2D", "Transformer2DModel", "Downsample2D", "Upsample2D", "JointTransformerBlock",
           "FluxTransformerBlock", "FluxSingleTransformerBlock")


def accelerate(model, compile: bool | str = False, channels_last: bool = False, scope: str = "full",
               cudnn_benchmark: bool = False):
    """Apply the speed settings to a ``DiffusionModel``'s denoiser, in place; returns the model.

    ``compile``: False, True (torch.compile's default mode), a mode name (``"max-autotune-no-cudagraphs"``,
    ``"reduce-overhead"``: CUDA graphs, one per working-set bucket size) or a backend name (``compile_options``);
    ``scope``: ``"full"`` (the whole denoiser) or ``"regional"`` (its blocks: ``regions``); ``cudnn_benchmark``:
    cuDNN's timed choice of convolution algorithms, per shape."""
    accelerate_module(model.modules[model.denoiser_name], compile, channels_last, scope, cudnn_benchmark)
    model.static_shapes = uses_cuda_graphs(compile)  # the solver loop pads its working set (solvers/buckets.py)
    return model


def accelerate_module(denoiser: torch.nn.Module, compile: bool | str = False, channels_last: bool = False,
                      scope: str = "full", cudnn_benchmark: bool = False):
    """``accelerate`` for a bare network (the benchmark's random-weight denoisers)."""
    options = compile_options(compile) if compile else {}  # a bad name fails here, before anything is changed
    if scope not in SCOPES:
        raise PreciseInvError(f"model.compile_scope must be {' or '.join(SCOPES)}; got {scope!r}")
    blocks = regions(denoiser) if compile and scope == "regional" else []  # none found fails here too
    configure_backends()
    if cudnn_benchmark:  # process-wide, as torch keeps it; never switched off here (another model may want it)
        if torch.are_deterministic_algorithms_enabled():
            raise PreciseInvError("model.cudnn_benchmark=true times cuDNN's algorithms, which deterministic "
                                  "algorithms (trainer.deterministic=true) forbid: set one of them to false")
        torch.backends.cudnn.benchmark = True
    if channels_last and any(isinstance(m, torch.nn.Conv2d) for m in denoiser.modules()):
        denoiser.to(memory_format=torch.channels_last)
    if compile and not getattr(denoiser, "_preciseinv_compiled", False):
        # room for the (batch range, grad mode) graphs: dynamo falls back to eager after 8 recompilations of one
        # code object by default, and a regional compile meets every shape of a block class under one
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.7
        setattr(config, name, max(getattr(config, name), 64, 8 * len(blocks)))
        for module in blocks or [denoiser]:  # static shapes but the batch: the working set shrinks, nothing else
            module.forward = batch_dynamic(torch.compile(module.forward, dynamic=False, **options))
        denoiser._preciseinv_compiled = True
    return denoiser


def regions(denoiser: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks a regional compile compiles: the outermost submodules whose class is in ``REGIONS`` or the
    network's ``_repeated_blocks``. None is one line."""
    names = set(REGIONS) | set(getattr(denoiser, "_repeated_blocks", None) or ())
    found = []

    def walk(module):
        for child in module.children():
            if type(child).__name__ in names:
                found.append(child)
            else:
                walk(child)

    walk(denoiser)
    if not found:
        raise PreciseInvError(f"model.compile_scope=regional: {type(denoiser).__name__} has none of the blocks "
                              f"it compiles ({', '.join(sorted(names))}); use model.compile_scope=full")
    return found


def batch_dynamic(fn):
    """``fn`` (a compiled network or block) with the batch dimension of its tensor arguments (nested ones too:
    SDXL's ``added_cond_kwargs``) marked dynamic before each call: one graph serves the working-set sizes of a batch
    range (the network's own tests of its batch bound the range). The batch is the first tensor's first dimension;
    a tensor whose first dimension differs (FLUX's position ids and rotary table) stays static, as do channels and
    spatial sizes."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        leaves = torch.utils._pytree.tree_leaves((args, kwargs))
        tensors = [a for a in leaves if isinstance(a, torch.Tensor) and a.dim()]
        batch = tensors[0].shape[0] if tensors else 1
        if batch > 1:  # dynamo specialises sizes 0 and 1: a batch of one has a graph of its own
            for tensor in tensors:
                if tensor.shape[0] == batch:
                    torch._dynamo.maybe_mark_dynamic(tensor, 0)
        return fn(*args, **kwargs)

    return call
