//! pot's `conf/pot.conf`: `key=value` lines where order does not matter and keys may repeat.

/// A pot.conf file, kept line by line so unknown keys survive a rewrite.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PotConf {
    lines: Vec<(String, String)>,
}

impl PotConf {
    /// Lines end at `\n` only: like pot's `grep` and `sed`, a `\r` belongs to the value, so
    /// that a rewrite reads back the same (`str::lines` would drop a `\r` before `\n` only).
    pub fn parse(text: &str) -> Self {
        PotConf {
            lines: text
                .split('\n')
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The value as pot's `_get_conf_var` reads it: spaces, tabs and `"` removed.
    pub fn get(&self, key: &str) -> Option<String> {
        self.get_raw(key).map(|v| {
            v.chars()
                .filter(|c| !matches!(c, ' ' | '\t' | '"'))
                .collect()
        })
    }

    /// The value verbatim (pot reads `pot.cmd` and `ip` this way).
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Replaces every `key=` line with one `key=value` at the end, as pot's `sed` + `echo` does.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.remove(key);
        self.lines.push((key.to_string(), value.into()));
    }

    /// Replaces every `key=` line with one line per value, as pot does for `pot.hosts`.
    pub fn set_all(&mut self, key: &str, values: &[String]) {
        self.remove(key);
        self.lines
            .extend(values.iter().map(|v| (key.to_string(), v.clone())));
    }

    pub fn remove(&mut self, key: &str) {
        self.lines.retain(|(k, _)| k != key);
    }

    pub fn render(&self) -> String {
        self.lines
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_pot_and_rewrites_in_place() {
        let mut c = PotConf::parse(
            "pot.type=single\nhost.hostname=\"a b\"\npot.cmd=nginx -g 'daemon off;'\n",
        );
        assert_eq!(c.get("host.hostname").unwrap(), "ab");
        assert_eq!(c.get_raw("pot.cmd").unwrap(), "nginx -g 'daemon off;'");
        c.set("pot.type", "multi");
        assert_eq!(
            c.render(),
            "host.hostname=\"a b\"\npot.cmd=nginx -g 'daemon off;'\npot.type=multi\n"
        );
        assert_eq!(c.get("missing"), None);
        c.set_all("pot.hosts", &["10.0.0.1 db".into(), "::1 six".into()]);
        assert!(
            c.render()
                .ends_with("pot.hosts=10.0.0.1 db\npot.hosts=::1 six\n")
        );
    }

    /// Found by the pot_conf fuzz target: a value ending in `\r` lost it on a rewrite.
    #[test]
    fn a_carriage_return_survives_a_rewrite() {
        for text in ["a=b\r", "a=b\r\n", "a=\r\r\nc=d"] {
            let c = PotConf::parse(text);
            assert_eq!(
                c.get_raw("a").unwrap(),
                text[2..].split('\n').next().unwrap()
            );
            assert_eq!(PotConf::parse(&c.render()), c, "{text:?}");
        }
    }
}
