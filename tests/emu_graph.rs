//! Graph capture and replay of the synthetic side of the matching step
//! (`engine::graphs`): the result with graphs equals the direct result bit for bit,
//! across classes and iterations with new parameters and images (no stale pointer,
//! no baked-in value); a reallocated buffer makes the engine capture again; a capture
//! records instead of running and refuses host work. Each body runs on `emu` (graphs
//! turned on; recording + re-execution) and on `cuda` when a GPU is present (CUDA
//! graphs), otherwise that test prints "skipped: <why>" and passes.

use dsa_condense::augment::{sample_siamese, AugMode, DsaParams, Strategy};
use dsa_condense::backend::emu::Emu;
use dsa_condense::backend::{Act, Backend, Metric};
use dsa_condense::engine::{ClassInput, GraphStats, MatchWorkspace, Network, WorkspaceOpts};
use dsa_condense::model::{ConvNetConfig, Norm, Pool};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[macro_use]
mod parity_common;
use parity_common::{cuda, five_architectures, rand_vec, small_convnet};

const CLASSES: usize = 3;
const N_REAL: usize = 4;
const IPC: usize = 2;
/// 16x16 images: the first conv's weight gradient over IPC*16*16 = 512 terms takes
/// two split-K slices, so a capture needs scratch (the retry path is exercised).
const SIDE: usize = 16;

/// Everything one outer step produced: the summed distance and dD/dS of all classes.
#[derive(PartialEq, Debug)]
struct Outcome {
    dist: f64,
    dsyn: Vec<f32>,
}

/// Two outer steps (iterations) on `be`: each draws a fresh network (new parameter
/// values in the same buffers, BatchNorm running state included), fresh synthetic
/// images (a new buffer), fresh real batches and augmentations for every class.
fn two_iterations<B: Backend<E = f32>>(
    be: &B,
    c: ConvNetConfig,
    graphs: bool,
) -> (Vec<Outcome>, GraphStats) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut net = Network::new(be, c, &mut rng).unwrap();
    let mut mw = net.match_workspace(N_REAL, IPC).unwrap();
    mw.graphs_mut().set_on(graphs);
    let img = SIDE * SIDE;
    let strategy: Strategy = "color_crop_cutout_flip_scale_rotate".parse().unwrap();
    let mut out = Vec::new();
    for _ in 0..2 {
        net.reinit(&mut rng).unwrap();
        let syn_all = be
            .upload(&rand_vec(&mut rng, CLASSES * IPC * img, -1.0, 1.0))
            .unwrap();
        let mut dsyn_all = be.alloc(CLASSES * IPC * img).unwrap();
        let reals: Vec<B::Buf> = (0..CLASSES)
            .map(|_| {
                be.upload(&rand_vec(&mut rng, N_REAL * img, -1.0, 1.0))
                    .unwrap()
            })
            .collect();
        let augs: Vec<_> = (0..CLASSES)
            .map(|_| {
                sample_siamese(&strategy, &DsaParams::default(), AugMode::M, SIDE, &mut rng)
                    .unwrap()
                    .ops(IPC)
            })
            .collect();
        let classes: Vec<ClassInput<'_, B>> = reals
            .iter()
            .zip(&augs)
            .map(|(real, aug)| ClassInput { real, aug })
            .collect();
        let mut bn_ws = net.workspace(N_REAL, WorkspaceOpts::default()).unwrap();
        let bn = c.has_batchnorm().then_some((&mut bn_ws, &reals[0]));
        let dist = net
            .outer_grad(&mut mw, &syn_all, &classes, Metric::Ours, &mut dsyn_all, bn)
            .unwrap();
        out.push(Outcome {
            dist,
            dsyn: be.download(&dsyn_all).unwrap(),
        });
    }
    (out, mw.graphs().stats())
}

