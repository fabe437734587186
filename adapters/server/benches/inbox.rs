//! Inbox latency with 1,000,000 open tasks across 50 groups, through the real router on a
//! loopback listener, per backend:
//! - the API (issue 5): `GET /api/tasks?candidateGroup=X&state=open&sort=due&limit=50` and the
//!   next cursor page (target p99 ≤ 20 ms);
//! - the inbox page `GET /` (issue 14) for a user whose 50 groups hold all the tasks, signed in
//!   with a session cookie: both views with their counts, each filter and the next cursor page
//!   (target p99 ≤ 50 ms), and the page's weight: its HTML plus the CSS and JS it loads
//!   (target ≤ 150 KB).
//!
//! The data: one instance per task with a request number (`ЗИ-2026-0000001`…), five deployed
//! processes (one of them holds 1 % of the tasks), 1 % of the tasks assigned to the user and 1 %
//! to someone else, a few offered to nobody or to the user by name, 5 % without a due date, the
//! rest due over a year that began a month ago (so some are overdue).
//!
//! Run: `cargo bench -p reglament-server --bench inbox -- [sqlite|postgres] [--tasks N] [--rounds N]`
//! (`REGLAMENT_BENCH_KEEP=1` keeps the database, to look at query plans).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reglament_engine::runtime::Env;
use reglament_server::driver::{DriverConfig, Runtime};
use reglament_store::Store;

const GROUPS: i64 = 50;

/// A GET with one extra header; the status and the body.
fn get(addr: &str, path: &str, header: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{header}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

/// The 1, 5 and 15 minute load averages (Linux), printed beside the numbers.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The process keys of the bench: four common ones and `bench_rare` with 1 % of the tasks.
const PROCESSES: [&str; 5] = ["bench_0", "bench_1", "bench_2", "bench_3", "bench_rare"];

fn model(key: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:reglament="urn:reglament:bpmn:1.0" id="d_{key}" targetNamespace="urn:bench">
  <bpmn:process id="{key}" name="Рассмотрение обращения ({key})" isExecutable="true">
    <bpmn:extensionElements><reglament:settings timeZone="Europe/Astrakhan" calendar="ru" /></bpmn:extensionElements>
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review" />
    <bpmn:userTask id="review" name="Рассмотреть обращение" />
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>"#
    )
}

