//! Where messages go: an SMTP server (lettre's async SMTP client, with our own small pool of
//! reused connections), or `.eml` files in a folder (the embedded default).
//!
//! Why our own pool rather than lettre's: lettre writes a message's body and its final
//! `<CRLF>.<CRLF>` as two writes and then waits for the reply. Without `TCP_NODELAY`, Nagle's
//! algorithm holds the second write until the server acknowledges the first, and the server
//! delays that acknowledgement (40 ms on Linux): every email costs 40 ms per connection. lettre's
//! pooled transport opens its sockets itself, so we connect the TCP stream ourselves, set
//! `TCP_NODELAY`, and hand it to lettre's client. (Implicit TLS — `smtps://` — still connects
//! through lettre, without that option.) Connections are reused across emails, dropped after any
//! failure, and retired after a minute idle. Each SMTP exchange runs under the timeout.
//!
//! `REGLAMENT_SMTP_URL` is `smtp://[user[:password]@]host[:port][?tls=MODE]` or
//! `smtps://…` (TLS from the first byte). MODE: `starttls` (required STARTTLS; port 587 by
//! default), `tls` (implicit TLS; port 465), `none` (plain; port 25), `opportunistic` (STARTTLS
//! when the server offers it — the default for `smtp://`). User and password are
//! percent-decoded. A path (`smtp://host/helo.example.org`) sets the name sent in EHLO.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Mutex;
use std::time::Instant;

use lettre::Message;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

/// Where the dispatcher delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// An SMTP server (`smtp://…` or `smtps://…`).
    Smtp { url: String },
    /// `.eml` files in a folder, one per outbox row (named by the row id, so a resend
    /// overwrites rather than duplicates).
    Files { dir: PathBuf },
}

impl Transport {
    /// For logs: the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp { url } => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    u.to_string()
                }
                Err(_) => "an unparsable SMTP URL".to_string(),
            },
            Transport::Files { dir } => format!("files in {}", dir.display()),
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: a 4xx reply, a timeout, a refused or dropped connection. `connection`
    /// is set when the server could not be talked to at all (no point trying other emails now).
    #[error("{message}")]
    Temporary { message: String, connection: bool },
    /// Retrying the same message cannot help: a 5xx reply (unknown mailbox, refused content),
    /// an address the server cannot take.
    #[error("{0}")]
    Permanent(String),
}

/// A configured transport, ready to send.
#[derive(Debug)]
pub enum Mailer {
    Smtp(SmtpPool),
    Files(PathBuf),
}

impl Mailer {
    /// Builds the transport. `connections`: the most idle SMTP connections kept for reuse (the
    /// dispatcher runs as many sends at once); `timeout`: for connecting and for each email's
    /// SMTP exchange.
    pub fn new(transport: &Transport, connections: u32, timeout: Duration) -> Result<Mailer, String> {
        match transport {
            Transport::Files { dir } => Ok(Mailer::Files(dir.clone())),
            Transport::Smtp { url } => Ok(Mailer::Smtp(SmtpPool::new(url, connections, timeout)?)),
        }
    }

    /// Delivers one message; `name` (the outbox row id) names the file for the folder transport.
    pub async fn send(&self, name: &str, message: &Message) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(pool) => pool.send(message).await,
            Mailer::Files(dir) => {
                let dir = dir.clone();
                let file = format!("{}.eml", safe_file_name(name));
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || write_atomically(&dir, &file, &bytes))
                    .await
                    .map_err(|e| SendError::Temporary { message: e.to_string(), connection: false })?
                    .map_err(|e| SendError::Temporary {
                        message: format!("cannot write to the mail folder: {e}"),
                        connection: true,
                    })
            }
        }
    }

    /// Closes the kept connections politely (QUIT).
    pub async fn shutdown(&self) {
        if let Mailer::Smtp(pool) = self {
            pool.shutdown().await;
        }
    }
}

/// How long a kept connection may sit unused before it is closed rather than reused.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// An SMTP server and the connections kept open to it.
pub struct SmtpPool {
    host: String,
    port: u16,
    mode: TlsMode,
    tls: Option<TlsParameters>,
    hello: ClientId,
    credentials: Option<Credentials>,
    timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl std::fmt::Debug for SmtpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpPool")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("mode", &self.mode)
            .field("idle", &self.idle.lock().map(|i| i.len()).unwrap_or_default())
            .finish_non_exhaustive()
    }
}

