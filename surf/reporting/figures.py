"""The sections of a sweep report: one per paper figure it reproduces (Figs. 1-5, the star graph, the topology
comparison) plus the overview of all cells, as markdown lines with their plots."""

from __future__ import annotations

import re
from pathlib import Path

from surf.evaluation.summary import Summary
from surf.reporting import paper_numbers as paper
from surf.reporting.sweep_data import (
    Entry,
    Group,
    Stat,
    acc,
    acc_rel,
    baseline_accuracy,
    best_baseline,
    graph_info,
    graph_label,
    mean_baseline_curves,
    mean_curve,
    task_std,
)
from surf.reporting.sweep_plots import plot_per_layer_groups, plot_rounds, plot_scalar, plot_topology


def pm(stat: Stat) -> str:
    """``mean ± 95 % CI half-width`` over seeds (the mean alone with one seed)."""
    return f"{stat.mean:.3f}" if stat.ci != stat.ci else f"{stat.mean:.3f} ± {stat.ci:.3f}"


def signed(stat: Stat | None) -> str:
    """A paired difference ``+0.014 ± 0.006`` (points of accuracy as fractions), marked ✓ when its CI is above 0."""
    if stat is None:
        return "—"
    text = f"{stat.mean:+.3f}" if stat.ci != stat.ci else f"{stat.mean:+.3f} ± {stat.ci:.3f}"
    return text + (" ✓" if stat.above_zero else "")


def spread(stat: Stat) -> str:
    return "—" if stat.spread != stat.spread else f"{stat.spread:.3f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def baseline_names(groups: list[Group]) -> list[str]:
    names: list[str] = []
    for g in groups:
        for e in g.entries:
            names += [n for n in e.summary.comparisons if n not in names]
    return names


def baseline_cell(g: Group, name: str) -> str:
    """``plain / relabelled (R rounds); Δ`` for baseline ``name`` over the group's seeds, Δ = the model minus the
    baseline on the same seed (plain)."""
    if not g.has_baseline(name):
        return "—"
    plain = g.stat(baseline_accuracy(name))
    rel = g.stat(baseline_accuracy(name, "accuracy_relabelled"))
    difference = g.paired(acc, baseline_accuracy(name))
    return f"{pm(plain)} / {rel.mean:.3f} ({g.first.summary.comparisons[name].steps} r); Δ {signed(difference)}"


def declared_descent(g: Group) -> str:
    """``quantity decrease %`` of the run's declared descent quantity, mean over seeds (— when not measured)."""
    if any(e.summary.descent.declared_decrease_fraction is None for e in g.entries):
        return "—"
    share = g.stat(lambda s: s.descent.declared_decrease_fraction)
    return f"{g.first.summary.descent.declared_quantity} {100 * share.mean:.1f}"


def overview(groups: list[Group]) -> list[str]:
    names = baseline_names(groups)
    header = ["trained cell", "evaluated as", "method", "rounds", "seeds", "accuracy: paper protocol (plain)",
              "honest (relabelled)", "task spread", "grad-norm descent %", "declared descent %"] + \
             [f"{n}: plain / relabelled; model − {n} (paired)" for n in names]
    rows = []
    for g in groups:
        s, plain = g.first.summary, g.stat(acc, task_std)
        rows.append([g.label, g.cond_label, s.method, s.rounds, plain.n, pm(plain), pm(g.stat(acc_rel)),
                     spread(plain), f"{100 * g.stat(lambda x: x.descent.grad_norm_decrease_fraction).mean:.1f}",
                     declared_descent(g)] + [baseline_cell(g, n) for n in names])
    return table(header, rows)


def paper_value(value: float | None) -> str:
    return "—" if value is None else f"≈{value:.3f}"


def paper_baseline(row: dict, ours: str, summary: Summary) -> float | None:
    """The paper's value for our baseline ``ours`` when it ran longer than the unrolled model (the paper's
    baselines ran 10x the rounds): ``dsgd_x10`` -> the paper's DSGD at 200 rounds."""
    if summary.comparisons[ours].steps <= summary.rounds:
        return None
    return row.get(re.sub(r"_x\d+$", "", ours))


