//! GroupNorm (and the SiLU after it) as one op, in place where it can be.
//!
//! PyTorch exports `GroupNorm` as a reshape to `[N, groups, -1]`, an
//! `InstanceNormalization`, a reshape back, a multiplication by the
//! per-channel weight and an addition of the bias; the SD UNet and VAE follow
//! almost every one with a SiLU. tract runs that as about seven passes over
//! the tensor, and where the input also feeds another node (a residual
//! block's shortcut) the first reshape copies it: at the VAE decoder's
//! full-resolution blocks (256 channels at 672x384, 264 MB a tensor) three
//! such tensors were alive inside one norm, the largest single contribution
//! to the decode's peak memory (`profile_onnx ... --memory`). This op
//! takes each group's values (contiguous in NCHW) as one unit of work: their
//! mean, then the variance about it (two passes, sums in `f64` across
//! blocks), then each value `(x - mean) * a_c + b_c` and the SiLU, written
//! over the input when the op holds its only reference, else into one new
//! tensor. A norm whose input also feeds a 1x1 shortcut is made to run after
//! it ([`run_after_shortcuts`]), so that it does hold it.
//!
//! The fusion is made on the ONNX graph before tract parses it
//! ([`fuse_group_norms`]): the exported pattern is exact and local there,
//! while after tract's decluttering it takes several forms (a weight of ones
//! or a bias of zeros is folded away, the SiLU is pushed before the reshape).
//! The fused node carries every operand of the pattern, so nothing is
//! dropped: the normalization's own scale and bias per group and the
//! weight and bias per channel.

use std::collections::HashMap;

use tract_linalg::routines::Func;
use tract_onnx::data_resolver::FopenDataResolver;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::tensor::load_tensor;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_hir::internal::{Expansion, InferenceResult, Solver, TensorProxy, expand};

use super::direct_conv;
use super::same_size::SameSizeConv;
use super::units;

/// The fused node's `op_type` (the engine's parser registers it).
pub const OP_TYPE: &str = "PocketStudioGroupNorm";

/// Values a block of the sums covers: the block's sum is `f32`, the blocks'
/// total `f64`, so rounding stays that of 4,096 additions however large the
/// group (two million values at the VAE's full resolution).
const SUM_BLOCK: usize = 4096;

/// Values written and then passed through the SiLU at a time (in L1).
const APPLY_BLOCK: usize = 2048;

/// Replace every exported GroupNorm (and the SiLU after it, when only the
/// SiLU reads it) in `model`'s main graph by one [`OP_TYPE`] node; returns
/// how many. A pattern that differs in any way is left to tract.
pub fn fuse_group_norms(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let sites: Vec<Site> = {
        let index = GraphIndex::of(graph);
        (0..graph.node.len())
            .filter_map(|i| find(graph, &index, i))
            .collect()
    };
    let mut removed = vec![false; graph.node.len()];
    let mut fused: HashMap<usize, NodeProto> = HashMap::new();
    for site in sites {
        // The fused node goes where the pattern's last node was: everything
        // it reads is defined before that.
        let Some(&last) = site.nodes.iter().max() else {
            continue;
        };
        if site.nodes.iter().any(|&n| removed[n]) {
            continue;
        }
        for &n in &site.nodes {
            removed[n] = true;
        }
        fused.insert(last, site.node);
    }
    let count = fused.len();
    let nodes = std::mem::take(&mut graph.node);
    for (i, node) in nodes.into_iter().enumerate() {
        if let Some(replacement) = fused.remove(&i) {
            graph.node.push(replacement);
        } else if !removed[i] {
            graph.node.push(node);
        }
    }
    count
}

/// Who makes and who reads each value of a graph.
struct GraphIndex<'a> {
    producer: HashMap<&'a str, usize>,
    readers: HashMap<&'a str, Vec<usize>>,
    outputs: Vec<&'a str>,
    /// Initializers and `Constant` nodes' values, and the `Identity` nodes
    /// of those (PyTorch's exporter writes one for each repeat of an equal
    /// initializer), by value name: the name of the constant itself and
    /// its tensor.
    constants: HashMap<&'a str, (&'a str, &'a TensorProto)>,
}

