//! The core every front-end talks to: a bounded job queue, one inference
//! worker thread that owns the loaded models, job states and events.
//!
//! Front-ends (D-Bus, touch UI, CLI) only call [`Studio`] and subscribe to its
//! [`Event`]s; they hold no pipeline logic. Every accepted job is written to
//! a journal in the state directory before `submit` returns, so after a crash
//! each unfinished job is run again on restart — never silently lost. The
//! worker never blocks the caller: `submit` and `cancel` return at once.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::pipeline::output::{Aspect, OutputKind};
use crate::pipeline::upscale::Upscaler;
use crate::pipeline::{CancelToken, Image, Pipeline, Progress, Stage};
use crate::produce::Producer;
use crate::provenance::Provenance;
use crate::store::Gallery;
use crate::{Bundle, SchedulerKind};

/// What a front-end asks for; plain data so it can be journaled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// What to draw.
    pub prompt: String,
    /// What to avoid.
    #[serde(default)]
    pub negative_prompt: String,
    /// Noise seed; `None` picks one at submit time (and journals it).
    pub seed: Option<u64>,
    /// Denoising steps.
    pub steps: Option<u32>,
    /// Guidance scale.
    pub guidance: Option<f32>,
    /// Scheduler name.
    pub scheduler: Option<String>,
    /// Generation width.
    pub width: Option<u32>,
    /// Generation height.
    pub height: Option<u32>,
    /// `4k` or `native`; `None` uses the config.
    pub output: Option<String>,
    /// `square`, `landscape` or `portrait` when no size is given.
    pub aspect: Option<String>,
    /// Image-to-image strength in (0, 1]; `None` takes the default (0.8)
    /// when an init image is set.
    #[serde(default)]
    pub strength: Option<f32>,
    /// Where the init image came from (`camera /dev/video0 YUYV 640x360`,
    /// `image 800x600`), recorded in the PNG's metadata.
    #[serde(default)]
    pub source: Option<String>,
    /// The init image of an image-to-image job. Journaled as a PNG beside
    /// the job's JSON, not inside it.
    #[serde(skip)]
    pub init_image: Option<Arc<Image>>,
    /// Set by the worker just before saving: the gallery id the image is
    /// written under. A restart that finds this image in the gallery counts
    /// the job done instead of running it twice.
    #[serde(default)]
    pub saving_as: Option<String>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, waiting for the worker.
    Queued,
    /// On the worker now.
    Running,
    /// Saved to the gallery.
    Done,
    /// Stopped by an error.
    Failed,
    /// Stopped by a cancel request.
    Cancelled,
}

impl JobState {
    /// The D-Bus string.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job can still change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A job's observable state.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// Job number (the D-Bus object path ends in it).
    pub id: u64,
    /// Life stage.
    pub state: JobState,
    /// Current stage, "" before running.
    pub stage: &'static str,
    /// Fraction done, 0..1, never decreasing.
    pub progress: f64,
    /// Denoising step done.
    pub step: u32,
    /// Denoising steps in all.
    pub steps: u32,
    /// Gallery id once saved.
    pub image_id: String,
    /// Saved file once saved.
    pub output_path: String,
    /// Why it failed or was cancelled.
    pub error: String,
}

impl JobStatus {
    /// A job just accepted: queued, nothing done yet.
    pub fn queued(id: u64, steps: u32) -> Self {
        JobStatus {
            id,
            state: JobState::Queued,
            stage: "",
            progress: 0.0,
            step: 0,
            steps,
            image_id: String::new(),
            output_path: String::new(),
            error: String::new(),
        }
    }
}

/// Something that happened, for front-ends to relay.
#[derive(Debug, Clone)]
pub enum Event {
    /// A job's status changed (may arrive many times a second; throttle).
    Changed(JobStatus),
    /// A small PNG preview of the latents after a step.
    Preview {
        /// Job number.
        id: u64,
        /// PNG bytes.
        png: Vec<u8>,
    },
    /// A job reached a final state.
    Finished {
        /// Job number.
        id: u64,
        /// Whether an image was saved.
        ok: bool,
        /// Output path, or the reason it did not finish.
        detail: String,
    },
    /// An image was added to the gallery.
    ImageSaved {
        /// Gallery id.
        id: String,
        /// File path.
        path: String,
    },
}

struct Job {
    spec: JobSpec,
    status: JobStatus,
    cancel: CancelToken,
}

