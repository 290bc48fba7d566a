//! The descriptor network's inner loop: an implicit-GEMM block kernel.
//!
//! One call computes `rows` (≤ [`MR`]) output rows of [`NR`] columns:
//!
//! `out[o_i + j] = bias[j] + Σ_t Σ_c a[a_i + taps[t] + c] · b[(t·k + c)·NR + j]`, then ReLU if asked,
//!
//! where `a_i` / `o_i` are the start offsets of row `i` in the input / output buffers. With
//! activations stored pixel-major (HWC) a row is an output pixel, a tap a kernel position and
//! `c` an input channel, so a convolution needs no im2col copy; a plain matrix product is the
//! one-tap case. `b` is a weight panel packed at load time, [`NR`] output channels wide.
//!
//! Two implementations with the same summation order: AVX2+FMA (`std::arch`, chosen at run time
//! when the CPU has it) and portable Rust.

/// Output columns per block (one packed weight panel).
pub const NR: usize = 16;
/// Most rows per block.
pub const MR: usize = 6;

/// Which kernel runs. The AVX2 variant can only come from [`Isa::detect`] (the field is
/// private), so safe code cannot ask for AVX2 on a CPU without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isa(Kernel);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Portable Rust (any CPU).
    Portable,
    /// x86-64 AVX2 + FMA.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2Fma,
}

impl Isa {
    /// The portable kernel (any CPU).
    pub const PORTABLE: Isa = Isa(Kernel::Portable);

    /// The best kernel this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa(Kernel::Avx2Fma);
            }
        }
        Self::PORTABLE
    }

    /// Kernel name, for reports ("avx2+fma" or "portable").
    pub fn name(self) -> &'static str {
        match self.0 {
            Kernel::Portable => "portable",
            Kernel::Avx2Fma => "avx2+fma",
        }
    }
}

/// Geometry of one block call. Offsets are element indices into the `a` and `out` slices.
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    /// Start of each row in `a` (only the first `rows` are used).
    pub a_rows: &'a [usize],
    /// Offset of each tap from a row's start.
    pub taps: &'a [usize],
    /// Contiguous values per tap (input channels).
    pub k: usize,
    /// Start of each row in `out` (first `rows` used).
    pub o_rows: &'a [usize],
    /// Apply ReLU after the bias.
    pub relu: bool,
}

/// Why a block call was refused (an out-of-range geometry: a bug, never a panic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BlockError(pub &'static str);

/// The largest `a` index a block reads, plus one.
fn a_extent(g: &Block<'_>) -> Option<usize> {
    let row = g.a_rows.iter().copied().max()?;
    let tap = g.taps.iter().copied().max()?;
    row.checked_add(tap)?.checked_add(g.k)
}

/// Checks that a block with this geometry stays inside its buffers.
pub fn check(
    g: &Block<'_>,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    out: &[f32],
) -> Result<(), BlockError> {
    if g.a_rows.is_empty() || g.a_rows.len() > MR || g.o_rows.len() != g.a_rows.len() {
        return Err(BlockError("row count"));
    }
    if g.taps.is_empty() || g.k == 0 {
        return Err(BlockError("empty reduction"));
    }
    match a_extent(g) {
        Some(end) if end <= a.len() => {}
        _ => return Err(BlockError("input rows out of range")),
    }
    let need_b = g
        .taps
        .len()
        .checked_mul(g.k)
        .and_then(|v| v.checked_mul(NR));
    if need_b.is_none_or(|n| n > b.len()) {
        return Err(BlockError("weight panel too short"));
    }
    if bias.len() < NR {
        return Err(BlockError("bias too short"));
    }
    let o_end = g
        .o_rows
        .iter()
        .copied()
        .max()
        .and_then(|o| o.checked_add(NR));
    if o_end.is_none_or(|e| e > out.len()) {
        return Err(BlockError("output rows out of range"));
    }
    Ok(())
}

/// Runs one block after checking its geometry.
pub fn block(
    isa: Isa,
    g: &Block<'_>,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    out: &mut [f32],
) -> Result<(), BlockError> {
    check(g, a, b, bias, out)?;
    // SAFETY: `check` proved every index the kernels touch is in bounds.
    unsafe { block_unchecked(isa, g, a, b, bias, out) };
    Ok(())
}

/// Runs one block without checking.
///
/// # Safety
/// [`check`] must accept `(g, a, b, bias, out)`.
pub unsafe fn block_unchecked(
    isa: Isa,
    g: &Block<'_>,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    match isa.0 {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma => {
            // SAFETY: the caller guarantees the bounds (`check`); `Kernel::Avx2Fma` is private
            // to this module and only constructed by `Isa::detect` after the CPU reported
            // avx2 and fma.
            unsafe { avx2::dispatch(g, a, b, bias, out) }
        }
        _ => portable(g, a, b, bias, out),
    }
}

