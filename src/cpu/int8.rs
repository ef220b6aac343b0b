//! Int8 inference for dense layers: weights quantized symmetrically per output channel once
//! (i8), activations per row on the fly over their own range (u8 with an offset: all 256 levels
//! cover `[min, max]` of the row, which matters after GELU), products accumulated exactly in
//! i32, then scaled back to f32.
//!
//! The product runs on AVX-512 VNNI (`vpdpbusd`: 64 u8×i8 multiply-adds per instruction, four
//! times the f32 FMA rate) where the CPU has it, and on a plain scalar loop with the same integer
//! arithmetic elsewhere, so both give the same result. Inference only: there is no backward.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::kernels::{mul_add, multiversion};

/// Output columns per packed block: one 512-bit register of i32 accumulators.
const COLUMNS: usize = 16;
/// Rows of one micro-kernel call (6 rows × 4 column blocks = 24 accumulator registers).
const ROWS: usize = 6;
/// Column blocks of one micro-kernel call.
const BLOCKS: usize = 4;
/// Rows of one AMX tile: tasks are padded to a multiple of it.
const AMX_ROWS: usize = 16;
/// Rows each parallel task quantizes and multiplies (a multiple of [`ROWS`] and of
/// [`AMX_ROWS`]).
const TASK_ROWS: usize = 96;
/// Input features are padded to whole 64-byte tile rows (AMX); VNNI needs only 4.
const DEPTH_ALIGN: usize = 64;

/// A dense layer's weight `(n, k)` and bias `(n)`, quantized for [`Int8Linear::forward`].
#[derive(Debug, Clone)]
pub struct Int8Linear {
    n: usize,
    k: usize,
    /// `k` rounded up to a multiple of [`DEPTH_ALIGN`] (one `vpdpbusd` lane takes four bytes,
    /// one AMX tile row 64).
    k_padded: usize,
    /// `[n / 16][k_padded / 4][16 columns][4 bytes]`, zero where padded.
    packed: Vec<i8>,
    /// Per output channel: `max |w| / 127`.
    scales: Vec<f32>,
    /// Per output channel: Σ_k of the quantized weights, to add back the rows' offsets.
    column_sums: Vec<i32>,
    bias: Vec<f32>,
}

