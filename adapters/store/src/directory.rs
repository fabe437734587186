//! The organisation directory: people (users with their groups), units with their heads,
//! parents and members, and roles. Email recipient rules (`head-of:`, `unit:`, `role:`) and
//! candidate groups read it.
//!
//! `reglament serve` loads `definitions/directory.toml` on first start — when the database has
//! no units and no roles yet — and an admin replaces it with `PUT /api/directory`. Loading is
//! one transaction: people are created or updated (name, email, groups; their tokens stay),
//! units, members and roles are replaced as a whole. People not in the file are left alone:
//! they may hold tokens and tasks; disable them instead.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::auth::UserRecord;
use super::{Pool, Result, Store, Ts, Tx, ms};

/// A person of the directory: a user who can sign in once given a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub login: String,
    /// Full name, shown in emails (`Иванова Анна Сергеевна`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Left out of the directory as shown to people who may not see it (personal data): see
    /// `GET /api/directory`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// Groups: candidate groups of user tasks and `group:` recipient rules refer to these.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A unit (подразделение) of the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub id: String,
    pub name: String,
    /// The login of the unit's head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// The unit this one belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Logins of the people who work in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// The whole directory, as `definitions/directory.toml` and `GET/PUT /api/directory` give it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// People created or updated when the directory is loaded.
    #[serde(default)]
    pub people: Vec<Person>,
    #[serde(default)]
    pub units: Vec<Unit>,
    /// Role → logins holding it.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    /// Group id → its name as officials read it (`reception = "Приёмная"`); pages and emails show
    /// the name, models and rules use the id. A group without a name is shown by its id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, String>,
}

impl Directory {
    /// Every mistake that would make the directory inconsistent, as `where: what` lines in
    /// Russian (they are shown to the admin who loads it). `known_users` are the logins already
    /// in the database.
    pub fn problems(&self, known_users: &BTreeSet<String>) -> Vec<String> {
        let mut out = Vec::new();
        let mut people = BTreeSet::new();
        for (i, p) in self.people.iter().enumerate() {
            let at = format!("people[{i}]");
            if p.login.trim().is_empty() || p.login.chars().any(|c| c.is_whitespace() || c.is_control()) {
                out.push(format!("{at}: логин `{}` пуст или содержит пробелы", p.login.escape_debug()));
            }
            // One `@`, no spaces or control characters: a CR/LF in an address or a name would
            // reach an email header.
            let mut parts = p.email.split('@');
            let email_ok = matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && b.contains('.'))
                && !p.email.chars().any(|c| c.is_whitespace() || c.is_control());
            if !email_ok {
                out.push(format!("{at}: адрес `{}` не похож на адрес электронной почты", p.email.escape_debug()));
            }
            if let Some(name) = &p.name
                && (name.chars().any(char::is_control) || name.chars().count() > 200)
            {
                out.push(format!(
                    "{at}: имя содержит управляющие символы (перевод строки и т. п.) или длиннее 200 знаков"
                ));
            }
            if let Some(g) = p
                .groups
                .iter()
                .find(|g| g.trim().is_empty() || g.chars().any(|c| c.is_whitespace() || c.is_control() || c == ','))
            {
                out.push(format!("{at}: группа `{}` пуста или содержит пробелы или запятые", g.escape_debug()));
            }
            if !people.insert(p.login.as_str()) {
                out.push(format!("{at}: логин `{}` повторяется", p.login));
            }
        }
        let known = |login: &str| people.contains(login) || known_users.contains(login);
        let ids: BTreeSet<&str> = self.units.iter().map(|u| u.id.as_str()).collect();
        if ids.len() != self.units.len() {
            out.push("units: идентификаторы подразделений повторяются".to_string());
        }
        for u in &self.units {
            let at = format!("units `{}`", u.id);
            if u.name.trim().is_empty() {
                out.push(format!("{at}: нет названия"));
            } else if u.name.chars().any(char::is_control) {
                out.push(format!("{at}: название содержит управляющие символы (перевод строки и т. п.)"));
            }
            if let Some(head) = &u.head
                && !known(head)
            {
                out.push(format!("{at}: руководителя `{head}` нет среди людей справочника и пользователей"));
            }
            if let Some(parent) = &u.parent
                && !ids.contains(parent.as_str())
            {
                out.push(format!("{at}: вышестоящего подразделения `{parent}` нет в справочнике"));
            }
            for m in u.members.iter().filter(|m| !known(m)) {
                out.push(format!("{at}: сотрудника `{m}` нет среди людей справочника и пользователей"));
            }
        }
        for (group, name) in &self.groups {
            if group.trim().is_empty() || group.chars().any(|c| c.is_whitespace() || c == ',') {
                out.push(format!("groups `{group}`: идентификатор группы пуст или содержит пробелы или запятые"));
            }
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                out.push(format!("groups `{group}`: название пустое или содержит управляющие символы"));
            }
        }
        for (role, logins) in &self.roles {
            for l in logins.iter().filter(|l| !known(l)) {
                out.push(format!("roles `{role}`: `{l}` нет среди людей справочника и пользователей"));
            }
        }
        out
    }
}

