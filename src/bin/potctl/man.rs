//! `potctl man`: potctl(8) in roff, generated from the clap definitions with clap_mangen.
//! `packaging/man/potctl.8` is its output, kept current by tests/man_pages.rs.

use clap::CommandFactory;
use std::io::Write;

/// The page: potctl's name, synopsis, description and global options, then one subsection per
/// command (as `potctl images gc`) with its synopsis, description and options.
pub fn render(out: &mut dyn Write) -> std::io::Result<()> {
    let mut page = Vec::new();
    sections(&mut page)?;
    // Each of clap_mangen's renders starts with the same string definition; once is enough.
    let page = String::from_utf8_lossy(&page);
    let mut preamble = PREAMBLE.to_vec();
    for line in page.lines() {
        if let Some(i) = preamble.iter().position(|p| *p == line) {
            preamble.remove(i);
            writeln!(out, "{line}")?;
        } else if !PREAMBLE.contains(&line) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// The lines clap_mangen's roff puts before every render.
const PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];

fn sections(out: &mut dyn Write) -> std::io::Result<()> {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone())
        .title("POTCTL")
        .section("8")
        .manual("System Manager's Manual");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
        command(out, sub)?;
    }
    writeln!(out, ".SH \"SEE ALSO\"")?;
    writeln!(out, "nomad\\-pot\\-driver(8), pot(8), nomad(1)")?;
    man.render_version_section(out)
}

/// One command's subsection, its own sections' headings dropped; then its subcommands.
fn command(out: &mut dyn Write, cmd: &clap::Command) -> std::io::Result<()> {
    let name = cmd.get_bin_name().unwrap_or(cmd.get_name());
    writeln!(out, ".SS \"{name}\"")?;
    let man = clap_mangen::Man::new(cmd.clone());
    let mut body = Vec::new();
    man.render_synopsis_section(&mut body)?;
    man.render_description_section(&mut body)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut body)?;
    }
    let body = String::from_utf8_lossy(&body);
    for line in body.lines().filter(|l| !l.starts_with(".SH ")) {
        writeln!(out, "{line}")?;
    }
    for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
        command(out, sub)?;
    }
    Ok(())
}
