"""``surf report SWEEP_DIR``: aggregate a sweep (``sweep.json``) into ``report.md`` and ``plots/*.png``.

Cells that differ only by ``seed`` are grouped: mean ± std over seeds; with a single seed the ± is the std over the
meta-test tasks (and drop repetitions) of that run. Every accuracy is given on the plain meta-test tasks (the
paper's protocol: the tasks share the training classes) and on their relabelled twins (the honest protocol).
Baselines are whatever the evaluation reported (``Summary.comparisons``); the paper's numbers
(``surf.reporting.paper_numbers``) sit beside ours where the sweep declares the figure it reproduces (``figure:``).
"""

from __future__ import annotations

from pathlib import Path

from surf.reporting import paper_numbers as paper
from surf.reporting.figures import SECTIONS, overview
from surf.reporting.sweep_data import group, load_entries
from surf.utils.errors import ConfigError
from surf.utils.io import atomic_write


def write_report(sweep_dir: Path) -> Path:
    """Write ``report.md`` and ``plots/*.png`` into ``sweep_dir``; returns the report's path."""
    index, entries, missing = load_entries(sweep_dir)
    if not entries:
        raise ConfigError(f"no finished cell in {sweep_dir}; run the sweep first")
    groups = group(entries)
    plots = sweep_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    seeds = sorted({e.config["seed"] for e in entries})
    lines = [f"# Sweep `{index['name']}`" + (f" (paper {index['figure']})" if index.get("figure") else ""), "",
             f"Reproduce: `surf sweep {index['sweep_file']} && surf report {sweep_dir}`. Seeds: {seeds}. "
             "± = std over seeds when there are several, otherwise over the meta-test tasks (× drop repetitions).",
             "Plain = the paper's protocol (meta-test tasks share the training classes); relabelled = the honest "
             "protocol (leak-free held-out samples, relabelled meta-test tasks).", ""]
    if missing:
        lines += [f"**Unfinished cells ({len(missing)}), not in the tables:** " + ", ".join(missing), ""]
    section = SECTIONS.get(index.get("figure") or "")
    if section:
        lines += [f"Paper values: {paper.SOURCE}.", "", *section(groups, plots)]
    lines += ["## All cells", "", *overview(groups), ""]
    path = sweep_dir / "report.md"
    atomic_write(path, "\n".join(lines))
    return path
