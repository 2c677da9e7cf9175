import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from preciseinv.errors import PreciseInvError
from preciseinv.samplers import build_schedule


def test_alphas_follow_the_scheduler():
    ref = DDIMScheduler(set_alpha_to_one=True)
    s = build_schedule(ref.config, 4)
    torch.testing.assert_close(s.alphas, ref.alphas_cumprod.double()[list(s.timesteps)])
    assert s.alphas_prev[0] == 1.0  # the last step lands on the final alpha-bar
    torch.testing.assert_close(s.alphas_prev[1:], s.alphas[:-1])


def test_ddpm_config_is_accepted():
    s = build_schedule(DDPMScheduler().config, 2)
    assert s.timesteps == (0, 500) and s.num_steps == 2


@pytest.mark.parametrize("steps", [0, -1])
def test_bad_step_count_is_a_clear_error(steps):
    with pytest.raises(PreciseInvError, match="num_steps"):
        build_schedule(DDIMScheduler().config, steps)
