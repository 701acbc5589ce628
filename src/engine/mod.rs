//! The one place that touches tract: load an ONNX graph once, specialise it to
//! concrete input shapes, keep the optimized plan, run tensors through it.
//!
//! Everything outside this module speaks [`Tensor`], so an NPU delegate can be
//! added beside tract later without the pipeline noticing. Memory is what a
//! board runs out of first, so a model holds one copy of its weights: the
//! parsed graph until the first plan is made, then only that plan (tract
//! packs the weights into the plan, a second copy). A call with other input
//! shapes re-reads the file and replaces the plan.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::knobs::KnobScope;
use tract_onnx::tract_core::ops::Cost;
use tract_onnx::tract_hir::infer::Factoid;

use crate::error::{Error, ModelFault, Result};

mod attention;
mod conv_split;
pub mod cpu;
mod direct_conv;
mod fused_attention;
mod group_norm;
mod large_blocks;
mod prelu;
mod product_tile;
mod same_size;
mod units;
mod winograd;

pub use large_blocks::{LargeBlocks, large_blocks_in_use};

/// tract's ONNX front end with our faster operators registered (public for
/// `examples/profile_onnx.rs`).
pub fn onnx_parser() -> tract_onnx::Onnx {
    let mut parser = onnx();
    parser.op_register.insert("PRelu", prelu::build);
    parser
        .op_register
        .insert(group_norm::OP_TYPE, group_norm::build);
    parser
}

/// The inference rules of our ONNX operators (`prelu.rs`, `group_norm.rs`):
/// `arity` inputs, one output of the first input's type and shape.
fn output_like_first_input<'r, 'p: 'r>(
    s: &mut tract_onnx::tract_hir::internal::Solver<'r>,
    inputs: &'p [tract_onnx::tract_hir::internal::TensorProxy],
    outputs: &'p [tract_onnx::tract_hir::internal::TensorProxy],
    arity: usize,
) -> tract_onnx::tract_hir::internal::InferenceResult {
    use tract_onnx::tract_hir::internal::{check_input_arity, check_output_arity};
    check_input_arity(inputs, arity)?;
    check_output_arity(outputs, 1)?;
    s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
    s.equals(&inputs[0].shape, &outputs[0].shape)?;
    Ok(())
}

/// Parse an ONNX file as the engine does (our graph rewrites and operators),
/// without a checksum: for `examples/profile_onnx.rs`.
pub fn parse_unchecked(path: &Path) -> Result<InferenceModel> {
    parse(path, None)
}

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

/// Cores one network call may use (0 = all), read when the pool is built.
static THREADS: AtomicUsize = AtomicUsize::new(0);
/// The pool every network call runs its matrix products and element-wise
/// ops on, built by the first call so its threads inherit that thread's
/// scheduling priority (the service's niced inference thread).
static POOL: OnceLock<Executor> = OnceLock::new();

/// The arithmetic of the networks' plans (`[engine] precision`). f16
/// halves the bytes every activation and weight moves and, on cores with
/// half-precision arithmetic (ARMv8.2 FP16, `asimdhp`: the boards'
/// Cortex-A76 and A55), doubles the multiply-adds a vector instruction of
/// tract's products does, at a price in accuracy (`docs/benchmarks.md`).
/// tract's own ops then run in f16 (its float-precision translation); ours
/// (Winograd, direct convolution, fused attention, GroupNorm, PReLU) keep
/// f32, with casts at their edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f16 where the CPU does half-precision arithmetic and tract runs its
    /// f16 kernels on it, else f32.
    #[default]
    Auto,
    /// Single precision throughout (the diffusers parity tests' setting).
    F32,
    /// Half precision in tract's ops, on any CPU (emulated, and slow,
    /// where the CPU has no f16 arithmetic).
    F16,
}

impl Precision {
    /// `Auto` decided for this CPU; the others as they are.
    pub fn resolve(self) -> Precision {
        match self {
            Precision::Auto
                if cpu::half_precision()
                    && tract_linalg::isa::native().has(tract_linalg::isa::Isa::Aarch64Fp16) =>
            {
                Precision::F16
            }
            Precision::Auto => Precision::F32,
            other => other,
        }
    }

    /// The config's and the CLI's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Precision::Auto),
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => Err(format!("precision must be auto, f32 or f16, not {other:?}")),
        }
    }
}

