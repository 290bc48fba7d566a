//! A native reader for dlib's `.dat` serialisation (no C++, no Python).
//!
//! dlib writes integers as a length byte (low nibble = number of little-endian bytes that
//! follow, bit 7 = negative) plus the bytes; a float as `(int64 mantissa, int16 exponent)`
//! (value = mantissa · 2^exponent); strings and vectors as a length then the items; matrices as
//! `(-rows, -cols)` then the items; DNN tensors (version 2) as `(n, k, nr, nc)` then raw
//! little-endian `f32`. A DNN is written outermost layer first for the wrappers, then every
//! layer's details from the input to the output, each starting with its tag string (`con_4`,
//! `affine_`, …). See `docs/face-engine.md`.

/// A parse failure: what was expected and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {what}")]
pub struct DatError {
    /// Byte offset in the file.
    pub offset: usize,
    /// What went wrong.
    pub what: String,
}

type R<T> = std::result::Result<T, DatError>;

/// Sequential reader over a dlib serialisation.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at byte 0.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Current byte offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    fn err<T>(&self, what: impl Into<String>) -> R<T> {
        Err(DatError {
            offset: self.pos,
            what: what.into(),
        })
    }

    fn bytes(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => self.err(format!("truncated: wanted {n} more bytes")),
        }
    }

    /// A signed integer (`pack_int`).
    pub fn int(&mut self) -> R<i64> {
        let head = self.bytes(1)?[0];
        let size = usize::from(head & 0x0f);
        if size > 8 || head & 0x70 != 0 {
            return self.err(format!("bad integer header 0x{head:02x}"));
        }
        let mut v: u64 = 0;
        for (i, b) in self.bytes(size)?.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        let v = i64::try_from(v).or_else(|_| self.err("integer overflow"))?;
        Ok(if head & 0x80 != 0 { -v } else { v })
    }

    /// A non-negative integer that must fit in `max`.
    pub fn uint(&mut self, max: usize) -> R<usize> {
        let v = self.int()?;
        match usize::try_from(v) {
            Ok(u) if u <= max => Ok(u),
            _ => self.err(format!("value {v} out of range 0..={max}")),
        }
    }

    /// A float (`float_details`: mantissa, exponent).
    pub fn float(&mut self) -> R<f64> {
        let m = self.int()?;
        let e = self.int()?;
        Ok(match e {
            32000 => f64::INFINITY,
            32001 => f64::NEG_INFINITY,
            32002 => f64::NAN,
            e if (-2000..=2000).contains(&e) => (m as f64) * 2f64.powi(e as i32),
            _ => return self.err(format!("bad float exponent {e}")),
        })
    }

    /// A string (length + bytes).
    pub fn string(&mut self) -> R<String> {
        let n = self.uint(4096)?;
        let b = self.bytes(n)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    /// A column vector `matrix<float,0,1>` (also accepts the old positive-size form).
    pub fn column(&mut self) -> R<Vec<f32>> {
        let nr = self.int()?.unsigned_abs();
        let nc = self.int()?.unsigned_abs();
        let n = nr.checked_mul(nc).filter(|&n| n <= 1 << 20);
        let Some(n) = n else {
            return self.err("matrix too large");
        };
        (0..n).map(|_| self.float().map(|v| v as f32)).collect()
    }

    /// A DNN tensor (version 2): returns `(n, k, nr, nc)` and the data.
    pub fn tensor(&mut self) -> R<([usize; 4], Vec<f32>)> {
        let version = self.int()?;
        if version != 2 {
            return self.err(format!("unsupported tensor version {version}"));
        }
        let mut dims = [0usize; 4];
        for d in &mut dims {
            *d = self.uint(1 << 24)?;
        }
        let count = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&c| c <= 1 << 26);
        let Some(count) = count else {
            return self.err("tensor too large");
        };
        let raw = self.bytes(count * 4)?;
        let data = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((dims, data))
    }

    /// Moves to just after the next `(len, tag)` string whose text is one of `tags`, returning
    /// the tag; `None` at the end of the data. Only used across the small gaps between layers.
    pub fn next_tag(&mut self, tags: &[&'static str]) -> Option<&'static str> {
        let data = self.data;
        let mut i = self.pos;
        while i + 2 <= data.len() {
            if data[i] == 1 {
                let n = usize::from(data[i + 1]);
                for t in tags {
                    if t.len() == n && data.get(i + 2..i + 2 + n) == Some(t.as_bytes()) {
                        self.pos = i + 2 + n;
                        return Some(t);
                    }
                }
            }
            i += 1;
        }
        None
    }
}

/// One split of a regression tree: compare two feature pixels.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// First feature pixel.
    pub idx1: u32,
    /// Second feature pixel.
    pub idx2: u32,
    /// Go left when `pixel[idx1] - pixel[idx2] > thresh`.
    pub thresh: f32,
}

