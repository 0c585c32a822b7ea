"""Meta-test evaluation, no training inside: one evaluator per family (``classifier`` with the tuned
``baselines``, ``sparse``, ``inpainting``), the shared robustness sweep (``robustness``), the stress bench (``stress``)
and the typed summaries every writer produces (``summary``, exported as JSON Schema in ``docs/``)."""
