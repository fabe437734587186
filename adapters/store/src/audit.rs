//! The audit log: every act of a person, append-only (the tables' triggers refuse UPDATE and
//! DELETE on both backends). Acts done through the driver are written in their command's
//! transaction (`Writes::audit`); the others right after the act, in their own.

use serde_json::Value as Json;

use crate::{Pool, Result, Store, Ts, from_ms, ms};

/// One act to record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: Ts,
    /// The login that acted.
    pub actor: String,
    /// The client's IP address, when the act came over the network.
    pub address: Option<String>,
    /// What was done: `task.complete`, `instance.cancel`, `definition.deploy`, …
    pub action: String,
    /// What it was done to (a task id, a login, a definition key).
    pub target: Option<String>,
    /// The instance concerned, when there is one.
    pub instance_id: Option<String>,
    /// With what: submitted values, a reason, a new clock time.
    pub details: Json,
}

pub(crate) const AUDIT_COLUMNS: &str = "at, actor, address, action, target, instance_id, details";
pub(crate) const AUDIT_WIDTH: usize = 7;

/// A recorded act, with its place in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub seq: i64,
    pub entry: AuditEntry,
}

/// Which acts to list: all filters together; oldest first, after `after` (a `seq`).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub instance_id: Option<String>,
    pub from: Option<Ts>,
    pub to: Option<Ts>,
    pub after: Option<i64>,
    pub limit: i64,
}

type AuditTuple = (i64, i64, String, Option<String>, String, Option<String>, Option<String>, String);

impl Store {
    /// Records one act in its own transaction.
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.record_audit(std::slice::from_ref(entry)).await?;
        tx.commit().await
    }

    /// Acts matching `q`, oldest first.
    pub async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let sql = format!(
            "SELECT seq, {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 \
             AND ($2 = '' OR actor = $2) AND ($3 = '' OR action = $3) AND ($4 = '' OR target = $4) \
             AND ($5 = '' OR instance_id = $5) AND at >= $6 AND at < $7 ORDER BY seq LIMIT $8"
        );
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let rows: Vec<AuditTuple> = on_pool!(&self.pool, |c| sqlx::query_as(&sql)
            .bind(q.after.unwrap_or(0))
            .bind(text(&q.actor))
            .bind(text(&q.action))
            .bind(text(&q.target))
            .bind(text(&q.instance_id))
            .bind(q.from.map(ms).unwrap_or(i64::MIN))
            .bind(q.to.map(ms).unwrap_or(i64::MAX))
            .bind(q.limit)
            .fetch_all(c)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(seq, at, actor, address, action, target, instance_id, details)| AuditRow {
                seq,
                entry: AuditEntry {
                    at: from_ms(at),
                    actor,
                    address,
                    action,
                    target,
                    instance_id,
                    details: serde_json::from_str(&details).unwrap_or(Json::String(details)),
                },
            })
            .collect())
    }
}