fn body_replay_equals_direct<B: Backend<E = f32>>(be: &B) {
    let cases = five_architectures(SIDE, CLASSES);
    let mut failed = 0;
    for c in cases {
        let what = format!("{:?}/{:?}/{:?} on {}", c.norm, c.act, c.pool, be.name());
        let (direct, st0) = two_iterations(be, c, false);
        let (graphed, st) = two_iterations(be, c, true);
        assert_eq!(st0, GraphStats::default(), "{what}: graphs used while off");
        assert!(
            direct[0].dsyn.iter().any(|v| *v != 0.0),
            "{what}: zero gradient"
        );
        assert_ne!(direct[0], direct[1], "{what}: iterations identical");
        // bit for bit: the same launches with the same arguments
        for (i, (g, d)) in graphed.iter().zip(&direct).enumerate() {
            assert_eq!(
                g.dist.to_bits(),
                d.dist.to_bits(),
                "{what}: iteration {i} distance"
            );
            assert!(
                g.dsyn
                    .iter()
                    .zip(&d.dsyn)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{what}: iteration {i}: dD/dS differs with graphs"
            );
        }
        // 4 regions x CLASSES classes x 2 iterations, all through graphs; captured once
        // (re-drawing the network keeps every buffer, BatchNorm running state included)
        assert_eq!(st.captures, 4, "{what}: {st:?}");
        assert_eq!(st.replays, 4 * CLASSES as u64 * 2, "{what}: {st:?}");
        assert_eq!(st.direct, 0, "{what}: {st:?}");
        // at most one retry per case: a capture that needs more split-K scratch than
        // reserved fails once, reserves the region's largest need, and the retry succeeds
        assert!(st.failed_captures <= 1, "{what}: {st:?}");
        failed += st.failed_captures;
    }
    // The emu backend here is fresh, so its first backward capture needed scratch (the
    // retry path ran); the cuda one is shared with other tests and may have it already.
    if be.name().starts_with("emu") {
        assert!(failed >= 1, "the scratch retry path never ran");
    }
}
parity!(replay_equals_direct, body_replay_equals_direct);

/// One class's matching gradient; returns (distance bits, dD/dS).
fn grad<B: Backend<E = f32>>(
    net: &mut Network<'_, B>,
    mw: &mut MatchWorkspace<B>,
    real: &B::Buf,
    syn: &B::Buf,
    aug: &[dsa_condense::backend::AugOp],
) -> (u64, Vec<f32>) {
    let d = net
        .matching_grad(mw, real, syn, 1, aug, Metric::Ours)
        .unwrap();
    (d.to_bits(), net.backend().download(&mw.dsyn).unwrap())
}

fn body_realloc_recaptures<B: Backend<E = f32>>(be: &B) {
    let c = small_convnet(SIDE, CLASSES, Norm::Instance, Act::Swish, Pool::Avg);
    let img = SIDE * SIDE;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut net = Network::new(be, c, &mut rng).unwrap();
    let mut mw = net.match_workspace(N_REAL, IPC).unwrap();
    mw.graphs_mut().set_on(true);
    let real = be
        .upload(&rand_vec(&mut rng, N_REAL * img, -1.0, 1.0))
        .unwrap();
    let syn = be
        .upload(&rand_vec(&mut rng, IPC * img, -1.0, 1.0))
        .unwrap();
    let strategy: Strategy = "color_crop_flip".parse().unwrap();
    let aug = sample_siamese(&strategy, &DsaParams::default(), AugMode::M, SIDE, &mut rng)
        .unwrap()
        .ops(IPC);
    let first = grad(&mut net, &mut mw, &real, &syn, &aug);
    assert_eq!(mw.graphs().stats().captures, 4);

    // New parameter values in a NEW buffer (the old one kept alive, so the address
    // differs): every region reads the parameters, all four are captured again.
    let host: Vec<f32> = be
        .download(net.params())
        .unwrap()
        .iter()
        .map(|v| v * 0.9)
        .collect();
    let old_params = std::mem::replace(net.params_mut(), be.upload(&host).unwrap());
    let second = grad(&mut net, &mut mw, &real, &syn, &aug);
    let st = mw.graphs().stats();
    assert_eq!(st.captures, 8, "{st:?}");
    assert_ne!(first, second, "new parameters, same result");

    // The same computation without graphs, from a fresh workspace.
    let mut direct_mw = net.match_workspace(N_REAL, IPC).unwrap();
    direct_mw.graphs_mut().set_on(false);
    let reference = grad(&mut net, &mut direct_mw, &real, &syn, &aug);
    assert_eq!(
        second, reference,
        "replay after reallocation differs from direct"
    );

    // A new gradient buffer: only the first-order regions (which write it) re-capture.
    let old_g = std::mem::replace(&mut mw.g_syn, be.alloc(be.buf_len(&old_params)).unwrap());
    let third = grad(&mut net, &mut mw, &real, &syn, &aug);
    assert_eq!(mw.graphs().stats().captures, 10);
    assert_eq!(third, reference);
    // Unchanged buffers: pure replay.
    let fourth = grad(&mut net, &mut mw, &real, &syn, &aug);
    assert_eq!(mw.graphs().stats().captures, 10);
    assert_eq!(fourth, reference);
    drop((old_params, old_g));
}
parity!(realloc_recaptures, body_realloc_recaptures);

