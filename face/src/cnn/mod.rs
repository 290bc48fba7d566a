//! A small CNN executor for the graph `aloha-models` writes for dlib's ResNet (see
//! [`crate::convert::resnet_to_onnx`]): Conv (with ReLU, or with a residual Add + ReLU fused
//! into it), MaxPool, AveragePool, zero Pad before an Add, GlobalAveragePool, Flatten, MatMul.
//! Any other node, attribute or pattern is refused at load time.
//!
//! Activations are stored pixel-major (HWC) with a zero border as wide as the padding of the
//! convolutions that read them, so a convolution is an implicit GEMM ([`crate::gemm`]) with no
//! im2col copy; kernel taps that only ever see the zero border are dropped at load time (exact:
//! they add zeros). Buffers are planned once and reused across calls.

mod load;
mod run;

use crate::gemm::Isa;
use std::sync::Mutex;

/// Why a graph cannot be loaded or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NetError(pub String);

type R<T> = std::result::Result<T, NetError>;

fn err<T>(why: impl Into<String>) -> R<T> {
    Err(NetError(why.into()))
}

/// Shape and storage of one activation: `c` channels, `h × w` pixels, inside a zero border of
/// `border` pixels (top/left) and `border + extra` (bottom/right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spec {
    c: usize,
    h: usize,
    w: usize,
    border: usize,
    extra: usize,
}

impl Spec {
    fn hp(&self) -> usize {
        self.h + 2 * self.border + self.extra
    }
    fn wp(&self) -> usize {
        self.w + 2 * self.border + self.extra
    }
    fn len(&self) -> usize {
        self.hp() * self.wp() * self.c
    }
    /// Index of channel 0 of interior pixel (y, x).
    fn at(&self, y: usize, x: usize) -> usize {
        ((y + self.border) * self.wp() + x + self.border) * self.c
    }
}

#[derive(Debug)]
struct Conv {
    src: usize,
    dst: usize,
    cin: usize,
    cout: usize,
    /// Output extent of the convolution itself (the destination may be larger when a
    /// residual Add zero-pads it).
    oh: usize,
    ow: usize,
    relu: bool,
    residual: Option<usize>,
    stride: usize,
    pad: usize,
    /// Kernel positions `(ky, kx)` that can see real pixels.
    kept: Vec<(usize, usize)>,
    /// Offsets of the kept taps from a row's start, and each output pixel's input/output start
    /// (filled in by [`Net::finish`] once every tensor's border is known).
    taps: Vec<usize>,
    a_rows: Vec<usize>,
    o_rows: Vec<usize>,
    /// `cout / NR` panels of `taps · cin · NR` weights.
    packed: Vec<f32>,
    bias: Vec<f32>,
}

#[derive(Debug)]
enum Step {
    Conv(Box<Conv>),
    MaxPool {
        src: usize,
        dst: usize,
        k: usize,
        s: usize,
    },
    AvgPool {
        src: usize,
        dst: usize,
        k: usize,
        s: usize,
    },
    /// Global average pool into the `c`-vector tensor `dst`.
    Gap {
        src: usize,
        dst: usize,
    },
}

/// A loaded network, ready to run on one `1 × 1 × h × w` input.
pub struct Net {
    specs: Vec<Spec>,
    /// Buffer slot of each tensor.
    slot: Vec<usize>,
    slot_len: Vec<usize>,
    steps: Vec<Step>,
    input: usize,
    features: usize,
    /// Final matrix `[fc_in, fc_out]`, row-major.
    fc: Vec<f32>,
    fc_out: usize,
    isa: Isa,
    pool: Mutex<Vec<Vec<Vec<f32>>>>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("steps", &self.steps.len())
            .field("buffers", &self.slot_len.len())
            .field("isa", &self.isa)
            .finish()
    }
}

impl Net {
    /// Input height and width.
    pub fn input_size(&self) -> (usize, usize) {
        let s = self.specs[self.input];
        (s.h, s.w)
    }

    /// Output length.
    pub fn output_len(&self) -> usize {
        self.fc_out
    }

    /// Multiply-adds per run (kept taps only), for the bench's throughput figure.
    pub fn macs(&self) -> usize {
        let convs: usize = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Conv(c) => c.a_rows.len() * c.taps.len() * c.cin * c.cout,
                _ => 0,
            })
            .sum();
        convs + self.fc.len()
    }

    /// The kernel in use (`Avx2Fma` or `Portable`).
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Forces the portable kernels (tests).
    pub fn set_portable(&mut self) {
        self.isa = Isa::PORTABLE;
    }
}
