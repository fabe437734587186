//! The server's settings, resolved once: a TOML file (optional), then the environment, then
//! the defaults of [`KEYS`] — validated, typed, and handed to every part as one [`Settings`]
//! value. The parts derive their own configuration from it (`DriverConfig::from_settings`,
//! `SchedulerConfig::from_settings`, `EmailConfig::from_settings`); no part reads the
//! environment or holds defaults of its own. README's configuration table is rendered from
//! [`KEYS`] ([`readme_table`]) and a test keeps the two equal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

/// One setting: its key in the file, its environment variable, its default as README states
/// it, and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every setting, in README's order. The defaults here are the only ones.
pub const KEYS: &[Key] = &[
    Key {
        name: "database_url",
        env: "REGLAMENT_DATABASE_URL",
        default: "sqlite://reglament.db",
        doc: "the database; `postgres://user@host/db` for several nodes",
    },
    Key {
        name: "http_addr",
        env: "REGLAMENT_HTTP_ADDR",
        default: "127.0.0.1:8080",
        doc: "the listen address, HOST:PORT",
    },
    Key {
        name: "max_connections",
        env: "REGLAMENT_MAX_CONNECTIONS",
        default: "512",
        doc: "HTTP connections served at once (lowered to fit the open-files limit); more clients wait until one closes",
    },
    Key {
        name: "header_timeout_seconds",
        env: "REGLAMENT_HEADER_TIMEOUT_SECONDS",
        default: "10",
        doc: "the longest wait for a request's headers, and for the next request on an idle connection",
    },
    Key {
        name: "base_url",
        env: "REGLAMENT_BASE_URL",
        default: "http:// + http_addr",
        doc: "the public address used in links in emails",
    },
    Key {
        name: "definitions",
        env: "REGLAMENT_DEFINITIONS",
        default: "definitions",
        doc: "the folder of `.bpmn` files deployed on start, with `calendars/` and `templates/`",
    },
    Key {
        name: "directory",
        env: "REGLAMENT_DIRECTORY",
        default: "DEFINITIONS/directory.toml",
        doc: "the organisation directory loaded on first start",
    },
    Key {
        name: "smtp_url",
        env: "REGLAMENT_SMTP_URL",
        default: "none",
        doc: "the SMTP server, e.g. `smtp://user:pass@host:587?tls=starttls`; without it emails are written to `mail_dir`",
    },
    Key { name: "mail_dir", env: "REGLAMENT_MAIL_DIR", default: "mail-out", doc: "where emails go without `smtp_url`" },
    Key {
        name: "mail_from",
        env: "REGLAMENT_MAIL_FROM",
        default: "Регламент <reglament@localhost>",
        doc: "the sender of every email",
    },
    Key {
        name: "mail_variable_domains",
        env: "REGLAMENT_MAIL_VARIABLE_DOMAINS",
        default: "*",
        doc: "where emails may go to addresses taken from process variables: `PROCESS=DOMAIN,DOMAIN; *=DOMAIN` (`*` as a domain: any; a domain covers its subdomains), e.g. `cur-comment=cur30.example.org; *=*`; addresses written in the model are not limited",
    },
    Key {
        name: "mail_connections",
        env: "REGLAMENT_MAIL_CONNECTIONS",
        default: "8",
        doc: "SMTP connections kept open (also the sends in flight)",
    },
    Key {
        name: "mail_retry_seconds",
        env: "REGLAMENT_MAIL_RETRY_SECONDS",
        default: "5",
        doc: "the first retry delay after a temporary SMTP failure (fractions allowed); it doubles up to 30 minutes",
    },
    Key {
        name: "time_zone",
        env: "REGLAMENT_TIME_ZONE",
        default: "Europe/Astrakhan",
        doc: "the IANA zone of definitions that name none, and of dates in emails",
    },
    Key {
        name: "node",
        env: "REGLAMENT_NODE",
        default: "a random name",
        doc: "this node's name, the owner of the leases it takes",
    },
    Key {
        name: "lease_seconds",
        env: "REGLAMENT_LEASE_SECONDS",
        default: "30",
        doc: "how long a node owns the timers, jobs and emails it took (another node takes them over after it)",
    },
    Key {
        name: "max_batch",
        env: "REGLAMENT_MAX_BATCH",
        default: "512",
        doc: "the most commands in one transaction (group commit)",
    },
    Key {
        name: "batch_delay_ms",
        env: "REGLAMENT_BATCH_DELAY_MS",
        default: "0",
        doc: "how long a batch waits for more commands, in milliseconds",
    },
    Key {
        name: "command_steps",
        env: "REGLAMENT_COMMAND_STEPS",
        default: "2000000",
        doc: "the work one command may do (FEEL iterations and calls, element activations); past it the element gets an incident",
    },
    Key {
        name: "command_time_limit_ms",
        env: "REGLAMENT_COMMAND_TIME_LIMIT_MS",
        default: "500",
        doc: "the longest one command may run, in milliseconds; past it the element gets an incident, so no command holds the write transaction longer",
    },
    Key { name: "pool_size", env: "REGLAMENT_POOL_SIZE", default: "16", doc: "database connections" },
    Key {
        name: "clock_controlled",
        env: "REGLAMENT_CLOCK_CONTROLLED",
        default: "false",
        doc: "`true` lets admins move the clock forward (training stands, tests)",
    },
    Key {
        name: "clock_start",
        env: "REGLAMENT_CLOCK_START",
        default: "none",
        doc: "an RFC 3339 instant the clock reads at start-up and runs on from (training stands, tests); none: the system time",
    },
];