/// [`Precision`] of the models loaded from now on, resolved, as its
/// discriminant: f32 is the library's default, so tests and library users
/// get diffusers' numbers unless they ask; the programs set it from
/// `[engine] precision`.
static PRECISION: AtomicU8 = AtomicU8::new(Precision::F32 as u8);

/// Set the precision of the networks loaded from now on (`[engine]
/// precision`; the CLI's `--precision`).
pub fn set_precision(precision: Precision) {
    PRECISION.store(precision.resolve() as u8, Ordering::Relaxed);
}

/// The precision networks loaded now get: f32 or f16.
pub fn precision() -> Precision {
    if PRECISION.load(Ordering::Relaxed) == Precision::F16 as u8 {
        Precision::F16
    } else {
        Precision::F32
    }
}

/// How many cores a network call may use (`threads` in the config, 0 = all).
/// Takes effect if called before the first network call of the process.
pub fn set_threads(threads: usize) {
    THREADS.store(threads, Ordering::Relaxed);
}

fn pool() -> &'static Executor {
    POOL.get_or_init(|| {
        let n = match THREADS.load(Ordering::Relaxed) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        if n <= 1 {
            return Executor::SingleThread;
        }
        match rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("engine-{i}"))
            .build()
        {
            Ok(pool) => Executor::MultiThread(Arc::new(pool)),
            Err(e) => {
                log::warn!("engine: cannot start {n} threads ({e}); running on one core");
                Executor::SingleThread
            }
        }
    })
}

/// Keep freed tensor buffers in the heap instead of handing them back to the
/// kernel: every network call allocates and frees the same large activation
/// buffers, and fresh pages from the kernel cost a page fault each. glibc
/// maps every block over 32 MiB (its largest threshold) straight from the
/// kernel and unmaps it on free, so mapping is switched off and the heap
/// serves all sizes (measured with `profile_onnx`: the upscaler's 128 px
/// tile 555 -> 471 ms with the threshold; the SD VAE decoder at 672x384,
/// whose activations are 130-260 MB, 31.4 -> 24.0 s without mapping, its
/// padding copies 4.1 -> 0.6 s). Freed memory stays with the process until
/// [`release_free_memory`]. Programs that install [`LargeBlocks`] as their
/// global allocator send blocks of 16 MiB and up there instead, which keeps
/// them without the heap's fragmentation. Call once at start, before
/// threads: it may start the program again (see [`HUGE_PAGES_TUNABLE`]).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    restart_with_huge_pages();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator thresholds; called at
    // start before other threads allocate.
    unsafe {
        // glibc's largest allowed mmap threshold (32 MiB on 64-bit).
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_MMAP_MAX, 0);
    }
}

/// glibc's setting that has the heap ask for transparent huge pages as it
/// grows. Parsing a network writes every weight twice into fresh memory, and
/// each fresh 4 KiB page costs a fault; 2 MiB pages cut the start to READY
/// about 2-4x (`pocket-studio bench --end-to-end`, warm page cache: 5.3-7.0 s
/// -> 1.7-2.5 s with the realistic bundle); the networks' call times do not
/// change. glibc reads it only from the environment when a program starts.
pub const HUGE_PAGES_TUNABLE: &str = "glibc.malloc.hugetlb=1";
/// The name part of [`HUGE_PAGES_TUNABLE`]: any setting of it is respected.
const HUGE_PAGES_TUNABLE_NAME: &str = "glibc.malloc.hugetlb";

/// Start this program again with [`HUGE_PAGES_TUNABLE`] added to
/// `GLIBC_TUNABLES`, unless the environment already says something about it
/// (`glibc.malloc.hugetlb=0` opts out). Same process id (`exec`), so systemd
/// and the caller see nothing; if the program cannot be executed again it
/// simply runs on with small pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restart_with_huge_pages() {
    use std::os::unix::process::CommandExt;
    const VARIABLE: &str = "GLIBC_TUNABLES";
    let current = std::env::var(VARIABLE).unwrap_or_default();
    // SAFETY: getauxval only reads the auxiliary vector. A privileged
    // (secure-mode) program gets GLIBC_TUNABLES stripped, so starting it
    // again would never end.
    let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
    if current.contains(HUGE_PAGES_TUNABLE_NAME) || secure {
        return;
    }
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let tunables = if current.is_empty() {
        HUGE_PAGES_TUNABLE.to_string()
    } else {
        format!("{current}:{HUGE_PAGES_TUNABLE}")
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(program);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // Returns only on failure; the program then runs on as it is.
    let _ = command.args(args).env(VARIABLE, tunables).exec();
}

