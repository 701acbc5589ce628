//! What the convolution ops (`direct_conv.rs`, `winograd.rs`) share: which
//! convolutions they take, putting an op in one's place, and the shape,
//! output facts and cost of a call.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// A convolution our kernels take: float,
/// NCHW, a 3x3 ("same" padding) or 1x1 kernel, stride and dilation 1, one
/// group, constant weights and bias, an input shape known when planned.
pub(super) struct SameSizeConv<'a> {
    /// The kernel's side, 1 or 3.
    pub size: usize,
    pub inputs: usize,
    pub outputs: usize,
    /// Height times width of the input.
    pub pixels: usize,
    /// OIHW.
    pub kernel: &'a Tensor,
    /// One value, or one per output channel.
    pub bias: &'a Tensor,
}

impl<'a> SameSizeConv<'a> {
    /// Node `id` of `model`, if it is such a convolution.
    pub fn at(model: &'a TypedModel, id: usize) -> TractResult<Option<SameSizeConv<'a>>> {
        let node = &model.nodes[id];
        let Some(conv) = node.op_as::<Conv>() else {
            return Ok(None);
        };
        let spec = &conv.pool_spec;
        if conv.q_params.is_some()
            || conv.group != 1
            || conv.kernel_fmt != KernelFormat::OIHW
            || node.inputs.len() != 3
            || spec.data_format != DataFormat::NCHW
            || spec.kernel_shape.len() != 2
            || spec.strides.iter().flatten().any(|&s| s != 1)
            || spec.dilations.iter().flatten().any(|&d| d != 1)
        {
            return Ok(None);
        }
        let size = spec.kernel_shape[0];
        if spec.kernel_shape[1] != size || !(size == 1 || size == 3) {
            return Ok(None);
        }
        let border = size / 2;
        let same_size = match &spec.padding {
            PaddingSpec::Explicit(before, after)
            | PaddingSpec::ExplicitOnnxPool(before, after, _) => {
                before.iter().chain(after).all(|&p| p == border)
            }
            PaddingSpec::Valid => border == 0,
            PaddingSpec::SameUpper | PaddingSpec::SameLower => true,
        };
        let input = model.outlet_fact(node.inputs[0])?;
        let kernel = model.outlet_fact(node.inputs[1])?;
        let bias = model.outlet_fact(node.inputs[2])?;
        let pixels = match input.shape.as_concrete() {
            Some(&[_, _, height, width]) => height * width,
            _ => return Ok(None),
        };
        if !same_size
            || input.datum_type != f32::datum_type()
            || kernel.datum_type != f32::datum_type()
            || bias.datum_type != f32::datum_type()
        {
            return Ok(None);
        }
        let (Some(kernel), Some(bias)) = (&kernel.konst, &bias.konst) else {
            return Ok(None);
        };
        let (inputs, outputs) = (spec.input_channels, spec.output_channels);
        if inputs == 0
            || outputs == 0
            || kernel.shape() != [outputs, inputs, size, size]
            || !(bias.len() == 1 || bias.len() == outputs)
        {
            return Ok(None);
        }
        Ok(Some(SameSizeConv {
            size,
            inputs,
            outputs,
            pixels,
            kernel,
            bias,
        }))
    }
}

/// Put `op` (taking the image, giving the convolution's output) in place
/// of convolution node `conv`.
pub(super) fn replace_conv(
    model: &mut TypedModel,
    conv: usize,
    op: impl TypedOp,
) -> TractResult<()> {
    let node = &model.nodes[conv];
    let mut patch = TypedModelPatch::new(format!("{} for {}", op.name(), node.name));
    let x = patch.tap_model(model, node.inputs[0])?;
    let name = replacement_name(&node.name, &op);
    let y = patch.wire_node(name, op, &[x])?[0];
    patch.shunt_outside(model, OutletId::new(conv, 0), y)?;
    patch.apply(model)
}

/// The name [`replace_conv`] gives `op` put in place of node `conv_name`.
pub(super) fn replacement_name(conv_name: &str, op: &impl TypedOp) -> String {
    format!("{}.{}", conv_name, op.name().to_lowercase())
}

/// The shape of one call's input.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    pub images: usize,
    pub height: usize,
    pub width: usize,
}

impl Geometry {
    /// The shape of `x`, which op `name` takes with `inputs` channels, on a
    /// CPU that runs the engine's kernels (AVX2 and FMA, or aarch64).
    pub fn of(x: &Tensor, inputs: usize, name: &str) -> TractResult<Geometry> {
        let &[images, channels, height, width] = x.shape() else {
            bail!("{name} takes NCHW input, got {:?}", x.shape());
        };
        ensure!(
            channels == inputs,
            "{channels} input channels, expected {inputs}"
        );
        ensure!(
            super::direct_conv::available(),
            "{name} needs AVX2 and FMA, or aarch64 NEON"
        );
        Ok(Geometry {
            images,
            height,
            width,
        })
    }
}

/// The output fact of a convolution of `inputs` to `outputs` channels that
/// keeps the image size.
pub(super) fn output_facts(
    facts: &[&TypedFact],
    inputs: usize,
    outputs: usize,
) -> TractResult<TVec<TypedFact>> {
    let shape = &facts[0].shape;
    ensure!(shape.len() == 4 && shape[1] == inputs.to_dim());
    let out = tvec![
        shape[0].clone(),
        outputs.to_dim(),
        shape[2].clone(),
        shape[3].clone()
    ];
    Ok(tvec!(f32::fact(out)))
}

/// `per_pixel` multiply-adds for every pixel of every image.
pub(super) fn cost(facts: &[&TypedFact], per_pixel: usize) -> TractResult<TVec<(Cost, TDim)>> {
    let shape = &facts[0].shape;
    let pixels: TDim = shape.iter().skip(2).product::<TDim>() * shape[0].clone();
    Ok(tvec!((Cost::FMA(f32::datum_type()), pixels * per_pixel)))
}