/// The settings every part of the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub http_addr: SocketAddr,
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// Without a trailing `/`.
    pub base_url: String,
    pub definitions: PathBuf,
    pub directory: PathBuf,
    pub smtp_url: Option<String>,
    pub mail_dir: PathBuf,
    pub mail_from: String,
    pub mail_variable_domains: VariableDomains,
    pub mail_connections: u32,
    pub mail_retry: Duration,
    pub time_zone: chrono_tz::Tz,
    pub node: String,
    pub lease: Duration,
    pub max_batch: usize,
    pub batch_delay: Duration,
    pub command_steps: u64,
    pub command_time_limit: Duration,
    pub pool_size: u32,
    pub clock_controlled: bool,
    pub clock_start: Option<DateTime<FixedOffset>>,
}

/// What is wrong with the configuration; each message names the file or variable and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the configuration file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("unknown setting `{key}` in {path}; the settings are: {known}")]
    Unknown { key: String, path: PathBuf, known: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Settings {
    /// Reads `file` (if given) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let text = match file {
            Some(path) => Some((
                path,
                std::fs::read_to_string(path)
                    .map_err(|source| SettingsError::Read { path: path.to_path_buf(), source })?,
            )),
            None => None,
        };
        Settings::resolve(text.as_ref().map(|(p, t)| (*p, t.as_str())), |name| std::env::var(name).ok())
    }

    /// Resolves the settings from a file's text and an environment lookup (the environment
    /// wins over the file; empty variables count as unset).
    pub fn resolve(
        file: Option<(&Path, &str)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let mut from_file = BTreeMap::new();
        let mut file_path = PathBuf::new();
        if let Some((path, text)) = file {
            file_path = path.to_path_buf();
            let table: toml::Table = toml::from_str(text)
                .map_err(|e| SettingsError::Toml { path: path.to_path_buf(), message: e.to_string() })?;
            for (key, value) in table {
                if !KEYS.iter().any(|k| k.name == key) {
                    let known = KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
                    return Err(SettingsError::Unknown { key, path: path.to_path_buf(), known });
                }
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Datetime(d) => d.to_string(),
                    other => other.to_string(),
                };
                from_file.insert(key, text);
            }
        }
        let raw = Raw { file: from_file, file_path, env: &env };

        let http_addr: SocketAddr = raw.parse("http_addr", "HOST:PORT, e.g. 127.0.0.1:8080", |v| v.parse().ok())?;
        let definitions = PathBuf::from(raw.text("definitions"));
        let directory = match raw.get("directory") {
            Some((v, _)) => PathBuf::from(v),
            None => definitions.join("directory.toml"),
        };
        let base_url = match raw.get("base_url") {
            Some((v, _)) => v,
            None => format!("http://{http_addr}"),
        };
        let node = match raw.get("node") {
            Some((v, _)) => v,
            None => format!("node-{}", uuid::Uuid::now_v7().simple()),
        };
        let positive = |v: &str| v.parse::<u64>().ok().filter(|n| *n > 0);
        Ok(Settings {
            database_url: raw.parse("database_url", "sqlite://FILE or postgres://USER@HOST/DB", |v| {
                (v.starts_with("sqlite:") || v.starts_with("postgres:") || v.starts_with("postgresql:"))
                    .then(|| v.to_string())
            })?,
            http_addr,
            max_connections: raw.parse("max_connections", "a whole number from 1 to 100000", |v| {
                v.parse::<usize>().ok().filter(|n| (1..=100_000).contains(n))
            })?,
            header_timeout: raw.parse("header_timeout_seconds", "a whole number of seconds above 0", |v| {
                positive(v).map(Duration::from_secs)
            })?,
            base_url: base_url.trim_end_matches('/').to_string(),
            definitions,
            directory,
            smtp_url: raw.get("smtp_url").map(|(v, _)| v),
            mail_dir: PathBuf::from(raw.text("mail_dir")),
            mail_from: raw.text("mail_from"),
            mail_variable_domains: raw.parse(
                "mail_variable_domains",
                "`PROCESS=DOMAIN,DOMAIN; *=DOMAIN` (e.g. `cur-comment=cur30.example.org; *=*`)",
                |v| v.parse().ok(),
            )?,
            mail_connections: raw.parse("mail_connections", "a whole number from 1 to 1000", |v| {
                v.parse::<u32>().ok().filter(|n| (1..=1000).contains(n))
            })?,
            mail_retry: raw.parse("mail_retry_seconds", "a positive number of seconds, e.g. 5 or 0.5", |v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
                    .map(Duration::from_secs_f64)
            })?,
            time_zone: raw.parse("time_zone", "an IANA zone name such as Europe/Moscow", |v| v.parse().ok())?,
            node,
            lease: raw.parse("lease_seconds", "a whole number of seconds above 0", |v| {
                positive(v).map(Duration::from_secs)
            })?,
            max_batch: raw.parse("max_batch", "a whole number from 1 to 100000", |v| {
                v.parse::<usize>().ok().filter(|n| (1..=100_000).contains(n))
            })?,
            batch_delay: raw.parse("batch_delay_ms", "a whole number of milliseconds", |v| {
                v.parse::<u64>().ok().map(Duration::from_millis)
            })?,
            command_steps: raw.parse("command_steps", "a whole number from 1000 to 1000000000", |v| {
                v.parse::<u64>().ok().filter(|n| (1000..=1_000_000_000).contains(n))
            })?,
            command_time_limit: raw.parse(
                "command_time_limit_ms",
                "a whole number of milliseconds from 10 to 600000",
                |v| v.parse::<u64>().ok().filter(|n| (10..=600_000).contains(n)).map(Duration::from_millis),
            )?,
            pool_size: raw.parse("pool_size", "a whole number from 1 to 1000", |v| {
                v.parse::<u32>().ok().filter(|n| (1..=1000).contains(n))
            })?,
            clock_controlled: raw.parse("clock_controlled", "true or false", |v| match v {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            })?,
            clock_start: match raw.get("clock_start") {
                None => None,
                Some((v, origin)) => Some(DateTime::parse_from_rfc3339(&v).map_err(|_| SettingsError::Invalid {
                    origin,
                    message: format!("must be an RFC 3339 instant like 2027-01-15T09:00:00+04:00, not `{v}`"),
                })?),
            },
        })
    }

    /// The defaults, as a server started with no file and no environment has them.
    pub fn defaults() -> Settings {
        Settings::resolve(None, |_| None).expect("the defaults of KEYS are valid")
    }
}

