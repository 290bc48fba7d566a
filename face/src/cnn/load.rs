//! Loading: the ONNX graph is checked node by node, fused into [`Step`]s, and its buffers are
//! planned.
//!
//! Over 500 lines on purpose: checking, fusing and planning are three passes over the same
//! node list and share its helpers; split apart, each would re-derive the others' invariants.

use super::{Conv, Net, NetError, R, Spec, Step, err};
use crate::gemm::{Isa, NR};
use prost::Message;
use std::collections::HashMap;
use std::sync::Mutex;
use tract_onnx::pb;

fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn ints(n: &pb::NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

fn usize_of(v: i64, what: &str) -> R<usize> {
    usize::try_from(v).or_else(|_| err(format!("negative {what}")))
}

/// Square kernel, square stride, symmetric padding: `(k, s, pad)`.
fn window(n: &pb::NodeProto) -> R<(usize, usize, usize)> {
    let k = ints(n, "kernel_shape").unwrap_or_default();
    let s = ints(n, "strides").unwrap_or_else(|| vec![1, 1]);
    let p = ints(n, "pads").unwrap_or_else(|| vec![0; 4]);
    let ok = k.len() == 2 && k[0] == k[1] && s.len() == 2 && s[0] == s[1] && p.len() == 4;
    if !ok || p.iter().any(|&v| v != p[0]) {
        return err(format!(
            "{} {}: only square kernels and symmetric padding",
            n.op_type, n.name
        ));
    }
    for a in ["dilations"] {
        if ints(n, a).is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return err(format!("{} {}: {a} unsupported", n.op_type, n.name));
        }
    }
    if attr(n, "group").is_some_and(|g| g.i != 1) || attr(n, "ceil_mode").is_some_and(|g| g.i != 0)
    {
        return err(format!(
            "{} {}: group/ceil_mode unsupported",
            n.op_type, n.name
        ));
    }
    if attr(n, "auto_pad").is_some_and(|a| !a.s.is_empty() && a.s != b"NOTSET") {
        return err(format!("{} {}: auto_pad unsupported", n.op_type, n.name));
    }
    Ok((
        usize_of(k[0], "kernel")?,
        usize_of(s[0], "stride")?.max(1),
        usize_of(p[0], "pad")?,
    ))
}

fn floats(t: &pb::TensorProto) -> R<Vec<f32>> {
    if t.data_type != pb::tensor_proto::DataType::Float as i32 {
        return err(format!("initializer {} is not f32", t.name));
    }
    if !t.raw_data.is_empty() {
        if !t.raw_data.len().is_multiple_of(4) {
            return err(format!("initializer {} has a partial value", t.name));
        }
        return Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect());
    }
    Ok(t.float_data.clone())
}

struct Builder<'a> {
    nodes: &'a [pb::NodeProto],
    inits: HashMap<&'a str, &'a pb::TensorProto>,
    /// Node producing / consuming each value name.
    producer: HashMap<&'a str, usize>,
    consumers: HashMap<&'a str, Vec<usize>>,
    tensors: HashMap<String, usize>,
    specs: Vec<Spec>,
    steps: Vec<Step>,
}

/// What a Conv node turns into.
enum Fuse {
    Relu {
        relu: usize,
    },
    Residual {
        add: usize,
        relu: usize,
        shortcut: String,
        absorbed: Vec<usize>,
    },
}

impl<'a> Builder<'a> {
    fn sole_consumer(&self, value: &str) -> Option<usize> {
        match self.consumers.get(value).map(Vec::as_slice) {
            Some([one]) => Some(*one),
            _ => None,
        }
    }

    fn op(&self, i: usize) -> &str {
        self.nodes[i].op_type.as_str()
    }

