"""The bottom layer: one-line user errors, keyed randomness, device choice, typed dict -> dataclass conversion and
atomic file writes. Nothing here knows about graphs, tasks or models; every other subpackage may import it."""