/// Run `work` with every network call inside it on the calling thread only:
/// for callers that already spread independent calls over the cores (upscale
/// tiles), where a second level of threads would only contend.
pub fn single_threaded<R>(work: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ALONE.with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(ALONE.with(|a| a.replace(true)));
    work()
}

thread_local! {
    /// Set inside [`single_threaded`].
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// tract settings that plans are optimized under, each measured on our
/// models (`cargo run --release --example profile_onnx`, x86_64 AVX2):
/// im2col and a matrix product beat tract's direct spatial convolution 2.5x
/// on the upscaler's 64-channel 3x3 convolutions (1398 -> 555 ms per 128 px
/// tile); 1x1 convolutions as plain matrix products instead of lazy im2col
/// (7.6 -> 6.3 s for the SD VAE decoder at 256 px). 3x3 kernels stay lazy
/// (tract's rule), so no large im2col buffer is ever made.
pub const KNOBS: [(&str, &str); 2] = [
    ("TRACT_DISABLE_DIRECT_SPATIAL", "true"),
    ("TRACT_LAZY_IM2COL_MAX_EAGER_BYTES", "18446744073709551615"),
];

/// The optimized plan of a [`Model`] and the input shapes it was made for.
struct Specialised {
    shapes: Vec<Vec<usize>>,
    precision: Precision,
    plan: Plan,
    /// Multiply-adds of one call, when tract's cost model gives a number.
    multiply_adds: Option<u64>,
}

/// Where a [`Model`]'s weights live right now: one copy at a time.
enum Held {
    /// Parsed, not yet specialised to input shapes.
    Parsed(InferenceModel),
    /// Specialised; the parsed graph was dropped.
    Planned(Specialised),
    /// A planning attempt failed after the parsed graph was consumed.
    Empty,
}

/// One ONNX network and its optimized plan for the shapes last asked for.
pub struct Model {
    path: PathBuf,
    stage: &'static str,
    /// What the file must hash to whenever it is read (see [`Model::load_checked`]).
    sha256: Option<String>,
    input_types: Vec<DatumType>,
    /// f32 or f16 (see [`Precision`]); a change replans.
    precision: Precision,
    held: Mutex<Held>,
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
    /// Parse an ONNX file nothing vouches for. `stage` names the network in
    /// errors and logs.
    pub fn load(path: &Path, stage: &'static str) -> Result<Self> {
        Self::load_checked(path, stage, None)
    }

    /// Parse an ONNX file that must hash to `sha256` (when given; hashed
    /// while parsing), and again whenever it is read for new input shapes,
    /// so images never come from weights other than the ones their metadata
    /// names.
    pub fn load_checked(path: &Path, stage: &'static str, sha256: Option<&str>) -> Result<Self> {
        let started = Instant::now();
        let unloadable = |e: TractError| Error::model(path, ModelFault::Invalid(format!("{e:#}")));
        let proto = parse(path, sha256)?;
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
            sha256: sha256.map(str::to_string),
            input_types,
            precision: precision(),
            held: Mutex::new(Held::Parsed(proto)),
        })
    }

    /// Plan this network in `precision` from its next call on (`Auto` is
    /// resolved for this CPU).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision.resolve();
    }

    /// Make the plan for these input shapes now (optimizing takes seconds on
    /// large graphs), so the first real call is not the slow one.
    pub fn prepare(&self, shapes: &[Vec<usize>]) -> Result<()> {
        self.plan(shapes).map(|_| ())
    }

    /// Multiply-adds of the last call, as tract counts them on its optimized
    /// plan (convolutions and matrix products), for the benchmark's GFLOP/s;
    /// `None` before any call or when a cost is not a plain number.
    pub fn last_call_multiply_adds(&self) -> Option<u64> {
        match &*self.held.lock().unwrap_or_else(|p| p.into_inner()) {
            Held::Planned(current) => current.multiply_adds,
            Held::Parsed(_) | Held::Empty => None,
        }
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
            // The plan's own input type: f16 in an f16 plan.
            let wanted = plan.model().input_fact(ix).map_err(fail)?.datum_type;
            let tensor = tensor.cast_to_dt(wanted).map_err(fail)?.into_owned();
            values.push(tensor.into_tvalue());
        }
        let executor = if ALONE.with(Cell::get) {
            Executor::SingleThread
        } else {
            pool().clone()
        };
        let outputs = multithread_tract_scope(executor, || plan.run(values)).map_err(fail)?;
        outputs
            .iter()
            .map(|t| Tensor::from_tract(t).map_err(fail))
            .collect()
    }

    fn plan(&self, shapes: &[Vec<usize>]) -> Result<Plan> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Held::Planned(current) = &*held
            && current.shapes == shapes
            && current.precision == self.precision
        {
            return Ok(current.plan.clone());
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
        // The old plan goes first, so at most one copy of the weights is
        // live while the file is read again.
        let mut model = match std::mem::replace(&mut *held, Held::Empty) {
            Held::Parsed(parsed) => parsed,
            Held::Planned(old) => {
                log::info!(
                    "{}: replacing the plan for {:?} with one for {:?}; reading {} again",
                    self.stage,
                    old.shapes,
                    shapes,
                    self.path.display()
                );
                drop(old);
                release_free_memory();
                parse(&self.path, self.sha256.as_deref())?
            }
            Held::Empty => parse(&self.path, self.sha256.as_deref())?,
        };
        for (ix, shape) in shapes.iter().enumerate() {
            let fact = InferenceFact::dt_shape(self.input_types[ix], shape.clone());
            model = model.with_input_fact(ix, fact).map_err(unloadable)?;
        }
        let optimized =
            optimize_with(model, self.stage, Rewrites::ALL, self.precision).map_err(unloadable)?;
        let multiply_adds = multiply_adds(&optimized);
        let plan = optimized.into_runnable().map_err(unloadable)?;
        release_free_memory();
        log::info!(
            "{}: optimized for {:?} in {} ms",
            self.stage,
            shapes,
            started.elapsed().as_millis()
        );
        *held = Held::Planned(Specialised {
            shapes: shapes.to_vec(),
            precision: self.precision,
            plan: plan.clone(),
            multiply_adds,
        });
        Ok(plan)
    }
}

