//! Built-in jobs (`report`, `registry-update`): leasing, rescheduling, and the data they read
//! and write.

use std::collections::BTreeMap;

use super::{Pool, Result, Store, StoreError, Ts, Tx, from_ms, ms};

/// A job taken for running.
#[derive(Debug, Clone)]
pub struct LeasedJob {
    pub id: String,
    pub instance_id: String,
    pub job_key: u32,
    pub job_type: String,
    pub payload: String,
    pub attempts: i64,
}

/// definition key, status, started, ended, deadline.
type FactsTuple = (String, String, i64, Option<i64>, Option<i64>);

/// One top-level instance, for reports.
#[derive(Debug, Clone)]
pub struct InstanceFacts {
    pub definition_key: String,
    pub status: String,
    pub started_at: Ts,
    pub ended_at: Option<Ts>,
    pub deadline: Option<Ts>,
}

impl Store {
    /// Takes up to `limit` due pending jobs not leased by a live node.
    pub async fn lease_due_jobs(&self, owner: &str, now: Ts, until: Ts, limit: i64) -> Result<Vec<LeasedJob>> {
        let skip = if self.is_postgres() { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 WHERE id IN ( \
             SELECT id FROM jobs WHERE state = 'pending' AND due <= $3 AND (lease_until IS NULL OR lease_until < $3) \
             ORDER BY due LIMIT $4 {skip}) RETURNING id, instance_id, job_key, job_type, payload, attempts"
        );
        let rows: Vec<(String, String, i64, String, String, i64)> = on_pool!(&self.pool, |c| sqlx::query_as(&sql)
            .bind(owner)
            .bind(ms(until))
            .bind(ms(now))
            .bind(limit)
            .fetch_all(c)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(id, instance_id, key, job_type, payload, attempts)| LeasedJob {
                id,
                instance_id,
                job_key: key as u32,
                job_type,
                payload,
                attempts,
            })
            .collect())
    }

    /// Puts a job back for a later attempt after a temporary failure.
    pub async fn retry_job_later(&self, id: &str, due: Ts, error: &str) -> Result<()> {
        on_pool!(&self.pool, |c| {
            sqlx::query(
            "UPDATE jobs SET due = $2, last_error = $3, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND state = 'pending'"
        )
        .bind(id)
        .bind(ms(due))
        .bind(error)
        .execute(c)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    /// The earliest due pending job.
    pub async fn next_job_due(&self) -> Result<Option<Ts>> {
        let row: (Option<i64>,) = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > due THEN lease_until ELSE due END) \
             FROM jobs WHERE state = 'pending'"
        )
        .fetch_one(c)
        .await?);
        Ok(row.0.map(from_ms))
    }

    /// Applies a change to one registry entry: `fields` merged in (`add`, `modify`,
    /// `actualize`), or the entry removed (`remove`).
    /// Marks every entry of the registry — each deployed process and each process entered by a
    /// change — as actualized at `now`. Returns how many entries there are.
    pub async fn actualize_registry(&self, now: Ts) -> Result<u64> {
        let mut tx = self.begin().await?;
        on!(&mut tx, |c| sqlx::query(
            "INSERT INTO registry (definition_key, fields, updated_at) \
             SELECT DISTINCT d.key, '{}', $1 FROM definitions d \
             WHERE NOT EXISTS (SELECT 1 FROM registry r WHERE r.definition_key = d.key)"
        )
        .bind(ms(now))
        .execute(c)
        .await?
        .rows_affected());
        let n = on!(&mut tx, |c| sqlx::query("UPDATE registry SET updated_at = $1")
            .bind(ms(now))
            .execute(c)
            .await?
            .rows_affected());
        tx.commit().await?;
        Ok(n)
    }

    pub async fn change_registry(
        &self,
        key: &str,
        action: &str,
        fields: &BTreeMap<String, String>,
        now: Ts,
    ) -> Result<()> {
        if action == "remove" {
            on_pool!(&self.pool, |c| sqlx::query("DELETE FROM registry WHERE definition_key = $1")
                .bind(key)
                .execute(c)
                .await?
                .rows_affected());
            return Ok(());
        }
        let current: Option<(String,)> =
            on_pool!(&self.pool, |c| sqlx::query_as("SELECT fields FROM registry WHERE definition_key = $1")
                .bind(key)
                .fetch_optional(c)
                .await?);
        let mut merged: BTreeMap<String, String> = match current {
            Some((text,)) => {
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("registry of `{key}`: {e}")))?
            }
            None => BTreeMap::new(),
        };
        merged.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        let text = serde_json::to_string(&merged).expect("a string map serialises");
        on_pool!(&self.pool, |c| sqlx::query(
            "INSERT INTO registry (definition_key, fields, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (definition_key) DO UPDATE SET fields = $2, updated_at = $3"
        )
        .bind(key)
        .bind(&text)
        .bind(ms(now))
        .execute(c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Top-level instances started in `[from, to)`.
    pub async fn instance_facts(&self, from: Ts, to: Ts) -> Result<Vec<InstanceFacts>> {
        let rows: Vec<FactsTuple> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT definition_key, status, started_at, ended_at, deadline FROM instances \
             WHERE started_at >= $1 AND started_at < $2 AND parent_id IS NULL ORDER BY definition_key, started_at"
        )
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(c)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(definition_key, status, started, ended, deadline)| InstanceFacts {
                definition_key,
                status,
                started_at: from_ms(started),
                ended_at: ended.map(from_ms),
                deadline: deadline.map(from_ms),
            })
            .collect())
    }
}
