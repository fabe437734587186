//! A real SMTP server for the suites: `tests/smtp/server.py` (aiosmtpd) on loopback, and the
//! messages it stored, parsed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use mailparse::{MailHeaderMap, ParsedMail};
use serde_json::Value;

use crate::tools::spawn_smtp_server;

/// `tests/smtp/server.py` on a loopback port, killed on drop.
pub struct Smtp {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Smtp {
    pub fn start(port: u16, dir: &Path) -> Smtp {
        Smtp { child: spawn_smtp_server(port, dir), port, dir: dir.to_path_buf() }
    }

    pub fn url(&self) -> String {
        smtp_url(self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The messages received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        received(&self.dir)
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn smtp_url(port: u16) -> String {
    format!("smtp://127.0.0.1:{port}?tls=none")
}

/// One message as the SMTP server stored it.
#[derive(Debug, Clone)]
pub struct Received {
    pub raw: Vec<u8>,
    pub rcpt_tos: Vec<String>,
}

impl Received {
    pub fn parsed(&self) -> ParsedMail<'_> {
        mailparse::parse_mail(&self.raw).expect("a parsable message")
    }

    pub fn header(&self, name: &str) -> String {
        self.parsed().headers.get_first_value(name).unwrap_or_default()
    }

    /// The header line exactly as it was sent (before decoding), unfolded.
    pub fn raw_header(&self, name: &str) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        let head = text.split("\r\n\r\n").next().unwrap_or_default().replace("\r\n ", " ").replace("\r\n\t", " ");
        head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned)).unwrap_or_default()
    }

    pub fn message_id(&self) -> String {
        self.header("Message-ID")
    }
}

pub fn received(dir: &Path) -> Vec<Received> {
    // The server appends a message's envelope line before it renames the message into place, so
    // listing the messages first and reading the envelopes afterwards finds every listed
    // message's envelope (the other order races with a message arriving in between).
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    files.sort();
    let envelopes: BTreeMap<String, Vec<String>> = std::fs::read_to_string(dir.join("envelopes.jsonl"))
        .unwrap_or_default()
        .lines()
        // A line being written right now may be cut short; it belongs to a message not listed yet.
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|meta| {
            let rcpt = meta["rcpt_tos"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
            (meta["file"].as_str().unwrap().to_string(), rcpt)
        })
        .collect();
    files
        .into_iter()
        .map(|eml| {
            let name = eml.file_name().unwrap().to_string_lossy().to_string();
            let rcpt_tos = envelopes.get(&name).cloned().expect("the envelope is written before the message");
            Received { raw: std::fs::read(&eml).expect("message"), rcpt_tos }
        })
        .collect()
}

pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reglament-{label}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Polls `check` until it gives a value, or fails after `limit` saying what was awaited.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
