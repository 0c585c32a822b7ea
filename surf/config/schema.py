"""The experiment configuration as typed dataclasses, one per section, with the paper's defaults.

Defaults follow the SURF paper (Hadou et al.) where it states a value; deviations are commented. ``CHOICES`` lists
the allowed values of the string options that are not registry names (those are checked where the registry lives).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from surf.utils.errors import ConfigError


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class TopologyConfig:
    """Communication graph: a catalogue family or named spec, its parameters and the graph shift operator."""

    name: str = "regular3_paper"  # family (see `surf list`) or a spec file in topologies/ (without .yaml)
    params: dict[str, Any] = field(default_factory=dict)  # family parameters, e.g. {p: 0.1} for erdos_renyi
    gso: str = "row_normalized"  # row_normalized | lambda_max | metropolis | max_degree | laplacian
    laplacian_alpha: float | None = None  # step of I - alpha*L; None = 1/lambda_max(L)
    resample_per_task: bool = False  # a new random graph per task (the paper does this)
    allow_disconnected: bool = False


@dataclass
class DataConfig:
    """Task distribution: where samples come from and how each task splits them across agents."""

    source: str = "digits"  # digits | gaussian | npz
    path: str | None = None  # .npz file for source=npz
    partition: str = "imbalanced"  # imbalanced (paper) | dirichlet | iid | pathological
    dirichlet_alpha: float = 0.7
    classes_per_agent: int = 2  # for pathological
    classes: list[int] | None = None  # classes tasks may use (e.g. meta-train on 0-4, stress on 5-9); None = all
    train_per_agent: int = 45
    test_per_agent: int = 15
    batch_size: int = 10  # mini-batch per agent per layer
    relabel_train: bool = False  # meta-train on relabelled tasks (random class permutation per task)
    pool_fractions: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])  # meta-train/val/test pools
    heldout_fraction: float = 0.25  # per task: share of its pool kept for held-out samples only
    standardize: bool = False  # z-score features with meta-train pool statistics (npz features)
    gaussian_dim: int = 64
    gaussian_classes: int = 10
    gaussian_samples: int = 6000
    gaussian_separation: float = 3.0


@dataclass
class ModelConfig:
    """U-DGD unrolled network (paper eq. 11-12)."""

    variant: str = "compact"  # compact | paper
    layers: int = 10  # L
    hops: int = 2  # K communication rounds per layer (taps k = 0..K)
    w0_std: float = 5.0  # W_0 ~ N(0, std^2); paper code uses 5
    server: bool = False  # star/FL mode, paper eq. 13: node 0 is a data-less server
    # compact variant
    local_gradient: str = "batch"  # batch (fresh mini-batch B_l, paper) | full (agent's whole training set)
    hidden: int = 16  # width of the coordinate-wise MLP
    step_init: float = 0.3  # initial learned step alpha_l (untrained model = DGD with this step)
    momentum_init: float = 0.0  # initial heavy-ball momentum beta_l (untrained model = heavy-ball DGD with it)
    warm_start: str = "none"  # none | heavy_ball: start at heavy-ball DGD tuned on validation tasks
    features: list[str] = field(default_factory=list)  # extra step features: tracking, neighbor_gradient, adam
    safeguard: str = "none"  # none | loss: at evaluation / deployment an agent takes the classical step instead of
    #   the learned one when that gives it the lower local loss (docs/learned_optimizer.md); never in meta-training
    recompute: bool = False  # memory mode (10,000+ agents): keep only each local step's and graph filter's inputs,
    #   recompute them in the backward; return freed heap pages to the OS at every layer (surf.utils.memory)
    # paper variant
    batchnorm: bool = False  # authors' code: parameter-free BatchNorm across agents
    dropout: float = 0.0  # authors' code: 0.5


@dataclass
class ConstraintConfig:
    """Layer-wise descent constraints (paper eq. 3-5)."""

    kind: str = "gradient_norm"  # gradient_norm (CI, SURF) | distance (CII) | energy | loss | window | none
    form: str = "difference"  # difference (paper) | ratio (authors' code) | normalized
    epsilon: float = 0.01
    gradient_on: str = "batch"  # batch (paper: B_l) | next_batch (authors' code) | full (all local training data)
    dual_lr: float = 0.01
    dual_max: float | None = None  # optional cap on lambda
    optimum_l2: float = 1e-3  # L2 weight of the pooled problem whose optimum CII measures distance to
    energy_weight: float | None = None  # c of the energy f(W_l) + c ||W_l - W_l-1||^2; None = beta / (2 alpha) of
    #   the model's classical start (docs/learned_optimizer.md)
    window_reduce: str = "mean"  # window: a_l = mean | max of the gradient norms at W_l and W_l-1


@dataclass
class TrainerConfig:
    """Primal-dual meta-training (paper Algorithm 1)."""

    steps: int = 500  # meta-steps (one primal Adam step + one dual step each)
    tasks_per_step: int = 1
    lr: float = 0.01
    grad_clip: float | None = None  # max norm of the meta-gradient
    val_every: int = 50
    val_tasks: int = 16
    checkpoint_every: int = 50
    workers: int = 1  # data-parallel Ray Train workers (docs/distributed.md); each draws tasks_per_step tasks a step
    device: str | None = None  # auto | cpu | cuda for the run, over the top-level device; None = use that one
    max_failures: int = 1  # with workers > 1: restarts from the last checkpoint after a worker dies
    scenario: str | list[str] | None = None  # robust training: stress scenario(s) on meta-train/val tasks; a list
    #   is a mixture: each task draws one of them (keyed by the task)
    scenario_severity: float | list[Any] | None = None  # a value, a range [lo, hi] drawn per task, or None = the
    #   representative severity; with a list of scenarios: a list with one such entry per scenario
    select_by: str = "loss"  # model selection on validation tasks: lowest loss | highest accuracy (step 0 included)
    lr_schedule: str = "constant"  # Adam's step: constant | cosine (annealed to 0 over trainer.steps)
    ema: float | None = None  # beta of an exponential moving average of the meta-parameters: validated, selected
    #   and saved instead of the raw iterate (surf.training.averaging); None = off

    def scenario_mixture(self) -> list[tuple[str, Any]]:
        """``(scenario, severity)`` per member of ``scenario`` (one for a name, several for a list; none without):
        severity a number, a ``[lo, hi]`` range or None (the scenario's representative). A structural mistake is a
        one-line ConfigError."""
        if not self.scenario:
            if self.scenario_severity is not None:
                raise ConfigError("trainer.scenario_severity needs trainer.scenario (the scenario it applies to)")
            return []
        names = [self.scenario] if isinstance(self.scenario, str) else list(self.scenario)
        severities = [self.scenario_severity] if isinstance(self.scenario, str) else self.scenario_severity
        if severities is None:
            severities = [None] * len(names)
        if not isinstance(severities, list) or len(severities) != len(names):
            raise ConfigError(f"trainer.scenario_severity={self.scenario_severity!r}: with a list of {len(names)} "
                              "scenarios give a list with one severity (a value, [lo, hi] or null) per scenario")
        for name, severity in zip(names, severities, strict=True):
            if isinstance(severity, list) and not (
                    len(severity) == 2 and all(_is_number(v) for v in severity) and severity[0] <= severity[1]):
                raise ConfigError(f"trainer.scenario_severity of '{name}': {severity!r} is not a range [lo, hi] "
                                  "with lo <= hi")
            if not isinstance(severity, list) and severity is not None and not _is_number(severity):
                raise ConfigError(f"trainer.scenario_severity of '{name}': expected a number, [lo, hi] or null, got "
                                  f"{severity!r}")
        return list(zip(names, severities, strict=True))


@dataclass
class EvalConfig:
    """Meta-test evaluation and the tuned baselines (``surf.baselines``; docs/baselines.md)."""

    test_tasks: int = 30
    n_async: int = 0  # agents per layer that neither update nor send
    async_mode: str = "stale"  # stale (paper text) | zero (authors' code)
    async_repeats: int = 1
    dgd_steps: list[float] = field(default_factory=lambda: [0.03, 0.1, 0.3, 1.0, 3.0, 10.0])  # dgd/dsgd step grid
    momentum_grid: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.8, 0.9])  # dgd_momentum's momenta
    long_factor: int = 10  # also report the long_baselines at long_factor x the unrolled rounds
    baselines: list[str] = field(default_factory=lambda: ["dgd", "dgd_momentum"])  # at the unrolled model's rounds
    long_baselines: list[str] = field(default_factory=lambda: ["dgd"])  # reported as NAME_x{long_factor}
    grids: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # e.g. {extra: {step: [0.1, 0.3]}}
    baseline_preset: str = "tuned"  # tuned (grid search on validation tasks) | paper (SURF paper's settings)
    local_steps: int = 6  # DFedAvgM / FedAvg / FedProx / SCAFFOLD local steps per round (paper DFedAvgM: 6)
    clients_per_round: int = 10  # FedAvg / FedProx / SCAFFOLD participants per round (paper: 10 of 100)
    centralized_rounds: int = 500  # gradient steps of the centralized ceiling (when "centralized" is listed)


@dataclass
class SparseCodingConfig:
    """LISTA sparse-coding family (robust unrolling, TSP 2024): ``min_x 1/2 ||y - D x||^2 + rho ||x||_1``."""

    dictionary: str = "gaussian"  # gaussian (N(0,1), unit-norm columns) | digits (learned from the digits images)
    signal_dim: int = 64  # n (digits: fixed at 64 = 8x8 pixels)
    atoms: int = 128  # m (overcomplete: m > n)
    sparsity: float = 0.1  # synthetic codes: probability that an atom is active (values N(0, 1))
    noise_std: float = 0.01  # additive Gaussian measurement noise on y, per coordinate
    rho: float = 0.1  # l1 weight of the LASSO
    dictionary_iters: int = 20  # digits: alternating (FISTA codes, least-squares atoms) dictionary-learning rounds
    train_signals: int = 32768  # fixed meta-train pool (x* solved once); a task is a batch drawn from its pool
    val_signals: int = 1024
    test_signals: int = 1024
    batch_size: int = 128  # signals per task
    solver_iters: int = 3000  # FISTA iterations (max) for the targets x*
    solver_tol: float = 1e-5  # stop when every signal's prox-gradient residual is below this
    variant: str = "lista"  # lista (untied per-layer matrices and thresholds) | alista (analytic W, 2 scalars/layer)
    layers: int = 16  # L
    loss: str = "supervised"  # supervised (authors: ||x_L - x*||^2) | objective (unsupervised LASSO F(x_L))
    ci_measure: str = "prox_residual"  # CI value: prox_residual (gradient mapping) | ls_gradient (authors' D^T(Dx-y))
    noise_injection: float = 0.0  # training noise on layer outputs: std sigma_l = noise_injection / l^noise_decay
    noise_decay: float = 2.0
    perturb_strengths: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.03, 0.1, 0.3, 1.0])
    ood_sparsity: list[float] = field(default_factory=lambda: [0.05, 0.2, 0.3])  # synthetic only
    ood_noise: list[float] = field(default_factory=lambda: [0.03, 0.1])
    ood_dictionary: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])  # relative atom perturbation
    ood_signals: int = 512
    twin: bool = True  # constrained runs also meta-train standard LISTA (constraints.kind=none) for the report


@dataclass
class InpaintingConfig:
    """GLOW-Prox image inpainting (robust unrolling, TSP 2024): ``y = A x (+ noise)``, A a pixel mask, solved by
    unrolled proximal gradient in the latent space of per-layer Glow flows (docs/inpainting.md)."""

    images: str = "digits"  # digits (embedded 8x8, no download) | npz (data.path-like `path`) | mnist | cifar10
    path: str | None = None  # npz: an .npz with images (N, H, W[, C]); mnist / cifar10: folder of the official files
    upsample: int = 1  # integer bilinear upscaling of every image (digits 8x8 -> 16x16 with 2)
    max_images: int = 0  # use at most this many images (a keyed subset) before splitting; 0 = all
    batch_size: int = 32  # images per task
    test_images: int = 256  # meta-test images (from the disjoint test pool)
    mask: str = "center"  # center (one centered square, the authors') | squares (random squares) | pixels
    mask_size: float = 0.375  # center / squares: square side as a fraction of the image side (authors: 24/64)
    mask_squares: int = 3  # squares: how many per image
    mask_rate: float = 0.5  # pixels: share of missing pixels
    noise_std: float = 0.0  # observation noise on y, per pixel
    sigma: float = 0.1  # F(x, z) = ||y - A x||^2 / sigma^2 - log N(z; 0, I) (authors: 1/sigma^2 = 100)
    layers: int = 5  # L
    shared_flow: bool = False  # one flow for every layer (default: one per layer, as the authors)
    flow_levels: int = 1  # Glow levels (each squeezes 2x2 pixels into channels)
    flow_depth: int = 4  # Glow blocks (actnorm, invertible 1x1 conv, affine coupling) per level
    flow_hidden: int = 32  # channels of each coupling's conv net
    step_init: float = 1.0  # mu_l at initialization (1 = 1/||A||^2, the classical step)
    prox_init: float = 0.1  # lambda_l at initialization
    box_projection: bool = False  # clamp the data step's output to the image range [0, 1] before the flow (G1')
    pretrain_steps: int = 0  # maximum-likelihood pretraining of the flows on training images (0 = none)
    pretrain_lr: float = 1e-3
    free_layers: int = 1  # leading layers without a constraint (authors: 1; x_0 = y has a zero data gradient)
    reference: str = "clean"  # CII's x*: clean (the image) | classical (a long DCT-FISTA solve)
    constraint_scope: str = "batch"  # batch: a_l = the batch mean of the per-image values (authors) | image: every
    #   image's own slack (its ratio / difference), averaged over the batch: a descent step for each image
    constraint_noise: float = 0.0  # > 0: CII also on every layer from a perturbed input x_{l-1} + s n, n ~ N(0, I)
    #   per pixel, s ~ U(0, constraint_noise) per image: a descent step from nearby points too (robust CII)
    robust_form: str = "descent"  # what those perturbed inputs must satisfy: descent (||f_l(x~) - x*|| <= (1 - eps)
    #   ||x~ - x*||) | gain (||f_l(x~) - f_l(x)|| <= robust_gain ||x~ - x||: the layer damps perturbations)
    robust_gain: float = 0.25  # gain form: the bound on every layer's gain on perturbations of its input
    reference_iters: int = 300  # iterations of that long solve
    classical_rho: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0])  # tuned on val
    noise_injection: float = 0.0  # training: x_l += s_l n/||n||, l = 0..L-2, s_l = level/(l+1)^decay (authors: 1)
    noise_decay: float = 1.0
    perturb_strengths: list[float] = field(default_factory=lambda: [0.0, 0.03, 0.1, 0.3])  # test noise std per pixel
    ood_mask_sizes: list[float] = field(default_factory=lambda: [0.25, 0.5])  # centered squares of other sizes
    ood_masks: list[str] = field(default_factory=lambda: ["squares", "pixels"])  # other mask kinds
    ood_noise: list[float] = field(default_factory=lambda: [0.05, 0.1])  # observation noise on y
    examples: int = 4  # test images shown in plots/image_grid.png
    twin: bool = True  # constrained runs also meta-train standard unrolling (constraints.kind=none) for the report


@dataclass
class Config:
    name: str = "surf"
    family: str = "decentralized"  # decentralized (U-DGD classifier) | sparse_coding (LISTA) | inpainting
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op CPU threads; 0 = by problem size (one per 2**18 floats of the largest tensor)
    num_agents: int = 100
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    constraints: ConstraintConfig = field(default_factory=ConstraintConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sparse_coding: SparseCodingConfig = field(default_factory=SparseCodingConfig)
    inpainting: InpaintingConfig = field(default_factory=InpaintingConfig)

    @property
    def run_device(self) -> str:
        """The device every family runs on: ``trainer.device`` over the top-level ``device``."""
        return self.trainer.device or self.device


CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "model.variant": ("compact", "paper"),
    "model.local_gradient": ("batch", "full"),
    "model.warm_start": ("none", "heavy_ball"),
    "model.safeguard": ("none", "loss"),
    "constraints.kind": ("gradient_norm", "distance", "energy", "loss", "window", "none"),
    "constraints.window_reduce": ("mean", "max"),
    "trainer.select_by": ("loss", "accuracy"),
    "trainer.lr_schedule": ("constant", "cosine"),
    "constraints.form": ("difference", "ratio", "normalized"),
    "constraints.gradient_on": ("batch", "next_batch", "full"),
    "eval.async_mode": ("stale", "zero"),
    "eval.baseline_preset": ("tuned", "paper"),
    "sparse_coding.dictionary": ("gaussian", "digits"),
    "sparse_coding.variant": ("lista", "alista"),
    "sparse_coding.loss": ("supervised", "objective"),
    "sparse_coding.ci_measure": ("prox_residual", "ls_gradient"),
    "inpainting.images": ("digits", "npz", "mnist", "cifar10"),
    "inpainting.mask": ("center", "squares", "pixels"),
    "inpainting.reference": ("clean", "classical"),
    "inpainting.constraint_scope": ("batch", "image"),
    "inpainting.robust_form": ("descent", "gain"),
}
