"""Cross-field checks of a Config: ranges, sizes and the allowed values of plain options; every message says how
to fix the value. Names that live in a registry (graph families, GSOs, sources, partitions, baselines, scenarios,
families) are checked by ``surf.app.registry.check_names``, which knows the registries."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from surf.config.schema import CHOICES, Config, InpaintingConfig, SparseCodingConfig
from surf.utils.errors import ConfigError
from surf.utils.naming import is_plain_name
from surf.utils.typed import get_dotted

INT64 = 2**63  # torch and numpy hold sizes, counts and seeds in 64 bits: a larger Python int overflows deep inside
MAX_THREADS = 1024  # more than any machine's cores; 100,000 OpenMP threads exhaust the OS's thread limit and hang


def _check_numbers(node: Any, where: str) -> None:
    """Every number in the config is finite (YAML's ``.nan`` / ``.inf`` are never meaningful values here) and every
    integer fits in 64 bits."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            _check_numbers(getattr(node, f.name), f"{where}{f.name}")
    elif isinstance(node, dict):
        for key, value in node.items():
            _check_numbers(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_numbers(value, f"{where}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{where}={node} must be a finite number")
    elif isinstance(node, int) and not -INT64 <= node < INT64:
        raise ConfigError(f"{where}={node} does not fit in 64 bits: integers must lie in [-2**63, 2**63)")


def validate(cfg: Config) -> Config:
    """Cross-field checks; every message says how to fix the value."""
    for f in dataclasses.fields(cfg):
        _check_numbers(getattr(cfg, f.name), f"{f.name}." if dataclasses.is_dataclass(getattr(cfg, f.name)) else f.name)
    for dotted, allowed in CHOICES.items():
        value = get_dotted(cfg, dotted)
        if value not in allowed:
            raise ConfigError(f"{dotted}={value!r} is not one of {', '.join(allowed)}")
    positive = {
        "num_agents": cfg.num_agents,
        "data.train_per_agent": cfg.data.train_per_agent,
        "data.test_per_agent": cfg.data.test_per_agent,
        "data.batch_size": cfg.data.batch_size,
        "model.layers": cfg.model.layers,
        "model.hidden": cfg.model.hidden,
        "trainer.tasks_per_step": cfg.trainer.tasks_per_step,
        "trainer.val_every": cfg.trainer.val_every,
        "trainer.val_tasks": cfg.trainer.val_tasks,
        "trainer.checkpoint_every": cfg.trainer.checkpoint_every,
        "trainer.workers": cfg.trainer.workers,
        "eval.test_tasks": cfg.eval.test_tasks,
        "eval.async_repeats": cfg.eval.async_repeats,
        "eval.long_factor": cfg.eval.long_factor,
        "eval.local_steps": cfg.eval.local_steps,
        "eval.clients_per_round": cfg.eval.clients_per_round,
        "eval.centralized_rounds": cfg.eval.centralized_rounds,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}={value} must be >= 1")
    if not is_plain_name(cfg.name):
        raise ConfigError(f"name={cfg.name!r} names the default run folder runs/<name>: use a plain name without "
                          "slashes")
    if cfg.num_agents < 2:
        raise ConfigError(f"num_agents={cfg.num_agents}: a decentralized problem needs at least 2 agents")
    if not 0 <= cfg.threads <= MAX_THREADS:
        raise ConfigError(f"threads={cfg.threads} must be in [0, {MAX_THREADS}] (0 = chosen by problem size)")
    if cfg.model.hops < 0:
        raise ConfigError(f"model.hops={cfg.model.hops} must be >= 0")
    if cfg.trainer.steps < 0:
        raise ConfigError(f"trainer.steps={cfg.trainer.steps} must be >= 0")
    if not 0 <= cfg.eval.n_async < cfg.num_agents:
        raise ConfigError(f"eval.n_async={cfg.eval.n_async} must be in [0, num_agents={cfg.num_agents})")
    if not 0.0 <= cfg.constraints.epsilon < 1.0:
        raise ConfigError(f"constraints.epsilon={cfg.constraints.epsilon} must be in [0, 1)")
    if cfg.constraints.dual_lr < 0:
        raise ConfigError(f"constraints.dual_lr={cfg.constraints.dual_lr} must be >= 0")
    if cfg.constraints.dual_max is not None and cfg.constraints.dual_max < 0:
        raise ConfigError(f"constraints.dual_max={cfg.constraints.dual_max} must be >= 0 (or null: no cap)")
    if cfg.trainer.grad_clip is not None and cfg.trainer.grad_clip <= 0:  # a negative norm would flip the gradient
        raise ConfigError(f"trainer.grad_clip={cfg.trainer.grad_clip} must be > 0 (or null: no clipping)")
    if cfg.topology.laplacian_alpha is not None and cfg.topology.laplacian_alpha <= 0:
        raise ConfigError(f"topology.laplacian_alpha={cfg.topology.laplacian_alpha} must be > 0 (or null: "
                          "1 / lambda_max(L))")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.model.dropout} must be in [0, 1)")
    if cfg.trainer.device not in (None, *CHOICES["device"]):
        raise ConfigError(f"trainer.device={cfg.trainer.device!r} is not one of {', '.join(CHOICES['device'])}")
    if cfg.trainer.workers > cfg.trainer.val_tasks:
        raise ConfigError(f"trainer.workers={cfg.trainer.workers} needs trainer.val_tasks >= workers (validation "
                          "tasks are split across workers)")
    if cfg.trainer.max_failures < 0:
        raise ConfigError(f"trainer.max_failures={cfg.trainer.max_failures} must be >= 0")
    if cfg.trainer.lr <= 0:
        raise ConfigError(f"trainer.lr={cfg.trainer.lr} must be > 0")
    if cfg.trainer.ema is not None and not 0.0 < cfg.trainer.ema < 1.0:
        raise ConfigError(f"trainer.ema={cfg.trainer.ema} must be in (0, 1) (e.g. 0.99), or null for no averaging")
    fractions = cfg.data.pool_fractions
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"data.pool_fractions={fractions} must be 3 positive numbers summing to 1")
    if not 0.0 < cfg.data.heldout_fraction < 1.0:
        raise ConfigError(f"data.heldout_fraction={cfg.data.heldout_fraction} must be in (0, 1)")
    if cfg.data.source == "npz" and not cfg.data.path:
        raise ConfigError("data.source=npz needs data.path=FILE.npz (features + labels arrays)")
    if cfg.data.partition == "dirichlet" and cfg.data.dirichlet_alpha <= 0:
        raise ConfigError(f"data.dirichlet_alpha={cfg.data.dirichlet_alpha} must be > 0")
    if cfg.model.server and cfg.model.hops != 1:
        raise ConfigError("model.server=true (star mode, paper eq. 13) needs model.hops=1")
    if not cfg.eval.dgd_steps or min(cfg.eval.dgd_steps) <= 0:
        raise ConfigError("eval.dgd_steps must be a non-empty list of positive step sizes")
    if not cfg.eval.momentum_grid or any(not 0.0 <= b < 1.0 for b in cfg.eval.momentum_grid):
        raise ConfigError("eval.momentum_grid must be a non-empty list of momenta in [0, 1)")
    _validate_learned_optimizer(cfg)
    _validate_sparse_coding(cfg.sparse_coding)
    _validate_inpainting(cfg.inpainting, cfg.constraints.kind)
    return cfg


