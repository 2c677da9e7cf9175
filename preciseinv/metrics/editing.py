"""Editing metrics (PIE-Bench's protocol, Ju et al., ICLR 2024): background preservation outside the edit mask, and,
where the weights load, CLIP similarity of the edit to its target prompt (whole image and edited region) and the
DINO-ViT structure distance between the source and the edit.

Images are (B, 3, H, W) in [-1, 1]; ``mask`` (B, 1, H, W) is 1 on the region the edit may change.

- Background PSNR / MSE / SSIM are averaged over the unedited pixels only. (PIE-Bench's own script multiplies both
  images by the mask and averages over every pixel, zeros included, which adds 10 log10(1 / unedited fraction) dB
  to its PSNR; ours is the PSNR of the pixels that should not change.)
- Background LPIPS compares the two images with the edited region blacked out in both, as PIE-Bench does.
- CLIP similarity: 100 x cosine(image embedding, prompt embedding), floored at 0 (torchmetrics' CLIPScore), on
  the whole edit and on the edit with the unedited region blacked out.
- Structure distance: the mean squared difference between the self-similarity matrices of the last-layer keys of
  DINO-ViT on the source and on the edit (Tumanyan et al.'s structure loss, as PIE-Bench uses it).
Without weights (offline, no local copy) the CLIP and DINO values are null, with one warning each.
"""

from __future__ import annotations

import warnings

import torch

from preciseinv.errors import PreciseInvWarning


_WARNED: set[str] = set()


def cached_or_reachable(path: str) -> dict:
    """``from_pretrained``'s arguments for weights ``path``: where the hub is off or out of reach, its cached copy
    alone, or OSError at once when there is none (the hub client would retry for a minute and a half)."""
    import os

    from huggingface_hub import try_to_load_from_cache

    from preciseinv.models.loading import hub_out_of_reach

    if os.path.isdir(path):
        return {}
    why = hub_out_of_reach()
    if why is None:
        return {}
    if isinstance(try_to_load_from_cache(path, "config.json"), str):
        return {"local_files_only": True}
    raise OSError(f"{why} and {path!r} is not in the local cache")


def _warn_once(what: str, err: Exception) -> None:
    if what not in _WARNED:
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        warnings.warn(f"{what} unavailable ({type(err).__name__}: {reason}); reporting it as null. Give a local "
                      f"copy of its weights to compute it", PreciseInvWarning, stacklevel=3)
        _WARNED.add(what)


def background(source: torch.Tensor, edit: torch.Tensor, mask: torch.Tensor, lpips=None) -> dict:
    """Per-image (B,) PSNR, MSE (on [0, 1]), SSIM and LPIPS (or None) over the region outside ``mask``."""
    keep = (1 - mask.float()).expand_as(source)  # (B, 3, H, W): 1 where nothing should change
    n = keep.flatten(1).sum(1).clamp_min(1)
    sq = ((edit.float() - source.float()) / 2).pow(2)
    mse = (sq * keep).flatten(1).sum(1) / n
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, ssim_map = structural_similarity_index_measure((edit.float() + 1) / 2, (source.float() + 1) / 2,
                                                      data_range=1.0, reduction="none", return_full_image=True)
    ssim_bg = (ssim_map * keep).flatten(1).sum(1) / n
    lp = None
    if lpips is not None:
        black = torch.full_like(source.float(), -1.0)  # the edited region set to black in both images
        lpips.to(source.device)
        lp = lpips(torch.where(keep > 0, edit.float(), black).clamp(-1, 1),
                   torch.where(keep > 0, source.float(), black).clamp(-1, 1)).reshape(-1)
    return {"bg_psnr": 10 * torch.log10(1.0 / mse.clamp_min(1e-12)), "bg_mse": mse, "bg_ssim": ssim_bg,
            "bg_lpips": lp}