    fn out(&self, i: usize) -> R<&'a str> {
        match self.nodes[i].output.first() {
            Some(o) => Ok(o.as_str()),
            None => err(format!("node {} has no output", self.nodes[i].name)),
        }
    }

    fn input(&self, i: usize, k: usize) -> R<&'a str> {
        match self.nodes[i].input.get(k) {
            Some(o) => Ok(o.as_str()),
            None => err(format!("node {} lacks input {k}", self.nodes[i].name)),
        }
    }

    /// A zero Pad that only appends at the end of the axes: its input.
    fn pad_input(&self, i: usize) -> R<&'a str> {
        let n = &self.nodes[i];
        let Some(pads) = n.input.get(1).and_then(|p| self.inits.get(p.as_str())) else {
            return err(format!("Pad {} needs constant pads", n.name));
        };
        let mode_ok = attr(n, "mode").is_none_or(|m| m.s.is_empty() || m.s == b"constant");
        let begins_zero =
            pads.int64_data.len() == 8 && pads.int64_data[..4].iter().all(|&v| v == 0);
        if !mode_ok || !begins_zero || n.input.len() > 2 {
            return err(format!(
                "Pad {}: only zero padding at the end is supported",
                n.name
            ));
        }
        self.input(i, 0)
    }

    fn classify(&self, conv: usize) -> R<Fuse> {
        let o = self.out(conv)?;
        let Some(next) = self.sole_consumer(o) else {
            return err(format!(
                "Conv {} output has several consumers",
                self.nodes[conv].name
            ));
        };
        if self.op(next) == "Relu" {
            return Ok(Fuse::Relu { relu: next });
        }
        let mut absorbed = Vec::new();
        let add = if self.op(next) == "Pad" {
            absorbed.push(next);
            self.sole_consumer(self.out(next)?)
        } else {
            Some(next)
        };
        let Some(add) = add.filter(|&a| self.op(a) == "Add") else {
            return err(format!(
                "Conv {}: unsupported successor",
                self.nodes[conv].name
            ));
        };
        let Some(relu) = self
            .sole_consumer(self.out(add)?)
            .filter(|&r| self.op(r) == "Relu")
        else {
            return err(format!("Add {} must feed one Relu", self.nodes[add].name));
        };
        let came_from = if absorbed.is_empty() {
            o
        } else {
            self.out(next)?
        };
        let other = match (self.input(add, 0)?, self.input(add, 1)?) {
            (x, y) if x == came_from => y,
            (x, _) => x,
        };
        let shortcut = match self.producer.get(other) {
            Some(&p) if self.op(p) == "Pad" && self.sole_consumer(other) == Some(add) => {
                absorbed.push(p);
                self.pad_input(p)?
            }
            _ => other,
        };
        absorbed.push(add);
        absorbed.push(relu);
        Ok(Fuse::Residual {
            add,
            relu,
            shortcut: shortcut.to_string(),
            absorbed,
        })
    }

    fn tensor(&self, name: &str) -> R<usize> {
        match self.tensors.get(name) {
            Some(&t) => Ok(t),
            None => err(format!("value {name} is used before it is computed")),
        }
    }

    fn new_tensor(&mut self, name: &str, c: usize, h: usize, w: usize) -> usize {
        self.specs.push(Spec {
            c,
            h,
            w,
            border: 0,
            extra: 0,
        });
        let id = self.specs.len() - 1;
        self.tensors.insert(name.to_string(), id);
        id
    }

    fn conv(
        &mut self,
        i: usize,
        relu: bool,
        residual: Option<usize>,
        dst_name: &str,
        dst_shape: Option<(usize, usize, usize)>,
    ) -> R<()> {
        let n = &self.nodes[i];
        let (k, s, pad) = window(n)?;
        let src = self.tensor(self.input(i, 0)?)?;
        let Some(wt) = n.input.get(1).and_then(|w| self.inits.get(w.as_str())) else {
            return err(format!("Conv {} needs constant weights", n.name));
        };
        let w = floats(wt)?;
        let dims: Vec<usize> = wt
            .dims
            .iter()
            .map(|&d| usize_of(d, "dim"))
            .collect::<R<_>>()?;
        let sp = self.specs[src];
        if dims.len() != 4
            || dims[1] != sp.c
            || dims[2] != k
            || dims[3] != k
            || w.len() != dims.iter().product::<usize>()
        {
            return err(format!(
                "Conv {}: weights {dims:?} do not fit input with {} channels",
                n.name, sp.c
            ));
        }
        let (cout, cin) = (dims[0], dims[1]);
        if cout % NR != 0 {
            return err(format!(
                "Conv {}: {cout} output channels, need a multiple of {NR}",
                n.name
            ));
        }
        let bias = match n.input.get(2).and_then(|b| self.inits.get(b.as_str())) {
            Some(b) => floats(b)?,
            None if n.input.len() < 3 => vec![0.0; cout],
            None => return err(format!("Conv {} needs a constant bias", n.name)),
        };
        if bias.len() != cout {
            return err(format!("Conv {}: bias length", n.name));
        }
        if sp.h + 2 * pad < k || sp.w + 2 * pad < k {
            return err(format!("Conv {}: input smaller than the kernel", n.name));
        }
        let oh = (sp.h + 2 * pad - k) / s + 1;
        let ow = (sp.w + 2 * pad - k) / s + 1;
        // Taps that read real pixels for at least one output (others only see the border).
        let hits = |kk: usize, o: usize, size: usize| {
            (0..o).any(|q| (q * s + kk) >= pad && (q * s + kk) < pad + size)
        };
        let kept: Vec<(usize, usize)> = (0..k)
            .flat_map(|ky| (0..k).map(move |kx| (ky, kx)))
            .filter(|&(ky, kx)| hits(ky, oh, sp.h) && hits(kx, ow, sp.w))
            .collect();
        let mut packed = Vec::with_capacity(cout * kept.len() * cin);
        for p in 0..cout / NR {
            for &(ky, kx) in &kept {
                for c in 0..cin {
                    for j in 0..NR {
                        packed.push(w[(((p * NR + j) * cin + c) * k + ky) * k + kx]);
                    }
                }
            }
        }
        let (dc, dh, dw) = dst_shape.unwrap_or((cout, oh, ow));
        if dc < cout || dh < oh || dw < ow {
            return err(format!(
                "Conv {}: residual smaller than the convolution",
                n.name
            ));
        }
        let dst = self.new_tensor(dst_name, dc, dh, dw);
        // The source's border must cover this padding; offsets are fixed once borders are known.
        self.specs[src].border = self.specs[src].border.max(pad);
        self.steps.push(Step::Conv(Box::new(Conv {
            src,
            dst,
            cin,
            cout,
            oh,
            ow,
            relu,
            residual,
            stride: s,
            pad,
            kept,
            taps: Vec::new(),
            a_rows: Vec::new(),
            o_rows: Vec::new(),
            packed,
            bias,
        })));
        Ok(())
    }

    fn pool(&mut self, i: usize, avg: bool) -> R<()> {
        let (k, s, pad) = window(&self.nodes[i])?;
        if pad != 0 {
            return err(format!("pool {}: padding unsupported", self.nodes[i].name));
        }
        let src = self.tensor(self.input(i, 0)?)?;
        let sp = self.specs[src];
        if sp.h < k || sp.w < k || k == 0 {
            return err(format!(
                "pool {}: input smaller than the window",
                self.nodes[i].name
            ));
        }
        let dst = self.new_tensor(self.out(i)?, sp.c, (sp.h - k) / s + 1, (sp.w - k) / s + 1);
        self.steps.push(if avg {
            Step::AvgPool { src, dst, k, s }
        } else {
            Step::MaxPool { src, dst, k, s }
        });
        Ok(())
    }
}

