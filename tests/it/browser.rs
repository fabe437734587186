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
/// Chromium's Russian resources (Debian's `chromium-l10n`): with them the browser's own parts of
/// a page, such as the date input (дд.мм.гггг), are in Russian, as officials see them.
const RUSSIAN: &str = "/usr/lib/chromium/locales/ru.pak";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Chromium and chromedriver binaries, installed from Debian's packages when missing.
pub fn chromium() -> (PathBuf, PathBuf) {
    static TOOLS: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    TOOLS.get_or_init(set_up_chromium).clone().unwrap_or_else(|e| panic!("{e}"))
}

fn set_up_chromium() -> Result<(PathBuf, PathBuf), String> {
    let present = || Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).exists() && Path::new(RUSSIAN).is_file();
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
                .args(["install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300"])
                .args(["chromium", "chromium-driver", "chromium-l10n"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    install()
        .or_else(|_| crate::tools::run(Command::new("apt-get").args(["update", "-qq"])).and_then(|()| install()))
        .map_err(|e| {
            format!(
                "the browser tests need {CHROMIUM}, {CHROMEDRIVER} and {RUSSIAN}, and `apt-get install chromium \
                 chromium-driver chromium-l10n` failed ({e}); install Chromium, its matching chromedriver and its \
                 Russian locale by hand (Debian/Ubuntu: chromium, chromium-driver, chromium-l10n)"
            )
        })?;
    if present() {
        found()
    } else {
        Err("apt-get installed chromium-driver and chromium-l10n, but the files are not there".into())
    }
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
        // Chromium takes its locale (dates in inputs: дд.мм.гггг) from the environment.
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .env("LANG", "ru_RU.UTF-8")
            .env("LANGUAGE", "ru_RU:ru")
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

    /// Sets a field's value as a script would (date inputs take `YYYY-MM-DD` whatever the
    /// locale shows), firing `input` and `change`.
    pub fn set_value(&self, css: &str, value: &str) {
        let el = self.find(css);
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": "arguments[0].value = arguments[1]; \
                              arguments[0].dispatchEvent(new Event('input', {bubbles: true})); \
                              arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
                   "args": [{ELEMENT: el.0}, value]}),
        );
    }

    /// A PNG of the whole page at 1366 px wide: the window grows to the page's height first.
    pub fn screenshot_page(&self, path: &Path) {
        let height = self.execute("return document.documentElement.scrollHeight", json!([])).as_u64().unwrap_or(768);
        self.resize(1366, (height as u32 + 140).clamp(768, 4000));
        self.screenshot(path);
        self.resize(1366, 768);
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

// ---- the officials' walks (issue 14, done when 1 and 2) -------------------------------------

/// Signs in through the form of the page the browser is on (the sign-in page).
fn sign_in_here(page: &Session, login: &str, password: &str) {
    page.find("#login");
    page.fill(&page.find("#login"), login);
    page.fill(&page.find("#password"), password);
    // Marks this document, so the answer is known to have arrived when the mark is gone: a
    // click does not always wait for the navigation it starts, and the sign-in page answers
    // with a page of the same shape (`#login-error` on both).
    page.execute("window.__signInPending = true; return null;", json!([]));
    page.click(&page.find("main form button[type=submit]"));
    page.wait_until("the answer to the sign-in form", |p| {
        p.execute("return window.__signInPending !== true && document.readyState === 'complete';", json!([]))
            == json!(true)
    });
}

/// Opens the site and signs in; answers when the inbox is shown.
fn sign_in(page: &Session, base: &str, login: &str, password: &str) {
    page.goto(&format!("{base}/"));
    assert!(page.url().contains("/login?next="), "without a session the inbox sends to sign-in: {}", page.url());
    sign_in_here(page, login, password);
    page.wait_until("the inbox", |p| p.url() == format!("{base}/"));
}

/// The ids of the task rows of the inbox view shown.
fn rows(page: &Session) -> Vec<String> {
    page.find_all("tr[data-task]").iter().filter_map(|row| page.attribute(row, "data-task")).collect()
}

/// Opens the inbox view `view` (`mine` or `groups`).
fn inbox(page: &Session, base: &str, view: &str) -> Vec<String> {
    page.goto(&format!("{base}/?view={view}"));
    page.find("h1");
    rows(page)
}

/// Picks the option `value` of a choice field.
fn choose(page: &Session, field: &str, value: &str) {
    page.click(&page.find(&format!("input[name={field}][value={value}]")));
}

/// Where the walk's screenshots go: the test's folder, and `docs/screenshots/` of the
/// repository when `UPDATE_SCREENSHOTS=1` (as the README shows them).
fn keep_screenshot(page: &Session, dir: &Path, name: &str) {
    let shot = dir.join(name);
    page.screenshot_page(&shot);
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let docs = crate::support::repo_root().join("docs/screenshots");
        std::fs::create_dir_all(&docs).expect("docs/screenshots");
        std::fs::copy(&shot, docs.join(name)).expect("copy the screenshot");
    }
}

