//! pot's status file `${POT_TMP}/pot_status_<pot>` (pot's set-status.sh): one line
//! `pot.status=<state>,<interfaces>`. `pot ls`, `pot info` and `pot stop` read it, and `pot stop`
//! destroys the interfaces it names, so it moves as pot moves it: `starting,` before the jail,
//! `started,<host epairs>` once the task runs, `stopping,<host epairs>` then `stopped,` around a
//! stop, and it is removed with the pot (destroy.sh).

use super::EngineError;
use super::layout::PotName;
use super::state::write_atomic;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Starting,
    Started,
    Stopping,
    Stopped,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Started => "started",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
        }
    }
}

/// The line set-status.sh's `_set_status` leaves in the file.
pub(super) fn line(state: State, interfaces: &str) -> String {
    format!("pot.status={},{interfaces}\n", state.word())
}

/// start.sh's `_ifaces="$_epaira:$_ipv6_epaira"` with a leading `:` removed: the IPv4 host end
/// (`p4…`), a colon, the IPv6 one (`p6…`). An IPv4-only pot keeps the trailing colon, as in pot;
/// stop.sh splits on `:` either way.
pub(super) fn interfaces(host_epairs: &[String]) -> String {
    let named = |prefix: &str| {
        host_epairs
            .iter()
            .find(|e| e.starts_with(prefix))
            .map_or("", String::as_str)
    };
    let both = format!("{}:{}", named("p4"), named("p6"));
    both.strip_prefix(':').unwrap_or(&both).to_string()
}

/// The interfaces of the status line in `text` (set-status.sh's `cut -d, -f2`).
pub(super) fn interfaces_of(text: &str) -> String {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("pot.status="))
        .and_then(|v| v.split_once(','))
        .map(|(_, ifs)| ifs.to_string())
        .unwrap_or_default()
}

/// Writes `state` to `path`; only an existing file is moved on with `only_existing` (a stop
/// never brings back the file of a pot pot has already destroyed).
pub(super) fn set(
    pot: &PotName,
    path: &Path,
    state: State,
    interfaces: &str,
    only_existing: bool,
) -> Result<(), EngineError> {
    if only_existing && !path.exists() {
        return Ok(());
    }
    write_atomic(path, line(state, interfaces).as_bytes()).map_err(EngineError::io(
        pot.as_str(),
        "write",
        path,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_are_written_as_start_sh_joins_them() {
        let s = |v: &[&str]| interfaces(&v.iter().map(|e| e.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&[]), "");
        assert_eq!(s(&["p4abc1"]), "p4abc1:");
        assert_eq!(s(&["p6abc1"]), "p6abc1");
        assert_eq!(s(&["p4abc1", "p6abc2"]), "p4abc1:p6abc2");
        assert_eq!(
            line(State::Started, "p4abc1:"),
            "pot.status=started,p4abc1:\n"
        );
        assert_eq!(
            interfaces_of("pot.status=started,p4abc1:p6abc2\n"),
            "p4abc1:p6abc2"
        );
        assert_eq!(interfaces_of("pot.status=stopped,\n"), "");
    }
}
