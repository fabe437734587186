//! The driver: runs commands against stored instances, durably.
//!
//! Requests queue on a channel; one task takes everything queued (up to `max_batch`, waiting at
//! most `max_delay` for more) and runs it as ONE transaction: load the instances, run the pure
//! engine, write state (with an optimistic revision check), history, tasks, timers, subscriptions,
//! jobs and outbox rows. Only after commit are the callers answered and the workers woken. A
//! conflicting write (another node changed an instance) rolls the batch back and runs it again
//! from fresh state; nothing is half-applied and nothing acknowledged is lost.
//!
//! Engine work never holds the transaction for long. Each command runs within a budget
//! ([`reglament_engine::feel::Budget`]): the engine's steps (`command_steps`) and, asked by the
//! engine every few thousand steps, a wall-clock limit (`command_time_limit_ms`); a command
//! past either stops with an incident on the element it reached, and that outcome commits like
//! any other. A batch takes no further command once it has run for the time limit; the rest go
//! into the next transaction. A command the engine panics on is not applied: its instance is
//! quarantined (an incident on the instance; every command but resolving it or cancelling is
//! refused, and its timers are dropped until the incident is resolved), so a timer firing into
//! a defect does not fire again after every restart.
//!
//! An answer that a command was not done is true: a caller waits for its command to be taken
//! into a batch at most `queue_timeout`; a command not taken by then is withdrawn (it never
//! runs) and the caller is told to retry ([`DriverError::Busy`], 503). A command taken is
//! waited for to its committed outcome.
//!
//! Follow-up work that stays inside the database — a call activity starting its child, a child
//! reporting to its parent, a message thrown by one instance for another, a buffered message
//! meeting a new subscription — runs in the same transaction.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reglament_engine::feel::{Budget, Vars};
use reglament_engine::form::FormFile;
use reglament_engine::model::{NodeKind, TaskKind, Trigger};
use reglament_engine::runtime::{
    self, ChildOutcome, Command, Effect, Env, Event, Instance, ParentRef, ProcessDef, Rejection, StartCommand, Status,
    Transition,
};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::clock::Clock;
use crate::settings::Settings;
use reglament_store::writes::{
    HistoryWrite, InstanceKey, InstanceWrite, JobFinish, JobWrite, QueuedWrite, SubscriptionWrite, TaskClose, TaskEnd,
    TaskGroupWrite, TaskWrite, TimerWrite, Writes,
};
use reglament_store::{self as store, Store, StoreError, Ts, Tx, codec};

/// One unit of work for the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Start {
        definition: String,
        business_key: Option<String>,
        variables: Vars,
        start_event: Option<String>,
        /// The login starting it (recorded: a person sees the instances they started).
        by: Option<String>,
    },
    Instance {
        id: String,
        command: Command,
    },
    CompleteTask {
        task_id: String,
        variables: Vars,
        by: Option<String>,
    },
    /// Publish a message: to a waiting subscription, else a message start event, else buffered
    /// for `ttl_ms` (0: not buffered).
    Message {
        name: String,
        correlation_key: String,
        variables: Vars,
        ttl_ms: i64,
    },
    FireTimer {
        instance: String,
        key: u32,
    },
    FireStartTimer {
        definition: String,
        element: String,
    },
    /// A person's act: `op`, and when it succeeds, `entry` in the audit log, in the same
    /// transaction (its time is the batch's).
    Audited {
        op: Box<Op>,
        entry: reglament_store::audit::AuditEntry,
    },
}

impl Op {
    /// The span of this operation's work: `command` (its kind), `instance` and `definition`
    /// where known before it runs; `command()` records the definition of the instance it loads.
    fn span(&self) -> tracing::Span {
        use tracing::field::Empty;
        match self {
            Op::Audited { op, .. } => op.span(),
            Op::Start { definition, .. } => {
                info_span!("command", command = "start", definition = %definition, instance = Empty)
            }
            Op::Instance { id, command } => {
                info_span!("command", command = command_name(command), instance = %id, definition = Empty)
            }
            Op::CompleteTask { task_id, .. } => {
                let instance = parse_task_id(task_id).map(|(i, _)| i).unwrap_or_default();
                info_span!("command", command = "complete-task", task = %task_id, instance = %instance, definition = Empty)
            }
            Op::Message { name, correlation_key, .. } => info_span!(
                "command",
                command = "publish-message",
                message = %name,
                correlation_key = %correlation_key,
                instance = Empty,
                definition = Empty
            ),
            Op::FireTimer { instance, key } => {
                info_span!("command", command = "fire-timer", instance = %instance, timer = key, definition = Empty)
            }
            Op::FireStartTimer { definition, element } => info_span!(
                "command",
                command = "fire-start-timer",
                definition = %definition,
                element = %element,
                instance = Empty
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Started {
        id: String,
        version: i64,
        deadline: Option<Ts>,
    },
    Applied {
        id: String,
    },
    Buffered,
    /// The timer was no longer pending (fired elsewhere, cancelled); its row was dropped.
    Stale,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("{0}")]
    NotFound(Missing),
    /// Stored data the driver cannot use (a definition that no longer parses): a defect or a
    /// damaged database, never the caller's fault.
    #[error("{0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the instance is being changed by another node; try again")]
    Conflict,
    /// A start with a business key that an instance of a process with unique keys holds.
    #[error("business key `{business_key}` is taken by instance `{existing}`")]
    Duplicate { business_key: String, existing: String },
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The command waited longer than `queue_timeout` to be taken into a batch and was
    /// withdrawn: it was not run and never will be; retrying is safe.
    #[error("the server is busy: the command was not run; retry it")]
    Busy,
    /// The engine panicked on this command (a defect of ours); nothing of it was applied.
    #[error("{0}")]
    Engine(String),
}

/// What a command named that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("no process instance `{0}`")]
    Instance(String),
    #[error("no task `{0}`")]
    Task(String),
    #[error("no definition `{key}` is deployed")]
    Definition { key: String },
    #[error("definition `{key}` version {version} is not deployed")]
    DefinitionVersion { key: String, version: i64 },
    #[error(
        "no process instance waits for message `{name}` with correlation key `{correlation_key}`, and no process starts with it"
    )]
    Receiver { name: String, correlation_key: String },
}

impl DriverError {
    fn cloned(&self) -> DriverError {
        match self {
            DriverError::Rejected(r) => DriverError::Rejected(r.clone()),
            DriverError::NotFound(m) => DriverError::NotFound(m.clone()),
            DriverError::Corrupt(s) => DriverError::Corrupt(s.clone()),
            DriverError::Store(e) => DriverError::Corrupt(format!("storage failed: {e}")),
            DriverError::Conflict => DriverError::Conflict,
            DriverError::Duplicate { business_key, existing } => {
                DriverError::Duplicate { business_key: business_key.clone(), existing: existing.clone() }
            }
            DriverError::ShuttingDown => DriverError::ShuttingDown,
            DriverError::Busy => DriverError::Busy,
            DriverError::Engine(s) => DriverError::Engine(s.clone()),
        }
    }
}

