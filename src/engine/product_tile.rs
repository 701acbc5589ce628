//! One tile of a matrix product, six rows by 16 columns in vector registers
//! (two AVX2 vectors a row on x86_64, four NEON vectors on aarch64): the
//! inner loop of the fused attention (`fused_attention.rs`) and of the
//! Winograd convolution (`winograd.rs`). `a` is read where it lies (rows at
//! a stride, one value broadcast a step), `b` packed in panels of 16
//! columns, so each step is 16 columns of `b` loaded, six values of `a`
//! broadcast and 96 fused multiply-adds (12 AVX2 or 24 NEON instructions).
//! Only this innermost loop differs between the two architectures.

/// Rows one tile computes (six broadcast values a step).
pub(super) const ROWS: usize = 6;
/// Columns one tile computes: two AVX vectors, four NEON vectors.
pub(super) const COLUMNS: usize = 16;

/// `c[r][0..16] (+)= sum over s < depth of a[r][s] * b[s][0..16]` for the
/// first `rows` (1 to 6) rows: `a` and `c` are rows at a stride, `b` packed
/// 16 wide; `accumulate` adds to `c` instead of overwriting it. Panics if a
/// slice is too short.
pub(super) fn tile(
    rows: usize,
    depth: usize,
    a: (&[f32], usize),
    b: &[f32],
    c: (&mut [f32], usize),
    accumulate: bool,
) {
    let ((a, lda), (c, ldc)) = (a, c);
    assert!(
        (1..=ROWS).contains(&rows)
            && a.len() >= (rows - 1) * lda + depth
            && b.len() >= depth * COLUMNS
            && c.len() >= (rows - 1) * ldc + COLUMNS
    );
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    // SAFETY: the lengths were checked above; `available()` held when the op
    // was made (AVX2 and FMA; NEON is part of aarch64).
    unsafe {
        let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        match rows {
            1 => simd::tile::<1>(depth, a, lda, b, c, ldc, accumulate),
            2 => simd::tile::<2>(depth, a, lda, b, c, ldc, accumulate),
            3 => simd::tile::<3>(depth, a, lda, b, c, ldc, accumulate),
            4 => simd::tile::<4>(depth, a, lda, b, c, ldc, accumulate),
            5 => simd::tile::<5>(depth, a, lda, b, c, ldc, accumulate),
            _ => simd::tile::<6>(depth, a, lda, b, c, ldc, accumulate),
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (depth, a, lda, b, c, ldc, accumulate);
        unreachable!("the product tile runs on x86_64 and aarch64 only");
    }
}

/// This architecture's twin of the innermost loop.
#[cfg(target_arch = "x86_64")]
use avx2 as simd;
#[cfg(target_arch = "aarch64")]
use neon as simd;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::COLUMNS;
    use std::arch::x86_64::*;

    /// [`super::tile`] for `R` rows: `2 R` accumulators, two vectors of `b`
    /// and one broadcast of `a` a step.
    ///
    /// # Safety
    /// AVX2 and FMA present; `a` holds `R` rows of `depth` values at stride
    /// `lda`, `b` `depth` x 16 values, `c` `R` rows of 16 at stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile<const R: usize>(
        depth: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: the caller keeps every pointer below in bounds.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            if accumulate {
                for (r, lanes) in acc.iter_mut().enumerate() {
                    *lanes = [
                        _mm256_loadu_ps(c.add(r * ldc)),
                        _mm256_loadu_ps(c.add(r * ldc + 8)),
                    ];
                }
            }
            for s in 0..depth {
                let b0 = _mm256_loadu_ps(b.add(s * COLUMNS));
                let b1 = _mm256_loadu_ps(b.add(s * COLUMNS + 8));
                for (r, lanes) in acc.iter_mut().enumerate() {
                    let w = _mm256_broadcast_ss(&*a.add(r * lda + s));
                    lanes[0] = _mm256_fmadd_ps(w, b0, lanes[0]);
                    lanes[1] = _mm256_fmadd_ps(w, b1, lanes[1]);
                }
            }
            for (r, lanes) in acc.iter().enumerate() {
                _mm256_storeu_ps(c.add(r * ldc), lanes[0]);
                _mm256_storeu_ps(c.add(r * ldc + 8), lanes[1]);
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub(super) mod neon {
    use super::COLUMNS;
    use std::arch::aarch64::*;

    /// 16 values from `at` as four vectors.
    ///
    /// # Safety
    /// `at` is valid for 16 reads.
    #[inline(always)]
    pub(in crate::engine) unsafe fn load16(at: *const f32) -> [float32x4_t; 4] {
        // SAFETY: forwarded from the caller.
        unsafe { [0, 4, 8, 12].map(|q| vld1q_f32(at.add(q))) }
    }

    /// Four vectors to 16 values at `at`.
    ///
    /// # Safety
    /// `at` is valid for 16 writes.
    #[inline(always)]
    pub(in crate::engine) unsafe fn store16(at: *mut f32, lanes: [float32x4_t; 4]) {
        for (q, lane) in lanes.into_iter().enumerate() {
            // SAFETY: forwarded from the caller.
            unsafe { vst1q_f32(at.add(4 * q), lane) };
        }
    }

    /// [`super::tile`] for `R` rows: `4 R` accumulators (24 of the 32
    /// registers at six rows), four vectors of `b` and one value of `a` a
    /// step, multiplied by element (`fmla v.4s, v.4s, v.s[0]`).
    ///
    /// # Safety
    /// `a` holds `R` rows of `depth` values at stride `lda`, `b` `depth` x
    /// 16 values, `c` `R` rows of 16 at stride `ldc`. Never inlined: like
    /// the AVX2 twin (a `target_feature` function) it keeps a symbol of its
    /// own, where `benches/inner_loops.py` finds its loop.
    #[inline(never)]
    pub(super) unsafe fn tile<const R: usize>(
        depth: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: the caller keeps every pointer below in bounds.
        unsafe {
            let mut acc = [[vdupq_n_f32(0.0); 4]; R];
            if accumulate {
                for (r, lanes) in acc.iter_mut().enumerate() {
                    *lanes = load16(c.add(r * ldc));
                }
            }
            for s in 0..depth {
                let columns = load16(b.add(s * COLUMNS));
                for (r, lanes) in acc.iter_mut().enumerate() {
                    let w = *a.add(r * lda + s);
                    for (lane, column) in lanes.iter_mut().zip(columns) {
                        *lane = vfmaq_n_f32(*lane, column, w);
                    }
                }
            }
            for (r, lanes) in acc.into_iter().enumerate() {
                store16(c.add(r * ldc), lanes);
            }
        }
    }
}
