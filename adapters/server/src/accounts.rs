//! Accounts: the checks a user record passes before it is stored (from the API and the command
//! line alike) and the API tokens issued to users (random, stored only as their hash).

use base64::Engine;
use chrono::{DateTime, Utc};
use reglament_store::auth::UserRecord;
use reglament_store::{Store, StoreError};
use sha2::{Digest, Sha256};

/// A new API token: `rgl_` and 32 random bytes from the operating system, base64url.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("rgl_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a token: its SHA-256, hex.
pub fn hash_token(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
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
    // No spaces or control characters: a CR/LF in an address or a name would reach an email
    // header (the dispatcher strips them too, but what is stored is what the admin sees).
    let email_ok = matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && b.contains('.'))
        && !user.email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !email_ok {
        return Err(("email", format!("`{}` — не адрес электронной почты", user.email.escape_debug())));
    }
    let mut groups: Vec<String> = user.groups.iter().map(|g| g.trim().to_string()).filter(|g| !g.is_empty()).collect();
    if let Some(bad) = groups
        .iter()
        .find(|g| g.contains(',') || g.len() > 128 || g.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err((
            "groups",
            format!("имя группы `{}` недопустимо (без пробелов и запятых, до 128 символов)", bad.escape_debug()),
        ));
    }
    if let Some(name) = &user.name
        && (name.chars().any(char::is_control) || name.chars().count() > 200)
    {
        return Err(("name", "имя — одна строка до 200 знаков, без переводов строки и управляющих символов".into()));
    }
    groups.sort();
    groups.dedup();
    user.groups = groups;
    user.name = user.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    Ok(user)
}

/// Why a user could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("no randomness from the operating system: {0}")]
    Randomness(getrandom::Error),
    #[error("cannot save the user or the token: {0}")]
    Store(#[from] StoreError),
}

/// Creates the user (or updates an existing one's email, and name and groups where given:
/// an existing user keeps the groups and name the record leaves empty) and issues a new API
/// token for them, labelled `label`; returns the token, which is stored only as its hash.
pub async fn add_with_token(
    store: &Store,
    record: UserRecord,
    label: &str,
    now: DateTime<Utc>,
) -> Result<String, AccountError> {
    let record = normalise(record).map_err(|(field, message)| AccountError::Invalid { field, message })?;
    if !store.create_user(&record).await? {
        let existing = store.user(&record.login).await?;
        let mut merged = record.clone();
        if let Some(existing) = existing {
            if merged.groups.is_empty() {
                merged.groups = existing.groups;
            }
            if merged.name.is_none() {
                merged.name = existing.name;
            }
        }
        store.update_user(&merged).await?;
    }
    let token = new_token().map_err(AccountError::Randomness)?;
    store.insert_token(&hash_token(&token), &record.login, Some(label), now, None).await?;
    Ok(token)
}