type Reply = oneshot::Sender<Result<Outcome, DriverError>>;

/// Where a submitted command is: waiting in the queue, taken into a batch, or withdrawn by a
/// caller that stopped waiting. Moved from `QUEUED` once, by whoever comes first.
const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const WITHDRAWN: u8 = 2;

/// A command on its way to the batch loop.
struct Request {
    op: Op,
    reply: Reply,
    place: Arc<AtomicU8>,
}

#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub max_batch: usize,
    pub max_delay: Duration,
    pub default_tz: chrono_tz::Tz,
    /// This node's name, used as lease owner.
    pub node: String,
    /// The time commands run at (the system clock unless controlled).
    pub clock: Arc<Clock>,
    /// The longest one command may run; a batch takes no more commands after running this long.
    pub command_time_limit: Duration,
    /// How long a caller waits for its command to be taken into a batch before withdrawing it.
    pub queue_timeout: Duration,
    /// The email templates folder: a model naming a template that is not there is refused at
    /// deploy. `None` skips the check (hosts that send no email).
    pub templates: Option<std::path::PathBuf>,
}

/// How long a caller waits for its command to be taken: half the HTTP request timeout, so the
/// command's own outcome (or its withdrawal) always comes before the request times out.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(15);

impl DriverConfig {
    /// The driver's part of the settings, running on `clock`.
    pub fn from_settings(settings: &Settings, clock: Clock) -> DriverConfig {
        DriverConfig {
            max_batch: settings.max_batch,
            max_delay: settings.batch_delay,
            default_tz: settings.time_zone,
            node: settings.node.clone(),
            clock: Arc::new(clock),
            command_time_limit: settings.command_time_limit,
            queue_timeout: QUEUE_TIMEOUT,
            templates: Some(settings.definitions.join("templates")),
        }
    }
}

/// Wakes the background workers when new work was committed.
#[derive(Debug, Default)]
pub struct Wakers {
    pub scheduler: Notify,
    pub outbox: Notify,
    pub jobs: Notify,
    /// Every long-polling `/v2/jobs/activation` on this node (woken all at once).
    pub external_jobs: Notify,
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub started: std::sync::atomic::AtomicU64,
    pub completed: std::sync::atomic::AtomicU64,
    pub batches: std::sync::atomic::AtomicU64,
    pub commands: std::sync::atomic::AtomicU64,
    pub conflicts: std::sync::atomic::AtomicU64,
}

/// The running engine: store, definitions, and the batching command loop.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    env: Arc<Env>,
    config: DriverConfig,
    defs: Mutex<HashMap<(String, i64), Arc<ProcessDef>>>,
    /// Message name → definition keys with a message start event for it.
    message_starts: Mutex<HashMap<String, Vec<String>>>,
    requests: mpsc::Sender<Request>,
    wakers: Arc<Wakers>,
    counters: Counters,
}

