//! Matrix products through the gemm crate, as burn-flex's own: the fused linear operation's
//! (into a buffer that starts as the bias rows, or that no one zeroed) and attention's per
//! head, on strided views of tensors' storage.

use super::parallel::Uninit;
use burn::backend::tensor::FloatTensor;
use burn::backend::{DType, Flex};
use burn::tensor::Shape;

/// `[rows, in]`·`[in, out]` for the fused linear operation, through the gemm crate as
/// burn-flex's own products. The destination is a new buffer that starts as the bias rows
/// (`init`, the forward pass), or that no one zeroed: gemm does not read the destination
/// unless told to.
pub(super) fn product(
    (rows, d_in, d_out): (usize, usize, usize),
    lhs: MatrixView,
    rhs: MatrixView,
    init: Option<&[f32]>,
) -> Vec<f32> {
    product_into(Vec::new(), (rows, d_in, d_out), lhs, rhs, init)
}

/// [`product`] into `data`'s allocation (emptied first; a test hands it memory full of NaN).
pub(super) fn product_into(
    mut data: Vec<f32>,
    (rows, d_in, d_out): (usize, usize, usize),
    lhs: MatrixView,
    rhs: MatrixView,
    init: Option<&[f32]>,
) -> Vec<f32> {
    let n = rows * d_out;
    data.clear();
    data.reserve_exact(n);
    let parallel = rows.saturating_mul(d_in).saturating_mul(d_out) >= 192 * 192 * 192;
    if let Some(bias) = init {
        fill_rows(&mut data.spare_capacity_mut()[..n], bias, parallel);
        // SAFETY: fill_rows wrote all n values.
        unsafe { data.set_len(n) };
    }
    if d_in == 0 {
        // An empty sum: gemm would have nothing to write.
        data.resize(n, 0.0);
        return data;
    }
    let read_dst = init.is_some();
    let parallelism = if parallel {
        #[cfg(not(target_arch = "wasm32"))]
        {
            gemm::Parallelism::Rayon(0)
        }
        #[cfg(target_arch = "wasm32")]
        {
            gemm::Parallelism::None
        }
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the views address `rows × in` and `in × out` matrices inside their tensors'
    // storage (the callers take the dimensions from those tensors' shapes); the destination
    // has room for `rows × out` values, row-major, and is read only when it holds the bias
    // rows; gemm writes every value.
    unsafe {
        let operands = (lhs, rhs);
        gemm_into(
            (rows, d_out, d_in),
            (data.as_mut_ptr(), d_out),
            read_dst,
            operands,
            1.0,
            parallelism,
        );
        data.set_len(n);
    }
    data
}

/// Every row of `out` (rows of `row.len()` values) set to `row`: on rayon's threads when
/// `parallel` (a product's bias rows are as large as its output, and one thread filling them
/// left the other idle), in order otherwise and in wasm.
pub(super) fn fill_rows(out: &mut [Uninit], row: &[f32], parallel: bool) {
    let fill = |out: &mut [Uninit]| {
        for out in out.chunks_exact_mut(row.len()) {
            for (o, &v) in out.iter_mut().zip(row) {
                o.write(v);
            }
        }
    };
    if row.is_empty() {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    if parallel {
        use rayon::prelude::*;
        let chunk = (1usize << 15).next_multiple_of(row.len());
        out.par_chunks_mut(chunk).for_each(fill);
        return;
    }
    let _ = parallel;
    fill(out);
}

/// dst (`m × n`, rows `row_stride` apart) = beta·lhs·rhs, plus dst's own values when
/// `accumulate` (else dst is never read), through the gemm crate as burn-flex's products.
///
/// # Safety
/// The views address `m × k` and `k × n` matrices of live memory, and dst `m × n` writable
/// values (initialised if `accumulate`) that nothing else touches meanwhile.
pub(super) unsafe fn gemm_into(
    (m, n, k): (usize, usize, usize),
    (dst, row_stride): (*mut f32, usize),
    accumulate: bool,
    (lhs, rhs): (MatrixView, MatrixView),
    beta: f32,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: as the caller promises.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            row_stride as isize,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// A 2-D matrix inside a tensor's storage: element (i, j) at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(super) struct MatrixView {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl MatrixView {
    /// A 2-D tensor as it is stored, or transposed.
    pub(super) fn of(tensor: &FloatTensor<Flex>, transposed: bool) -> MatrixView {
        let layout = tensor.layout();
        let strides = layout.strides();
        let ptr = tensor.storage::<f32>()[layout.start_offset()..].as_ptr();
        let (rs, cs) = (strides[0], strides[1]);
        if transposed {
            MatrixView { ptr, rs: cs, cs: rs }
        } else {
            MatrixView { ptr, rs, cs }
        }
    }

    /// A contiguous tensor seen as `[rows, cols]` row-major, or transposed.
    pub(super) fn rows(values: &[f32], cols: usize, transposed: bool) -> MatrixView {
        MatrixView::at(values, 0, cols, transposed)
    }

    /// Rows `row_stride` apart starting at `values[offset]` (a column block of a wider
    /// matrix, such as one attention head), or their transpose.
    pub(super) fn at(values: &[f32], offset: usize, row_stride: usize, transposed: bool) -> MatrixView {
        let (rs, cs) = (row_stride as isize, 1);
        let ptr = values[offset..].as_ptr();
        if transposed {
            MatrixView { ptr, rs: cs, cs: rs }
        } else {
            MatrixView { ptr, rs, cs }
        }
    }
}

/// The linear operation's shapes when the fused kernels take them: f32 throughout, a 2-D weight
/// `[in, out]`, a bias `[out]`, an input whose last dimension is `in`. `(rows, in, out)`.
pub(super) fn linear_dims(
    x: &FloatTensor<Flex>,
    weight: &FloatTensor<Flex>,
    bias: Option<&FloatTensor<Flex>>,
) -> Option<(usize, usize, usize)> {
    let (xs, ws) = (x.layout().shape(), weight.layout().shape());
    let f32s = x.dtype() == DType::F32 && weight.dtype() == DType::F32;
    if !f32s || ws.num_dims() != 2 || xs.num_dims() < 2 || xs[xs.num_dims() - 1] != ws[0] {
        return None;
    }
    if let Some(bias) = bias {
        let bs = bias.layout().shape();
        if bias.dtype() != DType::F32 || bs.num_dims() != 1 || bs[0] != ws[1] {
            return None;
        }
    }
    let (d_in, d_out) = (ws[0], ws[1]);
    (d_in > 0 && d_out > 0).then(|| (xs.num_elements() / d_in, d_in, d_out))
}

/// `shape` with its last dimension replaced.
pub(super) fn with_last(shape: &Shape, last: usize) -> Shape {
    let mut dims: Vec<usize> = (0..shape.num_dims()).map(|i| shape[i]).collect();
    let end = dims.len() - 1;
    dims[end] = last;
    Shape::from(dims)
}
