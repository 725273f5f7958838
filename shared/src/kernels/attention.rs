//! Multi-head self-attention in one operation on flex, forward and backward, for every position
//! or for the first few only (a classifier's last layer: its head reads [CLS] alone).
//!
//! Written out in burn's operations, attention splits q, k and v into heads (a copy each),
//! scales q (a pass), multiplies each head's q·kᵀ as a separate small product whose output
//! burn-flex zeroes and then copies, masks the padded keys (a pass), takes the softmax,
//! multiplies by v and merges the heads back (a copy), with as many steps again backwards.
//! Here each (text, head) pair is one unit of work on its own thread: the heads are read
//! where the linear layers wrote them (`[batch, seq, hidden]`, a head is a column block), the
//! scores go straight into a row softmax with the padded keys masked, and the context is
//! written into its head's columns of the output. The backward pass is the same per unit:
//! dV = P′ᵀ·dO, dP = (dO·Vᵀ)⊙M, dS = P⊙(dP − Σ dP⊙P), dQ = s·dS·K, dK = s·dSᵀ·Q, where P are
//! the probabilities, M the dropout mask, P′ = P⊙M and s = 1/√(head size).
//!
//! Semantics are those of the written-out form: a padded key's score becomes `f32::MIN`
//! before the softmax (so it gets probability 0, and a row with every key padded is uniform),
//! and its score gets no gradient.

use super::gelu::exp_nonpositive;
use super::gemm::{MatrixView, gemm_into};
use super::parallel::{Shared, for_each_unit};
use super::simd::{lane_dot, lane_max, lane_sum, widest_vectors};

/// The shapes of one attention operation: `batch` texts of `seq` positions (keys and values),
/// of which the first `queries` ask (all of them, or only [CLS] in a classifier's last layer),
/// `heads` heads of `head` values each (hidden = heads·head).
#[derive(Clone, Copy, Debug)]
pub(super) struct Heads {
    pub batch: usize,
    pub queries: usize,
    pub seq: usize,
    pub heads: usize,
    pub head: usize,
}

impl Heads {
    fn hidden(&self) -> usize {
        self.heads * self.head
    }

    fn units(&self) -> usize {
        self.batch * self.heads
    }

    /// One unit's probabilities, `queries × seq`.
    pub fn block(&self) -> usize {
        self.queries * self.seq
    }

    /// Where unit `unit`'s head starts in a `[batch, rows, hidden]` buffer: q and the context
    /// have `queries` rows a text, k and v `seq`.
    fn offset(&self, unit: usize, rows: usize) -> usize {
        let (text, head) = (unit / self.heads, unit % self.heads);
        text * rows * self.hidden() + head * self.head
    }

    /// The scores' scale, 1/√(head size).
    fn scale(&self) -> f32 {
        1.0 / (self.head as f32).sqrt()
    }
}

/// The inputs both passes read: q `[batch, queries, hidden]`, k and v `[batch, seq, hidden]`,
/// which positions are real (`[batch, seq]`, 1 or 0) and the multiplier on the
/// probabilities, all contiguous.
pub(super) struct Operands<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub real: &'a [f32],
    pub dropout: Dropout<'a>,
}

/// What multiplies the probabilities before they weigh v.
#[derive(Clone, Copy)]
pub(super) enum Dropout<'a> {
    /// One value per probability (`[batch, heads, queries, seq]`): a dropout mask scaled by
    /// 1/keep.
    Each(&'a [f32]),
    /// One value for all (1 without dropout).
    All(f32),
}

impl<'a> Dropout<'a> {
    /// Unit `unit`'s block of `block` multipliers, or `None` when the probabilities stay as
    /// they are.
    fn block(self, unit: usize, block: usize) -> Option<Multiplier<'a>> {
        match self {
            Dropout::Each(mask) => Some(Multiplier::Each(&mask[unit * block..][..block])),
            Dropout::All(1.0) => None,
            Dropout::All(value) => Some(Multiplier::All(value)),
        }
    }
}

/// One unit's multipliers.
#[derive(Clone, Copy)]
enum Multiplier<'a> {
    Each(&'a [f32]),
    All(f32),
}