impl Net {
    /// Parses the ONNX bytes and plans the buffers.
    pub fn from_onnx(bytes: &[u8]) -> R<Self> {
        let model = pb::ModelProto::decode(bytes)
            .map_err(|e| NetError(format!("not an ONNX model: {e}")))?;
        let Some(g) = model.graph.as_ref() else {
            return err("ONNX model has no graph");
        };
        let mut b = Builder {
            nodes: &g.node,
            inits: g.initializer.iter().map(|t| (t.name.as_str(), t)).collect(),
            producer: HashMap::new(),
            consumers: HashMap::new(),
            tensors: HashMap::new(),
            specs: Vec::new(),
            steps: Vec::new(),
        };
        for (i, n) in g.node.iter().enumerate() {
            for o in &n.output {
                b.producer.insert(o.as_str(), i);
            }
            for x in &n.input {
                b.consumers.entry(x.as_str()).or_default().push(i);
            }
        }
        let [input] = g.input.as_slice() else {
            return err("the network must have one input");
        };
        let dims = input_dims(input)?;
        let [1, 1, h, w] = dims[..] else {
            return err(format!("input shape {dims:?}, expected [1, 1, h, w]"));
        };
        let input_id = b.new_tensor(&input.name, 1, h, w);

        // Fusion plan: every Conv either feeds a Relu or a (Pad →) Add → Relu.
        let mut absorbed = vec![false; g.node.len()];
        let mut fuse: HashMap<usize, Fuse> = HashMap::new();
        let mut at_add: HashMap<usize, usize> = HashMap::new();
        for i in 0..g.node.len() {
            if b.op(i) == "Conv" {
                let f = b.classify(i)?;
                match &f {
                    Fuse::Relu { relu } => absorbed[*relu] = true,
                    Fuse::Residual {
                        add,
                        absorbed: list,
                        ..
                    } => {
                        for &a in list {
                            absorbed[a] = true;
                        }
                        at_add.insert(*add, i);
                    }
                }
                absorbed[i] = true;
                fuse.insert(i, f);
            }
        }

        let mut features = None;
        let mut fc = None;
        for (i, &skip) in absorbed.iter().enumerate() {
            if let Some(&conv) = at_add.get(&i) {
                let Some(Fuse::Residual { relu, shortcut, .. }) = fuse.get(&conv) else {
                    return err("internal: fusion plan");
                };
                let sc = b.tensor(shortcut)?;
                let (k, s, pad) = window(&g.node[conv])?;
                let x = b.specs[b.tensor(b.input(conv, 0)?)?];
                let Some(wt) = g.node[conv]
                    .input
                    .get(1)
                    .and_then(|w| b.inits.get(w.as_str()))
                else {
                    return err("Conv needs constant weights");
                };
                let cout = wt
                    .dims
                    .first()
                    .copied()
                    .map(|d| usize_of(d, "dim"))
                    .transpose()?
                    .unwrap_or(0);
                let oh = (x.h + 2 * pad).saturating_sub(k) / s + 1;
                let ow = (x.w + 2 * pad).saturating_sub(k) / s + 1;
                let ss = b.specs[sc];
                let shape = (cout.max(ss.c), oh.max(ss.h), ow.max(ss.w));
                let out = b.out(*relu)?;
                b.conv(conv, false, Some(sc), out, Some(shape))?;
                continue;
            }
            if skip && b.op(i) != "Conv" {
                continue;
            }
            match b.op(i) {
                "Conv" => {
                    let Some(Fuse::Relu { relu }) = fuse.get(&i) else {
                        continue; // residual convolutions run at their Add
                    };
                    let out = b.out(*relu)?;
                    b.conv(i, true, None, out, None)?;
                }
                "MaxPool" => b.pool(i, false)?,
                "AveragePool" => {
                    if attr(&g.node[i], "count_include_pad").is_some_and(|a| a.i != 0) {
                        return err("AveragePool count_include_pad unsupported");
                    }
                    b.pool(i, true)?
                }
                "GlobalAveragePool" => {
                    let src = b.tensor(b.input(i, 0)?)?;
                    let c = b.specs[src].c;
                    let dst = b.new_tensor(b.out(i)?, c, 1, 1);
                    b.steps.push(Step::Gap { src, dst });
                }
                "Flatten" => {
                    let src = b.tensor(b.input(i, 0)?)?;
                    let s = b.specs[src];
                    if s.h != 1 || s.w != 1 || attr(&g.node[i], "axis").is_some_and(|a| a.i != 1) {
                        return err("Flatten only of a pooled vector");
                    }
                    b.tensors.insert(b.out(i)?.to_string(), src);
                }
                "MatMul" => {
                    if fc.is_some()
                        || g.output
                            .first()
                            .is_none_or(|o| Some(o.name.as_str()) != b.out(i).ok())
                    {
                        return err("only one final MatMul is supported");
                    }
                    let src = b.tensor(b.input(i, 0)?)?;
                    let Some(wt) = b.inits.get(b.input(i, 1)?) else {
                        return err("MatMul needs constant weights");
                    };
                    let w = floats(wt)?;
                    let c = b.specs[src].c;
                    if wt.dims.len() != 2 || wt.dims[0] != c as i64 || w.len() % c.max(1) != 0 {
                        return err(format!(
                            "MatMul weights {:?} do not fit {c} features",
                            wt.dims
                        ));
                    }
                    features = Some(src);
                    fc = Some((w.clone(), w.len() / c));
                }
                other => return err(format!("unsupported node {other} ({})", g.node[i].name)),
            }
        }
        let (Some(features), Some((fc, fc_out))) = (features, fc) else {
            return err("the network must end with a MatMul");
        };
        let mut net = Net {
            specs: b.specs,
            slot: Vec::new(),
            slot_len: Vec::new(),
            steps: b.steps,
            input: input_id,
            features,
            fc,
            fc_out,
            isa: Isa::detect(),
            pool: Mutex::new(Vec::new()),
        };
        net.finish()?;
        Ok(net)
    }

