//! Model conversion (run once by `packaging/models/fetch.sh` through the `aloha-models` tool):
//! dlib's ResNet `.dat` → a self-contained ONNX graph that tract runs, and BlazeFace's ONNX
//! with its `ConstantOfShape` nodes given an explicit `f32` value (tract would infer `f64`).

use crate::dlib::ResnetModel;
use prost::Message;
use tract_onnx::pb;

/// ONNX opset the exported ResNet uses.
pub const OPSET: i64 = 13;

const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;
const INT64: i32 = pb::tensor_proto::DataType::Int64 as i32;

fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: FLOAT,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[derive(Default)]
struct Graph {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    n: usize,
}

impl Graph {
    fn name(&mut self, prefix: &str) -> String {
        self.n += 1;
        format!("{prefix}_{}", self.n)
    }

    fn float(&mut self, prefix: &str, dims: &[i64], data: Vec<f32>) -> String {
        let name = self.name(prefix);
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: FLOAT,
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    fn ints(&mut self, prefix: &str, data: &[i64]) -> String {
        let name = self.name(prefix);
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: INT64,
            int64_data: data.to_vec(),
            ..Default::default()
        });
        name
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<pb::AttributeProto>) -> String {
        let out = self.name(&op.to_lowercase());
        self.nodes.push(pb::NodeProto {
            name: out.clone(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }
}

/// A tensor flowing through the graph: name, channels, height, width.
#[derive(Clone)]
struct Flow {
    name: String,
    c: usize,
    h: usize,
    w: usize,
}

fn conv_affine(
    g: &mut Graph,
    x: &Flow,
    conv: &crate::dlib::Conv,
    aff: &crate::dlib::Affine,
) -> Flow {
    // Fold the affine (inference-time batch norm) into the convolution.
    let per = conv.inp * conv.k * conv.k;
    let mut w = conv.w.clone();
    for (o, chunk) in w.chunks_exact_mut(per).enumerate() {
        for v in chunk {
            *v *= aff.gamma[o];
        }
    }
    let b: Vec<f32> = (0..conv.out)
        .map(|o| conv.b[o] * aff.gamma[o] + aff.beta[o])
        .collect();
    let k = conv.k as i64;
    let wn = g.float("w", &[conv.out as i64, conv.inp as i64, k, k], w);
    let bn = g.float("b", &[conv.out as i64], b);
    let p = conv.pad as i64;
    let s = conv.stride as i64;
    let name = g.node(
        "Conv",
        &[&x.name, &wn, &bn],
        vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[s, s]),
            attr_ints("pads", &[p, p, p, p]),
        ],
    );
    let out = |n: usize| (n + 2 * conv.pad - conv.k) / conv.stride + 1;
    Flow {
        name,
        c: conv.out,
        h: out(x.h),
        w: out(x.w),
    }
}

fn relu(g: &mut Graph, x: &Flow) -> Flow {
    Flow {
        name: g.node("Relu", &[&x.name], vec![]),
        ..x.clone()
    }
}

/// Zero-pads `x` at the end of the channel, row and column axes to `(c, h, w)`, like dlib's
/// `add_prev` does when its inputs differ in shape.
fn pad_to(g: &mut Graph, x: &Flow, c: usize, h: usize, w: usize) -> Flow {
    if (x.c, x.h, x.w) == (c, h, w) {
        return x.clone();
    }
    let pads = g.ints(
        "pads",
        &[
            0,
            0,
            0,
            0,
            0,
            (c - x.c) as i64,
            (h - x.h) as i64,
            (w - x.w) as i64,
        ],
    );
    let name = g.node("Pad", &[&x.name, &pads], vec![]);
    Flow { name, c, h, w }
}

fn add(g: &mut Graph, a: &Flow, b: &Flow) -> Flow {
    let (c, h, w) = (a.c.max(b.c), a.h.max(b.h), a.w.max(b.w));
    let a = pad_to(g, a, c, h, w);
    let b = pad_to(g, b, c, h, w);
    Flow {
        name: g.node("Add", &[&a.name, &b.name], vec![]),
        c,
        h,
        w,
    }
}

/// dlib's input layer feeds `(v − mean_c) / 256` to the first convolution for each colour
/// channel c. For a gray chip (v equal in all three channels, which is all this engine ever
/// feeds) that equals one input channel with the weights summed over c and divided by 256,
/// minus the constant `Σ w·mean_c / 256` in the bias (the first convolution has no padding, so
/// the constant is the same at every position). A third of the first layer's work.
pub fn fold_gray_input(conv: &crate::dlib::Conv, mean_rgb: [f32; 3]) -> crate::dlib::Conv {
    let kk = conv.k * conv.k;
    let mut w = vec![0f32; conv.out * kk];
    let mut b = conv.b.clone();
    for o in 0..conv.out {
        let mut shift = 0f64;
        for i in 0..kk {
            let mut sum = 0f64;
            for (c, mean) in mean_rgb.iter().enumerate().take(conv.inp) {
                let v = f64::from(conv.w[(o * conv.inp + c) * kk + i]);
                sum += v;
                shift += v * f64::from(*mean);
            }
            w[o * kk + i] = (sum / 256.0) as f32;
        }
        b[o] = (f64::from(b[o]) - shift / 256.0) as f32;
    }
    crate::dlib::Conv {
        inp: 1,
        w,
        b,
        ..conv.clone()
    }
}

