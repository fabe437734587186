//! What the web pages keep: sign-in passwords (argon2id hashes), browser sessions (by the
//! SHA-256 of the cookie), counts of failed sign-ins; and the inbox query of the pages.

use super::auth::UserRecord;
use super::{Pool, Result, Store, Ts, from_ms, ms};

/// A live browser session and the person it belongs to.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: UserRecord,
    pub provider: String,
    pub csrf: String,
    pub expires_at: Ts,
}

/// Failed sign-ins counted under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: i64,
    pub last_at: Ts,
}

impl Store {
    /// Sets a user's sign-in password hash. False when there is no such user.
    pub async fn set_password_hash(&self, login: &str, hash: &str, now: Ts) -> Result<bool> {
        if self.user(login).await?.is_none() {
            return Ok(false);
        }
        on_pool!(&self.pool, |c| sqlx::query(
            "INSERT INTO user_passwords (login, hash, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (login) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at"
        )
        .bind(login)
        .bind(hash)
        .bind(ms(now))
        .execute(c)
        .await?
        .rows_affected());
        Ok(true)
    }

    /// The password hash of an enabled user, if one is set.
    pub async fn password_hash(&self, login: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT p.hash FROM user_passwords p JOIN users u ON u.login = p.login \
             WHERE p.login = $1 AND u.disabled = 0"
        )
        .bind(login)
        .fetch_optional(c)
        .await?);
        Ok(row.map(|r| r.0))
    }

    /// Stores a new session (and forgets every expired one).
    pub async fn create_session(
        &self,
        token_hash: &str,
        login: &str,
        provider: &str,
        csrf: &str,
        now: Ts,
        expires_at: Ts,
    ) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(c)
            .await?
            .rows_affected());
        on_pool!(&self.pool, |c| sqlx::query(
            "INSERT INTO web_sessions (token_hash, login, provider, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(token_hash)
        .bind(login)
        .bind(provider)
        .bind(csrf)
        .bind(ms(now))
        .bind(ms(expires_at))
        .execute(c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The session of a cookie: not expired, its user enabled.
    pub async fn session(&self, token_hash: &str, now: Ts) -> Result<Option<SessionRecord>> {
        let row: Option<(String, String, String, i64)> = on_pool!(&self.pool, |c| {
            sqlx::query_as(
            "SELECT s.login, s.provider, s.csrf, s.expires_at FROM web_sessions s JOIN users u ON u.login = s.login \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = 0"
        )
        .bind(token_hash)
        .bind(ms(now))
        .fetch_optional(c)
        .await?
        });
        let Some((login, provider, csrf, expires_at)) = row else { return Ok(None) };
        let Some(user) = self.user(&login).await? else { return Ok(None) };
        Ok(Some(SessionRecord { user, provider, csrf, expires_at: from_ms(expires_at) }))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(c)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Ends every session of a user (password changed, user disabled).
    pub async fn delete_sessions_of(&self, login: &str) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query("DELETE FROM web_sessions WHERE login = $1")
            .bind(login)
            .execute(c)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Failed sign-ins counted under `key`.
    pub async fn sign_in_failures(&self, key: &str) -> Result<Option<Failures>> {
        let row: Option<(i64, i64)> =
            on_pool!(&self.pool, |c| sqlx::query_as("SELECT failures, last_at FROM sign_in_failures WHERE key = $1")
                .bind(key)
                .fetch_optional(c)
                .await?);
        Ok(row.map(|(count, last_at)| Failures { count, last_at: from_ms(last_at) }))
    }

    /// Counts one more failed sign-in under `key`.
    pub async fn record_sign_in_failure(&self, key: &str, now: Ts) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query(
            "INSERT INTO sign_in_failures (key, failures, last_at) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET failures = sign_in_failures.failures + 1, last_at = excluded.last_at"
        )
        .bind(key)
        .bind(ms(now))
        .execute(c)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn clear_sign_in_failures(&self, key: &str) -> Result<()> {
        on_pool!(&self.pool, |c| sqlx::query("DELETE FROM sign_in_failures WHERE key = $1")
            .bind(key)
            .execute(c)
            .await?
            .rows_affected());
        Ok(())
    }
}