impl<'a> GraphIndex<'a> {
    fn of(graph: &'a GraphProto) -> GraphIndex<'a> {
        let mut index = GraphIndex {
            producer: HashMap::new(),
            readers: HashMap::new(),
            outputs: graph.output.iter().map(|o| o.name.as_str()).collect(),
            constants: graph
                .initializer
                .iter()
                .map(|t| (t.name.as_str(), (t.name.as_str(), t)))
                .collect(),
        };
        for (i, node) in graph.node.iter().enumerate() {
            for output in &node.output {
                index.producer.insert(output, i);
            }
            for input in &node.input {
                index.readers.entry(input).or_default().push(i);
            }
            if node.op_type == "Constant"
                && let (Some(output), Some(value)) = (
                    node.output.first(),
                    node.attribute.iter().find(|a| a.name == "value"),
                )
                && let Some(tensor) = &value.t
            {
                index.constants.insert(output, (output, tensor));
            }
            if node.op_type == "Identity"
                && let (Some(output), Some(input)) = (node.output.first(), node.input.first())
                && let Some(&constant) = index.constants.get(input.as_str())
            {
                index.constants.insert(output, constant);
            }
        }
        index
    }

    /// The one node reading `value`, if it is read by exactly one node and
    /// is no output of the graph.
    fn only_reader(&self, value: &str) -> Option<usize> {
        match self.readers.get(value).map(Vec::as_slice) {
            Some(&[reader]) if !self.outputs.contains(&value) => Some(reader),
            _ => None,
        }
    }

    /// The tensor of constant `value`.
    fn tensor(&self, value: &str) -> Option<&'a TensorProto> {
        self.constants.get(value).map(|&(_, t)| t)
    }

    /// The name of the constant `value` is (itself, or what an `Identity`
    /// passes on).
    fn constant_name(&self, value: &str) -> Option<String> {
        self.constants.get(value).map(|&(name, _)| name.to_string())
    }

    fn made_by(&self, graph: &GraphProto, value: &str, op_type: &str) -> Option<usize> {
        let i = *self.producer.get(value)?;
        (graph.node[i].op_type == op_type).then_some(i)
    }
}

/// One GroupNorm to fuse: the nodes it replaces and the fused node.
struct Site {
    nodes: Vec<usize>,
    node: NodeProto,
}

/// The GroupNorm whose `InstanceNormalization` is node `norm`, if the
/// pattern around it is exactly PyTorch's.
fn find(graph: &GraphProto, index: &GraphIndex, norm: usize) -> Option<Site> {
    let node = |i: usize| &graph.node[i];
    let n = node(norm);
    if n.op_type != "InstanceNormalization" || n.input.len() != 3 || n.output.len() != 1 {
        return None;
    }
    // x -> Reshape [0, groups, -1] -> InstanceNormalization
    let grouping = index.made_by(graph, &n.input[0], "Reshape")?;
    let x = node(grouping).input.first()?;
    let groups = match int_values(index.tensor(node(grouping).input.get(1)?)?)?[..] {
        [0, groups, -1] if groups > 0 => groups as usize,
        _ => return None,
    };
    if int_attribute(node(grouping), "allowzero").unwrap_or(0) != 0
        || index.only_reader(&n.input[0]) != Some(norm)
    {
        return None;
    }
    let per_group = [&n.input[1], &n.input[2]];
    if per_group
        .iter()
        .any(|v| index.tensor(v).map(|t| t.dims.as_slice()) != Some(&[groups as i64]))
    {
        return None;
    }
    // -> Reshape to Shape(x) -> Mul weight -> Add bias
    let ungrouping = index.only_reader(&n.output[0])?;
    let shape_of_x = index.made_by(graph, node(ungrouping).input.get(1)?, "Shape")?;
    if node(ungrouping).op_type != "Reshape"
        || node(ungrouping).input[0] != n.output[0]
        || node(shape_of_x).input.first() != Some(x)
        || !node(shape_of_x).attribute.is_empty()
    {
        return None;
    }
    let weighting = index.only_reader(node(ungrouping).output.first()?)?;
    let weight = other_operand(node(weighting), "Mul", &node(ungrouping).output[0])?;
    let biasing = index.only_reader(node(weighting).output.first()?)?;
    let bias = other_operand(node(biasing), "Add", &node(weighting).output[0])?;
    let channels = per_channel_dims(index.tensor(weight)?)?;
    let bias_dims = per_channel_dims(index.tensor(bias)?)?;
    if bias_dims != channels || channels.0 % groups != 0 {
        return None;
    }
    let mut nodes = vec![grouping, norm, ungrouping, weighting, biasing];
    if index.only_reader(&node(shape_of_x).output[0]) == Some(ungrouping) {
        nodes.push(shape_of_x);
    }
    let normalized = node(biasing).output.first()?;
    let silu = silu_after(graph, index, normalized);
    let output = match silu {
        Some((sigmoid, product)) => {
            nodes.extend([sigmoid, product]);
            node(product).output.first()?
        }
        None => normalized,
    };
    let epsilon = n
        .attribute
        .iter()
        .find(|a| a.name == "epsilon")
        .map_or(1e-5, |a| a.f);
    let fused = NodeProto {
        name: format!("{}.fused", n.name),
        op_type: OP_TYPE.into(),
        input: vec![
            x.clone(),
            index.constant_name(&n.input[1])?,
            index.constant_name(&n.input[2])?,
            index.constant_name(weight)?,
            index.constant_name(bias)?,
        ],
        output: vec![output.clone()],
        attribute: vec![
            AttributeProto {
                name: "epsilon".into(),
                r#type: AttributeType::Float as i32,
                f: epsilon,
                ..AttributeProto::default()
            },
            AttributeProto {
                name: "silu".into(),
                r#type: AttributeType::Int as i32,
                i: i64::from(silu.is_some()),
                ..AttributeProto::default()
            },
        ],
        ..NodeProto::default()
    };
    Some(Site { nodes, node: fused })
}

