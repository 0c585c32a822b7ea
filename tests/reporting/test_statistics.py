"""Sweep statistics: mean ± 95 % CI over seeds (Student t), task spread apart, paired differences, and the ablation
section of `surf report` on a synthetic 3-seed sweep (no training)."""

import json
import math

import pytest
import yaml

from surf.config import from_dict, to_dict
from surf.evaluation.summary import Comparison, Descent, Summary
from surf.reporting.figures import SECTIONS
from surf.reporting.sweep_data import (
    Entry,
    Group,
    best_baseline,
    group,
    load_entries,
    mean_ci,
    paired_across,
    t_quantile,
)
from surf.reporting.sweep_report import write_report

SEEDS = (0, 1, 2)
HEAVY_BALL = {0: 0.930, 1: 0.932, 2: 0.928}


def _summary(accuracy, n_async, heavy_ball, declared=0.97):
    def comparison(value, steps):
        return Comparison(final={"accuracy": value, "accuracy_relabelled": value}, per_step={}, steps=steps,
                          hyper={"step": 1.0, "momentum": 0.8})

    return Summary(family="decentralized", kind="run", method="surf", layers=20, rounds=20,
                   final={"accuracy": accuracy, "accuracy_relabelled": accuracy - 0.001, "accuracy_std": 0.03},
                   per_layer={"accuracy": [0.1, 0.5, 0.4, accuracy], "loss": [2.3, 1.0, 1.1, 0.3]},
                   per_layer_relabelled={"accuracy": [0.1, 0.5, 0.4, accuracy - 0.001]},
                   descent=Descent(grad_norm_decrease_fraction=0.7, declared_quantity="energy",
                                   declared_decrease_fraction=declared),
                   eval={"n_async": n_async, "test_tasks": 30},
                   comparisons={"dgd_momentum": comparison(heavy_ball, 20), "dgd_x10": comparison(0.944, 200)})


def test_t_quantiles_and_confidence_interval():
    assert t_quantile(3) == pytest.approx(4.303, abs=1e-3) and t_quantile(2) == pytest.approx(12.706, abs=1e-3)
    stat = mean_ci([0.90, 0.92, 0.94])
    assert stat.mean == pytest.approx(0.92) and stat.n == 3
    assert stat.ci == pytest.approx(4.303 * 0.02 / math.sqrt(3), rel=1e-3)
    single = mean_ci([0.9])
    assert math.isnan(single.ci) and not single.above_zero


def test_paired_differences_use_the_same_seed():
    config = to_dict(from_dict({}))
    entries = [Entry({"seed": s}, {}, _summary(HEAVY_BALL[s] + 0.015 + 0.001 * s, 0, HEAVY_BALL[s]),
                     {**config, "seed": s}) for s in SEEDS]
    g = Group("candidate", "as trained", entries)
    difference = g.paired(lambda s: s.final["accuracy"], lambda s: s.comparisons["dgd_momentum"].final["accuracy"])
    assert difference.mean == pytest.approx(0.016) and difference.ci == pytest.approx(4.303 * 0.001 / math.sqrt(3),
                                                                                       rel=1e-3)
    assert difference.above_zero  # the unpaired CIs overlap far more than this
    spread = g.stat(lambda s: s.final["accuracy"], lambda s: s.final["accuracy_std"])
    assert spread.spread == pytest.approx(0.03)
    dropped = Group("candidate", "n_async-10", [Entry(e.train, {"eval.n_async": 10},
                                                      _summary(e.summary.final["accuracy"] - 0.004, 10, 0.92),
                                                      e.config) for e in reversed(entries)])
    loss = paired_across(dropped, g, lambda s: s.final["accuracy"])
    assert loss.mean == pytest.approx(-0.004) and loss.ci == pytest.approx(0.0, abs=1e-9)


def _fake_sweep(root, figure="ablation"):
    """Two named cells x 3 seeds, each clean (the trained cell) and with 10 dropped agents (an eval cell)."""
    base = to_dict(from_dict({}))
    cells = []
    for name, gain, robust in (("candidate", 0.015, 0.0), ("warm_20x1_none", 0.012, -0.03)):
        for seed in SEEDS:
            path = root / f"{name}-{seed}"
            drops = path / "eval" / "n10"
            clean_acc = HEAVY_BALL[seed] + gain + 0.001 * seed
            for folder, n_async, accuracy, heavy in ((path, 0, clean_acc, HEAVY_BALL[seed]),
                                                     (drops, 10, clean_acc + robust, HEAVY_BALL[seed] - 0.012)):
                folder.mkdir(parents=True)
                (folder / "summary.json").write_text(json.dumps(_summary(accuracy, n_async, heavy).to_dict()))
                (folder / "config.yaml").write_text(yaml.safe_dump({**base, "seed": seed, "name": name}))
            cells.append({"name": f"{name}-{seed}", "overrides": {"name": name, "seed": seed}, "path": str(path),
                          "evals": [{"name": "as trained", "overrides": {}, "path": str(path)},
                                    {"name": "eval.n_async-10", "overrides": {"eval.n_async": 10},
                                     "path": str(drops)}]})
    (root / "sweep.json").write_text(json.dumps({"name": figure, "figure": figure, "sweep_file": "x.yaml",
                                                 "cells": cells}))


