//! Launch geometry of every kernel, in one place: named block sizes and the grid
//! each launcher computes from a shape. Shared by the `cuda` and `emu` backends
//! (the emulator runs the same geometry, one block at a time).
//!
//! Block sizes were chosen as follows (update with the benchmark that moves them):
//! - element-wise kernels: 256 threads, grid capped at [`MAX_GRID_1D`] blocks with a
//!   grid-stride loop (the usual choice; memory bound, insensitive in 128..512);
//! - conv implicit GEMM: see `conv` (`benches/` conv cases at the hot shapes).

/// Grid and block dimensions of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Blocks (x, y, z).
    pub grid: (u32, u32, u32),
    /// Threads per block (x, y, z).
    pub block: (u32, u32, u32),
    /// Dynamic shared memory in bytes.
    pub shared_bytes: u32,
}

/// Threads per block of the element-wise (grid-stride) kernels.
pub const ELEMWISE_BLOCK: u32 = 256;
/// Most blocks of a grid-stride launch (enough to fill an H200's 132 SMs many times).
pub const MAX_GRID_1D: u32 = 132 * 16;

/// Ceiling division.
pub fn div_up(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

/// A 1-D grid-stride launch over `n` items.
pub fn elementwise(n: u64) -> Geometry {
    let blocks = div_up(n.max(1), ELEMWISE_BLOCK as u64).min(MAX_GRID_1D as u64) as u32;
    Geometry {
        grid: (blocks, 1, 1),
        block: (ELEMWISE_BLOCK, 1, 1),
        shared_bytes: 0,
    }
}

/// Tile of the implicit-GEMM core (kernels/igemm.cuh: IG_BM x IG_BN, IG_BK, IG_THREADS).
pub mod igemm {
    /// Rows of C per block (IG_BM).
    pub const BM: u32 = 128;
    /// Columns of C per block (IG_BN).
    pub const BN: u32 = 128;
    /// k step (IG_BK); split-K chunks are multiples of it.
    pub const BK: u32 = 8;
    /// Threads per block (IG_THREADS).
    pub const THREADS: u32 = 256;
    /// Blocks a split-K launch aims for: two waves of an H200's 132 SMs.
    pub const TARGET_BLOCKS: u64 = 2 * 132;
    /// Fewest k terms per split (below that the partial-sum traffic dominates).
    pub const MIN_K_PER_SPLIT: u64 = 256;
    /// Most splits (bounds the partial-sum scratch).
    pub const MAX_SPLITS: u64 = 64;
}

/// Grid of the implicit-GEMM kernels for C = M x N with `splits` k-ranges.
pub fn igemm(m: u32, n: u32, splits: u32) -> Geometry {
    Geometry {
        grid: (
            div_up(n as u64, igemm::BN as u64) as u32,
            div_up(m as u64, igemm::BM as u64) as u32,
            splits,
        ),
        block: (igemm::THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// Split-K for a reduction of length `k` onto an M x N output: (splits, chunk) with
/// chunk a multiple of BK and splits * chunk >= k; splits = 1 when the output tiles
/// alone fill the machine or k is short.
pub fn splitk(m: u32, n: u32, k: u64) -> (u32, u32) {
    let tiles = div_up(m as u64, igemm::BM as u64) * div_up(n as u64, igemm::BN as u64);
    let want = div_up(igemm::TARGET_BLOCKS, tiles.max(1));
    let most = (k / igemm::MIN_K_PER_SPLIT).clamp(1, igemm::MAX_SPLITS);
    let splits = want.clamp(1, most);
    let chunk = div_up(div_up(k.max(1), splits), igemm::BK as u64) * igemm::BK as u64;
    let splits = div_up(k.max(1), chunk);
    (splits as u32, chunk as u32)
}

/// Threads per block of `bias_bwd` (one block per channel).
pub const BIAS_BWD_BLOCK: u32 = 256;

/// One block per channel for `bias_bwd`.
pub fn bias_bwd(channels: u32) -> Geometry {
    Geometry {
        grid: (channels, 1, 1),
        block: (BIAS_BWD_BLOCK, 1, 1),
        shared_bytes: 0,
    }
}

/// Threads per block of the one-block-per-group reductions (group/batch norm,
/// matching rows, contrast): 8 warps feeding `block_sum`'s fixed tree. Groups are
/// 16..131072 elements; 256 keeps small groups from idling most threads while
/// large ones still stream (not yet benchmarked on a GPU).
pub const REDUCE_BLOCK: u32 = 256;

/// One [`REDUCE_BLOCK`]-thread block per group (norm group, channel, row, image).
pub fn per_block(blocks: u32) -> Geometry {
    Geometry {
        grid: (blocks.max(1), 1, 1),
        block: (REDUCE_BLOCK, 1, 1),
        shared_bytes: 0,
    }
}

/// Largest slab (floats) `norm_act_pool_fwd` keeps in dynamic shared memory: 48 KiB,
/// the amount every CUDA device grants without an opt-in attribute. Larger groups
/// (layer norm over wide layers) take the unfused norm / act / pool kernels.
pub const FUSED_MAX_SLAB: u32 = 48 * 1024 / 4;

/// Threads of a `norm_act_pool_fwd` block for a slab of `m` elements: the slab
/// rounded up to whole warps, at most [`REDUCE_BLOCK`] (small instance-norm planes,
/// 4x4..32x32, then do not idle most of a 256-thread block).
pub fn fused_block(m: u32) -> u32 {
    m.div_ceil(32).clamp(1, REDUCE_BLOCK / 32) * 32
}

/// One block per slab of `m` floats for `norm_act_pool_fwd`, the slab in dynamic
/// shared memory.
pub fn fused(slabs: u32, m: u32) -> Geometry {
    Geometry {
        grid: (slabs.max(1), 1, 1),
        block: (fused_block(m), 1, 1),
        shared_bytes: 4 * m,
    }
}

/// Warps (samples) per block of the softmax cross-entropy kernels: one warp per
/// sample, K (classes, 10..100) strided over its lanes.
pub const CE_WARPS: u32 = 8;

/// One warp per sample for `n` samples.
pub fn ce(n: u32) -> Geometry {
    Geometry {
        grid: (div_up(n.max(1) as u64, CE_WARPS as u64) as u32, 1, 1),
        block: (32 * CE_WARPS, 1, 1),
        shared_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn splitk_covers_k() {
        for &(m, n, k) in &[
            (128u32, 1152u32, 262144u64),
            (5, 27, 512),
            (10, 2048, 2560),
            (3, 3, 1),
        ] {
            let (s, c) = splitk(m, n, k);
            assert!(s >= 1 && c % igemm::BK == 0);
            assert!(s as u64 * c as u64 >= k && (s as u64 - 1) * (c as u64) < k);
        }
    }
}
