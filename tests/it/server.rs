//! Helpers for tests that run the real `reglament serve` binary: a process handle that kills
//! the server on drop, and a tiny blocking HTTP/1.1 client (no extra dependency).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running `reglament serve`.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server in `dir` on the tests' clock ([`crate::support::test_now`]) with extra
    /// environment variables and waits until /healthz answers.
    pub fn start(dir: &Path, env: &[(&str, String)]) -> Server {
        Server::start_at(dir, env, free_port())
    }

    /// [`Server::start`] on a given loopback port (when the base URL must name it).
    pub fn start_at(dir: &Path, env: &[(&str, String)], port: u16) -> Server {
        let addr = format!("127.0.0.1:{port}");
        let log = dir.join(format!("serve-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reglament"));
        cmd.arg("serve").current_dir(dir).env("REGLAMENT_HTTP_ADDR", &addr).env("RUST_LOG", "info,sqlx=warn");
        let (clock_key, clock_start) = crate::support::clock_env();
        cmd.env(clock_key, clock_start);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.stdout(Stdio::null()).stderr(log_file).spawn().expect("spawn reglament serve");
        let server = Server { child, addr, log };
        server.wait_healthy(Duration::from_secs(60));
        server
    }

    pub fn wait_healthy(&self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(resp) = request(&self.addr, "GET", "/healthz", None, &[])
                && resp.status == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not become healthy; log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    /// SIGKILL: no shutdown, no cleanup.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait for the server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("no HTTP head"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    Ok(Response { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A JSON request with a bearer token; panics when the server cannot be reached. Answers the
/// status and the body as JSON (`Null` when it is not JSON).
pub fn call(addr: &str, token: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let text = body.map(Value::to_string);
    let r = request(addr, method, path, text.as_deref(), &[("Authorization", auth.as_str())])
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, r.json())
}

/// Creates a user with the CLI (database from `url`) and returns the API token.
pub fn add_user(dir: &Path, url: &str, login: &str, groups: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_reglament"))
        .args(["users", "add", login, "--email", &format!("{login}@example.org"), "--groups", groups])
        .current_dir(dir)
        .env("REGLAMENT_DATABASE_URL", url)
        .output()
        .expect("reglament users add");
    assert!(out.status.success(), "users add failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}
