"""Every registry the user can name in a config or on the command line, in one place: task families (with their
evaluator, table and plots), runtimes, and the lower layers' registries (graph families and specs, GSOs, data
sources, partitions, baselines, stress scenarios), which ``surf list`` prints and :func:`check_names` checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from surf import config as config_mod
from surf.baselines.registry import BASELINES
from surf.baselines.registry import check_names as check_baseline_names
from surf.config import Config
from surf.data.partition import PARTITIONS
from surf.data.sources import SOURCES
from surf.evaluation.classifier import evaluate as evaluate_classifier
from surf.evaluation.inpainting import evaluate as evaluate_inpainting
from surf.evaluation.inpainting import examples as inpainting_examples
from surf.evaluation.sparse import evaluate as evaluate_sparse
from surf.evaluation.summary import Summary
from surf.families.base import TaskFamily
from surf.families.classifier.family import ClassifierFamily
from surf.families.inpainting.family import InpaintingFamily
from surf.families.sparse.family import SparseCodingFamily
from surf.graphs.gso import GSOS
from surf.graphs.topology import list_topologies
from surf.models.features import FEATURES as STEP_FEATURES
from surf.reporting.inpainting import format_table as inpainting_table
from surf.reporting.inpainting import write_image_grid
from surf.reporting.inpainting import write_plots as inpainting_plots
from surf.reporting.run_plots import write_plots as classifier_plots
from surf.reporting.sparse import format_table as sparse_table
from surf.reporting.sparse import write_plots as sparse_plots
from surf.reporting.tables import format_table as classifier_table
from surf.scenarios.scenario import list_scenarios, load_scenario
from surf.training.rundir import RunDir
from surf.utils.errors import ConfigError
from surf.utils.paths import REPO
from surf.utils.typed import covering, get_dotted


@dataclass(frozen=True)
class FamilyEntry:
    """A task family and what ``surf run`` / ``surf eval`` do with it."""

    description: str
    build: Callable[[Config], TaskFamily]
    evaluate: Callable[[TaskFamily, torch.nn.Module, torch.nn.Module | None], Summary]  # (family, model, twin)
    format_table: Callable[[Summary], str]
    write_plots: Callable[[Summary, list[dict], Path], list[Path]]  # (summary, metrics rows, plots folder)
    wants_twin: Callable[[Config], bool] = lambda cfg: False  # also meta-train a standard-unrolling twin
    # figures that need the trained models, not only the summary: (family, model, twin, plots folder) -> files
    write_figures: Callable[[TaskFamily, torch.nn.Module, torch.nn.Module | None, Path], list[Path]] = \
        lambda family, model, twin, folder: []
    ignores: tuple[str, ...] = ()  # config sections and keys this family never reads (an override of one is an error)
    trains_only: tuple[str, ...] = ()  # keys only its meta-training reads (an evaluation's override of one is an error)
    evaluation_reads: tuple[str, ...] = ()  # trainer settings its evaluation reads too (besides trainer.device)


# what only the decentralized classifier reads (data.pool_fractions, read by every family, is the one exception)
_CLASSIFIER_ONLY = ("num_agents", "topology", "data", "model", "eval", "trainer.scenario", "trainer.scenario_severity",
                    "constraints.gradient_on", "constraints.optimum_l2", "constraints.energy_weight",
                    "constraints.window_reduce")
_READ_BY_EVERY_FAMILY = ("data.pool_fractions",)
# what only meta-training reads, in every family: the trained model's constraint kind names its method
TRAINING_ONLY = ("trainer", "constraints.kind", "constraints.dual_lr", "constraints.dual_max")

FAMILIES: dict[str, FamilyEntry] = {
    "decentralized": FamilyEntry(
        "agents on a graph, softmax regression each, optimized by U-DGD (paper eq. 11-13)", ClassifierFamily,
        lambda family, model, twin: evaluate_classifier(family, model), classifier_table, classifier_plots,
        ignores=("sparse_coding", "inpainting"),
        trains_only=("model.step_init", "model.momentum_init", "model.warm_start", "model.dropout",
                     "data.relabel_train"),
        evaluation_reads=("trainer.val_tasks",)),  # the baselines are tuned on that many validation tasks
    "sparse_coding": FamilyEntry(
        "LASSO sparse coding solved by LISTA / ALISTA (robust unrolling, TSP 2024)", SparseCodingFamily,
        evaluate_sparse, sparse_table, sparse_plots,
        wants_twin=lambda cfg: cfg.constraints.kind != "none" and cfg.sparse_coding.twin,
        ignores=(*_CLASSIFIER_ONLY, "inpainting"),
        trains_only=("constraints.epsilon", "constraints.form", "sparse_coding.loss", "sparse_coding.noise_injection",
                     "sparse_coding.noise_decay", "sparse_coding.train_signals", "sparse_coding.batch_size")),
    "inpainting": FamilyEntry(
        "image inpainting by GLOW-Prox, unrolled proximal gradient in per-layer Glow latents (robust unrolling, TSP "
        "2024)", InpaintingFamily, evaluate_inpainting, inpainting_table, inpainting_plots,
        wants_twin=lambda cfg: cfg.constraints.kind != "none" and cfg.inpainting.twin,
        write_figures=lambda family, model, twin, folder: [
            write_image_grid(inpainting_examples(family, model, twin), folder / "image_grid.png")]
        if family.cfg.inpainting.examples else [],
        ignores=(*_CLASSIFIER_ONLY, "sparse_coding"),
        trains_only=("inpainting.noise_injection", "inpainting.noise_decay", "inpainting.pretrain_steps",
                     "inpainting.pretrain_lr", "inpainting.step_init", "inpainting.prox_init", "inpainting.batch_size",
                     "inpainting.constraint_scope", "inpainting.constraint_noise", "inpainting.robust_form",
                     "inpainting.robust_gain")),
}
RUNTIMES: dict[str, str] = {
    "engine": "the vectorized engine: every agent of every task as one batched tensor (surf run / eval / stress)",
    "flower": "agents (or shards of agents) as Flower ClientApps in Flower's simulation engine (surf deploy)",
    "flower-deployment": "a local SuperLink and M SuperNodes (separate processes on 127.0.0.1), each node with its "
                         "own data file (surf deploy --runtime flower-deployment --nodes M)",
    "ray-train": "the meta-trainer data-parallel on Ray Train workers (trainer.workers > 1)",
}


DEPLOY_RUNTIMES = ("flower", "flower-deployment")  # what `surf deploy --runtime` takes


def family_entry(cfg: Config) -> FamilyEntry:
    return FAMILIES[cfg.family]

def check_names(cfg: Config) -> Config:
    """Every registry name in ``cfg`` exists (one line naming the valid ones otherwise); returns ``cfg``."""
    named = {"family": (cfg.family, FAMILIES), "topology.gso": (cfg.topology.gso, GSOS),
             "data.source": (cfg.data.source, SOURCES), "data.partition": (cfg.data.partition, PARTITIONS)}
    for key, (value, registry) in named.items():
        if value not in registry:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(registry)} (see `surf list`)")
    check_baseline_names(cfg.eval, cfg.model.server)
    for name, _ in cfg.trainer.scenario_mixture():
        load_scenario(name)
    unknown = [f for f in cfg.model.features if f not in STEP_FEATURES]
    if unknown:
        raise ConfigError(f"model.features: unknown feature '{unknown[0]}' (valid: {', '.join(STEP_FEATURES)})")
    return cfg


# settings read only under some values of another setting: key (or key prefix) -> (that setting, its values)
_READ_ONLY_WITH = {"data.dirichlet_alpha": ("data.partition", ("dirichlet",)),
                   "data.classes_per_agent": ("data.partition", ("pathological",)),
                   "data.gaussian_": ("data.source", ("gaussian",)),
                   "data.path": ("data.source", ("npz",)),
                   "topology.laplacian_alpha": ("topology.gso", ("laplacian",)),
                   "inpainting.path": ("inpainting.images", ("npz", "mnist", "cifar10")),
                   "sparse_coding.dictionary_iters": ("sparse_coding.dictionary", ("digits",))}


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """A config file plus the command line's overrides, validated, with every registry name checked and no override
    of a setting the family never reads, or reads only under another value of a setting (it would change nothing,
    silently)."""
    cfg = check_names(config_mod.load(path, overrides))
    check_read(cfg, [key for key, _ in config_mod.parse_overrides(overrides or [])])
    return cfg


def check_read(cfg: Config, keys: list[str], what: str = "-o") -> None:
    """A one-line error for an override (of one of ``keys``) of a setting ``cfg``'s family never reads, or reads only
    under another value of a setting: it would change nothing, silently."""
    entry = family_entry(cfg)
    for key in keys:
        section = covering(key, entry.ignores)
        if section and key not in _READ_BY_EVERY_FAMILY:
            raise ConfigError(f"{what} {key}: the {cfg.family} family never reads {section}, so the override would "
                              "change nothing; drop it")
        setting, values = next((gate for prefix, gate in _READ_ONLY_WITH.items() if key.startswith(prefix)),
                               (None, ()))
        if setting and get_dotted(cfg, setting) not in values:
            raise ConfigError(f"{what} {key}: read only with {setting}={'|'.join(values)} (this config has "
                              f"{get_dotted(cfg, setting)}), so the override would change nothing; set {setting} too "
                              "or drop it")


def config_from_dict(raw: dict, overrides: list[str] | None = None) -> Config:
    """A config mapping plus overrides, validated and with every registry name checked."""
    return check_names(config_mod.from_dict(raw, overrides))


def build_family(cfg: Config) -> TaskFamily:
    """The task family named by ``cfg.family``; validates its data and graph before anything is written."""
    return family_entry(cfg).build(cfg)


def check_evaluation_keys(keys: list[str], family: str, what: str) -> None:
    """A one-line error for a setting only meta-training reads (``trainer.*``, the constraint's kind and dual step,
    the family's ``trains_only``) among the overrides of an evaluation of a trained model of ``family``: it would
    change nothing, or only a label."""
    entry = FAMILIES.get(family)
    training = (*TRAINING_ONLY, *entry.trains_only) if entry else TRAINING_ONLY
    reads = ("trainer.device", *entry.evaluation_reads) if entry else ("trainer.device",)
    for key in keys:
        if covering(key, training) and key not in reads:
            raise ConfigError(f"{what} {key}: an evaluation does not train, so it would change nothing or only a "
                              "label; drop it (train anew to change it)")


def trained_config(run_dir: str | Path, overrides: list[str]) -> Config:
    """The config of a trained run with ``overrides`` applied (validated; nothing is loaded yet)."""
    keys = [key for key, _ in config_mod.parse_overrides(overrides)]
    if Path(run_dir).is_file():  # a config file, typically: the advice below would name it as --out
        raise ConfigError(f"{run_dir} is a file, not a run directory: pass the folder a finished `surf run CONFIG "
                          "--out DIR` wrote")
    run = RunDir(run_dir)
    if not (run.checkpoints / "best.pt").exists():
        raise ConfigError(f"no trained model in {run.checkpoints}; train first with `surf run CONFIG --out {run.path}`")
    if not run.config.is_file():
        if run.path.name == "twin" and (run.path.parent / "config.yaml").is_file():
            raise ConfigError(f"{run.path} is the standard-unrolling twin of {run.path.parent}: evaluate that run "
                              "(`surf eval` reports the twin beside its model)")
        raise ConfigError(f"{run.path} has a model but no config.yaml (its resolved config); restore it from the run's "
                          "copy or retrain")
    raw = config_mod.read_mapping(run.config, "a mapping of config sections")
    if not raw:  # defaults are another run
        raise ConfigError(f"{run.config} is empty, not the run's resolved config; restore it from the run's copy or "
                          "retrain")
    check_evaluation_keys(keys, str(raw.get("family", "decentralized")), "-o")
    return load_config(run.config, overrides)


def load_trained(run_dir: str | Path, overrides: list[str] | None = None,
                 check: Callable[[Config], None] | None = None) -> tuple[TaskFamily, torch.nn.Module]:
    """The family of a finished run (its config plus ``overrides``) and its best model, in eval mode; ``check``
    sees the config first (a command's refusal before the family's data is built)."""
    cfg = trained_config(run_dir, overrides or [])
    if check is not None:
        check(cfg)
    family = build_family(cfg)
    return family, RunDir(run_dir).best_model(family)


def catalogue() -> dict[str, dict[str, str]]:
    """Everything ``surf list`` prints: registry title -> {name: one-line description}."""
    baselines = {name: f"[{'star' if spec.star else 'decentralized'}; tunes {', '.join(spec.hypers)}] "
                       f"{spec.description}" for name, spec in BASELINES.items()}
    return {
        "task families (family)": {name: entry.description for name, entry in FAMILIES.items()},
        "topologies (topology.name)": dict(sorted(list_topologies().items())),
        "graph shift operators (topology.gso)": {name: (f.__doc__ or "").splitlines()[0] for name, f in GSOS.items()},
        "task generators (data.partition)": PARTITIONS,
        "data sources (data.source)": SOURCES,
        "baselines (eval.baselines, eval.long_baselines, surf stress --baselines)": baselines,
        "stress scenarios (surf stress --scenario, trainer.scenario)": list_scenarios(),
        "compact-step features (model.features)": STEP_FEATURES,
        "runtimes": RUNTIMES,
        "configs (simulations/)": {str(p.relative_to(REPO)): "" for p in sorted((REPO / "simulations").glob("*.yaml"))},
    }
