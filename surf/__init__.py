"""SURF: decentralized learning with unrolled, descent-constrained learned optimizers."""

__version__ = "0.1.0"

import warnings as _warnings

# torch flags every sparse CSR tensor it builds as "beta" (a UserWarning); SURF keeps large graphs in CSR. The notice is
# silenced once for the process, narrowly: a filter toggled around each conversion (warnings.catch_warnings) is not
# thread-safe, and the Flower relay converts graphs in a thread of its own (the notice leaked into `surf deploy`).
_warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning)