def _with_paper(g: Group, name: str, row: dict | None) -> str:
    """Our baseline cell, with the paper's value for the same method in brackets when it has one."""
    value = paper_baseline(row or {}, name, g.first.summary) if name in g.first.summary.comparisons else None
    return baseline_cell(g, name) + (f" [paper {paper_value(value)}]" if value is not None else "")


# ------------------------------------------------------------------------------------- figure sections


def section_fig1(groups: list[Group], plots: Path) -> list[str]:
    lines = ["## Fig. 1: per-layer held-out accuracy and loss", ""]
    trained = [g for g in groups if g.cond_label in ("as trained", "base")]
    for g in trained:
        s, layers = g.first.summary, g.first.summary.layers + 1
        ref = paper.FIG1.get(s.method)
        header = ["", *[str(layer) for layer in range(layers)]]
        rows = [["accuracy (plain)", *[f"{v:.3f}" for v in mean_curve(g, "per_layer", "accuracy")]],
                ["accuracy (relabelled)", *[f"{v:.3f}" for v in mean_curve(g, "per_layer_relabelled", "accuracy")]],
                ["loss (CE)", *[f"{v:.3f}" for v in mean_curve(g, "per_layer", "loss")]]]
        if ref and len(ref["accuracy"]) == layers:
            rows.append([f"paper {s.method} accuracy", *[paper_value(v) for v in ref["accuracy"]]])
            rows.append([f"paper {s.method} loss (CE/15)", *[paper_value(v) for v in ref["loss_code_scale"]]])
        lines += [f"**{g.label}** ({s.method}, {g.first.config['model']['variant']} model, "
                  f"meta-trained on {'relabelled' if g.first.config['data']['relabel_train'] else 'original'} "
                  f"labels; gradient norm decreasing in "
                  f"{100 * g.stat(lambda x: x.descent.grad_norm_decrease_fraction).mean:.1f} % of (task, layer) "
                  f"pairs, declared descent: {declared_descent(g)} %)", "",
                  *table(header, rows), ""]
    path = plots / "fig1_per_layer.png"
    plot_per_layer_groups(trained, path, paper.FIG1, "layer")
    return lines + [f"![per layer]({path.relative_to(plots.parent)})", ""]


def section_fig2(groups: list[Group], plots: Path) -> list[str]:
    names = baseline_names(groups)
    lines = ["## Fig. 2: accuracy vs communication rounds", "",
             "Goal (honest protocol): SURF at its rounds ≥ the best tuned baseline at 10× the rounds.", ""]
    rows = []
    for g in groups:
        s = g.first.summary
        graph = g.first.config["topology"]["name"]
        ref = paper.FIG2.get(graph, {})
        shown = graph_label(g)
        long = best_baseline(g, 10 * s.rounds, relabelled=True)  # both sides: means over the group's seeds
        verdict = "—" if long is None else ("yes" if g.stat(acc_rel).mean >= long[1] else
                                            f"no ({long[0]} {long[1]:.3f})")
        rows.append([shown, pm(g.stat(acc)), pm(g.stat(acc_rel)), paper_value(ref.get("surf")),
                     *[_with_paper(g, n, ref) for n in names],
                     verdict])
    lines += table(["graph", f"SURF @{groups[0].first.summary.rounds} plain", "relabelled", "paper SURF",
                    *[f"{n}: plain / relabelled" for n in names], "SURF ≥ best tuned @10× rounds (honest)?"], rows)
    path = plots / "fig2_rounds.png"
    plot_rounds(groups, path)
    return lines + ["", f"![rounds]({path.relative_to(plots.parent)})", ""]