impl Int8Linear {
    /// Quantizes a row-major `(n, k)` weight and its bias.
    ///
    /// # Panics
    /// If `weight.len() != n * k` or `bias.len() != n`.
    pub fn new(weight: &[f32], bias: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k, "int8 weight shape");
        assert_eq!(bias.len(), n, "int8 bias shape");
        let k_padded = k.div_ceil(DEPTH_ALIGN) * DEPTH_ALIGN;
        let blocks = n.div_ceil(COLUMNS);
        let mut packed = vec![0i8; blocks * COLUMNS * k_padded];
        let mut scales = vec![1f32; n];
        let mut column_sums = vec![0i32; n];
        if k > 0 {
            weight
                .par_chunks_exact(k)
                .zip(scales.par_iter_mut())
                .for_each(|(row, scale)| *scale = weight_scale(row));
            // Each block of COLUMNS output channels owns one contiguous panel.
            packed
                .par_chunks_mut(COLUMNS * k_padded)
                .zip(column_sums.par_chunks_mut(COLUMNS))
                .zip(weight.par_chunks(COLUMNS * k))
                .zip(scales.par_chunks(COLUMNS))
                .for_each_init(Vec::new, |levels, (((panel, sums), rows), scales)| {
                    for (column, (row, (&scale, sum))) in rows
                        .chunks_exact(k)
                        .zip(scales.iter().zip(sums.iter_mut()))
                        .enumerate()
                    {
                        levels.resize(k, 0);
                        quantize_weights(row, scale, levels);
                        *sum = levels.iter().map(|&q| i32::from(q)).sum();
                        for (kk, &q) in levels.iter().enumerate() {
                            panel[((kk / 4) * COLUMNS + column) * 4 + kk % 4] = q;
                        }
                    }
                });
        }
        Int8Linear {
            n,
            k,
            k_padded,
            packed,
            scales,
            column_sums,
            bias: bias.to_vec(),
        }
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// `x W^T + b` for `m = x.len() / k` rows of `x`, in parallel over blocks of rows.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        self.forward_with(x, Kernel::best(), false)
    }

    /// [`Int8Linear::forward`] followed by exact GELU ([`super::kernels::gelu_erf`]), applied
    /// to each task's rows while they are still in cache.
    pub fn forward_gelu(&self, x: &[f32]) -> Vec<f32> {
        self.forward_with(x, Kernel::best(), true)
    }

    fn forward_with(&self, x: &[f32], kernel: Kernel, gelu: bool) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let m = x.len().checked_div(k).unwrap_or(0);
        if n == 0 {
            return vec![0f32; m * n];
        }
        // Every element is written by `rows`: no zero-fill.
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        out.spare_capacity_mut()[..m * n]
            .par_chunks_mut(TASK_ROWS * n)
            .zip(x.par_chunks(TASK_ROWS * k.max(1)))
            .for_each(|(out, x)| {
                self.rows(x, out, kernel, gelu);
            });
        // SAFETY: the tasks above cover all m * n elements, and `rows` writes each one.
        unsafe { out.set_len(m * n) };
        out
    }

    /// A transformer's feed-forward block, `next(gelu(self(x)))`, as
    /// `next.forward(&self.forward_gelu(x))` gives it, but block of rows by block of rows: the
    /// intermediate rows (four times as wide as the input) stay in this thread's cache between
    /// the two products instead of being written out and read back.
    ///
    /// # Panics
    /// If `next` does not take this layer's output width.
    pub fn forward_feed_forward(&self, next: &Int8Linear, x: &[f32]) -> Vec<f32> {
        self.feed_forward_with(next, x, Kernel::best())
    }

    fn feed_forward_with(&self, next: &Int8Linear, x: &[f32], kernel: Kernel) -> Vec<f32> {
        assert_eq!(self.n, next.k, "int8 feed-forward widths");
        let (k, inner, n) = (self.k, self.n, next.n);
        if k == 0 || inner == 0 || n == 0 {
            return next.forward_with(&self.forward_with(x, kernel, true), kernel, false);
        }
        let m = x.len() / k;
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        out.spare_capacity_mut()[..m * n]
            .par_chunks_mut(TASK_ROWS * n)
            .zip(x.par_chunks(TASK_ROWS * k))
            .for_each(|(out, x)| {
                INTERMEDIATE.with_borrow_mut(|hidden| {
                    let rows = x.len() / k;
                    hidden.clear();
                    hidden.reserve(rows * inner);
                    let hidden = self.rows(
                        x,
                        &mut hidden.spare_capacity_mut()[..rows * inner],
                        kernel,
                        true,
                    );
                    next.rows(hidden, out, kernel, false);
                });
            });
        // SAFETY: the tasks above cover all m * n elements, and `rows` writes each one.
        unsafe { out.set_len(m * n) };
        out
    }

    /// One task: quantize up to [`TASK_ROWS`] rows, multiply, scale back, add the bias, then
    /// GELU if `gelu`. Returns `out`, now initialised.
    fn rows<'a>(
        &self,
        x: &[f32],
        out: &'a mut [MaybeUninit<f32>],
        kernel: Kernel,
        gelu: bool,
    ) -> &'a mut [f32] {
        let (n, k, kp) = (self.n, self.k, self.k_padded);
        let m = out.len() / n;
        // Rows rounded up to whole micro-kernel calls (extra rows are never read back),
        // columns to whole blocks.
        let row_multiple = if kernel == Kernel::Amx {
            AMX_ROWS
        } else {
            ROWS
        };
        let m_padded = m.div_ceil(row_multiple) * row_multiple;
        let blocks = n.div_ceil(COLUMNS);
        let n_padded = blocks * COLUMNS;
        let mut row_scales = vec![0f32; m];
        let mut row_offsets = vec![0f32; m];
        SCRATCH.with_borrow_mut(|scratch| {
            // Rows past `m` keep stale values: their products are never read.
            scratch.quantized.resize(m_padded * kp, 0);
            scratch.products.resize(m_padded * n_padded, 0);
            let quantized = &mut scratch.quantized[..m_padded * kp];
            let products = &mut scratch.products[..m_padded * n_padded];
            quantize_rows(x, k, kp, quantized, &mut row_scales, &mut row_offsets);
            if kernel == Kernel::Amx {
                // SAFETY: `Kernel::best` chose AMX only where `amx::available()`; quantized
                // holds m_padded (a multiple of 16) rows of kp (a multiple of 64) bytes, packed
                // `blocks` blocks, products m_padded rows of n_padded.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    amx::product(quantized, kp, &self.packed, blocks, products, n_padded)
                };
            } else {
                for first_block in (0..blocks).step_by(BLOCKS) {
                    let width = BLOCKS.min(blocks - first_block);
                    let b = &self.packed[first_block * COLUMNS * kp..][..width * COLUMNS * kp];
                    for first_row in (0..m).step_by(ROWS) {
                        let a = &quantized[first_row * kp..][..ROWS * kp];
                        let c = &mut products[first_row * n_padded + first_block * COLUMNS..];
                        kernel.run(a, b, kp, width, c, n_padded);
                    }
                }
            }
            dequantize_rows(
                products,
                n_padded,
                &row_scales,
                &row_offsets,
                Dequantize {
                    column_sums: &self.column_sums,
                    scales: &self.scales,
                    bias: &self.bias,
                    gelu,
                },
                &mut *out,
            );
        });
        // SAFETY: `dequantize_rows` wrote every element of `out` (m rows of n).
        unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
    }
}

