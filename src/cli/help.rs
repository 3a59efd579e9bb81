//! `--help` for the tool and for each sub-command, printed from the flag table.

use super::flags::{COMMANDS, FLAGS};
use crate::error::{EXIT_CODES, Exit, exits_of};

/// The `--help` text of the tool, or of one sub-command.
pub(crate) fn help(command: Option<&str>) -> String {
    let mut out = String::new();
    match command.and_then(|name| COMMANDS.iter().find(|(n, _, _)| *n == name)) {
        None => {
            out.push_str(concat!(
                "ufm-pkeyd ",
                env!("CARGO_PKG_VERSION"),
                ": keep InfiniBand partition keys in NVIDIA UFM in step with pcocc's etcd\n\n",
                "Usage: ufm-pkeyd <COMMAND> [OPTIONS]\n\nCommands:\n"
            ));
            for (name, _, summary) in COMMANDS {
                out.push_str(&format!("  {name:<8} {summary}\n"));
            }
            out.push_str(
                "\nOptions:\n  -h, --help     print help (ufm-pkeyd <COMMAND> --help for a command's options)\n  -V, --version  print the version\n",
            );
            out.push_str(&exit_status(
                "Exit status (ufm-pkeyd <COMMAND> --help for a command's own):",
                EXIT_CODES,
            ));
            let plugin: Vec<String> = exits_of("status")
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e.code,
                        e.meaning.split(':').next().unwrap_or_default()
                    )
                })
                .collect();
            out.push_str(&format!(
                "  status, a monitoring plugin: {}\n",
                plugin.join(", ")
            ));
            out.push_str(SEE_MAN);
        }
        Some((name, bit, summary)) => {
            out.push_str(&format!(
                "ufm-pkeyd {name}: {summary}\n\nUsage: ufm-pkeyd {name} [OPTIONS]\n\nOptions:\n"
            ));
            for def in FLAGS.iter().filter(|f| f.commands & bit != 0) {
                let mut names = def.names.join(", ");
                if let Some(value) = def.value {
                    names.push(' ');
                    names.push_str(value);
                }
                out.push_str(&format!("  {names:<34} {}\n", def.help));
            }
            out.push_str("  -h, --help                         print this help\n");
            if *name == "status" {
                out.push_str(STATUS_HELP);
            }
            out.push_str(&exit_status("Exit status:", exits_of(name)));
            out.push_str(SEE_MAN);
        }
    }
    out
}

/// An "Exit status" section: the heading, then one line per code. Printed from the exit-code
/// table in `crate::error`, which tests/docs_consistency.rs reads back through `--help`.
fn exit_status(heading: &str, exits: &[Exit]) -> String {
    let mut out = format!("\n{heading}\n");
    for exit in exits {
        out.push_str(&format!("  {}  {}\n", exit.code, exit.meaning));
    }
    out
}

const SEE_MAN: &str = "See ufm-pkeyd(8).\n";

const STATUS_HELP: &str = "\nReads the status file the daemon and sync write beside the state file (status.json):\nno secret, no request to etcd or UFM; runs as any user.\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_its_exit_codes_in_the_table_in_order() {
        for (name, _, _) in COMMANDS {
            let codes: Vec<i32> = exits_of(name).iter().map(|e| e.code).collect();
            assert!(codes.contains(&0), "{name}: no exit status 0 in the table");
            assert!(
                codes.windows(2).all(|w| w[0] < w[1]),
                "{name}: codes not in order: {codes:?}"
            );
        }
    }

    #[test]
    fn each_commands_help_lists_only_its_own_exit_codes() {
        let help = help(Some("config"));
        let section = help.split("Exit status:\n").nth(1).unwrap_or_default();
        let codes: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("  ")?.split_whitespace().next())
            .collect();
        assert_eq!(codes, ["0", "1", "2", "130", "143"], "{help}");
    }
}