def test_ablation_report(tmp_path):
    _fake_sweep(tmp_path)
    _, entries, missing = load_entries(tmp_path)
    assert not missing and {g.label for g in group(entries)} == {"candidate", "warm_20x1_none"}
    text = write_report(tmp_path).read_text()
    assert "## Ablation: what each piece buys" in text and "95 % CI" in text
    row = next(line for line in text.splitlines() if line.startswith("| candidate |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:8] == ["10×2", "step 0.3", "gradient_norm difference ε=0.01", "clean", "none", "—", "3"]
    assert cells[8].startswith("0.946 ± ") and "✓" in cells[13] and "✓" in cells[14]  # +0.016 clean, +0.028 dropped
    fragile = next(line for line in text.splitlines() if line.startswith("| warm_20x1_none |"))
    assert "-0.030" in fragile  # dropped - clean, paired
    assert cells[-1] == "1 / 1"  # the per-layer accuracy fell once (0.5 -> 0.4)
    assert "| dgd_momentum (20 rounds) |" in text and "| dgd_x10 (200 rounds) |" in text
    assert (tmp_path / "plots" / "ablation.png").stat().st_size > 1000


@pytest.mark.parametrize("figure", sorted(SECTIONS))
def test_every_figure_section_renders_from_a_three_seed_sweep(tmp_path, figure):
    _fake_sweep(tmp_path, figure)
    text = write_report(tmp_path).read_text()
    assert f"# Sweep `{figure}` ({figure})" in text and "candidate" in text
    if figure == "fig1":  # the per-layer table of each trained cell, with its declared descent
        section = text[text.index("## Fig. 1"):text.index("## All cells")]
        assert section.count("| accuracy (relabelled) | 0.100 | 0.500 | 0.400 |") == 2 and "energy 97.0 %" in section
    if figure == "fig5":  # the declared quantity's descent beside the gradient norm's, mean over seeds
        section = text[text.index("## Fig. 5"):text.index("## All cells")]
        assert "| ours (plain) | 0.100 | 0.500 | 0.400 | 0.9" in section and "| 70.0 | energy 97.0 |" in section
    assert list((tmp_path / "plots").glob("*.png"))


def test_the_star_section_averages_every_method_over_the_same_seeds(tmp_path):
    """The model's per-round curve is a mean over seeds; so are the baselines' curves and the centralized
    reference they are divided by (each seed has its own tasks, so one seed's baseline is no reference)."""
    config = to_dict(from_dict({}))
    entries = []
    for seed, (fedavg, central) in enumerate(((0.6, 0.90), (0.8, 1.00))):
        summary = _summary(0.9, 0, HEAVY_BALL[seed])
        summary.comparisons["fedavg"] = Comparison(final={"accuracy": fedavg}, per_step={"accuracy": [0.1, fedavg]},
                                                   steps=1, hyper={"step": 1.0})
        summary.comparisons["centralized"] = Comparison(final={"accuracy": central}, per_step={}, steps=500,
                                                        hyper={"step": 1.0})
        entries.append(Entry({"seed": seed}, {}, summary, {**config, "seed": seed}))
    text = "\n".join(SECTIONS["fig2_star"]([Group("base", "as trained", entries)], tmp_path))
    assert "centralized accuracy 0.950" in text
    row = next(line for line in text.splitlines() if line.startswith("| fedavg ÷ centralized |"))
    assert row.split("|")[3].strip() == f"{0.7 / 0.95:.3f}"  # (0.6 + 0.8) / 2 over (0.90 + 1.00) / 2
    surf = next(line for line in text.splitlines() if line.startswith("| SURF ÷ centralized |"))
    assert surf.split("|")[-2].strip() == f"{0.9 / 0.95:.3f}"
    assert (tmp_path / "fig2_star_base.png").stat().st_size > 1000


def test_the_best_baseline_is_the_best_mean_over_seeds():
    """Seed 0 alone would name dgd_x10 (0.95 against 0.94); over both seeds dsgd_x10 is ahead (0.935 vs 0.925)."""
    config = to_dict(from_dict({}))
    entries = []
    for seed, (dgd, dsgd) in enumerate(((0.95, 0.94), (0.90, 0.93))):
        summary = _summary(0.9, 0, HEAVY_BALL[seed])
        summary.comparisons["dsgd_x10"] = Comparison(final={"accuracy": dsgd, "accuracy_relabelled": dsgd},
                                                     per_step={}, steps=200, hyper={"step": 1.0})
        summary.comparisons["dgd_x10"].final = {"accuracy": dgd, "accuracy_relabelled": dgd}
        entries.append(Entry({"seed": seed}, {}, summary, {**config, "seed": seed}))
    g = Group("base", "as trained", entries)
    name, mean = best_baseline(g, 200, relabelled=True)
    assert name == "dsgd_x10" and mean == pytest.approx(0.935)
    assert best_baseline(g, 20, relabelled=False)[0] == "dgd_momentum" and best_baseline(g, 7, True) is None


def test_the_scalar_plot_draws_baselines_as_means_over_seeds(tmp_path, monkeypatch):
    import matplotlib.axes

    from surf.reporting.sweep_plots import plot_scalar

    config = to_dict(from_dict({}))
    heavy_ball = {0: 0.90, 1: 0.92, 2: 0.97}  # seed 0 alone: 0.90; the mean: 0.93
    entries = [Entry({"seed": s}, {"eval.n_async": 2}, _summary(0.9, 2, heavy_ball[s]), {**config, "seed": s})
               for s in SEEDS]
    drawn = {}
    plot = matplotlib.axes.Axes.plot

    def record(self, *args, label="", **kwargs):
        drawn[label] = args
        return plot(self, *args, label=label, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", record)
    plot_scalar([Group("base", "n_async-2", entries)], lambda e: e.summary.eval["n_async"], "n_async",
                tmp_path / "scalar.png", lambda method, x, name: None)
    xs, ys = drawn["dgd_momentum (20 rounds, tuned)"][:2]
    assert list(xs) == [2] and ys[0] == pytest.approx(0.93)