/// `Sigmoid(v)` and `v * Sigmoid(v)` when those two are all that read `v`
/// and only the product reads the sigmoid.
fn silu_after(graph: &GraphProto, index: &GraphIndex, v: &str) -> Option<(usize, usize)> {
    if index.outputs.contains(&v) {
        return None;
    }
    let readers = index.readers.get(v)?;
    let [a, b] = readers[..] else {
        return None;
    };
    let (sigmoid, product) = if graph.node[a].op_type == "Sigmoid" {
        (a, b)
    } else {
        (b, a)
    };
    let s = &graph.node[sigmoid];
    let p = &graph.node[product];
    let s_out = s.output.first()?;
    let ok = s.op_type == "Sigmoid"
        && s.input.len() == 1
        && p.op_type == "Mul"
        && other_operand(p, "Mul", v) == Some(s_out)
        && index.only_reader(s_out) == Some(product);
    ok.then_some((sigmoid, product))
}

/// The operand of binary node `n` (of `op_type`) that is not `value`.
fn other_operand<'g>(n: &'g NodeProto, op_type: &str, value: &str) -> Option<&'g String> {
    match &n.input[..] {
        [a, b] if n.op_type == op_type && a == value && b != value => Some(b),
        [a, b] if n.op_type == op_type && b == value && a != value => Some(a),
        _ => None,
    }
}

/// `(channels, trailing ones)` of a per-channel operand shaped `[C, 1, ..]`.
fn per_channel_dims(t: &TensorProto) -> Option<(usize, usize)> {
    let (&c, ones) = t.dims.split_first()?;
    (c > 0 && ones.iter().all(|&d| d == 1)).then_some((c as usize, ones.len()))
}

/// An integer tensor's values, stored inline (tract's own decoding).
fn int_values(t: &TensorProto) -> Option<Vec<i64>> {
    if !t.external_data.is_empty() {
        return None;
    }
    let tensor = load_tensor(&FopenDataResolver, t, None).ok()?;
    let values = tensor.cast_to::<i64>().ok()?;
    Some(
        values
            .try_as_plain_ram()
            .ok()?
            .as_slice::<i64>()
            .ok()?
            .to_vec(),
    )
}

