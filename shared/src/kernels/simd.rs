//! Reductions in a fixed number of lanes, and the macro that compiles a kernel for the
//! widest vectors the CPU has: the same results at every vector width.

/// Accumulators for reductions in 16 lanes (the widest vector), combined at the end: a fixed
/// order, so the same at every vector width.
const LANES: usize = 16;

/// The largest value (NaN only if every value is NaN; a NaN elsewhere reaches the exponentials
/// and makes the row NaN).
#[inline(always)]
pub(super) fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = if v > *a { v } else { *a };
        }
    }
    let max = acc.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    rest.iter().fold(max, |m, &v| if v > m { v } else { m })
}

/// Σ x.
#[inline(always)]
pub(super) fn lane_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Σ x·w.
#[inline(always)]
pub(super) fn lane_dot(x: &[f32], w: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    for (xs, ws) in x.chunks_exact(LANES).zip(w.chunks_exact(LANES)) {
        for ((a, &x), &w) in acc.iter_mut().zip(xs).zip(ws) {
            *a += x * w;
        }
    }
    let tail = x.len() - x.len() % LANES;
    let rest: f32 = x[tail..].iter().zip(&w[tail..]).map(|(x, w)| x * w).sum();
    acc.iter().sum::<f32>() + rest
}

/// `$name` runs `$kernel` (an `#[inline(always)]` loop) compiled for the widest vectors this
/// CPU has: the binary targets baseline x86-64 (4 floats per SSE vector); most CPUs run 8
/// (AVX2) or 16 (AVX-512F). The arithmetic is the same in each (no fused multiply-add), and so
/// are the results.
macro_rules! widest_vectors {
    ($vis:vis $name:ident = $kernel:ident($($arg:ident: $ty:ty),*) $(-> $out:ty)?) => {
        $vis fn $name($($arg: $ty),*) $(-> $out)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $out)? {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $out)? {
                    $kernel($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature the function was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    };
}
pub(super) use widest_vectors;
