"""LASSO sparse coding (robust unrolling, TSP 2024): dictionaries and signal pools with their optima, the LISTA /
ALISTA family and its per-layer measures (gradient mapping CI, distance to x* CII, NMSE, objective)."""
