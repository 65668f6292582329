//! The evaluation protocol: train fresh networks on a synthetic set, test on the real test split.