/// Per-thread buffers of [`Int8Linear::rows`], kept between calls rather than allocated and
/// zero-filled for every task.
struct Scratch {
    quantized: Vec<u8>,
    products: Vec<i32>,
}

thread_local! {
    /// The intermediate rows of [`Int8Linear::forward_feed_forward`]'s current task: apart from
    /// [`Scratch`], which `rows` borrows while these rows are its input.
    static INTERMEDIATE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            quantized: Vec::new(),
            products: Vec::new(),
        })
    };
}

/// The per-channel scale with the least squared rounding error among clipping the row's
/// largest magnitude at 100%, 99%, ..., 80% (a lone outlier otherwise coarsens every weight).
fn weight_scale(row: &[f32]) -> f32 {
    let max = row.iter().fold(0f32, |m, &w| m.max(w.abs()));
    if max == 0.0 {
        return 1.0;
    }
    (80..=100)
        .map(|percent| max * percent as f32 / 100.0 / 127.0)
        .map(|scale| (rounding_error(row, scale), scale))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(max / 127.0, |(_, scale)| scale)
}

multiversion! {
    /// `levels[i] = clamp(round(row[i] / scale), ±127)` (NaN becomes −127).
    fn quantize_weights(row: &[f32], scale: f32, levels: &mut [i8]) {
        for (q, &w) in levels.iter_mut().zip(row) {
            #[allow(clippy::manual_clamp)] // clamp keeps NaN; max/min map it into range
            let level = (w / scale).round_ties_even().max(-127.0).min(127.0);
            // SAFETY: level is an integer in [-127, 127]; unlike `as`, which saturates and so
            // stays scalar, this vectorises.
            *q = unsafe { level.to_int_unchecked::<i32>() } as i8;
        }
    }
}

multiversion! {
    /// Σ (scale · clamp(round(w / scale), ±127) − w)² over `row`, in lane-wise partial sums.
    fn rounding_error(row: &[f32], scale: f32) -> f32 {
        let inverse = 1.0 / scale;
        let mut lanes = [0f32; 16];
        let chunks = row.chunks_exact(16);
        let tail: f32 = chunks
            .remainder()
            .iter()
            .map(|&w| ((w * inverse).round_ties_even().clamp(-127.0, 127.0) * scale - w).powi(2))
            .sum();
        for chunk in chunks {
            for (e, &w) in lanes.iter_mut().zip(chunk) {
                let q = (w * inverse).round_ties_even().clamp(-127.0, 127.0);
                *e += (q * scale - w) * (q * scale - w);
            }
        }
        tail + lanes.iter().sum::<f32>()
    }
}

multiversion! {
    /// Quantizes each row of `k` values in `x` to `q = round((v − min) / scale)` (u8) with
    /// `scale = (max − min) / 255`, so `v ≈ scale · q + min`, into rows of `kp` bytes of
    /// `quantized` (the padding bytes past `k` are set to 0).
    fn quantize_rows(
        x: &[f32],
        k: usize,
        kp: usize,
        quantized: &mut [u8],
        row_scales: &mut [f32],
        row_offsets: &mut [f32],
    ) {
        for (((row, q), scale), offset) in x
            .chunks_exact(k.max(1))
            .zip(quantized.chunks_exact_mut(kp.max(1)))
            .zip(row_scales.iter_mut())
            .zip(row_offsets.iter_mut())
        {
            let (min, max) = row
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            *offset = min;
            *scale = if max > min { (max - min) / 255.0 } else { 1.0 };
            let inverse = 1.0 / *scale;
            q[k..].fill(0);
            for (q, &v) in q.iter_mut().zip(row) {
                #[allow(clippy::manual_clamp)] // clamp keeps NaN; max/min map it into range
                let level = ((v - min) * inverse).round_ties_even().max(0.0).min(255.0);
                // SAFETY: level is an integer in [0, 255] (max/min also turn NaN into 0);
                // unlike `as`, which saturates and so stays scalar, this vectorises.
                *q = unsafe { level.to_int_unchecked::<i32>() } as u8;
            }
        }
    }
}