/// Parse an ONNX file; with `sha256`, the bytes parsed are the bytes hashed.
/// The file is mapped once and hashed on a second thread while the protobuf
/// is decoded (the decode is single-threaded, so the hash costs no time a
/// start waits for, and a cold boot reads the disk once); the graph is built
/// only from a file that matched.
fn parse(path: &Path, sha256: Option<&str>) -> Result<InferenceModel> {
    parse_with(path, sha256, Rewrites::ALL.group_norm)
}

/// [`parse`], with GroupNorms fused (`group_norm.rs`) or left to tract.
fn parse_with(path: &Path, sha256: Option<&str>, fuse_group_norms: bool) -> Result<InferenceModel> {
    let invalid =
        |e: &dyn std::fmt::Display| Error::model(path, ModelFault::Invalid(e.to_string()));
    let file = crate::bundle::open_file(path)?;
    // SAFETY: the map is only read, and dropped before this returns. As with
    // tract's own loader (it maps the file the same way), a file rewritten
    // in place while mapped could show the hash and the decode different
    // bytes, and one truncated would fault; bundles are replaced, not edited.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| Error::model(path, ModelFault::Unreadable(e)))?;
    let (digest, proto) = std::thread::scope(|scope| {
        let hashing = sha256.map(|_| scope.spawn(|| crate::bundle::sha256_hex(&map)));
        let proto = <tract_onnx::pb::ModelProto as prost::Message>::decode(&map[..]);
        (hashing.map(|h| h.join()), proto)
    });
    if let (Some(expected), Some(digest)) = (sha256, digest) {
        let digest = digest.map_err(|_| invalid(&"checksum thread panicked"))?;
        crate::bundle::check_digest(path, expected, digest)?;
    }
    let mut proto = proto.map_err(|e| invalid(&e))?;
    if fuse_group_norms {
        let fused = group_norm::fuse_group_norms(&mut proto);
        if fused > 0 {
            log::debug!("{}: {fused} GroupNorms fused", path.display());
        }
    }
    let parsed = onnx_parser()
        .parse(&proto, path.parent().and_then(Path::to_str))
        .map_err(|e| invalid(&format_args!("{e:#}")))?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(invalid(&format_args!(
            "inputs not found in the graph: {:?}",
            parsed.unresolved_inputs
        )));
    }
    Ok(parsed.model)
}

