//! How inspect commands print: an aligned table for people, one JSON document for tools.

use serde::Serialize;

/// Columns separated by two spaces, each as wide as its widest cell; the last is not padded.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| visible(c)).collect());
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Control characters (a task name may hold tabs and newlines) as escapes, so that a value
/// can neither break a table's columns nor forge a line of its own.
pub fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `-` for a missing value, as in the tables.
pub fn or_dash(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_string())
}

/// Pretty-printed JSON with a final newline.
pub fn json(value: &impl Serialize) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("inventory serializes");
    s.push('\n');
    s
}

/// Bytes for people: `512B`, `1.5K`, `64.0M`, `2.1G` (powers of 1024).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// A Unix time in milliseconds as UTC `YYYY-MM-DDTHH:MM:SSZ`.
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The error with its causes, each cause left out when the message before it already ends
/// with it (the library's errors quote their source).
pub fn error_message(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1).map(|c| c.to_string()) {
        if !text.ends_with(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_every_column_but_the_last() {
        let mut t = Table::new(&["NAME", "STATE", "NOTE"]);
        t.row(vec!["web_1".into(), "running".into(), "x".into()]);
        t.row(vec!["a".into(), "-".into(), "long note".into()]);
        assert_eq!(
            t.render(),
            "NAME   STATE    NOTE\nweb_1  running  x\na      -        long note\n"
        );
    }

    #[test]
    fn control_characters_cannot_break_a_table() {
        assert_eq!(visible("web v2\tx\ny\u{1}é"), "web v2\\tx\\ny\\u{1}é");
        let mut t = Table::new(&["POT", "TASK"]);
        t.row(vec!["p\n1".into(), "web\tv2".into()]);
        assert_eq!(t.render(), "POT   TASK\np\\n1  web\\tv2\n");
    }

    #[test]
    fn errors_quoting_their_source_are_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("pot web_1: {0}")]
        struct Quoting(#[source] std::io::Error);
        let e = anyhow::Error::new(Quoting(std::io::Error::other("zfs failed")));
        assert_eq!(error_message(&e), "pot web_1: zfs failed");
        let e = anyhow::Error::new(std::io::Error::other("denied")).context("reading /x");
        assert_eq!(error_message(&e), "reading /x: denied");
    }

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(size(512), "512B");
        assert_eq!(size(1536), "1.5K");
        assert_eq!(size(64 << 20), "64.0M");
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(time(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
