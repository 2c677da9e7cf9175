"""Tiny random-weight diffusers models built from configs, saved with ``save_pretrained`` (no Hub access).

For tests, the notebook and anyone trying the pipeline without downloading a model; their outputs mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character table, which CLIP's BPE works on."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def clip_tokenizer():
    """A byte-level CLIP tokenizer with every byte symbol in its vocabulary (nothing downloaded)."""
    from transformers import CLIPTokenizer

    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    for merge in ("t h", "th e</w>", "a n", "o n"):
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=[("t", "h"), ("th", "e</w>"), ("a", "n"), ("o", "n")],
                         model_max_length=77)


def _text_config(tokenizer, hidden: int = 32, projection: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, hidden_size=hidden, intermediate_size=37,
                          num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer),
                          projection_dim=projection or hidden, max_position_embeddings=77)


def _tiny_vae(**extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4,
                         norm_num_groups=2, down_block_types=["DownEncoderBlock2D"] * 2,
                         up_block_types=["UpDecoderBlock2D"] * 2, **extra)


def _calm(unet, scale: float = 0.1):
    """Scale the output layer by ``scale``: 0.1 keeps mu well conditioned, as in a trained model; 1.0 leaves the
    network as initialised (a far harder inversion: the held-out solver suite's ``raw`` models)."""
    with torch.no_grad():
        unet.conv_out.weight.mul_(scale)
        unet.conv_out.bias.mul_(scale)
    return unet


def save_tiny_lcm(folder: Path, seed: int = 0, width: int = 1, layers: int = 1,
                  output_scale: float = 0.1) -> Path:
    """An LCM-distilled-SD-shaped pipeline: the SD UNet with a guidance embedding (time_cond_proj_dim), LCMScheduler."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler

    sd = save_tiny_sd(folder, seed=seed, time_cond_proj_dim=256, width=width, layers=layers,
                      output_scale=output_scale)
    from diffusers import StableDiffusionPipeline

    base = StableDiffusionPipeline.from_pretrained(sd)
    scheduler = LCMScheduler.from_config(base.scheduler.config)
    pipe = LatentConsistencyModelPipeline(unet=base.unet, vae=base.vae, text_encoder=base.text_encoder,
                                          tokenizer=base.tokenizer, scheduler=scheduler, safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    out = folder / "tiny-lcm"
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def save_tiny_sd(folder: Path, prediction_type: str = "epsilon", seed: int = 0, time_cond_proj_dim=None,
                 width: int = 1, layers: int = 1, output_scale: float = 0.1) -> Path:
    """A Stable-Diffusion-1.x-shaped pipeline (16 px latents, 32 px images) saved as a diffusers directory.

    ``prediction_type="v_prediction"`` gives the SD2.x (768-v) flavour; ``width`` multiplies the UNet's channels and
    ``layers`` is its layers per block (other sizes of the same family); ``output_scale`` multiplies the output
    layer (``_calm``)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4 * width, 8 * width), layers_per_block=layers, sample_size=16, in_channels=4, out_channels=4,
        cross_attention_dim=32, norm_num_groups=2, attention_head_dim=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        time_cond_proj_dim=time_cond_proj_dim,
    )
    _calm(unet, output_scale)
    vae = _tiny_vae()
    tokenizer = clip_tokenizer()
    text_encoder = CLIPTextModel(_text_config(tokenizer)).eval()
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    out = folder / f"tiny-sd-{prediction_type}{'-tcond' if time_cond_proj_dim else ''}"
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def save_tiny_sdxl(folder: Path, seed: int = 0, turbo: bool = False, width: int = 1, layers: int = 1,
                   output_scale: float = 0.1) -> Path:
    """An SDXL-shaped pipeline: two CLIP encoders (the second with projection), text_time added conditioning,
    a VAE with ``force_upcast``, SDXL's Euler scheduler config (``turbo``: SDXL-Turbo's ancestral Euler with
    trailing timesteps); ``width`` and ``layers`` as for ``save_tiny_sd``."""
    from diffusers import (EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionXLPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = _calm(UNet2DConditionModel(
        block_out_channels=(4 * width, 8 * width), layers_per_block=layers, sample_size=16, in_channels=4,
        out_channels=4, cross_attention_dim=64, norm_num_groups=2, attention_head_dim=2, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    ), output_scale)
    tokenizer = clip_tokenizer()
    scheduler = (EulerAncestralDiscreteScheduler if turbo else EulerDiscreteScheduler)(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="trailing" if turbo else "leading")
    pipe = StableDiffusionXLPipeline(
        unet=unet, vae=_tiny_vae(force_upcast=True), scheduler=scheduler, tokenizer=tokenizer, tokenizer_2=tokenizer,
        text_encoder=CLIPTextModel(_text_config(tokenizer)).eval(),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer)).eval())
    out = folder / ("tiny-sdxl-turbo" if turbo else "tiny-sdxl")
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def t5_tokenizer():
    """A T5 tokenizer from a SentencePiece unigram model trained here, in memory (nothing downloaded)."""
    import io

    import sentencepiece as spm
    from transformers import T5Tokenizer

    text = ["a photo of a cat", "a painting of a dog", "the quick brown fox jumps over the lazy dog"] * 20
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=model, vocab_size=60, pad_id=0,
                                   eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
    proto = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(proto.id_to_piece(i), proto.get_score(i)) for i in range(proto.get_piece_size())]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def save_tiny_sd3(folder: Path, seed: int = 0, with_t5: bool = True, width: int = 1, layers: int = 1,
                  output_scale: float = 0.1) -> Path:
    """An SD3-shaped pipeline: SD3Transformer2DModel, two CLIP encoders with projection, an optional tiny T5,
    a flow-matching Euler scheduler (shift 3), a VAE with shift and scaling factors; ``width`` multiplies the
    attention heads, ``layers`` is the number of joint blocks."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=1, in_channels=4, num_layers=layers,
                                        attention_head_dim=8, num_attention_heads=4 * width,
                                        caption_projection_dim=32 * width,
                                        joint_attention_dim=32, pooled_projection_dim=64, out_channels=4)
    with torch.no_grad():  # small velocity: a well-conditioned mu, as in a trained model
        transformer.proj_out.weight.mul_(output_scale)
    tokenizer = clip_tokenizer()
    clip = lambda: CLIPTextModelWithProjection(_text_config(tokenizer, hidden=16, projection=32)).eval()  # noqa: E731
    t5 = t5_tok = None
    if with_t5:
        t5_tok = t5_tokenizer()
        t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_ff=37, d_kv=8, num_layers=1,
                                     num_heads=4, pad_token_id=0, eos_token_id=1)).eval()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_tiny_vae(shift_factor=0.0609, scaling_factor=1.5035), text_encoder=clip(), tokenizer=tokenizer,
        text_encoder_2=clip(), tokenizer_2=tokenizer, text_encoder_3=t5, tokenizer_3=t5_tok)
    out = folder / ("tiny-sd3" if with_t5 else "tiny-sd3-no-t5")
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def save_tiny_flux(folder: Path, seed: int = 0, guidance: bool = False, width: int = 1, layers: int = 1,
                   output_scale: float = 0.1) -> Path:
    """A FLUX.1-shaped pipeline ([schnell]-shaped; ``guidance=True``: [dev]-shaped, with the guidance embedding):
    FluxTransformer2DModel on 2x2-packed latents, CLIP (pooled) + a tiny T5 (sequence), a VAE without quant convs,
    a flow-matching Euler scheduler with resolution-dependent shifting; ``width`` multiplies the attention heads,
    ``layers`` is the number of double and of single blocks."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=layers, num_single_layers=layers,
                                         attention_head_dim=16, num_attention_heads=2 * width, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=guidance)
    with torch.no_grad():  # small velocity: a well-conditioned mu, as in a trained model
        transformer.proj_out.weight.mul_(output_scale)
    tokenizer, t5_tok = clip_tokenizer(), t5_tokenizer()
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_ff=37, d_kv=8, num_layers=1, num_heads=4,
                                 pad_token_id=0, eos_token_id=1)).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(transformer=transformer, scheduler=scheduler,
                        vae=_tiny_vae(shift_factor=0.1159, scaling_factor=0.3611, use_quant_conv=False,
                                      use_post_quant_conv=False),
                        text_encoder=CLIPTextModel(_text_config(tokenizer, hidden=32)).eval(), tokenizer=tokenizer,
                        text_encoder_2=t5, tokenizer_2=t5_tok)
    out = folder / ("tiny-flux-dev" if guidance else "tiny-flux")
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def save_tiny_sd35(folder: Path, seed: int = 0) -> Path:
    """An SD3.5-shaped pipeline: the SD3 recipe with the scheduler's resolution-dependent shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    base = StableDiffusion3Pipeline.from_pretrained(save_tiny_sd3(folder / "base", seed))
    base.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                     max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    out = folder / "tiny-sd35"
    base.save_pretrained(out, safe_serialization=True)
    return out


def save_tiny_lora(base: Path, folder: Path, seed: int = 1) -> Path:
    """Random LoRA weights (rank 2, attention projections) for a tiny SD's UNet, in diffusers' LoRA format:
    the shape of an LCM-LoRA."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    out = folder / "tiny-lora"
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=get_peft_model_state_dict(unet),
                                              safe_serialization=True)
    return out


