//! `reglament registry export [--format csv|json|text]`: the process registry (реестр
//! процессов) with the 13 columns of the official form. It reads the database of
//! `reglament serve` and first deploys the definitions folder (as `serve` does on start), so
//! the shipped processes are listed even before the server has run.

use std::io::Write;

use reglament_server::driver::{DriverConfig, Runtime};
use reglament_server::http::registry::{COLUMNS, RegistryItem, to_csv};
use reglament_server::serve;
use reglament_server::settings::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One block per process: «графа: значение» lines (default).
    Text,
    /// CSV with the form's Russian column headers (UTF-8 with BOM).
    Csv,
    /// JSON, as `GET /api/registry`.
    Json,
}

pub async fn export(settings: &Settings, format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = serve::connect(&settings.database_url, 2).await?;
    let calendars = reglament_server::calendars::load(&[settings.definitions.join("calendars")])?;
    let config = DriverConfig::from_settings(settings, serve::clock_of(settings));
    let rt = Runtime::start(store.clone(), reglament_engine::runtime::Env { calendars, ..Default::default() }, config)
        .await?;
    serve::deploy_folder(&rt, &settings.definitions).await?;
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
