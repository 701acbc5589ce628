//! The D-Bus face of the [`Studio`]: `org.pocketstudio.Studio1` (DESIGN §2).
//!
//! Holds the wire types, the interfaces and the generated proxies that the
//! CLI and the tests use; no pipeline logic. Methods validate and forward to
//! the Studio and return at once (a job path, never a later signal). One
//! event pump relays Studio events to job objects, throttling
//! PropertiesChanged to 10 Hz per job.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zbus::names::ErrorName;
use zbus::object_server::{InterfaceRef, SignalEmitter};
use zbus::{Connection, DBusError, ObjectServer, interface};
use zbus::{OwnedObjectPath, OwnedVariant, Variant};

use crate::error::Error;
use crate::studio::{Event, JobSpec, JobStatus, Studio};

/// Well-known bus name.
pub const BUS_NAME: &str = "org.pocketstudio.Studio1";
/// The manager object.
pub const OBJECT_PATH: &str = "/org/pocketstudio/Studio1";
/// Job objects live below this path.
pub const JOBS_PATH: &str = "/org/pocketstudio/Studio1/jobs";
/// Committed introspection of both interfaces (checked against the live
/// service in a test).
pub const INTROSPECTION_XML: &str = include_str!("../../systemd/org.pocketstudio.Studio1.xml");

/// Least time between two PropertiesChanged of one job.
const PROPERTY_INTERVAL: Duration = Duration::from_millis(100);

/// The object path of job `id`.
pub fn job_path(id: u64) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{JOBS_PATH}/{id}"))
        .unwrap_or_else(|_| OwnedObjectPath::try_from(JOBS_PATH.to_string()).unwrap_or_default())
}

/// The job number at the end of a job path.
pub fn job_id(path: &str) -> Option<u64> {
    path.strip_prefix(JOBS_PATH)?
        .strip_prefix('/')?
        .parse()
        .ok()
}

/// Errors with our own names (DESIGN §2).
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.pocketstudio.Studio1.Error")]
pub enum StudioError {
    /// Transport-level failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The queue is at `MaxQueue`.
    QueueFull(String),
    /// Not enough disk for the image plus the reserve.
    NoSpace(String),
    /// A model file is missing, corrupt or unloadable.
    ModelUnavailable(String),
    /// No such job or image.
    NotFound(String),
    /// The job was cancelled.
    Cancelled(String),
    /// `source=camera` but no frame could be taken (none, busy, unplugged).
    CameraUnavailable(String),
}

/// What a method call can fail with: the standard `InvalidArgs`, another
/// standard error, or one of ours.
#[derive(Debug)]
pub enum CallError {
    /// `org.freedesktop.DBus.Error.*`.
    Standard(zbus::fdo::Error),
    /// `org.pocketstudio.Studio1.Error.*`.
    Studio(StudioError),
}

impl zbus::DBusError for CallError {
    fn create_reply(&self, header: &zbus::message::Header<'_>) -> zbus::Result<zbus::Message> {
        match self {
            CallError::Standard(e) => e.create_reply(header),
            CallError::Studio(e) => e.create_reply(header),
        }
    }

    fn name(&self) -> ErrorName<'_> {
        match self {
            CallError::Standard(e) => e.name(),
            CallError::Studio(e) => e.name(),
        }
    }

    fn description(&self) -> Option<&str> {
        match self {
            CallError::Standard(e) => e.description(),
            CallError::Studio(e) => e.description(),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use zbus::DBusError;
        match self {
            // A reply from the service: its error name and text.
            CallError::Studio(StudioError::ZBus(zbus::Error::MethodError(name, text, _))) => {
                write!(f, "{}: {}", name.as_str(), text.as_deref().unwrap_or(""))
            }
            CallError::Studio(StudioError::ZBus(e)) => write!(f, "{e}"),
            CallError::Standard(e) => write!(f, "{e}"),
            other => write!(f, "{}: {}", other.name(), other.description().unwrap_or("")),
        }
    }
}

