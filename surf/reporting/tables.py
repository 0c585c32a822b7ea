"""Text tables printed at the end of a classifier run, eval or deployment: per-layer metrics, the baselines with
their hyper-parameters and bytes, and a Flower deployment's communication and drops."""

from __future__ import annotations

from surf.evaluation.summary import Runtime, Summary


def format_table(summary: Summary) -> str:
    """The per-layer table printed at the end of a run."""
    per, rel = summary.per_layer, summary.per_layer_relabelled
    layers = summary.layers
    rounds_per_layer = summary.rounds // max(layers, 1)
    lines = [f"{summary.method}: held-out meta-test metrics per layer ({summary.eval['test_tasks']} tasks, "
             f"n_async={summary.eval['n_async']})",
             f"{'layer':>5} {'rounds':>6} {'accuracy':>9} {'relabelled':>10} {'loss':>9} {'grad norm':>10}"]
    for layer in range(layers + 1):
        lines.append(f"{layer:>5} {layer * rounds_per_layer:>6} {per['accuracy'][layer]:>9.4f} "
                     f"{rel['accuracy'][layer]:>10.4f} {per['loss'][layer]:>9.4f} {per['grad_norm'][layer]:>10.4f}")
    descent = summary.descent
    lines.append(f"full-gradient norm decreased in {100 * descent.grad_norm_decrease_fraction:.1f}% of "
                 "(task, layer) pairs")
    if descent.declared_decrease_fraction is not None:
        others = ", ".join(f"{name} {100 * v:.1f}%" for name, v in descent.decrease_fractions.items())
        lines.append(f"declared quantity ({descent.declared_quantity}) decreased in "
                     f"{100 * descent.declared_decrease_fraction:.1f}% of pairs, constraint held in "
                     f"{100 * descent.constraint_satisfied_fraction:.1f}% (on full local data: {others})")
    if descent.safeguard_fallback_fraction is not None:
        lines.append(f"safeguard: the classical heavy-ball step replaced the learned one in "
                     f"{100 * descent.safeguard_fallback_fraction:.1f}% of the agents' steps")
    if summary.training is not None and summary.training.warm_start is not None:
        start = summary.training.warm_start
        lines.append(f"warm start: {start.method} (step {start.step:g}, momentum {start.momentum:g}, {start.preset}); "
                     f"selected model: step {summary.training.best_step} by validation {summary.training.select_by}")
    comm = summary.communication
    if comm:
        lines.append(f"communication: {comm.rounds} rounds, {comm.messages:,} messages, {format_bytes(comm.bytes)}")
    if "drop_change_dropped_last_layer" in summary.final:
        ran, dropped = summary.final["drop_change_ran_last_layer"], summary.final["drop_change_dropped_last_layer"]
        lines.append(f"under the drops each agent's final accuracy moved by {ran:+.4f} if it ran the last layer, "
                     f"{dropped:+.4f} if it was dropped at it (kept its previous model); paired with the same tasks "
                     "without drops")
    if "relative_accuracy" in summary.final:
        lines.append(f"relative accuracy (/ centralized): {summary.final['relative_accuracy']:.4f}")
    lines.append("baselines on the same tasks (hyper-parameters tuned on validation tasks unless marked 'paper'):")
    for name, base in summary.comparisons.items():
        settings = ", ".join(f"{k} {v:g}" for k, v in base.hyper.items())
        paper = " [paper preset]" if base.preset.startswith("paper") else ""
        sent = f"  {format_bytes(base.communication.bytes):>9}" if base.communication else ""
        relative = f"  rel {base.final['relative_accuracy']:.3f}" if "relative_accuracy" in base.final else ""
        lines.append(f"  {name:14s} {base.steps:>4} rounds  accuracy {base.final['accuracy']:.4f}  relabelled "
                     f"{base.final['accuracy_relabelled']:.4f}{relative}{sent}  ({settings}){paper}")
    return "\n".join(lines)


def format_bytes(count: float) -> str:
    """A byte count in B / kB / MB / GB (powers of 1000)."""
    for unit in ("B", "kB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def format_runtime(runtime: Runtime) -> str:
    """Communication and drops of a Flower deployment, one line per method."""
    actors = f"{runtime.ray_actors} Ray actors, " if runtime.ray_actors else ""
    lines = [f"{runtime.name} runtime: {runtime.nodes} nodes x <= {runtime.agents_per_node} agents, {actors}"
             f"{runtime.wall_seconds:.1f} s"]
    for name, job in runtime.jobs.items():
        com = job["communication"]
        failed = sorted({(d["step"], d["node"]) for d in job["dropped"]})
        lines.append(f"  {name:14s} {com['communication_rounds']:>3} rounds  {com['messages']:>8} messages  "
                     f"{com['bytes'] / 1e6:>9.2f} MB  {com['seconds_per_round']:.3f} s/round  "
                     f"scheduled drops {job['scheduled_drops']}, failed (step, node) {failed or 'none'}")
        for fault in job.get("faults", []):
            lines.append(f"    node {fault['node']} {fault['event']} at step {fault['step']} "
                         f"({fault['seconds']:.1f} s{', ' + fault['reason'] if 'reason' in fault else ''})")
        if job.get("unreported_agents"):
            lines.append(f"    agents without a report (their node never came back): {job['unreported_agents']}")
    return "\n".join(lines)
