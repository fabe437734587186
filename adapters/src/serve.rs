//! `reglament serve`: the server. Connects the store (embedded SQLite by default), deploys the
//! definitions folder, starts the driver, the scheduler and the HTTP API, and shuts down
//! gracefully on SIGINT/SIGTERM: stop accepting requests, finish those in flight, stop the
//! scheduler, release this node's leases so other nodes take the work at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::driver::{DeployError, DriverConfig, Runtime};
use crate::scheduler::SchedulerConfig;
use crate::store::Store;
use crate::store::directory::Directory;

/// Settings from `reglament.toml` (all optional), overridden by the environment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `sqlite://FILE` or `postgres://…` (env `REGLAMENT_DATABASE_URL`).
    pub database_url: Option<String>,
    /// Listen address (env `REGLAMENT_HTTP_ADDR`), default 127.0.0.1:8080.
    pub http_addr: Option<String>,
    /// Public base URL used in links in emails (env `REGLAMENT_BASE_URL`).
    pub base_url: Option<String>,
    /// Folder of `.bpmn` files deployed on start, and `calendars/`, `templates/`.
    pub definitions: Option<PathBuf>,
    /// SMTP server (env `REGLAMENT_SMTP_URL`); without it mail goes to `mail_dir`.
    pub smtp_url: Option<String>,
    pub mail_dir: Option<PathBuf>,
    /// Default IANA time zone of definitions that do not name one.
    pub time_zone: Option<String>,
    /// This node's name (lease owner); default a random one (env `REGLAMENT_NODE`).
    pub node: Option<String>,
    /// Seconds a node owns the timers it took (env `REGLAMENT_LEASE_SECONDS`).
    pub lease_seconds: Option<u64>,
    /// Most commands per transaction, and how long to wait for more (milliseconds).
    pub max_batch: Option<usize>,
    pub batch_delay_ms: Option<u64>,
    /// Database connections.
    pub pool_size: Option<u32>,
    /// Lets admins move the clock forward (`POST /api/admin/clock`); for test and training
    /// stands only (env `REGLAMENT_CLOCK_CONTROLLED=true`).
    #[serde(default)]
    pub clock_controlled: bool,
    /// The instant the clock reads at start-up (RFC 3339; env `REGLAMENT_CLOCK_START`); it
    /// then runs at the system clock's pace. For test and training stands: every node of a
    /// test reads the same fixed time, whatever the date and hour the test runs at.
    pub clock_start: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// The organisation directory loaded on first start (default `DEFINITIONS/directory.toml`).
    pub directory: Option<PathBuf>,
}

impl Config {
    /// Reads the file (if given) and applies environment overrides.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("bad configuration in {}", path.display()))?
            }
            None => Config::default(),
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("REGLAMENT_DATABASE_URL") {
            config.database_url = Some(v);
        }
        if let Some(v) = env("REGLAMENT_HTTP_ADDR") {
            config.http_addr = Some(v);
        }
        if let Some(v) = env("REGLAMENT_SMTP_URL") {
            config.smtp_url = Some(v);
        }
        if let Some(v) = env("REGLAMENT_BASE_URL") {
            config.base_url = Some(v);
        }
        if let Some(v) = env("REGLAMENT_DEFINITIONS") {
            config.definitions = Some(PathBuf::from(v));
        }
        if let Some(v) = env("REGLAMENT_NODE") {
            config.node = Some(v);
        }
        if let Some(v) = env("REGLAMENT_LEASE_SECONDS") {
            config.lease_seconds = Some(v.parse().context("REGLAMENT_LEASE_SECONDS must be a number of seconds")?);
        }
        if let Some(v) = env("REGLAMENT_CLOCK_CONTROLLED") {
            config.clock_controlled = match v.as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => anyhow::bail!("REGLAMENT_CLOCK_CONTROLLED must be true or false, not `{v}`"),
            };
        }
        if let Some(v) = env("REGLAMENT_CLOCK_START") {
            config.clock_start = Some(chrono::DateTime::parse_from_rfc3339(&v).with_context(|| {
                format!("REGLAMENT_CLOCK_START must be an RFC 3339 instant like 2027-01-15T09:00:00+04:00, not `{v}`")
            })?);
        }
        if let Some(v) = env("REGLAMENT_DIRECTORY") {
            config.directory = Some(PathBuf::from(v));
        }
        Ok(config)
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| "sqlite://reglament.db".to_string())
    }

    pub fn definitions_dir(&self) -> PathBuf {
        self.definitions.clone().unwrap_or_else(|| PathBuf::from("definitions"))
    }
}