impl Runtime {
    /// Starts the command loop on the current tokio runtime.
    pub async fn start(store: Store, env: Env, config: DriverConfig) -> Result<Runtime, DriverError> {
        let (tx, rx) = mpsc::channel(8192);
        let rt = Runtime {
            inner: Arc::new(Inner {
                store,
                env: Arc::new(env),
                config,
                defs: Mutex::new(HashMap::new()),
                message_starts: Mutex::new(HashMap::new()),
                requests: tx,
                wakers: Arc::new(Wakers::default()),
                counters: Counters::default(),
            }),
        };
        rt.refresh_message_starts().await?;
        let looper = rt.clone();
        tokio::spawn(async move { looper.run(rx).await });
        Ok(rt)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn env(&self) -> &Env {
        &self.inner.env
    }

    pub fn wakers(&self) -> &Arc<Wakers> {
        &self.inner.wakers
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub fn node(&self) -> &str {
        &self.inner.config.node
    }

    /// The server's time now (see [`crate::clock`]).
    pub fn now(&self) -> Ts {
        self.inner.config.clock.now()
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.config.clock
    }

    pub fn default_tz(&self) -> chrono_tz::Tz {
        self.inner.config.default_tz
    }

    /// Submits an operation and waits for its committed outcome; [`DriverError::Busy`] when it
    /// was not taken into a batch within `queue_timeout` (it was withdrawn and never runs).
    pub async fn submit(&self, op: Op) -> Result<Outcome, DriverError> {
        let (reply, mut rx) = oneshot::channel();
        let place = Arc::new(AtomicU8::new(QUEUED));
        let deadline = tokio::time::Instant::now() + self.inner.config.queue_timeout;
        let request = Request { op, reply, place: place.clone() };
        match tokio::time::timeout_at(deadline, self.inner.requests.send(request)).await {
            Ok(sent) => sent.map_err(|_| DriverError::ShuttingDown)?,
            Err(_) => return Err(DriverError::Busy),
        }
        if let Ok(outcome) = tokio::time::timeout_at(deadline, &mut rx).await {
            return outcome.map_err(|_| DriverError::ShuttingDown)?;
        }
        if place.compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            warn!(
                timeout_ms = self.inner.config.queue_timeout.as_millis() as u64,
                "a command waited too long in the queue; withdrawn, not run"
            );
            return Err(DriverError::Busy);
        }
        // Taken into a batch: its outcome comes once that batch is done.
        rx.await.map_err(|_| DriverError::ShuttingDown)?
    }

    /// A definition version, parsed (cached).
    pub async fn definition(&self, key: &str, version: i64) -> Result<Arc<ProcessDef>, DriverError> {
        if let Some(d) = self.inner.defs.lock().expect("definition cache").get(&(key.to_string(), version)) {
            return Ok(d.clone());
        }
        let (_, xml) = self
            .inner
            .store
            .definition_xml(key, Some(version))
            .await?
            .ok_or_else(|| DriverError::NotFound(Missing::DefinitionVersion { key: key.to_string(), version }))?;
        let forms = self.inner.store.definition_forms(key, version).await?;
        self.cache_definition(key, version, &xml, &forms)
    }

    fn cache_definition(
        &self,
        key: &str,
        version: i64,
        xml: &str,
        forms: &[store::DefinitionForm],
    ) -> Result<Arc<ProcessDef>, DriverError> {
        let files: Vec<FormFile<'_>> =
            forms.iter().map(|f| FormFile { name: &f.file_name, bytes: f.content.as_bytes() }).collect();
        let (defs, diags) = reglament_engine::parse_with_forms(xml.as_bytes(), &files);
        if let Some(d) = diags.iter().find(|d| d.is_error()) {
            return Err(DriverError::Corrupt(format!(
                "stored definition `{key}` v{version} does not parse: {}",
                d.message
            )));
        }
        let def = ProcessDef::new(Arc::new(defs), key, version as u32, self.inner.config.default_tz)
            .ok_or_else(|| DriverError::Corrupt(format!("stored definition `{key}` has no process `{key}`")))?;
        let def = Arc::new(def);
        self.inner.defs.lock().expect("definition cache").insert((key.to_string(), version), def.clone());
        Ok(def)
    }

    /// Rebuilds the message-start index from the latest deployed versions.
    pub async fn refresh_message_starts(&self) -> Result<(), DriverError> {
        let mut index: HashMap<String, Vec<String>> = HashMap::new();
        for row in self.inner.store.definitions().await? {
            let def = self.definition(&row.key, row.version).await?;
            for node in &def.process().nodes {
                if node.parent.is_none()
                    && let NodeKind::StartEvent { trigger: Trigger::Message { message }, .. } = &node.kind
                    && let Some(m) = def.defs.messages.get(message)
                {
                    index.entry(m.name.clone()).or_default().push(row.key.clone());
                }
            }
        }
        *self.inner.message_starts.lock().expect("message index") = index;
        Ok(())
    }

    // ---- the batching loop ----------------------------------------------------------------

    async fn run(self, mut rx: mpsc::Receiver<Request>) {
        let max = self.inner.config.max_batch;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.inner.config.max_delay;
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) if self.inner.config.max_delay.is_zero() => break,
                    Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(req)) => batch.push(req),
                        _ => break,
                    },
                }
            }
            let span = info_span!("batch", commands = batch.len());
            self.run_batch(batch).instrument(span).await;
        }
        debug!("driver loop ended");
    }

    async fn run_batch(&self, batch: Vec<Request>) {
        // Commands whose callers withdrew them are dropped; the others are taken for good.
        let mut batch: Vec<(Op, Reply)> = batch
            .into_iter()
            .filter(|r| r.place.compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire).is_ok())
            .map(|r| (r.op, r.reply))
            .collect();
        while !batch.is_empty() {
            let rest = self.run_transaction(batch).await;
            batch = rest;
        }
    }

    /// Runs one transaction over the commands (or a first part of them, when they run past
    /// the time limit) and answers those; returns the commands left for the next one.
    async fn run_transaction(&self, mut batch: Vec<(Op, Reply)>) -> Vec<(Op, Reply)> {
        let ops: Vec<Op> = batch.iter().map(|(op, _)| op.clone()).collect();
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match self.try_batch(&ops).await {
                Err(e) if attempt < 8 && (matches!(e, DriverError::Conflict) || is_transient(&e)) => {
                    self.inner.counters.conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // A conflict means cached views are stale; a lost connection needs a pause.
                    let pause = if matches!(e, DriverError::Conflict) { 1 } else { 50 * attempt };
                    warn!(attempt, error = %e, "batch retried");
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                other => break other,
            }
        };
        self.inner.counters.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok((outcomes, wake)) => {
                let rest = batch.split_off(outcomes.len());
                if !rest.is_empty() {
                    info!(
                        done = outcomes.len(),
                        left = rest.len(),
                        "the batch ran past the command time limit; the rest go into the next transaction"
                    );
                }
                self.inner.counters.commands.fetch_add(outcomes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                if wake.timers {
                    self.inner.wakers.scheduler.notify_one();
                }
                if wake.outbox {
                    self.inner.wakers.outbox.notify_one();
                }
                if wake.jobs {
                    self.inner.wakers.jobs.notify_one();
                    self.inner.wakers.external_jobs.notify_waiters();
                }
                rest
            }
            Err(e) => {
                warn!(error = %e, commands = ops.len(), "batch failed; nothing was applied");
                self.inner.counters.commands.fetch_add(ops.len() as u64, std::sync::atomic::Ordering::Relaxed);
                for (_, reply) in batch {
                    let _ = reply.send(Err(e.cloned()));
                }
                Vec::new()
            }
        }
    }

    async fn try_batch(&self, ops: &[Op]) -> Result<(Vec<Result<Outcome, DriverError>>, Wake), DriverError> {
        let tx = self.inner.store.begin().await?;
        let mut b = Batch {
            rt: self,
            tx,
            now: self.now(),
            work: Vec::new(),
            index: HashMap::new(),
            follow: VecDeque::new(),
            versions: HashMap::new(),
            audit: Vec::new(),
        };
        if let Err(e) = b.prefetch(ops).await {
            let _ = b.tx.rollback().await;
            return Err(e);
        }
        let mut outcomes = Vec::with_capacity(ops.len());
        let started = Instant::now();
        for op in ops {
            // However long each command may be, the transaction is held for about one limit.
            if !outcomes.is_empty() && started.elapsed() > self.inner.config.command_time_limit {
                break;
            }
            let span = op.span();
            match b.op(op.clone()).instrument(span).await {
                // A storage failure fails the whole batch (and may be retried); a rejection
                // fails only its own operation.
                Err(DriverError::Store(e)) => {
                    let _ = b.tx.rollback().await;
                    return Err(DriverError::Store(e));
                }
                outcome => outcomes.push(outcome),
            }
            b.follow_ups().await?;
        }
        let wake = b.write().await?;
        b.tx.commit().await?;
        Ok((outcomes, wake))
    }

    // ---- deployment -----------------------------------------------------------------------

    /// Deploys a BPMN document: each executable process becomes a new version of its key when
    /// its XML changed. Invalid models are refused with all diagnostics.
    pub async fn deploy(&self, xml: &[u8], by: Option<&str>) -> Result<Vec<Deployed>, DeployError> {
        self.deploy_with_forms(xml, Vec::new(), by).await
    }

    /// [`Runtime::deploy`] of a model with Camunda Forms: `forms` are `.form` files (name,
    /// bytes). The forms the model's user tasks link are stored with each new version (and
    /// count in its hash: a changed form is a new version); the others are checked and left.
    pub async fn deploy_with_forms(
        &self,
        xml: &[u8],
        forms: Vec<(String, Vec<u8>)>,
        by: Option<&str>,
    ) -> Result<Vec<Deployed>, DeployError> {
        self.deploy_checked(xml, forms, by, None).await
    }

    /// [`Runtime::deploy_with_forms`] by a person: a process whose deployed version names its
    /// owners (`reglament:settings owners`) gets a new version only from one of them.
    pub async fn deploy_as(
        &self,
        xml: &[u8],
        forms: Vec<(String, Vec<u8>)>,
        user: &reglament_store::auth::UserRecord,
    ) -> Result<Vec<Deployed>, DeployError> {
        self.deploy_checked(xml, forms, Some(&user.login), Some(user)).await
    }

    async fn deploy_checked(
        &self,
        xml: &[u8],
        forms: Vec<(String, Vec<u8>)>,
        by: Option<&str>,
        person: Option<&reglament_store::auth::UserRecord>,
    ) -> Result<Vec<Deployed>, DeployError> {
        let text = std::str::from_utf8(xml).map_err(|_| {
            DeployError::Invalid(vec![reglament_engine::Diagnostic::error(
                reglament_engine::Code::MalformedXml,
                Default::default(),
                None,
                "the file is not valid UTF-8",
            )])
        })?;
        let known: std::collections::BTreeSet<String> =
            self.inner.store.definitions().await.map_err(DeployError::Store)?.into_iter().map(|d| d.key).collect();
        // Parsing and validation are CPU-bound: off the async threads, so a large model never
        // stalls other requests, timers or health checks.
        let bytes = xml.to_vec();
        let templates = self.inner.config.templates.clone();
        let (defs, diags, kept) = tokio::task::spawn_blocking(move || {
            let files: Vec<FormFile<'_>> =
                forms.iter().map(|(name, bytes)| FormFile { name: name.as_str(), bytes: bytes.as_slice() }).collect();
            let (defs, mut diags) = reglament_engine::check_with_forms(&bytes, &files, &known);
            if let Some(dir) = &templates {
                diags.extend(missing_templates(&defs, dir));
            }
            let linked = reglament_engine::form::linked_ids(&defs);
            let kept: Vec<store::DefinitionForm> = reglament_engine::form::read_files(&files)
                .0
                .into_iter()
                .filter(|f| linked.contains(&f.id))
                .filter_map(|f| {
                    let (_, bytes) = forms.iter().find(|(name, _)| *name == f.file)?;
                    let content = String::from_utf8(bytes.clone()).ok()?;
                    Some(store::DefinitionForm { form_id: f.id, file_name: f.file, content })
                })
                .collect();
            (defs, diags, kept)
        })
        .await
        .map_err(|e| DeployError::Engine(panic_text(e.into_panic())))?;
        if diags.iter().any(|d| d.is_error()) {
            return Err(DeployError::Invalid(diags));
        }
        let mut hasher = Sha256::new();
        hasher.update(xml);
        for f in &kept {
            hasher.update(format!("\0{}\0{}\0", f.form_id, f.file_name.len()));
            hasher.update(f.content.as_bytes());
        }
        let hash = format!("{:x}", hasher.finalize());
        let now = self.now();
        let mut tx = self.inner.store.begin().await.map_err(DeployError::Store)?;
        let mut out = Vec::new();
        for process in defs.executable_processes() {
            let latest = tx.latest_definition(&process.id).await.map_err(DeployError::Store)?;
            if let (Some(user), Some((v, h, _))) = (person, &latest)
                && *h != hash
            {
                let deployed = self.definition(&process.id, *v).await.map_err(|e| match e {
                    DriverError::Store(s) => DeployError::Store(s),
                    other => DeployError::Engine(other.to_string()),
                })?;
                if !crate::access::owns(user, &deployed) && !user.in_group(crate::access::ADMINS) {
                    return Err(DeployError::NotOwner(process.id.clone()));
                }
            }
            let (version, created) = match latest {
                Some((v, h, _)) if h == hash => (v, false),
                Some((v, _, _)) => (v + 1, true),
                None => (1, true),
            };
            if created {
                tx.insert_definition(&store::NewDefinition {
                    key: &process.id,
                    version,
                    hash: &hash,
                    name: process.name.as_deref(),
                    xml: text,
                    deployed_at: now,
                    deployed_by: by,
                })
                .await
                .map_err(DeployError::Store)?;
                tx.insert_definition_forms(&process.id, version, &kept).await.map_err(DeployError::Store)?;
                let fields = serde_json::to_string(&process.settings.registry).expect("registry map serialises");
                tx.upsert_registry(&process.id, &fields, now).await.map_err(DeployError::Store)?;
                let def =
                    ProcessDef::new(Arc::new(defs.clone()), &process.id, version as u32, self.inner.config.default_tz)
                        .expect("the process is in the file");
                let timers = start_timer_dues(&def, now);
                tx.replace_start_timers(&process.id, version, &timers).await.map_err(DeployError::Store)?;
            }
            out.push(Deployed { key: process.id.clone(), version, created });
        }
        tx.commit().await.map_err(DeployError::Store)?;
        for d in out.iter().filter(|d| d.created) {
            info!(definition = %d.key, version = d.version, "deployed");
        }
        self.refresh_message_starts().await.map_err(|e| DeployError::Store(StoreError::Corrupt(e.to_string())))?;
        self.inner.wakers.scheduler.notify_one();
        Ok(out)
    }
}

