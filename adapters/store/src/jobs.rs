//! Jobs: the built-in ones (`report`, `registry-update`) — leasing, rescheduling, and the data
//! they read and write — and those of external workers on the `/v2` job API (activation with a
//! fresh key per lease, failure with retries, timeout changes).

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

/// The job types the engine's own worker runs, as an SQL list (`'report', …`): the engine's
/// built-in types but `email` (emails go through the outbox). Every other type waits for an
/// external worker.
fn builtin_types_sql() -> String {
    reglament_engine::parse::BUILTIN_JOB_TYPES
        .iter()
        .filter(|t| **t != "email")
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A job handed to an external worker.
#[derive(Debug, Clone)]
pub struct ActivatedJob {
    pub id: String,
    pub instance_id: String,
    pub job_key: u32,
    pub job_type: String,
    pub payload: String,
    pub retries: i64,
    /// The key the worker answers with.
    pub activation_key: String,
    pub deadline: Ts,
}

/// A job as the `/v2` answers find it by its activation key.
#[derive(Debug, Clone)]
pub struct HeldJob {
    pub id: String,
    pub instance_id: String,
    pub job_key: u32,
    pub state: String,
    pub lease_until: Option<Ts>,
    pub retries: i64,
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
        let builtin = builtin_types_sql();
        let sql = format!(
            "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 WHERE id IN ( \
             SELECT id FROM jobs WHERE state = 'pending' AND job_type IN ({builtin}) AND due <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) \
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

    /// The earliest due pending built-in job.
    pub async fn next_job_due(&self) -> Result<Option<Ts>> {
        let builtin = builtin_types_sql();
        let sql = format!(
            "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > due THEN lease_until ELSE due END) \
             FROM jobs WHERE state = 'pending' AND job_type IN ({builtin})"
        );
        let row: (Option<i64>,) = on_pool!(&self.pool, |c| sqlx::query_as(&sql).fetch_one(c).await?);
        Ok(row.0.map(from_ms))
    }

    /// Hands up to `max` available jobs of `job_type` to `worker` until `until`, each under a
    /// fresh random key (below 2^53, so JavaScript clients read it exactly): due pending jobs
    /// nobody holds or whose holder's lease expired, oldest first. One statement, so SQLite
    /// never has to upgrade a read lock under a busy writer; on PostgreSQL rows another
    /// activation is taking are skipped, so each job goes to one worker.
    pub async fn activate_jobs(
        &self,
        job_type: &str,
        worker: &str,
        now: Ts,
        until: Ts,
        max: i64,
    ) -> Result<Vec<ActivatedJob>> {
        let (skip, key) = if self.is_postgres() {
            ("FOR UPDATE SKIP LOCKED", "CAST(CAST(floor(random() * 9007199254740990) + 1 AS BIGINT) AS TEXT)")
        } else {
            ("", "CAST((random() & 9007199254740991) + 1 AS TEXT)")
        };
        let sql = format!(
            "UPDATE jobs SET lease_owner = $2, lease_until = $3, activation_key = {key}, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM jobs WHERE job_type = $1 AND state = 'pending' AND due <= $4 \
             AND (lease_until IS NULL OR lease_until < $4) ORDER BY due, id LIMIT $5 {skip}) \
             RETURNING id, instance_id, job_key, job_type, payload, retries, activation_key"
        );
        let rows: Vec<(String, String, i64, String, String, i64, String)> =
            on_pool!(&self.pool, |c| sqlx::query_as(&sql)
                .bind(job_type)
                .bind(worker)
                .bind(ms(until))
                .bind(ms(now))
                .bind(max)
                .fetch_all(c)
                .await?);
        let mut out: Vec<ActivatedJob> = rows
            .into_iter()
            .map(|(id, instance_id, job_key, job_type, payload, retries, activation_key)| ActivatedJob {
                id,
                instance_id,
                job_key: job_key as u32,
                job_type,
                payload,
                retries,
                activation_key,
                deadline: until,
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The job a worker holds or held under `key`.
    pub async fn job_by_activation(&self, key: &str) -> Result<Option<HeldJob>> {
        let row: Option<(String, String, i64, String, Option<i64>, i64)> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT id, instance_id, job_key, state, lease_until, retries FROM jobs WHERE activation_key = $1"
        )
        .bind(key)
        .fetch_optional(c)
        .await?);
        Ok(row.map(|(id, instance_id, job_key, state, lease_until, retries)| HeldJob {
            id,
            instance_id,
            job_key: job_key as u32,
            state,
            lease_until: lease_until.map(from_ms),
            retries,
        }))
    }

    /// A worker's failure with retries left: the job is released (nobody holds it), with
    /// `retries` left, available again from `due`. False when the key no longer holds it.
    pub async fn release_failed_job(&self, key: &str, retries: i64, due: Ts, error: &str) -> Result<bool> {
        let n = on_pool!(&self.pool, |c| sqlx::query(
            "UPDATE jobs SET retries = $2, due = $3, last_error = $4, lease_owner = NULL, lease_until = NULL, \
             activation_key = NULL WHERE activation_key = $1 AND state = 'pending'"
        )
        .bind(key)
        .bind(retries)
        .bind(ms(due))
        .bind(error)
        .execute(c)
        .await?
        .rows_affected());
        Ok(n > 0)
    }

    /// Changes a held job's retries and/or its lease deadline. False when the key no longer
    /// holds it.
    pub async fn update_held_job(&self, key: &str, retries: Option<i64>, lease_until: Option<Ts>) -> Result<bool> {
        let n = on_pool!(&self.pool, |c| sqlx::query(
            "UPDATE jobs SET retries = COALESCE($2, retries), lease_until = COALESCE($3, lease_until) \
             WHERE activation_key = $1 AND state = 'pending'"
        )
        .bind(key)
        .bind(retries)
        .bind(lease_until.map(ms))
        .execute(c)
        .await?
        .rows_affected());
        Ok(n > 0)
    }

    /// When the next external job of `job_type` becomes available (due, or its lease expires).
    pub async fn next_available_job(&self, job_type: &str) -> Result<Option<Ts>> {
        let row: (Option<i64>,) = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > due THEN lease_until ELSE due END) \
             FROM jobs WHERE state = 'pending' AND job_type = $1"
        )
        .bind(job_type)
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