def _validate_learned_optimizer(cfg: Config) -> None:
    """Warm start, extra step features, the classifier-only descent measures, model selection and the robust-training
    mixture (docs/learned_optimizer.md). Feature names are checked by ``surf.app.registry`` (the models' registry)."""
    model, classifier = cfg.model, cfg.family == "decentralized"
    if model.warm_start == "heavy_ball":
        needs = {"family=decentralized": classifier, "model.variant=compact": model.variant == "compact",
                 "model.local_gradient=full": model.local_gradient == "full", "model.hops >= 1": model.hops >= 1,
                 "model.server=false": not model.server}
        missing = [name for name, ok in needs.items() if not ok]
        if missing:
            raise ConfigError(f"model.warm_start=heavy_ball starts from full-gradient heavy-ball DGD on a graph: it "
                              f"needs {', '.join(missing)}")
    if model.safeguard != "none" and (model.variant != "compact" or not classifier):
        raise ConfigError("model.safeguard compares the learned step with the classical heavy-ball step of the compact "
                          "model: it needs family=decentralized and model.variant=compact (or model.safeguard=none)")
    if model.features and model.variant != "compact":
        raise ConfigError(f"model.features={model.features} are inputs of the compact step: set model.variant=compact")
    if model.variant == "compact" and (model.batchnorm or model.dropout > 0):  # the compact step has neither
        raise ConfigError(f"model.batchnorm={model.batchnorm}, model.dropout={model.dropout} act in the paper "
                          "variant's step only: set model.variant=paper (or model.batchnorm=false, model.dropout=0)")
    if len(set(model.features)) != len(model.features):
        raise ConfigError(f"model.features={model.features} lists a feature twice")
    if not 0.0 <= model.momentum_init < 1.0:
        raise ConfigError(f"model.momentum_init={model.momentum_init} must be in [0, 1)")
    if model.step_init <= 0:  # the classical start (alpha, beta): alpha > 0, and the energy's c = beta / (2 alpha)
        raise ConfigError(f"model.step_init={model.step_init} must be > 0 (the untrained model is DGD with this step)")
    if model.w0_std < 0:
        raise ConfigError(f"model.w0_std={model.w0_std} must be >= 0 (the spread of the agents' initial models)")
    kind = cfg.constraints.kind
    if kind in ("energy", "loss", "window") and not classifier:
        raise ConfigError(f"constraints.kind={kind} is a measure of the decentralized classifier; use gradient_norm, "
                          "distance or none")
    if cfg.constraints.optimum_l2 <= 0:  # without it the pooled softmax regression may have no optimum
        raise ConfigError(f"constraints.optimum_l2={cfg.constraints.optimum_l2} must be > 0")
    if cfg.constraints.energy_weight is not None and cfg.constraints.energy_weight < 0:
        raise ConfigError(f"constraints.energy_weight={cfg.constraints.energy_weight} must be >= 0 (or null)")
    if cfg.trainer.select_by == "accuracy" and not classifier:
        raise ConfigError("trainer.select_by=accuracy needs family=decentralized (select by loss otherwise)")
    cfg.trainer.scenario_mixture()  # structure of the robust-training scenarios and their severities


