//! Work split over rayon's threads natively and run in order in wasm: buffers that several
//! threads write, each its own elements, and element-wise kernels over chunks of the input.

use burn::backend::Flex;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Shape, TensorData};
use std::mem::MaybeUninit;

/// A buffer that units of work on several threads write through, each to its own elements.
#[derive(Clone, Copy)]
pub(super) struct Shared(pub(super) *mut f32);
// SAFETY: the kernels hand each unit a disjoint set of elements, and the buffer outlives the
// parallel loop.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The elements `range` of the buffer.
    ///
    /// # Safety
    /// The range lies inside the buffer, and no other unit touches it meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn slice<'a>(&self, range: std::ops::Range<usize>) -> &'a mut [f32] {
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(range.start), range.len()) }
    }

    /// [`Shared::slice`] of a buffer not yet initialised there: zeroed first, by the unit
    /// that owns the range (one thread zeroing a whole fresh buffer left the other idle).
    ///
    /// # Safety
    /// As [`Shared::slice`], except that the range may hold uninitialised memory.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn zeroed<'a>(&self, range: std::ops::Range<usize>) -> &'a mut [f32] {
        // SAFETY: as the caller promises; all-zero bytes are the f32 0.0.
        unsafe {
            self.0.add(range.start).write_bytes(0, range.len());
            self.slice(range)
        }
    }
}

/// Runs `work` for every unit, on rayon's threads natively and in order in wasm.
pub(super) fn for_each_unit(units: usize, work: impl Fn(usize) + Sync + Send) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..units).into_par_iter().for_each(work);
    }
    #[cfg(target_arch = "wasm32")]
    (0..units).for_each(work);
}

/// An output element before its kernel writes it.
pub(super) type Uninit = MaybeUninit<f32>;

/// A new tensor of `shape` whose values `kernel` writes, every one, from matching chunks of
/// the inputs. The buffer is not zeroed first, nor copied after: burn-flex's
/// `FlexTensor::empty` does both (a zeroed `Vec<u8>`, then a copy to 16-byte alignment).
pub(super) fn computed(
    shape: Shape,
    x: &[f32],
    grad: Option<&[f32]>,
    granule: usize,
    kernel: impl Fn(&[f32], Option<&[f32]>, &mut [Uninit]) + Sync,
) -> FloatTensor<Flex> {
    let n = x.len();
    let mut data = Vec::<f32>::with_capacity(n);
    for_chunks(x, grad, &mut data.spare_capacity_mut()[..n], granule, kernel);
    // SAFETY: the kernels write every element of their chunk, and the chunks cover 0..n.
    unsafe { data.set_len(n) };
    FloatTensor::<Flex>::from_data(TensorData::new(data, shape))
}

/// Runs `kernel` over matching chunks of the inputs and the output, each a whole number of
/// `granule`s (rows), on rayon's threads natively (burn-flex runs element-wise work on one), in
/// one piece in wasm.
fn for_chunks(
    x: &[f32],
    grad: Option<&[f32]>,
    out: &mut [Uninit],
    granule: usize,
    kernel: impl Fn(&[f32], Option<&[f32]>, &mut [Uninit]) + Sync,
) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let chunk = (1usize << 15).next_multiple_of(granule);
        if x.len() > chunk {
            use rayon::prelude::*;
            out.par_chunks_mut(chunk).enumerate().for_each(|(i, out)| {
                let range = i * chunk..i * chunk + out.len();
                kernel(&x[range.clone()], grad.map(|g| &g[range]), out);
            });
            return;
        }
    }
    let _ = granule;
    kernel(x, grad, out);
}
