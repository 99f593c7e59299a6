"""Sampler math as pure functions on tensors: DDIM (Modelscope family) and Euler-EDM (SVD family).

No scheduler objects and no internal state: a step is a function of its inputs, so the
chunks of a step can be evaluated in any order, on any shard. Only plain elementwise
`*`, `+`, `-`, `/` with Python-float coefficients are used (no fused lerp/addcmul), so a
step on a slice equals the same slice of the step on the whole tensor, bit for bit.
The formulas follow diffusers' DDIMScheduler and EulerDiscreteScheduler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

SVD_AYS_ANCHORS = (700.0, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002)


# --- DDIM ---------------------------------------------------------------------------------


def alphas_cumprod(
    num_train_timesteps: int = 1000,
    beta_schedule: str = "linear",
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
) -> torch.Tensor:
    """Cumulative products of (1 - beta), float32, as diffusers' DDPM/DDIM schedulers build them."""
    if num_train_timesteps < 1:
        raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}")
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    elif beta_schedule == "squaredcos_cap_v2":
        # Glide's cosine schedule, betas capped at 0.999.
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        n = num_train_timesteps
        betas = torch.tensor(
            [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)], dtype=torch.float32
        )
    else:
        raise ValueError(
            f"beta_schedule must be 'linear', 'scaled_linear' or 'squaredcos_cap_v2', got {beta_schedule!r}"
        )
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_timesteps(
    num_steps: int, num_train_timesteps: int = 1000, spacing: str = "leading", steps_offset: int = 0
) -> list[int]:
    """Descending timesteps, as `DDIMScheduler.set_timesteps` makes them.

    "trailing" ignores `steps_offset`, as diffusers does. For a few counts (e.g. 61 of
    1000) diffusers' float `np.arange` yields one extra timestep; we return exactly
    `num_steps`, which equal diffusers' first `num_steps`.
    """
    if not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_train_timesteps}], got {num_steps}")
    if spacing == "leading":
        ratio = num_train_timesteps // num_steps
        return [i * ratio + steps_offset for i in reversed(range(num_steps))]
    if spacing == "trailing":
        ratio = num_train_timesteps / num_steps
        # round() is round-half-even like np.round.
        return [round(num_train_timesteps - i * ratio) - 1 for i in range(num_steps)]
    raise ValueError(f"spacing must be 'leading' or 'trailing', got {spacing!r}")