/// Per-output-channel terms of [`dequantize_rows`].
#[derive(Clone, Copy)]
struct Dequantize<'a> {
    column_sums: &'a [i32],
    scales: &'a [f32],
    bias: &'a [f32],
    /// Exact GELU ([`super::kernels::gelu_erf`]) on each value, in the same pass.
    gelu: bool,
}

multiversion! {
    /// `out[i, j] = (row_scale[i] · products[i, j] + row_offset[i] · Σ_k q[j, k]) · scale[j]
    /// + bias[j]`, since `x[i, k] ≈ row_scale[i] · a[i, k] + row_offset[i]` and
    /// `w[j, k] ≈ scale[j] · q[j, k]`; then GELU if `terms.gelu`.
    fn dequantize_rows<const FMA: bool>(
        products: &[i32],
        stride: usize,
        row_scales: &[f32],
        row_offsets: &[f32],
        terms: Dequantize<'_>,
        out: &mut [MaybeUninit<f32>],
    ) {
        let n = terms.bias.len();
        for (((out, products), &row_scale), &row_offset) in out
            .chunks_exact_mut(n)
            .zip(products.chunks(stride))
            .zip(row_scales)
            .zip(row_offsets)
        {
            let values = out
                .iter_mut()
                .zip(&products[..n])
                .zip(terms.column_sums.iter().zip(terms.scales).zip(terms.bias));
            // Two loops rather than a test per value, so that each vectorises.
            if terms.gelu {
                for ((o, &product), ((&sum, &scale), &bias)) in values {
                    let exact = mul_add::<FMA>(row_scale, product as f32, row_offset * sum as f32);
                    o.write(super::kernels::gelu_erf::<FMA>(mul_add::<FMA>(exact, scale, bias)));
                }
            } else {
                for ((o, &product), ((&sum, &scale), &bias)) in values {
                    let exact = mul_add::<FMA>(row_scale, product as f32, row_offset * sum as f32);
                    o.write(mul_add::<FMA>(exact, scale, bias));
                }
            }
        }
    }
}

/// The int8 matrix-multiply kernel this process uses, picked from the CPU at run time:
/// `"amx-int8"` (AMX tiles), `"avx512-vnni"` or `"scalar"`. `STANDPOINT_NO_AMX` set in the
/// environment rules out AMX.
///
/// ```
/// let kernel = standpoint::cpu::int8::kernel_name();
/// assert!(["amx-int8", "avx512-vnni", "scalar"].contains(&kernel));
/// ```
pub fn kernel_name() -> &'static str {
    match Kernel::best() {
        Kernel::Amx => "amx-int8",
        #[cfg(target_arch = "x86_64")]
        Kernel::Vnni => "avx512-vnni",
        Kernel::Scalar => "scalar",
    }
}

/// Which integer product kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Vnni,
    /// AMX tiles (`tdpbusd`: a 16 × 64 by 64 × 16 product per instruction); the same
    /// integers as the others.
    Amx,
}

impl Kernel {
    fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        if amx::available() {
            return Kernel::Amx;
        }
        Self::best_without_amx()
    }

    fn best_without_amx() -> Self {
        #[cfg(target_arch = "x86_64")]
        if super::features::detected().avx512_vnni {
            return Kernel::Vnni;
        }
        Kernel::Scalar
    }

    /// `c[r, col] = Σ_k a[r, k] · b[k, col]` for [`ROWS`] rows of `a` (u8, `kp` per row) and
    /// `blocks` packed column blocks of `b`; rows of `c` are `stride` apart.
    fn run(self, a: &[u8], b: &[i8], kp: usize, blocks: usize, c: &mut [i32], stride: usize) {
        assert!(a.len() >= ROWS * kp && b.len() >= blocks * COLUMNS * kp && kp.is_multiple_of(4));
        assert!(blocks <= BLOCKS && c.len() >= (ROWS - 1) * stride + blocks * COLUMNS);
        match self {
            Kernel::Scalar | Kernel::Amx => scalar_kernel(a, b, kp, blocks, c, stride),
            // SAFETY: `best` chose this kernel only where the CPU has AVX-512F and VNNI; the
            // sizes were checked above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe {
                match blocks {
                    4 => vnni_kernel::<4>(a, b, kp, c, stride),
                    3 => vnni_kernel::<3>(a, b, kp, c, stride),
                    2 => vnni_kernel::<2>(a, b, kp, c, stride),
                    _ => vnni_kernel::<1>(a, b, kp, c, stride),
                }
            },
        }
    }
}

