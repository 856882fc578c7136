//! How potctl shows the engine's events while it works: a progress bar for an image download
//! on a terminal, plain lines otherwise, JSON lines with `--json`.

use nomad_pot_driver::engine::PotName;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// Prints the engine's events on stderr: a progress bar for an image download on a terminal,
/// plain lines otherwise, JSON lines with `--json`.
pub struct Reporter {
    json: bool,
    tty: bool,
    /// A progress bar is drawn on the current line.
    bar: Mutex<bool>,
}

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        Reporter {
            json,
            tty: !json && std::io::stderr().is_terminal(),
            bar: Mutex::new(false),
        }
    }

    pub fn event(&self, pot: &PotName, message: &str) {
        let mut bar = self.bar.lock().expect("reporter poisoned");
        let mut err = std::io::stderr().lock();
        if self.json {
            let _ = writeln!(err, "{}", json!({"pot": pot.as_str(), "event": message}));
            return;
        }
        if self.tty
            && let Some((name, percent, total)) = download_progress(message)
        {
            let _ = write!(err, "\r{}", bar_line(name, percent, total));
            let _ = err.flush();
            *bar = true;
            return;
        }
        if std::mem::take(&mut *bar) {
            let _ = writeln!(err);
        }
        let _ = writeln!(err, "==> {message}");
    }

    /// Ends a progress bar left on the current line.
    pub(super) fn finish(&self) {
        if std::mem::take(&mut *self.bar.lock().expect("reporter poisoned")) {
            eprintln!();
        }
    }
}

/// One frame of the download bar, redrawn in place.
fn bar_line(name: &str, percent: u64, total: &str) -> String {
    let filled = (percent.min(100) / 5) as usize;
    format!(
        "==> downloading {name} [{}{}] {percent:>3}% of {total}",
        "#".repeat(filled),
        " ".repeat(20 - filled)
    )
}

/// `(image, percent, total)` of the engine's "Downloading image NAME: P% of SIZE" event.
fn download_progress(message: &str) -> Option<(&str, u64, &str)> {
    let rest = message.strip_prefix("Downloading image ")?;
    let (name, rest) = rest.split_once(": ")?;
    let (percent, total) = rest.split_once("% of ")?;
    Some((name, percent.parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_engines_download_progress() {
        assert_eq!(
            download_progress("Downloading image web_1.0: 45% of 12 MB"),
            Some(("web_1.0", 45, "12 MB"))
        );
        assert_eq!(
            download_progress("Downloading image web_1.0: 3 MB so far"),
            None
        );
        assert_eq!(download_progress("Imported image web_1.0"), None);
        assert_eq!(
            bar_line("web_1.0", 45, "12 MB"),
            "==> downloading web_1.0 [#########           ]  45% of 12 MB"
        );
        assert_eq!(
            bar_line("web_1.0", 100, "12 MB"),
            "==> downloading web_1.0 [####################] 100% of 12 MB"
        );
    }
}
