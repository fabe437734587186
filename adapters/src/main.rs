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
    /// Parse and validate BPMN files; prints `file:line:col: error: message [element]`.
    Validate {
        /// BPMN 2.0 XML files; call activities may target processes of any of them.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Run a scenario on the pure engine with a virtual clock; prints a JSON-lines trace.
    Simulate {
        /// A scenario file (TOML, DESIGN §6).
        scenario: std::path::PathBuf,
    },
}

const EXIT_INVALID: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
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
