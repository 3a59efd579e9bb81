//! `--help` for the tool and for each sub-command, printed from the flag table.

use super::flags::{COMMANDS, FLAGS};

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
            out.push_str(EXIT_CODES_HELP);
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
            out.push_str(if *name == "status" {
                STATUS_HELP
            } else {
                EXIT_CODES_HELP
            });
        }
    }
    out
}

const EXIT_CODES_HELP: &str = "\nExit codes: 0 success, 1 the operation failed (network, authentication, API),\n2 usage or configuration error, 3 not found, 4 changes pending (--dry-run).\nSee ufm-pkeyd(8).\n";

const STATUS_HELP: &str = "\nReads the status file the daemon and sync write beside the state file (status.json):\nno secret, no request to etcd or UFM; runs as any user. Exit codes (monitoring plugins):\n0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. See ufm-pkeyd(8).\n";
