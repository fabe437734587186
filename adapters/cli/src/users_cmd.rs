//! `reglament users add LOGIN --email E --groups g1,g2 [--name N]`: creates the user (or updates
//! an existing one's email, name and groups) and issues a new API token, printed once.

use chrono::Utc;

use reglament_server::accounts;
use reglament_store::Store;
use reglament_store::auth::UserRecord;

/// Adds or updates a user and returns a new API token for them.
pub async fn add(
    store: &Store,
    login: &str,
    email: &str,
    groups: Vec<String>,
    name: Option<String>,
) -> anyhow::Result<String> {
    let now = Utc::now();
    let record = UserRecord {
        login: login.to_string(),
        name,
        email: email.to_string(),
        groups,
        disabled: false,
        created_at: now,
    };
    Ok(accounts::add_with_token(store, record, "users add", now).await?)
}
