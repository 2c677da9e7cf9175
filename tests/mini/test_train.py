"""The embedded mini model's recipe (``python -m preciseinv.mini.train``) and its held-out demo images: the
recipe writes a pipeline the engine loads, a stopped run resumes to the very weights of an unstopped one, and the
shipped images are what ``export_demo_images`` makes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from preciseinv.mini import train as recipe
from preciseinv.mini.images import DEMO_IMAGES, TRAIN_IMAGES, export_demo_images, skimage_image

ASSETS = Path(recipe.__file__).resolve().parent.parent / "assets"


def unet_weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(out / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")


def test_the_recipe_writes_the_architecture_that_ships():
    """The shipped model is the recipe's network (same parameter names and shapes: 1.06 M parameters)."""
    from safetensors.torch import load_file

    shipped = load_file(ASSETS / "mini-ddpm" / "unet" / "diffusion_pytorch_model.safetensors")
    built = recipe.build_unet().state_dict()
    assert {k: tuple(v.shape) for k, v in built.items()} == {k: tuple(v.shape) for k, v in shipped.items()}
    assert 1.0e6 < sum(v.numel() for v in built.values()) < 1.1e6


def test_random_crops_are_32px_in_range_and_seeded():
    a, b = recipe.RandomCrops(seed=3).sample(5), recipe.RandomCrops(seed=3).sample(5)
    assert a.shape == (5, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, recipe.RandomCrops(seed=4).sample(5))
    assert not set(DEMO_IMAGES) & set(TRAIN_IMAGES)  # the default run inverts images the model never saw
    images = recipe.RandomCrops().images  # the training set: every TRAIN_IMAGES entry, in [-1, 1]
    assert len(images) == len(TRAIN_IMAGES) and all(i.min() >= -1 and i.max() <= 1 for i in images)


def test_learning_rate_warms_up_then_decays_to_its_floor():
    lrs = [recipe.lr_at(s, total=1000, peak=1e-3, floor=1e-4, warmup=200) for s in range(1000)]
    assert lrs[0] == pytest.approx(5e-6) and lrs[199] == pytest.approx(1e-3)
    assert all(x >= y for x, y in zip(lrs[200:], lrs[201:])) and lrs[-1] == pytest.approx(1e-4, rel=1e-3)


def test_a_stopped_training_resumes_to_the_unstopped_weights(tmp_path):
    """``--max-minutes 0`` stops after one step (pipeline and train_state.pt saved); the same command resumes from
    the state and ends with the weights of a run that never stopped; the pipeline loads and inverts."""
    kwargs = dict(steps=4, batch_size=2, lr=1e-3, seed=0, save_every=100)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same kernels in both runs: bitwise-equal weights
    try:
        with torch.random.fork_rng():  # train() seeds torch's global generator: other tests keep theirs
            recipe.train(tmp_path / "straight", max_minutes=float("inf"), **kwargs)
            recipe.train(tmp_path / "stopped", max_minutes=0.0, **kwargs)
            assert torch.load(tmp_path / "stopped" / "train_state.pt", weights_only=False)["step"] == 1
            recipe.train(tmp_path / "stopped", max_minutes=float("inf"), **kwargs)
    finally:
        torch.set_num_threads(threads)
    straight, resumed = unet_weights(tmp_path / "straight"), unet_weights(tmp_path / "stopped")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert not (tmp_path / "stopped" / "pipeline.tmp").exists()  # saved atomically

    from preciseinv.engine import InversionEngine
    from preciseinv.methods import PreciseInv
    from preciseinv.models import load_model

    model = load_model(str(tmp_path / "stopped" / "pipeline"))
    images = recipe.RandomCrops(seed=1).sample(2)
    _, result = InversionEngine(model, PreciseInv(eta=1e-3, max_iters=20), 2).invert(images)
    assert result.latent.shape == (2, 3, 32, 32) and torch.isfinite(result.latent).all()


def test_the_shipped_demo_images_are_the_exported_ones(tmp_path):
    paths = export_demo_images(tmp_path)
    assert [p.stem for p in paths] == list(DEMO_IMAGES)
    for path in paths:
        made, shipped = (np.asarray(Image.open(p).convert("RGB")) for p in (path, ASSETS / "images" / path.name))
        assert made.shape == shipped.shape == (128, 128, 3)
        assert np.abs(made.astype(int) - shipped.astype(int)).max() <= 1  # Pillow's resampling across versions


def test_every_training_image_is_bundled_with_scikit_image():
    for name in TRAIN_IMAGES:
        image = skimage_image(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 32
    from preciseinv.errors import PreciseInvError

    with pytest.raises(PreciseInvError, match="bundles no sample image 'lena'"):  # a release without it: one line
        skimage_image("lena")