fn scalar_kernel(a: &[u8], b: &[i8], kp: usize, blocks: usize, c: &mut [i32], stride: usize) {
    for r in 0..ROWS {
        let row = &a[r * kp..][..kp];
        for block in 0..blocks {
            let packed = &b[block * COLUMNS * kp..][..COLUMNS * kp];
            for column in 0..COLUMNS {
                let mut sum = 0i32;
                for (k, &v) in row.iter().enumerate() {
                    let w = packed[((k / 4) * COLUMNS + column) * 4 + k % 4];
                    sum += i32::from(v) * i32::from(w);
                }
                c[r * stride + block * COLUMNS + column] = sum;
            }
        }
    }
}

/// The VNNI micro-kernel: [`ROWS`] rows × `B` blocks of 16 columns, accumulated in registers.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 VNNI, and the sizes must pass the checks of
/// [`Kernel::run`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn vnni_kernel<const B: usize>(a: &[u8], b: &[i8], kp: usize, c: &mut [i32], stride: usize) {
    use std::arch::x86_64::*;
    let mut sums = [[_mm512_setzero_si512(); B]; ROWS];
    let block_stride = COLUMNS * kp;
    for step in 0..kp / 4 {
        let mut weights = [_mm512_setzero_si512(); B];
        for (block, w) in weights.iter_mut().enumerate() {
            // SAFETY: 64 bytes at block * 16 * kp + step * 64, inside `b` (checked by the caller).
            *w = unsafe {
                _mm512_loadu_si512(b.as_ptr().add(block * block_stride + step * 64).cast())
            };
        }
        for (r, sums) in sums.iter_mut().enumerate() {
            // SAFETY: four bytes of row r at step * 4 + 3 < kp, inside `a`.
            let four = unsafe {
                std::ptr::read_unaligned(a.as_ptr().add(r * kp + step * 4).cast::<i32>())
            };
            let activations = _mm512_set1_epi32(four);
            for (sum, &w) in sums.iter_mut().zip(&weights) {
                *sum = _mm512_dpbusd_epi32(*sum, activations, w);
            }
        }
    }
    for (r, sums) in sums.iter().enumerate() {
        for (block, sum) in sums.iter().enumerate() {
            // SAFETY: 16 i32 at r * stride + block * 16, inside `c` (checked by the caller).
            unsafe {
                _mm512_storeu_si512(
                    c.as_mut_ptr().add(r * stride + block * COLUMNS).cast(),
                    *sum,
                )
            };
        }
    }
}

/// AMX tile products through inline assembly (the intrinsics are not stable Rust yet).
#[cfg(target_arch = "x86_64")]
mod amx {
    use std::arch::asm;
    use std::sync::OnceLock;

