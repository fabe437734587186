//! `reglament users add LOGIN --email E --groups g1,g2 [--name N]`: creates the user (or updates
//! an existing one's email, name and groups) and issues a new API token, printed once;
//! `users update` changes only what it is given; `users disable | enable` stops or readmits a
//! person (tokens and sessions).

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
    Ok(())
}
