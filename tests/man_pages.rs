//! The man pages in `packaging/man/` are current. `potctl.8` is what `potctl man` prints
//! (clap_mangen, from potctl's clap definitions). `nomad-pot-driver.8` is made here from the
//! README's agent and task option tables, the ones tests/examples.rs checks option by option
//! against the plugin's schemas, so the page and the README say the same.
//! `UPDATE_MAN=1 cargo test --test man_pages` rewrites both after a change.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `page` with `packaging/man/<name>`, or writes it there with `UPDATE_MAN=1`.
fn check_current(name: &str, page: &str) {
    let path = repo().join("packaging/man").join(name);
    if std::env::var_os("UPDATE_MAN").is_some() {
        std::fs::write(&path, page).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let shipped = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        shipped == page,
        "packaging/man/{name} is not current: run `UPDATE_MAN=1 cargo test --test man_pages` \
         (after `cargo build --workspace`) and commit the result"
    );
}

#[test]
fn potctl_8_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_potctl"))
        .arg("man")
        .output()
        .expect("run potctl man");
    assert!(
        out.status.success(),
        "potctl man: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH POTCTL 8 "), "{page}");
    for command in ["demo", "run", "doctor", "plugin-check", "images gc"] {
        assert!(
            page.contains(&format!(".SS \"potctl {command}\"")),
            "potctl(8) has no section for `potctl {command}`"
        );
    }
    check_current("potctl.8", &page);
}

/// Inline markdown to roff: code spans and bold in bold, links as their text, roff's special
/// characters escaped.
fn inline(markdown: &str) -> String {
    let mut text = markdown.replace('\\', "\\e").replace('-', "\\-");
    text = text.replace("\\e|", "|");
    // [text](target) → text
    while let Some(start) = text.find("](") {
        let Some(open) = text[..start].rfind('[') else {
            break;
        };
        let end = text[start..]
            .find(')')
            .map_or(text.len(), |e| start + e + 1);
        text = format!(
            "{}{}{}",
            &text[..open],
            &text[open + 1..start],
            &text[end..]
        );
    }
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("\\fB{part}\\fR"));
        } else {
            let mut bold = false;
            for (j, piece) in part.split("**").enumerate() {
                if j > 0 {
                    out.push_str(if bold { "\\fR" } else { "\\fB" });
                    bold = !bold;
                }
                out.push_str(piece);
            }
        }
    }
    match out.chars().next() {
        Some('.' | '\'') => format!("\\&{out}"),
        _ => out,
    }
}

/// The prose after `heading` up to its `| option | type | default | example | meaning |` table,
/// and the table's rows as cells.
fn section(readme: &str, heading: &str) -> (String, Vec<Vec<String>>) {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README: no section {heading}"));
    let mut lines = readme[start + heading.len() + 2..].lines();
    let intro: Vec<&str> = lines
        .by_ref()
        .take_while(|l| !l.starts_with("| option | type | default | example | meaning |"))
        .collect();
    let rows = lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<String> = row
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect();
            assert_eq!(cells.len(), 5, "{heading}: a row without 5 cells: {row}");
            cells
        })
        .collect();
    (intro.join("\n").trim().to_string(), rows)
}

fn options(page: &mut String, title: &str, intro: &str, rows: &[Vec<String>]) {
    page.push_str(&format!(".SH \"{title}\"\n"));
    for paragraph in intro.split("\n\n") {
        page.push_str(&format!(".PP\n{}\n", inline(&paragraph.replace('\n', " "))));
    }
    for cells in rows {
        let [names, ty, default, example, meaning] = &cells[..] else {
            unreachable!("rows have 5 cells")
        };
        page.push_str(&format!(
            ".TP\n{} ({}; default: {})\n{}\n.br\nExample: {}\n",
            inline(names),
            inline(ty),
            inline(default),
            inline(meaning),
            inline(example)
        ));
    }
}

/// nomad-pot-driver(8) from the README's option tables.
fn driver_page(readme: &str) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut page = format!(
        ".TH NOMAD\\-POT\\-DRIVER 8 \"\" \"nomad\\-pot\\-driver {version}\" \
         \"System Manager's Manual\"\n"
    );
    page.push_str(&format!(
        ".SH NAME\nnomad\\-pot\\-driver \\- {}\n",
        env!("CARGO_PKG_DESCRIPTION")
    ));
    page.push_str(
        ".SH SYNOPSIS\n.nf\n\
         plugin_dir = \"/usr/local/libexec/nomad/plugins\"\n\
         plugin \"nomad\\-pot\\-driver\" {\n  config {\n    \\fIoption\\fR = \\fIvalue\\fR\n  }\n}\n\
         .fi\n\
         .SH DESCRIPTION\n\
         \\fBnomad\\-pot\\-driver\\fR is a task driver plugin for HashiCorp Nomad: jobs whose \
         tasks say \\fBdriver = \"pot\"\\fR run in FreeBSD jails made from pot images, as \
         pot(8) makes them. Nomad starts it from its \\fBplugin_dir\\fR; it is not run by hand. \
         For each task the plugin starts \\fBnomad\\-pot\\-driver shim\\fR, the task's \
         supervisor. Nomad must run as root with \\fB/usr/local/sbin\\fR in its \\fBPATH\\fR.\n",
    );
    let (intro, rows) = section(readme, "## Agent configuration");
    options(&mut page, "AGENT OPTIONS", &intro, &rows);
    let (intro, rows) = section(readme, "## Task configuration");
    options(&mut page, "TASK OPTIONS", &intro, &rows);
    page.push_str(
        ".SH FILES\n\
         .TP\n/usr/local/libexec/nomad/plugins/nomad\\-pot\\-driver\nthe plugin, under the file \
         name the block label names\n\
         .TP\n/usr/local/etc/pot/pot.conf\npot's configuration, read for every engine setting \
         the agent config leaves out\n\
         .SH \"SEE ALSO\"\npotctl(8), pot(8), nomad(1), jail(8), rctl(8), pf(4)\n",
    );
    page
}

#[test]
fn nomad_pot_driver_8_is_current() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let page = driver_page(&readme);
    for option in [
        "tool_path",
        "allowed_host_paths",
        "image",
        "command",
        "port_map",
    ] {
        assert!(
            page.contains(&format!(".TP\n\\fB{option}\\fR")),
            "nomad-pot-driver(8) has no entry for {option}"
        );
    }
    check_current("nomad-pot-driver.8", &page);
}