impl SmtpPool {
    pub fn new(url: &str, connections: u32, timeout: Duration) -> Result<SmtpPool, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("the SMTP URL is not a URL: {e}"))?;
        let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or("the SMTP URL names no host")?.to_string();
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let mode = parsed.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.to_ascii_lowercase());
        let mode = match (parsed.scheme(), mode.as_deref()) {
            ("smtps", None | Some("tls" | "wrapper")) => TlsMode::Implicit,
            ("smtp", None | Some("opportunistic")) => TlsMode::Opportunistic,
            ("smtp", Some("starttls" | "required")) => TlsMode::StartTls,
            ("smtp", Some("tls" | "wrapper")) => TlsMode::Implicit,
            ("smtp", Some("none" | "plain")) => TlsMode::None,
            (scheme @ ("smtp" | "smtps"), Some(other)) => {
                return Err(format!("{scheme}:// with tls={other}: use tls=starttls, tls, none or opportunistic"));
            }
            (scheme, _) => return Err(format!("`{scheme}://` is not an SMTP URL; use smtp:// or smtps://")),
        };
        let port = parsed.port().unwrap_or(match mode {
            TlsMode::Implicit => 465,
            TlsMode::StartTls | TlsMode::Opportunistic => 587,
            TlsMode::None => 25,
        });
        let tls = match mode {
            TlsMode::None => None,
            _ => Some(TlsParameters::new(host.clone()).map_err(|e| format!("TLS setup failed: {e}"))?),
        };
        let credentials = (!parsed.username().is_empty()).then(|| {
            Credentials::new(
                percent_decode(parsed.username()),
                parsed.password().map(percent_decode).unwrap_or_default(),
            )
        });
        let helo = parsed.path().trim_matches('/');
        let hello = if helo.is_empty() { ClientId::default() } else { ClientId::Domain(helo.to_string()) };
        Ok(SmtpPool {
            host,
            port,
            mode,
            tls,
            hello,
            credentials,
            timeout,
            max_idle: connections.max(1) as usize,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends over a kept connection when there is one (once more on a fresh connection if the
    /// kept one turns out to be dead), else over a new one.
    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let bytes = message.formatted();
        let envelope = message.envelope();
        if let Some(mut conn) = self.take_idle() {
            match self.exchange(&mut conn, envelope, &bytes).await {
                Ok(()) => {
                    self.keep(conn);
                    return Ok(());
                }
                // The server answered: the verdict is about this email.
                Err(Exchange::Smtp(e)) if e.is_permanent() || e.is_transient() || e.is_client() => {
                    return Err(classify(e));
                }
                // No answer in time: the server may have taken the message; let the outbox retry
                // it later (same Message-ID) rather than at once.
                Err(Exchange::TimedOut) => {
                    return Err(SendError::Temporary {
                        message: format!("the SMTP server did not answer within {:?}", self.timeout),
                        connection: true,
                    });
                }
                // The connection died while idle (closed by the server): try a fresh one.
                Err(Exchange::Smtp(_)) => {}
            }
        }
        let mut conn = self.connect().await?;
        match self.exchange(&mut conn, envelope, &bytes).await {
            Ok(()) => {
                self.keep(conn);
                Ok(())
            }
            Err(Exchange::Smtp(e)) => Err(classify(e)),
            Err(Exchange::TimedOut) => Err(SendError::Temporary {
                message: format!("the SMTP server did not answer within {:?}", self.timeout),
                connection: true,
            }),
        }
    }

    async fn exchange(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<(), Exchange> {
        match tokio::time::timeout(self.timeout, conn.send(envelope, bytes)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Exchange::Smtp(e)),
            Err(_) => Err(Exchange::TimedOut),
        }
    }

    /// A new connection: TCP (with `TCP_NODELAY`), greeting and EHLO, STARTTLS as configured,
    /// AUTH when the URL has credentials. Any failure here is the server's, not the email's:
    /// temporary.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let connecting = async {
            let mut conn = match (&self.mode, &self.tls) {
                (TlsMode::Implicit, Some(tls)) => AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(self.timeout),
                    &self.hello,
                    Some(tls.clone()),
                    None,
                )
                .await
                .map_err(|e| e.to_string())?,
                _ => {
                    let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                        .await
                        .map_err(|e| e.to_string())?;
                    let _ = tcp.set_nodelay(true);
                    let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                        .await
                        .map_err(|e| e.to_string())?;
                    match (&self.mode, &self.tls) {
                        (TlsMode::StartTls, Some(tls)) => {
                            conn.starttls(tls.clone(), &self.hello).await.map_err(|e| e.to_string())?
                        }
                        (TlsMode::Opportunistic, Some(tls)) if conn.can_starttls() => {
                            conn.starttls(tls.clone(), &self.hello).await.map_err(|e| e.to_string())?
                        }
                        _ => {}
                    }
                    conn
                }
            };
            if let Some(credentials) = &self.credentials {
                conn.auth(DEFAULT_MECHANISMS, credentials).await.map_err(|e| format!("login failed: {e}"))?;
            }
            Ok::<_, String>(conn)
        };
        let message = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) => format!("cannot talk to the SMTP server {}:{}: {e}", self.host, self.port),
            Err(_) => format!("the SMTP server {}:{} did not answer within {:?}", self.host, self.port, self.timeout),
        };
        Err(SendError::Temporary { message, connection: true })
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().expect("SMTP pool");
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < IDLE_LIMIT && !conn.has_broken() {
                return Some(conn);
            }
        }
        None
    }

    fn keep(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().expect("SMTP pool");
        if idle.len() < self.max_idle && !conn.has_broken() {
            idle.push((conn, Instant::now()));
        }
    }

    async fn shutdown(&self) {
        let conns: Vec<_> = std::mem::take(&mut *self.idle.lock().expect("SMTP pool"));
        for (mut conn, _) in conns {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.quit()).await;
        }
    }
}

