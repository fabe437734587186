//! Russian forms for the pages: dates («20 января 2027 г., 18:00»), plurals («3 раб. дня»).

use chrono::{Datelike, NaiveDate, Timelike};
use chrono_tz::Tz;

use reglament_store::Ts;

const MONTHS_GENITIVE: [&str; 12] = [
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
];

/// The Russian plural form for `n`: `one` (1, 21, 101…), `few` (2–4, 22–24…), `many` (the rest,
/// 11–14 included).
pub fn plural<'a>(n: i64, one: &'a str, few: &'a str, many: &'a str) -> &'a str {
    let n = n.unsigned_abs();
    match (n % 10, n % 100) {
        (1, r) if r != 11 => one,
        (2..=4, r) if !(12..=14).contains(&r) => few,
        _ => many,
    }
}

/// «20 января 2027 г.»
pub fn date(d: NaiveDate) -> String {
    format!("{} {} {} г.", d.day(), MONTHS_GENITIVE[d.month0() as usize], d.year())
}

/// «20 января 2027 г., 18:00» in the zone.
pub fn date_time(t: Ts, tz: Tz) -> String {
    let local = t.with_timezone(&tz);
    format!("{}, {:02}:{:02}", date(local.date_naive()), local.hour(), local.minute())
}

/// What is left until a due date, in working days: «остался 1 раб. день», «осталось 3 раб.
/// дня», «срок — сегодня»; `None` when `days` is negative (overdue is shown apart).
pub fn working_days_left(days: i64) -> Option<String> {
    match days {
        d if d < 0 => None,
        0 => Some("срок — сегодня".into()),
        d => Some(format!(
            "{} {d} раб. {}",
            plural(d, "остался", "осталось", "осталось"),
            plural(d, "день", "дня", "дней")
        )),
    }
}

/// Login → the name to show (the person's name, else the login), for the people of `users`.
pub fn names(users: &[reglament_store::auth::UserRecord]) -> std::collections::HashMap<&str, &str> {
    users.iter().map(|u| (u.login.as_str(), u.name.as_deref().unwrap_or(u.login.as_str()))).collect()
}

/// Groups by the names the directory gives them (`[groups]`), else by id, joined by commas.
pub fn groups<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    names: &std::collections::BTreeMap<String, String>,
) -> String {
    ids.into_iter().map(|id| names.get(id).map_or(id, String::as_str)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        let forms = |n| plural(n, "день", "дня", "дней");
        let cases =
            [(0, "дней"), (1, "день"), (2, "дня"), (4, "дня"), (5, "дней"), (11, "дней"), (12, "дней"), (14, "дней")];
        for (n, want) in cases {
            assert_eq!(forms(n), want, "{n}");
        }
        for (n, want) in [(21, "день"), (22, "дня"), (25, "дней"), (101, "день"), (111, "дней"), (112, "дней")]
        {
            assert_eq!(forms(n), want, "{n}");
        }
    }

    #[test]
    fn days_left() {
        assert_eq!(working_days_left(1).unwrap(), "остался 1 раб. день");
        assert_eq!(working_days_left(3).unwrap(), "осталось 3 раб. дня");
        assert_eq!(working_days_left(5).unwrap(), "осталось 5 раб. дней");
        assert_eq!(working_days_left(11).unwrap(), "осталось 11 раб. дней");
        assert_eq!(working_days_left(21).unwrap(), "остался 21 раб. день");
        assert_eq!(working_days_left(0).unwrap(), "срок — сегодня");
        assert_eq!(working_days_left(-1), None);
    }

    #[test]
    fn dates_in_russian() {
        let t = chrono::DateTime::parse_from_rfc3339("2027-01-20T14:00:00Z").unwrap().to_utc();
        assert_eq!(date_time(t, chrono_tz::Europe::Astrakhan), "20 января 2027 г., 18:00");
        let t = chrono::DateTime::parse_from_rfc3339("2026-03-01T05:07:00Z").unwrap().to_utc();
        assert_eq!(date_time(t, chrono_tz::Europe::Moscow), "1 марта 2026 г., 08:07");
    }
}
