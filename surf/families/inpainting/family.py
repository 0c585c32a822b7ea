"""The GLOW-Prox inpainting task family (``surf.families.base.TaskFamily``), trained by the shared ``MetaTrainer``.

A *task* is a batch of ``inpainting.batch_size`` images of its split's pool with their masks and observations, keyed
by ``(seed, split, index)``. Per task the Lagrangian terms are (robust unrolling, TSP 2024):

* objective: ``mean_b ||x_L - x||^2`` (the authors' ``||x^ - x||_F^2 / B``, x the clean image);
* slacks from CI (``constraints.kind = gradient_norm``: the x- and the z-gradient of F, two constraints per layer)
  or CII (``distance``: ``||x_l - x*||``) through the shared ``descent_constraints`` (difference / ratio /
  normalized) of the batch means (``constraint_scope = batch``, the authors) or of every image, averaged over the
  batch (``image``: ``mean_b c_l^b``, a per-image descent step in expectation), for layers
  ``free_layers + 1 .. L`` (the authors leave layer 1 free: ``x_0 = y`` has a zero data gradient, so CI cannot hold
  there); ``constraints.kind = none`` is standard unrolling (CI values logged only);
* optional robust constraints (``constraint_noise``): every layer once more from a perturbed input ``x~ = x_{l-1} +
  s n`` (``s ~ U(0, constraint_noise)`` per image, ``n ~ N(0, I)``): robust CII, ``||f_l(x~) - x*||`` against ``||x~
  - x*||`` (``robust_form = descent``), or a bound on the layer's gain on the perturbation, ``||f_l(x~) -
  f_l(x_{l-1})|| <= robust_gain ||x~ - x_{l-1}||`` (``gain``); the loss stays clean;
* optional training noise (``noise_injection``): the authors' ``x_l <- clamp(x_l + s_l n / ||n||, 0, 1)`` on
  ``x_0..x_{L-2}`` with ``s_l = level / (l + 1)^decay``, keyed by task.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from surf.config import Config
from surf.constrained.constraints import descent_constraints
from surf.families.base import Pretraining, TaskTerms
from surf.families.inpainting.data import InpaintingBatch, MaskSpec, image_pools, observe_batch
from surf.families.inpainting.measures import ci_per_image, cii_per_image, image_norms, layer_objective, layer_psnr
from surf.models.glow_prox import GlowProx, GlowProxTrajectory
from surf.models.perturbation import injection_scales, noise_hook
from surf.problems.inpainting import dct_inpaint, psnr
from surf.problems.proximal import Perturb
from surf.utils.device import configure_threads, resolve_device
from surf.utils.replicas import check_fits
from surf.utils.seeding import torch_generator

DEQUANTIZE = 1.0 / 32.0  # density pretraining: uniform noise of this width on the (few-level) pixel values
# per-image constraints: values below this count as it, so an image restored exactly (a digit whose hole is blank
# background: ||x_0 - x|| = 0) has a finite ratio; 1e-3 over an 8x8 image is a PSNR near 78 dB
EXACT = 1e-3


class InpaintingFamily:
    """Image pools, masks, the GLOW-Prox model and per-task Lagrangian terms from one validated Config."""

    shape_keys = ("inpainting.layers", "inpainting.shared_flow", "inpainting.flow_levels", "inpainting.flow_depth",
                  "inpainting.flow_hidden", "inpainting.images", "inpainting.upsample")  # the images' shape

    def __init__(self, cfg: Config, pools: dict[str, torch.Tensor] | None = None) -> None:
        self.cfg, self.ic = cfg, cfg.inpainting
        self.device = resolve_device(cfg.run_device)
        self.pools = pools if pools is not None else image_pools(cfg)
        self.shape = tuple(self.pools["train"].shape[1:])
        pixels = 1
        for size in self.shape:
            pixels *= size
        self.threads = configure_threads(cfg.threads, self.ic.batch_size * pixels * self.ic.flow_hidden)
        self.spec = MaskSpec.of(self.ic)
        check_fits(4 * self.ic.batch_size * pixels, "a batch of images")
        if "squares" in (self.ic.mask, *self.ic.ood_masks):  # every image's squares: their corners, then a loop
            check_fits(8 * self.ic.batch_size * self.spec.squares, "the masks' squares")

    @property
    def constrained_layers(self) -> int:
        return self.ic.layers - self.ic.free_layers

    @property
    def robust(self) -> bool:
        """CII also from perturbed inputs (``inpainting.constraint_noise > 0``, validated to CII or none)."""
        return self.ic.constraint_noise > 0 and self.cfg.constraints.kind == "distance"

    @property
    def num_constraints(self) -> int:
        """Per constrained layer: one (CII; two when robust) or two (CI on the x- and the z-gradient, also logged when
        unconstrained)."""
        return self.constrained_layers * (1 + self.robust if self.cfg.constraints.kind == "distance" else 2)

    def describe(self) -> str:
        c, h, w = self.shape
        ic = self.ic
        flows = "one shared flow" if ic.shared_flow else "a flow per layer"
        return (f"GLOW-Prox, {ic.layers} layers, {flows} ({ic.flow_levels} level(s) x {ic.flow_depth} blocks, "
                f"{ic.flow_hidden} hidden), {ic.images} {c}x{h}x{w}, mask {self.spec.describe()}")

    def build_model(self) -> nn.Module:
        """GLOW-Prox with actnorm initialized on a keyed batch of meta-train images (Glow's data-dependent init)."""
        ic, train = self.ic, self.pools["train"]
        picks = torch.randperm(len(train), generator=torch_generator(self.cfg.seed, "inpainting", "actnorm"))[:256]
        return GlowProx(self.shape, ic.layers, ic.flow_levels, ic.flow_depth, ic.flow_hidden, ic.shared_flow,
                        ic.step_init, ic.prox_init, init_images=train[picks],
                        box_projection=ic.box_projection).to(self.device)

    def batch(self, split: str, count: int, key: tuple, spec: MaskSpec | None = None,
              noise: float | None = None) -> InpaintingBatch:
        """``count`` images of ``split`` drawn by ``key`` with masks of ``spec`` and observation noise ``noise``."""
        pool = self.pools[split]
        picks = torch.randint(len(pool), (count,), generator=torch_generator(self.cfg.seed, "inpainting", *key))
        return self._observe(key, pool[picks], spec, noise)

    def fixed_batch(self, split: str, count: int, spec: MaskSpec | None = None,
                    noise: float | None = None) -> InpaintingBatch:
        """The first ``count`` images of ``split``'s (shuffled) pool, each once: the evaluation set."""
        return self._observe(("fixed", split, count), self.pools[split][:count], spec, noise)

    def _observe(self, key: tuple, clean: torch.Tensor, spec: MaskSpec | None, noise: float | None) -> InpaintingBatch:
        noise = self.ic.noise_std if noise is None else noise
        batch = observe_batch(key, clean, spec or self.spec, noise, self.cfg.seed)
        return InpaintingBatch(key, batch.clean.to(self.device), batch.mask.to(self.device), batch.y.to(self.device))

    def task(self, split: str, index: int, relabel: bool = False) -> InpaintingBatch:
        """Batch ``index`` of ``split`` (``relabel`` unused)."""
        return self.batch(split, self.ic.batch_size, ("task", split, index))

    @functools.cache  # noqa: B019 (one family object per run; the tuned weights are part of its state)
    def classical_rho(self, iters: int, accelerated: bool) -> float:
        """The DCT-l1 weight (of ``inpainting.classical_rho``) with the best mean PSNR after ``iters`` ISTA / FISTA
        iterations on validation images: the classical prior's one hyper-parameter, tuned like the baselines."""
        val = self.fixed_batch("val", min(len(self.pools["val"]), 256))
        scores = {rho: psnr(dct_inpaint(val.y, val.mask, rho, iters, accelerated)[-1], val.clean).mean().item()
                  for rho in self.ic.classical_rho}
        return max(scores, key=scores.get)

    @torch.no_grad()
    def reference(self, batch: InpaintingBatch) -> torch.Tensor:
        """CII's ``x*``: the clean image, or a long DCT-FISTA solve (``inpainting.reference = classical``)."""
        if self.ic.reference == "clean":
            return batch.clean
        rho = self.classical_rho(self.ic.reference_iters, True)
        return dct_inpaint(batch.y, batch.mask, rho, self.ic.reference_iters)[-1]

    def per_image_values(self, traj: GlowProxTrajectory, batch: InpaintingBatch,
                         reference: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image constraint values (R, L+1, B): CI's x- and z-gradient norms (R = 2) or CII's distance (R = 1) to
        ``reference`` (default ``self.reference(batch)``)."""
        if self.cfg.constraints.kind == "distance":
            return cii_per_image(traj.x, self.reference(batch) if reference is None else reference)[None]
        return ci_per_image(traj, batch.y, batch.mask, self.ic.sigma)

    def slacks(self, values: torch.Tensor) -> torch.Tensor:
        """Slacks of the constrained layers from values (R, L+1[, B]) -> (R * (L - free)[, B]), layer-major per row.

        A free layer's value never enters (``a_0`` of the x-gradient is 0 at ``x_0 = y``: its ratio would be inf).
        """
        return self.step_slacks(values[:, :-1], values[:, 1:])

    def step_slacks(self, before: torch.Tensor, after: torch.Tensor, form: str | None = None,
                    epsilon: float | None = None) -> torch.Tensor:
        """Slacks of the constrained layers from the values before and after each layer (R, L[, B]) (eq. 3 on the
        pair, in the run's form and margin unless given) -> (R * (L - free)[, B]), layer-major per row."""
        ccfg, free = self.cfg.constraints, self.ic.free_layers
        slacks = descent_constraints(torch.stack([before[:, free:], after[:, free:]]), form or ccfg.form,
                                     ccfg.epsilon if epsilon is None else epsilon)[0]
        return slacks.reshape(-1, *slacks.shape[2:])

    def scoped_slacks(self, per_image: torch.Tensor) -> torch.Tensor:
        """Slacks from per-image values (R, L+1, B): those of the batch means (``constraint_scope = batch``, the
        authors), or every image's own slacks averaged over the batch (``image``) -> (R * (L - free),)."""
        return self.scoped_step_slacks(per_image[:, :-1], per_image[:, 1:])

    def scoped_step_slacks(self, before: torch.Tensor, after: torch.Tensor, form: str | None = None,
                           epsilon: float | None = None) -> torch.Tensor:
        """``scoped_slacks`` of per-image values before and after each layer (R, L, B) -> (R * (L - free),)."""
        if self.ic.constraint_scope == "image":
            return self.step_slacks(before.clamp_min(EXACT), after.clamp_min(EXACT), form, epsilon).mean(-1)
        return self.step_slacks(before.mean(-1), after.mean(-1), form, epsilon)

    def robust_slacks(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Slacks of the robust constraints: the run's descent constraint (``robust_form = descent``) or the gain
        bound ``after / before <= robust_gain`` (``gain``: eq. 3's ratio form with ``1 - eps = robust_gain``)."""
        if self.ic.robust_form == "descent":
            return self.scoped_step_slacks(before, after)
        return self.scoped_step_slacks(before, after, "ratio", 1.0 - self.ic.robust_gain)

    def perturbed_steps(self, model: GlowProx, traj: GlowProxTrajectory, batch: InpaintingBatch,
                        reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Robust constraints (``inpainting.constraint_noise``): every layer once more from a perturbed input ``x~ =
        x_{l-1} + s n`` (the iterate detached: a property of layer l alone; ``n ~ N(0, I)`` per pixel, ``s ~ U(0,
        constraint_noise)`` per image, keyed by task) -> the values before and after the layer (1, L, B):
        ``||x~ - x*||``, ``||f_l(x~) - x*||`` (``robust_form = descent``) or ``||x~ - x_{l-1}||``, ``||f_l(x~) -
        f_l(x_{l-1})||`` (``gain``: both inputs through the layer in one batch)."""
        level, gain = self.ic.constraint_noise, self.ic.robust_form == "gain"
        gen = torch_generator(self.cfg.seed, "inpainting", "constraint_noise", *batch.key)
        before, after = [], []
        for layer in range(1, self.ic.layers + 1):
            x = traj.x[layer - 1].detach()
            scale = level * torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=gen)
            noisy = x + (scale * torch.randn(x.shape, generator=gen)).to(x.device, x.dtype)
            if gain:
                both = model.layer(layer, torch.cat([x, noisy]), batch.y.repeat(2, 1, 1, 1),
                                   batch.mask.repeat(2, 1, 1, 1))[0]
                before.append(noisy - x)
                after.append(both[len(x):] - both[:len(x)])
            else:
                before.append(noisy - reference)
                after.append(model.layer(layer, noisy, batch.y, batch.mask)[0] - reference)
        return tuple(torch.stack([image_norms(d) for d in side])[None] for side in (before, after))

    def injection(self, batch: InpaintingBatch) -> Perturb | None:
        """The authors' training noise (``inpainting.noise_injection``), or None."""
        if self.ic.noise_injection <= 0:
            return None
        scales = injection_scales(self.ic.noise_injection, self.ic.noise_decay, self.ic.layers, first=0)
        return noise_hook(self.cfg.seed, ("inpainting", "inject", *batch.key), scales, unit_norm=True, clamp=(0, 1))

    def task_terms(self, model: nn.Module, batch: InpaintingBatch) -> TaskTerms:
        """Unroll on the task's observations: loss at x_L, descent slacks, per-layer PSNR and objective."""
        traj = model(batch.y, batch.mask, self.injection(batch) if model.training else None)
        loss = (traj.x[-1] - batch.clean).flatten(1).pow(2).sum(-1).mean()
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.constraints.kind != "none"):
            reference = self.reference(batch) if self.cfg.constraints.kind == "distance" else None  # once per task
            per_image = self.per_image_values(traj, batch, reference)  # (R, L+1, B); standard unrolling: logged only
        values = per_image.mean(-1)  # batch means of the per-image norms (R, L+1)
        slacks = self.scoped_slacks(per_image)
        if self.robust:  # the same layers from perturbed inputs: L - free more constraints
            slacks = torch.cat([slacks, self.robust_slacks(*self.perturbed_steps(model, traj, batch, reference))])
        with torch.no_grad():
            metrics = {"psnr": layer_psnr(traj.x, batch.clean).mean(-1),
                       "objective": layer_objective(traj, batch.y, batch.mask, self.ic.sigma).mean(-1)}
        return TaskTerms(loss, slacks, values.detach(), metrics)

    def pretraining(self, model: nn.Module) -> Pretraining | None:
        """Maximum-likelihood fit of every flow to dequantized meta-train images (``inpainting.pretrain_steps``)."""
        if self.ic.pretrain_steps == 0:
            return None
        pixels = float(torch.tensor(self.shape).prod())

        def loss(step: int) -> torch.Tensor:
            clean = self.batch("train", self.ic.batch_size, ("pretrain", step)).clean
            gen = torch_generator(self.cfg.seed, "inpainting", "dequantize", step)
            x = clean + DEQUANTIZE * torch.rand(clean.shape, generator=gen).to(clean.device)
            return -torch.stack([flow.log_prob(x).mean() for flow in model.flows]).mean() / pixels  # nats / pixel

        params = [p for flow in model.flows for p in flow.parameters()]
        return Pretraining(params, loss, self.ic.pretrain_steps, self.ic.pretrain_lr)
