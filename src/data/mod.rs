//! Real datasets: readers, normalisation, per-class index.
