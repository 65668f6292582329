//! Graph capture and replay of the synthetic side of one class's matching step.
//!
//! Every class and every iteration, [`super::Network::matching_grad`] runs the same
//! launches on the synthetic batch with the same shapes: the forward pass, the
//! backward pass to `g_syn`, the primal + tangent forward of the second-order pass,
//! and its reverse. Each of these four regions lies between two host round trips
//! (the cross-entropy and the matching distance download a scalar), so each is
//! captured once as a graph ([`Backend::begin_capture`]) and replayed afterwards:
//! one graph launch instead of tens of kernel launches.
//!
//! A graph replays the device addresses and scalar arguments it was captured with.
//! The regions therefore read and write only buffers that stay in place (the
//! workspace, the flat parameter / gradient / tangent buffers, the BatchNorm running
//! state, the augmented input `aug_a` into which each class's images are copied
//! first); every per-class value (labels, augmentation parameters, the matching
//! coefficients) is used outside them. Each graph is keyed by the address and length
//! of every buffer its region touches plus the pass mode: when any differs (a buffer
//! was reallocated, another network or workspace is used), the graph is dropped and
//! the region captured again, so a replay never sees a stale pointer.
//!
//! A capture that fails (e.g. the first one needing more split-K scratch than the
//! backend reserved, as a capture cannot allocate; the backend then reserves the
//! region's largest need for the next try) is retried once; after that the region
//! runs directly for the life of the workspace.

use crate::backend::Backend;
use crate::error::Result;

/// The captured regions, in the order a matching step runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Region {
    /// Forward pass to the logits.
    Forward = 0,
    /// Backward pass to the weight gradient.
    Backward = 1,
    /// Primal (eval mode) and tangent forward of the second-order pass.
    DualForward = 2,
    /// Reverse of the dual computation to the input gradient.
    DualReverse = 3,
}

const REGIONS: usize = 4;
/// Capture attempts per region before it runs directly for good.
const CAPTURE_TRIES: usize = 2;

/// Counters of what the graph path did (for tests and diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraphStats {
    /// Successful captures (a first capture, or a re-capture after a key change).
    pub captures: u64,
    /// Graph replays (including the one right after each capture).
    pub replays: u64,
    /// Captures that failed (the region then ran directly, or was captured again).
    pub failed_captures: u64,
    /// Region runs without a graph while graphs were on (a region that cannot be
    /// captured).
    pub direct: u64,
}

enum Slot<G> {
    Empty,
    Ready {
        key: Vec<u64>,
        graph: G,
    },
    /// Capture gave up (the reason, for diagnostics).
    Off(String),
}

/// The graphs of one [`super::MatchWorkspace`] (one per region) and whether they are used.
pub struct SynGraphs<B: Backend> {
    on: bool,
    slots: [Slot<B::Graph>; REGIONS],
    stats: GraphStats,
}

impl<B: Backend> SynGraphs<B> {
    pub(crate) fn new(on: bool) -> Self {
        Self {
            on,
            slots: std::array::from_fn(|_| Slot::Empty),
            stats: GraphStats::default(),
        }
    }
    /// Whether the regions are captured and replayed.
    pub fn on(&self) -> bool {
        self.on
    }
    /// Turns capture and replay on or off (off drops every graph).
    pub fn set_on(&mut self, on: bool) {
        self.on = on;
        if !on {
            self.clear();
        }
    }
    /// Drops every graph (they are captured again on next use).
    pub fn clear(&mut self) {
        self.slots = std::array::from_fn(|_| Slot::Empty);
    }
    /// What the graph path did so far.
    pub fn stats(&self) -> GraphStats {
        self.stats
    }
    /// Why a region stopped capturing, if one did.
    pub fn disabled_reason(&self) -> Option<&str> {
        self.slots.iter().find_map(|s| match s {
            Slot::Off(why) => Some(why.as_str()),
            _ => None,
        })
    }
}

/// Runs `run` (a region's launches) through the graph of `region`: replays it when
/// the key matches, else captures it (then replays the fresh graph), else runs it
/// directly. Without `graphs`, or with graphs off, runs it directly.
///
/// `key` must name the address and length of every buffer `run` touches, plus every
/// scalar that may change between calls: that is what makes a replay sound.
pub(crate) fn graphed<B: Backend>(
    be: &B,
    graphs: Option<&mut SynGraphs<B>>,
    region: Region,
    key: &[u64],
    mut run: impl FnMut() -> Result<()>,
) -> Result<()> {
    let g = match graphs {
        Some(g) if g.on => g,
        _ => return run(),
    };
    let i = region as usize;
    match &g.slots[i] {
        Slot::Ready { key: k, graph } if k[..] == key[..] => {
            // SAFETY: the key equals the one at capture time: every buffer the
            // captured launches address is one the caller holds now (alive), at the
            // same address and with the same length; scratch is owned by the graph.
            unsafe { be.replay(graph)? };
            g.stats.replays += 1;
            return Ok(());
        }
        Slot::Off(_) => {
            g.stats.direct += 1;
            return run();
        }
        _ => {}
    }
    // No graph, or a stale one (some buffer moved): capture (again).
    g.slots[i] = Slot::Empty;
    let mut why = String::new();
    for _ in 0..CAPTURE_TRIES {
        if let Err(e) = be.begin_capture() {
            why = e.to_string();
            break;
        }
        let ran = run();
        let ended = be.end_capture();
        match (ran, ended) {
            (Ok(()), Ok(graph)) => {
                g.stats.captures += 1;
                // SAFETY: captured just now from buffers the caller still holds.
                unsafe { be.replay(&graph)? };
                g.stats.replays += 1;
                g.slots[i] = Slot::Ready {
                    key: key.to_vec(),
                    graph,
                };
                return Ok(());
            }
            (Err(e), _) | (Ok(()), Err(e)) => {
                g.stats.failed_captures += 1;
                why = e.to_string();
            }
        }
    }
    g.slots[i] = Slot::Off(why);
    g.stats.direct += 1;
    run()
}