impl std::error::Error for CallError {}

impl From<zbus::Error> for CallError {
    fn from(e: zbus::Error) -> Self {
        CallError::Studio(StudioError::ZBus(e))
    }
}

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        let text = e.to_string();
        match e {
            Error::InvalidArgument { key, reason } => {
                CallError::Standard(zbus::fdo::Error::InvalidArgs(format!("{key}: {reason}")))
            }
            Error::QueueFull(_) => CallError::Studio(StudioError::QueueFull(text)),
            Error::NoSpace { .. } | Error::QuotaFull(_) => {
                CallError::Studio(StudioError::NoSpace(text))
            }
            Error::ModelUnavailable { .. } => {
                CallError::Studio(StudioError::ModelUnavailable(text))
            }
            Error::NotFound(_) => CallError::Studio(StudioError::NotFound(text)),
            Error::Cancelled => CallError::Studio(StudioError::Cancelled(text)),
            Error::Camera { .. } => CallError::Studio(StudioError::CameraUnavailable(text)),
            _ => CallError::Standard(zbus::fdo::Error::Failed(text)),
        }
    }
}

fn invalid(key: &str, reason: impl std::fmt::Display) -> CallError {
    CallError::Standard(zbus::fdo::Error::InvalidArgs(format!("{key}: {reason}")))
}

/// Where a `Generate` request's starting picture comes from.
#[derive(Debug)]
pub enum InitSource {
    /// Text to image.
    None,
    /// `init_image`: a PNG or JPEG read from the passed fd.
    Fd(std::os::fd::OwnedFd),
    /// `source = "camera"`: a frame taken when the job is accepted.
    Camera,
}