#[derive(Default)]
struct Queue {
    jobs: BTreeMap<u64, Job>,
    waiting: VecDeque<u64>,
    shutting_down: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    events: broadcast::Sender<Event>,
    next_id: AtomicU64,
    /// Last sign of life from the worker, and whether it is busy on a job
    /// (an idle worker waiting for work is alive by definition).
    heartbeat: Mutex<(Instant, bool)>,
    max_queue: usize,
    journal: PathBuf,
}

/// The running core. Dropping it stops the worker after the current job.
pub struct Studio {
    shared: Arc<Shared>,
    gallery: Arc<Gallery>,
    default_output: OutputKind,
    /// The loaded bundle, or the file at fault and why it is unusable.
    model: std::result::Result<crate::BundleInfo, (PathBuf, String)>,
    upscaler_name: Option<String>,
    camera: crate::config::CameraConfig,
    /// One capture at a time: a second open of a streaming camera is EBUSY.
    camera_lock: Mutex<()>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Studio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Studio")
            .field("model", &self.model.as_ref().map(|i| &i.name))
            .finish_non_exhaustive()
    }
}

/// Keeps finished jobs listed this long (by count) so clients can read them.
const FINISHED_KEPT: usize = 64;

impl Studio {
    /// Load the models named by `config`, open the gallery, replay the job
    /// journal and start the worker.
    pub fn start(config: &Config) -> Result<Self> {
        let started = Instant::now();
        let default_output = config.output_kind();
        crate::engine::set_precision(config.engine.precision);
        log::info!(
            "engine: {} arithmetic ([engine] precision = {})",
            crate::engine::precision().name(),
            config.engine.precision.name()
        );
        // A broken model must not take the service down: it stays up,
        // reports the model unavailable and keeps accepted jobs journaled.
        let pipeline = match Bundle::open(&config.model).and_then(Pipeline::load) {
            Ok(pipeline) => Ok(pipeline),
            Err(Error::ModelUnavailable { file, fault }) => {
                log::error!(
                    "model unavailable: {}: {fault}; serving without it",
                    file.display()
                );
                Err((file, fault.to_string()))
            }
            Err(e) => return Err(e),
        };
        let upscaler = if default_output == OutputKind::FourK || config.upscaler.is_dir() {
            match Upscaler::open(&config.upscaler) {
                Ok(u) => Some(u),
                Err(e @ Error::ModelUnavailable { .. }) => {
                    log::error!("{e}; 4k output is unavailable");
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        crate::engine::set_threads(config.threads);
        let upscaler = match (upscaler, config.threads) {
            (Some(u), n) if n > 0 => Some(u.with_workers(n)),
            (u, _) => u,
        };
        let gallery = Arc::new(Gallery::open(&config.images_dir, config.gallery_limits())?);
        let provenance = Arc::new(Provenance::from_config(
            &config.provenance,
            &config.state_dir,
        )?);
        let journal = config.state_dir.join("jobs");
        std::fs::create_dir_all(&journal).map_err(|e| Error::io(&journal, e))?;
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            events,
            next_id: AtomicU64::new(1),
            heartbeat: Mutex::new((Instant::now(), false)),
            max_queue: config.max_queue,
            journal,
        });
        let model = pipeline
            .as_ref()
            .map(|p| p.info().clone())
            .map_err(Clone::clone);
        let upscaler_name = upscaler.as_ref().map(|u| u.manifest().name.clone());
        let recovered = replay_journal(&shared, &gallery)?;
        if recovered > 0 {
            log::warn!("re-queued {recovered} job(s) left unfinished by the last run");
        }
        let worker = match pipeline {
            Ok(pipeline) => {
                let producer = Producer {
                    pipeline,
                    upscaler,
                    gallery: gallery.clone(),
                    default_output,
                    provenance,
                };
                let worker_shared = shared.clone();
                let worker = std::thread::Builder::new()
                    .name("inference".into())
                    .spawn(move || worker_loop(&worker_shared, &producer))
                    .map_err(|e| Error::io("inference thread", e))?;
                Some(worker)
            }
            Err(_) => None,
        };
        log::info!(
            "studio ready in {} ms (model {}, queue {})",
            started.elapsed().as_millis(),
            model.as_ref().map_or("unavailable", |i| i.name.as_str()),
            config.max_queue
        );
        Ok(Studio {
            shared,
            gallery,
            default_output,
            model,
            upscaler_name,
            camera: config.camera.clone(),
            camera_lock: Mutex::new(()),
            worker,
        })
    }

    /// Accept a job, or refuse it at once with a typed error.
    pub fn submit(&self, mut spec: JobSpec) -> Result<u64> {
        let info = self.loaded_model()?;
        validate(&spec)?;
        if spec.strength.is_some() && spec.init_image.is_none() {
            return Err(Error::invalid(
                "strength",
                "applies only with init_image or source=camera",
            ));
        }
        if let Some(image) = &spec.init_image {
            let steps = spec.steps.unwrap_or(info.default_steps);
            crate::pipeline::check_strength(
                spec.strength.unwrap_or(crate::pipeline::DEFAULT_STRENGTH),
                steps,
            )?;
            spec.source
                .get_or_insert_with(|| format!("image {}x{}", image.width, image.height));
        }
        // Refuse at once what cannot be made or saved, rather than fail later.
        let sizes = crate::produce::Sizes::of(&spec, self.default_output, info)?;
        if sizes.output == OutputKind::FourK && self.upscaler_name.is_none() {
            return Err(crate::produce::no_upscaler());
        }
        self.gallery.check_room(sizes.saved.0, sizes.saved.1)?;
        spec.seed.get_or_insert_with(random_seed);
        let mut queue = self.lock();
        let open = queue
            .jobs
            .values()
            .filter(|j| !j.status.state.is_final())
            .count();
        if open >= self.shared.max_queue {
            return Err(Error::QueueFull(self.shared.max_queue));
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::SeqCst);
        write_journal(&self.shared.journal, id, &spec)?;
        let status = JobStatus::queued(id, spec.steps.unwrap_or(info.default_steps));
        let _ = self.shared.events.send(Event::Changed(status.clone()));
        queue.jobs.insert(
            id,
            Job {
                spec,
                status,
                cancel: CancelToken::new(),
            },
        );
        queue.waiting.push_back(id);
        prune_finished(&mut queue);
        drop(queue);
        self.shared.wake.notify_all();
        Ok(id)
    }

    /// The loaded bundle, or `ModelUnavailable` naming the file at fault.
    fn loaded_model(&self) -> Result<&crate::BundleInfo> {
        self.model.as_ref().map_err(|(file, reason)| {
            Error::model(file, crate::error::ModelFault::Invalid(reason.clone()))
        })
    }

    /// The `[camera]` settings (the UI's viewfinder opens the same camera).
    pub fn camera_config(&self) -> &crate::config::CameraConfig {
        &self.camera
    }

    /// The generation size a spec resolves to (its aspect, the bundle's
    /// native size), for sizing camera captures.
    pub fn generation_size(&self, spec: &JobSpec) -> Result<(u32, u32)> {
        let info = self.loaded_model()?;
        Ok(crate::produce::Sizes::of(spec, self.default_output, info)?.generated)
    }

    /// Take a frame from the camera and submit an image-to-image job
    /// starting from it. Blocks for the capture (a few frame times): call it
    /// off any event loop. Nothing is queued when the camera fails.
    pub fn submit_from_camera(&self, mut spec: JobSpec) -> Result<u64> {
        validate(&spec)?;
        let target = self.generation_size(&spec)?;
        let frame = {
            let _one_at_a_time = self.camera_lock.lock().unwrap_or_else(|p| p.into_inner());
            crate::camera::capture_one(&self.camera, target)?
        };
        spec.source = Some(frame.describe());
        spec.init_image = Some(Arc::new(frame.image));
        self.submit(spec)
    }

    /// Ask a job to stop; a queued job is cancelled at once, a running one at
    /// its next step or tile.
    pub fn cancel(&self, id: u64) -> Result<()> {
        let mut queue = self.lock();
        let job = queue
            .jobs
            .get_mut(&id)
            .ok_or_else(|| Error::NotFound(format!("job {id}")))?;
        if job.status.state.is_final() {
            return Ok(());
        }
        job.cancel.cancel();
        if job.status.state == JobState::Queued {
            job.status.state = JobState::Cancelled;
            job.status.error = "cancelled before it started".into();
            let status = job.status.clone();
            queue.waiting.retain(|&w| w != id);
            drop(queue);
            remove_journal(&self.shared.journal, id);
            let _ = self.shared.events.send(Event::Changed(status));
            let _ = self.shared.events.send(Event::Finished {
                id,
                ok: false,
                detail: "cancelled".into(),
            });
        }
        Ok(())
    }

    /// A job's status.
    pub fn status(&self, id: u64) -> Option<JobStatus> {
        self.lock().jobs.get(&id).map(|j| j.status.clone())
    }

    /// A job's prompt, for front-ends that show jobs others submitted.
    pub fn prompt(&self, id: u64) -> Option<String> {
        self.lock().jobs.get(&id).map(|j| j.spec.prompt.clone())
    }

    /// Known job numbers, oldest first.
    pub fn jobs(&self) -> Vec<u64> {
        self.lock().jobs.keys().copied().collect()
    }

    /// Jobs accepted and not finished.
    pub fn queue_length(&self) -> usize {
        self.lock()
            .jobs
            .values()
            .filter(|j| !j.status.state.is_final())
            .count()
    }

    /// The queue bound.
    pub fn max_queue(&self) -> usize {
        self.shared.max_queue
    }

    /// Receive events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The gallery the worker saves into.
    pub fn gallery(&self) -> &Gallery {
        &self.gallery
    }

    /// The loaded text-to-image bundle, or the file at fault and why.
    pub fn model(&self) -> std::result::Result<&crate::BundleInfo, &(PathBuf, String)> {
        self.model.as_ref()
    }

    /// The loaded upscaler's name, if any.
    pub fn upscaler_name(&self) -> Option<&str> {
        self.upscaler_name.as_deref()
    }

    /// How long the worker has been silent: time since its last step or
    /// tile while busy, zero while idle, forever once its thread is gone.
    pub fn worker_silence(&self) -> Duration {
        match &self.worker {
            // No model, no worker: nothing can hang.
            None if self.model.is_err() => return Duration::ZERO,
            Some(w) if !w.is_finished() => {}
            _ => return Duration::MAX,
        }
        let (last, busy) = *self
            .shared
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if busy { last.elapsed() } else { Duration::ZERO }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        {
            let mut queue = self.lock();
            queue.shutting_down = true;
            for job in queue.jobs.values() {
                job.cancel.cancel();
            }
        }
        self.shared.wake.notify_all();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Style presets: a name adds prompt text (and a negative prompt when the
/// request has none). Shared by D-Bus (`style`) and the touch UI.
pub const STYLES: &[(&str, &str, &str)] = &[
    (
        "watercolor",
        "watercolor painting, soft washes, paper texture",
        "photo, 3d render",
    ),
    (
        "3d-portrait",
        "3d render portrait, soft studio lighting, octane, subsurface scattering",
        "flat, sketch",
    ),
    (
        "neon-noir",
        "neon noir, rain-soaked street, cinematic lighting, high contrast",
        "daylight, pastel",
    ),
    (
        "painterly",
        "oil painting, visible brush strokes, rich colour",
        "photo, blurry",
    ),
    (
        "photo",
        "photograph, 35mm, natural light, sharp focus",
        "painting, cartoon, blurry",
    ),
];

/// Apply a style preset by name.
pub fn apply_style(spec: &mut JobSpec, name: &str) -> Result<()> {
    let (_, prompt, negative) = STYLES.iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
        let known: Vec<_> = STYLES.iter().map(|(n, _, _)| *n).collect();
        Error::invalid(
            "style",
            format!("unknown style {name:?} (known: {})", known.join(", ")),
        )
    })?;
    spec.prompt = format!("{}, {prompt}", spec.prompt.trim_end_matches([',', ' ']));
    if spec.negative_prompt.is_empty() {
        spec.negative_prompt = (*negative).to_string();
    }
    Ok(())
}

/// Check what can be checked without the models (ranges, names).
pub fn validate(spec: &JobSpec) -> Result<()> {
    crate::pipeline::check_request_values(
        &spec.prompt,
        &spec.negative_prompt,
        spec.steps,
        spec.guidance,
    )?;
    if let Some(name) = &spec.scheduler {
        SchedulerKind::from_name(name)?;
    }
    if let Some(name) = &spec.output {
        OutputKind::from_name(name)?;
    }
    if let Some(name) = &spec.aspect {
        Aspect::from_name(name)?;
    }
    if let Some(strength) = spec.strength {
        let steps = spec.steps.unwrap_or(crate::pipeline::MAX_STEPS);
        crate::pipeline::check_strength(strength, steps)?;
    }
    for (key, value) in [("width", spec.width), ("height", spec.height)] {
        if let Some(v) = value.filter(|v| *v == 0 || v % 8 != 0 || *v > 4096) {
            return Err(Error::invalid(
                key,
                format!("{v} is not a multiple of 8 in 8..=4096"),
            ));
        }
    }
    Ok(())
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos.rotate_left(17) ^ u64::from(std::process::id())
}

fn prune_finished(queue: &mut Queue) {
    let finished: Vec<u64> = queue
        .jobs
        .iter()
        .filter(|(_, j)| j.status.state.is_final())
        .map(|(&id, _)| id)
        .collect();
    if finished.len() > FINISHED_KEPT {
        for id in &finished[..finished.len() - FINISHED_KEPT] {
            queue.jobs.remove(id);
        }
    }
}

fn journal_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:010}.json"))
}