/// A complete binary regression tree (dlib `impl::regression_tree`).
#[derive(Debug, Clone)]
pub struct Tree {
    /// Internal nodes in breadth-first order.
    pub splits: Vec<Split>,
    /// Leaf shape increments, `2 × parts` floats per leaf, leaves one after another.
    pub leaves: Vec<f32>,
}

/// dlib's `shape_predictor` (Kazemi & Sullivan cascade of regression forests).
#[derive(Debug, Clone)]
pub struct ShapePredictorModel {
    /// The mean shape in the unit square, `x0 y0 x1 y1 …`.
    pub initial_shape: Vec<f32>,
    /// One forest per cascade level.
    pub forests: Vec<Vec<Tree>>,
    /// Per level: the anchor part of each feature pixel.
    pub anchor_idx: Vec<Vec<u32>>,
    /// Per level: the offset of each feature pixel from its anchor, in the unit square.
    pub deltas: Vec<Vec<[f32; 2]>>,
}

impl ShapePredictorModel {
    /// Parses a `shape_predictor` `.dat` file's bytes and checks its internal consistency.
    pub fn parse(data: &[u8]) -> R<Self> {
        let mut r = Reader::new(data);
        let version = r.int()?;
        if version != 1 {
            return r.err(format!("unsupported shape_predictor version {version}"));
        }
        let initial_shape = r.column()?;
        let parts2 = initial_shape.len();
        if parts2 == 0 || parts2 % 2 != 0 {
            return r.err("initial shape has an odd or zero length");
        }
        let levels = r.uint(1000)?;
        let mut forests = Vec::with_capacity(levels);
        for _ in 0..levels {
            let ntrees = r.uint(100_000)?;
            let mut trees = Vec::with_capacity(ntrees);
            for _ in 0..ntrees {
                let nsplits = r.uint(1 << 16)?;
                let mut splits = Vec::with_capacity(nsplits);
                for _ in 0..nsplits {
                    let idx1 = r.uint(u32::MAX as usize)? as u32;
                    let idx2 = r.uint(u32::MAX as usize)? as u32;
                    let thresh = r.float()? as f32;
                    splits.push(Split { idx1, idx2, thresh });
                }
                let nleaves = r.uint(1 << 17)?;
                if nleaves != nsplits + 1 {
                    return r.err("tree has a wrong number of leaves");
                }
                let mut leaves = Vec::with_capacity(nleaves * parts2);
                for _ in 0..nleaves {
                    let l = r.column()?;
                    if l.len() != parts2 {
                        return r.err("leaf of the wrong size");
                    }
                    leaves.extend_from_slice(&l);
                }
                trees.push(Tree { splits, leaves });
            }
            forests.push(trees);
        }
        let n = r.uint(1000)?;
        if n != levels {
            return r.err("anchor table does not match the cascade");
        }
        let mut anchor_idx = Vec::with_capacity(n);
        for _ in 0..n {
            let m = r.uint(1 << 20)?;
            let v = (0..m)
                .map(|_| r.uint(parts2 / 2 - 1).map(|x| x as u32))
                .collect::<R<Vec<u32>>>()?;
            anchor_idx.push(v);
        }
        let n = r.uint(1000)?;
        if n != levels {
            return r.err("delta table does not match the cascade");
        }
        let mut deltas = Vec::with_capacity(n);
        for anchors in &anchor_idx {
            let m = r.uint(1 << 20)?;
            if m != anchors.len() {
                return r.err("delta and anchor tables differ in length");
            }
            let mut v = Vec::with_capacity(m);
            for _ in 0..m {
                let x = r.float()? as f32;
                let y = r.float()? as f32;
                v.push([x, y]);
            }
            deltas.push(v);
        }
        for (level, trees) in forests.iter().enumerate() {
            let npix = anchor_idx[level].len() as u32;
            for t in trees {
                if t.splits.iter().any(|s| s.idx1 >= npix || s.idx2 >= npix) {
                    return Err(DatError {
                        offset: 0,
                        what: format!("a split at level {level} refers to a missing feature pixel"),
                    });
                }
            }
        }
        Ok(Self {
            initial_shape,
            forests,
            anchor_idx,
            deltas,
        })
    }