enum Exchange {
    Smtp(lettre::transport::smtp::Error),
    TimedOut,
}

#[derive(Debug, Clone, Copy)]
enum TlsMode {
    None,
    Opportunistic,
    StartTls,
    Implicit,
}

/// `%XX` escapes of a URL's user or password, decoded (`+` stays a plus).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// 5xx replies and messages the server cannot take are permanent; everything else (4xx,
/// network, timeouts, TLS handshakes, a connection closed mid-way) may pass on a later try.
fn classify(e: lettre::transport::smtp::Error) -> SendError {
    let message = e.to_string();
    if e.is_permanent() || e.is_client() {
        SendError::Permanent(message)
    } else {
        let connection = !e.is_transient() && !e.is_response();
        SendError::Temporary { message, connection }
    }
}

/// Row ids are `UUID.KEY` (plus `!failed-…` for renamed rows): keep them, but never let a
/// name leave the folder.
fn safe_file_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

/// Writes `dir/file` so that a reader never sees half a message: a temporary file, synced,
/// then renamed into place.
fn write_atomically(dir: &Path, file: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{file}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_choose_tls_and_ports() {
        let t = Duration::from_secs(5);
        for url in [
            "smtp://127.0.0.1:2525?tls=none",
            "smtp://user:p%40ss@mail.example.org?tls=starttls",
            "smtps://mail.example.org",
            "smtp://mail.example.org:465?tls=tls",
            "smtp://mail.example.org/helo.example.org",
        ] {
            assert!(SmtpPool::new(url, 2, t).is_ok(), "{url}");
        }
        assert!(SmtpPool::new("smtp://host?tls=bogus", 2, t).unwrap_err().contains("tls=starttls"));
        assert!(SmtpPool::new("http://host", 2, t).unwrap_err().contains("not an SMTP URL"));
        assert_eq!(percent_decode("p%40ss+w%C3%B6rd%"), "p@ss+wörd%");
    }

    #[test]
    fn passwords_are_hidden_in_logs() {
        let t = Transport::Smtp { url: "smtp://user:secret@host:25?tls=none".into() };
        assert!(!t.describe().contains("secret"));
    }

    #[test]
    fn file_names_stay_in_the_folder() {
        assert_eq!(safe_file_name("../etc/passwd"), ".._etc_passwd");
        assert_eq!(safe_file_name("0198-ab.3!failed-1"), "0198-ab.3_failed-1");
    }
}