fn int_attribute(n: &NodeProto, name: &str) -> Option<i64> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// Make each norm whose input is also read by 1x1 convolutions, and nothing
/// else (a residual block's shortcut), run after them, so that it is its
/// input's last reader and normalizes it in place; the convolutions go to
/// the direct kernel, which reads its input where it lies (tract's turn into
/// a product over a reshaped copy of it). In the VAE decoder's first
/// full-resolution block this keeps one 264 MB tensor fewer alive. Run
/// before tract declutters the graph (it turns 1x1 convolutions into
/// products); propagates the constants first (the biases are constants only
/// then). Returns how many norms; does nothing on a CPU without the direct
/// kernel.
pub fn run_after_shortcuts(model: &mut TypedModel) -> TractResult<usize> {
    if !direct_conv::available() {
        return Ok(0);
    }
    model.prop_consts()?;
    let norms: Vec<usize> = model
        .nodes
        .iter()
        .filter(|n| n.op_is::<GroupNorm>())
        .map(|n| n.id)
        .collect();
    let mut count = 0;
    for norm in norms {
        let x = model.nodes[norm].inputs[0];
        let others: Vec<usize> = model
            .outlet_successors(x)
            .iter()
            .map(|inlet| inlet.node)
            .filter(|&n| n != norm)
            .collect();
        let shortcut = |id: usize| {
            SameSizeConv::at(model, id)
                .ok()
                .flatten()
                .is_some_and(|conv| conv.size == 1 && conv.pixels >= direct_conv::MIN_PIXELS)
        };
        if others.is_empty()
            || model.output_outlets()?.contains(&x)
            || !others.iter().all(|&id| shortcut(id))
        {
            continue;
        }
        let mut before = tvec!();
        for id in others {
            if let Some(y) = direct_conv::replace_one(model, id)? {
                before.push(y);
            }
        }
        let node = &model.nodes[norm];
        let op = node
            .op_as::<GroupNorm>()
            .context("not a GroupNorm")?
            .clone();
        let mut patch = TypedModelPatch::new(format!("{} after the shortcut", node.name));
        let mut taps = tvec!(patch.tap_model(model, x)?);
        for y in before {
            taps.push(patch.tap_model(model, y)?);
        }
        let y = patch.wire_node(format!("{}.last", node.name), op, &taps)?[0];
        patch.shunt_outside(model, OutletId::new(norm, 0), y)?;
        patch.apply(model)?;
        count += 1;
    }
    Ok(count)
}

/// `Onnx::op_register` entry for [`OP_TYPE`].
pub fn build(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(
    Box<dyn tract_onnx::tract_hir::infer::InferenceOp>,
    Vec<String>,
)> {
    let epsilon = node.get_attr::<f32>("epsilon")?;
    let silu = node.get_attr::<i64>("silu")? != 0;
    Ok((expand(GroupNormExpansion { epsilon, silu }), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct GroupNormExpansion {
    epsilon: f32,
    silu: bool,
}

impl std::hash::Hash for GroupNormExpansion {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.epsilon.to_bits().hash(state);
        self.silu.hash(state);
    }
}

impl Eq for GroupNormExpansion {}

impl Expansion for GroupNormExpansion {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::output_like_first_input(s, inputs, outputs, 5)
    }

    fn wire(
        &self,
        name: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let constant = |ix: usize| -> TractResult<Vec<f32>> {
            let fact = model.outlet_fact(inputs[ix])?;
            let konst = fact
                .konst
                .as_ref()
                .with_context(|| format!("{name}: operand {ix} is not a constant"))?;
            Ok(konst
                .cast_to::<f32>()?
                .try_as_plain_ram()?
                .as_slice::<f32>()?
                .to_vec())
        };
        let (norm_scale, norm_bias) = (constant(1)?, constant(2)?);
        let (weight, bias) = (constant(3)?, constant(4)?);
        let x = model.outlet_fact(inputs[0])?;
        let weight_rank = model.outlet_fact(inputs[3])?.rank();
        let groups = norm_scale.len();
        let channels = weight.len();
        ensure!(
            x.datum_type == f32::datum_type()
                && x.rank() == weight_rank + 1
                && x.shape[1].to_usize().ok() == Some(channels)
                && norm_bias.len() == groups
                && bias.len() == channels
                && groups > 0
                && channels % groups == 0,
            "{name}: a GroupNorm of {groups} groups with {channels} weights over {x:?} \
             is not one the fused op takes"
        );
        let per_group = channels / groups;
        let scale = (0..channels)
            .map(|c| norm_scale[c / per_group] * weight[c])
            .collect();
        let shift = (0..channels)
            .map(|c| norm_bias[c / per_group] * weight[c] + bias[c])
            .collect();
        let op = GroupNorm {
            groups,
            epsilon: self.epsilon,
            silu: self.silu,
            scale,
            shift,
        };
        model.wire_node(name, op, &[inputs[0]])
    }
}

/// `y = ((x - mean_g) / sqrt(var_g + epsilon)) * scale_c + shift_c`, then
/// `y * sigmoid(y)` with `silu`, over NCHW (or N, C, anything) `f32`. Inputs
/// after the first are not read: they only make the op run after the nodes
/// that give them ([`run_after_shortcuts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupNorm {
    groups: usize,
    epsilon: f32,
    silu: bool,
    /// The normalization's scale of the channel's group times its weight.
    scale: Vec<f32>,
    /// The normalization's bias times the weight plus the bias.
    shift: Vec<f32>,
}

impl std::hash::Hash for GroupNorm {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.groups.hash(state);
        self.epsilon.to_bits().hash(state);
        self.silu.hash(state);
        self.scale.iter().for_each(|v| v.to_bits().hash(state));
        self.shift.iter().for_each(|v| v.to_bits().hash(state));
    }
}

