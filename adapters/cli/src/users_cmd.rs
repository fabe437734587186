//! `reglament users add LOGIN --email E --groups g1,g2 [--name N]`: creates the user (or updates
//! an existing one's email, name and groups) and issues a new API token, printed once;
//! `users update` changes only what it is given; `users disable | enable` stops or readmits a
//! person (tokens and sessions).

use chrono::Utc;

use reglament_server::accounts;
use reglament_store::Store;
use reglament_store::audit::AuditEntry;
use reglament_store::auth::UserRecord;

/// Records an act done on the command line in the audit log: the actor is `cli:` and the
/// operating-system user who ran the command (the command has no signed-in person).
pub async fn record_act(store: &Store, action: &str, target: &str, details: serde_json::Value) -> anyhow::Result<()> {
    let os_user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
    let entry = AuditEntry {
        at: Utc::now(),
        actor: format!("cli:{os_user}"),
        address: None,
        action: action.to_string(),
        target: Some(target.to_string()),
        instance_id: None,
        details,
    };
    store
        .record_audit(&entry)
        .await
        .map_err(|e| anyhow::anyhow!("the act is done, but the audit log did not record it: {e}"))
}

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
    let details = serde_json::json!({"email": record.email, "name": record.name, "groups": record.groups});
    let token = accounts::add_with_token(store, record, "users add", now).await?;
    record_act(store, "user.add", login, details).await?;
    Ok(token)
}

/// `reglament users update LOGIN [--email E] [--groups g1,g2] [--name N]`: changes only what is
/// given; the user must exist. Answers the user as stored.
pub async fn update(
    store: &Store,
    login: &str,
    email: Option<String>,
    groups: Option<Vec<String>>,
    name: Option<String>,
) -> anyhow::Result<UserRecord> {
    let Some(mut user) = store.user(login).await? else {
        anyhow::bail!("пользователя `{login}` нет; создайте его: `reglament users add {login} --email …`")
    };
    if email.is_none() && groups.is_none() && name.is_none() {
        anyhow::bail!("нечего менять: укажите --email, --groups или --name");
    }
    if let Some(email) = email {
        user.email = email;
    }
    if let Some(groups) = groups {
        user.groups = groups;
    }
    if let Some(name) = name {
        user.name = Some(name);
    }
    let user = accounts::normalise(user).map_err(|(field, message)| anyhow::anyhow!("{field}: {message}"))?;
    store.update_user(&user).await?;
    let details = serde_json::json!({"email": user.email, "name": user.name, "groups": user.groups});
    record_act(store, "user.update", login, details).await?;
    Ok(user)
}

/// `reglament users disable|enable LOGIN`: a disabled user's tokens and sessions are refused
/// (a running server notices within its token cache time, 10 s); disabling ends their sessions.
pub async fn set_disabled(store: &Store, login: &str, disabled: bool) -> anyhow::Result<()> {
    if !store.set_disabled(login, disabled).await? {
        anyhow::bail!("пользователя `{login}` нет")
    }
    if disabled {
        store.delete_sessions_of(login).await?;
    }
    record_act(store, if disabled { "user.disable" } else { "user.enable" }, login, serde_json::json!({})).await
}