impl Multiplier<'_> {
    /// `values` multiplied, into `out` (emptied first).
    fn apply(self, values: &[f32], out: &mut Vec<f32>) {
        out.clear();
        match self {
            Multiplier::Each(mask) => out.extend(values.iter().zip(mask).map(|(v, m)| v * m)),
            Multiplier::All(m) => out.extend(values.iter().map(|v| v * m)),
        }
    }

    /// `values` multiplied where they are.
    fn apply_in_place(self, values: &mut [f32]) {
        match self {
            Multiplier::Each(mask) => values.iter_mut().zip(mask).for_each(|(v, m)| *v *= m),
            Multiplier::All(m) => values.iter_mut().for_each(|v| *v *= m),
        }
    }
}

/// dst (`m × n`, rows `row_stride` apart) = beta·lhs·rhs on this thread (the units are
/// the parallelism); dst is not read.
///
/// # Safety
/// As [`gemm_into`]'s.
unsafe fn product(
    mnk: (usize, usize, usize),
    dst: *mut f32,
    row_stride: usize,
    lhs: MatrixView,
    rhs: MatrixView,
    beta: f32,
) {
    // SAFETY: as the caller promises.
    unsafe { gemm_into(mnk, (dst, row_stride), false, (lhs, rhs), beta, gemm::Parallelism::None) }
}

/// The context `[batch, queries, hidden]`, and the probabilities `[batch, heads, queries, seq]`
/// (before dropout) when `keep_probabilities` (the backward pass needs them).
pub(super) fn forward(dims: Heads, inputs: &Operands, keep_probabilities: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let Heads { queries, seq, head, .. } = dims;
    let (hidden, block) = (dims.hidden(), dims.block());
    let mut context = Vec::<f32>::with_capacity(dims.batch * queries * hidden);
    let mut kept = keep_probabilities.then(|| Vec::<f32>::with_capacity(dims.units() * block));
    let context_out = Shared(context.as_mut_ptr());
    let kept_out = kept.as_mut().map(|p| Shared(p.as_mut_ptr()));
    for_each_unit(dims.units(), |unit| {
        let (context_out, kept_out) = (&context_out, &kept_out);
        let (q_offset, kv_offset) = (dims.offset(unit, queries), dims.offset(unit, seq));
        let mut own = Vec::new();
        let probabilities: &mut [f32] = match kept_out {
            // SAFETY: unit `unit` alone writes this block of the kept probabilities.
            Some(p) => unsafe { p.slice(unit * block..(unit + 1) * block) },
            None => {
                own.reserve_exact(block);
                // SAFETY: the product below writes every value before anything reads it.
                unsafe { own.set_len(block) };
                &mut own
            }
        };
        let q = MatrixView::at(inputs.q, q_offset, hidden, false);
        let k_t = MatrixView::at(inputs.k, kv_offset, hidden, true);
        // SAFETY: q and kᵀ address this unit's head (`queries × head` and `head × seq`); the
        // block is `queries × seq`, this unit's own.
        unsafe {
            product(
                (queries, seq, head),
                probabilities.as_mut_ptr(),
                seq,
                q,
                k_t,
                dims.scale(),
            )
        };
        let real = &inputs.real[unit / dims.heads * seq..][..seq];
        softmax_rows_widest(probabilities, seq, real);
        let mut dropped = Vec::new();
        let weights: &[f32] = match inputs.dropout.block(unit, block) {
            Some(multiplier) => {
                multiplier.apply(probabilities, &mut dropped);
                &dropped
            }
            None => probabilities,
        };
        let v = MatrixView::at(inputs.v, kv_offset, hidden, false);
        // SAFETY: the weights are `queries × seq`, v this unit's head; the destination is this
        // unit's head's columns of its text's rows, written by no other unit.
        unsafe {
            let dst = context_out.0.add(q_offset);
            product(
                (queries, head, seq),
                dst,
                hidden,
                MatrixView::at(weights, 0, seq, false),
                v,
                1.0,
            );
        }
    });
    // SAFETY: the units together wrote every context value (each its head's columns of its
    // text) and, when kept, every probability block.
    unsafe {
        context.set_len(dims.batch * queries * hidden);
        if let Some(p) = kept.as_mut() {
            p.set_len(dims.units() * block);
        }
    }
    (context, kept)
}