class ClipSimilarity:
    """CLIP score of images against prompts (``path``: a hub id or a local CLIP directory)."""

    def __init__(self, path: str = "openai/clip-vit-large-patch14"):
        self.model = self.processor = None
        try:
            from transformers import CLIPModel, CLIPProcessor

            where = cached_or_reachable(path)
            self.model = CLIPModel.from_pretrained(path, **where).eval()
            self.processor = CLIPProcessor.from_pretrained(path, **where)
        except Exception as err:  # offline, no local copy
            _warn_once("CLIP similarity", err)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor | None:
        if self.model is None:
            return None
        pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
        inputs = self.processor(text=list(prompts), images=list(pixels), return_tensors="pt", padding=True)
        model = self.model.to(images.device)
        img = model.get_image_features(pixel_values=inputs["pixel_values"].to(images.device))
        txt = model.get_text_features(input_ids=inputs["input_ids"].to(images.device),
                                      attention_mask=inputs["attention_mask"].to(images.device))
        img, txt = (getattr(t, "pooler_output", t) for t in (img, txt))
        cos = torch.nn.functional.cosine_similarity(img.float(), txt.float(), dim=-1)
        return (100 * cos).clamp_min(0)  # (B,)


class StructureDistance:
    """DINO-ViT key self-similarity distance (``path``: a hub id or a local ViT directory, e.g. facebook/dino-vitb8)."""

    def __init__(self, path: str = "facebook/dino-vitb8"):
        self.model, self.size = None, 224
        try:
            from transformers import ViTModel

            self.model = ViTModel.from_pretrained(path, add_pooling_layer=False, **cached_or_reachable(path)).eval()
            self.size = int(self.model.config.image_size)
        except Exception as err:
            _warn_once("DINO structure distance", err)

    def _keys(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate((images.float() + 1) / 2, size=(self.size, self.size), mode="bilinear",
                                            align_corners=False)
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        found = {}
        # the last layer's key projection (transformers 5: layers[i].attention.k_proj; 4: ...attention.key)
        key = [m for name, m in self.model.named_modules() if name.endswith(("k_proj", "attention.key"))][-1]
        hook = key.register_forward_hook(lambda m, i, out: found.setdefault("keys", out))
        try:
            self.model(pixel_values=(x - mean) / std)
        finally:
            hook.remove()
        return found["keys"]  # (B, N, D), CLS token first

    @torch.no_grad()
    def __call__(self, source: torch.Tensor, edit: torch.Tensor) -> torch.Tensor | None:
        if self.model is None:
            return None
        self.model.to(source.device)

        def self_similarity(keys):  # (B, N, N) cosine similarity between tokens
            k = torch.nn.functional.normalize(keys.float(), dim=-1)
            return k @ k.transpose(1, 2)

        a, b = self_similarity(self._keys(source)), self_similarity(self._keys(edit))
        return (a - b).pow(2).flatten(1).mean(1)  # (B,)


class EditMetrics:
    """Everything PIE-Bench reports, per image; CLIP and DINO only when ``clip`` / ``dino`` name their weights."""

    def __init__(self, lpips=None, clip: str | None = "openai/clip-vit-large-patch14",
                 dino: str | None = "facebook/dino-vitb8"):
        self.lpips = lpips
        self.clip = ClipSimilarity(clip) if clip else None
        self.dino = StructureDistance(dino) if dino else None

    @torch.no_grad()
    def __call__(self, source: torch.Tensor, edit: torch.Tensor, mask: torch.Tensor, target_prompts: list[str]):
        out = background(source, edit, mask, self.lpips)
        clip = self.clip if self.clip is not None and self.clip.model is not None else None
        out["clip_whole"] = clip(edit, target_prompts) if clip else None
        edited_only = torch.where(mask.expand_as(edit) > 0, edit.float(), torch.full_like(edit.float(), -1.0))
        out["clip_edited"] = clip(edited_only, target_prompts) if clip else None
        dino = self.dino if self.dino is not None and self.dino.model is not None else None
        out["structure_distance"] = dino(source, edit) if dino else None
        return out