/// Read and decode a passed init image off the event loop, refusing
/// anything past the caps (`source::MAX_BYTES`, `MAX_SIDE`). A pipe whose
/// writer never finishes is given up on after [`INIT_READ_TIMEOUT`].
async fn read_init_image(fd: std::os::fd::OwnedFd) -> Result<crate::pipeline::Image, CallError> {
    let work = tokio::task::spawn_blocking(move || {
        let bytes = crate::source::read_passed(std::fs::File::from(fd))?;
        crate::source::decode(&bytes)
    });
    match tokio::time::timeout(INIT_READ_TIMEOUT, work).await {
        Ok(Ok(decoded)) => Ok(decoded?),
        Ok(Err(e)) => Err(CallError::Standard(zbus::fdo::Error::Failed(format!(
            "init_image: {e}"
        )))),
        Err(_) => Err(invalid(
            "init_image",
            format!(
                "was not readable to its end within {} s",
                INIT_READ_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// How long a client may take to deliver an `init_image`'s bytes.
const INIT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Turn a `Generate` dictionary into a job, naming any bad key.
pub fn parse_request(
    request: &HashMap<String, OwnedVariant>,
) -> Result<(JobSpec, InitSource), CallError> {
    fn text(key: &str, v: &Variant<'_>) -> Result<String, CallError> {
        match v {
            Variant::Str(s) => Ok(s.to_string()),
            other => Err(invalid(
                key,
                format!("expected a string (s), got {}", other.value_signature()),
            )),
        }
    }
    fn uint(key: &str, v: &Variant<'_>) -> Result<u32, CallError> {
        match v {
            Variant::U32(n) => Ok(*n),
            other => Err(invalid(
                key,
                format!("expected u, got {}", other.value_signature()),
            )),
        }
    }
    fn double(key: &str, v: &Variant<'_>) -> Result<f64, CallError> {
        match v {
            Variant::F64(n) => Ok(*n),
            other => Err(invalid(
                key,
                format!("expected d, got {}", other.value_signature()),
            )),
        }
    }
    let mut spec = JobSpec::default();
    let mut has_prompt = false;
    let mut style = None;
    let mut init = InitSource::None;
    let mut camera = false;
    for (key, value) in request {
        let v: &Variant<'_> = value;
        match key.as_str() {
            "prompt" => {
                spec.prompt = text(key, v)?;
                has_prompt = true;
            }
            "negative_prompt" => spec.negative_prompt = text(key, v)?,
            "seed" => match v {
                Variant::U64(n) => spec.seed = Some(*n),
                other => {
                    return Err(invalid(
                        key,
                        format!("expected t, got {}", other.value_signature()),
                    ));
                }
            },
            "steps" => spec.steps = Some(uint(key, v)?),
            "guidance" => spec.guidance = Some(double(key, v)? as f32),
            "scheduler" => spec.scheduler = Some(text(key, v)?),
            "width" => spec.width = Some(uint(key, v)?),
            "height" => spec.height = Some(uint(key, v)?),
            "output" => spec.output = Some(text(key, v)?),
            "aspect" => spec.aspect = Some(text(key, v)?),
            "style" => style = Some(text(key, v)?),
            "strength" => spec.strength = Some(double(key, v)? as f32),
            "init_image" => match v {
                Variant::Fd(fd) => {
                    let owned = fd
                        .as_fd()
                        .try_clone_to_owned()
                        .map_err(|e| invalid(key, format!("the passed fd cannot be used: {e}")))?;
                    init = InitSource::Fd(owned);
                }
                other => {
                    return Err(invalid(
                        key,
                        format!("expected h, got {}", other.value_signature()),
                    ));
                }
            },
            "source" => match text(key, v)?.as_str() {
                "camera" => camera = true,
                other => {
                    return Err(invalid(
                        key,
                        format!("unknown source {other:?} (known: camera)"),
                    ));
                }
            },
            other => return Err(invalid(other, "unknown key")),
        }
    }
    if !has_prompt {
        return Err(invalid("prompt", "is required"));
    }
    if let Some(name) = style {
        crate::studio::apply_style(&mut spec, &name).map_err(CallError::from)?;
    }
    crate::studio::validate(&spec).map_err(CallError::from)?;
    if camera {
        if matches!(init, InitSource::Fd(_)) {
            return Err(invalid(
                "source",
                "give either init_image or source=camera, not both",
            ));
        }
        init = InitSource::Camera;
    }
    Ok((spec, init))
}

/// The manager object at [`OBJECT_PATH`].
pub struct Manager {
    studio: Arc<Studio>,
    screen: Option<crate::ui::headless::Headless>,
}

impl Manager {
    /// Serve this Studio.
    pub fn new(studio: Arc<Studio>) -> Self {
        Manager {
            studio,
            screen: None,
        }
    }

    /// Let `Screenshot` read what the touch UI shows.
    pub fn with_screen(mut self, screen: Option<crate::ui::headless::Headless>) -> Self {
        self.screen = screen;
        self
    }
}

fn entry_dict(entry: &crate::store::Entry, path: String) -> HashMap<String, OwnedVariant> {
    let mut d = HashMap::new();
    let mut put = |k: &str, v: Variant<'_>| {
        if let Ok(v) = OwnedVariant::try_from(v) {
            d.insert(k.to_string(), v);
        }
    };
    put("id", Variant::from(entry.id.as_str()));
    put("path", Variant::from(path));
    put("prompt", Variant::from(entry.prompt.as_str()));
    put("seed", Variant::from(entry.seed));
    put("width", Variant::from(entry.width));
    put("height", Variant::from(entry.height));
    put("created", Variant::from(entry.created));
    put("bytes", Variant::from(entry.bytes));
    d
}

#[interface(
    name = "org.pocketstudio.Studio1",
    proxy(
        default_service = "org.pocketstudio.Studio1",
        default_path = "/org/pocketstudio/Studio1"
    )
)]
impl Manager {
    /// Queue a job; returns its object path at once.
    async fn generate(
        &self,
        request: HashMap<String, OwnedVariant>,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> Result<OwnedObjectPath, CallError> {
        let (mut spec, init) = parse_request(&request)?;
        let id = match init {
            InitSource::None => self.studio.submit(spec)?,
            InitSource::Fd(fd) => {
                spec.init_image = Some(Arc::new(read_init_image(fd).await?));
                self.studio.submit(spec)?
            }
            InitSource::Camera => {
                let studio = self.studio.clone();
                tokio::task::spawn_blocking(move || studio.submit_from_camera(spec))
                    .await
                    .map_err(|e| CallError::Standard(zbus::fdo::Error::Failed(e.to_string())))??
            }
        };
        let path = job_path(id);
        let status = self.studio.status(id);
        if let Some(status) = status {
            server
                .at(&path, JobObject::new(self.studio.clone(), status))
                .await?;
        }
        Ok(path)
    }

    /// Every known job, oldest first.
    async fn list_jobs(&self) -> Vec<OwnedObjectPath> {
        self.studio.jobs().into_iter().map(job_path).collect()
    }

    /// Gallery images, newest first.
    async fn list_images(&self, offset: u32, limit: u32) -> Vec<HashMap<String, OwnedVariant>> {
        let gallery = self.studio.gallery();
        gallery
            .list(offset as usize, limit as usize)
            .iter()
            .map(|e| {
                let path = gallery
                    .dir()
                    .join(format!("{}.png", e.id))
                    .display()
                    .to_string();
                entry_dict(e, path)
            })
            .collect()
    }

    /// Remove an image from the gallery.
    async fn delete_image(&self, id: &str) -> Result<(), CallError> {
        Ok(self.studio.gallery().delete(id)?)
    }

    /// A read-only file descriptor of an image's PNG.
    async fn open_image(&self, id: &str) -> Result<zbus::OwnedFd, CallError> {
        let path = self.studio.gallery().path_of(id)?;
        let file = std::fs::File::open(&path).map_err(|e| CallError::from(Error::io(&path, e)))?;
        Ok(zbus::OwnedFd::from(std::os::fd::OwnedFd::from(file)))
    }

    /// A PNG of what the touch UI shows now: the display's frame, or the
    /// headless frame when no display is connected.
    async fn screenshot(&self) -> Result<Vec<u8>, CallError> {
        let screen = self.screen.as_ref().ok_or_else(|| {
            CallError::Standard(zbus::fdo::Error::NotSupported(
                "the touch UI is off (disabled in the config, or no font)".into(),
            ))
        })?;
        screen
            .png()
            .map_err(|e| CallError::Standard(zbus::fdo::Error::Failed(e.to_string())))
    }

    /// Service version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        crate::VERSION.to_string()
    }

    /// Loaded models and their state.
    #[zbus(property(emits_changed_signal = "const"))]
    fn models(&self) -> Vec<HashMap<String, OwnedVariant>> {
        let put = |d: &mut HashMap<String, OwnedVariant>, k: &str, v: Variant<'_>| {
            if let Ok(v) = OwnedVariant::try_from(v) {
                d.insert(k.to_string(), v);
            }
        };
        let mut model = HashMap::new();
        put(&mut model, "kind", Variant::from("text-to-image"));
        match self.studio.model() {
            Ok(info) => {
                put(&mut model, "name", Variant::from(info.name.as_str()));
                put(&mut model, "available", Variant::from(true));
                put(&mut model, "verified", Variant::from(info.verified));
                put(&mut model, "native_width", Variant::from(info.native_width));
                put(
                    &mut model,
                    "native_height",
                    Variant::from(info.native_height),
                );
                put(
                    &mut model,
                    "sha256",
                    Variant::from(info.unet_sha256.clone().unwrap_or_default()),
                );
            }
            Err((file, reason)) => {
                put(&mut model, "available", Variant::from(false));
                put(
                    &mut model,
                    "file",
                    Variant::from(file.display().to_string()),
                );
                put(&mut model, "error", Variant::from(reason.as_str()));
            }
        }
        let mut models = vec![model];
        if let Some(name) = self.studio.upscaler_name() {
            let mut up = HashMap::new();
            put(&mut up, "name", Variant::from(name));
            put(&mut up, "kind", Variant::from("upscaler"));
            put(&mut up, "available", Variant::from(true));
            models.push(up);
        }
        models
    }

    /// Jobs accepted and not finished.
    #[zbus(property)]
    fn queue_length(&self) -> u32 {
        self.studio.queue_length() as u32
    }

    /// The queue bound.
    #[zbus(property(emits_changed_signal = "const"))]
    fn max_queue(&self) -> u32 {
        self.studio.max_queue() as u32
    }

    /// Bytes free where images are saved.
    #[zbus(property(emits_changed_signal = "false"))]
    fn storage_free(&self) -> u64 {
        self.studio.gallery().bytes_free().unwrap_or(0)
    }

    /// A new image is in the gallery.
    #[zbus(signal)]
    async fn image_saved(emitter: &SignalEmitter<'_>, id: &str, path: &str) -> zbus::Result<()>;
}

/// One job at `/org/pocketstudio/Studio1/jobs/<n>`.
pub struct JobObject {
    studio: Arc<Studio>,
    status: JobStatus,
}

impl JobObject {
    fn new(studio: Arc<Studio>, status: JobStatus) -> Self {
        JobObject { studio, status }
    }

    /// The job's status now, for property reads: the copy kept here follows
    /// the change signals, which are throttled ([`PROPERTY_INTERVAL`]), so a
    /// `Get` right after `Cancel` would otherwise report a step several steps
    /// old. The copy answers once the Studio has forgotten the job.
    fn current(&self) -> JobStatus {
        self.studio
            .status(self.status.id)
            .unwrap_or_else(|| self.status.clone())
    }
}

#[interface(
    name = "org.pocketstudio.Studio1.Job",
    proxy(default_service = "org.pocketstudio.Studio1")
)]
impl JobObject {
    /// Stop the job (within one step or tile when running).
    async fn cancel(&self) -> Result<(), CallError> {
        Ok(self.studio.cancel(self.status.id)?)
    }

    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    #[zbus(property)]
    fn state(&self) -> String {
        self.current().state.name().to_string()
    }