def section_fig2_star(groups: list[Group], plots: Path) -> list[str]:
    lines = ["## Fig. 2 (right): star graph, accuracy relative to centralized training", ""]
    for g in groups:  # every row is a mean over the group's seeds (the same tasks per seed for every method)
        central = g.stat(baseline_accuracy("centralized")).mean if g.has_baseline("centralized") else None
        scale = central or 1.0
        what = "÷ centralized" if central else "absolute (no `centralized` baseline in this evaluation)"
        curve = mean_curve(g, "per_layer", "accuracy")
        header = ["round", *[str(r) for r in range(len(curve))]]
        rows = [[f"SURF {what}", *[f"{v / scale:.3f}" for v in curve]],
                ["paper SURF ÷ centralized", *[paper_value(paper.FIG2_STAR["surf"].get(r)) for r in range(len(curve))]]]
        for name, per_round in mean_baseline_curves(g).items():
            if name != "centralized":
                rows.append([f"{name} {what}", *[f"{per_round[r] / scale:.3f}" if r < len(per_round) else ""
                                                 for r in range(len(curve))]])
        lines += [f"**{g.label} / {g.cond_label}**" + (f", centralized accuracy {central:.3f}" if central else ""),
                  "", *table(header, rows), ""]
        path = plots / f"fig2_star_{g.label}.png"
        plot_rounds([g], path, relative_to=central)
        lines += [f"![star]({path.relative_to(plots.parent)})", ""]
    return lines


def _scalar_section(groups: list[Group], title: str, x_name: str, get_x, ref_for, plots: Path, plot_name: str,
                    paper_key) -> list[str]:
    """Final accuracy against one scalar (alpha, n_async) per method, with the paper's values beside."""
    names = baseline_names(groups)
    rows = []
    for g in sorted(groups, key=lambda g: (g.first.summary.method, get_x(g.first))):
        s, x = g.first.summary, get_x(g.first)
        rows.append([s.method, g.label, x, pm(g.stat(acc)), pm(g.stat(acc_rel)),
                     paper_value(ref_for(s.method, x, "surf")),
                     *[_with_paper(g, n, ref_for(s.method, x, None)) if paper_key else baseline_cell(g, n)
                       for n in names]])
    lines = [f"## {title}", "", *table(["method", "trained cell", x_name, "accuracy plain", "relabelled",
                                        "paper (method)", *[f"{n}: plain / relabelled" for n in names]], rows)]
    path = plots / plot_name
    plot_scalar(groups, get_x, x_name, path, ref_for)
    return lines + ["", f"![{x_name}]({path.relative_to(plots.parent)})", ""]


def section_fig3(groups: list[Group], plots: Path) -> list[str]:
    def alpha(e: Entry) -> float:
        return e.config["data"]["dirichlet_alpha"] if e.config["data"]["partition"] == "dirichlet" else float("inf")

    def ref(method: str, x: float, name: str | None) -> float | dict | None:
        row = paper.FIG3.get(x, {})
        return row.get("surf") if name == "surf" else row

    return _scalar_section(groups, "Fig. 3: Dirichlet label skew (U-DGD not retrained; alpha = inf: the tasks it "
                           "was trained on)", "alpha", alpha, ref,
                           plots, "fig3_dirichlet.png", True)


def section_fig4(groups: list[Group], plots: Path) -> list[str]:
    def n_async(e: Entry) -> int:
        return e.summary.eval["n_async"]

    def ref(method: str, x: int, name: str | None) -> float | None:
        curve = paper.FIG4.get(method)
        return curve[x] if name == "surf" and curve and x < len(curve) else None

    lines = _scalar_section(groups, "Fig. 4: dropped (asynchronous) agents", "n_async", n_async, ref, plots,
                            "fig4_async.png", False)
    ref = paper.FIG4
    paper_ratio = (ref["surf"][0] - ref["surf"][10]) / (ref["unrolling"][0] - ref["unrolling"][10])
    for protocol, get in (("plain", acc), ("relabelled", acc_rel)):
        drops = {}
        for method in ("surf", "unrolling"):
            points = {n_async(g.first): g.stat(get).mean for g in groups if g.first.summary.method == method}
            if len(points) > 1:
                drops[method] = (points[min(points)] - points[max(points)], min(points), max(points))
        if len(drops) < 2:
            continue
        (surf_drop, low, high), unrolling_drop = drops["surf"], drops["unrolling"][0]
        verdict = (f"SURF loses {100 * surf_drop / unrolling_drop:.0f} % of what unrolling loses"
                   if unrolling_drop > 0 else "unrolling loses nothing")
        lines += [f"Accuracy lost ({protocol}) from n_async={low} to {high}: SURF {surf_drop:.3f}, standard "
                  f"unrolling {unrolling_drop:.3f}: {verdict} (goal: ≤ 50 %; paper, 0 to 10: "
                  f"≈{100 * paper_ratio:.0f} %).", ""]
    return lines