impl Store {
    /// Units, members and roles (people are users: see [`Store::users`]).
    pub async fn directory(&self) -> Result<Directory> {
        let units: Vec<(String, String, Option<String>, Option<String>)> =
            on_pool!(&self.pool, |c| sqlx::query_as("SELECT id, name, head_login, parent_id FROM units ORDER BY id")
                .fetch_all(c)
                .await?);
        let members: Vec<(String, String)> =
            on_pool!(&self.pool, |c| sqlx::query_as("SELECT unit_id, login FROM unit_members ORDER BY unit_id, login")
                .fetch_all(c)
                .await?);
        let roles: Vec<(String, String)> =
            on_pool!(&self.pool, |c| sqlx::query_as("SELECT role, login FROM roles ORDER BY role, login")
                .fetch_all(c)
                .await?);
        let mut by_unit: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (unit, login) in members {
            by_unit.entry(unit).or_default().push(login);
        }
        let units = units
            .into_iter()
            .map(|(id, name, head, parent)| {
                let members = by_unit.remove(&id).unwrap_or_default();
                Unit { id, name, head, parent, members }
            })
            .collect();
        let mut by_role: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (role, login) in roles {
            by_role.entry(role).or_default().push(login);
        }
        Ok(Directory { people: Vec::new(), units, roles: by_role, groups: self.group_names().await? })
    }

    /// Group id → name, from the directory's `[groups]`.
    pub async fn group_names(&self) -> Result<BTreeMap<String, String>> {
        let rows: Vec<(String, String)> =
            on_pool!(&self.pool, |c| sqlx::query_as("SELECT id, name FROM group_names").fetch_all(c).await?);
        Ok(rows.into_iter().collect())
    }

    /// Whether `login` is a person of the directory as last loaded (and enabled).
    pub async fn in_directory(&self, login: &str) -> Result<bool> {
        let row: Option<(i64,)> = on_pool!(&self.pool, |c| sqlx::query_as(
            "SELECT 1 FROM users WHERE login = $1 AND in_directory = 1 AND disabled = 0"
        )
        .bind(login)
        .fetch_optional(c)
        .await?);
        Ok(row.is_some())
    }

    /// True while no directory was ever loaded (and no units or roles exist, for databases
    /// older than the load log).
    pub async fn directory_never_loaded(&self) -> Result<bool> {
        let (n,): (i64,) = on_pool!(&self.pool, |c| {
            sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM directory_loads) + (SELECT COUNT(*) FROM units) + (SELECT COUNT(*) FROM roles)"
        )
        .fetch_one(c)
        .await?
        });
        Ok(n == 0)
    }

    /// Checks a directory against the users already stored and, when it is consistent, loads
    /// it. Returns the problems (nothing was written) or an empty list (loaded).
    pub async fn load_directory(&self, directory: &Directory, now: Ts) -> Result<Vec<String>> {
        Ok(self.load_directory_reporting(directory, now).await?.err().unwrap_or_default())
    }

    /// [`Store::load_directory`], answering the people it disabled (`Ok`) or the problems
    /// (`Err`, nothing written).
    pub async fn load_directory_reporting(
        &self,
        directory: &Directory,
        now: Ts,
    ) -> Result<std::result::Result<Vec<String>, Vec<String>>> {
        let known: BTreeSet<String> = self.users().await?.into_iter().map(|u| u.login).collect();
        let problems = directory.problems(&known);
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        Ok(Ok(self.replace_directory(directory, now).await?))
    }

    /// Loads a directory in one transaction: people created or updated, units, members and
    /// roles replaced; the people the last directory listed and this one does not are disabled
    /// (their web sessions end). Answers their logins. [`Store::load_directory`] checks it
    /// first.
    pub async fn replace_directory(&self, directory: &Directory, now: Ts) -> Result<Vec<String>> {
        let mut tx = self.begin().await?;
        let listed: BTreeSet<&str> = directory.people.iter().map(|p| p.login.as_str()).collect();
        let before: Vec<(String,)> = on!(&mut tx, |c| sqlx::query_as(
            "SELECT login FROM users WHERE in_directory = 1 AND disabled = 0 ORDER BY login"
        )
        .fetch_all(c)
        .await?);
        let removed: Vec<String> = before.into_iter().map(|(l,)| l).filter(|l| !listed.contains(l.as_str())).collect();
        for login in &removed {
            for sql in [
                "UPDATE users SET disabled = 1, in_directory = 0 WHERE login = $1",
                "DELETE FROM web_sessions WHERE login = $1",
            ] {
                on!(&mut tx, |c| sqlx::query(sql).bind(login).execute(c).await?.rows_affected());
            }
        }
        for p in &directory.people {
            tx.write_user(
                &UserRecord {
                    login: p.login.clone(),
                    name: p.name.clone(),
                    email: p.email.clone(),
                    groups: p.groups.clone(),
                    disabled: false,
                    created_at: now,
                },
                true,
            )
            .await?;
            on!(&mut tx, |c| sqlx::query("UPDATE users SET in_directory = 1 WHERE login = $1")
                .bind(&p.login)
                .execute(c)
                .await?
                .rows_affected());
        }
        tx.replace_directory(directory).await?;
        on!(&mut tx, |c| sqlx::query("INSERT INTO directory_loads (loaded_at, people, units) VALUES ($1, $2, $3)")
            .bind(ms(now))
            .bind(directory.people.len() as i64)
            .bind(directory.units.len() as i64)
            .execute(c)
            .await?
            .rows_affected());
        tx.commit().await?;
        Ok(removed)
    }
}