struct Raw<'a, E: Fn(&str) -> Option<String>> {
    file: BTreeMap<String, String>,
    file_path: PathBuf,
    env: &'a E,
}

impl<E: Fn(&str) -> Option<String>> Raw<'_, E> {
    fn key(name: &str) -> &'static Key {
        KEYS.iter().find(|k| k.name == name).expect("every setting read is listed in KEYS")
    }

    /// The value set in the environment or the file, with where it came from.
    fn get(&self, name: &str) -> Option<(String, String)> {
        let key = Self::key(name);
        if let Some(v) = (self.env)(key.env).filter(|v| !v.trim().is_empty()) {
            return Some((v.trim().to_string(), format!("{} (environment)", key.env)));
        }
        self.file
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (v.trim().to_string(), format!("`{name}` in {}", self.file_path.display())))
    }

    /// The value set, or the default of [`KEYS`].
    fn text(&self, name: &str) -> String {
        self.get(name).map(|(v, _)| v).unwrap_or_else(|| Self::key(name).default.to_string())
    }

    fn parse<T>(&self, name: &str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, SettingsError> {
        let (value, origin) = self.get(name).unwrap_or_else(|| (Self::key(name).default.to_string(), "default".into()));
        parse(&value)
            .ok_or_else(|| SettingsError::Invalid { origin, message: format!("must be {expected}, not `{value}`") })
    }
}

