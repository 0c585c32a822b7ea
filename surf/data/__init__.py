"""Task distribution: sample sources (``sources``: embedded digits, Gaussian mixtures, ``.npz`` features; ``images``
and ``features``: MNIST / CIFAR-10 readers and the CNN feature extractor), unlabelled image sets for reconstruction
(``image_sets``), label partitions (``partition``), the keyed, leak-free task sampler with relabelled twins
(``tasks``) and per-agent keyed randomness (``batches``)."""