def sdedit_timesteps(timesteps: Sequence[int], strength: float) -> list[int]:
    """The last int(len * strength) timesteps (at least one), like diffusers' img2img `get_timesteps`."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    if len(timesteps) == 0:
        raise ValueError("timesteps must not be empty")
    keep = max(1, min(int(len(timesteps) * strength), len(timesteps)))
    return list(timesteps[len(timesteps) - keep :])


def prev_timestep(timestep: int, num_steps: int, num_train_timesteps: int = 1000) -> int:
    """The timestep DDIM steps to: t - T // num_steps, negative after the last step.

    `num_steps` is the full schedule's count (before SDEdit truncation), as in diffusers.
    """
    return timestep - num_train_timesteps // num_steps


def alpha_bar_at(alphas_cumprod: torch.Tensor, timestep: int) -> float:
    """alpha_bar at `timestep`; 1.0 for a negative timestep (diffusers' `set_alpha_to_one=True`)."""
    if timestep >= alphas_cumprod.shape[0]:
        raise ValueError(f"timestep must be < {alphas_cumprod.shape[0]}, got {timestep}")
    return 1.0 if timestep < 0 else float(alphas_cumprod[timestep])


def to_x0_eps(
    x_t: torch.Tensor, model_out: torch.Tensor, alpha_bar_t: float, prediction_type: str = "epsilon"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) predictions from the model output at noise level alpha_bar_t."""
    sqrt_a, sqrt_b = math.sqrt(alpha_bar_t), math.sqrt(1.0 - alpha_bar_t)
    if prediction_type == "epsilon":
        return (x_t - sqrt_b * model_out) / sqrt_a, model_out
    if prediction_type == "v_prediction":
        return sqrt_a * x_t - sqrt_b * model_out, sqrt_a * model_out + sqrt_b * x_t
    if prediction_type == "sample":
        return model_out, (x_t - sqrt_a * model_out) / sqrt_b
    raise ValueError(f"prediction_type must be 'epsilon', 'v_prediction' or 'sample', got {prediction_type!r}")


def ddim_sigma(alpha_bar_t: float, alpha_bar_prev: float, eta: float) -> float:
    """sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev) (DDIM eq. 16)."""
    variance = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t) * (1.0 - alpha_bar_t / alpha_bar_prev)
    return eta * math.sqrt(max(variance, 0.0))


def ddim_step(
    x0: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar_t: float,
    alpha_bar_prev: float,
    eta: float,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """x_{t-1} = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma noise.

    `noise` is required when sigma > 0 and ignored when sigma == 0 (eta == 0, or the last
    step where a_prev == 1).
    """
    sigma = ddim_sigma(alpha_bar_t, alpha_bar_prev, eta)
    x_prev = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(max(1.0 - alpha_bar_prev - sigma**2, 0.0)) * eps
    if sigma > 0.0:
        if noise is None:
            raise ValueError(f"ddim_step needs noise: sigma={sigma} > 0 (eta={eta})")
        if noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} differs from x0 shape {tuple(x0.shape)}")
        x_prev = x_prev + sigma * noise
    return x_prev


def add_noise(x0: torch.Tensor, noise: torch.Tensor, alpha_bar_t: float) -> torch.Tensor:
    """Forward diffusion to alpha_bar_t: sqrt(a) x0 + sqrt(1 - a) noise."""
    return math.sqrt(alpha_bar_t) * x0 + math.sqrt(1.0 - alpha_bar_t) * noise


# --- Euler-EDM (SVD) ------------------------------------------------------------------------


def ays_sigmas(num_steps: int, anchors: Sequence[float] = SVD_AYS_ANCHORS) -> torch.Tensor:
    """Align-Your-Steps sigmas: anchors interpolated log-linearly to `num_steps`, then 0.

    -> float64 (num_steps + 1,). As the original (AYS' `loglinear_interp`), the anchors
    sit at evenly spaced positions in [0, 1] and log sigma is interpolated linearly at
    `num_steps` evenly spaced positions; `num_steps == len(anchors)` returns the anchors.
    """
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    if len(anchors) < 2 or any(a <= 0 for a in anchors):
        raise ValueError(f"anchors must be >= 2 positive sigmas, got {tuple(anchors)}")
    logs = [math.log(a) for a in anchors]
    segments = len(anchors) - 1
    out = []
    for i in range(num_steps):
        pos = i / (num_steps - 1) * segments
        j = min(int(pos), segments - 1)
        frac = pos - j
        out.append(math.exp(logs[j] + frac * (logs[j + 1] - logs[j])))
    return torch.tensor([*out, 0.0], dtype=torch.float64)


def karras_sigmas(
    num_steps: int, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0
) -> torch.Tensor:
    """Karras et al. sigmas from sigma_max to sigma_min, then 0 -> float64 (num_steps + 1,)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    ramp = [i / (num_steps - 1) if num_steps > 1 else 0.0 for i in range(num_steps)]
    return torch.tensor([(hi + r * (lo - hi)) ** rho for r in ramp] + [0.0], dtype=torch.float64)


def edm_precondition(sigma: float) -> tuple[float, float, float, float]:
    """(c_skip, c_out, c_in, c_noise) of SVD's v-prediction EDM parameterization (sigma_data = 1)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    c_skip = 1.0 / (sigma**2 + 1.0)
    c_out = -sigma / math.sqrt(sigma**2 + 1.0)
    c_in = 1.0 / math.sqrt(sigma**2 + 1.0)
    c_noise = 0.25 * math.log(sigma)
    return c_skip, c_out, c_in, c_noise


def edm_denoised(x: torch.Tensor, model_out: torch.Tensor, sigma: float) -> torch.Tensor:
    """Denoised estimate c_skip * x + c_out * model_out; the model saw c_in * x and c_noise."""
    c_skip, c_out, _, _ = edm_precondition(sigma)
    return model_out * c_out + x * c_skip


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One Euler step of the probability-flow ODE from sigma to sigma_next (s_churn = 0)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    derivative = (x - denoised) / sigma
    return x + derivative * (sigma_next - sigma)
