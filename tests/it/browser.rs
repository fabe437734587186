//! A real headless Chromium for the web pages (DESIGN §7), driven by WebDriver from this test
//! binary.
//!
//! Debian's `chromium` and `chromium-driver` are installed with `apt-get` on first use when
//! `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing (under the same lock file as the
//! other installs of [`crate::tools`]). Each [`Browser`] starts its own `chromedriver` on a free
//! loopback port and kills it on drop; each [`Session`] is one Chromium with its own profile, so
//! two sessions are two people with their own cookies.
//!
//! The client is a few WebDriver commands (W3C WebDriver, JSON over HTTP) over the blocking
//! HTTP/1.1 client the server tests already use: the tests are synchronous, need about fifteen
//! commands, and a WebDriver crate would bring an async HTTP stack of its own for them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::server::free_port;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Chromium and chromedriver binaries, installed from Debian's packages when missing.
pub fn chromium() -> (PathBuf, PathBuf) {
    static TOOLS: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    TOOLS.get_or_init(set_up_chromium).clone().unwrap_or_else(|e| panic!("{e}"))
}

fn set_up_chromium() -> Result<(PathBuf, PathBuf), String> {
    let present = || Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).exists();
    let found = || Ok((PathBuf::from(CHROMIUM), PathBuf::from(CHROMEDRIVER)));
    if present() {
        return found();
    }
    let _lock = crate::tools::lock("apt.lock")?;
    if present() {
        return found(); // another process installed them meanwhile
    }
    let install = || {
        crate::tools::run(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", "chromium", "chromium-driver"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    install()
        .or_else(|_| crate::tools::run(Command::new("apt-get").args(["update", "-qq"])).and_then(|()| install()))
        .map_err(|e| {
            format!(
                "the browser tests need {CHROMIUM} and {CHROMEDRIVER}, and `apt-get install chromium chromium-driver` \
                 failed ({e}); install Chromium and its matching chromedriver by hand (Debian/Ubuntu: chromium, chromium-driver)"
            )
        })?;
    if present() { found() } else { Err("apt-get installed chromium-driver, but the binaries are not there".into()) }
}

/// A running chromedriver.
pub struct Browser {
    driver: Child,
    addr: String,
    profiles: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free port; profiles of the sessions go under `dir`.
    pub fn start(dir: &Path) -> Browser {
        let (_, chromedriver) = chromium();
        let port = free_port();
        let log = std::fs::File::create(dir.join(format!("chromedriver-{port}.log"))).expect("chromedriver log");
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chromedriver");
        let browser = Browser { driver, addr: format!("127.0.0.1:{port}"), profiles: dir.join("profiles") };
        let start = Instant::now();
        loop {
            if let Ok((200, status)) = request(&browser.addr, "GET", "/status", None)
                && status["value"]["ready"] == json!(true)
            {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "chromedriver did not start on {}", browser.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        browser
    }

    /// A new headless Chromium at 1366×768, Russian first, with a profile of its own.
    pub fn session(&self) -> Session<'_> {
        let (chromium, _) = chromium();
        let profile = self.profiles.join(format!("p{}", free_port()));
        std::fs::create_dir_all(&profile).expect("profile folder");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1366,768", "--lang=ru-RU", "--no-first-run",
                         format!("--user-data-dir={}", profile.display())],
                "prefs": {"intl.accept_languages": "ru-RU,ru"}
            }
        }}});
        let value = wd(&self.addr, "POST", "/session", Some(&caps)).unwrap_or_else(|e| panic!("new session: {e}"));
        let id = value["sessionId"].as_str().expect("sessionId").to_string();
        let session = Session { browser: self, id };
        session.cmd("POST", "/timeouts", json!({"implicit": 5000, "pageLoad": 30000, "script": 10000}));
        session
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One HTTP/1.1 exchange with chromedriver: status and JSON body. The body is read by its
/// `Content-Length` (chromedriver keeps connections open whatever the request says).
fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, Value)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(std::io::Error::other)?;
        }
    }
    let mut raw = vec![0; length];
    reader.read_exact(&mut raw)?;
    Ok((status, serde_json::from_slice(&raw).unwrap_or(Value::Null)))
}

/// One WebDriver command; answers `value` or the driver's error.
fn wd(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let text = body.map(Value::to_string).or_else(|| (method == "POST").then(|| "{}".to_string()));
    let (status, mut doc) =
        request(addr, method, path, text.as_deref()).map_err(|e| format!("{method} {path}: {e}"))?;
    let value = doc["value"].take();
    if status == 200 {
        Ok(value)
    } else {
        Err(format!("{method} {path}: {status} {}: {}", value["error"], value["message"]))
    }
}