fn body_capture_records<B: Backend<E = f32>>(be: &B) {
    let mut y = be.alloc(1000).unwrap();
    let x = be.upload(&vec![2.0; 1000]).unwrap();
    be.begin_capture().unwrap();
    assert!(be.alloc(4).is_err(), "alloc during capture");
    assert!(be.upload(&[1.0]).is_err(), "upload during capture");
    assert!(be.download(&y).is_err(), "download during capture");
    be.fill(&mut y, 1.0).unwrap();
    be.axpy(&mut y, 0.5, &x).unwrap();
    let g = be.end_capture().unwrap();
    // recorded, not run
    assert!(be.download(&y).unwrap().iter().all(|v| *v == 0.0));
    // SAFETY: x and y are alive and unchanged.
    unsafe { be.replay(&g).unwrap() };
    assert!(be.download(&y).unwrap().iter().all(|v| *v == 2.0));
    // the scalar 1.0 and the x contents at replay time: x changed -> new result
    be.fill(&mut y, 7.0).unwrap();
    let x2 = be.upload(&vec![4.0; 1000]).unwrap();
    let mut xm = x;
    be.copy_range(&mut xm, 0, &x2, 0, 1000).unwrap();
    // SAFETY: as above (xm is x, moved: same heap / device allocation).
    unsafe { be.replay(&g).unwrap() };
    assert!(be.download(&y).unwrap().iter().all(|v| *v == 3.0));
}
parity!(capture_records, body_capture_records);

#[test]
fn cpu_has_no_graphs() {
    let cpu = dsa_condense::backend::cpu::Cpu::<f32>::new(1).unwrap();
    assert!(!cpu.graphs_supported());
    assert!(cpu.begin_capture().is_err());
    // Turned on anyway, the matching step runs directly.
    let c = small_convnet(SIDE, CLASSES, Norm::Instance, Act::Relu, Pool::Avg);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut net = Network::new(&cpu, c, &mut rng).unwrap();
    let mut mw = net.match_workspace(N_REAL, IPC).unwrap();
    assert!(!mw.graphs().on());
    mw.graphs_mut().set_on(true);
    let img = SIDE * SIDE;
    let real = rand_vec(&mut rng, N_REAL * img, -1.0, 1.0);
    let syn = rand_vec(&mut rng, IPC * img, -1.0, 1.0);
    net.matching_grad(&mut mw, &real, &syn, 0, &[], Metric::Ours)
        .unwrap();
    let st = mw.graphs().stats();
    assert_eq!((st.captures, st.direct), (0, 4), "{st:?}");
    assert!(mw.graphs().disabled_reason().is_some());
}