/// An error for each email template the model names that is not a file in `dir`: found at
/// deploy, not when the first email of the process is due.
pub fn missing_templates(
    defs: &reglament_engine::Definitions,
    dir: &std::path::Path,
) -> Vec<reglament_engine::Diagnostic> {
    reglament_engine::parse::email_templates(defs)
        .into_iter()
        .filter(|(_, name)| !dir.join(format!("{name}.txt")).is_file())
        .map(|(node, name)| {
            reglament_engine::Diagnostic::error(
                reglament_engine::Code::BadValue,
                node.pos,
                Some(&node.id),
                format!(
                    "email template `{name}` is not in {}: add {name}.txt there or name an existing template",
                    dir.display()
                ),
            )
        })
        .collect()
}

fn is_transient(e: &DriverError) -> bool {
    matches!(e, DriverError::Store(s) if s.is_transient())
}

/// The first due time of each timer start event of a process.
pub fn start_timer_dues(def: &ProcessDef, now: Ts) -> Vec<(String, Ts)> {
    use reglament_engine::model::TimerValue;
    use reglament_engine::timer::TimerSpec;
    let mut out = Vec::new();
    for node in &def.process().nodes {
        if node.parent.is_some() {
            continue;
        }
        let NodeKind::StartEvent { trigger: Trigger::Timer(td), .. } = &node.kind else { continue };
        let TimerValue::Literal(spec) = &td.value else { continue };
        let due = match spec {
            TimerSpec::Date(d) => Some(d.to_utc()),
            TimerSpec::Cycle(c) => c.next_after(now, 0, def.tz),
            TimerSpec::Duration(d) => d.add_to(now),
        };
        if let Some(due) = due {
            out.push((node.id.clone(), due));
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub key: String,
    pub version: i64,
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("the model has errors")]
    Invalid(Vec<reglament_engine::Diagnostic>),
    #[error(transparent)]
    Store(StoreError),
    /// The engine failed on the model (a defect of ours, logged with the model's hash).
    #[error("the engine failed on the model: {0}")]
    Engine(String),
    /// The deploying person does not own a process the model would replace (its deployed
    /// version names other owners).
    #[error("not an owner of process {0}")]
    NotOwner(String),
}

/// A command's name for logs.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::CompleteTask { .. } => "complete-task",
        Command::CorrelateMessage { .. } => "correlate-message",
        Command::FireTimer { .. } => "fire-timer",
        Command::CompleteJob { .. } => "complete-job",
        Command::FailJob { .. } => "fail-job",
        Command::ThrowJobError { .. } => "throw-job-error",
        Command::ChildCompleted { .. } => "child-completed",
        Command::ChildFailed { .. } => "child-failed",
        Command::ResolveIncident { .. } => "resolve-incident",
        Command::Cancel { .. } => "cancel",
        Command::ExtendSla { .. } => "extend-sla",
        Command::PauseSla { .. } => "pause-sla",
        Command::ResumeSla => "resume-sla",
        Command::Quarantine { .. } => "quarantine",
    }
}

