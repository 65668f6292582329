//! The ConvNet: configuration, flat parameter layout with offset table, PyTorch-default initialisation.
