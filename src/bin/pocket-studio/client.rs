//! The D-Bus client half of the CLI: the reference client of
//! `org.pocketstudio.Studio1`.
//!
//! `generate` submits and follows the job (stage, step, ETA); Ctrl-C asks
//! whether to cancel the job or detach. `jobs`, `cancel`, `images`, `status`
//! are one call each.

use std::collections::HashMap;
use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use pocket_studio::service::dbus::{CallError, JobObjectProxy, ManagerProxy, job_id, job_path};
use pocket_studio::studio::JobSpec;
use zbus::Connection;
use zbus::{OwnedVariant, Variant};

/// Connect to `system`, `session` or a bus address.
pub async fn connect(bus: &str) -> Result<Connection> {
    let connection = match bus {
        "system" => Connection::system().await,
        "session" => Connection::session().await,
        address => zbus::connection::Builder::address(address).build().await,
    };
    connection.with_context(|| format!("cannot connect to the {bus} bus"))
}

/// Submit a job (and a style preset) to the service and follow it.
pub async fn generate(bus: &str, submit: JobSpec, args: &crate::GenerateArgs) -> Result<()> {
    let style = args.style.clone();
    if args.camera.as_deref().is_some_and(|d| d != "auto") {
        bail!("with --bus the service uses its configured camera; give --camera without a device");
    }
    if args.precision.is_some() {
        bail!(
            "with --bus the service computes in its configured `[engine] precision`; --precision is for in-process generate"
        );
    }
    let init_file = match &args.init_image {
        Some(path) => Some(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => None,
    };
    let connection = connect(bus).await?;
    let manager = ManagerProxy::new(&connection).await?;
    let mut request: HashMap<&str, Variant<'_>> = HashMap::new();
    request.insert("prompt", Variant::from(submit.prompt.as_str()));
    if !submit.negative_prompt.is_empty() {
        request.insert(
            "negative_prompt",
            Variant::from(submit.negative_prompt.as_str()),
        );
    }
    if let Some(v) = submit.seed {
        request.insert("seed", Variant::from(v));
    }
    if let Some(v) = submit.steps {
        request.insert("steps", Variant::from(v));
    }
    if let Some(v) = submit.guidance {
        request.insert("guidance", Variant::from(f64::from(v)));
    }
    for (key, value) in [
        ("scheduler", &submit.scheduler),
        ("output", &submit.output),
        ("aspect", &submit.aspect),
        ("style", &style),
    ] {
        if let Some(v) = value {
            request.insert(key, Variant::from(v.as_str()));
        }
    }
    if let Some(v) = submit.width {
        request.insert("width", Variant::from(v));
    }
    if let Some(v) = submit.height {
        request.insert("height", Variant::from(v));
    }
    if let Some(v) = submit.strength {
        request.insert("strength", Variant::from(f64::from(v)));
    }
    if let Some(file) = &init_file {
        request.insert("init_image", Variant::from(zbus::Fd::from(file)));
    }
    if args.camera.is_some() {
        request.insert("source", Variant::from("camera"));
    }
    let request: HashMap<String, OwnedVariant> = request
        .into_iter()
        .map(|(k, v)| Ok((k.to_string(), OwnedVariant::try_from(v)?)))
        .collect::<Result<_, zbus::Error>>()?;
    let path = manager.generate(request).await.map_err(explain)?;
    let job = JobObjectProxy::builder(&connection)
        .path(path.clone())
        .build()
        .await?;
    let mut finished = job.receive_finished().await?;
    let mut progress = job.receive_progress_changed().await;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(1000)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:>18} [{bar:30}] {percent:>3}% ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    eprintln!("job {}", job_id(path.as_str()).unwrap_or(0));
    loop {
        tokio::select! {
            signal = finished.next() => {
                let Some(signal) = signal else { bail!("the service went away") };
                let args = signal.args()?;
                bar.finish_and_clear();
                if *args.ok() {
                    println!("{}", args.detail());
                    return Ok(());
                }
                bail!("job failed: {}", args.detail());
            }
            change = progress.next() => {
                if change.is_some() {
                    let fraction = job.progress().await.unwrap_or(0.0);
                    let stage = job.stage().await.unwrap_or_default();
                    let (step, steps) = (job.step().await.unwrap_or(0), job.steps().await.unwrap_or(0));
                    bar.set_position((fraction * 1000.0) as u64);
                    bar.set_message(if stage == "denoising" { format!("{stage} {step}/{steps}") } else { stage });
                }
            }
            _ = tokio::signal::ctrl_c() => {
                bar.suspend(|| ());
                if ask_cancel().await {
                    job.cancel().await.map_err(explain)?;
                    eprintln!("cancel requested; waiting for the job to stop");
                } else {
                    bar.finish_and_clear();
                    eprintln!("detached; the job goes on: {}", path.as_str());
                    return Ok(());
                }
            }
        }
    }
}

/// On a terminal, ask; elsewhere, cancel.
async fn ask_cancel() -> bool {
    if !std::io::stdin().is_terminal() {
        return true;
    }
    eprint!("\nCancel the job [c] or detach and let it finish [d]? ");
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).ok();
        !line.trim().eq_ignore_ascii_case("d")
    })
    .await
    .unwrap_or(true)
}

