//! CSV cells (RFC 4180) that spreadsheet programs read as text, never as formulas.

/// One CSV cell: quoted when it holds a separator, a quote or a line break; a value that a
/// spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return) is prefixed with an apostrophe, as OWASP advises against CSV injection, so
/// `=HYPERLINK(…)` typed into a registry field shows as text.
pub fn cell(value: &str) -> String {
    let neutral = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{value}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    };
    if neutral.contains([',', '"', '\n', '\r', ';']) {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn plain_values_stay_as_they_are() {
        assert_eq!(cell("Отдел анализа"), "Отдел анализа");
        assert_eq!(cell("12.5"), "12.5");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn separators_and_quotes_are_quoted() {
        assert_eq!(cell("Приказ № 1, \"общий\""), "\"Приказ № 1, \"\"общий\"\"\"");
        assert_eq!(cell("a;b"), "\"a;b\"");
        assert_eq!(cell("две\nстроки"), "\"две\nстроки\"");
    }

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(cell("=1+1"), "'=1+1");
        assert_eq!(cell("+7 (8512) 00-00-00"), "'+7 (8512) 00-00-00");
        assert_eq!(cell("-2"), "'-2");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("=HYPERLINK(\"http://x\",\"y\")"), "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"");
        assert_eq!(cell("\tx"), "'\tx");
    }
}