impl Tx {
    /// Replaces units, members, roles and group names inside this transaction.
    pub async fn replace_directory(&mut self, d: &Directory) -> Result<()> {
        for sql in ["DELETE FROM unit_members", "DELETE FROM roles", "DELETE FROM units", "DELETE FROM group_names"] {
            on!(self, |c| sqlx::query(sql).execute(c).await?.rows_affected());
        }
        for unit in &d.units {
            on!(self, |c| sqlx::query("INSERT INTO units (id, name, head_login, parent_id) VALUES ($1, $2, $3, $4)")
                .bind(&unit.id)
                .bind(&unit.name)
                .bind(&unit.head)
                .bind(&unit.parent)
                .execute(c)
                .await?
                .rows_affected());
            for login in &unit.members {
                on!(self, |c| sqlx::query(
                    "INSERT INTO unit_members (login, unit_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                )
                .bind(login)
                .bind(&unit.id)
                .execute(c)
                .await?
                .rows_affected());
            }
        }
        for (id, name) in &d.groups {
            on!(self, |c| sqlx::query("INSERT INTO group_names (id, name) VALUES ($1, $2)")
                .bind(id)
                .bind(name.trim())
                .execute(c)
                .await?
                .rows_affected());
        }
        for (role, logins) in &d.roles {
            for login in logins {
                on!(self, |c| sqlx::query("INSERT INTO roles (role, login) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(role)
                    .bind(login)
                    .execute(c)
                    .await?
                    .rows_affected());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::Directory;

    #[test]
    fn directory_reads_from_toml() {
        let d: Directory = toml::from_str(
            r#"
            [[people]]
            login = "ivanova"
            email = "ivanova@example.org"
            groups = ["unit-heads"]

            [[units]]
            id = "oapr"
            name = "Отдел анализа и перспективного развития"
            head = "ivanova"
            members = ["petrov"]

            [roles]
            cur-contact = ["petrov"]
            "#,
        )
        .expect("parses");
        assert_eq!(d.units[0].head.as_deref(), Some("ivanova"));
        assert_eq!(d.roles["cur-contact"], vec!["petrov".to_string()]);
        assert_eq!(
            d.problems(&BTreeSet::new()),
            vec![
                "units `oapr`: сотрудника `petrov` нет среди людей справочника и пользователей",
                "roles `cur-contact`: `petrov` нет среди людей справочника и пользователей"
            ]
        );
        assert!(d.problems(&BTreeSet::from(["petrov".to_string()])).is_empty());
    }

    #[test]
    fn the_shipped_directory_is_consistent() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../definitions/directory.toml");
        let text = std::fs::read_to_string(path).expect("definitions/directory.toml");
        let d: Directory = toml::from_str(&text).expect("parses");
        assert_eq!(d.problems(&BTreeSet::new()), Vec::<String>::new());
        assert!(d.people.len() >= 10 && d.units.len() >= 4);
        // Every group a person of it holds has a name to show.
        for group in d.people.iter().flat_map(|p| &p.groups) {
            assert!(d.groups.contains_key(group), "group `{group}` has no name in [groups]");
        }
    }
}