def save_tiny_pixel(folder: Path, seed: int = 0, clip_sample: bool = False, width: int = 1, layers: int = 1,
                    output_scale: float = 0.1) -> Path:
    """A tiny pixel-space DDPMPipeline (16 px); ``width`` multiplies the UNet's channels, ``layers`` is its layers
    per block."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = _calm(UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=layers,
                             block_out_channels=(8 * width, 16 * width), norm_num_groups=4,
                             down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")),
                 output_scale)
    out = folder / "tiny-pixel"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(clip_sample=clip_sample)).save_pretrained(out, safe_serialization=True)
    return out


def write_images(folder: Path, names: list[str], size: int = 48, seed: int = 0) -> list[Path]:
    """Smooth random RGB images (PNG) for end-to-end runs."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        base = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
        img = Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        paths.append(path)
    return paths


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A CLIP-shaped model and processor (random weights) for the editing metrics' tests."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPVisionConfig

    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    text = _text_config(tokenizer, hidden=32, projection=16)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                              image_size=32, patch_size=8, projection_dim=16)
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)).eval()
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    out = folder / "tiny-clip"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def save_tiny_dino(folder: Path, seed: int = 0) -> Path:
    """A DINO-ViT-shaped model (random weights) for the structure distance's tests."""
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    model = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                               image_size=32, patch_size=8), add_pooling_layer=False).eval()
    out = folder / "tiny-dino"
    model.save_pretrained(out)
    return out


def save_tiny_predictor(folder: Path, identity: dict, output_scale: float = 0.0, seed: int = 0) -> Path:
    """An untrained start predictor (``init=learned init.path=<folder>``) for the model ``identity`` names
    (``preciseinv.inits.learned.identity``): with ``output_scale`` 0 it predicts the DDIM start itself, with a
    small one a random correction, better than the DDIM start for some samples and worse for others."""
    from preciseinv.inits.predictor import SmallUNet, save_predictor

    torch.manual_seed(seed)
    C, h, w = identity["state_shape"]
    network = {"_target_": "preciseinv.inits.predictor.SmallUNet", "in_channels": 2 * C, "out_channels": C,
               "state_size": [h, w], "width": 8, "mults": [1], "groups": 4}
    net = SmallUNet(**{k: v for k, v in network.items() if k != "_target_"})
    if output_scale:
        torch.nn.init.normal_(net.out[-1].weight, std=output_scale)
    folder.mkdir(parents=True, exist_ok=True)
    save_predictor(folder, net, {"identity": identity, "network": network, "trained": {}})
    return folder