/// Hand the heap's free pages and the kept large blocks back to the kernel
/// ([`tune_allocator`] and [`LargeBlocks`] keep them for the next call):
/// after a plan is made (the parsed graph is gone), between the denoising
/// loop and the VAE decode (the loop's leftovers do not fit the decoder's
/// activations), and after a job, so an idle device does not hold a job's
/// activations.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heap.
    unsafe {
        libc::malloc_trim(0);
    }
    large_blocks::release_kept();
}

/// Turn a parsed graph with concrete input shapes into the plan tract runs:
/// typed and decluttered, attention fused into one op where the CPU has its
/// kernel (`fused_attention.rs`) and chunked elsewhere (`attention.rs`), 3x3
/// convolutions of 16 channels and more by Winograd's transform
/// (`winograd.rs`) and the other 3x3 and 1x1 ones over large images by our
/// direct kernel (`direct_conv.rs`) where the CPU has them, the other deep
/// convolutions split by input channel (`conv_split.rs`), optimized under
/// [`KNOBS`]. Public for `examples/profile_onnx.rs`.
pub fn optimize(model: InferenceModel, stage: &str) -> TractResult<TypedModel> {
    optimize_with(model, stage, Rewrites::ALL, precision())
}

/// Which of our rewrites a plan gets: all of them in the programs, one at a
/// time in the tests that check each against tract.
#[derive(Debug, Clone, Copy)]
struct Rewrites {
    /// Run attentions as one op each where the CPU has the kernel
    /// (`fused_attention.rs`); the others are chunked (`attention.rs`).
    fuse_attention: bool,
    /// Run convolutions over images of at least this many pixels by the
    /// direct kernel; `None`: none.
    direct_from_pixels: Option<usize>,
    /// Run 3x3 convolutions of enough channels by Winograd's transform
    /// where the CPU has the kernel (`winograd.rs`), before the direct
    /// kernel takes the rest.
    winograd: bool,
    /// Fuse each exported GroupNorm and the SiLU after it into one op
    /// (`group_norm.rs`); applied when the file is parsed.
    group_norm: bool,
    split_depth: usize,
}

impl Rewrites {
    const ALL: Rewrites = Rewrites {
        fuse_attention: true,
        direct_from_pixels: Some(direct_conv::MIN_PIXELS),
        winograd: true,
        group_norm: true,
        split_depth: conv_split::MAX_DEPTH,
    };

    /// tract's own ops throughout (attentions still chunked).
    #[cfg(test)]
    const NONE: Rewrites = Rewrites {
        fuse_attention: false,
        direct_from_pixels: None,
        winograd: false,
        group_norm: false,
        split_depth: usize::MAX,
    };
}

fn optimize_with(
    model: InferenceModel,
    stage: &str,
    rewrites: Rewrites,
    precision: Precision,
) -> TractResult<TypedModel> {
    KnobScope::new(KNOBS)?.enter(|| {
        let mut typed = model.into_typed()?;
        if rewrites.group_norm {
            let reordered = group_norm::run_after_shortcuts(&mut typed)?;
            if reordered > 0 {
                log::info!("{stage}: {reordered} norms run after their block's shortcut");
            }
        }
        typed.declutter()?;
        if rewrites.fuse_attention {
            let fused = fused_attention::fuse_attention(&mut typed)?;
            if fused > 0 {
                log::info!("{stage}: {fused} attentions fused");
            }
        }
        let chunked = attention::chunk_attention(&mut typed, attention::CHUNK_BYTES)?;
        if chunked > 0 {
            log::info!("{stage}: {chunked} attentions run in query chunks");
        }
        if rewrites.winograd {
            let winograd = winograd::replace_convolutions(&mut typed)?;
            if winograd > 0 {
                log::info!("{stage}: {winograd} convolutions run by Winograd's transform");
            }
        }
        if let Some(min_pixels) = rewrites.direct_from_pixels {
            let direct = direct_conv::replace_convolutions(&mut typed, min_pixels)?;
            if direct > 0 {
                log::info!("{stage}: {direct} convolutions run by the direct kernel");
            }
        }
        let split = conv_split::split_deep_convolutions(&mut typed, rewrites.split_depth)?;
        if split > 0 {
            log::info!("{stage}: {split} deep convolutions split by input channel");
        }
        if precision == Precision::F16 {
            to_f16(&mut typed)?;
            log::info!("{stage}: tract's ops in f16, ours in f32");
        }
        typed.into_optimized()
    })
}