/// README's configuration table, rendered from [`KEYS`].
pub fn readme_table() -> String {
    let mut out = String::from("| key | environment | default | what it sets |\n| --- | --- | --- | --- |\n");
    for k in KEYS {
        out.push_str(&format!("| `{}` | `{}` | {} | {} |\n", k.name, k.env, readme_default(k.default), k.doc));
    }
    out
}

fn readme_default(default: &str) -> String {
    match default {
        "none" | "a random name" => default.to_string(),
        "http:// + http_addr" => "`http://` + `http_addr`".to_string(),
        other => format!("`{other}`"),
    }
}

/// Where emails may go to addresses taken from process variables (setting
/// `mail_variable_domains`): per process key, with `*` for the others; a domain covers its
/// subdomains; `*` as a domain allows any. Addresses written in the model are not limited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableDomains {
    by_process: std::collections::BTreeMap<String, Vec<String>>,
    others: Vec<String>,
}

impl Default for VariableDomains {
    fn default() -> Self {
        VariableDomains { by_process: Default::default(), others: vec!["*".into()] }
    }
}

impl std::str::FromStr for VariableDomains {
    type Err = String;

    /// `PROCESS=DOMAIN,DOMAIN; *=DOMAIN`, or a bare `DOMAIN,DOMAIN` for every process. A
    /// process not named and no `*` entry: no addresses from variables at all.
    fn from_str(text: &str) -> Result<Self, String> {
        let domains = |list: &str| -> Result<Vec<String>, String> {
            let out: Vec<String> = list.split(',').map(|d| d.trim().to_lowercase()).filter(|d| !d.is_empty()).collect();
            match out
                .iter()
                .find(|d| *d != "*" && (d.contains('@') || d.chars().any(|c| c.is_whitespace() || c.is_control())))
            {
                Some(bad) => Err(format!("`{bad}` is not a domain")),
                None => Ok(out),
            }
        };
        if !text.contains('=') {
            return Ok(VariableDomains { by_process: Default::default(), others: domains(text)? });
        }
        let mut out = VariableDomains { by_process: Default::default(), others: Vec::new() };
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (process, list) = entry.split_once('=').ok_or_else(|| format!("`{entry}` has no `=`"))?;
            let process = process.trim();
            if process.is_empty() {
                return Err(format!("`{entry}` names no process"));
            }
            if process == "*" {
                out.others = domains(list)?;
            } else {
                out.by_process.insert(process.to_string(), domains(list)?);
            }
        }
        Ok(out)
    }
}

