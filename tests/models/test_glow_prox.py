"""GLOW-Prox: the Glow flow is invertible, a layer is (G1)-(G3) exactly, the initial model is a classical prox step."""

import pytest
import torch

from surf.models.glow_prox import GlowProx, LatentFlow
from surf.models.perturbation import injection_scales, noise_hook
from surf.problems.inpainting import data_step, gaussian_prox


def _randomized(flow, scale=0.1, seed=0):
    """Move every parameter off its (identity-like) initialization so that the test exercises the couplings."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return flow


@pytest.mark.parametrize("levels,depth,dtype,tol", [(1, 4, torch.float32, 1e-5), (2, 2, torch.float64, 1e-12)])
def test_flow_is_invertible_on_random_inputs(levels, depth, dtype, tol):
    torch.manual_seed(0)
    flow = LatentFlow((1, 8, 8), levels, depth, 32).to(dtype)
    flow.init_actnorm(torch.rand(64, 1, 8, 8, dtype=dtype))
    _randomized(flow)
    x = torch.rand(16, 1, 8, 8, dtype=dtype)
    z = flow.encode(x)
    assert z.shape == (16, 4 ** levels, 8 // 2 ** levels, 8 // 2 ** levels)
    assert (flow.decode(z) - x).abs().max().item() < tol
    latent = torch.randn(16, *z.shape[1:], dtype=dtype)
    assert (flow.encode(flow.decode(latent)) - latent).abs().max().item() < 10 * tol
    assert flow.log_prob(x).shape == (16,) and torch.isfinite(flow.log_prob(x)).all()


def test_actnorm_is_initialized_once_on_the_given_images():
    torch.manual_seed(0)
    images = torch.rand(128, 1, 8, 8)
    flow = LatentFlow((1, 8, 8), 1, 2, 8)
    flow.init_actnorm(images)
    z = flow.encode(images)
    assert z.mean().abs() < 0.1 and (z.std() - 1).abs() < 0.2  # Glow's data-dependent init: standardized latents
    before = flow.encode(images[:3])
    flow.encode(torch.rand(7, 1, 8, 8) * 5)  # a later batch does not re-initialize
    assert torch.equal(flow.encode(images[:3]), before)


def test_a_layer_is_the_gradient_step_then_the_latent_prox():
    torch.manual_seed(0)
    model = GlowProx((1, 8, 8), 2, depth=2, hidden=8, step_init=0.5, prox_init=0.3,
                     init_images=torch.rand(32, 1, 8, 8))
    for flow in model.flows:
        _randomized(flow, 0.05)
    clean = torch.rand(4, 1, 8, 8)
    mask = torch.ones(4, 1, 8, 8)
    mask[..., 2:5, 2:5] = 0
    y = mask * clean
    traj = model(y, mask)
    assert torch.allclose(model.steps, torch.full((2,), 0.5)) and torch.allclose(model.proxes, torch.full((2,), 0.3))
    x = y
    for layer in (1, 2):
        flow = model.flow(layer)
        z = gaussian_prox(flow.encode(data_step(x, y, mask, 0.5)), 0.3)
        x = flow.decode(z).clamp(0, 1)
        assert torch.allclose(traj.z[layer], z, atol=1e-6) and torch.allclose(traj.x[layer], x, atol=1e-6)
    assert torch.equal(traj.x[0], y) and torch.allclose(traj.z[0], model.flow(1).encode(y))
    assert len(model.flows) == 2 and len(GlowProx((1, 8, 8), 3, depth=1, hidden=4, shared_flow=True).flows) == 1


def test_box_projection_clamps_the_data_step_output_before_the_flow():
    """(G1'): with ``box_projection`` a layer sees only the image range, so values of the hole below 0 act as 0;
    without it they reach the flow."""
    torch.manual_seed(2)
    mask = torch.ones(3, 1, 8, 8)
    mask[..., 2:5, 2:5] = 0
    y = mask * torch.rand(3, 1, 8, 8)
    negative, zero = y - 5.0 * (1 - mask), y.clone()  # the hole (untouched by the data step) at -5 or at 0
    for box in (True, False):
        torch.manual_seed(3)
        model = GlowProx((1, 8, 8), 1, depth=2, hidden=8, init_images=torch.rand(32, 1, 8, 8), box_projection=box)
        for flow in model.flows:
            _randomized(flow, 0.05)
        same = torch.equal(model.layer(1, negative, y, mask)[1], model.layer(1, zero, y, mask)[1])
        assert same == box


def test_inputs_far_outside_the_images_give_finite_images():
    """An inverse that overflows (latent coupling scales exp(s) on a wild input) yields images in [0, 1], not NaN."""
    torch.manual_seed(1)
    model = GlowProx((1, 8, 8), 2, depth=2, hidden=8, init_images=torch.rand(32, 1, 8, 8))
    for flow in model.flows:
        _randomized(flow, 3.0)
    mask = torch.ones(4, 1, 8, 8)
    traj = model(torch.full((4, 1, 8, 8), 1e6), mask)
    assert all(torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1 for x in traj.x[1:])


def test_with_linear_flows_a_layer_shrinks_towards_the_flow_mean():
    """At initialization every coupling is linear: G^-1(G(v)/(1+lambda)) = (v + lambda m)/(1+lambda), m = G^-1(0)."""
    torch.manual_seed(0)
    model = GlowProx((1, 8, 8), 1, depth=2, hidden=8, step_init=1.0, prox_init=0.25,
                     init_images=torch.rand(64, 1, 8, 8) * 0.5 + 0.25)
    y = torch.rand(3, 1, 8, 8) * 0.5 + 0.25
    mask = torch.ones(3, 1, 8, 8)
    centre = model.flow(1).decode(torch.zeros(1, 4, 4, 4))
    expected = ((y + 0.25 * centre) / 1.25).clamp(0, 1)
    assert torch.allclose(model(y, mask).x[1], expected, atol=1e-5)


def test_noise_hook_is_keyed_unit_norm_and_clamped():
    x = torch.full((3, 1, 4, 4), 0.5)
    hook = noise_hook(0, ("k",), [0.2, 0.0], unit_norm=True, clamp=(0.0, 1.0))
    out = hook(0, x)
    assert torch.equal(out, hook(0, x)) and torch.equal(hook(1, x), x) and torch.equal(hook(5, x), x)
    assert torch.allclose((out - x).flatten(1).norm(dim=1), torch.full((3,), 0.2), atol=1e-6)
    assert injection_scales(1.0, 1.0, 5, first=0) == [1.0, 0.5, 1 / 3, 0.25, 0.0, 0.0]
