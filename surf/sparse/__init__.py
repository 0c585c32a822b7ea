"""The LISTA sparse-coding task family (robust unrolling, TSP 2024): problems, models, measures, evaluation."""