/// One browser window (a WebDriver session); closed on drop.
pub struct Session<'b> {
    browser: &'b Browser,
    id: String,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Session<'_> {
    fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let body = (method == "POST").then_some(body);
        wd(&self.browser.addr, method, &format!("/session/{}{path}", self.id), body.as_ref())
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_cmd(method, path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url}));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", Value::Null).as_str().unwrap_or_default().to_string()
    }

    pub fn title(&self) -> String {
        self.cmd("GET", "/title", Value::Null).as_str().unwrap_or_default().to_string()
    }

    /// The page's HTML as the browser has it now.
    pub fn source(&self) -> String {
        self.cmd("GET", "/source", Value::Null).as_str().unwrap_or_default().to_string()
    }

    /// The first element matching a CSS selector (waiting up to the implicit timeout).
    pub fn find(&self, css: &str) -> Element {
        self.try_find(css).unwrap_or_else(|e| panic!("no `{css}` on {}: {e}\n{}", self.url(), self.source()))
    }

    pub fn try_find(&self, css: &str) -> Result<Element, String> {
        let v = self.try_cmd("POST", "/element", json!({"using": "css selector", "value": css}))?;
        Ok(Element(v[ELEMENT].as_str().expect("element reference").to_string()))
    }

    /// All elements matching a CSS selector now (no waiting beyond the implicit timeout).
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.cmd("POST", "/elements", json!({"using": "css selector", "value": css}));
        v.as_array()
            .expect("a list")
            .iter()
            .map(|e| Element(e[ELEMENT].as_str().expect("element reference").to_string()))
            .collect()
    }

    pub fn click(&self, el: &Element) {
        self.cmd("POST", &format!("/element/{}/click", el.0), json!({}));
    }

    /// Clears a field and types `text` into it.
    pub fn fill(&self, el: &Element, text: &str) {
        self.cmd("POST", &format!("/element/{}/clear", el.0), json!({}));
        self.cmd("POST", &format!("/element/{}/value", el.0), json!({"text": text}));
    }

    /// The element's rendered text.
    pub fn text(&self, el: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", el.0), Value::Null).as_str().unwrap_or_default().to_string()
    }

    /// A DOM property (`value`, `checked`, …).
    pub fn property(&self, el: &Element, name: &str) -> Value {
        self.cmd("GET", &format!("/element/{}/property/{name}", el.0), Value::Null)
    }

    pub fn attribute(&self, el: &Element, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{}/attribute/{name}", el.0), Value::Null).as_str().map(str::to_owned)
    }

    /// Runs JavaScript in the page and answers what it returns.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": script, "args": args}))
    }

    /// Resizes the window (CSS pixels of the outer window).
    pub fn resize(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", json!({"width": width, "height": height}));
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().expect("base64")).expect("PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Waits (up to 10 s) until `check` holds for the page, reloading nothing.
    pub fn wait_until(&self, what: &str, check: impl Fn(&Session) -> bool) {
        let start = Instant::now();
        while !check(self) {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what} on {}", self.url());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = wd(&self.browser.addr, "DELETE", &format!("/session/{}", self.id), None);
    }
}

/// The harness itself: Chromium renders a page of the real server (the API's offline docs),
/// runs JavaScript and takes a screenshot.
#[test]
fn chromium_renders_a_page_of_the_server() {
    let dir = tempdir("harness");
    let server = crate::server::Server::start(&dir, &[("REGLAMENT_DATABASE_URL", "sqlite://h.db".into())]);
    let browser = Browser::start(&dir);
    let page = browser.session();
    page.goto(&format!("http://{}/docs", server.addr));
    assert!(page.title().contains("Reglament"), "title: {}", page.title());
    assert_eq!(page.execute("return 6 * 7", json!([])), json!(42));
    // The commands the page tests use, on a page of its own.
    page.goto(
        "data:text/html;charset=utf-8,<title>t</title><label for=a>Имя</label><input id=a value=x>\
         <input id=c type=checkbox><button id=b onclick=\"document.getElementById('out').textContent='Привет, '+document.getElementById('a').value\">ok</button><p id=out></p>",
    );
    let input = page.find("#a");
    page.fill(&input, "Анна");
    page.click(&page.find("#c"));
    page.click(&page.find("#b"));
    page.wait_until("the greeting", |p| p.text(&p.find("#out")) == "Привет, Анна");
    assert_eq!(page.property(&page.find("#c"), "checked"), json!(true));
    assert_eq!(page.attribute(&input, "id").as_deref(), Some("a"));
    assert_eq!(page.find_all("input").len(), 2);
    assert!(page.try_find("#missing").is_err());
    assert!(page.source().contains("Имя") && page.url().starts_with("data:"));
    page.resize(390, 844);
    let shot = dir.join("docs.png");
    page.screenshot(&shot);
    let png = std::fs::read(&shot).expect("screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

/// A fresh folder under the build's tmp dir for one test.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test folder");
    dir
}
