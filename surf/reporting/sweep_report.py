"""``surf report SWEEP_DIR``: aggregate a sweep (``sweep.json``) into ``report.md`` and ``plots/*.png``.

Cells that differ only by ``seed`` are grouped: mean ± the half-width of the 95 % confidence interval over seeds
(t-distribution, ``surf.reporting.sweep_data``), the task spread (std over meta-test tasks) in its own column, and
paired differences to the baselines on the same seed. Every accuracy is given on the plain meta-test tasks (the
paper's protocol: the tasks share the training classes) and on their relabelled twins (the honest protocol).
Baselines are whatever the evaluation reported (``Summary.comparisons``); the paper's numbers
(``surf.reporting.paper_numbers``) sit beside ours where the sweep declares the figure it reproduces (``figure:``).
A sweep of the LISTA or GLOW-Prox family gets that family's metrics instead (``surf.reporting.family_sweep``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from surf.reporting import paper_numbers as paper
from surf.reporting.ablation import section_ablation
from surf.reporting.family_sweep import overview as family_overview
from surf.reporting.figures import SECTIONS, overview
from surf.reporting.sweep_data import group, load_entries
from surf.utils.errors import ConfigError
from surf.utils.io import atomic_write

FIGURES = (*SECTIONS, "ablation")  # a sweep's ``figure:``: the report section it gets beside the overview


def write_report(sweep_dir: Path) -> Path:
    """Write ``report.md`` and ``plots/*.png`` into ``sweep_dir``; returns the report's path."""
    index, entries, missing = load_entries(sweep_dir)
    if not entries:
        raise ConfigError(f"no finished cell in {sweep_dir}; run the sweep first")
    groups = group(entries)
    families = {g.first.summary.family for g in groups}
    if len(families) > 1:
        raise ConfigError(f"{sweep_dir} mixes the families {sorted(families)}; sweep one family at a time")
    plots = sweep_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    seeds = sorted({e.config["seed"] for e in entries})
    lines = [f"# Sweep `{index['name']}`" + (f" ({index['figure']})" if index.get("figure") else ""), "",
             f"Reproduce: `{reproduce_command(index, sweep_dir)}`. Seeds: {seeds}. "
             "Mean over seeds ± half-width of its 95 % CI (Student t, n − 1 degrees of freedom; no ± with one seed)."]
    classifier = families == {"decentralized"}
    if classifier:
        lines += ["Task spread = std over the meta-test tasks (× drop repetitions) of one run, averaged over seeds. "
                  "Δ = paired difference (same seed: same tasks, W_0 and drops) with its 95 % CI; ✓ = CI above 0.",
                  "Plain = the paper's protocol (meta-test tasks share the training classes); relabelled = the "
                  "honest protocol (leak-free held-out samples, relabelled meta-test tasks)."]
    lines.append("")
    if missing:
        lines += [f"**Unfinished cells ({len(missing)}), not in the tables:** " + ", ".join(missing), ""]
    figure = index.get("figure") or ""
    section = SECTIONS.get(figure) if classifier else None  # LISTA, GLOW-Prox: their own metrics, no figure sections
    if section:
        lines += [f"Paper values: {paper.SOURCE}.", "", *section(groups, plots)]
    elif classifier and figure == "ablation":
        lines += section_ablation(groups, plots)
    lines += ["## All cells", "", *(overview(groups) if classifier else family_overview(groups, plots)), ""]
    path = sweep_dir / "report.md"
    atomic_write(path, "\n".join(lines))
    return path


def reproduce_command(index: dict, sweep_dir: Path) -> str:
    """The sweep's command line, with the ``-o`` overrides it ran with (``sweep.json``; none in an index written
    before they were recorded), and the report's."""
    overrides = "".join(f" -o {shlex.quote(item)}" for item in index.get("overrides", []))
    return f"surf sweep {shlex.quote(index['sweep_file'])}{overrides} && surf report {shlex.quote(str(sweep_dir))}"
