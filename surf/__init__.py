"""SURF: decentralized learning with unrolled, descent-constrained learned optimizers."""

__version__ = "0.1.0"
