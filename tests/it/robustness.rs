//! The real server against careless and hostile clients (the robustness issue): each case starts
//! `reglament serve` and checks it stays reachable for everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::server::{Server, request};

fn temp_server_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reglament-{name}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Silent and half-open connections (headers never finished) are closed after the header
/// timeout, and beyond the connection limit new clients wait instead of the server running out
/// of descriptors: /healthz answers while 120 such connections are open against a limit of 40.
#[test]
fn half_open_connections_cannot_take_the_server_offline() {
    let dir = temp_server_dir("half-open");
    let url = format!("sqlite://{}", dir.join("reglament.db").display());
    let server = Server::start(
        &dir,
        &[
            ("REGLAMENT_DATABASE_URL", url),
            ("REGLAMENT_MAX_CONNECTIONS", "40".into()),
            ("REGLAMENT_HEADER_TIMEOUT_SECONDS", "1".into()),
        ],
    );
    let mut idle: Vec<TcpStream> = Vec::new();
    for i in 0..120 {
        let mut stream = TcpStream::connect(&server.addr).expect("the kernel accepts into the backlog");
        if i % 2 == 0 {
            // Half a request: a request line and one header, never the blank line.
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("write");
        }
        idle.push(stream);
    }
    let started = Instant::now();
    let health = request(&server.addr, "GET", "/healthz", None, &[]).expect("/healthz answers");
    assert_eq!(health.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "/healthz took {:?} behind 120 silent connections",
        started.elapsed()
    );
    // The server closed the silent ones: reading gets end of file (or a reset), not a hang.
    let first = &mut idle[0];
    first.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut buf = [0u8; 512];
    match first.read(&mut buf) {
        Ok(_) => {}
        Err(e) => assert!(
            !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "a silent connection stayed open: {e}"
        ),
    }
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(log.contains("connection limit reached"), "the limit is logged:\n{log}");
    drop(idle);
    let _ = std::fs::remove_dir_all(&dir);
}