/// Builds the ONNX graph of dlib's face ResNet for gray chips: input `chip` `[1,1,150,150]`
/// gray 0..255 (see [`fold_gray_input`]), output `descriptor` `[1,128]`.
pub fn resnet_to_onnx(m: &ResnetModel) -> Vec<u8> {
    let mut g = Graph::default();
    let s = m.input_size;
    let x = Flow {
        name: "chip".into(),
        c: 1,
        h: s,
        w: s,
    };
    let (c0, a0) = &m.convs[0];
    let x = conv_affine(&mut g, &x, &fold_gray_input(c0, m.mean_rgb), a0);
    let x = relu(&mut g, &x);
    let pooled = g.node(
        "MaxPool",
        &[&x.name],
        vec![
            attr_ints("kernel_shape", &[3, 3]),
            attr_ints("strides", &[2, 2]),
            attr_ints("pads", &[0, 0, 0, 0]),
        ],
    );
    let mut x = Flow {
        name: pooled,
        c: x.c,
        h: (x.h - 3) / 2 + 1,
        w: (x.w - 3) / 2 + 1,
    };

    for pair in m.convs[1..].chunks_exact(2) {
        let (ca, aa) = &pair[0];
        let (cb, ab) = &pair[1];
        let y = conv_affine(&mut g, &x, ca, aa);
        let y = relu(&mut g, &y);
        let y = conv_affine(&mut g, &y, cb, ab);
        let shortcut = if ca.stride == 2 {
            let name = g.node(
                "AveragePool",
                &[&x.name],
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_ints("strides", &[2, 2]),
                    attr_ints("pads", &[0, 0, 0, 0]),
                ],
            );
            Flow {
                name,
                c: x.c,
                h: (x.h - 2) / 2 + 1,
                w: (x.w - 2) / 2 + 1,
            }
        } else {
            x.clone()
        };
        let sum = add(&mut g, &y, &shortcut);
        x = relu(&mut g, &sum);
    }
    let gap = g.node("GlobalAveragePool", &[&x.name], vec![]);
    let flat = g.node("Flatten", &[&gap], vec![attr_int("axis", 1)]);
    let w = g.float("fc", &[m.fc_in as i64, m.fc_out as i64], m.fc.clone());
    let out = g.node("MatMul", &[&flat, &w], vec![]);
    if let Some(last) = g.nodes.last_mut() {
        last.output = vec!["descriptor".into()];
    }
    let _ = out;

    let graph = pb::GraphProto {
        name: "dlib_face_recognition_resnet_model_v1".into(),
        node: g.nodes,
        initializer: g.inits,
        input: vec![value_info("chip", &[1, 1, s as i64, s as i64])],
        output: vec![value_info("descriptor", &[1, m.fc_out as i64])],
        doc_string: "Converted by aloha-models from dlib's public-domain dlib_face_recognition_resnet_model_v1.dat; affine layers folded into the convolutions, gray input folded into the first".into(),
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "aloha-models".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// Why an ONNX file cannot be fixed up.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The bytes are not an ONNX protobuf.
    #[error("not an ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The model has no graph.
    #[error("ONNX model has no graph")]
    NoGraph,
}

/// Gives every `ConstantOfShape` node without a `value` attribute an explicit `f32` zero
/// (tract would otherwise infer `f64` and fail to load BlazeFace). Returns the fixed bytes
/// and the number of nodes changed.
pub fn fix_constant_of_shape(onnx: &[u8]) -> Result<(Vec<u8>, usize), OnnxError> {
    let mut model = pb::ModelProto::decode(onnx)?;
    let Some(graph) = model.graph.as_mut() else {
        return Err(OnnxError::NoGraph);
    };
    let mut fixed = 0;
    for node in &mut graph.node {
        if node.op_type == "ConstantOfShape" && !node.attribute.iter().any(|a| a.name == "value") {
            node.attribute.push(pb::AttributeProto {
                name: "value".into(),
                r#type: pb::attribute_proto::AttributeType::Tensor as i32,
                t: Some(pb::TensorProto {
                    dims: vec![1],
                    data_type: FLOAT,
                    float_data: vec![0.0],
                    ..Default::default()
                }),
                ..Default::default()
            });
            fixed += 1;
        }
    }
    Ok((model.encode_to_vec(), fixed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_graphless_models_are_typed_errors() {
        assert!(matches!(
            fix_constant_of_shape(&[0xff; 7]),
            Err(OnnxError::Decode(_))
        ));
        let empty = pb::ModelProto::default().encode_to_vec();
        assert!(matches!(
            fix_constant_of_shape(&empty),
            Err(OnnxError::NoGraph)
        ));
    }
}
