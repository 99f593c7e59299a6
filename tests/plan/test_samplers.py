import math

import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from stt2v_ray.plan import samplers as S


def _ddim(schedule="linear", prediction_type="epsilon", spacing="leading", steps_offset=0):
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule=schedule,
        prediction_type=prediction_type,
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=steps_offset,
        timestep_spacing=spacing,
    )


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_alphas_cumprod_match_diffusers(schedule):
    ours = S.alphas_cumprod(1000, schedule)
    assert ours.dtype == torch.float32 and ours.shape == (1000,)
    assert torch.equal(ours, _ddim(schedule).alphas_cumprod)


def test_alphas_cumprod_rejects_unknown_schedule():
    with pytest.raises(ValueError, match="beta_schedule must be 'linear', 'scaled_linear' or 'squaredcos_cap_v2', got 'cos'"):
        S.alphas_cumprod(1000, "cos")


@pytest.mark.parametrize("spacing,offset", [("leading", 0), ("leading", 1), ("trailing", 0)])
def test_ddim_timesteps_match_diffusers(spacing, offset):
    sched = _ddim(spacing=spacing, steps_offset=offset)
    for n in [1, 2, 3, 7, 10, 25, 30, 50, 61, 100, 999, 1000]:
        sched.set_timesteps(n)
        ours = S.ddim_timesteps(n, 1000, spacing, offset)
        assert len(ours) == n
        assert ours == sched.timesteps.tolist()[:n]
    with pytest.raises(ValueError, match=r"num_steps must be in \[1, 1000\], got 0"):
        S.ddim_timesteps(0)
    with pytest.raises(ValueError, match="spacing must be 'leading' or 'trailing', got 'linspace'"):
        S.ddim_timesteps(10, spacing="linspace")


def test_sdedit_timesteps_like_diffusers_get_timesteps():
    ts = S.ddim_timesteps(30)
    # diffusers: init = int(n * strength); t_start = n - init; timesteps[t_start:]
    assert S.sdedit_timesteps(ts, 0.97) == ts[30 - 29 :]
    assert S.sdedit_timesteps(ts, 1.0) == ts
    assert S.sdedit_timesteps(ts, 0.5) == ts[15:]
    assert S.sdedit_timesteps(ts, 0.01) == ts[-1:]
    with pytest.raises(ValueError, match=r"strength must be in \(0, 1\], got 0"):
        S.sdedit_timesteps(ts, 0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("spacing,offset,n", [("leading", 1, 50), ("trailing", 0, 30)])
def test_ddim_step_matches_diffusers(prediction_type, eta, spacing, offset, n):
    sched = _ddim("scaled_linear", prediction_type, spacing, offset)
    sched.set_timesteps(n)
    ac = S.alphas_cumprod(1000, "scaled_linear")
    ts = S.ddim_timesteps(n, 1000, spacing, offset)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 5, generator=g)
    for i in [0, 7, n - 1]:  # n - 1: last step, alpha_bar_prev = 1
        t = ts[i]
        model_out = torch.randn(x.shape, generator=g)
        noise = torch.randn(x.shape, generator=g)
        expected = sched.step(model_out, t, x, eta=eta, variance_noise=noise).prev_sample
        a_t = S.alpha_bar_at(ac, t)
        a_prev = S.alpha_bar_at(ac, S.prev_timestep(t, n, 1000))
        x0, eps = S.to_x0_eps(x, model_out, a_t, prediction_type)
        ours = S.ddim_step(x0, eps, a_t, a_prev, eta, noise)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert S.alpha_bar_at(ac, S.prev_timestep(ts[-1], n, 1000)) == 1.0


def test_ddim_step_on_slices_is_bitwise_equal():
    g = torch.Generator().manual_seed(1)
    x0, eps, noise = (torch.randn(7, 4, 9, 11, generator=g) for _ in range(3))
    a_t, a_prev = 0.3127, 0.4571
    whole = S.ddim_step(x0, eps, a_t, a_prev, 1.0, noise)
    parts = [S.ddim_step(x0[s], eps[s], a_t, a_prev, 1.0, noise[s]) for s in (slice(0, 3), slice(3, 7))]
    assert torch.equal(whole, torch.cat(parts))
    x_t = S.add_noise(x0, noise, a_t)
    assert torch.equal(x_t[2:5], S.add_noise(x0[2:5], noise[2:5], a_t))
    for kind in ("epsilon", "v_prediction", "sample"):
        w = S.to_x0_eps(x_t, eps, a_t, kind)
        p = S.to_x0_eps(x_t[3:], eps[3:], a_t, kind)
        assert torch.equal(w[0][3:], p[0]) and torch.equal(w[1][3:], p[1])


def test_ddim_step_needs_noise_only_when_stochastic():
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"ddim_step needs noise: sigma=.* > 0 \(eta=1.0\)"):
        S.ddim_step(x, x, 0.3, 0.5, 1.0, None)
    # eta = 0 and the last step (a_prev = 1) are deterministic.
    assert S.ddim_sigma(0.3, 1.0, 1.0) == 0.0
    torch.testing.assert_close(S.ddim_step(x, 2 * x, 0.3, 1.0, 1.0, None), x)
    torch.testing.assert_close(S.ddim_step(x, x, 0.3, 0.5, 0.0, None), (math.sqrt(0.5) + math.sqrt(0.5)) * x)


