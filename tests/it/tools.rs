//! The tools the suites run besides Rust, installed on first use so that README's test command
//! needs nothing set up by hand (issue 11):
//!
//! - a Python with the exact packages of `tests/tools/requirements.txt`, in a venv under the
//!   build's `target/tmp/tools/venv`, made from the `python3` on PATH; a stamp (the SHA-256 of
//!   the requirements file) lets later runs reuse it, and a changed file re-installs it
//!   (`REGLAMENT_TEST_PYTHON` names an interpreter to use instead, with no venv);
//! - `xmllint` (Debian's `libxml2-utils`): taken from PATH, else installed with `apt-get`.
//!
//! Each is set up once per process (the first caller does it, the others wait) and under a lock
//! file, so test processes and benchmarks running at once do not install over each other. A
//! failed set-up fails every test that needs the tool, saying what failed and what to install
//! by hand. The outbox benchmark includes this file too (`#[path]`), so it shares the venv.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The venv's interpreter, with the packages of `tests/tools/requirements.txt`; or, where
/// `REGLAMENT_TEST_PYTHON` is set, that interpreter as it is (its packages installed by hand).
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ready(PYTHON.get_or_init(|| match std::env::var_os("REGLAMENT_TEST_PYTHON") {
        Some(own) => Ok(PathBuf::from(own)),
        None => set_up_python(),
    }))
}

/// `xmllint`: the one on PATH, or installed from Debian's `libxml2-utils`.
pub fn xmllint() -> PathBuf {
    static XMLLINT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ready(XMLLINT.get_or_init(set_up_xmllint))
}

/// Starts `tests/smtp/server.py PORT FOLDER` (aiosmtpd on loopback) under [`python`] and waits
/// for its `ready` line. The caller kills the child.
pub fn spawn_smtp_server(port: u16, dir: &Path) -> Child {
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/smtp/server.py"))
        .arg(port.to_string())
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the venv's python runs tests/smtp/server.py");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the server's banner");
    assert!(line.starts_with("ready"), "the test SMTP server did not start: {line:?}");
    child
}

fn ready(tool: &Result<PathBuf, String>) -> PathBuf {
    tool.clone().unwrap_or_else(|e| panic!("{e}"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the crate sits two folders below the repository root")
}

/// `target/tmp/tools`, where the venv, its stamp and the lock files live.
fn tools_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tools");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Holds an exclusive lock on `name` in [`tools_dir`] until dropped.
pub(crate) fn lock(name: &str) -> Result<File, String> {
    let path = tools_dir().join(name);
    let file = File::create(&path).map_err(|e| format!("cannot create the lock file {}: {e}", path.display()))?;
    file.lock().map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    Ok(file)
}

fn set_up_python() -> Result<PathBuf, String> {
    let requirements = repo_root().join("tests/tools/requirements.txt");
    let wanted = std::fs::read(&requirements).map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let stamp = format!("{:x}\n", Sha256::digest(&wanted));
    let dir = tools_dir();
    let (venv, stamp_file) = (dir.join("venv"), dir.join("venv.stamp"));
    let python = venv.join("bin/python");
    let _lock = lock("venv.lock")?;
    if python.is_file() && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return Ok(python);
    }
    let hand = format!(
        "or install the packages by hand into a Python of your own (`python3 -m pip install -r {}`) \
         and point REGLAMENT_TEST_PYTHON at that interpreter",
        requirements.display()
    );
    let _ = std::fs::remove_file(&stamp_file);
    if venv.exists() {
        std::fs::remove_dir_all(&venv).map_err(|e| format!("cannot remove the old venv {}: {e}", venv.display()))?;
    }
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).map_err(|e| {
        format!(
            "the test tools need a venv at {}, and `python3 -m venv` failed ({e}); \
             install CPython 3 with venv and pip (Debian: python3-venv), {hand}",
            venv.display()
        )
    })?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))
    .map_err(|e| {
        format!(
            "`pip install -r {}` into {} failed ({e}); \
             fix what pip says (it needs PyPI, or PIP_INDEX_URL or PIP_FIND_LINKS), {hand}",
            requirements.display(),
            venv.display()
        )
    })?;
    std::fs::write(&stamp_file, stamp).map_err(|e| format!("cannot write {}: {e}", stamp_file.display()))?;
    Ok(python)
}

fn set_up_xmllint() -> Result<PathBuf, String> {
    if let Some(found) = on_path("xmllint") {
        return Ok(found);
    }
    let _lock = lock("apt.lock")?;
    if let Some(found) = on_path("xmllint") {
        return Ok(found); // another process installed it meanwhile
    }
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", "libxml2-utils"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    install()
        .or_else(|_| run(Command::new("apt-get").args(["update", "-qq"])).and_then(|()| install()))
        .map_err(|e| {
            format!(
                "xmllint is not on PATH and `apt-get install libxml2-utils` failed ({e}); \
                 install xmllint by hand (Debian/Ubuntu: libxml2-utils, Fedora: libxml2, macOS: it ships with the system)"
            )
        })?;
    on_path("xmllint").ok_or_else(|| "apt-get installed libxml2-utils, but xmllint is still not on PATH".to_string())
}

/// Runs `cmd` to completion; on failure gives its exit status and what it printed.
pub(crate) fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{:?} exited with {}:\n{}{}",
        cmd.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}
