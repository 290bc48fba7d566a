//! Running: the planned steps over pooled buffers, convolutions as implicit GEMMs.

use super::{Conv, Net, NetError, R, Step, err};
use crate::gemm::{self, Block, MR, NR};

impl Net {
    /// Runs the network on a `h × w` single-channel input.
    pub fn run(&self, input: &[f32], out: &mut [f32]) -> R<()> {
        let si = self.specs[self.input];
        if input.len() != si.h * si.w || out.len() != self.fc_out {
            return err("input or output length does not match the network");
        }
        let mut bufs = match self.pool.lock() {
            Ok(mut p) => p.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        }
        .unwrap_or_else(|| self.slot_len.iter().map(|&n| vec![0f32; n]).collect());
        let r = self.run_in(&mut bufs, input, out);
        match self.pool.lock() {
            Ok(mut p) => p.push(bufs),
            Err(poisoned) => poisoned.into_inner().push(bufs),
        }
        r
    }

    fn run_in(&self, bufs: &mut [Vec<f32>], input: &[f32], out: &mut [f32]) -> R<()> {
        let si = self.specs[self.input];
        {
            let buf = &mut bufs[self.slot[self.input]];
            for (y, row) in input.chunks_exact(si.w).enumerate() {
                let at = si.at(y, 0);
                buf[at..at + si.w].copy_from_slice(row);
            }
        }
        for step in &self.steps {
            match step {
                Step::Conv(c) => self.conv(bufs, c)?,
                &Step::MaxPool { src, dst, k, s } => self.pool_step(bufs, src, dst, k, s, false),
                &Step::AvgPool { src, dst, k, s } => self.pool_step(bufs, src, dst, k, s, true),
                &Step::Gap { src, dst } => {
                    let (ss, sd) = (self.specs[src], self.specs[dst]);
                    let mut acc = vec![0f32; ss.c];
                    let from = &bufs[self.slot[src]];
                    for y in 0..ss.h {
                        for x in 0..ss.w {
                            let at = ss.at(y, x);
                            for (a, v) in acc.iter_mut().zip(&from[at..at + ss.c]) {
                                *a += v;
                            }
                        }
                    }
                    let inv = 1.0 / (ss.h * ss.w) as f32;
                    let to = &mut bufs[self.slot[dst]];
                    let at = sd.at(0, 0);
                    for (o, a) in to[at..at + sd.c].iter_mut().zip(&acc) {
                        *o = a * inv;
                    }
                }
            }
        }
        let sf = self.specs[self.features];
        let at = sf.at(0, 0);
        let v = &bufs[self.slot[self.features]][at..at + sf.c];
        out.fill(0.0);
        for (x, row) in v.iter().zip(self.fc.chunks_exact(self.fc_out)) {
            for (o, w) in out.iter_mut().zip(row) {
                *o += x * w;
            }
        }
        Ok(())
    }

    fn pool_step(
        &self,
        bufs: &mut [Vec<f32>],
        src: usize,
        dst: usize,
        k: usize,
        s: usize,
        avg: bool,
    ) {
        let (ss, sd) = (self.specs[src], self.specs[dst]);
        let mut to = std::mem::take(&mut bufs[self.slot[dst]]);
        let from = &bufs[self.slot[src]];
        let c = ss.c;
        let inv = 1.0 / (k * k) as f32;
        for y in 0..sd.h {
            for x in 0..sd.w {
                let o = sd.at(y, x);
                let o = &mut to[o..o + c];
                let first = ss.at(y * s, x * s);
                o.copy_from_slice(&from[first..first + c]);
                for ky in 0..k {
                    for kx in 0..k {
                        if ky == 0 && kx == 0 {
                            continue;
                        }
                        let i = ss.at(y * s + ky, x * s + kx);
                        for (a, v) in o.iter_mut().zip(&from[i..i + c]) {
                            *a = if avg { *a + v } else { a.max(*v) };
                        }
                    }
                }
                if avg {
                    for a in o.iter_mut() {
                        *a *= inv;
                    }
                }
            }
        }
        bufs[self.slot[dst]] = to;
    }

    fn conv(&self, bufs: &mut [Vec<f32>], c: &Conv) -> R<()> {
        let mut to = std::mem::take(&mut bufs[self.slot[c.dst]]);
        let from = &bufs[self.slot[c.src]];
        let panel = c.taps.len() * c.cin * NR;
        let n = c.a_rows.len();
        // Check the extreme block once; every other block lies within it (rows and outputs
        // are increasing, panels are the same size).
        let (Some(&a_max), Some(&o_max)) = (c.a_rows.last(), c.o_rows.last()) else {
            return err("empty convolution");
        };
        let probe = Block {
            a_rows: &[a_max],
            taps: &c.taps,
            k: c.cin,
            o_rows: &[o_max + c.cout - NR],
            relu: c.relu,
        };
        let last_panel = c.packed.get((c.cout / NR - 1) * panel..).unwrap_or(&[]);
        let last_bias = c.bias.get(c.cout - NR..).unwrap_or(&[]);
        gemm::check(&probe, from, last_panel, last_bias, &to)
            .map_err(|e| NetError(format!("convolution geometry: {}", e.0)))?;
        if c.packed.len() != panel * (c.cout / NR)
            || c.a_rows.windows(2).any(|w| w[0] > w[1])
            || c.o_rows.windows(2).any(|w| w[0] > w[1])
        {
            return err("convolution geometry");
        }
        for p in 0..c.cout / NR {
            let b = &c.packed[p * panel..(p + 1) * panel];
            let bias = &c.bias[p * NR..(p + 1) * NR];
            let mut o_rows = [0usize; MR];
            for q in (0..n).step_by(MR) {
                let r = MR.min(n - q);
                for (o, &v) in o_rows.iter_mut().zip(&c.o_rows[q..q + r]) {
                    *o = v + p * NR;
                }
                let g = Block {
                    a_rows: &c.a_rows[q..q + r],
                    taps: &c.taps,
                    k: c.cin,
                    o_rows: &o_rows[..r],
                    relu: c.relu,
                };
                // SAFETY: `check` accepted the largest row start, tap, output row and panel
                // above; every block here reads and writes at or below those.
                unsafe { gemm::block_unchecked(self.isa, &g, from, b, bias, &mut to) };
            }
        }
        if let Some(res) = c.residual {
            let (sd, sr) = (self.specs[c.dst], self.specs[res]);
            let from = &bufs[self.slot[res]];
            for y in 0..sd.h {
                for x in 0..sd.w {
                    let o = sd.at(y, x);
                    let o = &mut to[o..o + sd.c];
                    if y >= c.oh || x >= c.ow {
                        o.fill(0.0);
                    } else {
                        o[c.cout..].fill(0.0);
                    }
                    if y < sr.h && x < sr.w {
                        let i = sr.at(y, x);
                        for (a, v) in o.iter_mut().zip(&from[i..i + sr.c]) {
                            *a += v;
                        }
                    }
                    for a in o.iter_mut() {
                        *a = a.max(0.0);
                    }
                }
            }
        }
        bufs[self.slot[c.dst]] = to;
        Ok(())
    }
}
