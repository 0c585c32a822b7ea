"""The ablation section of a sweep report (``figure: ablation``, ``simulations/ablation.yaml``): what each piece of
the learned optimizer buys.

One row per trained cell (its seeds pooled): L x K, start (default or warm start), constraint (kind, form, eps),
robust training, run-time safeguard, step features; its final held-out accuracy clean (``eval.n_async = 0``) and
under the largest evaluated ``n_async`` (dropped agents per layer), plain and relabelled, each the mean ± 95 % CI
over seeds; the paired differences (same seed: same tasks, W_0 and drops) between its drops and clean accuracy and
to tuned heavy-ball DGD under the same conditions; the share of (task, layer) pairs where its declared descent
quantity decreased and the number of layers where its mean per-layer accuracy fell, clean and under drops. The
classical references (every baseline the evaluation ran, tuned on validation tasks at its rounds: heavy-ball DGD,
DGD, DGD at 10x the rounds) follow, from the same summaries.
"""

from __future__ import annotations

from pathlib import Path

from surf.config import from_dict
from surf.reporting.figures import pm, signed, table
from surf.reporting.sweep_data import Entry, Group, acc, acc_rel, baseline_accuracy, mean_curve, paired_across
from surf.reporting.sweep_plots import plot_ablation
from surf.scenarios.training import training_label

HEAVY_BALL = "dgd_momentum"


def describe(entry: Entry) -> list[str]:
    """L x K, start, constraint, robust training, safeguard and features of a trained cell, from its resolved config
    (and its summary's recorded warm start, when this is the trained cell's own evaluation)."""
    cfg = from_dict(entry.config)
    model, constraints = cfg.model, cfg.constraints
    start = f"step {model.step_init:g}"
    if model.warm_start == "heavy_ball":
        warm = entry.summary.training.warm_start if entry.summary.training else None
        start = f"heavy-ball α={warm.step:g} β={warm.momentum:g}" if warm else "heavy-ball (tuned)"
    constraint = "none" if constraints.kind == "none" else \
        f"{constraints.kind} {constraints.form} ε={constraints.epsilon:g}"
    return [f"{model.layers}×{model.hops}", start, constraint, training_label(cfg.trainer), model.safeguard,
            ", ".join(model.features) or "—"]


def _descent(g: Group | None) -> str:
    if g is None or any(e.summary.descent.declared_decrease_fraction is None for e in g.entries):
        return "—"
    return f"{100 * g.stat(lambda s: s.descent.declared_decrease_fraction).mean:.1f}"


def _conditions(groups: list[Group]) -> tuple[dict[str, dict[int, Group]], int]:
    """Trained label -> {n_async: group} (the first group per n_async), and the largest evaluated n_async."""
    by_label: dict[str, dict[int, Group]] = {}
    for g in groups:
        by_label.setdefault(g.label, {}).setdefault(int(g.first.summary.eval["n_async"]), g)
    drops = max((n for conditions in by_label.values() for n in conditions), default=0)
    return by_label, drops


def _has(g: Group | None, name: str) -> bool:
    return g is not None and g.has_baseline(name)


def _dips(g: Group | None) -> str:
    """Layers where the seed-averaged per-layer accuracy fell (0 = monotone)."""
    if g is None:
        return "—"
    curve = mean_curve(g, "per_layer", "accuracy")
    return str(sum(after < before for before, after in zip(curve[:-1], curve[1:], strict=True)))


def _model_row(label: str, clean: Group | None, dropped: Group | None, drops: int) -> list[str]:
    lead = clean or dropped
    cells = [label, *describe(lead.first), str(len(lead.entries))]
    for g in (clean, dropped):
        cells += [pm(g.stat(acc)), pm(g.stat(acc_rel))] if g is not None else ["—", "—"]
    both = clean is not None and dropped is not None and drops > 0
    cells.append(signed(paired_across(dropped, clean, acc)) if both else "—")
    for g in (clean, dropped):
        cells.append(signed(g.paired(acc, baseline_accuracy(HEAVY_BALL))) if _has(g, HEAVY_BALL) else "—")
    return cells + [f"{_descent(clean)} / {_descent(dropped)}", f"{_dips(clean)} / {_dips(dropped)}"]


def _reference_rows(by_label: dict[str, dict[int, Group]], drops: int) -> list[list[str]]:
    """Every baseline once per number of rounds, clean and under drops, from the first cell that ran it."""
    rows, seen = [], set()
    for conditions in by_label.values():
        clean, dropped = conditions.get(0), conditions.get(drops) if drops > 0 else None
        lead = clean or dropped
        for name, comparison in lead.first.summary.comparisons.items():
            if (name, comparison.steps) in seen:
                continue
            seen.add((name, comparison.steps))
            hyper = ", ".join(f"{k} {v:g}" for k, v in comparison.hyper.items())
            cells = [f"{name} ({comparison.steps} rounds)", "", f"{hyper} (first seed)", "", "", "", "",
                     str(len(lead.entries))]
            for g in (clean, dropped):
                present = _has(g, name)
                cells += [pm(g.stat(baseline_accuracy(name))) if present else "—",
                          pm(g.stat(baseline_accuracy(name, "accuracy_relabelled"))) if present else "—"]
            both = _has(clean, name) and _has(dropped, name)
            cells.append(signed(paired_across(dropped, clean, baseline_accuracy(name))) if both else "—")
            rows.append(cells + ["", "", "", ""])
    return rows


def section_ablation(groups: list[Group], plots: Path) -> list[str]:
    """The ablation table and its plot."""
    by_label, drops = _conditions(groups)
    header = ["cell", "L×K", "start", "constraint", "trained under", "safeguard", "features", "seeds", "clean: plain",
              "clean: relabelled", f"{drops} dropped: plain", f"{drops} dropped: relabelled",
              "dropped − clean (paired)", "− heavy-ball, clean (paired)", f"− heavy-ball, {drops} dropped (paired)",
              "declared descent %: clean / dropped", "accuracy dips (layers): clean / dropped"]
    rows = [_model_row(label, c.get(0), c.get(drops) if drops > 0 else None, drops) for label, c in by_label.items()]
    path = plots / "ablation.png"
    plot_ablation(by_label, drops, HEAVY_BALL, path)
    return ["## Ablation: what each piece buys", "",
            f"Final held-out accuracy, clean and with {drops} of the agents dropped at every layer (stale messages "
            "unless the cell says otherwise), mean ± 95 % CI over seeds. Paired differences compare runs on the same "
            "seed (same tasks, W_0 and drops); ✓ = the CI is above 0. Declared descent: share of (task, layer) "
            "pairs where the quantity the cell's constraint is on (the gradient norm for `none`) decreased.", "",
            *table(header, rows + _reference_rows(by_label, drops)), "",
            f"![ablation]({path.relative_to(plots.parent)})", ""]
