"""GLOW-Prox image inpainting (robust unrolling, TSP 2024): image pools and masks (``data``), the family of tasks with
its unrolled flow model (``family``) and its per-layer measures (CI on the x- and z-gradients of F, CII, PSNR, SSIM)."""
