//! `pocket-studiod`: the system service.
//!
//! config -> Studio (models loaded, journal replayed) -> D-Bus interfaces
//! served, then the name taken -> touch UI thread -> `READY=1`. The systemd watchdog is fed from
//! the event loop only while the inference worker also shows life.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use pocket_studio::config::Config;
use pocket_studio::service::dbus::{BUS_NAME, Manager, OBJECT_PATH, relay_events};
use pocket_studio::studio::Studio;
use sd_notify::NotifyState;

#[derive(Parser)]
#[command(name = "pocket-studiod", version, about = "Pocket Studio service")]
struct Args {
    /// Config file (default /etc/pocket-studio/config.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Use the session bus instead of the system bus.
    #[arg(long, conflicts_with = "bus")]
    session: bool,
    /// Connect to this bus address (tests, development).
    #[arg(long)]
    bus: Option<String>,
}

/// Large activations in mappings of their own, recycled (see `LargeBlocks`).
#[global_allocator]
static ALLOCATOR: pocket_studio::engine::LargeBlocks = pocket_studio::engine::LargeBlocks;

fn main() -> ExitCode {
    pocket_studio::engine::tune_allocator();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            let _ = sd_notify::notify(&[NotifyState::Status(&format!("failed: {e:#}"))]);
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let config = Config::load_or_default(args.config.as_deref())?;
    let _ = sd_notify::notify(&[NotifyState::Status("loading models")]);
    let studio = tokio::task::spawn_blocking({
        let config = config.clone();
        move || Studio::start(&config)
    })
    .await
    .context("model loading panicked")??;
    let studio = Arc::new(studio);

    // The touch UI is a second front-end on its own thread; without a
    // display it runs headless and D-Bus serves regardless.
    let ui = pocket_studio::ui::spawn(studio.clone(), &config);

    let builder = match (&args.bus, args.session) {
        (Some(address), _) => zbus::connection::Builder::address(address.as_str()),
        (None, true) => zbus::connection::Builder::session(),
        (None, false) => zbus::connection::Builder::system(),
    };
    // Interfaces exist before the name is taken, so no caller sees a
    // half-served object.
    let connection = builder
        .serve_at(
            OBJECT_PATH,
            Manager::new(studio.clone()).with_screen(ui.as_ref().map(|u| u.screen())),
        )
        .name(BUS_NAME)
        .build()
        .await
        .context("cannot connect to the bus or own the name")?;
    log::info!(
        "serving {BUS_NAME} on {}",
        connection
            .unique_name()
            .map_or("?".into(), |n| n.to_string())
    );

    let mut relay = tokio::spawn(relay_events(connection.clone(), studio.clone(), |length| {
        let _ = sd_notify::notify(&[NotifyState::Status(&format!(
            "ready; {length} job(s) queued"
        ))]);
    }));
    let _ = sd_notify::notify(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("ready; {} job(s) queued", studio.queue_length())),
    ]);

    let watchdog = watchdog_period();
    let mut tick = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |p| p / 2));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(period) = watchdog {
                    let silence = studio.worker_silence();
                    if silence < period {
                        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                    } else {
                        log::error!("inference worker silent for {} s; not feeding the watchdog", silence.as_secs());
                    }
                }
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            result = &mut relay => {
                anyhow::bail!("event relay stopped: {result:?}");
            }
        }
    }
    log::info!("stopping");
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    drop(ui);
    drop(connection);
    drop(studio);
    Ok(())
}

/// The watchdog period systemd asked for, if any.
fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}
