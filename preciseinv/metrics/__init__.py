"""Image-space reconstruction metrics: PSNR, SSIM (torchmetrics) and LPIPS when its weights are available."""

from preciseinv.metrics.image import ImageMetrics, psnr

__all__ = ["ImageMetrics", "psnr"]
