//! Deep convolutions split by input channel so each part fits the cache.
//!
//! tract runs a convolution as one matrix product whose inner dimension K is
//! input channels x kernel area, and it blocks that product over rows and
//! columns but never over K. The UNet's low-resolution convolutions have
//! K = 11,520-23,040 (1,280-2,560 channels, 3x3): one packed panel pair is
//! then megabytes, far over L2, and those products ran at 83-123 GFLOP/s
//! where shallower ones reach 150; the VAE's 512-channel ones (K = 4,608)
//! at about 100. Splitting the input channels into groups gives
//! convolutions of smaller K whose outputs are summed: the whole product
//! with its additions in another order. The parts and their sum cost one
//! extra pass over the output, far less than the slow product did, and the
//! peak memory of a 4K job did not grow (`pocket-studio bench`).

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::Slice;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::math::add;

/// The deepest product (input channels x kernel area) left whole: 128
/// channels of 3x3, a packed panel pair of about 100 KB. Chosen by
/// `profile_onnx` on the realistic bundle, pairs of runs alternating (ms per
/// call, UNet batch 2 at 48x84 / VAE decoder 48x84 -> 384x672): unsplit
/// 10,579 and 11,347 / 21,510 and 23,343; depth 5,760: 9,188 and 10,533;
/// 2,304: 10,034 and 10,360 / 20,372-23,001; 1,152: 9,412-10,644 / 22,140 and
/// 22,174; 576: 10,783 and 12,157 / 29,069.
pub const MAX_DEPTH: usize = 1152;

/// One convolution to split.
struct Site {
    conv: usize,
    groups: usize,
}

/// Rewrite every float convolution deeper than `max_depth` into input-channel
/// groups of at most that depth, summed; returns how many were split.
pub fn split_deep_convolutions(model: &mut TypedModel, max_depth: usize) -> TractResult<usize> {
    super::rewrite_each(model, |m, id| find(m, id, max_depth), rewrite)
}

fn find(model: &TypedModel, node: usize, max_depth: usize) -> TractResult<Option<Site>> {
    let node = &model.nodes[node];
    let Some(op) = node.op_as::<Conv>() else {
        return Ok(None);
    };
    if op.q_params.is_some()
        || op.group != 1
        || op.kernel_fmt != KernelFormat::OIHW
        || node.inputs.len() != 3
    {
        return Ok(None);
    }
    // f32 only: the other groups' zero bias is an f32 scalar.
    let kernel = model.outlet_fact(node.inputs[1])?;
    let input = model.outlet_fact(node.inputs[0])?;
    if kernel.konst.is_none()
        || kernel.datum_type != f32::datum_type()
        || input.datum_type != f32::datum_type()
    {
        return Ok(None);
    }
    let area: usize = op.pool_spec.kernel_shape.iter().product();
    let channels = op.input_channels();
    if channels * area <= max_depth {
        return Ok(None);
    }
    // The fewest groups that divide the channels evenly and are shallow enough.
    let groups = (2..=channels).find(|g| channels % g == 0 && channels / g * area <= max_depth);
    Ok(groups.map(|groups| Site {
        conv: node.id,
        groups,
    }))
}

