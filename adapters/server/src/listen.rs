//! The HTTP listener: accepts connections up to a limit and serves each with hyper, with a
//! deadline for reading a request's headers (also while a kept-alive connection waits for its
//! next request), so silent or half-open clients cannot hold the server's descriptors.
//!
//! At the connection limit the server stops accepting; new clients wait in the kernel's backlog
//! and are taken as soon as a connection closes — the server stays reachable for everyone else
//! instead of failing with "Too many open files". The limit is also kept below the process's
//! descriptor limit (read from `/proc/self/limits` on Linux), leaving room for the database pool,
//! SMTP connections and files.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// How the listener treats connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// The longest wait for a request's headers, and for the next request on an idle
    /// kept-alive connection.
    pub header_timeout: Duration,
    /// How long in-flight requests may run on after a shutdown signal.
    pub drain: Duration,
}

/// Descriptors kept free for everything that is not a client connection.
const RESERVED_DESCRIPTORS: usize = 64;

/// `wanted`, lowered so that connections, the database pool and a reserve fit under the
/// process's open-files limit `nofile` (when known).
pub fn effective_limit(wanted: usize, nofile: Option<usize>, pool_size: usize) -> usize {
    match nofile {
        Some(n) => wanted.min(n.saturating_sub(pool_size + RESERVED_DESCRIPTORS)).max(1),
        None => wanted,
    }
}

/// The soft open-files limit of this process, from `/proc/self/limits` (Linux); `None` elsewhere
/// or when unlimited.
pub fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&text)
}

fn parse_open_files(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// (at most `limits.drain`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // HTTP/1.1 only: browsers speak HTTP/2 only over TLS, which a proxy in front terminates;
    // and version detection would wait for a silent client's first bytes with no deadline.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut warned_full = false;
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a little
                    // rather than spin; the server stays up.
                    warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if slots.available_permits() == 0 && !warned_full {
            warn!(limit = limits.max_connections, "connection limit reached; new clients wait until one closes");
            warned_full = true;
        } else if slots.available_permits() > limits.max_connections / 2 {
            warned_full = false;
        }
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.oneshot(req).await.unwrap_or_else(|never| match never {})) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%remote, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    info!("no longer accepting connections; finishing requests in flight");
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        warn!(seconds = limits.drain.as_secs(), "requests still running after the drain time; closing them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files(limits), Some(1024));
        assert_eq!(parse_open_files("Max open files  unlimited unlimited files"), None);
    }

    #[test]
    fn connections_fit_under_the_descriptor_limit() {
        assert_eq!(effective_limit(1000, Some(1024), 16), 944);
        assert_eq!(effective_limit(500, Some(65536), 16), 500);
        assert_eq!(effective_limit(500, None, 16), 500);
        assert_eq!(effective_limit(500, Some(10), 16), 1);
    }
}