fn portable(g: &Block<'_>, a: &[f32], b: &[f32], bias: &[f32], out: &mut [f32]) {
    for (&ar, &or) in g.a_rows.iter().zip(g.o_rows) {
        let mut acc = [0f32; NR];
        let mut bp = 0;
        for &t in g.taps {
            let row = &a[ar + t..ar + t + g.k];
            for &av in row {
                let bv = &b[bp..bp + NR];
                for (s, w) in acc.iter_mut().zip(bv) {
                    *s = av.mul_add(*w, *s);
                }
                bp += NR;
            }
        }
        for ((o, s), bz) in out[or..or + NR].iter_mut().zip(acc).zip(bias) {
            let v = s + bz;
            *o = if g.relu { v.max(0.0) } else { v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Block, MR, NR};
    use std::arch::x86_64::*;

    /// # Safety
    /// As [`super::block_unchecked`], and the CPU has AVX2 and FMA.
    pub(super) unsafe fn dispatch(
        g: &Block<'_>,
        a: &[f32],
        b: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) {
        let mut ar = [0usize; MR];
        let mut or = [0usize; MR];
        ar[..g.a_rows.len()].copy_from_slice(g.a_rows);
        or[..g.o_rows.len()].copy_from_slice(g.o_rows);
        let (a, b, bias, out) = (a.as_ptr(), b.as_ptr(), bias.as_ptr(), out.as_mut_ptr());
        // SAFETY: forwarded from the caller.
        unsafe {
            match g.a_rows.len() {
                6 => kernel::<6>(&ar, g.taps, g.k, &or, g.relu, a, b, bias, out),
                5 => kernel::<5>(&ar, g.taps, g.k, &or, g.relu, a, b, bias, out),
                4 => kernel::<4>(&ar, g.taps, g.k, &or, g.relu, a, b, bias, out),
                3 => kernel::<3>(&ar, g.taps, g.k, &or, g.relu, a, b, bias, out),
                2 => kernel::<2>(&ar, g.taps, g.k, &or, g.relu, a, b, bias, out),
                _ => kernel::<1>(&ar, g.taps, g.k, &or, g.relu, a, b, bias, out),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel<const R: usize>(
        ar: &[usize; MR],
        taps: &[usize],
        k: usize,
        or: &[usize; MR],
        relu: bool,
        a: *const f32,
        b: *const f32,
        bias: *const f32,
        out: *mut f32,
    ) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let mut bp = b;
        for &t in taps {
            // SAFETY: (whole block) `check` bounded every row start + tap + k by a's length,
            // the panel by taps·k·NR and each output row by NR; `bp` advances NR per value.
            unsafe {
                let rows: [*const f32; R] = std::array::from_fn(|i| a.add(ar[i] + t));
                for c in 0..k {
                    let b0 = _mm256_loadu_ps(bp);
                    let b1 = _mm256_loadu_ps(bp.add(8));
                    bp = bp.add(NR);
                    for i in 0..R {
                        let av = _mm256_broadcast_ss(&*rows[i].add(c));
                        lo[i] = _mm256_fmadd_ps(av, b0, lo[i]);
                        hi[i] = _mm256_fmadd_ps(av, b1, hi[i]);
                    }
                }
            }
        }
        // SAFETY: as above (bias has NR values, each output row NR slots).
        unsafe {
            let z0 = _mm256_loadu_ps(bias);
            let z1 = _mm256_loadu_ps(bias.add(8));
            let zero = _mm256_setzero_ps();
            for i in 0..R {
                let mut v0 = _mm256_add_ps(lo[i], z0);
                let mut v1 = _mm256_add_ps(hi[i], z1);
                if relu {
                    v0 = _mm256_max_ps(v0, zero);
                    v1 = _mm256_max_ps(v1, zero);
                }
                let o = out.add(or[i]);
                _mm256_storeu_ps(o, v0);
                _mm256_storeu_ps(o.add(8), v1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn kernels_agree_with_a_naive_sum() {
        let (k, taps) = (37usize, [0usize, 40, 85]);
        let a = pseudo(400, 1);
        let b = pseudo(taps.len() * k * NR, 2);
        let bias = pseudo(NR, 3);
        for rows in 1..=MR {
            let a_rows: Vec<usize> = (0..rows).map(|i| i * 41 % 200).collect();
            let o_rows: Vec<usize> = (0..rows).map(|i| i * NR).collect();
            let g = Block {
                a_rows: &a_rows,
                taps: &taps,
                k,
                o_rows: &o_rows,
                relu: rows % 2 == 0,
            };
            let mut want = vec![0f32; MR * NR];
            for i in 0..rows {
                for j in 0..NR {
                    let mut s = 0f64;
                    for (ti, t) in taps.iter().enumerate() {
                        for c in 0..k {
                            s += f64::from(a[a_rows[i] + t + c])
                                * f64::from(b[(ti * k + c) * NR + j]);
                        }
                    }
                    let v = s as f32 + bias[j];
                    want[i * NR + j] = if g.relu { v.max(0.0) } else { v };
                }
            }
            let mut isas = vec![Isa::PORTABLE];
            if Isa::detect() != Isa::PORTABLE {
                isas.push(Isa::detect());
            }
            for isa in isas {
                let mut out = vec![0f32; MR * NR];
                block(isa, &g, &a, &b, &bias, &mut out).unwrap();
                for (x, y) in out.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-5, "{isa:?} rows {rows}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn out_of_range_geometry_is_an_error() {
        let a = vec![0f32; 10];
        let b = vec![0f32; NR * 4];
        let bias = vec![0f32; NR];
        let mut out = vec![0f32; NR];
        let g = Block {
            a_rows: &[8],
            taps: &[0],
            k: 4,
            o_rows: &[0],
            relu: false,
        };
        assert!(block(Isa::PORTABLE, &g, &a, &b, &bias, &mut out).is_err());
    }
}
