//! ONNX `PRelu` with one slope per channel, as one in-place pass.
//!
//! tract expands `PRelu` into a comparison, a multiplication and a select,
//! each a full pass over the tensor, and the input fans out to all three so
//! none can work in place: on Real-ESRGAN's compact model (a PReLU after each
//! of 17 convolutions) that was 19 % of a tile's time. This op rewrites
//! negative values in place, channel by channel. Slopes must be constants
//! broadcasting along axis 1 (or one scalar); anything else keeps tract's own
//! expansion. `tests/it/pipeline.rs` checks it against onnxruntime through the
//! upscaler's parity test.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::tract_ndarray::Axis;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_hir::internal::{Expansion, InferenceResult, Solver, TensorProxy, expand};

/// `Onnx::op_register` entry for `PRelu`.
pub fn build(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(
    Box<dyn tract_onnx::tract_hir::infer::InferenceOp>,
    Vec<String>,
)> {
    Ok((expand(PreluExpansion), vec![]))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct PreluExpansion;

impl Expansion for PreluExpansion {
    fn name(&self) -> StaticName {
        "PRelu".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::output_like_first_input(s, inputs, outputs, 2)
    }

    fn wire(
        &self,
        name: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = model.outlet_fact(inputs[0])?.clone();
        let slope = model.outlet_fact(inputs[1])?.clone();
        if let Some(slopes) = channel_slopes(&x, &slope) {
            return model.wire_node(name, ChannelPrelu { slopes }, &[inputs[0]]);
        }
        // General case: max(x, 0) + slope * min(x, 0), broadcast as ONNX does.
        let rank = x.rank();
        let mut b = inputs[1];
        while model.outlet_fact(b)?.rank() < rank {
            let r = model.outlet_fact(b)?.rank();
            b = model.wire_node(format!("{name}.axis{r}"), AxisOp::Add(0), &[b])?[0];
        }
        let zero = tensor0(0f32)
            .cast_to_dt(x.datum_type)?
            .into_owned()
            .broadcast_into_rank(rank)?;
        let zero = model.add_const(format!("{name}.zero"), zero)?;
        let min = tract_onnx::tract_core::ops::math::min();
        let max = tract_onnx::tract_core::ops::math::max();
        let mul = tract_onnx::tract_core::ops::math::mul();
        let add = tract_onnx::tract_core::ops::math::add();
        let neg = model.wire_node(format!("{name}.neg"), min, &[inputs[0], zero])?[0];
        let pos = model.wire_node(format!("{name}.pos"), max, &[inputs[0], zero])?[0];
        let scaled = model.wire_node(format!("{name}.scaled"), mul, &[neg, b])?[0];
        model.wire_node(name, add, &[pos, scaled])
    }
}

/// The slopes as `[C]` f32 when they are constant and apply per channel
/// (axis 1) or as one scalar to an f32 tensor with concrete channels.
fn channel_slopes(x: &TypedFact, slope: &TypedFact) -> Option<Arc<Tensor>> {
    if x.datum_type != f32::datum_type() || x.rank() < 2 {
        return None;
    }
    let k = slope.konst.as_ref()?;
    let values = k.cast_to::<f32>().ok()?;
    let values: Vec<f32> = values
        .to_plain_array_view::<f32>()
        .ok()?
        .iter()
        .copied()
        .collect();
    let channels = x.shape[1].to_usize().ok()?;
    let dims = k.shape();
    let per_channel = values.len() == channels
        && dims.len() == x.rank() - 1
        && dims[0] == channels
        && dims[1..].iter().all(|&d| d == 1);
    let scalar = values.len() == 1;
    let slopes = if per_channel {
        values
    } else if scalar {
        vec![values[0]; channels]
    } else {
        return None;
    };
    Some(Arc::new(tensor1(&slopes)))
}

/// `y = x < 0 ? slope[c] * x : x` over axis 1, in place.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(super) struct ChannelPrelu {
    slopes: Arc<Tensor>,
}

impl Op for ChannelPrelu {
    fn name(&self) -> StaticName {
        "ChannelPrelu".into()
    }
    op_as_typed_op!();
}

impl EvalOp for ChannelPrelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let mut x = x.into_tensor();
        let slopes = self.slopes.to_plain_array_view::<f32>()?;
        let slopes = slopes.as_slice().context("slopes are not contiguous")?;
        {
            let mut view = x.to_plain_array_view_mut::<f32>()?;
            ensure!(view.ndim() >= 2 && view.shape()[1] == slopes.len());
            for (c, mut lane) in view.axis_iter_mut(Axis(1)).enumerate() {
                let a = slopes[c];
                lane.mapv_inplace(|v| if v < 0.0 { v * a } else { v });
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for ChannelPrelu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: [f32; 8] = [1.0, -2.0, 0.0, -0.5, 3.0, -4.0, -0.0, 2.5];
    const SLOPES: [f32; 2] = [0.25, -1.5];

    fn expected() -> Vec<f32> {
        X.iter()
            .enumerate()
            .map(|(i, &v)| if v < 0.0 { v * SLOPES[i / 4] } else { v })
            .collect()
    }

    /// Wire `PRelu(x, slope)` with the slope constant or a second input.
    fn run(constant_slope: bool) -> Vec<f32> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 2, 2, 2])).unwrap();
        let slope_tensor = tensor1(&SLOPES).into_shape(&[2, 1, 1]).unwrap();
        let mut inputs = tvec!(tensor1(&X).into_shape(&[1, 2, 2, 2]).unwrap().into_tvalue());
        let slope = if constant_slope {
            model.add_const("slope", slope_tensor).unwrap()
        } else {
            inputs.push(slope_tensor.into_tvalue());
            model.add_source("slope", f32::fact([2, 1, 1])).unwrap()
        };
        let out = PreluExpansion
            .wire("prelu", &mut model, &[x, slope])
            .unwrap();
        model.select_output_outlets(&out).unwrap();
        let fused = model.nodes.iter().any(|n| n.op_is::<ChannelPrelu>());
        assert_eq!(
            fused, constant_slope,
            "the fused op is used for constant slopes only"
        );
        let plan = model.into_runnable().unwrap();
        let result = plan.run(inputs).unwrap();
        crate::engine::Tensor::from_tract(&result[0])
            .unwrap()
            .into_f32()
    }

    #[test]
    fn constant_slopes_run_in_place_per_channel() {
        assert_eq!(run(true), expected());
    }

    #[test]
    fn other_slopes_keep_the_general_formula() {
        assert_eq!(run(false), expected());
    }
}