/// The message of a caught panic.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// Runs one engine call, turning a panic into an error for this command only: the batch, the
/// driver loop and the other commands go on.
fn guarded<T>(what: &str, instance: &str, f: impl FnOnce() -> T) -> Result<T, DriverError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = panic_text(payload);
        tracing::error!(instance, command = what, panic = %message, "the engine failed on a command; it was not applied");
        DriverError::Engine(format!("the engine failed on {what} of instance {instance}: {message}"))
    })
}

#[derive(Debug, Default, Clone, Copy)]
struct Wake {
    timers: bool,
    outbox: bool,
    jobs: bool,
}

/// An instance being changed in this batch.
struct Work {
    def: Arc<ProcessDef>,
    state: Instance,
    /// The stored revision this batch read; `None` for an instance created in this batch.
    base_rev: Option<i64>,
    history_len: i64,
    transitions: Vec<(Transition, Option<String>)>,
}

/// One transaction's worth of work.
struct Batch<'a> {
    rt: &'a Runtime,
    tx: Tx,
    now: Ts,
    work: Vec<Work>,
    index: HashMap<String, usize>,
    /// Follow-up work produced by effects, run in the same transaction.
    follow: VecDeque<FollowUp>,
    /// Latest definition versions read in this batch.
    versions: HashMap<String, i64>,
    /// The acts of people the batch's commands did, written with them.
    audit: Vec<reglament_store::audit::AuditEntry>,
}

/// Work an effect asks for that stays inside the database.
enum FollowUp {
    StartChild {
        parent: String,
        call: u32,
        process: String,
        variables: Vars,
    },
    CancelChild {
        parent: String,
        call: u32,
    },
    Command {
        instance: String,
        command: Command,
    },
    /// A message thrown by an instance; dropped when nobody waits for it.
    Publish {
        name: String,
        correlation_key: String,
        variables: Vars,
    },
    /// A subscription opened: deliver a buffered message if one waits.
    DeliverBuffered {
        name: String,
        correlation_key: String,
    },
}