impl VariableDomains {
    /// Whether an address from a variable of process `process` may receive email.
    pub fn allows(&self, process: &str, address: &str) -> bool {
        let domain = address.rsplit_once('@').map(|(_, d)| d.trim().trim_end_matches('>').to_lowercase());
        let Some(domain) = domain else { return false };
        let allowed = self.by_process.get(process).unwrap_or(&self.others);
        allowed.iter().any(|d| d == "*" || domain == *d || domain.ends_with(&format!(".{d}")))
    }

    /// The domains allowed for `process`, for messages.
    pub fn for_process(&self, process: &str) -> &[String] {
        self.by_process.get(process).unwrap_or(&self.others)
    }
}

#[cfg(test)]
mod variable_domain_tests {
    use super::VariableDomains;

    #[test]
    fn domains_per_process_with_subdomains_and_a_default() {
        let d: VariableDomains = "cur-comment=cur30.example.org; *=*".parse().unwrap();
        assert!(d.allows("cur-comment", "cur@cur30.example.org"));
        assert!(d.allows("cur-comment", "ЦУР <duty@mail.cur30.example.org>"));
        assert!(!d.allows("cur-comment", "attacker@evil.example.org"));
        assert!(!d.allows("cur-comment", "x@notcur30.example.org"), "not a subdomain");
        assert!(d.allows("information-request", "citizen@mail.example.org"));
        let strict: VariableDomains = "gov.ru, astrobl.ru".parse().unwrap();
        assert!(strict.allows("any", "a@astrobl.ru") && !strict.allows("any", "a@example.org"));
        let none: VariableDomains = "press-request=*".parse().unwrap();
        assert!(none.allows("press-request", "a@b.c") && !none.allows("other", "a@b.c"), "no `*` entry: none");
        assert!(VariableDomains::default().allows("p", "a@b.c"));
        assert!("cur-comment=a@b.c".parse::<VariableDomains>().is_err());
        assert!("=x.org".parse::<VariableDomains>().is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn defaults_follow_the_table() {
        let s = Settings::defaults();
        assert_eq!(s.database_url, "sqlite://reglament.db");
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.base_url, "http://127.0.0.1:8080");
        assert_eq!(s.directory, Path::new("definitions").join("directory.toml"));
        assert_eq!(s.lease, Duration::from_secs(30));
        assert_eq!(s.max_batch, 512);
        assert_eq!(s.time_zone, chrono_tz::Europe::Astrakhan);
        assert!(s.smtp_url.is_none() && !s.clock_controlled && s.clock_start.is_none());
        assert!(s.node.starts_with("node-"));
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let file = "http_addr = \"0.0.0.0:9000\"\nlease_seconds = 7\nclock_controlled = true\nbase_url = \"https://r.example/\"";
        let s =
            Settings::resolve(Some((Path::new("r.toml"), file)), env_of(&[("REGLAMENT_LEASE_SECONDS", "3")])).unwrap();
        assert_eq!(s.http_addr.port(), 9000);
        assert_eq!(s.lease, Duration::from_secs(3));
        assert!(s.clock_controlled);
        assert_eq!(s.base_url, "https://r.example");
    }

    #[test]
    fn bad_values_name_their_origin_and_the_fix() {
        let e = Settings::resolve(None, env_of(&[("REGLAMENT_LEASE_SECONDS", "soon")])).unwrap_err().to_string();
        assert_eq!(e, "REGLAMENT_LEASE_SECONDS (environment): must be a whole number of seconds above 0, not `soon`");
        let e = Settings::resolve(Some((Path::new("r.toml"), "time_zone = \"Mars/Olympus\"")), |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("`time_zone` in r.toml: must be an IANA zone name"), "{e}");
        let e = Settings::resolve(Some((Path::new("r.toml"), "lease = 3")), |_| None).unwrap_err().to_string();
        assert!(e.starts_with("unknown setting `lease` in r.toml; the settings are: database_url, "), "{e}");
        let e = Settings::resolve(None, env_of(&[("REGLAMENT_CLOCK_START", "tomorrow")])).unwrap_err().to_string();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}
