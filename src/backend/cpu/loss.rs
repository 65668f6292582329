//! Softmax cross-entropy, first and second order, over logits `[N, K]` (row per
//! sample). Sequential over samples in f64 (N*K is small: at most a few thousand
//! elements per call), so the result is independent of any thread count.
//! Maths: `docs/derivations/loss.md`.
use crate::backend::*;
use crate::error::{Error, Result};

/// Validates the shapes and the labels; returns (N, K).
fn check<T: Scalar>(
    what: &str,
    outs: &[usize],
    logits: &[T],
    labels: &[u32],
    s: &LinearShape,
) -> Result<(usize, usize)> {
    let (n, k) = (s.n as usize, s.k as usize);
    if n == 0 || k == 0 {
        return Err(Error::Shape(format!(
            "cpu {what}: zero dimension (n={n}, k={k})"
        )));
    }
    for &len in outs.iter().chain([logits.len()].iter()) {
        if len != n * k {
            return Err(Error::Shape(format!(
                "cpu {what}: buffer has {len} elements, [N={n}, K={k}] needs {}",
                n * k
            )));
        }
    }
    if labels.len() != n {
        return Err(Error::Shape(format!(
            "cpu {what}: {} labels for a batch of {n}",
            labels.len()
        )));
    }
    if let Some(i) = labels.iter().position(|&l| l as usize >= k) {
        return Err(Error::Shape(format!(
            "cpu {what}: label {} of sample {i} is not below the {k} classes",
            labels[i]
        )));
    }
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "cpu {what}: logit {} (sample {}, class {}) is {}",
            i,
            i / k,
            i % k,
            logits[i]
        )));
    }
    Ok((n, k))
}

/// Writes the softmax of `row` into `p` (f64, numerically stable: shifted by the
/// row maximum) and returns `(log-sum-exp, index of the first maximum)`.
fn softmax_row<T: Scalar>(row: &[T], p: &mut [f64]) -> (f64, usize) {
    let mut arg = 0;
    let mut mx = row[0].to_f64();
    for (j, v) in row.iter().enumerate().skip(1) {
        if v.to_f64() > mx {
            mx = v.to_f64();
            arg = j;
        }
    }
    let mut z = 0.0;
    for (pj, v) in p.iter_mut().zip(row) {
        *pj = (v.to_f64() - mx).exp();
        z += *pj;
    }
    for pj in p.iter_mut() {
        *pj /= z;
    }
    (mx + z.ln(), arg)
}

/// Mean softmax cross-entropy of `logits [N, K]` against `labels [N]`, with
/// `dlogits = (softmax - onehot)/N` (overwritten) and the number of samples whose
/// first arg-max equals the label. Errors on a label `>= K` or a non-finite logit.
/// See `docs/derivations/loss.md` §1.
pub fn ce_fwd_bwd<T: Scalar>(
    dlogits: &mut [T],
    logits: &[T],
    labels: &[u32],
    s: &LinearShape,
) -> Result<CeOut> {
    let (n, k) = check("ce_fwd_bwd", &[dlogits.len()], logits, labels, s)?;
    let inv_n = 1.0 / n as f64;
    let mut p = vec![0.0f64; k];
    let (mut loss, mut correct) = (0.0, 0usize);
    for ((row, drow), &label) in logits.chunks(k).zip(dlogits.chunks_mut(k)).zip(labels) {
        let label = label as usize;
        let (lse, arg) = softmax_row(row, &mut p);
        loss += lse - row[label].to_f64();
        correct += usize::from(arg == label);
        for (j, (d, pj)) in drow.iter_mut().zip(&p).enumerate() {
            let e = if j == label { 1.0 } else { 0.0 };
            *d = T::from_f64((pj - e) * inv_n);
        }
    }
    Ok(CeOut {
        loss: loss * inv_n,
        correct,
    })
}

/// Second order of the mean cross-entropy along a logit tangent `ldot [N, K]`:
/// returns `h = (1/N) sum_n <p_n - e_n, ldot_n>` and writes (overwritten)
/// `dldot = (p - e)/N`, `dlogits = (p * ldot - p <p, ldot>)/N`.
/// See `docs/derivations/loss.md` §2.
pub fn ce_dual<T: Scalar>(
    dlogits: &mut [T],
    dldot: &mut [T],
    logits: &[T],
    ldot: &[T],
    labels: &[u32],
    s: &LinearShape,
) -> Result<f64> {
    const WHAT: &str = "ce_dual";
    let (n, k) = check(
        WHAT,
        &[dlogits.len(), dldot.len(), ldot.len()],
        logits,
        labels,
        s,
    )?;
    let inv_n = 1.0 / n as f64;
    let mut p = vec![0.0f64; k];
    let mut h = 0.0;
    for (i, &label) in labels.iter().enumerate() {
        let label = label as usize;
        let r = i * k..(i + 1) * k;
        softmax_row(&logits[r.clone()], &mut p);
        let lrow = &ldot[r.clone()];
        let pl: f64 = p.iter().zip(lrow).map(|(pj, l)| pj * l.to_f64()).sum();
        h += pl - lrow[label].to_f64();
        for (j, pj) in p.iter().enumerate() {
            let e = if j == label { 1.0 } else { 0.0 };
            dldot[i * k + j] = T::from_f64((pj - e) * inv_n);
            dlogits[i * k + j] = T::from_f64(pj * (lrow[j].to_f64() - pl) * inv_n);
        }
    }
    let h = h * inv_n;
    if !h.is_finite() {
        return Err(Error::NonFinite(format!(
            "cpu {WHAT}: h = {h} (non-finite tangent)"
        )));
    }
    Ok(h)
}