/// tract's float-precision translation to f16 of every node but ours (their
/// kernels are f32; the translation casts at their edges). Inputs become
/// f16 ([`Model::run`] casts to the plan's types); outputs stay f16 and are
/// read back as f32.
fn to_f16(model: &mut TypedModel) -> TractResult<()> {
    use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
    use tract_onnx::tract_core::transform::ModelTransform;
    FloatPrecisionTranslator::with_filter(f32::datum_type(), f16::datum_type(), |node| {
        !is_ours(node)
    })
    .transform(model)
}

/// Whether a node runs one of our ops (f32 kernels).
fn is_ours(node: &TypedNode) -> bool {
    node.op_is::<direct_conv::DirectConv>()
        || node.op_is::<winograd::WinogradConv>()
        || node.op_is::<fused_attention::FusedAttention>()
        || node.op_is::<group_norm::GroupNorm>()
        || node.op_is::<prelu::ChannelPrelu>()
}

/// Find every site of a graph rewrite first, then rewrite each; returns how
/// many. Both steps of our rewrites (`attention.rs`, `conv_split.rs`) rely
/// on a patch appending nodes without renumbering the old ones, so sites
/// found before any patch stay valid. A node `find` cannot read is no site.
fn rewrite_each<S>(
    model: &mut TypedModel,
    find: impl Fn(&TypedModel, usize) -> TractResult<Option<S>>,
    rewrite: impl Fn(&mut TypedModel, &S) -> TractResult<()>,
) -> TractResult<usize> {
    let sites: Vec<S> = (0..model.nodes.len())
        .filter_map(|id| find(model, id).ok().flatten())
        .collect();
    for site in &sites {
        rewrite(model, site)?;
    }
    Ok(sites.len())
}

/// Sum of the FMA costs tract reports for every node of a concrete plan.
fn multiply_adds(model: &TypedModel) -> Option<u64> {
    model
        .nodes
        .iter()
        .map(|node| node_multiply_adds(model, node))
        .sum()
}

/// The FMA cost tract reports for one node of a concrete plan; `None` when a
/// cost is not a plain number. Public for `profile_onnx --nodes`.
pub fn node_multiply_adds(model: &TypedModel, node: &TypedNode) -> Option<u64> {
    let inputs: Vec<&TypedFact> = node
        .inputs
        .iter()
        .map(|o| model.outlet_fact(*o))
        .collect::<TractResult<_>>()
        .ok()?;
    let mut total = 0u64;
    for (cost, count) in node.op.cost(&inputs).ok()? {
        if matches!(cost, Cost::FMA(_)) {
            total += u64::try_from(count.to_i64().ok()?).ok()?;
        }
    }
    Some(total)
}

/// What the rewrite tests share: a network of the committed tiny bundle
/// planned with chosen rewrites and run on fixed inputs, and a plain
/// convolution op.
#[cfg(test)]
mod test_support {
    use std::path::Path;
    use tract_linalg::multithread::{Executor, multithread_tract_scope};
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::ops::einsum::EinSum;
    use tract_onnx::tract_core::ops::nn::Softmax;
    use tract_onnx::tract_hir::infer::Factoid;

    /// diffusers' attention as tract declutters it, over Q, K and V `[a, m,
    /// b, k]` (batch, tokens, heads, features): scores, their softmax over
    /// the keys, the product with the values.
    pub(super) fn wire_attention(model: &mut TypedModel, qkv: [OutletId; 3]) -> OutletId {
        let [q, k, v] = qkv;
        let scores = EinSum::new("ambk,anbk->abmn".parse().unwrap(), f32::datum_type());
        let s = model.wire_node("scores", scores, &[q, k]).unwrap();
        let softmax = Softmax {
            axes: tvec!(3),
            quant_output_dt: None,
            kind: Default::default(),
        };
        let p = model.wire_node("softmax", softmax, &s).unwrap();
        let mix = EinSum::new("abmk,akbn->ambn".parse().unwrap(), f32::datum_type());
        model.wire_node("mix", mix, &[p[0], v]).unwrap()[0]
    }

    /// `model` optimized and run on `inputs` under `executor`: its first
    /// output.
    pub(super) fn run_plan(
        model: TypedModel,
        inputs: TVec<TValue>,
        executor: Executor,
    ) -> Vec<f32> {
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let out = multithread_tract_scope(executor, || plan.run(inputs)).unwrap();
        super::Tensor::from_tract(&out[0]).unwrap().into_f32()
    }