fn init_image_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:010}.init.png"))
}

fn write_journal(dir: &Path, id: u64, spec: &JobSpec) -> Result<()> {
    if let Some(image) = &spec.init_image {
        let path = init_image_path(dir, id);
        if !path.exists() {
            crate::store::write_png(&path, image, &[])?;
        }
    }
    let path = journal_path(dir, id);
    let bytes = serde_json::to_vec(spec).map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
    crate::store::write_file_atomically(&path, &bytes)
}

fn remove_journal(dir: &Path, id: u64) {
    for path in [journal_path(dir, id), init_image_path(dir, id)] {
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

/// A journaled job as it was accepted: its JSON, and its init image when it
/// has a source. `None` when either is unreadable.
fn read_journal(dir: &Path, id: u64, path: &Path) -> Option<JobSpec> {
    let mut spec: JobSpec = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    if spec.source.is_some() {
        let image = crate::store::read_png(&init_image_path(dir, id)).ok()?;
        spec.init_image = Some(Arc::new(image));
    }
    Some(spec)
}

/// Put every journaled job back in the queue, oldest first, keeping its id.
fn replay_journal(shared: &Shared, gallery: &Gallery) -> Result<usize> {
    let mut entries: Vec<(u64, PathBuf)> = std::fs::read_dir(&shared.journal)
        .map_err(|e| Error::io(&shared.journal, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json")?.parse().ok()?;
            Some((id, e.path()))
        })
        .collect();
    entries.sort();
    let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
    for (id, path) in &entries {
        let spec = read_journal(&shared.journal, *id, path);
        let status = JobStatus::queued(*id, 0);
        match spec {
            Some(spec)
                if spec
                    .saving_as
                    .as_deref()
                    .is_some_and(|image| gallery.contains(image)) =>
            {
                log::info!("job {id} had saved its image before the restart");
                let image = spec.saving_as.clone().unwrap_or_default();
                queue.jobs.insert(
                    *id,
                    Job {
                        status: JobStatus {
                            state: JobState::Done,
                            progress: 1.0,
                            output_path: gallery
                                .dir()
                                .join(format!("{image}.png"))
                                .display()
                                .to_string(),
                            image_id: image,
                            ..status
                        },
                        spec,
                        cancel: CancelToken::new(),
                    },
                );
                remove_journal(&shared.journal, *id);
            }
            Some(spec) => {
                queue.jobs.insert(
                    *id,
                    Job {
                        spec,
                        status,
                        cancel: CancelToken::new(),
                    },
                );
                queue.waiting.push_back(*id);
            }
            None => {
                log::error!(
                    "job {id}: journal entry {} is unreadable; reported failed",
                    path.display()
                );
                queue.jobs.insert(
                    *id,
                    Job {
                        spec: JobSpec::default(),
                        status: JobStatus {
                            state: JobState::Failed,
                            error: "the job's journal entry was unreadable after a restart".into(),
                            ..status
                        },
                        cancel: CancelToken::new(),
                    },
                );
                remove_journal(&shared.journal, *id);
            }
        }
        shared.next_id.fetch_max(id + 1, Ordering::SeqCst);
    }
    Ok(entries.len())
}

/// Niceness of the inference thread: long compute yields to the event loop
/// (D-Bus, UI) so calls stay answered in milliseconds on a busy board.
const WORKER_NICE: i32 = 10;

fn worker_loop(shared: &Shared, producer: &Producer) {
    // On Linux a thread id names just this thread for setpriority.
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), WORKER_NICE) {
        log::warn!("cannot lower the inference thread's priority: {e}");
    }
    loop {
        let next = {
            let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                *shared.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) =
                    (Instant::now(), false);
                if queue.shutting_down {
                    return;
                }
                if let Some(id) = queue.waiting.pop_front() {
                    let Some(job) = queue.jobs.get_mut(&id) else {
                        continue;
                    };
                    job.status.state = JobState::Running;
                    *shared.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) =
                        (Instant::now(), true);
                    let _ = shared.events.send(Event::Changed(job.status.clone()));
                    break (id, job.spec.clone(), job.cancel.clone());
                }
                queue = shared
                    .wake
                    .wait_timeout(queue, Duration::from_secs(1))
                    .map(|(q, _)| q)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        };
        let (id, spec, cancel) = next;
        let started = Instant::now();
        let mut reporter = Reporter {
            shared,
            id,
            last_progress: 0.0,
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            producer
                .produce(&spec, None, &mut reporter, &cancel, &mut |image_id| {
                    let mut journaled = spec.clone();
                    journaled.saving_as = Some(image_id.to_string());
                    write_journal(&shared.journal, id, &journaled)
                })
                .map(|made| (made.entry.id, made.path.display().to_string()))
        }))
        .unwrap_or_else(|panic| {
            let what = crate::error::panic_text(&*panic);
            Err(Error::Inference {
                stage: "worker",
                reason: format!("internal error: {what}"),
            })
        });
        let (state, detail) = match &outcome {
            Ok((image_id, path)) => {
                log::info!(
                    "job {id} done in {} ms: {path}",
                    started.elapsed().as_millis()
                );
                let _ = shared.events.send(Event::ImageSaved {
                    id: image_id.clone(),
                    path: path.clone(),
                });
                (JobState::Done, path.clone())
            }
            Err(Error::Cancelled) => {
                log::info!("job {id} cancelled");
                (JobState::Cancelled, "cancelled".to_string())
            }
            Err(e) => {
                log::warn!("job {id} failed: {e}");
                (JobState::Failed, e.to_string())
            }
        };
        if matches!(outcome, Err(Error::Cancelled)) && shutting_down(shared) {
            // Stopped by a service stop, not by a user: the journal keeps
            // the job, so it runs again (same id, same seed) on next start.
            log::info!("job {id} interrupted by shutdown; it resumes on next start");
            return;
        }
        remove_journal(&shared.journal, id);
        let status = {
            let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            let Some(job) = queue.jobs.get_mut(&id) else {
                continue;
            };
            job.status.state = state;
            match &outcome {
                Ok((image_id, path)) => {
                    job.status.image_id = image_id.clone();
                    job.status.output_path = path.clone();
                    job.status.progress = 1.0;
                }
                Err(_) => job.status.error = detail.clone(),
            }
            job.status.clone()
        };
        let _ = shared.events.send(Event::Changed(status));
        let _ = shared.events.send(Event::Finished {
            id,
            ok: state == JobState::Done,
            detail,
        });
    }
}