async fn fill(store: &Store, n: i64, postgres: bool, now_ms: i64) {
    let mut tx = store.begin().await.unwrap();
    // A recursive CTE counts on both backends.
    let series = if postgres {
        format!("SELECT generate_series(1::bigint, {n}::bigint) AS i")
    } else {
        format!("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s")
    };
    let cast = if postgres { "::text" } else { "" };
    let number = if postgres { "lpad(i::text, 7, '0')" } else { "substr('0000000' || i, -7)" };
    let process = format!("CASE WHEN i % 100 = 0 THEN 'bench_rare' ELSE 'bench_' || (i % 4){cast} END");
    tx.execute_sql(&format!(
        "INSERT INTO instances (id, definition_key, version, business_key, status, incident, rev, state, \
         started_at, history_len) \
         SELECT 'bench-' || i{cast}, {process}, 1, 'ЗИ-2026-' || {number}, 'active', 0, 1, '{{}}', \
         1780000000000 + i, 1 FROM ({series}) x"
    ))
    .await
    .unwrap();
    let start = now_ms - 30 * 86_400_000;
    tx.execute_sql(&format!(
        "INSERT INTO tasks (id, instance_id, task_key, definition_key, element_id, name, state, assignee, \
         candidate_groups, candidate_users, due, created_at) \
         SELECT 'bench-' || i{cast} || '.2', 'bench-' || i{cast}, 2, {process}, 'review', 'Рассмотреть обращение', \
         'open', CASE i % 100 WHEN 1 THEN 'bench' WHEN 2 THEN 'other' ELSE NULL END, \
         CASE WHEN i % 1000 IN (3, 4) THEN '' ELSE 'group' || (i % {GROUPS}){cast} END, \
         CASE WHEN i % 1000 = 3 THEN 'ivanov,bench' ELSE '' END, \
         CASE WHEN i % 20 = 5 THEN NULL ELSE {start} + (i * 7919 % 31536000) * 1000 END, 1780000000000 + i \
         FROM ({series}) x"
    ))
    .await
    .unwrap();
    tx.execute_sql(
        "INSERT INTO task_groups (group_name, task_id, state, due_sort, created_at) \
         SELECT candidate_groups, id, state, COALESCE(due, 9223372036854775807), created_at FROM tasks \
         WHERE candidate_groups <> ''",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Statistics for the planners; on PostgreSQL also the visibility map that autovacuum would
/// set soon after a bulk load (and would otherwise set in the middle of the measurements).
async fn settle(store: &Store, url: &str) {
    if store.is_postgres() {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
        sqlx::query("VACUUM ANALYZE").execute(&mut conn).await.unwrap();
    } else {
        let mut tx = store.begin().await.unwrap();
        tx.execute_sql("ANALYZE").await.unwrap();
        tx.commit().await.unwrap();
    }
}

/// A test of a page's body.
type Check<'a> = &'a dyn Fn(&str);

/// Latencies of one request kind.
struct Sample {
    name: String,
    took: Vec<Duration>,
}

impl Sample {
    fn report(&mut self, target_ms: u32) {
        self.took.sort();
        let d = &self.took;
        println!(
            "{:<44} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  ({} requests; target p99 ≤ {target_ms} ms)",
            self.name,
            ms(percentile(d, 0.5)),
            ms(percentile(d, 0.99)),
            ms(*d.last().unwrap()),
            d.len()
        );
    }
}

/// Times `path` `rounds` times after a warm-up; checks each answer with `check`.
fn measure(addr: &str, name: &str, path: &str, header: &str, rounds: usize, check: Check) -> Sample {
    let mut took = Vec::with_capacity(rounds);
    for round in 0..rounds + 10 {
        let start = Instant::now();
        let (status, body) = get(addr, path, header);
        let elapsed = start.elapsed();
        assert_eq!(status, 200, "{path}: {body}");
        if round == 0 {
            check(&body);
        }
        if round >= 10 {
            took.push(elapsed);
        }
    }
    Sample { name: name.to_string(), took }
}

/// The task rows of an inbox page.
fn rows(html: &str) -> usize {
    html.matches("data-task=\"").count()
}

/// The count shown on a view's tab.
fn count(html: &str, view: &str) -> String {
    let marker = format!("id=\"count-{view}\"");
    let at = html.find(&marker).unwrap_or_else(|| panic!("no count of {view}"));
    let rest = &html[at..];
    rest[rest.find('>').unwrap() + 1..].split('<').next().unwrap().to_string()
}

/// The `after=` cursor of the page's link to the next page.
fn next_cursor(html: &str) -> String {
    let link = html.split("after=").nth(1).expect("a next page");
    link.split('"').next().unwrap().to_string()
}

async fn bench(kind: &str, n: i64, rounds: usize) {
    let mut folder = None;
    let (url, cleanup) = if kind == "postgres" {
        let admin = std::env::var("REGLAMENT_BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let name = format!("reglament_inbox_{}", uuid::Uuid::now_v7().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or_default();
        (format!("{base}/{name}"), Some((admin, name)))
    } else {
        let dir = std::env::temp_dir().join(format!("reglament-inbox-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        folder = Some(dir.clone());
        (format!("sqlite://{}", dir.join("inbox.db").display()), None)
    };
    let store = Store::connect(&url, 8).await.unwrap();
    let now = chrono::Utc::now();
    let t0 = Instant::now();
    fill(&store, n, kind == "postgres", now.timestamp_millis()).await;
    settle(&store, &url).await;
    println!("== {kind}: {n} open tasks in {GROUPS} groups loaded in {:.0} s", t0.elapsed().as_secs_f64());
    let token = reglament_server::accounts::add_with_token(
        &store,
        reglament_store::auth::UserRecord {
            login: "bench".into(),
            name: Some("Орлова Татьяна Михайловна".into()),
            email: "bench@example.org".into(),
            groups: (0..GROUPS).map(|g| format!("group{g}")).collect(),
            disabled: false,
            created_at: now,
        },
        "bench",
        now,
    )
    .await
    .unwrap();
    // The session a sign-in would open (signing in each time would time argon2, not the page).
    let session = reglament_server::web::session::random_token();
    store
        .create_session(
            &reglament_server::accounts::hash_token(&session),
            "bench",
            reglament_server::identity::Provider::Password.as_str(),
            &reglament_server::web::session::random_token(),
            now,
            now + chrono::Duration::hours(12),
        )
        .await
        .unwrap();
    let rt = Runtime::start(
        store.clone(),
        Env { calendars: reglament_server::calendars::load(&[]).unwrap(), ..Env::default() },
        DriverConfig::from_settings(
            &reglament_server::settings::Settings::defaults(),
            reglament_server::clock::Clock::system(),
        ),
    )
    .await
    .unwrap();
    for key in PROCESSES {
        rt.deploy(model(key).as_bytes(), Some("bench")).await.unwrap();
    }
    let app = reglament_server::http::router_with(
        reglament_server::http::AppState::new(rt, "http://127.0.0.1"),
        reglament_server::web::router(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let due_before = (now + chrono::Duration::days(60)).with_timezone(&chrono_tz::Europe::Astrakhan).date_naive();
    tokio::task::spawn_blocking(move || {
        let bearer = format!("Authorization: Bearer {token}");
        let api = "/api/tasks?candidateGroup=group7&state=open&sort=due&limit=50";
        let (_, body) = get(&addr, api, &bearer);
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let cursor = doc["nextCursor"].as_str().expect("a next page").to_string();
        let fifty = |body: &str| {
            let doc: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(doc["items"].as_array().map(Vec::len), Some(50));
        };
        println!("-- load average before measuring: {}", load());
        println!("-- API inbox of one group");
        measure(&addr, "first page", api, &bearer, rounds, &fifty).report(20);
        measure(&addr, "next cursor page", &format!("{api}&cursor={cursor}"), &bearer, rounds, &fifty).report(20);

        let cookie = format!("Cookie: rgl_session={session}");
        let (status, first_mine) = get(&addr, "/?view=mine", &cookie);
        assert_eq!(status, 200, "{first_mine}");
        let (_, first_groups) = get(&addr, "/?view=groups", &cookie);
        let after_mine = next_cursor(&first_mine);
        let after_groups = next_cursor(&first_groups);
        let full = |body: &str| assert_eq!(rows(body), 25, "a full page");
        let some = |body: &str| assert!(rows(body) > 0, "rows found");
        let variants: Vec<(&str, String, Check)> = vec![
            ("«Мои задачи»", "/?view=mine".into(), &full),
            ("«Мои задачи», next cursor page", format!("/?view=mine&after={after_mine}"), &full),
            ("«Мои задачи», overdue", "/?view=mine&overdue=1".into(), &some),
            ("«Задачи моих групп»", "/?view=groups".into(), &full),
            ("«Задачи моих групп», next cursor page", format!("/?view=groups&after={after_groups}"), &full),
            ("«Задачи моих групп», overdue", "/?view=groups&overdue=1".into(), &full),
            ("«Задачи моих групп», process (1 % of tasks)", "/?view=groups&process=bench_rare".into(), &full),
            ("«Задачи моих групп», due before +60 days", format!("/?view=groups&due_before={due_before}"), &full),
            // Ten request numbers in the middle (ЗИ-2026-0500000…0500009 of a million).
            ("«Задачи моих групп», request number", format!("/?view=groups&q=2026-{:06}", n / 20), &some),
            // «ЗИ-2026-00» is in nearly every number: the broad search, walked.
            ("«Мои задачи», request number (broad)", "/?view=mine&q=%D0%97%D0%98-2026-00".into(), &full),
        ];
        println!("-- inbox page (counts of both views on every page)");
        for (name, path, check) in variants {
            let (_, body) = get(&addr, &path, &cookie);
            let counts = format!("[mine {}, groups {}]", count(&body, "mine"), count(&body, "groups"));
            measure(&addr, &format!("{name} {counts}"), &path, &cookie, rounds, check).report(50);
        }
        let css = get(&addr, "/static/app.css", "").1.len();
        let js = get(&addr, "/static/app.js", "").1.len();
        let html = first_groups.len().max(first_mine.len());
        println!(
            "page weight: HTML {html} B + CSS {css} B + JS {js} B = {} B (target ≤ 150 KB; no third-party libraries)",
            html + css + js
        );
        println!("-- load average after measuring: {}", load());
    })
    .await
    .unwrap();
    store.close().await;
    if std::env::var_os("REGLAMENT_BENCH_KEEP").is_some() {
        println!("kept for EXPLAIN: {url}");
        return;
    }
    if let Some(dir) = folder {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Some((admin, name)) = cleanup
        && let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |flag: &str| {
        args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<i64>().ok())
    };
    let n = number("--tasks").unwrap_or(1_000_000);
    let rounds = number("--rounds").unwrap_or(300) as usize;
    let kinds: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a == "sqlite" || *a == "postgres").collect();
    let kinds = if kinds.is_empty() { vec!["sqlite", "postgres"] } else { kinds };
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    for kind in kinds {
        bench(kind, n, rounds).await;
    }
}
