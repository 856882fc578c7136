//! Host set-up and readiness: what `pot init` and `pot vnet-start` do to a fresh host
//! ([`init`]), and the checks behind `potctl doctor` ([`readiness`]). Both judge the pf config
//! by the anchor lines pot's init puts at its top, which live here.

mod init;
mod readiness;

pub use init::InitReport;
pub use readiness::Check;

/// The lines pot's init puts at the top of the pf config (pot-engine.md §4.1).
pub const PF_ANCHOR_LINES: [&str; 2] = ["nat-anchor pot-nat", "rdr-anchor \"pot-rdr/*\""];

/// `text` with pot's anchor lines at the top, as pot's init leaves a pf config; `None` when it
/// already has exactly one of each (pot then leaves the file alone).
pub fn with_pot_anchors(text: &str) -> Option<String> {
    let count = |wanted: &str| text.lines().filter(|l| l.trim() == wanted).count();
    if PF_ANCHOR_LINES.iter().all(|l| count(l) == 1) {
        return None;
    }
    let mut out: String = PF_ANCHOR_LINES.iter().map(|l| format!("{l}\n")).collect();
    for line in text.lines() {
        if !PF_ANCHOR_LINES.contains(&line.trim()) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_lines_go_to_the_top_once() {
        let text = "ext_if = \"em0\"\nnat-anchor pot-nat\npass all\n";
        assert_eq!(
            with_pot_anchors(text).unwrap(),
            "nat-anchor pot-nat\nrdr-anchor \"pot-rdr/*\"\next_if = \"em0\"\npass all\n"
        );
        let done = with_pot_anchors(text).unwrap();
        assert_eq!(with_pot_anchors(&done), None);
        let twice = format!("{done}nat-anchor pot-nat\n");
        assert_eq!(with_pot_anchors(&twice).unwrap(), done);
        assert_eq!(
            with_pot_anchors("").unwrap(),
            "nat-anchor pot-nat\nrdr-anchor \"pot-rdr/*\"\n"
        );
    }
}