impl Eq for GroupNorm {}

impl GroupNorm {
    /// Normalize one group: `values` (read from `source` when there is one,
    /// else in place) holds `per_group` channels starting at `first`.
    fn run_group(
        &self,
        source: Option<&[f32]>,
        values: &mut [f32],
        first: usize,
        silu: Option<&dyn tract_linalg::element_wise::ElementWise<f32>>,
    ) -> TractResult<()> {
        let (mean, rstd) = mean_and_rstd(source.unwrap_or(values), self.epsilon);
        let per_group = self.scale.len() / self.groups;
        let plane = values.len() / per_group;
        if plane == 0 {
            return Ok(());
        }
        for (c, channel) in values.chunks_mut(plane).enumerate() {
            // (x - mean) * a + b, not x * a + (b - mean * a): with a group
            // of (nearly) equal values, rstd is large and that sum cancels.
            let a = rstd * self.scale[first + c];
            let b = self.shift[first + c];
            let from = source.map(|s| &s[c * plane..(c + 1) * plane]);
            for (k, block) in channel.chunks_mut(APPLY_BLOCK).enumerate() {
                match from {
                    Some(from) => {
                        let from = &from[k * APPLY_BLOCK..k * APPLY_BLOCK + block.len()];
                        block
                            .iter_mut()
                            .zip(from)
                            .for_each(|(y, &x)| *y = (x - mean) * a + b);
                    }
                    None => block.iter_mut().for_each(|y| *y = (*y - mean) * a + b),
                }
                if let Some(silu) = silu {
                    silu.run(block)?;
                }
            }
        }
        Ok(())
    }
}

/// The mean of `values` and `1 / sqrt(variance + epsilon)`, the variance
/// taken about the mean in a second pass (as `InstanceNormalization` has it,
/// without the loss of `E[x^2] - E[x]^2`).
fn mean_and_rstd(values: &[f32], epsilon: f32) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 1.0);
    }
    let n = values.len() as f64;
    let sum: f64 = values
        .chunks(SUM_BLOCK)
        .map(|b| f64::from(lane_sum(b, |v| v)))
        .sum();
    let mean = (sum / n) as f32;
    let squares: f64 = values
        .chunks(SUM_BLOCK)
        .map(|b| {
            f64::from(lane_sum(b, |v| {
                let d = v - mean;
                d * d
            }))
        })
        .sum();
    let rstd = 1.0 / (squares / n + f64::from(epsilon)).sqrt();
    (mean, rstd as f32)
}

/// `f` summed over `block` in 16 independent lanes (vectorized).
fn lane_sum(block: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = block.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f32>() + rest
}

impl Op for GroupNorm {
    fn name(&self) -> StaticName {
        "GroupNorm".into()
    }
    op_as_typed_op!();
}

impl EvalOp for GroupNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(!inputs.is_empty(), "GroupNorm without input");
        let x = inputs.swap_remove(0);
        let shape: TVec<usize> = x.shape().into();
        ensure!(
            shape.len() >= 2 && shape[1] == self.scale.len(),
            "GroupNorm of {} channels given {shape:?}",
            self.scale.len()
        );
        let y = match Arc::try_unwrap(x.into_arc_tensor()) {
            Ok(mut y) => {
                self.normalize(None, &mut y)?;
                y
            }
            Err(x) => {
                let source = x.try_as_plain_ram()?.as_slice::<f32>()?;
                // SAFETY: the groups together cover every value, each
                // writes all of its own (`normalize`).
                let mut y = unsafe { Tensor::uninitialized::<f32>(&shape)? };
                self.normalize(Some(source), &mut y)?;
                y
            }
        };
        Ok(tvec!(y.into_tvalue()))
    }
}

