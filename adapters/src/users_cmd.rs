//! `reglament users add LOGIN --email E --groups g1,g2 [--name N]`: creates the user (or updates
//! an existing one's email, name and groups) and issues a new API token, printed once.

use anyhow::Context;
use chrono::Utc;

use crate::http::auth::{hash_token, new_token};
use crate::store::Store;
use crate::store::auth::UserRecord;

/// Adds or updates a user and returns a new API token for them.
pub async fn add(
    store: &Store,
    login: &str,
    email: &str,
    groups: Vec<String>,
    name: Option<String>,
) -> anyhow::Result<String> {
    let record = UserRecord {
        login: login.to_string(),
        name,
        email: email.to_string(),
        groups,
        disabled: false,
        created_at: Utc::now(),
    };
    let record = normalise(record).map_err(|(field, message)| anyhow::anyhow!("{field}: {message}"))?;
    if !store.create_user(&record).await.context("cannot save the user")? {
        store.update_user(&record).await.context("cannot update the user")?;
    }
    let token = new_token().map_err(|e| anyhow::anyhow!("no randomness from the operating system: {e}"))?;
    store
        .insert_token(&hash_token(&token), &record.login, Some("users add"), Utc::now())
        .await
        .context("cannot save the token")?;
    Ok(token)
}

/// Checks a user's fields and tidies them (trimmed, groups sorted without duplicates).
/// Errors name the field and say what is wrong, in Russian.
pub fn normalise(mut user: UserRecord) -> Result<UserRecord, (&'static str, String)> {
    user.login = user.login.trim().to_string();
    user.email = user.email.trim().to_string();
    let login_ok = !user.login.is_empty()
        && user.login.len() <= 64
        && user.login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if !login_ok {
        return Err((
            "login",
            format!("логин `{}`: от 1 до 64 символов, латинские буквы, цифры и . - _ @", user.login),
        ));
    }
    let mut parts = user.email.split('@');
    let email_ok = matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && b.contains('.'));
    if !email_ok {
        return Err(("email", format!("`{}` — не адрес электронной почты", user.email)));
    }
    let mut groups: Vec<String> = user.groups.iter().map(|g| g.trim().to_string()).filter(|g| !g.is_empty()).collect();
    if let Some(bad) = groups.iter().find(|g| g.contains(',') || g.len() > 128) {
        return Err(("groups", format!("имя группы `{bad}` недопустимо (без запятых, до 128 символов)")));
    }
    groups.sort();
    groups.dedup();
    user.groups = groups;
    user.name = user.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    Ok(user)
}