    /// `encoding`, `denoising`, `decoding`, `upscaling` or `saving`.
    #[zbus(property)]
    fn stage(&self) -> String {
        self.current().stage.to_string()
    }

    /// Fraction done, 0..1, never decreasing.
    #[zbus(property)]
    fn progress(&self) -> f64 {
        self.current().progress
    }

    /// Denoising steps done.
    #[zbus(property)]
    fn step(&self) -> u32 {
        self.current().step
    }

    /// Denoising steps in all.
    #[zbus(property)]
    fn steps(&self) -> u32 {
        self.current().steps
    }

    /// Gallery id once saved.
    #[zbus(property)]
    fn image_id(&self) -> String {
        self.current().image_id.clone()
    }

    /// PNG path once saved.
    #[zbus(property)]
    fn output_path(&self) -> String {
        self.current().output_path.clone()
    }

    /// Why the job failed or was cancelled.
    #[zbus(property)]
    fn error(&self) -> String {
        self.current().error.clone()
    }

    /// A small preview PNG of the latents, at most once per step.
    #[zbus(signal)]
    async fn preview(emitter: &SignalEmitter<'_>, png: &[u8]) -> zbus::Result<()>;

    /// The job reached a final state.
    #[zbus(signal)]
    async fn finished(emitter: &SignalEmitter<'_>, ok: bool, detail: &str) -> zbus::Result<()>;
}

/// Serve `studio` on `connection`: the manager must already be served at
/// [`OBJECT_PATH`]. Registers objects for jobs the Studio already has
/// (replayed from its journal), then relays events until the Studio stops.
pub async fn relay_events(
    connection: Connection,
    studio: Arc<Studio>,
    on_queue_change: impl Fn(usize) + Send + 'static,
) -> zbus::Result<()> {
    let mut events = studio.subscribe();
    let server = connection.object_server();
    for id in studio.jobs() {
        if let Some(status) = studio.status(id) {
            server
                .at(&job_path(id), JobObject::new(studio.clone(), status))
                .await?;
        }
    }
    let manager: InterfaceRef<Manager> = server.interface(OBJECT_PATH).await?;
    let mut pending: HashMap<u64, JobStatus> = HashMap::new();
    let mut last_emit: HashMap<u64, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(PROPERTY_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut queue_length = studio.queue_length();
    loop {
        tokio::select! {
            event = events.recv() => {
                let event = match event {
                    Ok(event) => event,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        log::warn!("event relay lagged by {n} events; resyncing job states");
                        for id in studio.jobs() {
                            if let Some(status) = studio.status(id) {
                                pending.insert(id, status);
                            }
                        }
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                };
                match event {
                    Event::Changed(status) => {
                        let id = status.id;
                        pending.insert(id, status);
                        let due = last_emit.get(&id).is_none_or(|t| t.elapsed() >= PROPERTY_INTERVAL);
                        if due && let Some(status) = pending.remove(&id) {
                                publish(server, &studio, status).await;
                                last_emit.insert(id, Instant::now());
                            }
                    }
                    Event::Preview { id, png } => {
                        if let Ok(job) = server.interface::<_, JobObject>(job_path(id)).await {
                            let _ = JobObject::preview(job.signal_emitter(), &png).await;
                        }
                    }
                    Event::Finished { id, ok, detail } => {
                        let status = pending.remove(&id).or_else(|| studio.status(id));
                        if let Some(status) = status {
                            publish(server, &studio, status).await;
                        }
                        if let Ok(job) = server.interface::<_, JobObject>(job_path(id)).await {
                            let _ = JobObject::finished(job.signal_emitter(), ok, &detail).await;
                        }
                    }
                    Event::ImageSaved { id, path } => {
                        let _ = Manager::image_saved(manager.signal_emitter(), &id, &path).await;
                    }
                }
            }
            _ = ticker.tick() => {
                for (id, status) in pending.drain() {
                    publish(server, &studio, status).await;
                    last_emit.insert(id, Instant::now());
                }
                let known = studio.jobs();
                last_emit.retain(|id, _| known.contains(id));
            }
        }
        let length = studio.queue_length();
        if length != queue_length {
            queue_length = length;
            let _ = manager
                .get()
                .await
                .queue_length_changed(manager.signal_emitter())
                .await;
            on_queue_change(length);
        }
    }
}

/// Store a job's new status on its object and emit what changed.
async fn publish(server: &ObjectServer, studio: &Arc<Studio>, status: JobStatus) {
    let path = job_path(status.id);
    let job = match server.interface::<_, JobObject>(&path).await {
        Ok(job) => job,
        Err(_) => {
            // A job created outside D-Bus (touch UI, journal): give it an object.
            let object = JobObject::new(studio.clone(), status.clone());
            if server.at(&path, object).await.is_err() {
                return;
            }
            match server.interface::<_, JobObject>(&path).await {
                Ok(job) => job,
                Err(_) => return,
            }
        }
    };
    let old = std::mem::replace(&mut job.get_mut().await.status, status.clone());
    let emitter = job.signal_emitter();
    let iface = job.get().await;
    if old.state != status.state {
        let _ = iface.state_changed(emitter).await;
    }
    if old.stage != status.stage {
        let _ = iface.stage_changed(emitter).await;
    }
    if old.progress != status.progress {
        let _ = iface.progress_changed(emitter).await;
    }
    if old.step != status.step {
        let _ = iface.step_changed(emitter).await;
    }
    if old.steps != status.steps {
        let _ = iface.steps_changed(emitter).await;
    }
    if old.image_id != status.image_id {
        let _ = iface.image_id_changed(emitter).await;
    }
    if old.output_path != status.output_path {
        let _ = iface.output_path_changed(emitter).await;
    }
    if old.error != status.error {
        let _ = iface.error_changed(emitter).await;
    }
}
