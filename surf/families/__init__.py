"""Task families: what a family supplies to the one meta-training loop (``base``: tasks, the unrolled model, the
Lagrangian terms of a task) and the families themselves — ``classifier`` (decentralized softmax regression on a
graph, U-DGD), ``sparse`` (LASSO sparse coding, LISTA) and ``inpainting`` (GLOW-Prox image inpainting). Families
never import each other."""
