import torch

from preciseinv.callbacks.tracking import aggregate, panel


def test_aggregate_means_over_records_of_all_ranks():
    records = [
        {"psnr": 30.0, "ssim": 0.9, "lpips": None, "residual": [1e-4, 1e-3], "iters": [0, 10],
         "converged": [True, True], "nfe_forward": 12, "nfe_backward": 10},
        {"psnr": 20.0, "ssim": 0.7, "lpips": None, "residual": [3e-4, 3e-3], "iters": [2, 30],
         "converged": [True, False], "nfe_forward": 36, "nfe_backward": 32, "retried_fp32": True},
    ]
    m = aggregate(records)
    assert m["recon/psnr"] == 25.0 and "recon/lpips" not in m
    assert m["step2/iters"] == 20 and m["step2/converged"] == 0.5 and m["step1/converged"] == 1.0
    assert m["converged_fraction"] == 0.5 and m["nfe/backward"] == 21 and m["retried_fp32"] == 0.5
    assert m["cost"] == (12 + 20 + 36 + 64) / 2


def test_panel_is_original_recon_error():
    x = torch.zeros(3, 8, 8)
    p = panel(x, x + 0.5)
    assert p.shape == (8, 24, 3) and p.dtype == torch.uint8
    assert p[:, :8].float().mean().round() == 128 and p[:, 8:16].float().mean().round() == 191
    assert p[:, 16:].float().mean() == 255  # |error| 0.5 x 4 saturates the error map