fn shutting_down(shared: &Shared) -> bool {
    shared
        .queue
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .shutting_down
}

/// Turns pipeline progress into job status, events and previews.
struct Reporter<'a> {
    shared: &'a Shared,
    id: u64,
    last_progress: f64,
}

impl Reporter<'_> {
    fn update(&mut self, change: impl FnOnce(&mut JobStatus)) {
        *self
            .shared
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = (Instant::now(), true);
        let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        let Some(job) = queue.jobs.get_mut(&self.id) else {
            return;
        };
        change(&mut job.status);
        job.status.progress = job.status.progress.max(self.last_progress);
        self.last_progress = job.status.progress;
        let _ = self.shared.events.send(Event::Changed(job.status.clone()));
    }
}

impl Progress for Reporter<'_> {
    fn tile(&mut self, done: usize, total: usize) {
        let fraction = done as f64 / total.max(1) as f64;
        self.update(|s| s.progress = 0.9 + 0.09 * fraction);
    }

    fn stage(&mut self, stage: Stage) {
        let floor = match stage {
            Stage::Encoding => 0.0,
            Stage::Denoising => 0.02,
            Stage::Decoding => 0.8,
            Stage::Upscaling => 0.9,
            Stage::Saving => 0.99,
        };
        self.update(|s| {
            s.stage = stage.name();
            s.progress = floor;
        });
    }

    fn step(&mut self, step: usize, steps: usize) {
        self.update(|s| {
            s.step = step as u32;
            s.steps = steps as u32;
            s.progress = 0.02 + 0.78 * step as f64 / steps.max(1) as f64;
        });
    }

    fn latents(&mut self, latents: &[f32], channels: usize, height: usize, width: usize) {
        if let Some(png) =
            crate::pipeline::preview::latents_to_png(latents, channels, height, width)
        {
            let _ = self.shared.events.send(Event::Preview { id: self.id, png });
        }
    }
}