def section_fig5(groups: list[Group], plots: Path) -> list[str]:
    lines = ["## Fig. 5: descent margin epsilon (5 layers, Dirichlet alpha = 0.3)", ""]
    rows = []
    ordered = sorted(groups, key=lambda g: g.first.config["constraints"]["epsilon"])
    for g in ordered:
        eps = g.first.config["constraints"]["epsilon"]
        rows.append([eps, "ours (plain)", *[f"{v:.3f}" for v in mean_curve(g, "per_layer", "accuracy")],
                     f"{100 * g.stat(lambda s: s.descent.grad_norm_decrease_fraction).mean:.1f}",
                     declared_descent(g)])
        rows.append([eps, "ours (relabelled)",
                     *[f"{v:.3f}" for v in mean_curve(g, "per_layer_relabelled", "accuracy")], "", ""])
        if eps in paper.FIG5:
            rows.append([eps, "paper", *[paper_value(v) for v in paper.FIG5[eps]], "", ""])
    layers = groups[0].first.summary.layers + 1
    lines += table(["epsilon", "", *[f"layer {i}" for i in range(layers)], "grad-norm descent %",
                    "declared descent %"], rows)
    path = plots / "fig5_epsilon.png"
    plot_per_layer_groups(ordered, path, None, "layer",
                          label=lambda g: f"eps={g.first.config['constraints']['epsilon']:g}")
    return lines + ["", f"![epsilon]({path.relative_to(plots.parent)})", ""]


def section_topology(groups: list[Group], plots: Path) -> list[str]:
    points = []
    for g in groups:
        s, info = g.first.summary, graph_info(g.first.config)
        best = best_baseline(g, s.rounds, relabelled=True)
        long = best_baseline(g, 10 * s.rounds, relabelled=True)
        surf_bytes = s.rounds * info["bytes_per_round"]
        long_comm = None if long is None else s.comparisons[long[0]].communication
        long_bytes = None if long is None else (long_comm.bytes if long_comm else 10 * surf_bytes)
        heavy_ball = (g.paired(acc_rel, baseline_accuracy("dgd_momentum", "accuracy_relabelled"))
                      if g.has_baseline("dgd_momentum") else None)
        points.append({"graph": g.first.config["topology"]["name"], **info, "surf": g.stat(acc_rel).mean,
                       "surf_plain": g.stat(acc).mean, "surf_bytes": surf_bytes, "best": best, "long": long,
                       "long_bytes": long_bytes, "seeds": len(g.entries), "heavy_ball": heavy_ball})
    points.sort(key=lambda p: p["spectral_gap"])
    rows = [[p["graph"], f"{p['spectral_gap']:.4f}", int(p["num_edges"]), f"{p['surf_bytes'] / 1e6:.2f}", p["seeds"],
             f"{p['surf_plain']:.3f}", f"{p['surf']:.3f}", signed(p["heavy_ball"]),
             "—" if p["best"] is None else f"{p['best'][0]} {p['best'][1]:.3f}",
             "—" if p["long"] is None else f"{p['long'][0]} {p['long'][1]:.3f}"] for p in points]
    path = plots / "topology.png"
    plot_topology(points, path)
    return ["## Topology comparison (model trained on the paper's 3-regular graph, not retrained)", "",
            *table(["graph", "spectral gap", "edges", "SURF MB sent", "seeds", "SURF plain", "SURF relabelled",
                    "SURF − heavy-ball (paired, relabelled)", "best tuned baseline, same rounds (relabelled)",
                    "best tuned, 10× rounds (relabelled)"], rows),
            "", "Bytes: float32 messages of the d × C model on every directed edge per round (SURF and DGD-type "
            "baselines send the same per round; a baseline's own `communication` entry is used where present).",
            "", f"![topology]({path.relative_to(plots.parent)})", ""]


SECTIONS = {"fig1": section_fig1, "fig2": section_fig2, "fig2_star": section_fig2_star, "fig3": section_fig3,
            "fig4": section_fig4, "fig5": section_fig5, "topology": section_topology}