/// The reception, the lawyer and the unit head of the sample directory walk an 8-FZ
/// information request through the shipped model in Chromium: each sees only their own work; the
/// registration card is refused with a wrong email (the Russian message at the field, the other
/// values kept) and accepted when corrected; the lawyer, signed out, follows the reminder email's
/// link, signs in and lands on the task; the unit head answers; the requester receives the answer
/// from the real SMTP server, and the case page tells who did what.
#[test]
fn officials_walk_an_information_request_in_the_browser() {
    let mut s = crate::processes::Stand::start_for_browser("browser-8fz");
    let base = format!("http://{}", s.server.addr);
    // Thursday 1 April 2027, 11:00 in Astrakhan: the walk does not depend on today's date.
    s.clock(json!({"to": "2027-04-01T11:00:00+04:00"}));
    for (login, password) in [("orlova", "приёмная-2027"), ("kuznetsov", "юрист-2027"), ("sidorova", "начальник-2027")]
    {
        let (status, body) =
            s.call("admin", "PUT", &format!("/api/users/{login}/password"), Some(&json!({"password": password})));
        assert_eq!(status, 204, "password of {login}: {body}");
    }
    let (status, body) = s.call(
        "orlova",
        "POST",
        "/api/process-instances",
        Some(&json!({"definitionKey": "information_request", "businessKey": "З-2027-116",
                     "variables": {"requestNo": "З-2027-116"}})),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let card = s.wait_task("orlova", Some(&id), "record_card")["id"].as_str().unwrap().to_string();

    let browser = Browser::start(&s.dir);
    let reception = browser.session();
    let lawyer = browser.session();
    sign_in(&reception, &base, "orlova", "приёмная-2027");
    sign_in(&lawyer, &base, "kuznetsov", "юрист-2027");
    assert!(lawyer.text(&lawyer.find(".who")).contains("Кузнецов"), "the header names who is signed in");

    // Each sees only their own work: the card is offered to the reception, not to the lawyer.
    assert_eq!(inbox(&reception, &base, "groups"), vec![card.clone()]);
    assert!(reception.text(&reception.find("table.tasks")).contains("З-2027-116"), "the row shows the request number");
    assert!(inbox(&reception, &base, "mine").is_empty());
    assert!(inbox(&lawyer, &base, "groups").is_empty() && inbox(&lawyer, &base, "mine").is_empty());
    lawyer.goto(&format!("{base}/tasks/{card}"));
    assert!(lawyer.title().starts_with("Задача не найдена"), "another group's task is not shown: {}", lawyer.title());

    // The reception claims the card and fills it with a wrong email.
    inbox(&reception, &base, "groups");
    keep_screenshot(&reception, &s.dir, "inbox.png");
    reception.click(&reception.find(&format!("tr[data-task='{card}'] a")));
    assert!(reception.text(&reception.find(".facts")).contains("Приёмная (регистрация запросов)"));
    reception.click(&reception.find("#claim"));
    reception.wait_until("the claimed task", |p| p.try_find("#complete").is_ok());
    choose(&reception, "channel", "email");
    reception.set_value("#in-receivedOn", "2027-03-31");
    reception.fill(&reception.find("#in-requesterName"), "ООО «Астраханские энергосети»");
    choose(&reception, "requesterKind", "organisation");
    reception.fill(&reception.find("#in-replyEmail"), "office-energo.example.org");
    reception.fill(
        &reception.find("#in-requestText"),
        "Перечень объектов генерации, включённых в схему развития электроэнергетики",
    );
    reception.click(&reception.find("#complete"));
    let error = reception.text(&reception.find("#error-replyEmail"));
    assert!(error.contains("адрес электронной почты"), "the message stands at the field, in Russian: {error}");
    assert_eq!(reception.attribute(&reception.find("#in-replyEmail"), "aria-invalid").as_deref(), Some("true"));
    assert_eq!(
        reception.property(&reception.find("#in-requesterName"), "value"),
        json!("ООО «Астраханские энергосети»"),
        "the other values are kept"
    );
    assert_eq!(reception.property(&reception.find("input[name=channel][value=email]"), "checked"), json!(true));
    keep_screenshot(&reception, &s.dir, "task-form-error.png");
    assert_eq!(s.instance(&id)["variables"]["replyEmail"], Value::Null, "nothing was stored");
    reception.fill(&reception.find("#in-replyEmail"), "office@energo.example.org");
    reception.click(&reception.find("#complete"));
    reception.wait_until("back in the inbox", |p| p.url().starts_with(&format!("{base}/?done=completed")));
    assert!(rows(&reception).is_empty(), "the card left the reception's inbox");

    // The next task appears in the lawyer's inbox, not in the reception's.
    let check = s.wait_task("kuznetsov", Some(&id), "check_competence")["id"].as_str().unwrap().to_string();
    assert_eq!(inbox(&lawyer, &base, "groups"), vec![check.clone()]);
    assert!(inbox(&reception, &base, "groups").is_empty());

    // The lawyer signs out; on the fourth day, at its end (18:00 in Astrakhan), the reminder of
    // the 7-day term arrives by email.
    lawyer.click(&lawyer.find(".signout button"));
    lawyer.wait_until("signed out", |p| p.url().contains("/login"));
    s.clock(json!({"to": "2027-04-05T18:30:00+04:00"}));
    let reminder = s.mail("kuznetsov@minprom.example.org", "Напоминание");
    let text = crate::processes::text_of(&reminder);
    assert!(!text.contains("/api/"), "no API links in emails:\n{text}");
    assert!(
        text.contains("предложена группам: Отдел правового обеспечения (юристы)."),
        "groups by the directory's names:\n{text}"
    );
    let link = text
        .lines()
        .find_map(|l| l.strip_prefix("Открыть задачу: "))
        .unwrap_or_else(|| panic!("the reminder links to the task:\n{text}"))
        .trim()
        .to_string();
    assert_eq!(link, format!("{base}/tasks/{check}"));
    lawyer.goto(&link);
    assert!(lawyer.url().contains("/login?next=%2Ftasks%2F"), "the link asks to sign in first: {}", lawyer.url());
    sign_in_here(&lawyer, "kuznetsov", "юрист-2027");
    lawyer.wait_until("the task page after sign-in", |p| p.url() == link);
    assert_eq!(lawyer.text(&lawyer.find("#task-title")), "Проверить компетенцию и определить срок ответа");
    // The case's facts from the card are shown read-only.
    assert!(lawyer.text(&lawyer.find("#case-facts")).contains("ООО «Астраханские энергосети»"));
    lawyer.click(&lawyer.find("#claim"));
    lawyer.wait_until("the claimed task", |p| p.try_find("#complete").is_ok());
    choose(&lawyer, "checkDecision", "answer");
    lawyer.click(&lawyer.find("#complete"));
    lawyer.wait_until("back in the inbox", |p| p.url().starts_with(&format!("{base}/?done=completed")));

    // The unit head prepares the answer.
    let answer = s.wait_task("sidorova", Some(&id), "prepare_answer")["id"].as_str().unwrap().to_string();
    let head = browser.session();
    sign_in(&head, &base, "sidorova", "начальник-2027");
    assert!(inbox(&head, &base, "groups").contains(&answer));
    head.goto(&format!("{base}/tasks/{answer}"));
    head.click(&head.find("#claim"));
    head.wait_until("the claimed task", |p| p.try_find("#complete").is_ok());
    choose(&head, "answerDecision", "answer");
    head.fill(&head.find("#in-answerText"), "Перечень объектов генерации прилагается.");
    head.click(&head.find("#complete"));
    head.wait_until("back in the inbox", |p| p.url().starts_with(&format!("{base}/?done=completed")));
    s.wait_state(&id, "completed");
    let letter = s.mail("office@energo.example.org", "Ответ на запрос");
    assert!(crate::processes::text_of(&letter).contains("Перечень объектов генерации прилагается."));

    // The case page: who did what and when.
    head.goto(&format!("{base}/instances/{id}"));
    assert_eq!(head.text(&head.find("#instance-state")), "Завершён");
    let timeline = head.text(&head.find("#timeline"));
    for line in [
        "Орлова Татьяна Михайловна выполнил(а) задачу «Заполнить карточку запроса»",
        "Кузнецов Олег Владимирович выполнил(а) задачу «Проверить компетенцию и определить срок ответа»",
        "Сидорова Мария Алексеевна выполнил(а) задачу «Подготовить ответ на запрос»",
        "1 апреля 2027 г.",
    ] {
        assert!(timeline.contains(line), "the timeline says «{line}»:\n{timeline}");
    }
    keep_screenshot(&head, &s.dir, "history.png");
}

/// A form posted by a page of another site, or without the session's CSRF token, changes
/// nothing; five wrong passwords slow the sign-in down, shown in Russian.
#[test]
fn forged_posts_are_refused_and_guessing_is_slowed_down_in_the_browser() {
    let mut s = crate::processes::Stand::start_for_browser("browser-csrf");
    let base = format!("http://{}", s.server.addr);
    let (status, body) =
        s.call("admin", "PUT", "/api/users/orlova/password", Some(&json!({"password": "приёмная-2027"})));
    assert_eq!(status, 204, "{body}");
    let id = s.start_instance("orlova", "information_request", json!({"requestNo": "З-2027-117"}));
    let card = s.wait_task("orlova", Some(&id), "record_card")["id"].as_str().unwrap().to_string();
    let browser = Browser::start(&s.dir);
    let page = browser.session();
    sign_in(&page, &base, "orlova", "приёмная-2027");

    // Another site's page posts the claim form to us (its Origin is not ours).
    page.goto(&format!(
        "data:text/html;charset=utf-8,<form method=post action='{base}/tasks/{card}/claim'>\
         <input name=csrf value=forged></form><script>document.forms[0].submit()</script>"
    ));
    page.wait_until("the answer to the forged form", |p| p.url().starts_with(&base));
    // A script of our own origin without the session's token.
    page.goto(&format!("{base}/"));
    let status = page.execute(
        "const r = new XMLHttpRequest(); r.open('POST', arguments[0], false); \
         r.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded'); r.send('csrf=guess'); return r.status;",
        json!([format!("/tasks/{card}/claim")]),
    );
    assert_eq!(status, json!(403), "a form without the session's token is refused");
    let (_, task) = s.call("orlova", "GET", &format!("/api/tasks/{card}"), None);
    assert_eq!(task["assignee"], Value::Null, "neither post claimed the task: {task}");

    // Five wrong passwords, then even the right one must wait.
    page.click(&page.find(".signout button"));
    page.wait_until("signed out", |p| p.url().contains("/login"));
    for attempt in 1..=5 {
        sign_in_here(&page, "orlova", "не-тот-пароль");
        let error = page.text(&page.find("#login-error"));
        assert!(error.contains("Неверный логин или пароль"), "attempt {attempt}: {error}");
    }
    sign_in_here(&page, "orlova", "приёмная-2027");
    let error = page.text(&page.find("#login-error"));
    assert!(error.contains("Слишком много неудачных попыток входа"), "the sixth attempt waits: {error}");
    assert!(page.url().contains("/login"), "not signed in: {}", page.url());
}