/// The gradients of q (`[batch, queries, hidden]`), k and v (`[batch, seq, hidden]`) from the
/// context's `grad`, with the forward pass's probabilities.
pub(super) fn backward(dims: Heads, inputs: &Operands, probabilities: &[f32], grad: &[f32]) -> [Vec<f32>; 3] {
    let Heads { queries, seq, head, .. } = dims;
    let (hidden, block) = (dims.hidden(), dims.block());
    let lengths = [queries, seq, seq].map(|rows| dims.batch * rows * hidden);
    let mut grads = lengths.map(Vec::<f32>::with_capacity);
    let [dq, dk, dv] = grads.each_mut().map(|g| Shared(g.as_mut_ptr()));
    let scale = dims.scale();
    for_each_unit(dims.units(), |unit| {
        let (dq, dk, dv) = (&dq, &dk, &dv);
        let (q_offset, kv_offset) = (dims.offset(unit, queries), dims.offset(unit, seq));
        let p = &probabilities[unit * block..][..block];
        let multiplier = inputs.dropout.block(unit, block);
        let d_out = MatrixView::at(grad, q_offset, hidden, false);
        let mut dropped = Vec::new();
        let weights: &[f32] = match multiplier {
            Some(multiplier) => {
                multiplier.apply(p, &mut dropped);
                &dropped
            }
            None => p,
        };
        let mut ds = Vec::<f32>::with_capacity(block);
        // SAFETY: every product reads this unit's head of live inputs and writes this unit's
        // head's columns of a gradient (no other unit's) or its own scratch block.
        unsafe {
            // dV = P′ᵀ·dO.
            let p_t = MatrixView::at(weights, 0, seq, true);
            product((seq, head, queries), dv.0.add(kv_offset), hidden, p_t, d_out, 1.0);
            // dP′ = dO·Vᵀ, every value written.
            let v_t = MatrixView::at(inputs.v, kv_offset, hidden, true);
            product((queries, seq, head), ds.as_mut_ptr(), seq, d_out, v_t, 1.0);
            ds.set_len(block);
        }
        if let Some(multiplier) = multiplier {
            // dP = dP′⊙M.
            multiplier.apply_in_place(&mut ds);
        }
        let real = &inputs.real[unit / dims.heads * seq..][..seq];
        softmax_gradient_rows_widest(p, &mut ds, seq, real);
        // SAFETY: as above; dS is this unit's `queries × seq` scratch block.
        unsafe {
            let k = MatrixView::at(inputs.k, kv_offset, hidden, false);
            let q = MatrixView::at(inputs.q, q_offset, hidden, false);
            let (ds, ds_t) = (MatrixView::at(&ds, 0, seq, false), MatrixView::at(&ds, 0, seq, true));
            product((queries, head, seq), dq.0.add(q_offset), hidden, ds, k, scale);
            product((seq, head, queries), dk.0.add(kv_offset), hidden, ds_t, q, scale);
        }
    });
    // SAFETY: the units together wrote every value of the three gradients.
    for (g, n) in grads.iter_mut().zip(lengths) {
        unsafe { g.set_len(n) };
    }
    grads
}

/// Each `len`-long row of scores → its softmax, in place, the keys where `real` is 0 first set
/// to `f32::MIN` (as the written-out form's mask does).
#[inline(always)]
pub(super) fn softmax_rows(scores: &mut [f32], len: usize, real: &[f32]) {
    for row in scores.chunks_exact_mut(len) {
        for (s, &r) in row.iter_mut().zip(real) {
            *s = if r == 0.0 { f32::MIN } else { *s };
        }
        let max = lane_max(row);
        for s in row.iter_mut() {
            *s = exp_nonpositive(*s - max);
        }
        let scale = 1.0 / lane_sum(row);
        for s in row.iter_mut() {
            *s *= scale;
        }
    }
}

/// Each `len`-long row of dP (in `ds`) → dS in place: P⊙(dP − Σ dP⊙P), 0 for padded keys.
#[inline(always)]
pub(super) fn softmax_gradient_rows(p: &[f32], ds: &mut [f32], len: usize, real: &[f32]) {
    for (p, d) in p.chunks_exact(len).zip(ds.chunks_exact_mut(len)) {
        let dot = lane_dot(p, d);
        for ((d, &p), &r) in d.iter_mut().zip(p).zip(real) {
            *d = if r == 0.0 { 0.0 } else { p * (*d - dot) };
        }
    }
}

widest_vectors!(pub(super) softmax_rows_widest = softmax_rows(scores: &mut [f32], len: usize, real: &[f32]));
widest_vectors!(pub(super) softmax_gradient_rows_widest = softmax_gradient_rows(p: &[f32], ds: &mut [f32], len: usize, real: &[f32]));
