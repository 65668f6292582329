//! Derived random streams: every random draw of a run comes from a ChaCha stream
//! keyed by `(seed, experiment, iteration, purpose, extra)`, so a resumed run draws
//! exactly what the uninterrupted run drew.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Purposes of the derived random streams.
#[derive(Clone, Copy)]
#[repr(u64)]
pub(crate) enum Stream {
    /// The initial synthetic set and the first network.
    Init = 1,
    /// One iteration's network, real batches and augmentations.
    Iteration = 2,
    /// One evaluation network's initialisation, order and augmentation.
    Eval = 3,
}

/// A ChaCha stream for `(seed, experiment, iteration, purpose, extra)`, mixed with
/// SplitMix64 so neighbouring tuples give unrelated streams.
pub(crate) fn stream(
    seed: u64,
    experiment: usize,
    iteration: usize,
    purpose: Stream,
    extra: u64,
) -> ChaCha8Rng {
    let mut h = seed;
    for v in [experiment as u64, iteration as u64, purpose as u64, extra] {
        h = splitmix(h ^ splitmix(v));
    }
    ChaCha8Rng::seed_from_u64(h)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