def _validate_sparse_coding(sc: SparseCodingConfig) -> None:
    """Checks of the ``sparse_coding`` section (validated whatever the family, so typos surface early)."""
    for key in ("signal_dim", "atoms", "train_signals", "val_signals", "test_signals", "batch_size", "solver_iters",
                "layers", "ood_signals"):
        if getattr(sc, key) < 1:
            raise ConfigError(f"sparse_coding.{key}={getattr(sc, key)} must be >= 1")
    if sc.dictionary == "digits" and sc.signal_dim != 64:
        raise ConfigError("sparse_coding.dictionary=digits needs sparse_coding.signal_dim=64 (8x8 images)")
    if sc.atoms < sc.signal_dim:
        raise ConfigError(f"sparse_coding.atoms={sc.atoms} must be >= signal_dim={sc.signal_dim} (overcomplete)")
    if not 0.0 < sc.sparsity <= 1.0 or any(not 0.0 < p <= 1.0 for p in sc.ood_sparsity):
        raise ConfigError("sparse_coding.sparsity and ood_sparsity values must be in (0, 1]")
    if sc.rho <= 0 or sc.solver_tol <= 0:
        raise ConfigError("sparse_coding.rho and sparse_coding.solver_tol must be > 0")
    lists = sc.perturb_strengths + sc.ood_noise + sc.ood_dictionary
    if min([sc.noise_std, sc.noise_injection, sc.noise_decay, sc.dictionary_iters] + lists) < 0:
        raise ConfigError("sparse_coding noise levels, strengths, noise_decay and dictionary_iters must be >= 0")


def _validate_inpainting(ic: InpaintingConfig, kind: str) -> None:
    """Checks of the ``inpainting`` section (validated whatever the family, so typos surface early)."""
    for key in ("upsample", "batch_size", "test_images", "mask_squares", "layers", "flow_levels", "flow_depth",
                "flow_hidden", "reference_iters"):
        if getattr(ic, key) < 1:
            raise ConfigError(f"inpainting.{key}={getattr(ic, key)} must be >= 1")
    for key in ("max_images", "pretrain_steps", "examples"):
        if getattr(ic, key) < 0:
            raise ConfigError(f"inpainting.{key}={getattr(ic, key)} must be >= 0")
    if ic.images in ("npz", "mnist", "cifar10") and not ic.path:
        raise ConfigError(f"inpainting.images={ic.images} needs inpainting.path (an .npz file, or the folder of the "
                          "official MNIST / CIFAR-10 files)")
    if not 0 <= ic.free_layers < ic.layers:
        raise ConfigError(f"inpainting.free_layers={ic.free_layers} must be in [0, layers={ic.layers})")
    if any(not 0.0 < v < 1.0 for v in [ic.mask_size, ic.mask_rate, *ic.ood_mask_sizes]):
        raise ConfigError("inpainting.mask_size, mask_rate and ood_mask_sizes must be in (0, 1)")
    if ic.sigma <= 0 or ic.pretrain_lr <= 0 or ic.step_init <= 0 or ic.prox_init <= 0:
        raise ConfigError("inpainting.sigma, pretrain_lr, step_init and prox_init must be > 0")
    if not ic.classical_rho or min(ic.classical_rho) <= 0:
        raise ConfigError("inpainting.classical_rho must be a non-empty list of positive weights")
    levels = [ic.noise_std, ic.noise_injection, ic.noise_decay, ic.constraint_noise, *ic.perturb_strengths,
              *ic.ood_noise]
    if min(levels) < 0:
        raise ConfigError("inpainting noise levels, noise_decay and perturb_strengths must be >= 0")
    if ic.constraint_noise > 0 and kind not in ("distance", "none"):
        raise ConfigError(f"inpainting.constraint_noise={ic.constraint_noise} needs constraints.kind=distance (CII: "
                          f"the distance from a perturbed input), not {kind}; or set it to 0")
    if ic.robust_gain <= 0:
        raise ConfigError(f"inpainting.robust_gain={ic.robust_gain} must be > 0 (the bound on a layer's gain on "
                          "perturbations of its input)")
    if ic.robust_form != "descent" and ic.constraint_noise <= 0:
        raise ConfigError(f"inpainting.robust_form={ic.robust_form} needs inpainting.constraint_noise > 0 (the "
                          "perturbation it is measured on)")
    unknown = [m for m in ic.ood_masks if m not in CHOICES["inpainting.mask"]]
    if unknown:
        raise ConfigError(f"inpainting.ood_masks: {unknown[0]!r} is not one of {', '.join(CHOICES['inpainting.mask'])}")