    /// Number of landmarks.
    pub fn parts(&self) -> usize {
        self.initial_shape.len() / 2
    }
}

/// A convolution (batch-norm affine folded in later) from a dlib `con_` layer.
#[derive(Debug, Clone)]
pub struct Conv {
    /// Output channels.
    pub out: usize,
    /// Input channels.
    pub inp: usize,
    /// Kernel size (square).
    pub k: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding (both axes).
    pub pad: usize,
    /// Weights, `out × inp × k × k`.
    pub w: Vec<f32>,
    /// Bias, `out`.
    pub b: Vec<f32>,
}

/// A per-channel `affine_` layer (dlib's inference-time batch norm): `y = gamma·x + beta`.
#[derive(Debug, Clone)]
pub struct Affine {
    /// Scale per channel.
    pub gamma: Vec<f32>,
    /// Shift per channel.
    pub beta: Vec<f32>,
}

/// The weights of `dlib_face_recognition_resnet_model_v1`, in forward order.
#[derive(Debug, Clone)]
pub struct ResnetModel {
    /// Per-channel mean subtracted from the RGB input (then divided by 256).
    pub mean_rgb: [f32; 3],
    /// Input size (150).
    pub input_size: usize,
    /// Convolutions in forward order, each followed by its affine.
    pub convs: Vec<(Conv, Affine)>,
    /// Final fully connected layer, `inputs × outputs` row-major (dlib's layout).
    pub fc: Vec<f32>,
    /// FC inputs.
    pub fc_in: usize,
    /// FC outputs (128).
    pub fc_out: usize,
    /// Layer tags in file order (for checking the topology).
    pub tags: Vec<&'static str>,
}

const RESNET_TAGS: &[&str] = &[
    "input_rgb_image_sized",
    "con_4",
    "con_5",
    "affine_",
    "relu_",
    "max_pool_2",
    "avg_pool_2",
    "add_prev_",
    "fc_2",
    "fc_no_bias_",
];

