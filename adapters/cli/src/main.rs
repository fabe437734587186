//! The `reglament` command line (DESIGN §6). Exit codes are chosen here and only here:
//! 0 success, 1 the input has errors (invalid model, failed scenario), 2 usage or I/O errors.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "reglament", version, about = "Reglament: a BPMN workflow engine for public-administration processes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: HTTP API, scheduler, deployment of ./definitions (embedded SQLite
    /// ./reglament.db unless REGLAMENT_DATABASE_URL is set; mail to ./mail-out unless
    /// REGLAMENT_SMTP_URL is set).
    Serve {
        /// A TOML configuration file (see README); environment variables override it.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// Parse and validate BPMN files; prints `file:line:col: error: message [element]`.
    Validate {
        /// BPMN 2.0 XML files; call activities may target processes of any of them. Camunda
        /// Forms (`.form`) given here go with every model; without any, each model takes the
        /// `.form` files of its own folder.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Run a scenario on the pure engine with a virtual clock; prints a JSON-lines trace.
    Simulate {
        /// A scenario file (TOML, DESIGN §6).
        scenario: std::path::PathBuf,
    },
    /// Manage users and their API tokens (database from REGLAMENT_DATABASE_URL, default
    /// sqlite://reglament.db).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// The process registry (13 columns of the official form) of the deployed processes.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Print the registry (database and definitions as for `serve`).
    Export {
        #[arg(long, value_enum, default_value = "text")]
        format: reglament::registry_cmd::Format,
        /// A TOML configuration file, as for `serve`.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user (or update an existing one) and print a new API token.
    Add {
        login: String,
        #[arg(long)]
        email: String,
        /// Comma-separated groups, e.g. `process-owners,admins`.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Change a user's email, groups or name; only what is given changes.
    Update {
        login: String,
        #[arg(long)]
        email: Option<String>,
        /// Comma-separated groups; replaces the user's groups.
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Disable a user: their API tokens and sessions are refused (tasks and history stay).
    Disable { login: String },
    /// Enable a disabled user again.
    Enable { login: String },
    /// Set a user's sign-in password for the web pages (prompted twice, or one line on stdin).
    Password {
        login: String,
        /// Read the password as one line from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Runs `work` on the store of the configured database (REGLAMENT_DATABASE_URL, or the default).
fn with_store<T>(work: impl AsyncFnOnce(&reglament_store::Store) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let settings = load_settings(None)?;
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(anyhow::Error::from)?.block_on(async {
        let store = reglament_server::serve::connect(&settings.database_url, 2).await?;
        let result = work(&store).await;
        store.close().await;
        result
    })
}

/// Exit status of a command that prints nothing on success.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reglament: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Structured logs on stderr; `RUST_LOG` filters (default info), `REGLAMENT_LOG_FORMAT=json`
/// for JSON lines. Only `main` installs a subscriber.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("REGLAMENT_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The server's settings: the file (if given), the environment, the defaults.
fn load_settings(file: Option<&std::path::Path>) -> anyhow::Result<reglament_server::settings::Settings> {
    Ok(reglament_server::settings::Settings::load(file)?)
}

const EXIT_INVALID: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // Every command runs engine work (parsing, validation, FEEL) on a thread with the stack the
    // engine needs, whatever the platform's main-thread default.
    std::thread::Builder::new()
        .name("reglament".into())
        .stack_size(reglament_server::ENGINE_THREAD_STACK)
        .spawn(run)
        .expect("start the main thread")
        .join()
        .unwrap_or(ExitCode::from(EXIT_USAGE))
}

fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    init_logging();
    match cli.command {
        Command::Serve { config } => {
            let result = load_settings(config.as_deref()).and_then(|settings| {
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_stack_size(reglament_server::ENGINE_THREAD_STACK)
                    .build()
                    .map_err(anyhow::Error::from)?
                    .block_on(reglament_server::serve::run(settings))
                    .map_err(anyhow::Error::from)
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("reglament: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Registry { command: RegistryCommand::Export { format, config } } => {
            let result = load_settings(config.as_deref()).and_then(|settings| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)?
                    .block_on(async {
                        let stdout = std::io::stdout();
                        reglament::registry_cmd::export(&settings, format, &mut stdout.lock()).await
                    })
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("reglament: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Users { command: UsersCommand::Add { login, email, groups, name } } => {
            let result = load_settings(None).and_then(|settings| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)?
                    .block_on(async {
                        let store = reglament_server::serve::connect(&settings.database_url, 2).await?;
                        let token = reglament::users_cmd::add(&store, &login, &email, groups, name).await;
                        store.close().await;
                        token
                    })
            });
            match result {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("reglament: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Users { command: UsersCommand::Update { login, email, groups, name } } => {
            report(with_store(async |store| {
                let user = reglament::users_cmd::update(store, &login, email, groups, name).await?;
                println!(
                    "{}: {} <{}>, groups {}",
                    user.login,
                    user.name.as_deref().unwrap_or("-"),
                    user.email,
                    user.groups.join(",")
                );
                Ok(())
            }))
        }
        Command::Users { command: UsersCommand::Disable { login } } => {
            report(with_store(async |store| reglament::users_cmd::set_disabled(store, &login, true).await))
        }
        Command::Users { command: UsersCommand::Enable { login } } => {
            report(with_store(async |store| reglament::users_cmd::set_disabled(store, &login, false).await))
        }
        Command::Users { command: UsersCommand::Password { login, password_stdin } } => {
            let result = reglament::password_cmd::read_password(password_stdin, &mut std::io::stdin().lock())
                .and_then(|password| Ok((password, load_settings(None)?)))
                .and_then(|(password, settings)| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(anyhow::Error::from)?
                        .block_on(async {
                            let store = reglament_server::serve::connect(&settings.database_url, 2).await?;
                            let done = reglament::password_cmd::run(&store, &login, &password).await;
                            store.close().await;
                            done
                        })
                });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("reglament: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Simulate { scenario } => {
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            match reglament::simulate_cmd::run(&scenario, &mut stdout.lock(), &mut stderr.lock()) {
                Ok(reglament::simulate_cmd::Outcome::Ok) => ExitCode::SUCCESS,
                Ok(reglament::simulate_cmd::Outcome::Failed) => ExitCode::from(EXIT_INVALID),
                Err(e) => {
                    eprintln!("reglament: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Validate { files } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match reglament::validate_cmd::run(&files, &mut out) {
                Ok(report) => {
                    for (file, reason) in &report.unreadable {
                        eprintln!("reglament: cannot read {file}: {reason}");
                    }
                    if !report.unreadable.is_empty() {
                        ExitCode::from(EXIT_USAGE)
                    } else if report.errors > 0 {
                        ExitCode::from(EXIT_INVALID)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("reglament: cannot write output: {e}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
    }
}
