//! `reglament registry export [--format csv|json|text]`: the process registry (реестр
//! процессов) with the 13 columns of the official form. It reads the database of
//! `reglament serve` and first deploys the definitions folder (as `serve` does on start), so
//! the shipped processes are listed even before the server has run.

use std::io::Write;

use crate::http::registry::{COLUMNS, RegistryItem, to_csv};
use crate::serve::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One block per process: «графа: значение» lines (default).
    Text,
    /// CSV with the form's Russian column headers (UTF-8 with BOM).
    Csv,
    /// JSON, as `GET /api/registry`.
    Json,
}

pub async fn export(config: &Config, format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = crate::serve::connect(&config.database_url(), 2).await?;
    let defs = config.definitions_dir();
    let calendars = crate::calendars::load(&[defs.join("calendars")])?;
    let rt = crate::driver::Runtime::start(
        store.clone(),
        reglament_engine::runtime::Env { calendars },
        crate::driver::DriverConfig::default(),
    )
    .await?;
    crate::serve::deploy_folder(&rt, &defs).await?;
    let entries = store.registry_entries().await?;
    match format {
        Format::Csv => out.write_all(to_csv(&entries).as_bytes())?,
        Format::Json => {
            let items: Vec<RegistryItem> = entries.iter().map(RegistryItem::build).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&serde_json::json!({ "items": items }))?)?;
        }
        Format::Text => {
            for (i, e) in entries.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                for (n, (field, title)) in COLUMNS.iter().enumerate() {
                    let value = match *field {
                        "name" => e.name.clone().unwrap_or_else(|| e.key.clone()),
                        "id" => e.key.clone(),
                        other => e.fields.get(other).cloned().unwrap_or_default(),
                    };
                    writeln!(out, "{:>2}. {title}: {value}", n + 1)?;
                }
            }
        }
    }
    store.close().await;
    Ok(())
}
