//! The tools the suites run besides Rust, installed on first use so that README's test command
//! needs nothing set up by hand (issue 11):
//!
//! - a Python with the exact packages of `tests/tools/requirements.txt`, in a venv under the
//!   build's `target/tmp/tools/venv`, made from the `python3` on PATH; a stamp (the SHA-256 of
//!   the requirements file) lets later runs reuse it, and a changed file re-installs it
//!   (`REGLAMENT_TEST_PYTHON` names an interpreter to use instead, with no venv);
//! - `xmllint` (Debian's `libxml2-utils`): taken from PATH, else installed with `apt-get`;
//! - the Node.js packages of `tests/tools/js/package-lock.json` (Camunda's JavaScript client),
//!   installed with `npm ci` from the `npm` on PATH into `target/tmp/tools/js` beside copies of
//!   that folder's files; a stamp (the SHA-256 of `package.json` and the lock file) lets later
//!   runs reuse them, and a changed lock re-installs them.
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

/// `target/tmp/tools/js`: `tests/tools/js` (its scripts, `package.json`, the lock file) with the
/// locked packages installed in `node_modules`, so `node DIR/worker.mjs` finds them.
pub fn camunda_js() -> PathBuf {
    static JS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ready(JS.get_or_init(set_up_js))
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

fn set_up_js() -> Result<PathBuf, String> {
    let source = repo_root().join("tests/tools/js");
    let read = |name: &str| {
        let path = source.join(name);
        std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let (manifest, lock_file) = (read("package.json")?, read("package-lock.json")?);
    let stamp = format!("{:x}\n", Sha256::digest([manifest.as_slice(), lock_file.as_slice()].concat()));
    let dir = tools_dir().join("js");
    let stamp_file = tools_dir().join("js.stamp");
    let _lock = lock("js.lock")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // The scripts are copied every time (they are not part of the stamp).
    for entry in std::fs::read_dir(&source).map_err(|e| format!("cannot list {}: {e}", source.display()))? {
        let path = entry.map_err(|e| format!("cannot list {}: {e}", source.display()))?.path();
        if path.is_file() {
            let to = dir.join(path.file_name().expect("a file name"));
            std::fs::copy(&path, &to)
                .map_err(|e| format!("cannot copy {} to {}: {e}", path.display(), to.display()))?;
        }
    }
    if dir.join("node_modules").is_dir() && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return Ok(dir);
    }
    let _ = std::fs::remove_file(&stamp_file);
    let hand = format!(
        "install Node.js 20 or later with npm (Debian/Ubuntu: `apt-get install nodejs npm`; else \
         https://nodejs.org), or run `npm ci` by hand in {} (a copy of tests/tools/js)",
        dir.display()
    );
    if on_path("node").is_none() || on_path("npm").is_none() {
        return Err(format!(
            "the Camunda JavaScript client test needs `node` and `npm` on PATH, and at least one is missing; {hand}"
        ));
    }
    run(Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir))
    .map_err(|e| {
        format!(
            "`npm ci` in {} failed ({e}); fix what npm says (it needs the npm registry, or \
             NPM_CONFIG_REGISTRY pointing at a mirror), or {hand}",
            dir.display()
        )
    })?;
    std::fs::write(&stamp_file, stamp).map_err(|e| format!("cannot write {}: {e}", stamp_file.display()))?;
    Ok(dir)
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
