"""The local problems: softmax regression (``softmax``: every agent's loss, closed-form gradient, accuracy and the
pooled optimum), the LASSO (``lasso``: objective, prox, ISTA / FISTA and the optimum) and inpainting (``inpainting``:
mask operator, data step, Gaussian prox, the GLOW-Prox objective, a DCT-l1 prior), batched and differentiable, with
one proximal gradient loop (``proximal``: ISTA / FISTA) for every classical solver."""
