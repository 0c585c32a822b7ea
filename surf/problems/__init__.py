"""The local problems: softmax regression (``softmax``: every agent's loss, closed-form gradient, accuracy and the
pooled optimum) and the LASSO (``lasso``: objective, prox, ISTA / FISTA and the optimum), batched and differentiable."""
