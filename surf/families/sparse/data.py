"""Sparse-coding problems: dictionaries, signal pools and their LASSO optima ``x*`` (the supervised targets).

Two dictionaries: ``gaussian`` (i.i.d. N(0, 1) entries, unit-norm columns) and ``digits`` (an overcomplete
dictionary learned from the meta-train pool of the embedded 8x8 digits images). Signals are either synthetic
``y = D x + noise`` with Bernoulli-Gaussian codes, or digits images (centered by the meta-train mean image, unit
norm) plus noise. Every draw is keyed by what it is for (``surf.seeding``); the digits images are split into
disjoint meta-train / validation / meta-test pools (``data.pool_fractions``), and the dictionary only sees the
meta-train pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from surf.config import Config, SparseCodingConfig
from surf.data.sources import digits
from surf.problems.lasso import solve_lasso, step_size
from surf.utils.replicas import check_fits
from surf.utils.seeding import torch_generator

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SignalPool:
    """A fixed set of LASSO problems sharing one dictionary: signals, their optima and (synthetic) true codes."""

    y: torch.Tensor  # (P, n)
    x_star: torch.Tensor  # (P, m) LASSO optimum (FISTA to convergence)
    dictionary: torch.Tensor  # (n, m)


def normalize_columns(dictionary: torch.Tensor) -> torch.Tensor:
    """Scale every atom (column) to unit l2 norm."""
    return dictionary / dictionary.norm(dim=0, keepdim=True).clamp_min(1e-12)


def gaussian_dictionary(n: int, m: int, seed: int) -> torch.Tensor:
    """``D`` with i.i.d. N(0, 1) entries and unit-norm columns."""
    return normalize_columns(torch.randn(n, m, generator=torch_generator(seed, "dictionary", "gaussian")))


def perturb_dictionary(dictionary: torch.Tensor, strength: float, seed: int) -> torch.Tensor:
    """``normalize(D + strength * G / sqrt(n))``, G ~ N(0, 1): atoms moved by about ``strength`` (relative)."""
    n, m = dictionary.shape
    noise = torch.randn(n, m, generator=torch_generator(seed, "dictionary", "perturb", strength))
    return normalize_columns(dictionary + strength * noise / n**0.5)


def digits_images(cfg: Config) -> dict[str, torch.Tensor]:
    """The digits images split into disjoint pools, centered by the meta-train mean image, unit norm: (P_s, 64)."""
    images = torch.from_numpy(digits().features).double()
    order = torch.randperm(len(images), generator=torch_generator(cfg.seed, "sparse", "image_pools"))
    sizes = [int(round(f * len(images))) for f in cfg.data.pool_fractions[:2]]
    bounds = [0, sizes[0], sizes[0] + sizes[1], len(images)]
    pools = {split: images[order[bounds[i]:bounds[i + 1]]] for i, split in enumerate(SPLITS)}
    mean = pools["train"].mean(0)
    return {split: normalize_columns((pool - mean).T).T.float() for split, pool in pools.items()}


def learn_dictionary(images: torch.Tensor, atoms: int, rho: float, rounds: int, seed: int) -> torch.Tensor:
    """Overcomplete dictionary by alternating minimization (MOD): LASSO codes by FISTA, then least-squares atoms.

    Starts from randomly chosen training images (plus a little noise so repeated picks differ); columns are
    renormalized after every least-squares update (Engan et al.'s method of optimal directions).
    """
    gen = torch_generator(seed, "dictionary", "digits")
    y = images.double()
    picks = torch.randint(len(y), (atoms,), generator=gen)
    dictionary = normalize_columns(y[picks].T + 0.1 * torch.randn(y.shape[1], atoms, generator=gen).double())
    for _ in range(rounds):
        codes = solve_lasso(y, dictionary, rho, max_iters=200, tol=1e-4)
        gram = codes.T @ codes + 1e-6 * torch.eye(atoms, dtype=torch.float64)
        dictionary = normalize_columns(torch.linalg.solve(gram, codes.T @ y).T)
    return dictionary.float()


def sparse_codes(count: int, atoms: int, sparsity: float, gen: torch.Generator) -> torch.Tensor:
    """Bernoulli(sparsity)-Gaussian codes: each atom active with probability ``sparsity``, values N(0, 1)."""
    support = torch.rand(count, atoms, generator=gen) < sparsity
    return torch.randn(count, atoms, generator=gen) * support


def make_pool(y: torch.Tensor, dictionary: torch.Tensor, sc: SparseCodingConfig) -> SignalPool:
    """Solve every signal's LASSO to convergence and keep the optima as targets."""
    return SignalPool(y, solve_lasso(y, dictionary, sc.rho, sc.solver_iters, sc.solver_tol), dictionary)


class ProblemSource:
    """The family's dictionary and its signal pools (in-distribution and shifted), built lazily and cached."""

    def __init__(self, cfg: Config) -> None:
        self.cfg, self.sc = cfg, cfg.sparse_coding
        self.images = digits_images(cfg) if self.sc.dictionary == "digits" else None
        if self.images is not None:
            self.dictionary = learn_dictionary(self.images["train"], self.sc.atoms, self.sc.rho,
                                               self.sc.dictionary_iters, cfg.seed)
        else:
            self.dictionary = gaussian_dictionary(self.sc.signal_dim, self.sc.atoms, cfg.seed)
        self.eta = step_size(self.dictionary)
        self._pools: dict[tuple, SignalPool] = {}
        n, m = self.dictionary.shape
        largest = max(self.sc.train_signals, self.sc.val_signals, self.sc.test_signals, self.sc.ood_signals,
                      self.sc.batch_size)
        check_fits(4 * largest * (n + 2 * m), "a pool of signals")  # y, its codes and its LASSO solutions

    def size(self, split: str) -> int:
        return {"train": self.sc.train_signals, "val": self.sc.val_signals, "test": self.sc.test_signals}[split]

    def pool(self, split: str, sparsity: float | None = None, noise: float | None = None,
             dictionary_shift: float = 0.0) -> SignalPool:
        """Split ``split``'s pool; the keyword arguments give out-of-distribution twins (``ood_signals`` each)."""
        sc = self.sc
        shifted = sparsity is not None or noise is not None or dictionary_shift > 0
        key = (split, sparsity, noise, dictionary_shift)
        if key not in self._pools:
            count = sc.ood_signals if shifted else self.size(split)
            dictionary = self.dictionary
            if dictionary_shift > 0:
                dictionary = perturb_dictionary(dictionary, dictionary_shift, self.cfg.seed)
            gen = torch_generator(self.cfg.seed, "sparse", "signals", *key)
            noise_std = sc.noise_std if noise is None else noise
            if self.images is not None:  # a random image of the split's pool per signal
                images = self.images[split]
                clean = images[torch.randint(len(images), (count,), generator=gen)]
            else:
                codes = sparse_codes(count, sc.atoms, sc.sparsity if sparsity is None else sparsity, gen)
                clean = codes @ dictionary.T
            y = clean + noise_std * torch.randn(clean.shape, generator=gen)
            self._pools[key] = make_pool(y, dictionary, sc)
        return self._pools[key]