pub async fn jobs(bus: &str) -> Result<()> {
    let connection = connect(bus).await?;
    let manager = ManagerProxy::new(&connection).await?;
    for path in manager.list_jobs().await.map_err(explain)? {
        let job = JobObjectProxy::builder(&connection)
            .path(path.clone())
            .build()
            .await?;
        println!(
            "{:>6}  {:<9} {:<10} {:>5.1}%  {}",
            job_id(path.as_str()).unwrap_or(0),
            job.state().await?,
            job.stage().await?,
            job.progress().await? * 100.0,
            job.output_path().await?
        );
    }
    Ok(())
}

pub async fn cancel(bus: &str, id: u64) -> Result<()> {
    let connection = connect(bus).await?;
    let job = JobObjectProxy::builder(&connection)
        .path(job_path(id))
        .build()
        .await?;
    job.cancel().await.map_err(explain)?;
    Ok(())
}

pub async fn images(bus: &str, offset: u32, limit: u32) -> Result<()> {
    let connection = connect(bus).await?;
    let manager = ManagerProxy::new(&connection).await?;
    for image in manager.list_images(offset, limit).await.map_err(explain)? {
        let get = |k: &str| image.get(k).map(plain).unwrap_or_default();
        println!(
            "{}  {}x{}  seed {}  {}",
            get("id"),
            get("width"),
            get("height"),
            get("seed"),
            get("prompt")
        );
    }
    Ok(())
}

/// Save what the service's touch UI shows as a PNG.
pub async fn screenshot(bus: &str, out: &std::path::Path) -> Result<()> {
    let connection = connect(bus).await?;
    let manager = ManagerProxy::new(&connection).await?;
    let png = manager.screenshot().await.map_err(explain)?;
    pocket_studio::store::write_file_atomically(out, &png)?;
    println!("{}", out.display());
    Ok(())
}

pub async fn status(bus: &str) -> Result<()> {
    let connection = connect(bus).await?;
    let manager = ManagerProxy::new(&connection).await?;
    println!(
        "version       {}",
        manager.version().await.map_err(explain)?
    );
    println!(
        "queue         {}/{}",
        manager.queue_length().await?,
        manager.max_queue().await?
    );
    println!("storage free  {} MiB", manager.storage_free().await? >> 20);
    for model in manager.models().await? {
        let get = |k: &str| model.get(k).map(plain).unwrap_or_default();
        if !get("error").is_empty() {
            println!(
                "model         UNAVAILABLE: {}: {}",
                get("file"),
                get("error")
            );
            continue;
        }
        println!(
            "model         {} ({}, available {})",
            get("name"),
            get("kind"),
            get("available")
        );
    }
    Ok(())
}

/// A variant's value as a person reads it (no type tags, no quotes).
fn plain(value: &OwnedVariant) -> String {
    match &**value {
        Variant::Str(s) => s.to_string(),
        Variant::U32(n) => n.to_string(),
        Variant::U64(n) => n.to_string(),
        Variant::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Put the D-Bus error name in front, so scripts can match it.
fn explain(e: impl Into<CallError>) -> anyhow::Error {
    anyhow::anyhow!("{}", e.into())
}

/// Generate round-trip latency while the worker is busy, and the service's
/// resident memory: the figures of the service benchmark.
pub async fn service_bench(bus: &str, probes: usize, model_bytes: u64) -> Result<()> {
    let connection = connect(bus).await?;
    let manager = ManagerProxy::new(&connection).await?;
    let dbus = zbus::fdo::DBusProxy::new(&connection).await?;
    let pid = dbus
        .get_connection_unix_process_id(pocket_studio::service::dbus::BUS_NAME.try_into()?)
        .await?;
    let rss = || -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    let idle_rss = rss().unwrap_or(0);
    let owned = |pairs: Vec<(&str, Variant<'static>)>| -> Result<HashMap<String, OwnedVariant>> {
        pairs
            .into_iter()
            .map(|(k, v)| Ok((k.to_string(), OwnedVariant::try_from(v)?)))
            .collect()
    };
    let busy = manager
        .generate(owned(vec![
            ("prompt", Variant::from("keep the worker busy")),
            ("steps", Variant::from(150u32)),
        ])?)
        .await
        .map_err(explain)?;
    let busy_job = JobObjectProxy::builder(&connection)
        .path(busy.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    while busy_job.state().await? == "queued" {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut samples = Vec::with_capacity(probes);
    for n in 0..probes {
        let request = owned(vec![
            ("prompt", Variant::from(format!("probe {n}"))),
            ("steps", Variant::from(1u32)),
        ])?;
        let tick = std::time::Instant::now();
        let path = manager.generate(request).await.map_err(explain)?;
        samples.push(tick.elapsed());
        JobObjectProxy::builder(&connection)
            .path(path)
            .build()
            .await?
            .cancel()
            .await
            .map_err(explain)?;
    }
    busy_job.cancel().await.map_err(explain)?;
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "Generate round trip while the worker is busy ({probes} calls): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "service idle RSS {:.0} MiB; model files {:.0} MiB; beyond the models {:.0} MiB",
        mib(idle_rss),
        mib(model_bytes),
        mib(idle_rss.saturating_sub(model_bytes))
    );
    Ok(())
}