def test_add_noise_matches_diffusers_and_inverts():
    sched = _ddim("scaled_linear")
    ac = S.alphas_cumprod(1000, "scaled_linear")
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(3, 4, 8, generator=g), torch.randn(3, 4, 8, generator=g)
    x_t = S.add_noise(x0, noise, S.alpha_bar_at(ac, 600))
    torch.testing.assert_close(x_t, sched.add_noise(x0, noise, torch.tensor([600])), rtol=1e-5, atol=1e-6)
    x0_back, eps_back = S.to_x0_eps(x_t, noise, S.alpha_bar_at(ac, 600), "epsilon")
    torch.testing.assert_close(x0_back, x0, rtol=1e-4, atol=1e-5)
    assert eps_back is noise


def _svd_euler():
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        interpolation_type="linear",
        use_karras_sigmas=True,
        sigma_min=0.002,
        sigma_max=700.0,
        timestep_spacing="leading",
        timestep_type="continuous",
        steps_offset=1,
    )


def test_karras_sigmas_match_diffusers():
    sched = _svd_euler()
    sched.set_timesteps(25)
    ours = S.karras_sigmas(25)
    assert ours.shape == (26,) and ours[-1] == 0.0
    torch.testing.assert_close(ours.float(), sched.sigmas, rtol=1e-6, atol=0)
    # c_noise is what the continuous-time SVD UNet sees as its timestep.
    torch.testing.assert_close(
        torch.tensor([S.edm_precondition(float(s))[3] for s in ours[:-1]], dtype=torch.float32),
        sched.timesteps,
        rtol=1e-5,
        atol=1e-6,
    )


def test_ays_sigmas():
    anchors = S.SVD_AYS_ANCHORS
    torch.testing.assert_close(S.ays_sigmas(11), torch.tensor([*anchors, 0.0], dtype=torch.float64))
    sig = S.ays_sigmas(30)
    assert sig.shape == (31,) and sig.dtype == torch.float64
    assert sig[-1] == 0.0 and math.isclose(sig[0], 700.0) and math.isclose(sig[-2], 0.002)
    assert bool((sig[:-1][1:] < sig[:-1][:-1]).all())
    # 21 points: every second one is an anchor; the others are log-midpoints.
    sig21 = S.ays_sigmas(21)
    for i, a in enumerate(anchors):
        assert math.isclose(sig21[2 * i], a, rel_tol=1e-12)
    assert math.isclose(sig21[1], math.sqrt(700.0 * 54.5), rel_tol=1e-12)
    with pytest.raises(ValueError, match="num_steps must be >= 2, got 1"):
        S.ays_sigmas(1)


def test_edm_precondition_formulas():
    c_skip, c_out, c_in, c_noise = S.edm_precondition(2.0)
    assert math.isclose(c_skip, 1 / 5)
    assert math.isclose(c_out, -2 / math.sqrt(5))
    assert math.isclose(c_in, 1 / math.sqrt(5))
    assert math.isclose(c_noise, 0.25 * math.log(2.0))
    with pytest.raises(ValueError, match="sigma must be > 0, got 0"):
        S.edm_precondition(0)


@pytest.mark.parametrize("sigmas", ["karras", "ays"])
def test_euler_step_matches_diffusers(sigmas):
    sched = _svd_euler()
    if sigmas == "karras":
        sched.set_timesteps(8)
    else:
        sched.set_timesteps(sigmas=S.ays_sigmas(8).tolist())
    sig = sched.sigmas.tolist()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 3, 3, generator=g) * sig[0]
    for i in range(len(sig) - 1):
        model_in = sched.scale_model_input(x, sched.timesteps[i])
        torch.testing.assert_close(model_in, x * S.edm_precondition(sig[i])[2], rtol=1e-5, atol=1e-6)
        model_out = torch.randn(x.shape, generator=g)
        out = sched.step(model_out, sched.timesteps[i], x)
        denoised = S.edm_denoised(x, model_out, sig[i])
        torch.testing.assert_close(denoised, out.pred_original_sample, rtol=1e-5, atol=1e-5)
        ours = S.euler_step(x, denoised, sig[i], sig[i + 1])
        torch.testing.assert_close(ours, out.prev_sample, rtol=1e-5, atol=1e-4)
        x = out.prev_sample


def test_euler_step_on_slices_is_bitwise_equal():
    g = torch.Generator().manual_seed(4)
    x, out = torch.randn(6, 4, 5, 7, generator=g), torch.randn(6, 4, 5, 7, generator=g)
    den = S.edm_denoised(x, out, 3.7)
    assert torch.equal(den[1:4], S.edm_denoised(x[1:4], out[1:4], 3.7))
    whole = S.euler_step(x, den, 3.7, 1.2)
    assert torch.equal(whole[1:4], S.euler_step(x[1:4], den[1:4], 3.7, 1.2))
