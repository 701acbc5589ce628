//! The service issue's "must show" list, against a real `dbus-daemon` started
//! here with a private config, and the real `pocket-studiod` binary on the
//! tiny bundle.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pocket_studio::service::dbus::{
    BUS_NAME, INTROSPECTION_XML, JOBS_PATH, JobObjectProxy, ManagerProxy, OBJECT_PATH,
};
use zbus::{Connection, MatchRule, MessageStream, OwnedVariant, Variant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A world-readable temp folder (the policy test runs clients as `nobody`).
fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A private dbus-daemon, killed on drop.
struct Bus {
    daemon: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Bus {
    /// `policy`: extra `<include>`d policy files after an allow-all default.
    fn start(policies: &[&Path]) -> Bus {
        let dir = open_tempdir();
        let includes: String = policies
            .iter()
            .map(|p| format!("  <include>{}</include>\n", p.display()))
            .collect();
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
{includes}  <policy user="root">
    <allow own="{BUS_NAME}"/>
  </policy>
</busconfig>
"#,
            dir.path().display()
        );
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config).expect("bus config");
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon (Debian package dbus) must be installed");
        let mut line = String::new();
        BufReader::new(daemon.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("bus address");
        Bus {
            daemon,
            address: line.trim().to_string(),
            _dir: dir,
        }
    }

    async fn connect(&self) -> Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .build()
            .await
            .expect("connect to the test bus")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// A running `pocket-studiod`, killed on drop.
struct Service {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Service {
    async fn start(bus: &Bus, extra: &str) -> Service {
        Self::start_with_model(bus, &repo().join("models/tiny-sd"), extra).await
    }

    async fn start_with_model(bus: &Bus, model: &Path, extra: &str) -> Service {
        let dir = open_tempdir();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "model = {:?}\nupscaler = {:?}\nimages_dir = {:?}\nstate_dir = {:?}\noutput = \"native\"\n{extra}\n[gallery]\nreserve_mb = 1\n",
                model,
                dir.path().join("no-upscaler"),
                dir.path().join("images"),
                dir.path().join("state"),
            ),
        )
        .expect("config");
        let mut service = Service {
            child: None,
            dir,
            config,
        };
        service.spawn(bus).await;
        service
    }

    async fn spawn(&mut self, bus: &Bus) {
        let child = Command::new(env!("CARGO_BIN_EXE_pocket-studiod"))
            .arg("--config")
            .arg(&self.config)
            .args(["--bus", &bus.address])
            .stderr(self.log_file())
            .spawn()
            .expect("start pocket-studiod");
        self.child = Some(child);
        let connection = bus.connect().await;
        let dbus = zbus::fdo::DBusProxy::new(&connection)
            .await
            .expect("bus proxy");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dbus
            .name_has_owner(BUS_NAME.try_into().expect("name"))
            .await
            .unwrap_or(false)
        {
            assert!(
                Instant::now() < deadline,
                "pocket-studiod never took its name"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stop the way `systemctl stop` does: SIGTERM, then wait for the exit.
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let status = child.wait().expect("wait for pocket-studiod");
            assert!(status.success(), "SIGTERM exit: {status}");
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The service's stderr (its log), appended across restarts.
    fn log_file(&self) -> Stdio {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("service.log"))
            .expect("service log");
        Stdio::from(file)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    fn images(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

fn request(pairs: &[(&str, Variant<'_>)]) -> HashMap<String, OwnedVariant> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                OwnedVariant::try_from(v.clone()).expect("owned"),
            )
        })
        .collect()
}

/// Signals of every job object, subscribed before the job exists.
async fn job_signals(connection: &Connection) -> MessageStream {
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(BUS_NAME)
        .path_namespace(JOBS_PATH)
        .build()
        .expect("match rule");
    MessageStream::for_match_rule(rule, connection, None)
        .await
        .expect("match rule")
}

/// What one job emitted, until `Finished`.
#[derive(Default, Debug)]
struct Seen {
    progress: Vec<f64>,
    steps: Vec<u32>,
    states: Vec<String>,
    previews: usize,
    finished: Option<(bool, String)>,
}

async fn follow(stream: &mut MessageStream, path: &str, timeout: Duration) -> Seen {
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + timeout;
    while seen.finished.is_none() {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{path}: no Finished within {timeout:?}; saw {seen:?}"))
            .expect("stream open")
            .expect("message");
        let header = message.header();
        if header.path().map(|p| p.as_str()) != Some(path) {
            continue;
        }
        let member = header.member().map(|m| m.to_string()).unwrap_or_default();
        let body = message.body();
        match member.as_str() {
            "PropertiesChanged" => {
                let (_, changed, _): (String, HashMap<String, OwnedVariant>, Vec<String>) =
                    body.deserialize().expect("PropertiesChanged body");
                if let Some(v) = changed.get("Progress") {
                    seen.progress
                        .push(f64::try_from(&**v).expect("Progress is d"));
                }
                if let Some(v) = changed.get("Step") {
                    seen.steps.push(u32::try_from(&**v).expect("Step is u"));
                }
                if let Some(v) = changed.get("State") {
                    seen.states
                        .push(String::try_from(v.clone()).expect("State is s"));
                }
            }
            "Preview" => {
                let png: Vec<u8> = body.deserialize().expect("Preview body");
                assert!(png.starts_with(b"\x89PNG"), "Preview carries a PNG");
                seen.previews += 1;
            }
            "Finished" => {
                seen.finished = Some(body.deserialize().expect("Finished body"));
            }
            _ => {}
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_and_introspection() {
    let bus = Bus::start(&[]);
    let service = Service::start(&bus, "").await;
    let connection = bus.connect().await;
    let manager = ManagerProxy::new(&connection).await.expect("proxy");
    let mut signals = job_signals(&connection).await;

    let path = manager
        .generate(request(&[
            ("prompt", Variant::from("a lighthouse at dawn")),
            ("steps", Variant::from(6u32)),
            ("seed", Variant::from(11u64)),
        ]))
        .await
        .expect("Generate");
    assert!(path.as_str().starts_with(JOBS_PATH), "{path}");
    let seen = follow(&mut signals, path.as_str(), Duration::from_secs(60)).await;
    let (ok, detail) = seen.finished.clone().expect("finished");
    assert!(ok, "Finished(false): {detail}");
    assert!(
        seen.progress.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {:?}",
        seen.progress
    );
    assert!(
        seen.progress.len() >= 2,
        "too few Progress changes: {:?}",
        seen.progress
    );
    assert_eq!(seen.progress.last().copied(), Some(1.0));
    assert!(seen.previews >= 1, "no Preview signal");
    assert_eq!(seen.states.last().map(String::as_str), Some("done"));

    let job = JobObjectProxy::builder(&connection)
        .path(path.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .expect("job proxy");
    let output = job.output_path().await.expect("OutputPath");
    assert_eq!(output, detail);
    assert!(Path::new(&output).starts_with(service.images()), "{output}");
    let png = pocket_studio::store::read_png(Path::new(&output)).expect("a decodable PNG");
    assert_eq!((png.width, png.height), (64, 64));
    let image_id = job.image_id().await.expect("ImageId");
    let listed = manager.list_images(0, 10).await.expect("ListImages");
    assert!(
        listed.iter().any(
            |e| e.get("id").and_then(|v| String::try_from(v.clone()).ok())
                == Some(image_id.clone())
        ),
        "{image_id} not in ListImages"
    );
    assert_eq!(manager.queue_length().await.expect("QueueLength"), 0);

    // OpenImage hands out the same bytes.
    let fd = manager.open_image(&image_id).await.expect("OpenImage");
    let mut file = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).expect("read fd");
    assert_eq!(bytes, std::fs::read(&output).expect("read file"));

    // The committed introspection matches the live service.
    let live = format!(
        "{}{}",
        zbus::fdo::IntrospectableProxy::builder(&connection)
            .destination(BUS_NAME)
            .path(OBJECT_PATH)
            .build()
            .await
            .expect("proxy")
            .introspect()
            .await
            .expect("introspect manager"),
        zbus::fdo::IntrospectableProxy::builder(&connection)
            .destination(BUS_NAME)
            .path(path.as_str())
            .build()
            .await
            .expect("proxy")
            .introspect()
            .await
            .expect("introspect job"),
    );
    for name in ["org.pocketstudio.Studio1", "org.pocketstudio.Studio1.Job"] {
        let committed = interface_xml(INTROSPECTION_XML, name);
        let running = interface_xml(&live, name);
        assert_eq!(
            committed, running,
            "{name}: systemd/org.pocketstudio.Studio1.xml is stale"
        );
    }

    // Deleting removes it from the listing; a second delete is NotFound.
    manager.delete_image(&image_id).await.expect("DeleteImage");
    let err = manager
        .delete_image(&image_id)
        .await
        .expect_err("second delete");
    assert!(
        err.to_string()
            .contains("org.pocketstudio.Studio1.Error.NotFound"),
        "{err}"
    );
}

/// One `<interface>` element, whitespace-normalised.
fn interface_xml(xml: &str, name: &str) -> String {
    let start = xml
        .find(&format!("<interface name=\"{name}\">"))
        .unwrap_or_else(|| panic!("{name} missing"));
    let end = start + xml[start..].find("</interface>").expect("end") + "</interface>".len();
    xml[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_takes_effect_within_one_step_and_a_full_queue_says_so() {
    let bus = Bus::start(&[]);
    let _service = Service::start(&bus, "max_queue = 2").await;
    let connection = bus.connect().await;
    let manager = ManagerProxy::new(&connection).await.expect("proxy");
    let mut signals = job_signals(&connection).await;
    let long = || {
        request(&[
            ("prompt", Variant::from("a long job")),
            ("steps", Variant::from(150u32)),
        ])
    };
    let first = manager.generate(long()).await.expect("first");
    let _second = manager.generate(long()).await.expect("second");
    let err = manager
        .generate(long())
        .await
        .expect_err("third must be refused");
    assert!(
        err.to_string()
            .contains("org.pocketstudio.Studio1.Error.QueueFull"),
        "{err}"
    );

    let job = JobObjectProxy::builder(&connection)
        .path(first.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .expect("job");
    let deadline = Instant::now() + Duration::from_secs(60);
    while job.step().await.expect("Step") < 3 {
        assert!(Instant::now() < deadline, "the job never reached step 3");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    job.cancel().await.expect("Cancel");
    // Read once the service has taken the cancel: a step takes a few
    // milliseconds on the tiny bundle, so a read before the call could be
    // several steps behind by the time the call arrives.
    let step_at_cancel = job.step().await.expect("Step");
    let seen = follow(&mut signals, first.as_str(), Duration::from_secs(30)).await;
    let (ok, detail) = seen.finished.expect("finished");
    assert!(!ok);
    assert_eq!(detail, "cancelled");
    assert_eq!(job.state().await.expect("State"), "cancelled");
    let final_step = job.step().await.expect("Step");
    assert!(
        final_step <= step_at_cancel + 1,
        "ran to step {final_step} after cancel at {step_at_cancel}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_with_a_wrong_type_or_range_is_invalid_args_naming_it() {
    let bus = Bus::start(&[]);
    let _service = Service::start(&bus, "").await;
    let connection = bus.connect().await;
    let manager = ManagerProxy::new(&connection).await.expect("proxy");
    let prompt = ("prompt", Variant::from("ok"));
    let cases: Vec<(&str, Vec<(&str, Variant<'_>)>)> = vec![
        ("prompt", vec![("prompt", Variant::from(5u32))]),
        ("prompt", vec![("prompt", Variant::from(""))]),
        ("prompt", vec![("steps", Variant::from(5u32))]),
        (
            "negative_prompt",
            vec![prompt.clone(), ("negative_prompt", Variant::from(1.0f64))],
        ),
        (
            "negative_prompt",
            vec![
                prompt.clone(),
                ("negative_prompt", Variant::from("n".repeat(5000))),
            ],
        ),
        ("seed", vec![prompt.clone(), ("seed", Variant::from("7"))]),
        ("seed", vec![prompt.clone(), ("seed", Variant::from(-1i64))]),
        ("steps", vec![prompt.clone(), ("steps", Variant::from("4"))]),
        (
            "steps",
            vec![prompt.clone(), ("steps", Variant::from(0u32))],
        ),
        (
            "steps",
            vec![prompt.clone(), ("steps", Variant::from(151u32))],
        ),
        (
            "guidance",
            vec![prompt.clone(), ("guidance", Variant::from(7u32))],
        ),
        (
            "guidance",
            vec![prompt.clone(), ("guidance", Variant::from(-2.0f64))],
        ),
        (
            "guidance",
            vec![prompt.clone(), ("guidance", Variant::from(f64::NAN))],
        ),
        (
            "scheduler",
            vec![prompt.clone(), ("scheduler", Variant::from(1u32))],
        ),
        (
            "scheduler",
            vec![prompt.clone(), ("scheduler", Variant::from("heun"))],
        ),
        (
            "width",
            vec![prompt.clone(), ("width", Variant::from(64i32))],
        ),
        (
            "width",
            vec![prompt.clone(), ("width", Variant::from(65u32))],
        ),
        (
            "height",
            vec![prompt.clone(), ("height", Variant::from("64"))],
        ),
        (
            "height",
            vec![prompt.clone(), ("height", Variant::from(0u32))],
        ),
        // The test service has no upscaler: refused at once, not failed later.
        (
            "output",
            vec![prompt.clone(), ("output", Variant::from("4k"))],
        ),
        (
            "output",
            vec![prompt.clone(), ("output", Variant::from(4u32))],
        ),
        (
            "output",
            vec![prompt.clone(), ("output", Variant::from("8k"))],
        ),
        (
            "aspect",
            vec![prompt.clone(), ("aspect", Variant::from("round"))],
        ),
        (
            "style",
            vec![prompt.clone(), ("style", Variant::from(true))],
        ),
        (
            "style",
            vec![prompt.clone(), ("style", Variant::from("cubism"))],
        ),
        (
            "init_image",
            vec![prompt.clone(), ("init_image", Variant::from("x"))],
        ),
        (
            "source",
            vec![prompt.clone(), ("source", Variant::from("webcam"))],
        ),
        (
            "source",
            vec![prompt.clone(), ("source", Variant::from(1u32))],
        ),
        (
            "strength",
            vec![prompt.clone(), ("strength", Variant::from(2.0f64))],
        ),
        (
            "strength",
            vec![prompt.clone(), ("strength", Variant::from("0.5"))],
        ),
        // Strength means nothing without a picture to start from.
        (
            "strength",
            vec![prompt.clone(), ("strength", Variant::from(0.5f64))],
        ),
        (
            "colour",
            vec![prompt.clone(), ("colour", Variant::from("red"))],
        ),
    ];
    for (key, pairs) in cases {
        let err = manager.generate(request(&pairs)).await.expect_err(key);
        let text = err.to_string();
        assert!(
            text.contains("org.freedesktop.DBus.Error.InvalidArgs"),
            "{key}: {text}"
        );
        assert!(text.contains(key), "{key}: {text} does not name the key");
    }
    // The service is still fine.
    assert_eq!(manager.queue_length().await.expect("alive"), 0);
}

/// A file the test passes over D-Bus as an `h`.
fn fd_of(path: &Path) -> std::fs::File {
    std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn img2img_from_a_passed_fd_records_its_source_and_bad_pictures_are_refused() {
    let bus = Bus::start(&[]);
    let service = Service::start(&bus, "[camera]\ndevice = \"/nonexistent/video9\"").await;
    let connection = bus.connect().await;
    let manager = ManagerProxy::new(&connection).await.expect("proxy");
    let mut signals = job_signals(&connection).await;
    let init = repo().join("tests/fixtures/parity/img2img-euler/init.png");

    let file = fd_of(&init);
    let path = manager
        .generate(request(&[
            ("prompt", Variant::from("the same scene as a watercolour")),
            ("init_image", Variant::from(zbus::Fd::from(&file))),
            ("strength", Variant::from(0.5f64)),
            ("steps", Variant::from(8u32)),
            ("seed", Variant::from(5u64)),
        ]))
        .await
        .expect("Generate with init_image");
    let seen = follow(&mut signals, path.as_str(), Duration::from_secs(60)).await;
    let (ok, output) = seen.finished.clone().expect("finished");
    assert!(ok, "Finished(false): {output}");
    // Strength 0.5 of 8 steps runs the last 4, and progress says so.
    assert_eq!(
        seen.steps.iter().max().copied(),
        Some(4),
        "{:?}",
        seen.steps
    );
    let (_, _, text) = pocket_studio::store::read_png_text(Path::new(&output)).expect("PNG text");
    assert_eq!(
        text.get("init_image").map(String::as_str),
        Some("image 64x64")
    );
    assert_eq!(text.get("strength").map(String::as_str), Some("0.5"));
    assert!(
        text["parameters"].contains("Denoising strength: 0.5"),
        "{}",
        text["parameters"]
    );
    // Provenance: too small to watermark (and it says so), signed by the
    // key the service made in its state folder on first start.
    assert_eq!(text["watermark"], "skipped: 64x64 is under 65536 pixels");
    assert_eq!(text["c2pa"], "signed");
    let anchor = std::fs::read_to_string(service.state().join("provenance/device-ca.pem"))
        .expect("the service made its signing identity");
    let seen = pocket_studio::provenance::report::inspect(
        Path::new(&output),
        &Default::default(),
        Some(&anchor),
    )
    .expect("inspect");
    let manifest = seen.manifest.expect("a C2PA manifest");
    assert_eq!(manifest.state, "Trusted", "{:?}", manifest.failures);
    assert_eq!(
        manifest.digital_source_type.as_deref(),
        Some(pocket_studio::provenance::c2pa::TRAINED_ALGORITHMIC_MEDIA)
    );
    let id = Path::new(&output)
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("id");
    let kept =
        pocket_studio::store::read_png(&service.images().join("sources").join(format!("{id}.png")))
            .expect("the source is kept beside the result");
    assert_eq!(kept, pocket_studio::store::read_png(&init).expect("init"));

    // Not a picture, a truncated one, both a picture and the camera, a camera
    // that is not there: each refused at once, nothing queued.
    let text_file = service.dir.path().join("notes.txt");
    std::fs::write(&text_file, "not a picture").expect("write");
    let truncated = service.dir.path().join("cut.png");
    let bytes = std::fs::read(&init).expect("init bytes");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    for (key, bad) in [("init_image", &text_file), ("init_image", &truncated)] {
        let file = fd_of(bad);
        let err = manager
            .generate(request(&[
                ("prompt", Variant::from("x")),
                ("init_image", Variant::from(zbus::Fd::from(&file))),
            ]))
            .await
            .expect_err("a bad picture is refused");
        let text = err.to_string();
        assert!(text.contains("InvalidArgs") && text.contains(key), "{text}");
    }
    let file = fd_of(&init);
    let err = manager
        .generate(request(&[
            ("prompt", Variant::from("x")),
            ("init_image", Variant::from(zbus::Fd::from(&file))),
            ("source", Variant::from("camera")),
        ]))
        .await
        .expect_err("two sources");
    assert!(err.to_string().contains("source"), "{err}");
    let err = manager
        .generate(request(&[
            ("prompt", Variant::from("x")),
            ("source", Variant::from("camera")),
        ]))
        .await
        .expect_err("no camera");
    let text = err.to_string();
    assert!(
        text.contains("org.pocketstudio.Studio1.Error.CameraUnavailable")
            && text.contains("/nonexistent/video9")
            && text.contains("does not exist"),
        "{text}"
    );
    assert_eq!(manager.queue_length().await.expect("alive"), 0);
    assert_eq!(manager.list_images(0, 10).await.expect("alive").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_clients_times_ten_jobs_all_answered_once() {
    let bus = Bus::start(&[]);
    let service = Service::start(&bus, "max_queue = 128").await;
    let mut clients = Vec::new();
    for client in 0..10u64 {
        let connection = bus.connect().await;
        clients.push(tokio::spawn(async move {
            let manager = ManagerProxy::new(&connection).await.expect("proxy");
            let mut signals = job_signals(&connection).await;
            let mut paths = Vec::new();
            for job in 0..10u64 {
                let path = manager
                    .generate(request(&[
                        (
                            "prompt",
                            Variant::from(format!("client {client} job {job}")),
                        ),
                        ("steps", Variant::from(1u32)),
                        ("seed", Variant::from(client * 100 + job)),
                    ]))
                    .await
                    .expect("Generate");
                paths.push(path);
            }
            let mut results = Vec::new();
            for path in &paths {
                let seen = follow(&mut signals, path.as_str(), Duration::from_secs(300)).await;
                results.push((path.to_string(), seen.finished.expect("finished").0));
            }
            results
        }));
    }
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.expect("client task"));
    }
    assert_eq!(all.len(), 100);
    let unique: HashSet<_> = all.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(unique.len(), 100, "duplicate job paths");
    assert!(all.iter().all(|(_, ok)| *ok), "not every job finished ok");
    let pngs = std::fs::read_dir(service.images())
        .expect("images")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert_eq!(pngs, 100, "every job saved exactly one image");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_client_still_gets_its_image_into_the_gallery() {
    let bus = Bus::start(&[]);
    let service = Service::start(&bus, "").await;
    {
        let connection = bus.connect().await;
        let manager = ManagerProxy::new(&connection).await.expect("proxy");
        manager
            .generate(request(&[
                ("prompt", Variant::from("left behind")),
                ("steps", Variant::from(8u32)),
            ]))
            .await
            .expect("Generate");
    }
    let connection = bus.connect().await;
    let manager = ManagerProxy::new(&connection).await.expect("proxy");
    let deadline = Instant::now() + Duration::from_secs(60);
    while manager
        .list_images(0, 10)
        .await
        .expect("ListImages")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the image never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(service.images().read_dir().expect("dir").count() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_every_accepted_job_is_accounted_for() {
    every_accepted_job_is_accounted_for_after(Service::kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_the_interrupted_job_resumes() {
    every_accepted_job_is_accounted_for_after(Service::terminate).await;
}

async fn every_accepted_job_is_accounted_for_after(stop: fn(&mut Service)) {
    let bus = Bus::start(&[]);
    let mut service = Service::start(&bus, "max_queue = 8").await;
    let connection = bus.connect().await;
    let manager = ManagerProxy::new(&connection).await.expect("proxy");
    let mut ids = Vec::new();
    // Odd jobs start from a picture: their source is journaled too.
    let init = fd_of(&repo().join("tests/fixtures/parity/img2img-euler/init.png"));
    for n in 0..4u32 {
        let mut pairs = vec![
            ("prompt", Variant::from(format!("survivor {n}"))),
            ("steps", Variant::from(40u32)),
        ];
        if n % 2 == 1 {
            pairs.push(("init_image", Variant::from(zbus::Fd::from(&init))));
            pairs.push(("strength", Variant::from(0.9f64)));
        }
        let path = manager.generate(request(&pairs)).await.expect("Generate");
        ids.push(path.to_string());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(&mut service);

    service.spawn(&bus).await;
    let connection = bus.connect().await;
    let manager = ManagerProxy::new(&connection).await.expect("proxy");
    let listed: HashSet<String> = manager
        .list_jobs()
        .await
        .expect("ListJobs")
        .iter()
        .map(|p| p.to_string())
        .collect();
    // Jobs that finished before the kill left their image; every other one
    // was re-queued under the same path and must now finish.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut requeued = 0;
    for path in ids.iter().filter(|p| listed.contains(*p)) {
        requeued += 1;
        let job = JobObjectProxy::builder(&connection)
            .path(path.as_str())
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .expect("job");
        loop {
            let state = job.state().await.expect("State");
            if state == "done" {
                break;
            }
            assert!(state == "queued" || state == "running", "{path}: {state}");
            assert!(
                Instant::now() < deadline,
                "{path} never finished after restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        requeued > 0,
        "every job had finished before the kill: the test proves nothing"
    );
    let images = manager.list_images(0, 100).await.expect("ListImages");
    let prompts: HashSet<String> = images
        .iter()
        .filter_map(|e| {
            e.get("prompt")
                .and_then(|v| String::try_from(v.clone()).ok())
        })
        .collect();
    for n in 0..4 {
        assert!(
            prompts.contains(&format!("survivor {n}")),
            "survivor {n} was lost ({requeued} re-run)"
        );
    }
    assert_eq!(images.len(), 4, "a job ran twice or was lost: {prompts:?}");
    for image in &images {
        let path = String::try_from(image["path"].clone()).expect("path");
        let (_, _, text) = pocket_studio::store::read_png_text(Path::new(&path)).expect("text");
        let from_picture = ["survivor 1", "survivor 3"].contains(&text["prompt"].as_str());
        assert_eq!(
            text.get("init_image").map(String::as_str),
            from_picture.then_some("image 64x64"),
            "{path}"
        );
    }
    let journal = service.dir.path().join("state/jobs");
    let left: Vec<_> = std::fs::read_dir(&journal)
        .expect("journal dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "journal not cleaned up: {left:?}");
}

#[test]
fn the_policy_lets_only_group_pocketstudio_call() {
    let group = Command::new("getent")
        .args(["group", "pocketstudio"])
        .output()
        .expect("getent");
    assert!(
        group.status.success(),
        "group pocketstudio is missing: run `systemd-sysusers systemd/pocket-studio.sysusers` (.ci/run does)"
    );
    let gid = String::from_utf8_lossy(&group.stdout)
        .split(':')
        .nth(2)
        .expect("gid")
        .trim()
        .to_string();
    let policy = repo().join("systemd/org.pocketstudio.Studio1.conf");
    let bus = Bus::start(&[&policy]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _service = runtime.block_on(Service::start(&bus, ""));
    // The CLI must be runnable by `nobody`: copy it to an open folder.
    let bin_dir = open_tempdir();
    let cli = bin_dir.path().join("pocket-studio");
    std::fs::copy(env!("CARGO_BIN_EXE_pocket-studio"), &cli).expect("copy cli");
    let status_as = |groups: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", groups])
            .arg(&cli)
            .args(["--bus", &bus.address, "status"])
            .output()
            .expect("setpriv")
    };
    let outsider = status_as("--clear-groups");
    assert!(
        !outsider.status.success(),
        "a caller outside the group was let in"
    );
    let stderr = String::from_utf8_lossy(&outsider.stderr);
    assert!(stderr.contains("AccessDenied"), "{stderr}");
    let member = status_as(&format!("--groups={gid}"));
    assert!(
        member.status.success(),
        "a member of pocketstudio was refused: {}",
        String::from_utf8_lossy(&member.stderr)
    );
    assert!(String::from_utf8_lossy(&member.stdout).contains("queue"));
}

#[test]
fn the_units_verify_and_score_at_most_2_5() {
    let dir = open_tempdir();
    let unit = std::fs::read_to_string(repo().join("systemd/pocket-studio.service")).expect("unit");
    // verify checks that ExecStart exists: point it at the built daemon.
    let unit = unit.replace(
        "/usr/bin/pocket-studiod",
        env!("CARGO_BIN_EXE_pocket-studiod"),
    );
    let path = dir.path().join("pocket-studio.service");
    std::fs::write(&path, unit).expect("write unit");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    let relevant: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("pocket-studio"))
        .collect();
    assert!(
        relevant.is_empty(),
        "verify warnings:\n{}",
        relevant.join("\n")
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let out = String::from_utf8_lossy(&security.stdout);
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no score in:\n{out}\n{}",
                String::from_utf8_lossy(&security.stderr)
            )
        });
    println!("{line}");
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(score <= 2.5, "exposure {score} > 2.5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_comes_after_the_name_and_the_watchdog_is_fed() {
    let bus = Bus::start(&[]);
    let mut service = Service::start(&bus, "").await;
    service.kill();
    let dir = open_tempdir();
    let socket_path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pocket-studiod"))
        .arg("--config")
        .arg(&service.config)
        .args(["--bus", &bus.address])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(Stdio::null())
        .spawn()
        .expect("start pocket-studiod");
    let connection = bus.connect().await;
    let dbus = zbus::fdo::DBusProxy::new(&connection)
        .await
        .expect("bus proxy");
    let mut buf = [0u8; 4096];
    let mut ready = false;
    let mut watchdog = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while watchdog < 2 {
        assert!(
            Instant::now() < deadline,
            "ready {ready}, {watchdog} watchdog pings"
        );
        let n = socket.recv(&mut buf).expect("a notification");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.lines().any(|l| l == "READY=1") {
            let owned = dbus
                .name_has_owner(BUS_NAME.try_into().expect("name"))
                .await
                .expect("NameHasOwner");
            assert!(owned, "READY=1 before the bus name was owned");
            assert!(text.contains("STATUS="), "{text}");
            ready = true;
        }
        if text.lines().any(|l| l == "WATCHDOG=1") {
            assert!(ready, "watchdog fed before READY");
            watchdog += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_model_leaves_the_service_up_and_says_which_file() {
    let bus = Bus::start(&[]);
    let broken = open_tempdir();
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo().join("models/tiny-sd/."))
        .arg(broken.path())
        .status()
        .expect("cp");
    assert!(status.success());
    let unet = broken.path().join("unet/model.onnx");
    let mut bytes = std::fs::read(&unet).expect("read");
    bytes[4096] ^= 0x40;
    std::fs::write(&unet, bytes).expect("write");
    let _service = Service::start_with_model(&bus, broken.path(), "").await;
    let connection = bus.connect().await;
    let manager = ManagerProxy::new(&connection).await.expect("proxy");
    let models = manager.models().await.expect("Models");
    let model = &models[0];
    let available = model
        .get("available")
        .map(|v| bool::try_from(&**v).expect("b"));
    assert_eq!(available, Some(false));
    let file = model
        .get("file")
        .map(|v| String::try_from(v.clone()).expect("s"));
    assert_eq!(file.as_deref(), unet.to_str());
    let err = manager
        .generate(request(&[("prompt", Variant::from("anything"))]))
        .await
        .expect_err("no model, no job");
    let text = err.to_string();
    assert!(
        text.contains("org.pocketstudio.Studio1.Error.ModelUnavailable"),
        "{text}"
    );
    assert!(text.contains("unet/model.onnx"), "{text}");
    assert_eq!(manager.queue_length().await.expect("still answering"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_display_it_serves_dbus_says_so_once_and_screenshots_the_headless_ui() {
    let bus = Bus::start(&[]);
    let service = Service::start(
        &bus,
        "[ui]\ncard = \"/nonexistent/dri/card0\"\ninput = [\"/nonexistent/input/event0\"]\n",
    )
    .await;
    let connection = bus.connect().await;
    let manager = ManagerProxy::new(&connection).await.expect("proxy");
    // Past one display retry (5 s), still serving and still one log line.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut stream = job_signals(&connection).await;
    let path = manager
        .generate(request(&[("prompt", Variant::from("a quiet harbour"))]))
        .await
        .expect("Generate still works without a display");
    let seen = follow(&mut stream, path.as_str(), Duration::from_secs(120)).await;
    assert!(
        matches!(seen.finished, Some((true, _))),
        "job finished: {:?}",
        seen.finished
    );
    let log = service.log();
    let said = log.lines().filter(|l| l.contains("no display")).count();
    assert_eq!(
        said, 1,
        "one log line about the missing display, got:\n{log}"
    );

    // The headless UI is what Screenshot shows: the compose screen.
    let png = manager.screenshot().await.expect("Screenshot");
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut pixels).expect("decode");
    assert_eq!((info.width, info.height), (1280, 800));
    let channels = info.color_type.samples();
    // The accent-coloured Generate and Go buttons are there.
    let accent = pixels
        .chunks_exact(channels)
        .filter(|p| p[..3] == [0xe8, 0xa2, 0x5c])
        .count();
    assert!(
        accent > 10_000,
        "only {accent} accent pixels: not the compose screen"
    );
}