    /// A float NCHW convolution with a square kernel of odd `size`, padded to
    /// keep the image size, stride 1, one group, OIHW weights.
    pub(super) fn same_size_conv(
        size: usize,
        inputs: usize,
        outputs: usize,
    ) -> tract_onnx::tract_core::ops::cnn::Conv {
        use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
        use tract_onnx::tract_core::ops::nn::DataFormat;
        let border = size / 2;
        Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec!(size, size),
                padding: PaddingSpec::Explicit(tvec!(border, border), tvec!(border, border)),
                dilations: None,
                strides: None,
                input_channels: inputs,
                output_channels: outputs,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        }
    }

    /// One convolution to check: kernel side, channels in and out, images,
    /// height, width, and whether the bias is one value for all channels.
    #[derive(Clone, Copy)]
    pub(super) struct ConvCase {
        pub size: usize,
        pub inputs: usize,
        pub outputs: usize,
        pub images: usize,
        pub height: usize,
        pub width: usize,
        pub one_bias: bool,
    }

    /// `n` test values between -1 and 1, different for each `seed`.
    pub(super) fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
    }

    /// The case as tract's own convolution.
    pub(super) fn conv_model(case: &ConvCase) -> TypedModel {
        let ConvCase {
            size,
            inputs,
            outputs,
            images,
            height,
            width,
            ..
        } = *case;
        let mut model = TypedModel::default();
        let x = model
            .add_source("x", f32::fact([images, inputs, height, width]))
            .unwrap();
        let kernel = tensor1(&values(outputs * inputs * size * size, 1.0))
            .into_shape(&[outputs, inputs, size, size])
            .unwrap();
        let kernel = model.add_const("kernel", kernel).unwrap();
        let bias = if case.one_bias {
            tensor0(0.75f32)
        } else {
            tensor1(&values(outputs, 2.0))
        };
        let bias = model.add_const("bias", bias).unwrap();
        let conv = same_size_conv(size, inputs, outputs);
        let out = model.wire_node("conv", conv, &[x, kernel, bias]).unwrap();
        model.select_output_outlets(&out).unwrap();
        model
    }

    /// The case's `model` run under `executor` on fixed input.
    pub(super) fn run_conv(case: &ConvCase, model: TypedModel, executor: Executor) -> Vec<f32> {
        let len = case.images * case.inputs * case.height * case.width;
        let input = tensor1(&values(len, 3.0))
            .into_shape(&[case.images, case.inputs, case.height, case.width])
            .unwrap();
        run_plan(model, tvec!(input.into_tvalue()), executor)
    }

    /// Each case's convolution, rewritten by `replace` (which returns how
    /// many it replaced), against tract's on one thread and two; where the
    /// CPU lacks the kernel (`available` false) nothing may be replaced.
    pub(super) fn check_conv_rewrite(
        cases: &[ConvCase],
        available: bool,
        replace: impl Fn(&mut TypedModel) -> TractResult<usize>,
    ) {
        for (ix, case) in cases.iter().enumerate() {
            let expected = run_conv(case, conv_model(case), Executor::SingleThread);
            let mut rewritten = conv_model(case);
            let replaced = replace(&mut rewritten).unwrap();
            if !available {
                assert_eq!(replaced, 0, "case {ix}: no kernel on this CPU");
                continue;
            }
            assert_eq!(replaced, 1, "case {ix}");
            for threads in [1, 2] {
                let executor = match threads {
                    1 => Executor::SingleThread,
                    n => Executor::multithread(n),
                };
                let got = run_conv(case, rewritten.clone(), executor);
                let what = format!("case {ix}, {threads} threads");
                assert_close(&what, &expected, &got);
            }
        }
    }

    /// The networks the rewrite tests run, with their input shapes.
    pub(super) const NETWORKS: [(&str, &[&[usize]]); 2] = [
        ("unet", &[&[2, 4, 8, 8], &[1], &[2, 77, 32]]),
        ("vae_decoder", &[&[1, 4, 8, 8]]),
    ];

    /// How many nodes of `plan` are `matches`.
    pub(super) fn count(plan: &TypedModel, matches: impl Fn(&TypedNode) -> bool) -> usize {
        plan.nodes.iter().filter(|n| matches(n)).count()
    }

    /// `network` (a folder of `models/tiny-sd`) planned for `shapes` with
    /// `rewrites`, run on fixed inputs; its output and its plan.
    pub(super) fn run(
        network: &str,
        shapes: &[&[usize]],
        rewrites: super::Rewrites,
    ) -> (Vec<f32>, TypedModel) {
        run_in(network, shapes, rewrites, super::Precision::F32)
    }

    /// [`run`] with the plan made in `precision`.
    pub(super) fn run_in(
        network: &str,
        shapes: &[&[usize]],
        rewrites: super::Rewrites,
        precision: super::Precision,
    ) -> (Vec<f32>, TypedModel) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/tiny-sd")
            .join(network)
            .join("model.onnx");
        let mut model = super::parse_with(&path, None, rewrites.group_norm).unwrap();
        let mut inputs = TVec::new();
        for (ix, shape) in shapes.iter().enumerate() {
            let dt = model.input_fact(ix).unwrap().datum_type.concretize();
            let dt = dt.unwrap_or(f32::datum_type());
            let len: usize = shape.iter().product();
            let values: Vec<f32> = (0..len).map(|i| (i as f32 * 0.23).sin()).collect();
            let tensor = tensor1(&values).into_shape(shape).unwrap();
            inputs.push(tensor.cast_to_dt(dt).unwrap().into_owned().into_tvalue());
            let fact = InferenceFact::dt_shape(dt, shape.to_vec());
            model = model.with_input_fact(ix, fact).unwrap();
        }
        let optimized = super::optimize_with(model, network, rewrites, precision).unwrap();
        let inputs = inputs
            .into_iter()
            .enumerate()
            .map(|(ix, t)| {
                let dt = optimized.input_fact(ix).unwrap().datum_type;
                t.cast_to_dt(dt).unwrap().into_owned().into_tvalue()
            })
            .collect();
        let out = optimized
            .clone()
            .into_runnable()
            .unwrap()
            .run(inputs)
            .unwrap();
        let values = super::Tensor::from_tract(&out[0]).unwrap().into_f32();
        (values, optimized)
    }

    /// Assert two runs of `what` (a network, a test case) agree value by
    /// value to `1e-5` of the largest, which must not be zero.
    pub(super) fn assert_close(what: &str, expected: &[f32], got: &[f32]) {
        assert_eq!(expected.len(), got.len(), "{what}");
        let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{what} gives all zeros");
        for (at, (a, b)) in expected.iter().zip(got).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "{what}, value {at}: {a} vs {b}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiny bundle's UNet and VAE decoder planned in f16: tract's ops
    /// run in f16 (f16 values in the plan), ours stay in place, and the
    /// output stays within f16's rounding of the f32 plan's.
    #[test]
    fn f16_plans_keep_our_ops_and_stay_close_to_f32() {
        for (network, shapes) in test_support::NETWORKS {
            let run = |precision| test_support::run_in(network, shapes, Rewrites::ALL, precision);
            let (expected, plan32) = run(Precision::F32);
            let (got, plan16) = run(Precision::F16);
            let half = |n: &TypedNode| {
                n.outputs
                    .iter()
                    .any(|o| o.fact.datum_type == f16::datum_type())
            };
            assert_eq!(test_support::count(&plan32, half), 0, "{network}");
            assert!(test_support::count(&plan16, half) > 0, "{network}");
            assert_eq!(
                test_support::count(&plan16, is_ours),
                test_support::count(&plan32, is_ours),
                "{network}: our ops in the f16 plan"
            );
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = expected
                .iter()
                .zip(&got)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            eprintln!("{network}: f16 against f32, max abs difference {worst} of {scale}");
            // Measured: 0.8 % (x86_64) and 0.9 % (aarch64, tract's fp16
            // kernels) of the range; a plan that broke would be far off.
            assert!(
                worst <= 2e-2 * scale,
                "{network}: f16 differs by {worst} (largest value {scale})"
            );
        }
    }

    #[test]
    fn precision_words_parse_and_auto_resolves() {
        assert_eq!("f16".parse(), Ok(Precision::F16));
        assert_eq!("f32".parse(), Ok(Precision::F32));
        assert_eq!("auto".parse(), Ok(Precision::Auto));
        assert!("half".parse::<Precision>().is_err());
        assert_ne!(Precision::Auto.resolve(), Precision::Auto);
        assert_eq!(Precision::F16.resolve(), Precision::F16);
    }
}