impl ResnetModel {
    /// Parses `dlib_face_recognition_resnet_model_v1.dat` and checks that it has the expected
    /// topology (29 convolutions, each followed by an affine, then a 256→128 FC).
    pub fn parse(data: &[u8]) -> R<Self> {
        let mut r = Reader::new(data);
        let head = r.int()?;
        let loss = r.string()?;
        if head != 1 || !loss.starts_with("loss_metric") {
            return r.err(format!("not a dlib metric network (found {loss:?})"));
        }
        let mut mean_rgb = [0f32; 3];
        let mut input_size = 0;
        let mut convs: Vec<(Conv, Affine)> = Vec::new();
        let mut pending: Option<Conv> = None;
        let mut fc = None;
        let mut tags = Vec::new();
        while let Some(tag) = r.next_tag(RESNET_TAGS) {
            tags.push(tag);
            match tag {
                "input_rgb_image_sized" => {
                    for m in &mut mean_rgb {
                        *m = r.float()? as f32;
                    }
                    let nr = r.uint(4096)?;
                    let nc = r.uint(4096)?;
                    if nr != nc {
                        return r.err("non-square input");
                    }
                    input_size = nr;
                }
                "con_4" | "con_5" => {
                    let (dims, params) = r.tensor()?;
                    let out = r.uint(1 << 16)?;
                    let kh = r.uint(64)?;
                    let kw = r.uint(64)?;
                    let sy = r.uint(64)?;
                    let sx = r.uint(64)?;
                    let py = r.uint(64)?;
                    let px = r.uint(64)?;
                    if kh != kw || sy != sx || py != px || out == 0 || kh == 0 {
                        return r.err("non-square convolution");
                    }
                    let total = dims.iter().product::<usize>();
                    let per = kh * kw;
                    if total < out || (total - out) % (out * per) != 0 {
                        return r.err("convolution parameters of the wrong size");
                    }
                    let inp = (total - out) / (out * per);
                    let (w, b) = params.split_at(out * inp * per);
                    if pending.is_some() {
                        return r.err("two convolutions without an affine between them");
                    }
                    pending = Some(Conv {
                        out,
                        inp,
                        k: kh,
                        stride: sy,
                        pad: py,
                        w: w.to_vec(),
                        b: b.to_vec(),
                    });
                }
                "affine_" => {
                    let (_, params) = r.tensor()?;
                    let Some(conv) = pending.take() else {
                        return r.err("affine layer without a convolution before it");
                    };
                    if params.len() != 2 * conv.out {
                        return r.err("affine parameters do not match the convolution");
                    }
                    let (g, b) = params.split_at(conv.out);
                    convs.push((
                        conv,
                        Affine {
                            gamma: g.to_vec(),
                            beta: b.to_vec(),
                        },
                    ));
                }
                "fc_2" | "fc_no_bias_" => {
                    let outs = r.uint(1 << 16)?;
                    let ins = r.uint(1 << 16)?;
                    let (_, params) = r.tensor()?;
                    if params.len() < outs * ins {
                        return r.err("fc parameters of the wrong size");
                    }
                    fc = Some((params[..outs * ins].to_vec(), ins, outs));
                }
                _ => {}
            }
        }
        let Some((fc, fc_in, fc_out)) = fc else {
            return r.err("no fully connected layer found");
        };
        let m = Self {
            mean_rgb,
            input_size,
            convs,
            fc,
            fc_in,
            fc_out,
            tags,
        };
        m.check().map_err(|what| DatError {
            offset: r.pos(),
            what,
        })?;
        Ok(m)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.input_size != 150 {
            return Err(format!("input size {} (expected 150)", self.input_size));
        }
        if self.convs.len() != 29 {
            return Err(format!("{} convolutions (expected 29)", self.convs.len()));
        }
        let first = &self.convs[0].0;
        if (first.out, first.inp, first.k, first.stride) != (32, 3, 7, 2) {
            return Err("unexpected first convolution".into());
        }
        let last_out = self.convs[28].0.out;
        if self.fc_in != last_out || self.fc_out != 128 {
            return Err(format!(
                "fc is {}→{} (expected {last_out}→128)",
                self.fc_in, self.fc_out
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_floats_and_truncation() {
        // 300 = 0x012c, -5, float 1.0 = 16·2^-4
        let data = [0x02, 0x2c, 0x01, 0x81, 0x05, 0x01, 0x10, 0x81, 0x04];
        let mut r = Reader::new(&data);
        assert_eq!(r.int().unwrap(), 300);
        assert_eq!(r.int().unwrap(), -5);
        assert_eq!(r.float().unwrap(), 1.0);
        assert!(r.int().is_err());
        let mut r = Reader::new(&[0x04, 0x01]);
        assert!(r.int().is_err(), "truncated integer must fail");
        let mut r = Reader::new(&[0x3f]);
        assert!(r.int().is_err(), "bad header must fail");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut junk = vec![0u8; 4096];
        for (i, b) in junk.iter_mut().enumerate() {
            *b = (i * 7919 % 251) as u8;
        }
        assert!(ShapePredictorModel::parse(&junk).is_err());
        assert!(ResnetModel::parse(&junk).is_err());
        assert!(ShapePredictorModel::parse(&[]).is_err());
        assert!(ResnetModel::parse(&[1, 1]).is_err());
    }
}