    /// `ldtilecfg`'s 64-byte operand (palette 1).
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        bytes_per_row: [u16; 16],
        rows: [u8; 16],
    }

    /// Whether the CPU has AMX-TILE and AMX-INT8 and the OS grants this process the tile
    /// registers (Linux asks each process to request them).
    pub(super) fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            if std::env::var_os("STANDPOINT_NO_AMX").is_some() {
                return false;
            }
            crate::cpu::features::detected().amx_int8 && request_tile_data()
        })
    }

    #[cfg(target_os = "linux")]
    fn request_tile_data() -> bool {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM) only changes which state the kernel saves
        // for this process; it fails cleanly where unsupported.
        unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) == 0
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn request_tile_data() -> bool {
        false
    }

    /// `c[r, col] = Σ_k a[r, k] · b[k, col]` for every row of `a` (u8 rows of `kp` bytes, a
    /// multiple of 16 rows) and `blocks` packed blocks of 16 columns of `b` (`kp / 4` rows of
    /// 64 bytes each, the layout `tdpbusd` reads); rows of `c` are `stride` apart.
    ///
    /// Pairs of column blocks are the outer loop, so each part of `b` is read once (at small
    /// batches the weights come from L3 and rows from L1); 32 rows at a time, then 16.
    ///
    /// # Safety
    /// [`available`] must have returned true; `kp` must be a multiple of 64, `a.len()` a
    /// multiple of `16 · kp`, `b.len() >= blocks · 16 · kp` and
    /// `c.len() >= (a.len() / kp) · stride` with `stride >= blocks · 16`.
    pub(super) unsafe fn product(
        a: &[u8],
        kp: usize,
        b: &[i8],
        blocks: usize,
        c: &mut [i32],
        stride: usize,
    ) {
        let rows = a.len() / kp.max(1);
        assert!(kp.is_multiple_of(64) && rows.is_multiple_of(16) && rows * kp == a.len());
        assert!(b.len() >= blocks * 16 * kp && stride >= blocks * 16 && c.len() >= rows * stride);
        let mut config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        // tmm0-3: 16 × 16 i32 sums; tmm4-5: 16 rows × 64 bytes of a; tmm6-7: 16 × 64 of b.
        for tile in 0..8 {
            config.bytes_per_row[tile] = 64;
            config.rows[tile] = 16;
        }
        let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        let (a_stride, b_stride, c_stride) = (kp, 64usize, stride * 4);
        // SAFETY: the tile loads read 16 rows of 64 bytes at the given strides and the
        // stores write 16 rows of 16 i32, all inside the slices checked above.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &config as *const TileConfig, options(nostack));
            for block in (0..blocks).step_by(2) {
                // An odd last block is multiplied twice into the same columns; one store.
                let pair = block + 1 < blocks;
                let b0 = b.add(block * 16 * kp);
                let b1 = b.add((block + pair as usize) * 16 * kp);
                let mut row = 0;
                while row < rows {
                    let two = row + 32 <= rows;
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack, nomem)
                    );
                    for depth in (0..kp).step_by(64) {
                        let a0 = a.add(row * kp + depth);
                        let (b0, b1) = (b0.add(depth * 16), b1.add(depth * 16));
                        if two {
                            asm!(
                                "tileloadd tmm4, [{a0} + {sa}*1]",
                                "tileloadd tmm5, [{a1} + {sa}*1]",
                                "tileloadd tmm6, [{b0} + {sb}*1]",
                                "tileloadd tmm7, [{b1} + {sb}*1]",
                                "tdpbusd tmm0, tmm4, tmm6",
                                "tdpbusd tmm1, tmm4, tmm7",
                                "tdpbusd tmm2, tmm5, tmm6",
                                "tdpbusd tmm3, tmm5, tmm7",
                                a0 = in(reg) a0,
                                a1 = in(reg) a0.add(16 * kp),
                                b0 = in(reg) b0,
                                b1 = in(reg) b1,
                                sa = in(reg) a_stride,
                                sb = in(reg) b_stride,
                                options(nostack, readonly),
                            );
                        } else {
                            asm!(
                                "tileloadd tmm4, [{a0} + {sa}*1]",
                                "tileloadd tmm6, [{b0} + {sb}*1]",
                                "tileloadd tmm7, [{b1} + {sb}*1]",
                                "tdpbusd tmm0, tmm4, tmm6",
                                "tdpbusd tmm1, tmm4, tmm7",
                                a0 = in(reg) a0,
                                b0 = in(reg) b0,
                                b1 = in(reg) b1,
                                sa = in(reg) a_stride,
                                sb = in(reg) b_stride,
                                options(nostack, readonly),
                            );
                        }
                    }
                    let c0 = c.add(row * stride + block * 16);
                    asm!(
                        "tilestored [{c0} + {sc}*1], tmm0",
                        c0 = in(reg) c0,
                        sc = in(reg) c_stride,
                        options(nostack),
                    );
                    if pair {
                        asm!(
                            "tilestored [{c0} + {sc}*1], tmm1",
                            c0 = in(reg) c0.add(16),
                            sc = in(reg) c_stride,
                            options(nostack),
                        );
                    }
                    if two {
                        let c1 = c0.add(16 * stride);
                        asm!(
                            "tilestored [{c1} + {sc}*1], tmm2",
                            c1 = in(reg) c1,
                            sc = in(reg) c_stride,
                            options(nostack),
                        );
                        if pair {
                            asm!(
                                "tilestored [{c1} + {sc}*1], tmm3",
                                c1 = in(reg) c1.add(16),
                                sc = in(reg) c_stride,
                                options(nostack),
                            );
                        }
                    }
                    row += if two { 32 } else { 16 };
                }
            }
            asm!("tilerelease", options(nostack, nomem));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_support::{irregular, layer_operands};

    fn reference(x: &[f32], w: &[f32], b: &[f32], n: usize, k: usize) -> Vec<f32> {
        let m = x.len() / k;
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = b[j] + (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum::<f32>();
            }
        }
        out
    }

    #[test]
    fn close_to_the_f32_product_on_odd_shapes() {
        // Sizes off every block: rows (6, 48), columns (16, 64), depth (4).
        for (m, n, k) in [
            (1usize, 1usize, 1usize),
            (7, 5, 6),
            (53, 70, 37),
            (100, 64, 384),
        ] {
            let (x, w, b) = layer_operands(m, n, k, 0.0);
            let want = reference(&x, &w, &b, n, k);
            let got = Int8Linear::new(&w, &b, n, k).forward(&x);
            assert_eq!(got.len(), want.len());
            // Per-product error ≤ half a step of each factor: bound it by the sum of magnitudes.
            let bound = 0.2 * 4.0 * k as f32 * (1.0 / 127.0);
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                assert!((w - g).abs() <= bound, "{m}x{n}x{k}[{i}]: {w} vs {g}");
            }
        }
    }

    #[test]
    fn vector_tile_and_scalar_kernels_agree_exactly() {
        let kernels = [Kernel::best_without_amx(), Kernel::best()];
        if kernels == [Kernel::Scalar; 2] {
            eprintln!("no AVX-512 VNNI or AMX here: only the scalar kernel runs");
            return;
        }
        // Rows off the 6-, 16- and 32-row blocks and the 96-row task, an odd number of column
        // blocks (AMX pairs them), depths off 64.
        for (m, n, k) in [
            (7usize, 5usize, 6usize),
            (53, 70, 37),
            (61, 200, 96),
            (130, 48, 384),
        ] {
            let (x, w, b) = layer_operands(m, n, k, 3.0);
            let layer = Int8Linear::new(&w, &b, n, k);
            let want = layer.forward_with(&x, Kernel::Scalar, false);
            for kernel in kernels {
                assert_eq!(
                    layer.forward_with(&x, kernel, false),
                    want,
                    "{m}x{n}x{k} {kernel:?}"
                );
            }
        }
    }

    #[test]
    fn zero_rows_and_zero_weights_give_the_bias() {
        let layer = Int8Linear::new(&[0.0; 12], &[1.5, -2.0, 0.25], 3, 4);
        assert_eq!(
            layer.forward(&[0.0; 8]),
            vec![1.5, -2.0, 0.25, 1.5, -2.0, 0.25]
        );
        assert!(layer.forward(&[]).is_empty());
    }

    #[test]
    fn feed_forward_equals_the_two_layers_in_turn() {
        // Rows over several tasks and off every block size, odd widths, GELU in between; every
        // kernel, and the same values whether the intermediate rows are kept per task or not.
        for (m, k, inner, n) in [
            (1usize, 5usize, 7usize, 3usize),
            (130, 24, 70, 17),
            (200, 64, 256, 64),
        ] {
            let x = irregular(m * k, 1.0, 6.0);
            let up = Int8Linear::new(
                &irregular(inner * k, 2.0, 0.5),
                &irregular(inner, 3.0, 1.0),
                inner,
                k,
            );
            let down = Int8Linear::new(
                &irregular(n * inner, 4.0, 0.5),
                &irregular(n, 5.0, 1.0),
                n,
                inner,
            );
            for kernel in [Kernel::Scalar, Kernel::best_without_amx(), Kernel::best()] {
                let hidden = up.forward_with(&x, kernel, true);
                let want = down.forward_with(&hidden, kernel, false);
                assert_eq!(
                    up.feed_forward_with(&down, &x, kernel),
                    want,
                    "{m}x{k}x{inner}x{n} {kernel:?}"
                );
                let mut gelu = up.forward_with(&x, kernel, false);
                crate::cpu::kernels::gelu_erf_in_place(&mut gelu);
                assert_eq!(hidden, gelu, "GELU in the scaling pass");
            }
        }
    }
}
