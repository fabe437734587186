//! `reglament serve`: the server. Connects the store (embedded SQLite by default), deploys the
//! definitions folder, starts the driver, the scheduler and the HTTP API, and shuts down
//! gracefully on SIGINT/SIGTERM: stop accepting requests, finish those in flight, stop the
//! scheduler, release this node's leases so other nodes take the work at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{error, info, warn};

use reglament_store::directory::Directory;
use reglament_store::{Store, StoreError};

use crate::calendars::CalendarError;
use crate::clock::Clock;
use crate::driver::{DeployError, DriverConfig, DriverError, Runtime};
use crate::email::EmailConfig;
use crate::scheduler::SchedulerConfig;
use crate::settings::{Settings, SettingsError};

/// Why the server (or a command that opens its database) could not start; each names what
/// failed and where.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("cannot open the database {url}: {source}")]
    Database { url: String, source: StoreError },
    #[error(transparent)]
    Calendars(#[from] CalendarError),
    #[error("the directory {path}: {message}")]
    Directory { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    ReadDefinition { path: PathBuf, source: std::io::Error },
    #[error("deploying {path}: {source}")]
    Deploy { path: PathBuf, source: DeployError },
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the driver: {0}")]
    Driver(#[from] DriverError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// The driver's clock as the settings ask for it.
pub fn clock_of(settings: &Settings) -> Clock {
    match settings.clock_start {
        Some(start) => Clock::starting_at(start.with_timezone(&chrono::Utc), settings.clock_controlled),
        None if settings.clock_controlled => Clock::controlled(),
        None => Clock::system(),
    }
}

/// Connects to the database, retrying while it is not up yet (a server starting with its
/// database, or a PostgreSQL restart).
pub async fn connect(url: &str, pool_size: u32) -> Result<Store, StartError> {
    let mut attempt = 0;
    loop {
        match Store::connect(url, pool_size).await {
            Ok(store) => return Ok(store),
            Err(e) if attempt < 30 && e.is_transient() => {
                attempt += 1;
                warn!(error = %e, attempt, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(source) => return Err(StartError::Database { url: redact(url), source }),
        }
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Loads the organisation directory from `path` when no directory was ever loaded into the
/// database (its first start): a directory an admin later emptied or replaced stays as they left it.
/// A broken file stops the server with every problem named; a missing one is only logged.
pub async fn load_directory_on_first_start(rt: &Runtime, path: &Path) -> Result<(), StartError> {
    let store = rt.store();
    if !store.directory_never_loaded().await? {
        return Ok(());
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            warn!(file = %path.display(), "no directory file; the directory stays empty (PUT /api/directory loads one)");
            return Ok(());
        }
        Err(e) => return Err(directory_error(path, format!("cannot read it: {e}"))),
    };
    let directory: Directory =
        toml::from_str(&text).map_err(|e| directory_error(path, format!("not valid TOML: {e}")))?;
    match store.load_directory(&directory, rt.now()).await {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => {
            return Err(directory_error(path, format!("inconsistent; fix it:\n{}", problems.join("\n"))));
        }
        // Another node starting at the same moment may have loaded it first.
        Err(_) if !store.directory_never_loaded().await? => return Ok(()),
        Err(e) => return Err(directory_error(path, format!("cannot load it: {e}"))),
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

fn directory_error(path: &Path, message: String) -> StartError {
    StartError::Directory { path: path.to_path_buf(), message }
}

/// Deploys every `.bpmn` of `dir`, in passes, so a file whose call activities target processes
/// of another file deploys once that one has. The `.form` files of `dir` (Camunda Forms) go
/// with every model; each keeps those its user tasks link.
pub async fn deploy_folder(rt: &Runtime, dir: &Path) -> Result<usize, StartError> {
    let paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => {
            warn!(folder = %dir.display(), "no definitions folder; nothing deployed");
            return Ok(0);
        }
    };
    let with_ext = |ext: &str| {
        let mut found: Vec<PathBuf> =
            paths.iter().filter(|p| p.extension().is_some_and(|e| e == ext)).cloned().collect();
        found.sort();
        found
    };
    let mut files = with_ext("bpmn");
    let mut forms = Vec::new();
    for path in with_ext("form") {
        let bytes = std::fs::read(&path).map_err(|source| StartError::ReadDefinition { path: path.clone(), source })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        forms.push((name, bytes));
    }
    let mut deployed = 0;
    let mut last_errors = Vec::new();
    loop {
        let mut retry = Vec::new();
        let mut progress = false;
        last_errors.clear();
        for file in files {
            let bytes =
                std::fs::read(&file).map_err(|source| StartError::ReadDefinition { path: file.clone(), source })?;
            match rt.deploy_with_forms(&bytes, forms.clone(), Some("reglament serve")).await {
                Ok(list) => {
                    deployed += list.len();
                    progress = true;
                }
                Err(DeployError::Invalid(diags)) => {
                    last_errors.push((file.clone(), diags));
                    retry.push(file);
                }
                Err(source @ (DeployError::Store(_) | DeployError::Engine(_) | DeployError::NotOwner(_))) => {
                    return Err(StartError::Deploy { path: file, source });
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
pub async fn run(settings: Settings) -> Result<(), StartError> {
    let url = settings.database_url.clone();
    let store = connect(&url, settings.pool_size).await?;
    let calendars = crate::calendars::load(&[settings.definitions.join("calendars")])?;
    if let Some(start) = settings.clock_start {
        warn!(%start, "the clock started at a set instant, not the system time; for test and training stands only");
    }
    if settings.clock_controlled {
        warn!(
            "the clock is controlled: admins can move it forward (POST /api/clock); for test and training stands only"
        );
    }
    let driver_config = DriverConfig::from_settings(&settings, clock_of(&settings));
    let rt = Runtime::start(
        store.clone(),
        reglament_engine::runtime::Env {
            calendars,
            limits: reglament_engine::feel::Limits { steps: settings.command_steps, ..Default::default() },
        },
        driver_config,
    )
    .await?;
    let deployed = deploy_folder(&rt, &settings.definitions).await?;
    info!(definitions = deployed, folder = %settings.definitions.display(), "definitions deployed");
    load_directory_on_first_start(&rt, &settings.directory).await?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler_config = SchedulerConfig::from_settings(&settings, store.is_postgres());
    let scheduler = tokio::spawn(crate::scheduler::run(rt.clone(), scheduler_config, stop_rx.clone()));
    let jobs = tokio::spawn(crate::jobs::run(rt.clone(), settings.lease, stop_rx.clone()));
    let mail = tokio::spawn(crate::email::run(rt.clone(), EmailConfig::from_settings(&settings), stop_rx));

    let addr = settings.http_addr;
    let app = crate::http::router_with(
        crate::http::AppState::new(rt.clone(), settings.base_url.clone()),
        crate::web::router(),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
    info!(%addr, node = rt.node(), database = %redact(&url), "serving");
    let nofile = crate::listen::open_files_limit();
    let max_connections = crate::listen::effective_limit(settings.max_connections, nofile, settings.pool_size as usize);
    if max_connections < settings.max_connections {
        warn!(
            wanted = settings.max_connections,
            serving = max_connections,
            open_files_limit = nofile,
            "max_connections lowered to fit the open-files limit; raise it (ulimit -n) to serve more"
        );
    }
    let limits = crate::listen::Limits {
        max_connections,
        header_timeout: settings.header_timeout,
        drain: Duration::from_secs(30),
    };
    crate::listen::serve(listener, app, limits, shutdown_signal()).await.map_err(StartError::Http)?;

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
