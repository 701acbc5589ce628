//! The one place that touches tract: load an ONNX graph once, specialise it to
//! concrete input shapes, keep the optimized plan, run tensors through it.
//!
//! Everything outside this module speaks [`Tensor`], so an NPU delegate can be
//! added beside tract later without the pipeline noticing. Never loads a model
//! twice for the same shapes: plans are cached per input-shape set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::error::{Error, ModelFault, Result};

/// Element values of a [`Tensor`]; the engine casts to what the graph declares.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// 32-bit floats (latents, embeddings, images).
    F32(Vec<f32>),
    /// 64-bit integers (token ids).
    I64(Vec<i64>),
}

/// A dense row-major tensor, the currency between the pipeline and the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Data,
}

impl Tensor {
    /// A float tensor; `data.len()` must equal the product of `shape`.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: Data::F32(data),
        }
    }

    /// An integer tensor; `data.len()` must equal the product of `shape`.
    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: Data::I64(data),
        }
    }

    /// The values as floats (integers are converted).
    pub fn into_f32(self) -> Vec<f32> {
        match self.data {
            Data::F32(v) => v,
            Data::I64(v) => v.into_iter().map(|x| x as f32).collect(),
        }
    }

    fn to_tract(&self) -> TractResult<tract_onnx::prelude::Tensor> {
        match &self.data {
            Data::F32(v) => tract_onnx::prelude::Tensor::from_shape(&self.shape, v),
            Data::I64(v) => tract_onnx::prelude::Tensor::from_shape(&self.shape, v),
        }
    }

    fn from_tract(t: &tract_onnx::prelude::Tensor) -> TractResult<Self> {
        let shape = t.shape().to_vec();
        if t.datum_type() == i64::datum_type() {
            let view = t.to_plain_array_view::<i64>()?;
            return Ok(Tensor::i64(shape, view.iter().copied().collect()));
        }
        let t = t.cast_to::<f32>()?;
        let view = t.to_plain_array_view::<f32>()?;
        Ok(Tensor::f32(shape, view.iter().copied().collect()))
    }
}

type Plan = Arc<TypedRunnableModel>;

/// One ONNX network, parsed once, with an optimized plan per input shape set.
pub struct Model {
    path: PathBuf,
    stage: &'static str,
    proto: InferenceModel,
    input_types: Vec<DatumType>,
    plans: Mutex<HashMap<Vec<Vec<usize>>, Plan>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Parse an ONNX file. `stage` names the network in errors and logs.
    pub fn load(path: &Path, stage: &'static str) -> Result<Self> {
        let started = Instant::now();
        let unloadable = |e: TractError| Error::model(path, ModelFault::Invalid(format!("{e:#}")));
        let proto = onnx().model_for_path(path).map_err(unloadable)?;
        let inputs = proto.input_outlets().map_err(unloadable)?.len();
        let mut input_types = Vec::with_capacity(inputs);
        for ix in 0..inputs {
            let fact = proto.input_fact(ix).map_err(unloadable)?;
            input_types.push(fact.datum_type.concretize().unwrap_or(f32::datum_type()));
        }
        log::info!(
            "{stage}: loaded {} in {} ms",
            path.display(),
            started.elapsed().as_millis()
        );
        Ok(Model {
            path: path.to_path_buf(),
            stage,
            proto,
            input_types,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Make the plan for these input shapes now (optimizing takes seconds on
    /// large graphs), so the first real call is not the slow one.
    pub fn prepare(&self, shapes: &[Vec<usize>]) -> Result<()> {
        self.plan(shapes).map(|_| ())
    }

    /// Run the network. Inputs come in the graph's input order.
    pub fn run(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let fail = |e: TractError| Error::Inference {
            stage: self.stage,
            reason: format!("{e:#}"),
        };
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape.clone()).collect();
        let plan = self.plan(&shapes)?;
        let mut values = TVec::new();
        for (ix, input) in inputs.iter().enumerate() {
            let tensor = input.to_tract().map_err(fail)?;
            let wanted = self
                .input_types
                .get(ix)
                .copied()
                .unwrap_or(tensor.datum_type());
            let tensor = tensor.cast_to_dt(wanted).map_err(fail)?.into_owned();
            values.push(tensor.into_tvalue());
        }
        let outputs = plan.run(values).map_err(fail)?;
        outputs
            .iter()
            .map(|t| Tensor::from_tract(t).map_err(fail))
            .collect()
    }

    fn plan(&self, shapes: &[Vec<usize>]) -> Result<Plan> {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plan) = plans.get(shapes) {
            return Ok(plan.clone());
        }
        if shapes.len() != self.input_types.len() {
            return Err(Error::Inference {
                stage: self.stage,
                reason: format!(
                    "{} takes {} inputs, got {}",
                    self.path.display(),
                    self.input_types.len(),
                    shapes.len()
                ),
            });
        }
        let started = Instant::now();
        let unloadable =
            |e: TractError| Error::model(&self.path, ModelFault::Invalid(format!("{e:#}")));
        let mut model = self.proto.clone();
        for (ix, shape) in shapes.iter().enumerate() {
            let fact = InferenceFact::dt_shape(self.input_types[ix], shape.clone());
            model = model.with_input_fact(ix, fact).map_err(unloadable)?;
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(unloadable)?;
        log::info!(
            "{}: optimized for {:?} in {} ms",
            self.stage,
            shapes,
            started.elapsed().as_millis()
        );
        plans.insert(shapes.to_vec(), plan.clone());
        Ok(plan)
    }
}