    /// Fixes the offsets now that the borders are known, and assigns buffer slots.
    fn finish(&mut self) -> R<()> {
        let specs = self.specs.clone();
        for step in &mut self.steps {
            let Step::Conv(c) = step else { continue };
            let (si, so) = (specs[c.src], specs[c.dst]);
            let (s, pad) = (c.stride, c.pad);
            let wp = si.wp();
            c.taps = c
                .kept
                .iter()
                .map(|&(ky, kx)| (ky * wp + kx) * si.c)
                .collect();
            let Some(base) = si.border.checked_sub(pad) else {
                return err("internal: a border narrower than its convolution's padding");
            };
            c.a_rows = (0..c.oh)
                .flat_map(|y| (0..c.ow).map(move |x| ((y * s + base) * wp + x * s + base) * si.c))
                .collect();
            c.o_rows = (0..c.oh)
                .flat_map(|y| (0..c.ow).map(move |x| so.at(y, x)))
                .collect();
        }
        // Last step reading each tensor.
        let mut last = vec![0usize; specs.len()];
        for (i, step) in self.steps.iter().enumerate() {
            let reads: Vec<usize> = match step {
                Step::Conv(c) => [Some(c.src), c.residual].into_iter().flatten().collect(),
                Step::MaxPool { src, .. } | Step::AvgPool { src, .. } | Step::Gap { src, .. } => {
                    vec![*src]
                }
            };
            for r in reads {
                last[r] = i;
            }
        }
        last[self.features] = usize::MAX;
        let mut slot = vec![usize::MAX; specs.len()];
        let mut slot_spec: Vec<Spec> = Vec::new();
        let mut slot_free_after: Vec<usize> = Vec::new(); // step index after which a slot is free
        let mut assign = |t: usize, now: usize, slot: &mut Vec<usize>| {
            let free = (0..slot_spec.len())
                .find(|&k| slot_spec[k] == specs[t] && slot_free_after[k] < now);
            let k = free.unwrap_or_else(|| {
                slot_spec.push(specs[t]);
                slot_free_after.push(0);
                slot_spec.len() - 1
            });
            slot[t] = k;
            slot_free_after[k] = last[t];
        };
        // The input is read by step 0, so its slot is busy until then (`last` says so).
        assign(self.input, 0, &mut slot);
        for (i, step) in self.steps.iter().enumerate() {
            let dst = match step {
                Step::Conv(c) => c.dst,
                Step::MaxPool { dst, .. } | Step::AvgPool { dst, .. } | Step::Gap { dst, .. } => {
                    *dst
                }
            };
            // A slot freed by this very step's inputs cannot hold its output: `< now` above
            // needs the last read strictly before this step.
            assign(dst, i, &mut slot);
        }
        if slot.contains(&usize::MAX) {
            return err("internal: a value is never computed");
        }
        self.slot = slot;
        self.slot_len = slot_spec.iter().map(Spec::len).collect();
        Ok(())
    }
}

fn input_dims(v: &pb::ValueInfoProto) -> R<Vec<usize>> {
    use pb::tensor_shape_proto::dimension::Value;
    let Some(pb::type_proto::Value::TensorType(t)) =
        v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return err("input has no tensor type");
    };
    let Some(shape) = &t.shape else {
        return err("input has no shape");
    };
    shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(Value::DimValue(v)) => usize_of(v, "input dim"),
            _ => err("input shape must be concrete"),
        })
        .collect()
}
