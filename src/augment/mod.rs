//! Differentiable Siamese Augmentation: strategies, parameter sampling on the host, application through a Backend.