impl GroupNorm {
    /// Normalize every group of `y`, reading `source` (of `y`'s shape) when
    /// given, else `y` itself; each group a unit of work on the engine's
    /// threads.
    fn normalize(&self, source: Option<&[f32]>, y: &mut Tensor) -> TractResult<()> {
        let shape: TVec<usize> = y.shape().into();
        let group_len = shape[2..].iter().product::<usize>() * (shape[1] / self.groups);
        let silu = self.silu.then(|| Func::Silu.ew_f32()).transpose()?;
        let silu = silu.as_deref();
        let per_group = self.scale.len() / self.groups;
        let mut view = y.try_as_plain_ram_mut()?;
        let mut groups: Vec<(usize, &mut [f32])> = view
            .as_slice_mut::<f32>()?
            .chunks_mut(group_len.max(1))
            .enumerate()
            .collect();
        let failure = std::sync::Mutex::new(None);
        units::for_each_mut(&mut groups, |(g, values)| {
            let from = source.map(|s| &s[*g * group_len..(*g + 1) * group_len]);
            let first = (*g % self.groups) * per_group;
            if let Err(e) = self.run_group(from, values, first, silu)
                && let Ok(mut slot) = failure.lock()
            {
                slot.get_or_insert(e);
            }
        });
        match failure.into_inner().ok().flatten() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl TypedOp for GroupNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::{self, assert_close, values};
    use tract_linalg::multithread::Executor;

    /// The fused op wired with non-trivial operands over `shape`, with `x`
    /// also an output of the plan (so the op cannot take it over) or not;
    /// the model and its input.
    fn op_model(
        shape: &[usize],
        groups: usize,
        silu: bool,
        shared: bool,
    ) -> (TypedModel, Vec<f32>) {
        let channels = shape[1];
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(shape)).unwrap();
        let mut operand = |name: &str, len: usize, dims: &[usize], seed: f32| {
            let t = tensor1(&values(len, seed)).into_shape(dims).unwrap();
            model.add_const(name, t).unwrap()
        };
        let norm_scale = operand("norm_scale", groups, &[groups], 1.0);
        let norm_bias = operand("norm_bias", groups, &[groups], 2.0);
        let ones = vec![1; shape.len() - 2];
        let per_channel: Vec<usize> = [channels].iter().chain(&ones).copied().collect();
        let weight = operand("weight", channels, &per_channel, 3.0);
        let bias = operand("bias", channels, &per_channel, 4.0);
        let expansion = GroupNormExpansion {
            epsilon: 1e-6,
            silu,
        };
        let y = expansion
            .wire("gn", &mut model, &[x, norm_scale, norm_bias, weight, bias])
            .unwrap();
        let mut outputs = y.to_vec();
        if shared {
            outputs.push(x);
        }
        model.select_output_outlets(&outputs).unwrap();
        let len: usize = shape.iter().product();
        // Groups of different means and spreads.
        let input = values(len, 0.5)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + (i * groups / len) as f32) + (i % 7) as f32 * 0.1)
            .collect();
        (model, input)
    }

    /// What the exported graph computes, in `f64`.
    fn reference(input: &[f32], shape: &[usize], groups: usize, silu: bool) -> Vec<f32> {
        let channels = shape[1];
        let plane: usize = shape[2..].iter().product();
        let per_group = channels / groups;
        let (norm_scale, norm_bias) = (values(groups, 1.0), values(groups, 2.0));
        let (weight, bias) = (values(channels, 3.0), values(channels, 4.0));
        let mut out = vec![0f32; input.len()];
        for (g, (group, out)) in input
            .chunks(per_group * plane)
            .zip(out.chunks_mut(per_group * plane))
            .enumerate()
        {
            let n = group.len() as f64;
            let mean = group.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = group
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            let g = g % groups;
            for (i, (&x, y)) in group.iter().zip(out.iter_mut()).enumerate() {
                let c = g * per_group + i / plane;
                let normalized = (f64::from(x) - mean) / (var + 1e-6).sqrt();
                let v = (normalized * f64::from(norm_scale[g]) + f64::from(norm_bias[g]))
                    * f64::from(weight[c])
                    + f64::from(bias[c]);
                let v = if silu { v / (1.0 + (-v).exp()) } else { v };
                *y = v as f32;
            }
        }
        out
    }

    /// In place and into a new tensor, with and without the SiLU, one and
    /// two images, groups of one channel and of several, odd planes, one and
    /// two threads.
    #[test]
    fn fused_group_norm_matches_the_exported_graph() {
        let cases: [(&[usize], usize); 4] = [
            (&[1, 6, 3, 5], 3),
            (&[2, 8, 7, 9], 2),
            (&[2, 4, 1, 1], 4),
            (&[1, 64, 33, 65], 32),
        ];
        for (shape, groups) in cases {
            for silu in [false, true] {
                for shared in [false, true] {
                    let (model, input) = op_model(shape, groups, silu, shared);
                    let expected = reference(&input, shape, groups, silu);
                    let tensor = tensor1(&input).into_shape(shape).unwrap();
                    for threads in [1, 2] {
                        let executor = match threads {
                            1 => Executor::SingleThread,
                            n => Executor::multithread(n),
                        };
                        let inputs = tvec!(tensor.clone().into_tvalue());
                        let got = test_support::run_plan(model.clone(), inputs, executor);
                        let what = format!(
                            "{shape:?} in {groups} groups, silu {silu}, shared {shared}, \
                             {threads} threads"
                        );
                        assert_close(&what, &expected, &got);
                    }
                }
            }
        }
    }

    /// Every `InstanceNormalization` of the tiny bundle's UNet and VAE
    /// decoder is fused, and the networks give what tract's own ops give.
    /// The decoder makes 64x64 images so that its last block's 1x1 shortcut
    /// is one the direct kernel takes.
    #[test]
    fn tiny_networks_fuse_every_group_norm_and_match_tract() {
        use crate::engine::Rewrites;
        let networks: [(&str, &[&[usize]]); 2] = [
            test_support::NETWORKS[0],
            ("vae_decoder", &[&[1, 4, 32, 32]]),
        ];
        for (network, shapes) in networks {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models/tiny-sd")
                .join(network)
                .join("model.onnx");
            let bytes = std::fs::read(&path).unwrap();
            let mut proto = <ModelProto as prost::Message>::decode(&bytes[..]).unwrap();
            let norms = |proto: &ModelProto, op: &str| {
                let graph = proto.graph.as_ref().unwrap();
                graph.node.iter().filter(|n| n.op_type == op).count()
            };
            let instance_norms = norms(&proto, "InstanceNormalization");
            let sigmoids = norms(&proto, "Sigmoid");
            assert!(instance_norms > 0, "{network}");
            assert_eq!(fuse_group_norms(&mut proto), instance_norms, "{network}");
            assert_eq!(norms(&proto, "InstanceNormalization"), 0, "{network}");
            assert_eq!(norms(&proto, OP_TYPE), instance_norms, "{network}");
            assert!(
                norms(&proto, "Sigmoid") < sigmoids,
                "{network}: no SiLU fused"
            );

            let (expected, plan) = test_support::run(network, shapes, Rewrites::NONE);
            assert_eq!(test_support::count(&plan, |n| n.op_is::<GroupNorm>()), 0);
            let fused = Rewrites {
                group_norm: true,
                ..Rewrites::NONE
            };
            let (got, plan) = test_support::run(network, shapes, fused);
            let count = test_support::count(&plan, |n| n.op_is::<GroupNorm>());
            assert_eq!(count, instance_norms, "{network}");
            // The decoder's last block changes width with a 1x1 shortcut:
            // its first norm runs after it, on the direct kernel's CPUs.
            let after =
                test_support::count(&plan, |n| n.op_is::<GroupNorm>() && n.inputs.len() > 1);
            let expected_after = network == "vae_decoder" && direct_conv::available();
            assert_eq!(
                after > 0,
                expected_after,
                "{network}: {after} norms after a shortcut"
            );
            assert_close(network, &expected, &got);
        }
    }
}