/// Connects to the database, retrying while it is not up yet (a server starting with its
/// database, or a PostgreSQL restart).
pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<Store> {
    let mut attempt = 0;
    loop {
        match Store::connect(url, pool_size).await {
            Ok(store) => return Ok(store),
            Err(e) if attempt < 30 && e.is_transient() => {
                attempt += 1;
                warn!(error = %e, attempt, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open the database {}", redact(url))),
        }
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Loads the organisation directory from `path` when the database has none yet (first start).
/// A broken file stops the server with every problem named; a missing one is only logged.
pub async fn load_directory_on_first_start(rt: &Runtime, path: &Path) -> anyhow::Result<()> {
    let store = rt.store();
    if !store.directory_is_empty().await? {
        return Ok(());
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            warn!(file = %path.display(), "no directory file; the directory stays empty (PUT /api/directory loads one)");
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read the directory {}", path.display())),
    };
    let directory: Directory =
        toml::from_str(&text).with_context(|| format!("the directory {} is not valid TOML", path.display()))?;
    match store.load_directory(&directory, rt.now()).await {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => {
            anyhow::bail!("the directory {} is inconsistent; fix it:\n{}", path.display(), problems.join("\n"))
        }
        // Another node starting at the same moment may have loaded it first.
        Err(_) if !store.directory_is_empty().await? => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot load the directory {}", path.display())),
    }
    info!(
        file = %path.display(),
        people = directory.people.len(),
        units = directory.units.len(),
        roles = directory.roles.len(),
        "directory loaded on first start"
    );
    Ok(())
}

/// Deploys every `.bpmn` of `dir`, in passes, so a file whose call activities target processes
/// of another file deploys once that one has.
pub async fn deploy_folder(rt: &Runtime, dir: &Path) -> anyhow::Result<usize> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "bpmn"))
            .collect(),
        Err(_) => {
            warn!(folder = %dir.display(), "no definitions folder; nothing deployed");
            return Ok(0);
        }
    };
    files.sort();
    let mut deployed = 0;
    let mut last_errors = Vec::new();
    loop {
        let mut retry = Vec::new();
        let mut progress = false;
        last_errors.clear();
        for file in files {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            match rt.deploy(&bytes, Some("reglament serve")).await {
                Ok(list) => {
                    deployed += list.len();
                    progress = true;
                }
                Err(DeployError::Invalid(diags)) => {
                    last_errors.push((file.clone(), diags));
                    retry.push(file);
                }
                Err(DeployError::Store(e)) => return Err(e).context("deploying definitions"),
                Err(e @ DeployError::Engine(_)) => {
                    return Err(e).with_context(|| format!("deploying {}", file.display()));
                }
            }
        }
        files = retry;
        if files.is_empty() || !progress {
            break;
        }
    }
    for (file, diags) in &last_errors {
        for d in diags.iter().filter(|d| d.is_error()) {
            error!(file = %file.display(), "{}", d.render(&file.display().to_string()));
        }
    }
    Ok(deployed)
}

/// Runs the server until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let url = config.database_url();
    let store = connect(&url, config.pool_size.unwrap_or(16)).await?;
    let defs_dir = config.definitions_dir();
    let calendars = crate::calendars::load(&[defs_dir.join("calendars")])?;
    let default_tz: chrono_tz::Tz = match &config.time_zone {
        Some(tz) => tz.parse().map_err(|_| anyhow::anyhow!("time_zone `{tz}` is not an IANA zone name"))?,
        None => chrono_tz::Europe::Astrakhan,
    };
    let driver_config = DriverConfig {
        max_batch: config.max_batch.unwrap_or(512),
        max_delay: Duration::from_millis(config.batch_delay_ms.unwrap_or(0)),
        default_tz,
        node: config.node.clone().unwrap_or_else(|| DriverConfig::default().node),
        clock: std::sync::Arc::new(match config.clock_start {
            Some(start) => Clock::starting_at(start.with_timezone(&chrono::Utc), config.clock_controlled),
            None if config.clock_controlled => Clock::controlled(),
            None => Clock::system(),
        }),
    };
    if let Some(start) = config.clock_start {
        warn!(%start, "the clock started at a set instant, not the system time; for test and training stands only");
    }
    if config.clock_controlled {
        warn!(
            "the clock is controlled: admins can move it forward (POST /api/clock); for test and training stands only"
        );
    }
    let rt = Runtime::start(store.clone(), reglament_engine::runtime::Env { calendars }, driver_config).await?;
    let deployed = deploy_folder(&rt, &defs_dir).await?;
    info!(definitions = deployed, folder = %defs_dir.display(), "definitions deployed");
    let directory_file = config.directory.clone().unwrap_or_else(|| defs_dir.join("directory.toml"));
    load_directory_on_first_start(&rt, &directory_file).await?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler_config = SchedulerConfig {
        lease: Duration::from_secs(config.lease_seconds.unwrap_or(30)),
        max_sleep: if store.is_postgres() { Duration::from_secs(1) } else { Duration::from_secs(30) },
        ..SchedulerConfig::default()
    };
    let lease = scheduler_config.lease;
    let scheduler = tokio::spawn(crate::scheduler::run(rt.clone(), scheduler_config, stop_rx.clone()));
    let jobs = tokio::spawn(crate::jobs::run(rt.clone(), lease, stop_rx.clone()));
    let mail = tokio::spawn(crate::email::run(rt.clone(), crate::email::EmailConfig::from(&config), stop_rx));

    let addr: SocketAddr = config
        .http_addr
        .clone()
        .unwrap_or_else(|| "127.0.0.1:8080".to_string())
        .parse()
        .context("http_addr must be HOST:PORT, e.g. 127.0.0.1:8080")?;
    let base_url = config.base_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let app = crate::http::router(crate::http::AppState::new(rt.clone(), base_url));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    info!(%addr, node = rt.node(), database = %redact(&url), "serving");
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server failed")?;

    info!("shutting down: stopping the scheduler and releasing leases");
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    let _ = jobs.await;
    let _ = mail.await;
    if let Err(e) = store.release_leases(rt.node()).await {
        warn!(error = %e, "could not release leases; they expire on their own");
    }
    store.close().await;
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
