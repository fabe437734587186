//! Who a person is: the sign-in providers and the slowing down of password guessing.
//!
//! The seam for other providers: a provider's job ends with a login of an enabled user and its
//! own [`Provider`] name; `web::session::open` turns that into a browser session, and every
//! page sees only the session's user. The password provider ([`verify_password`]) is the one we
//! have; an OIDC provider would add its redirect and callback handlers, map the token's claims
//! to a login, and call the same `open` with `Provider::Oidc` — no page changes.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::Duration;

use reglament_store::{Store, StoreError, Ts};

/// How a session was signed in; stored with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Login and password checked against the argon2id hash in `user_passwords`.
    Password,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Password => "password",
        }
    }
}

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longer ones are refused too (hashing them would be an easy way to load the server).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Checks a new password; the message is for the person who chose it.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("Пароль должен быть не короче {MIN_PASSWORD_CHARS} символов"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("Пароль должен быть не длиннее {MAX_PASSWORD_BYTES} байт"));
    }
    if password.chars().any(char::is_control) {
        return Err("Пароль не должен содержать управляющих символов".into());
    }
    Ok(())
}

/// The argon2id hash (PHC string, random salt) of a password. Slow on purpose: call it off the
/// async threads.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("the password cannot be hashed: {e}"))
}

/// Whether `password` matches the stored PHC string.
pub fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash that matches no password, verified when a login has none, so that a wrong login
/// costs as much time as a wrong password and does not tell which logins exist.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password that nobody has").expect("hashing works"))
}

/// Sets a user's password (checked by [`check_new_password`]) and ends their sessions.
/// `Ok(false)`: no such user.
pub async fn set_password(store: &Store, login: &str, password: &str, now: Ts) -> Result<bool, SetPasswordError> {
    check_new_password(password).map_err(SetPasswordError::Weak)?;
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| SetPasswordError::Hash(e.to_string()))?
        .map_err(SetPasswordError::Hash)?;
    if !store.set_password_hash(login, &hash, now).await? {
        return Ok(false);
    }
    store.delete_sessions_of(login).await?;
    Ok(true)
}

#[derive(Debug, thiserror::Error)]
pub enum SetPasswordError {
    #[error("{0}")]
    Weak(String),
    #[error("{0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a login and password. The password hash is verified on the blocking pool.
pub async fn verify_password(store: &Store, login: &str, password: &str) -> Result<bool, StoreError> {
    let stored = store.password_hash(login).await?;
    let known = stored.is_some();
    let stored = stored.unwrap_or_else(|| decoy_hash().to_string());
    let password = password.to_string();
    let matches = tokio::task::spawn_blocking(move || password_matches(&password, &stored)).await.unwrap_or(false);
    Ok(known && matches)
}

/// Failed sign-ins allowed per login before each next attempt must wait.
pub const FREE_FAILURES_PER_LOGIN: i64 = 5;
/// Failed sign-ins allowed per address (several people may share one) before it must wait.
pub const FREE_FAILURES_PER_ADDRESS: i64 = 20;
/// The first wait; each further failure doubles it, up to [`MAX_WAIT`].
pub const FIRST_WAIT: Duration = Duration::seconds(30);
pub const MAX_WAIT: Duration = Duration::minutes(15);

/// When the next sign-in attempt under a key may be made, after `failures` failed ones (the
/// last at `last_at`); `None`: at once.
pub fn next_attempt_at(failures: i64, last_at: Ts, free: i64) -> Option<Ts> {
    if failures < free {
        return None;
    }
    let doublings = (failures - free).min(10) as u32;
    let wait = (FIRST_WAIT * 2i32.pow(doublings)).min(MAX_WAIT);
    Some(last_at + wait)
}

/// The keys failed sign-ins are counted under.
pub fn login_key(login: &str) -> String {
    format!("login:{}", login.trim().to_lowercase())
}

pub fn address_key(address: &str) -> String {
    format!("addr:{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("правильный пароль").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(password_matches("правильный пароль", &hash));
        assert!(!password_matches("неправильный", &hash));
        assert!(!password_matches("x", "not a hash"));
        assert_ne!(hash, hash_password("правильный пароль").unwrap(), "a fresh salt each time");
    }

    #[test]
    fn waits_double_after_the_free_failures() {
        let t = chrono::DateTime::parse_from_rfc3339("2027-01-20T10:00:00Z").unwrap().to_utc();
        assert_eq!(next_attempt_at(4, t, 5), None);
        assert_eq!(next_attempt_at(5, t, 5), Some(t + Duration::seconds(30)));
        assert_eq!(next_attempt_at(6, t, 5), Some(t + Duration::seconds(60)));
        assert_eq!(next_attempt_at(50, t, 5), Some(t + MAX_WAIT));
    }

    #[test]
    fn new_passwords_are_checked() {
        assert!(check_new_password("короткий").is_ok());
        assert!(check_new_password("семь123").unwrap_err().contains("не короче 8"));
        assert!(check_new_password("a\u{0}bcdefghi").is_err());
    }
}