fn rewrite(model: &mut TypedModel, site: &Site) -> TractResult<()> {
    let node = &model.nodes[site.conv];
    let op = node.op_as::<Conv>().context("a convolution")?;
    let name = &node.name;
    let input_fact = model.outlet_fact(node.inputs[0])?;
    let channel_axis = op
        .pool_spec
        .data_format
        .shape(input_fact.shape.to_tvec())?
        .c_axis();
    let kernel = model
        .outlet_fact(node.inputs[1])?
        .konst
        .clone()
        .context("a constant kernel")?;
    let width = op.input_channels() / site.groups;
    let mut part_op = op.clone();
    part_op.pool_spec.input_channels = width;

    let mut patch = TypedModelPatch::new(format!("split convolution {name}"));
    let x = patch.tap_model(model, node.inputs[0])?;
    let bias = patch.tap_model(model, node.inputs[2])?;
    let no_bias = patch.add_const(format!("{name}.no_bias"), tensor0(0f32))?;
    let mut sum: Option<OutletId> = None;
    for group in 0..site.groups {
        let (start, end) = (group * width, (group + 1) * width);
        let tag = format!("{name}.in{start}");
        let xs = patch.wire_node(
            format!("{tag}.x"),
            Slice::new(channel_axis, start, end),
            &[x],
        )?[0];
        // OIHW: the kernel's input channels are its axis 1.
        let ks = patch.add_const(format!("{tag}.kernel"), kernel.slice(1, start, end)?)?;
        let b = if group == 0 { bias } else { no_bias };
        let part = patch.wire_node(&tag, part_op.clone(), &[xs, ks, b])?[0];
        sum = Some(match sum {
            None => part,
            Some(s) => patch.wire_node(format!("{tag}.sum"), add(), &[s, part])?[0],
        });
    }
    let sum = sum.context("at least one group")?;
    patch.shunt_outside(model, OutletId::new(site.conv, 0), sum)?;
    patch.apply(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x3 convolution, 8 -> 3 channels over 5x6, padded, with a bias.
    fn conv_model() -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 8, 5, 6])).unwrap();
        let values = |n: usize, seed: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
        };
        let kernel = tensor1(&values(3 * 8 * 9, 1.0))
            .into_shape(&[3, 8, 3, 3])
            .unwrap();
        let kernel = model.add_const("kernel", kernel).unwrap();
        let bias = model
            .add_const("bias", tensor1(&[0.5f32, -1.0, 2.0]))
            .unwrap();
        let conv = crate::engine::test_support::same_size_conv(3, 8, 3);
        let out = model.wire_node("conv", conv, &[x, kernel, bias]).unwrap();
        model.select_output_outlets(&out).unwrap();
        model
    }

    fn run(model: TypedModel) -> Vec<f32> {
        let input: Vec<f32> = (0..8 * 5 * 6).map(|i| (i as f32 * 0.11).cos()).collect();
        let input = tensor1(&input).into_shape(&[1, 8, 5, 6]).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let out = plan.run(tvec!(input.into_tvalue())).unwrap();
        crate::engine::Tensor::from_tract(&out[0])
            .unwrap()
            .into_f32()
    }

    #[test]
    fn split_convolution_gives_the_same_pixels() {
        let whole = run(conv_model());
        let mut split = conv_model();
        // Depth 8 x 9 = 72 against at most 18: four groups of two channels.
        assert_eq!(split_deep_convolutions(&mut split, 18).unwrap(), 1);
        let parts = split.nodes.iter().filter(|n| n.op_is::<Conv>()).count();
        assert_eq!(parts, 4);
        let split = run(split);
        assert_eq!(whole.len(), 3 * 5 * 6);
        assert_eq!(whole.len(), split.len());
        for (a, b) in whole.iter().zip(&split) {
            assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
        }
    }

    /// The rewrite on real diffusers graphs: with every convolution deeper
    /// than 32 channels of 3x3 split (and none run by the direct kernel),
    /// the tiny UNet and VAE decoder give the outputs they give whole.
    #[test]
    fn split_tiny_networks_match_whole() {
        use crate::engine::{Rewrites, test_support};
        let first_groups =
            |plan: &TypedModel| test_support::count(plan, |n| n.name.contains(".in0"));
        for (network, shapes) in test_support::NETWORKS {
            let rewrites = |split_depth| Rewrites {
                split_depth,
                ..Rewrites::NONE
            };
            let (whole, plan) = test_support::run(network, shapes, rewrites(usize::MAX));
            assert_eq!(first_groups(&plan), 0, "{network}");
            let (split, plan) = test_support::run(network, shapes, rewrites(32 * 9));
            assert!(first_groups(&plan) > 0, "{network}: nothing was split");
            test_support::assert_close(network, &whole, &split);
        }
    }

    #[test]
    fn shallow_convolution_is_left_alone() {
        let mut model = conv_model();
        assert_eq!(split_deep_convolutions(&mut model, MAX_DEPTH).unwrap(), 0);
    }
}
