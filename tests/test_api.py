"""``preciseinv.Inverter``'s inputs: one image or a list, paths, PIL images or tensors, all alike; what cannot be
used is one line (``PreciseInvError``), never an error from deep inside the network."""

import numpy as np
import pytest
import torch
from PIL import Image

from preciseinv import Inverter
from preciseinv.errors import PreciseInvError


@pytest.fixture(scope="module")
def inverter():
    return Inverter("mini", eta=1e-3, max_iters=5)  # the embedded 32 px pixel-space model


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from preciseinv.testing.tiny import write_images

    folder = tmp_path_factory.mktemp("images")
    write_images(folder, ["a.png"], size=40)
    return folder / "a.png"


def test_one_image_in_any_form_is_a_batch_of_one(inverter, photo):
    batch = inverter.load_images([photo])
    assert batch.shape == (1, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1
    pixels = np.asarray(Image.open(photo).convert("RGB"))  # (H, W, 3) uint8
    for one in (photo, str(photo), Image.open(photo), [Image.open(photo)], pixels, [pixels], batch[0], [batch[0]],
                batch):
        torch.testing.assert_close(inverter.load_images(one), batch)
    result = inverter.invert(str(photo))  # not its characters, one file name each
    assert result.latents.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("bad,message", [
    ("/no/such/image.png", "image '/no/such/image.png' is not a file"),
    (torch.rand(32, 32, 3), r"must be \(B, 3, H, W\) or \(3, H, W\), RGB in \[-1, 1\]; got shape \(32, 32, 3\)"),
    (torch.full((1, 3, 32, 32), 255.0), r"values in \[-1, 1\]; got 255 to 255 .*x \* 2 - 1"),
    (torch.full((1, 3, 32, 32), float("nan")), "an image tensor holds NaN or infinite values"),
    ([], "no images given"),
    (np.zeros((8, 8, 3), dtype=np.float32), "a numpy image must be uint8"),
    ([3.0], "an image must be a path, a PIL image, a uint8 numpy array or a tensor; got float"),
    (torch.rand(3, 30, 30) * 2 - 1, r"multiples of 4 for this model; got \(30, 30\)"),  # the mini UNet downsamples twice
])
def test_unusable_images_are_one_line(inverter, bad, message):
    with pytest.raises(PreciseInvError, match=message) as error:
        inverter.invert(bad)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("kwargs,message", [
    ({"model": "/no/such/model"}, r"^model '/no/such/model' does not exist"),
    ({"eta": "small"}, r"^eta must be a number, got 'small'$"),
    ({"eta": 0}, r"^eta must be > 0, got 0"),
    ({"max_iters": -5}, r"^max_iters must be >= 0, got -5$"),
    ({"max_iters": 2.5}, r"^max_iters must be a whole number, got 2\.5$"),
    ({"retry": "spectral", "retry_iters": 0}, r"^retry_iters must be >= 1, got 0$"),
    ({"retry_iters": 50}, r"^retry_iters is the cap of a second solve, and there is none"),
    ({"retry": 42}, r"^retry must be a solver's name \(spectral, adamw\) or an update rule's functools\.partial, "
                    r"got 42$"),
    ({"solver": "spectral", "retry": "spectral"}, r"^the retry solver is the solver itself"),
    ({"retry": "specteral"}, r"^unknown retry 'specteral'; available: adamw, none, spectral$"),
    ({"solver": "adamw", "lr": 0.0}, r"^lr must be > 0, got 0\.0"),
    ({"lr": "fast"}, r"^lr must be a number, got 'fast'$"),
    ({"guidance_scale": "high"}, r"^guidance_scale must be a number, got 'high'$"),
])
def test_a_wrong_argument_is_named_as_the_api_spells_it(kwargs, message):
    """Errors name Inverter's arguments (eta, max_iters, lr, model), not the command line's keys (method.eta,
    model.path) the caller never typed; a string for a number is one line, not a comparison's TypeError."""
    from preciseinv import Inverter

    with pytest.raises(PreciseInvError, match=message) as error:
        Inverter(**{"model": "mini", **kwargs})
    assert "\n" not in str(error.value) and "method." not in str(error.value)


def test_numbers_of_any_kind_and_none_are_taken():
    """numpy and one-element torch scalars are numbers; None keeps the config's value (as before)."""
    from preciseinv import Inverter

    for kwargs, eta, cap in (({"eta": np.float32(1e-2), "max_iters": np.int64(50)}, 1e-2, 50),
                             ({"eta": torch.tensor(1e-2), "max_iters": None, "guidance_scale": None}, 1e-2, 200),
                             ({"eta": None, "lr": np.float64(0.05), "solver": "adamw"}, 1e-3, 200)):
        loop = Inverter("mini", **kwargs).engine.method.loop
        assert loop.eta == pytest.approx(eta) and loop.max_iters == cap and type(loop.eta) is float


def test_a_retry_solver_is_a_name_or_an_update_rule():
    from functools import partial

    from preciseinv import Inverter
    from preciseinv.solvers import FixedPoint, Spectral

    assert Inverter("mini").engine.method.retry is None  # off by default
    method = Inverter("mini", retry="spectral", retry_iters=np.int64(50), max_iters=30).engine.method
    assert method.retry.func is Spectral and method.retry_loop.max_iters == 50 and method.loop.max_iters == 30
    assert method.describe()["retry"] == {"name": "spectral", "alpha_min": 0.1, "alpha_max": 100.0}
    method = Inverter("mini", retry=partial(FixedPoint, momentum=0.0), max_iters=30).engine.method
    assert method.retry.func is FixedPoint and method.retry_loop.max_iters == 30  # default: max_iters
    method = Inverter("mini", retry=partial(FixedPoint), retry_iters=7).engine.method
    assert method.retry.func is FixedPoint and method.retry_loop.max_iters == 7


def test_an_empty_file_is_named_empty(inverter, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(PreciseInvError, match=r"^cannot read image '.*empty.png': the file is empty \(0 bytes\)$"):
        inverter.invert([tmp_path / "empty.png"])


def test_an_unreadable_file_is_one_line_naming_it(inverter, tmp_path):
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(PreciseInvError, match=r"cannot read image '.*fake.png': UnidentifiedImageError"):
        inverter.invert([tmp_path / "fake.png"])


def test_prompts_and_indices_that_do_not_match_the_images_are_one_line(inverter, photo, tmp_path):
    with pytest.raises(PreciseInvError, match=r"2 prompts for 1 image\(s\): give one per image, or one string"):
        inverter.invert([photo], prompts=["a photo", "another"])
    result = inverter.invert([photo, photo], prompts="a photo")  # one string: the prompt of every image
    torch.testing.assert_close(result.latents, inverter.invert([photo, photo], prompts=["a photo"] * 2).latents)
    with pytest.raises(PreciseInvError, match=r"1 target prompts for 2 image\(s\)"):
        inverter.engine.edit(result.latents, ["a painting"], ["a photo", "a photo"])
    with pytest.raises(PreciseInvError, match=r"index 2 is outside this inversion of 2 image\(s\)"):
        inverter.save(tmp_path / "x.safetensors", result, 2)
    inverter.save(tmp_path / "x.safetensors", result, -1, sample_id="last")  # Python's negative index: the last one
    assert (tmp_path / "x.safetensors").is_file()


def test_a_saved_latent_file_keeps_the_prompt_it_was_inverted_with(tiny_sd, tmp_path):
    """``save`` records each image's own prompt unless told another: ``reconstruct_file`` regenerates with it."""
    from preciseinv import reconstruct_file
    from preciseinv.testing.tiny import write_images

    paths = write_images(tmp_path, ["a.png", "b.png"], size=32)
    inv = Inverter(str(tiny_sd), method="ddim", device="cpu")
    res = inv.invert(paths, ["a cat", "a cup"])
    assert inv.model.state_channels == res.latents.shape[1]  # the VAE's latent channels
    inv.save(tmp_path / "b.safetensors", res, 1)
    image, meta = reconstruct_file(tmp_path / "b.safetensors", device="cpu")
    assert meta["prompt"] == "a cup"
    torch.testing.assert_close(image, inv.reconstruct(res.latents, ["a cat", "a cup"])[1], atol=1e-4, rtol=0)
    inv.save(tmp_path / "other.safetensors", res, 1, prompt="a dog")  # told another
    assert reconstruct_file(tmp_path / "other.safetensors", device="cpu")[1]["prompt"] == "a dog"
    assert inv.invert(paths, "a photo").prompts == ["a photo", "a photo"] and inv.invert(paths).prompts == ["", ""]


def test_an_unknown_interpolation_mode_is_one_line(inverter):
    with pytest.raises(PreciseInvError, match="mode must be slerp or lerp, got 'cubic'"):
        inverter.interpolate(torch.zeros(3, 32, 32), torch.ones(3, 32, 32), frames=3, mode="cubic")


def test_edit_with_a_model_without_a_text_encoder_is_one_line(inverter, photo):
    with pytest.raises(PreciseInvError, match="takes no text prompt, so it cannot edit by prompt"):
        inverter.edit([photo], ["a cat"], ["a dog"])


def test_one_latent_is_a_batch_of_one_and_a_latent_of_another_shape_is_one_line(inverter, photo):
    result = inverter.invert(photo)
    torch.testing.assert_close(inverter.reconstruct(result.latents[0]), inverter.reconstruct(result.latents))
    assert inverter.model.state_channels == 3
    for bad, message in ((torch.zeros(1, 4, 32, 32), r"latents must be \(B, 3, h, w\) or \(3, h, w\) for this model; "
                                                     r"got shape \(1, 4, 32, 32\)"),
                         (torch.zeros(32, 32), r"got shape \(32, 32\)"),
                         (torch.zeros(1, 3, 30, 30), r"latent sides must be multiples of 4 for this model")):
        with pytest.raises(PreciseInvError, match=message):
            inverter.reconstruct(bad)


def test_metrics_of_images_of_two_shapes_are_one_line(inverter):
    images = torch.zeros(2, 3, 32, 32)
    assert inverter.metrics(images[0], images[0])["psnr"].shape == (1,)  # one (3, H, W) pair: a batch of one
    with pytest.raises(PreciseInvError, match=r"metrics compare images of one shape.*got \(2, 3, 32, 32\) and "
                                              r"\(3, 3, 32, 32\)"):
        inverter.metrics(images, torch.zeros(3, 3, 32, 32))
