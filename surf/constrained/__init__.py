"""Constrained learning, family-agnostic, in the spirit of cooper's constraint -> formulation -> optimizer chain:
per-layer descent constraints from measured values (eq. 3), the Lagrangian (eq. 4) and projected dual ascent on the
multipliers (eq. 5), bundled in one :class:`~surf.constrained.formulation.DescentFormulation`. What is measured per
layer (gradient norm, distance, objective) is the task family's business."""