impl Batch<'_> {
    async fn load(&mut self, id: &str) -> Result<usize, DriverError> {
        if let Some(&i) = self.index.get(id) {
            return Ok(i);
        }
        let row =
            self.tx.instance(id).await?.ok_or_else(|| DriverError::NotFound(Missing::Instance(id.to_string())))?;
        let def = self.rt.definition(&row.definition_key, row.version).await?;
        self.work.push(Work {
            def,
            state: row.state,
            base_rev: Some(row.rev),
            history_len: row.history_len,
            transitions: Vec::new(),
        });
        self.index.insert(id.to_string(), self.work.len() - 1);
        Ok(self.work.len() - 1)
    }

    async fn op(&mut self, op: Op) -> Result<Outcome, DriverError> {
        match op {
            Op::Audited { op, mut entry } => {
                let outcome = Box::pin(self.op(*op)).await?;
                entry.at = self.now;
                self.audit.push(entry);
                Ok(outcome)
            }
            Op::Start { definition, business_key, variables, start_event, by } => {
                self.start(
                    &definition,
                    by,
                    StartCommand {
                        id: uuid::Uuid::now_v7().to_string(),
                        business_key,
                        variables,
                        start_event,
                        parent: None,
                    },
                )
                .await
            }
            Op::Instance { id, command } => self.command(&id, command, None).await,
            Op::CompleteTask { task_id, variables, by } => {
                let (instance, key) =
                    parse_task_id(&task_id).ok_or_else(|| DriverError::NotFound(Missing::Task(task_id.clone())))?;
                self.command(instance, Command::CompleteTask { task: key, variables }, by).await.map_err(|e| match e {
                    DriverError::NotFound(Missing::Instance(_)) => {
                        DriverError::NotFound(Missing::Task(task_id.clone()))
                    }
                    // The instance ended, so its tasks are closed: the same answer as a task
                    // completed twice.
                    DriverError::Rejected(Rejection::NotActive(_)) => DriverError::Rejected(Rejection::NoSuchTask(key)),
                    other => other,
                })
            }
            Op::Message { name, correlation_key, variables, ttl_ms } => {
                self.message(name, correlation_key, variables, ttl_ms).await
            }
            Op::FireTimer { instance, key } => {
                let result = self.command(&instance, Command::FireTimer { timer: key }, None).await;
                match result {
                    Err(DriverError::Rejected(
                        Rejection::NoSuchTimer(_) | Rejection::NotActive(_) | Rejection::Quarantined(_),
                    ))
                    | Err(DriverError::NotFound(_)) => {
                        self.tx.delete_timer(&instance, key).await?;
                        Ok(Outcome::Stale)
                    }
                    // The instance was quarantined: the timer is not fired again (resolving
                    // the quarantine schedules it anew).
                    Err(DriverError::Engine(e)) => {
                        self.tx.delete_timer(&instance, key).await?;
                        Err(DriverError::Engine(e))
                    }
                    other => other,
                }
            }
            Op::FireStartTimer { definition, element } => self.fire_start_timer(&definition, &element).await,
        }
    }

    /// The latest version of a definition key, read once per batch.
    async fn latest_version(&mut self, key: &str) -> Result<i64, DriverError> {
        if let Some(v) = self.versions.get(key) {
            return Ok(*v);
        }
        let v = self
            .tx
            .latest_version(key)
            .await?
            .ok_or_else(|| DriverError::NotFound(Missing::Definition { key: key.to_string() }))?;
        self.versions.insert(key.to_string(), v);
        Ok(v)
    }

    /// Loads, in one query, the instances the batch's operations name.
    async fn prefetch(&mut self, ops: &[Op]) -> Result<(), DriverError> {
        let mut ids: Vec<&str> = ops
            .iter()
            .map(|op| match op {
                Op::Audited { op, .. } => op.as_ref(),
                op => op,
            })
            .filter_map(|op| match op {
                Op::Instance { id, .. } => Some(id.as_str()),
                Op::CompleteTask { task_id, .. } => parse_task_id(task_id).map(|(i, _)| i),
                Op::FireTimer { instance, .. } => Some(instance.as_str()),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() < 2 {
            return Ok(());
        }
        for row in self.tx.instances(&ids).await? {
            if self.index.contains_key(&row.id) {
                continue;
            }
            let def = self.rt.definition(&row.definition_key, row.version).await?;
            self.index.insert(row.id.clone(), self.work.len());
            self.work.push(Work {
                def,
                state: row.state,
                base_rev: Some(row.rev),
                history_len: row.history_len,
                transitions: Vec::new(),
            });
        }
        Ok(())
    }

    async fn start(&mut self, key: &str, by: Option<String>, cmd: StartCommand) -> Result<Outcome, DriverError> {
        let version = self.latest_version(key).await?;
        let def = self.rt.definition(key, version).await?;
        let id = cmd.id.clone();
        let business_key = cmd.business_key.clone();
        let budget = self.budget();
        let (state, transition) =
            guarded("start", &id, || runtime::start_within(&def, self.rt.env(), cmd, self.now, &budget))??;
        if def.process().settings.unique_business_key
            && let Some(business_key) = business_key
            && let Some(existing) = self.tx.take_business_key(key, &business_key, &id).await?
        {
            return Err(DriverError::Duplicate { business_key, existing });
        }
        let deadline = state.sla.as_ref().map(|s| s.deadline);
        self.work.push(Work { def, state, base_rev: None, history_len: 0, transitions: Vec::new() });
        let i = self.work.len() - 1;
        self.index.insert(id.clone(), i);
        self.absorb(i, transition, by);
        self.rt.inner.counters.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Outcome::Started { id, version, deadline })
    }

    async fn command(&mut self, id: &str, command: Command, by: Option<String>) -> Result<Outcome, DriverError> {
        let i = self.load(id).await?;
        let w = &self.work[i];
        let span = tracing::Span::current();
        span.record("definition", w.def.process().id.as_str());
        span.record("instance", id);
        let what = command_name(&command);
        let budget = self.budget();
        let handled =
            guarded(what, id, || runtime::handle_within(&w.def, self.rt.env(), &w.state, command, self.now, &budget));
        let (state, transition) = match handled {
            Err(DriverError::Engine(message)) => {
                self.quarantine(i, what, &message)?;
                return Err(DriverError::Engine(message));
            }
            other => other??,
        };
        self.work[i].state = state;
        self.absorb(i, transition, by);
        Ok(Outcome::Applied { id: id.to_string() })
    }

    /// A command's budget: the engine's limits and the command time limit, from now.
    fn budget(&self) -> Budget {
        let limit = self.rt.inner.config.command_time_limit;
        let started = Instant::now();
        Budget::with_interrupt(
            self.rt.env().limits,
            Arc::new(move || {
                (started.elapsed() > limit).then(|| {
                    format!(
                        "the command ran longer than its time limit of {} ms (setting `command_time_limit_ms`); split the work over several tasks, or raise the limit",
                        limit.as_millis()
                    )
                })
            }),
        )
    }

    /// Sets instance `i` aside after the engine failed on `what`: an incident on the instance
    /// that stops every further command but resolving it or cancelling (logged; the failed
    /// command itself is not applied).
    fn quarantine(&mut self, i: usize, what: &str, message: &str) -> Result<(), DriverError> {
        let w = &self.work[i];
        let id = w.state.id.clone();
        let command = Command::Quarantine {
            reason: format!(
                "the engine failed on {what} and did not apply it ({message}); the instance is set aside: resolve this incident to let it run again, or cancel it"
            ),
        };
        let quarantined = guarded("quarantine", &id, || {
            runtime::handle_within(&w.def, self.rt.env(), &w.state, command, self.now, &Budget::default())
        })?;
        match quarantined {
            Ok((state, transition)) => {
                warn!(instance = %id, command = what, "instance quarantined after an engine failure");
                self.work[i].state = state;
                self.absorb(i, transition, None);
            }
            // Already quarantined (or no longer active): nothing more to set aside.
            Err(rejection) => debug!(instance = %id, %rejection, "not quarantined"),
        }
        Ok(())
    }

    async fn message(
        &mut self,
        name: String,
        key: String,
        variables: Vars,
        ttl_ms: i64,
    ) -> Result<Outcome, DriverError> {
        // Subscriptions opened earlier in this batch are only in memory yet.
        let in_memory = self.work.iter().position(|w| {
            w.state.status == Status::Active
                && w.state.messages.iter().any(|m| m.name == name && m.correlation_key == key)
        });
        let target = match in_memory {
            Some(i) => Some(self.work[i].state.id.clone()),
            None => self.tx.find_subscriber(&name, &key).await?,
        };
        if let Some(id) = target {
            let cmd = Command::CorrelateMessage { name, correlation_key: key, variables };
            return self.command(&id, cmd, None).await;
        }
        let starts =
            self.rt.inner.message_starts.lock().expect("message index").get(&name).cloned().unwrap_or_default();
        if let Some(def_key) = starts.first() {
            let version = self.latest_version(def_key).await?;
            let def = self.rt.definition(def_key, version).await?;
            let start_event = def.process().nodes.iter().find_map(|n| match &n.kind {
                NodeKind::StartEvent { trigger: Trigger::Message { message }, .. }
                    if n.parent.is_none() && def.defs.messages.get(message).is_some_and(|m| m.name == name) =>
                {
                    Some(n.id.clone())
                }
                _ => None,
            });
            let business_key = (!key.is_empty()).then(|| key.clone());
            return self
                .start(
                    def_key,
                    None,
                    StartCommand {
                        id: uuid::Uuid::now_v7().to_string(),
                        business_key,
                        variables,
                        start_event,
                        parent: None,
                    },
                )
                .await;
        }
        if ttl_ms > 0 {
            let expires = self.now + chrono::Duration::milliseconds(ttl_ms);
            let vars = serde_json::to_string(&variables).expect("variables serialise");
            self.tx.buffer_message(&uuid::Uuid::now_v7().to_string(), &name, &key, &vars, expires, self.now).await?;
            return Ok(Outcome::Buffered);
        }
        Err(DriverError::NotFound(Missing::Receiver { name, correlation_key: key }))
    }

    async fn fire_start_timer(&mut self, key: &str, element: &str) -> Result<Outcome, DriverError> {
        let Some((version, due, fired)) = self.tx.start_timer(key, element).await? else { return Ok(Outcome::Stale) };
        if due > self.now {
            return Ok(Outcome::Stale);
        }
        let def = self.rt.definition(key, version).await?;
        // Misfire policy: after downtime, fire once and count the firings that were missed.
        let mut next = None;
        let mut missed = 0i64;
        if let Some(node) = def.process().node_by_id(element)
            && let NodeKind::StartEvent { trigger: Trigger::Timer(td), .. } = &def.process().node(node).kind
            && let reglament_engine::model::TimerValue::Literal(reglament_engine::timer::TimerSpec::Cycle(c)) =
                &td.value
        {
            // The engine's misfire policy, so instance cycles and start events count alike.
            let (following, skipped) = c.next_after_late(due, self.now, fired as u32 + 1, def.tz);
            next = following;
            missed = i64::from(skipped);
        }
        if missed > 0 {
            warn!(
                definition = key,
                element, missed, "timer start event missed firings while the engine was down; fired once"
            );
        }
        self.tx.advance_start_timer(key, element, next, missed).await?;
        self.start(
            key,
            None,
            StartCommand {
                id: uuid::Uuid::now_v7().to_string(),
                business_key: None,
                variables: Vars::new(),
                start_event: Some(element.to_string()),
                parent: None,
            },
        )
        .await
    }

    /// Records a transition and turns its in-database effects into follow-up operations.
    fn absorb(&mut self, i: usize, transition: Transition, by: Option<String>) {
        let id = self.work[i].state.id.clone();
        for effect in &transition.effects {
            let follow = match effect {
                Effect::StartChild { call, process, variables } => FollowUp::StartChild {
                    parent: id.clone(),
                    call: *call,
                    process: process.clone(),
                    variables: variables.clone(),
                },
                Effect::NotifyParent { parent, outcome } => {
                    let command = match outcome {
                        ChildOutcome::Completed { variables } => {
                            Command::ChildCompleted { call: parent.call, variables: variables.clone() }
                        }
                        ChildOutcome::Failed { error_code, message } => Command::ChildFailed {
                            call: parent.call,
                            error_code: error_code.clone(),
                            message: message.clone(),
                        },
                        ChildOutcome::Cancelled => continue,
                    };
                    FollowUp::Command { instance: parent.instance.clone(), command }
                }
                Effect::CancelChild { call } => FollowUp::CancelChild { parent: id.clone(), call: *call },
                Effect::PublishMessage { name, correlation_key, variables } => FollowUp::Publish {
                    name: name.clone(),
                    correlation_key: correlation_key.clone(),
                    variables: variables.clone(),
                },
                Effect::Subscribe { name, correlation_key, .. } => {
                    FollowUp::DeliverBuffered { name: name.clone(), correlation_key: correlation_key.clone() }
                }
                // Written with the batch (`write`), nothing to follow up.
                Effect::ScheduleTimer { .. }
                | Effect::CancelTimer { .. }
                | Effect::SendEmail { .. }
                | Effect::RunJob { .. }
                | Effect::CancelJob { .. }
                | Effect::Unsubscribe { .. } => continue,
            };
            self.follow.push_back(follow);
        }
        if transition.events.iter().any(|e| matches!(e, Event::InstanceCompleted)) {
            self.rt.inner.counters.completed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.work[i].transitions.push((transition, by));
    }

    /// Runs follow-ups until none are left. Their failures are logged, not returned: the
    /// operation that caused them succeeded.
    async fn follow_ups(&mut self) -> Result<(), DriverError> {
        let mut guard = 0;
        while let Some(follow) = self.follow.pop_front() {
            guard += 1;
            if guard > 10_000 {
                warn!("follow-up chain too long; stopped");
                break;
            }
            let result = match follow {
                FollowUp::StartChild { parent, call, process, variables } => {
                    let cmd = StartCommand {
                        id: uuid::Uuid::now_v7().to_string(),
                        business_key: None,
                        variables,
                        start_event: None,
                        parent: Some(ParentRef { instance: parent.clone(), call }),
                    };
                    match self.start(&process, None, cmd).await {
                        Err(DriverError::Store(e)) => return Err(DriverError::Store(e)),
                        Err(e) => {
                            let failed = Command::ChildFailed {
                                call,
                                error_code: "child-start-failed".into(),
                                message: e.to_string(),
                            };
                            self.command(&parent, failed, None).await
                        }
                        ok => ok,
                    }
                }
                FollowUp::CancelChild { parent, call } => match self.child_of(&parent, call).await? {
                    Some(child) => {
                        self.command(&child, Command::Cancel { reason: "the calling activity ended".into() }, None)
                            .await
                    }
                    None => continue,
                },
                FollowUp::Command { instance, command } => self.command(&instance, command, None).await,
                FollowUp::DeliverBuffered { name, correlation_key } => {
                    match self.tx.take_buffered_message(&name, &correlation_key, self.now).await? {
                        Some(vars) => {
                            let variables: Vars = serde_json::from_str(&vars).unwrap_or_default();
                            self.message(name, correlation_key, variables, 0).await
                        }
                        None => continue,
                    }
                }
                FollowUp::Publish { name, correlation_key, variables } => {
                    match self.message(name.clone(), correlation_key.clone(), variables, 0).await {
                        Err(DriverError::NotFound(_)) => {
                            debug!(message = %name, key = %correlation_key, "thrown message had no receiver");
                            continue;
                        }
                        other => other,
                    }
                }
            };
            match result {
                Err(DriverError::Store(e)) => return Err(DriverError::Store(e)),
                Err(e) => warn!(error = %e, "follow-up operation failed"),
                Ok(_) => {}
            }
        }
        Ok(())
    }

    /// The active child instance a call activity started.
    async fn child_of(&mut self, parent: &str, call: u32) -> Result<Option<String>, DriverError> {
        let want = Some(ParentRef { instance: parent.to_string(), call });
        if let Some(w) = self.work.iter().find(|w| w.state.parent == want && w.state.status == Status::Active) {
            return Ok(Some(w.state.id.clone()));
        }
        Ok(self.tx.child_instance(parent, call).await?)
    }

    /// Writes everything the batch changed. A stale revision aborts with `Conflict`.
    async fn write(&mut self) -> Result<Wake, DriverError> {
        let mut wake = Wake::default();
        let now = self.now;
        let mut w = Writes { now, audit: std::mem::take(&mut self.audit), ..Writes::default() };
        for work in &mut self.work {
            if work.transitions.is_empty() {
                continue;
            }
            let id = work.state.id.clone();
            let def = work.def.clone();
            let state = &work.state;
            let status = match state.status {
                Status::Active => "active",
                Status::Completed => "completed",
                Status::Cancelled => "cancelled",
            };
            let instance = InstanceWrite {
                id: id.clone(),
                definition_key: def.key().to_string(),
                version: i64::from(def.version),
                business_key: state.business_key.clone(),
                status: status.to_string(),
                incident: state.has_incident(),
                state: codec::encode_state(state),
                parent_id: state.parent.as_ref().map(|p| p.instance.clone()),
                started_at: state.started_at.unwrap_or(now),
                ended_at: state.ended_at,
                deadline: state.sla.as_ref().map(|s| s.deadline),
                history_len: work.history_len + work.transitions.len() as i64,
                // A new instance's first transition is its start, with whoever started it.
                started_by: work
                    .base_rev
                    .map_or_else(|| work.transitions.first().and_then(|(_, by)| by.clone()), |_| None),
            };
            match work.base_rev {
                None => w.instance_inserts.push(instance),
                Some(rev) => w.instance_updates.push((instance, rev)),
            }
            if state.status == Status::Cancelled {
                w.cancelled.push(id.clone());
            }
            for (t, by) in &work.transitions {
                w.history.push(HistoryWrite {
                    instance_id: id.clone(),
                    seq: work.history_len,
                    at: t.at,
                    events: codec::encode_events(&t.events),
                });
                work.history_len += 1;
                for event in &t.events {
                    match event {
                        Event::TaskCreated { key, node, task } => {
                            let n = def.process().node(*node);
                            let task_id = task_id(&id, *key);
                            w.tasks.push(TaskWrite {
                                id: task_id.clone(),
                                instance_id: id.clone(),
                                task_key: *key,
                                definition_key: def.key().to_string(),
                                element_id: n.id.clone(),
                                name: n.name.clone(),
                                assignee: task.assignee.clone(),
                                candidate_groups: task.candidate_groups.clone(),
                                candidate_users: task.candidate_users.clone(),
                                due: task.due,
                                priority: task.priority,
                                created_at: t.at,
                            });
                            for group in &task.candidate_groups {
                                let due_sort = task.due.map(store::ms).unwrap_or(i64::MAX);
                                w.task_groups.push(TaskGroupWrite {
                                    group: group.clone(),
                                    task_id: task_id.clone(),
                                    due_sort,
                                    created_at: t.at,
                                });
                            }
                        }
                        Event::TaskCompleted { key, .. } => {
                            w.task_closes.push(TaskClose {
                                task_id: task_id(&id, *key),
                                end: TaskEnd::Completed,
                                at: t.at,
                                by: by.clone(),
                            });
                        }
                        Event::ElementTerminated { key, node } => {
                            if matches!(&def.process().node(*node).kind, NodeKind::Task(task) if task.kind == TaskKind::User)
                            {
                                w.task_closes.push(TaskClose {
                                    task_id: task_id(&id, *key),
                                    end: TaskEnd::Cancelled,
                                    at: t.at,
                                    by: None,
                                });
                            }
                        }
                        Event::TimerFired { key, .. } => {
                            w.timer_deletes.push(InstanceKey { instance_id: id.clone(), key: *key })
                        }
                        Event::MessageCorrelated { key, .. } => {
                            w.subscription_deletes.push(InstanceKey { instance_id: id.clone(), key: *key })
                        }
                        Event::JobCompleted { key, .. } => {
                            w.job_finishes.push(JobFinish { instance_id: id.clone(), job_key: *key, state: "done" })
                        }
                        // Kept in the history only; their rows (if any) follow from effects.
                        Event::InstanceStarted { .. }
                        | Event::ElementEntered { .. }
                        | Event::ElementCompleted { .. }
                        | Event::TokenWaiting { .. }
                        | Event::JoinFired { .. }
                        | Event::VariablesSet { .. }
                        | Event::MultiInstanceStarted { .. }
                        | Event::MultiInstanceProgress { .. }
                        | Event::JobCreated { .. }
                        | Event::EmailQueued { .. }
                        | Event::TimerScheduled { .. }
                        | Event::TimerCancelled { .. }
                        | Event::MessageSubscribed { .. }
                        | Event::SubscriptionClosed { .. }
                        | Event::ChildStarted { .. }
                        | Event::ErrorThrown { .. }
                        | Event::IncidentRaised { .. }
                        | Event::IncidentResolved { .. }
                        | Event::SlaExtended { .. }
                        | Event::SlaPaused { .. }
                        | Event::SlaResumed { .. }
                        | Event::InstanceCompleted
                        | Event::InstanceCancelled { .. } => {}
                    }
                }
                for effect in &t.effects {
                    match effect {
                        Effect::ScheduleTimer { timer, due } => {
                            w.timer_inserts.push(TimerWrite { instance_id: id.clone(), timer_key: *timer, due: *due });
                            wake.timers = true;
                        }
                        Effect::CancelTimer { timer } => {
                            w.timer_deletes.push(InstanceKey { instance_id: id.clone(), key: *timer })
                        }
                        Effect::Subscribe { subscription, name, correlation_key } => {
                            w.subscription_inserts.push(SubscriptionWrite {
                                instance_id: id.clone(),
                                sub_key: *subscription,
                                name: name.clone(),
                                correlation_key: correlation_key.clone(),
                                created_at: t.at,
                            })
                        }
                        Effect::Unsubscribe { subscription } => {
                            w.subscription_deletes.push(InstanceKey { instance_id: id.clone(), key: *subscription })
                        }
                        Effect::SendEmail { job, email } => {
                            let row_id = task_id(&id, *job);
                            let message_id = format!("<{row_id}@reglament>");
                            let payload = serde_json::to_string(email).expect("email serialises");
                            w.outbox.push(QueuedWrite {
                                id: row_id,
                                instance_id: id.clone(),
                                job_key: *job,
                                kind: message_id,
                                payload,
                                due: now,
                                created_at: now,
                            });
                            wake.outbox = true;
                        }
                        Effect::RunJob { job, job_type, headers, variables, retries } => {
                            // The element, for the job's worker (`elementId` on /v2).
                            let element = t.events.iter().find_map(|e| match e {
                                Event::JobCreated { key, node, .. } if key == job => {
                                    Some(def.process().node(*node).id.clone())
                                }
                                _ => None,
                            });
                            let payload = serde_json::json!({
                                "headers": headers,
                                "variables": variables,
                                "element": element,
                                "definitionKey": def.key(),
                                "version": def.version,
                            })
                            .to_string();
                            w.jobs.push(JobWrite {
                                id: task_id(&id, *job),
                                instance_id: id.clone(),
                                job_key: *job,
                                job_type: job_type.clone(),
                                payload,
                                due: now,
                                created_at: now,
                                retries: *retries,
                            });
                            wake.jobs = true;
                        }
                        Effect::CancelJob { job } => w.job_finishes.push(JobFinish {
                            instance_id: id.clone(),
                            job_key: *job,
                            state: "cancelled",
                        }),
                        // Cross-instance effects: follow-up commands after commit (`follow_ups`).
                        Effect::StartChild { .. }
                        | Effect::CancelChild { .. }
                        | Effect::NotifyParent { .. }
                        | Effect::PublishMessage { .. } => {}
                    }
                }
            }
        }
        if !self.tx.flush(&w).await? {
            return Err(DriverError::Conflict);
        }
        Ok(wake)
    }
}

/// Task (and job) ids are `INSTANCE.KEY`.
pub fn task_id(instance: &str, key: u32) -> String {
    format!("{instance}.{key}")
}

pub fn parse_task_id(id: &str) -> Option<(&str, u32)> {
    let (instance, key) = id.rsplit_once('.')?;
    Some((instance, key.parse().ok()?))
}

impl From<store::StoreError> for DeployError {
    fn from(e: store::StoreError) -> Self {
        DeployError::Store(e)
    }
}
