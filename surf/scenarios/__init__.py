"""One perturbation library for every method: dropped agents (the single drop model in ``drops``), Bernoulli and
Markov dropout, churn, stragglers, lost links, time-varying graphs and task shifts, composed into named, seeded
scenarios (``simulations/scenarios/*.yaml``) that compile to the per-step network schedule of ``surf.graphs``."""
