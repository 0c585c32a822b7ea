"""Eigenvalues of graph operators: the largest eigenvalue of a symmetric matrix (GSO normalizations) and the top
eigenvalue moduli of a GSO (its spectral gap). Dense LAPACK for small graphs, ARPACK with a fixed start vector
(deterministic) for large ones."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

DENSE_EIG_LIMIT = 2000  # top_moduli(): dense eigenvalues up to this many agents, ARPACK above
DENSE_LAMBDA_LIMIT = 500  # largest_eigenvalue(): dense up to this many agents, ARPACK above
# ARPACK residual tolerance: eigenvalues within ~1e-6 (relative) in < 1 s even for 10,000-node rings and paths,
# whose clustered top eigenvalues make tighter tolerances take tens of seconds.
ARPACK_TOL = 1e-5


def to_scipy(matrix: torch.Tensor) -> sp.csr_array:
    """A torch sparse (COO or CSR) or dense matrix as a float64 scipy CSR array."""
    if matrix.layout == torch.strided:
        return sp.csr_array(matrix.double().cpu().numpy())
    if matrix.layout == torch.sparse_coo:  # straight to scipy: torch's COO -> CSR conversion warns "beta" each time
        coo = matrix.coalesce().cpu()
        row, col = coo.indices().numpy()
        return sp.coo_array((coo.values().double().numpy(), (row, col)), shape=tuple(coo.shape)).tocsr()
    csr = matrix.to_sparse_csr().cpu() if matrix.layout != torch.sparse_csr else matrix.cpu()
    return sp.csr_array((csr.values().double().numpy(), csr.col_indices().numpy(), csr.crow_indices().numpy()),
                        shape=tuple(csr.shape))


def largest_eigenvalue(matrix: torch.Tensor) -> float:
    """Largest (algebraic) eigenvalue of a symmetric matrix."""
    array = to_scipy(matrix)
    n = array.shape[0]
    if n <= DENSE_LAMBDA_LIMIT:
        return float(np.linalg.eigvalsh(array.toarray())[-1])
    v0 = np.random.default_rng(0).standard_normal(n)
    return float(spla.eigsh(array, k=1, which="LA", v0=v0, tol=ARPACK_TOL, return_eigenvectors=False)[0])


def top_moduli(shift: torch.Tensor) -> np.ndarray:
    """The largest eigenvalue moduli of S, descending: all of them up to DENSE_EIG_LIMIT agents, else the top 2."""
    n = shift.shape[0]
    if n <= DENSE_EIG_LIMIT:
        return np.sort(np.abs(np.linalg.eigvals(shift.to_dense().double().cpu().numpy())))[::-1]
    matrix = to_scipy(shift)
    v0 = np.random.default_rng(0).standard_normal(n)
    symmetric = abs(matrix - matrix.T).max() < 1e-6
    solver = spla.eigsh if symmetric else spla.eigs
    return np.sort(np.abs(solver(matrix, k=2, which="LM", v0=v0, tol=ARPACK_TOL, return_eigenvectors=False)))[::-1]
