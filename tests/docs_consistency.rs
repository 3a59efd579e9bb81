//! The documentation and the packaging files follow the binary. The built `ufm-pkeyd` is the
//! source of truth (its `--help` is printed from the flag table in `src/cli/flags.rs` and the
//! exit-code table in `src/error.rs`, its `config` from the key table in `src/config/`), and
//! these tests fail when:
//!
//! - a sub-command, or a flag of `ufm-pkeyd <command> --help` (with its value), has no entry in
//!   `man/ufm-pkeyd.8`, or is not offered by the bash, zsh or fish completion in `packaging/`
//!   for that command (or a completion offers a flag the command does not take, or completes a
//!   value wrongly: files for FILE, directories for DIR, the words of `a|b`, nothing else);
//! - a key printed by `ufm-pkeyd config` has no entry with its default in
//!   `man/ufm-pkeyd.yaml.5`, or no commented line with its default in `packaging/ufm-pkeyd.yaml`;
//! - README.md's "Exit codes" tables or the man page's EXIT STATUS list another code for a
//!   command than its `--help` does (printed from the exit-code table in `src/error.rs`);
//! - a tracked file (`git ls-files`) holds a conflict marker line;
//! - the man pages, the Debian changelog or the RPM spec name another version than Cargo.toml.
//!
//! No etcd and no UFM are needed; git is, for the conflict markers. The bash and fish completions are exercised by the shells
//! themselves (fish's `complete -C`); the zsh one by zsh with `_arguments` stubbed to print its
//! specifications. Without zsh or fish installed, their files are parsed instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ufm-pkeyd");

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// Runs the binary away from any systemd or site setting that could change its output.
fn run(args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("run {BIN}: {e}"));
    assert!(
        output.status.success(),
        "ufm-pkeyd {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The sub-commands listed by `ufm-pkeyd --help`.
fn commands() -> Vec<String> {
    let help = run(&["--help"]);
    let list: Vec<String> = help
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(list.len() >= 5, "no commands found in --help:\n{help}");
    list
}

/// One option line of `ufm-pkeyd <command> --help`: its long names and its value, if any.
#[derive(Debug)]
struct HelpFlag {
    names: Vec<String>,
    value: Option<String>,
}

/// Parses the options of `ufm-pkeyd <command> --help`. The names and value fill a padded
/// column; when they overflow it, a single space separates them from the description.
fn help_flags(command: &str) -> Vec<HelpFlag> {
    let help = run(&[command, "--help"]);
    let lines: Vec<&str> = help.lines().filter(|l| l.starts_with("  -")).collect();
    // The description column: where most lines' descriptions start.
    let mut starts: BTreeMap<usize, usize> = BTreeMap::new();
    for line in &lines {
        let rest = &line[2..];
        if let Some(gap) = rest.find("  ") {
            let start = gap + rest[gap..].len() - rest[gap..].trim_start().len();
            *starts.entry(start).or_default() += 1;
        }
    }
    let column = starts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(c, _)| *c)
        .expect("padded option lines");
    let mut flags = Vec::new();
    for line in lines {
        let rest = &line[2..];
        let end = if rest.len() > column && rest.as_bytes()[column - 1] == b' ' {
            column
        } else {
            // Overflow: the names and value end at the first space past the column.
            let from = column.min(rest.len());
            rest[from..].find(' ').map_or(rest.len(), |i| from + i)
        };
        let mut names = Vec::new();
        let mut value = None;
        for token in rest[..end].split_whitespace() {
            let token = token.trim_end_matches(',');
            if token.starts_with("--") {
                names.push(token.to_string());
            } else if !token.starts_with('-') {
                value = Some(token.to_string());
            }
        }
        if !names.is_empty() {
            flags.push(HelpFlag { names, value });
        }
    }
    assert!(!flags.is_empty(), "no options in `{command} --help`");
    flags
}

/// Roff text as a reader sees it: no font escapes, plain hyphens.
fn plain(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    let mut chars = roff.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('f') => {
                // \fB, \fR, \fI, \fP, or \f(XX: skip the font name.
                let long_name = usize::from(chars.next() == Some('('));
                chars.by_ref().take(2 * long_name).for_each(drop);
            }
            Some('-') => out.push('-'),
            Some('&') => {}
            Some('e') => out.push('\\'),
            Some('(') => {
                let name: String = [chars.next(), chars.next()].into_iter().flatten().collect();
                out.push_str(match name.as_str() {
                    "em" | "en" => "-",
                    "->" => "->",
                    _ => " ",
                });
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A man page cut into entries: for each `.TP`, its section, its tag line and its body, as
/// plain text.
struct Entry {
    section: String,
    tag: String,
    body: String,
}

fn entries(roff: &str) -> Vec<Entry> {
    let mut result: Vec<Entry> = Vec::new();
    let mut section = String::new();
    let mut lines = roff.lines();
    let mut current: Option<Entry> = None;
    while let Some(line) = lines.next() {
        let is_request = |name: &str| line == name || line.starts_with(&format!("{name} "));
        if is_request(".SH") || is_request(".SS") || is_request(".TP") {
            result.extend(current.take());
        }
        if is_request(".SH") {
            section = plain(line[3..].trim()).trim_matches('"').to_string();
        } else if is_request(".TP") {
            let tag = lines.next().unwrap_or_default();
            current = Some(Entry {
                section: section.clone(),
                tag: plain(&strip_macro(tag)),
                body: String::new(),
            });
        } else if let Some(entry) = current.as_mut() {
            if !line.starts_with(".\\\"") {
                entry.body.push_str(&plain(&strip_macro(line)));
                entry.body.push(' ');
            }
        }
    }
    result.extend(current);
    result
}

/// `.B x`, `.BR x ", " y` → the text with the quotes removed.
fn strip_macro(line: &str) -> String {
    let text = match line.split_once(' ') {
        Some((request, rest)) if request.starts_with('.') => rest,
        _ if line.starts_with('.') => "",
        _ => line,
    };
    text.replace('"', "")
}

/// Words of a tag line: flag names, key names, codes.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_and_flag_is_in_the_man_page() {
    let man = entries(&repo_file("man/ufm-pkeyd.8"));
    let mut missing = Vec::new();
    for command in commands() {
        if !man
            .iter()
            .any(|e| e.section == "COMMANDS" && words(&e.tag).contains(&command))
        {
            missing.push(format!("command {command}: no entry in COMMANDS"));
        }
        for flag in help_flags(&command) {
            for name in &flag.names {
                let tagged: Vec<&Entry> = man
                    .iter()
                    .filter(|e| e.section == "OPTIONS" && words(&e.tag).contains(name))
                    .collect();
                if tagged.is_empty() {
                    missing.push(format!("`{command} {name}`: no entry in OPTIONS"));
                } else if let Some(value) = &flag.value {
                    if !tagged.iter().any(|e| e.tag.contains(value.as_str())) {
                        missing.push(format!(
                            "`{command} {name} {value}`: the entry does not name the value {value}"
                        ));
                    }
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "man/ufm-pkeyd.8 lacks:\n  {}",
        missing.join("\n  ")
    );
}

/// (command, exit code) pairs.
type ExitCodes = BTreeSet<(String, i32)>;

/// The exit codes each command's `--help` lists under "Exit status:" (printed from the
/// exit-code table in `src/error.rs`).
fn help_exit_codes() -> ExitCodes {
    let mut codes = ExitCodes::new();
    for command in commands() {
        let help = run(&[command.as_str(), "--help"]);
        let listed: Vec<i32> = help
            .lines()
            .skip_while(|l| l.trim() != "Exit status:")
            .skip(1)
            .map_while(|l| {
                l.strip_prefix("  ")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        assert!(
            !listed.is_empty(),
            "`{command} --help` lists no exit status:\n{help}"
        );
        codes.extend(listed.into_iter().map(|code| (command.clone(), code)));
    }
    codes
}

/// The commands named in a list such as `monitor, sync` or `(ufm, etcd)`.
fn command_names(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Describes the difference between the exit codes a document lists and `--help`'s.
fn exit_code_drift(documented: &ExitCodes, help: &ExitCodes) -> Vec<String> {
    let mut problems: Vec<String> = help
        .difference(documented)
        .map(|(command, code)| {
            format!("`{command}` returns {code} (its --help says so): not listed")
        })
        .collect();
    problems.extend(documented.difference(help).map(|(command, code)| {
        format!("lists {code} for `{command}`, which its --help does not list")
    }));
    problems
}

#[test]
fn the_readme_exit_code_tables_list_each_commands_codes_as_its_help_does() {
    let readme = repo_file("README.md");
    let known = commands();
    let mut documented = ExitCodes::new();
    let section = readme
        .lines()
        .skip_while(|l| !(l.starts_with('#') && l.trim_start_matches('#').trim() == "Exit codes"))
        .skip(1)
        .take_while(|l| !l.starts_with("## "));
    for row in section.filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let (Some(code), Some(names)) = (cells.first(), cells.last()) else {
            continue;
        };
        let Ok(code) = code.parse::<i32>() else {
            continue;
        };
        for name in command_names(names) {
            assert!(
                known.contains(&name),
                "README.md, Exit codes: {name:?} in the row of {code} is not a command"
            );
            documented.insert((name, code));
        }
    }
    let problems = exit_code_drift(&documented, &help_exit_codes());
    assert!(
        problems.is_empty(),
        "README.md, \"Exit codes\" (a table row `| code | meaning | commands |`):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_man_page_exit_status_lists_each_commands_codes_as_its_help_does() {
    let man = entries(&repo_file("man/ufm-pkeyd.8"));
    let known = commands();
    let mut documented = ExitCodes::new();
    for entry in man.iter().filter(|e| e.section == "EXIT STATUS") {
        let tag = entry.tag.trim();
        let (code, names) = tag.split_once(' ').unwrap_or((tag, ""));
        let code: i32 = code
            .parse()
            .unwrap_or_else(|_| panic!("man/ufm-pkeyd.8, EXIT STATUS: tag {tag:?} is no code"));
        let names = command_names(names);
        assert!(
            !names.is_empty(),
            "man/ufm-pkeyd.8, EXIT STATUS: the tag of {code} names no command: {tag:?}"
        );
        for name in names {
            assert!(
                known.contains(&name),
                "man/ufm-pkeyd.8, EXIT STATUS: {name:?} in the tag of {code} is not a command"
            );
            documented.insert((name, code));
        }
    }
    let problems = exit_code_drift(&documented, &help_exit_codes());
    assert!(
        problems.is_empty(),
        "man/ufm-pkeyd.8, EXIT STATUS (a tag `CODE (command, ...)`):\n  {}",
        problems.join("\n  ")
    );
}

/// The options of every `ufm-pkeyd status …` command line in the docs and the units (with the
/// comment lines that continue it: `#     --state-file …`), for the file named first.
fn status_examples() -> Vec<(String, Vec<String>)> {
    let flags = help_flags("status");
    let switches: BTreeSet<String> = flags
        .into_iter()
        .filter(|f| f.value.is_none())
        .flat_map(|f| f.names)
        .collect();
    let mut examples = Vec::new();
    for file in [
        "README.md",
        "man/ufm-pkeyd.8",
        "packaging/ufm-pkeyd.service",
        "packaging/ufm-pkeyd@.service",
    ] {
        let text = repo_file(file);
        let lines: Vec<String> = if file.starts_with("man/") {
            text.lines().map(plain).collect()
        } else {
            text.lines().map(str::to_string).collect()
        };
        for (i, line) in lines.iter().enumerate() {
            let Some(at) = line.find("ufm-pkeyd status") else {
                continue;
            };
            let mut rest = line[at + "ufm-pkeyd status".len()..].to_string();
            for next in &lines[i + 1..] {
                let continued = next.trim_start_matches('#').trim_start();
                if !continued.starts_with("--") {
                    break;
                }
                rest.push(' ');
                rest.push_str(continued);
            }
            let mut args: Vec<String> = Vec::new();
            let mut wants_value = false;
            for token in rest.split_whitespace() {
                let word = token.trim_end_matches(['`', ',', ')']);
                if (wants_value && !word.starts_with('#')) || word.starts_with("--") {
                    // A flag status does not know is taken with its value, to be refused.
                    wants_value = !wants_value && !switches.contains(word);
                    args.push(word.to_string());
                } else {
                    break;
                }
                if word.len() != token.len() {
                    break;
                }
            }
            if !args.is_empty() {
                examples.push((format!("{file}:{}", i + 1), args));
            }
        }
    }
    examples
}

#[test]
fn every_status_command_line_in_the_docs_and_units_is_one_status_accepts() {
    let scratch = scratch_dir("status-examples");
    let examples = status_examples();
    assert!(
        examples.len() >= 3,
        "few status examples found: {examples:?}"
    );
    let mut refused = Vec::new();
    for (place, args) in examples {
        // --json changes only the output's form; the text form tells a usage error (one line)
        // from a check that ran (detail lines follow its summary).
        let mut command: Vec<&str> = vec!["status"];
        command.extend(args.iter().map(String::as_str).filter(|a| *a != "--json"));
        let output = Command::new(BIN)
            .args(&command)
            .current_dir(&scratch)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap_or_else(|e| panic!("run {BIN}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        if stdout.lines().count() < 2 {
            refused.push(format!(
                "{place}: ufm-pkeyd status {}: {}",
                args.join(" "),
                stdout.trim()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        refused.is_empty(),
        "`ufm-pkeyd status` refuses command lines the docs give:\n  {}",
        refused.join("\n  ")
    );
}

/// Whether a line is one git writes around a conflict: `<<<<<<< ours`, `=======`,
/// `>>>>>>> theirs`. Underlines of other lengths (`========`) are not.
fn is_conflict_marker(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.starts_with(b"<<<<<<< ") || line.starts_with(b">>>>>>> ") || line == b"======="
}

#[test]
fn no_tracked_file_holds_a_conflict_marker() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("run git ls-files (this test needs git and a git checkout)");
    assert!(
        listed.status.success(),
        "git ls-files failed in {}: {}",
        root.display(),
        String::from_utf8_lossy(&listed.stderr)
    );
    let mut found = Vec::new();
    let mut files = 0;
    for path in listed.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = String::from_utf8_lossy(path).into_owned();
        // A file deleted in the work tree but not yet in the index has nothing to check.
        let Ok(bytes) = std::fs::read(root.join(&path)) else {
            continue;
        };
        files += 1;
        for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if is_conflict_marker(line) {
                found.push(format!(
                    "{path}:{}: {}",
                    n + 1,
                    String::from_utf8_lossy(line).trim_end()
                ));
            }
        }
    }
    assert!(files > 20, "git ls-files listed only {files} files");
    assert!(
        found.is_empty(),
        "conflict markers in tracked files (resolve the merge):\n  {}",
        found.join("\n  ")
    );
}

/// Runs the completion function the way bash does for `ufm-pkeyd WORDS…` (the last word is
/// the one being completed) and returns the candidates.
fn complete(words: &[&str]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/ufm-pkeyd.bash");
    let output = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1" || exit 3
complete -p ufm-pkeyd >/dev/null || exit 4
shift
COMP_WORDS=(ufm-pkeyd "$@")
COMP_CWORD=$#
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
_ufm_pkeyd ufm-pkeyd "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}""#,
        )
        .arg("complete")
        .arg(&script)
        .args(words)
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "completion of {words:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_bash_completion_offers_each_commands_flags() {
    let offered: BTreeSet<String> = complete(&[""]).into_iter().collect();
    let mut problems = Vec::new();
    for command in commands() {
        if !offered.contains(&command) {
            problems.push(format!("command {command} is not offered"));
        }
        let flags = help_flags(&command);
        let names: BTreeSet<String> = flags.iter().flat_map(|f| f.names.clone()).collect();
        let candidates: BTreeSet<String> =
            complete(&[command.as_str(), "--"]).into_iter().collect();
        for name in names.difference(&candidates) {
            problems.push(format!("`{command} {name}` is not offered"));
        }
        for name in candidates.difference(&names) {
            problems.push(format!(
                "`{command} {name}` is offered but `{command} --help` does not list it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "packaging/ufm-pkeyd.bash:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_bash_completion_completes_values() {
    let dir = scratch_dir("completion");
    std::fs::create_dir_all(dir.join("subdir")).expect("mkdir");
    std::fs::write(dir.join("file.yaml"), "").expect("write");
    let prefix = format!("{}/", dir.display());
    let set = |v: Vec<String>| v.into_iter().collect::<BTreeSet<String>>();
    let mut problems = Vec::new();
    for command in commands() {
        for flag in help_flags(&command) {
            let Some(value) = &flag.value else { continue };
            for name in &flag.names {
                let args = [command.as_str(), name.as_str()];
                let got = |cur: &str| set(complete(&[args[0], args[1], cur]));
                let expected: Option<BTreeSet<String>> = if value.contains('|') {
                    Some(value.split('|').map(str::to_string).collect())
                } else if value == "FILE" {
                    Some(set(vec![
                        format!("{prefix}file.yaml"),
                        format!("{prefix}subdir"),
                    ]))
                } else if value == "DIR" {
                    Some(set(vec![format!("{prefix}subdir")]))
                } else {
                    None
                };
                let cur = if value.contains('|') { "" } else { &prefix };
                match expected {
                    Some(expected) if got(cur) != expected => problems.push(format!(
                        "`{command} {name} {value}` completes {:?}, not {expected:?}",
                        got(cur)
                    )),
                    // Free values (hosts, numbers, keys): never flags or files.
                    None if got("--").iter().any(|c| c.starts_with("--")) => problems.push(
                        format!("`{command} {name} {value}` offers flags for its value"),
                    ),
                    _ => {}
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        problems.is_empty(),
        "packaging/ufm-pkeyd.bash:\n  {}",
        problems.join("\n  ")
    );
}

/// How a completion completes the value of a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ValueKind {
    /// The flag takes no value.
    NoValue,
    File,
    Dir,
    /// One of these words (`http|https` in the help).
    Words(BTreeSet<String>),
    /// A free value (host, number, key): neither files nor flags.
    Free,
}

/// What `ufm-pkeyd <command> --help` says a flag's value is.
fn expected_kind(flag: &HelpFlag) -> ValueKind {
    match flag.value.as_deref() {
        None => ValueKind::NoValue,
        Some("FILE") => ValueKind::File,
        Some("DIR") => ValueKind::Dir,
        Some(v) if v.contains('|') => ValueKind::Words(v.split('|').map(str::to_string).collect()),
        Some(_) => ValueKind::Free,
    }
}

/// Compares what a completion offers for each command (flag name → value kind) with `--help`.
fn compare_completion(file: &str, offered: impl Fn(&str) -> BTreeMap<String, ValueKind>) {
    let mut problems = Vec::new();
    for command in commands() {
        let got = offered(&command);
        let mut expected = BTreeMap::new();
        for flag in help_flags(&command) {
            for name in &flag.names {
                expected.insert(name.clone(), expected_kind(&flag));
            }
        }
        for (name, kind) in &expected {
            match got.get(name) {
                None => problems.push(format!("`{command} {name}` is not offered")),
                Some(k) if k != kind => problems.push(format!(
                    "`{command} {name}` completes its value as {k:?}, not {kind:?}"
                )),
                Some(_) => {}
            }
        }
        for name in got.keys().filter(|n| !expected.contains_key(*n)) {
            problems.push(format!(
                "`{command} {name}` is offered but `{command} --help` does not list it"
            ));
        }
    }
    assert!(problems.is_empty(), "{file}:\n  {}", problems.join("\n  "));
}

fn shell_available(shell: &str) -> bool {
    Command::new(shell)
        .args(["-c", "exit 0"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One `_arguments` specification of the zsh completion: `(excl)--name=[help]:message:action`.
fn zsh_spec(spec: &str) -> Option<(String, ValueKind)> {
    let spec = match spec.strip_prefix('(') {
        Some(rest) => &rest[rest.find(')')? + 1..],
        None => spec,
    };
    if !spec.starts_with("--") {
        return None;
    }
    let end = spec.find(['=', '[']).unwrap_or(spec.len());
    let name = spec[..end].to_string();
    if !spec[end..].starts_with("=[") {
        return Some((name, ValueKind::NoValue));
    }
    let after_help = &spec[spec.find("]:")? + 2..];
    let action = after_help.split_once(':').map_or("", |(_, a)| a).trim();
    let kind = if action == "_files -/" {
        ValueKind::Dir
    } else if action == "_files" {
        ValueKind::File
    } else if let Some(words) = action.strip_prefix('(').and_then(|a| a.strip_suffix(')')) {
        ValueKind::Words(words.split_whitespace().map(str::to_string).collect())
    } else {
        ValueKind::Free
    };
    Some((name, kind))
}

/// The specifications `_ufm-pkeyd` passes to `_arguments` for `ufm-pkeyd <command> …`, from
/// zsh itself when it is installed, else from the file's arrays and per-command lists.
fn zsh_specs(command: &str, script: &Path) -> Vec<String> {
    if shell_available("zsh") {
        let output = Command::new("zsh")
            .arg("-fc")
            .arg(
                r#"_arguments() { printf '%s\n' "$@"; }
_describe() { :; }
source "$1" >/dev/null 2>&1 || true
words=(ufm-pkeyd "$2" ""); CURRENT=3
_ufm-pkeyd"#,
            )
            .arg("zsh")
            .arg(script)
            .arg(command)
            .output()
            .expect("run zsh");
        assert!(
            output.status.success(),
            "zsh: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return String::from_utf8(output.stdout)
            .expect("utf-8")
            .lines()
            .map(str::to_string)
            .collect();
    }
    let text = std::fs::read_to_string(script).expect("read the zsh completion");
    let unquote = |s: &str| s.trim().trim_matches('\'').replace("'\\''", "'");
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_suffix("=(") {
            current = Some(name.to_string());
        } else if trimmed == ")" {
            current = None;
        } else if let Some(name) = &current {
            groups
                .entry(name.clone())
                .or_default()
                .push(unquote(trimmed));
        } else if let Some((name, value)) = trimmed
            .strip_prefix("local ")
            .and_then(|rest| rest.split_once("='"))
        {
            groups.insert(name.to_string(), vec![unquote(&format!("'{value}"))]);
        }
    }
    let list = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{command}) specs=(")))
        .unwrap_or_else(|| panic!("{}: no `{command}) specs=(…)` line", script.display()));
    list.trim_end_matches(" ;;")
        .trim_end_matches(')')
        .split_whitespace()
        .flat_map(|var| {
            groups
                .get(var.trim_start_matches('$'))
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn the_zsh_completion_offers_each_commands_flags_and_values() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/ufm-pkeyd.zsh");
    compare_completion("packaging/ufm-pkeyd.zsh", |command| {
        zsh_specs(command, &script)
            .iter()
            .filter_map(|spec| zsh_spec(spec))
            .collect()
    });
}

/// Candidates fish's `complete -C` offers for the command line `ufm-pkeyd ARGS`, run in DIR.
fn fish_complete(script: &Path, dir: &Path, line: &str) -> BTreeSet<String> {
    let output = Command::new("fish")
        .arg("--no-config")
        .arg("-c")
        .arg(r#"source $argv[1]; and complete -C"ufm-pkeyd $argv[2]""#)
        .arg(script)
        .arg(line)
        .current_dir(dir)
        .output()
        .expect("run fish");
    assert!(
        output.status.success(),
        "fish: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A line split as fish (or sh) would: single quotes and backslash escapes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                w.extend(chars.by_ref().take_while(|c| *c != '\''));
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The value kind of one `complete` line of the fish completion, as fish prints them back
/// (`complete -c ufm-pkeyd`) or as the file writes them through `_ufm_pkeyd_flag`.
fn fish_kind(words: &[String]) -> ValueKind {
    let has = |w: &str| words.iter().any(|x| x == w);
    let arg = words
        .iter()
        .position(|w| w == "-a")
        .and_then(|i| words.get(i + 1));
    if has("--force-files") || has("-F") {
        ValueKind::File
    } else if has("--exclusive") || has("-x") {
        match arg {
            Some(a) if a.contains("__fish_complete_directories") => ValueKind::Dir,
            Some(a) if a.starts_with('(') => ValueKind::Free,
            Some(a) => ValueKind::Words(a.split_whitespace().map(str::to_string).collect()),
            None => ValueKind::Free,
        }
    } else {
        ValueKind::NoValue
    }
}

/// The flags and value kinds of the fish completion for a command. With fish installed: the
/// flags fish offers after `ufm-pkeyd COMMAND --`, each value kind from the completions fish
/// registered, and the files, directories or words it then offers checked. Without fish:
/// from the file's `_ufm_pkeyd_flag COMMANDS FLAG KIND` lines.
fn fish_offered(command: &str, script: &Path, dir: &Path) -> BTreeMap<String, ValueKind> {
    if !shell_available("fish") {
        let text = std::fs::read_to_string(script).expect("read the fish completion");
        let mut sets: BTreeMap<String, String> = BTreeMap::new();
        let mut offered = BTreeMap::new();
        for line in text.lines() {
            let w = shell_words(line);
            match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["set", "-l", name, value] => {
                    sets.insert(format!("${name}"), value.to_string());
                }
                ["_ufm_pkeyd_flag", commands, flag, kind, ..] => {
                    let commands = sets.get(*commands).map_or(*commands, String::as_str);
                    if commands.split_whitespace().any(|c| c == command) {
                        let kind = match *kind {
                            "-" => ValueKind::NoValue,
                            "file" => ValueKind::File,
                            "dir" => ValueKind::Dir,
                            "host" | "none" => ValueKind::Free,
                            words => ValueKind::Words(
                                words.split_whitespace().map(str::to_string).collect(),
                            ),
                        };
                        offered.insert(format!("--{flag}"), kind);
                    }
                }
                _ => {}
            }
        }
        return offered;
    }
    let registered = Command::new("fish")
        .args([
            "--no-config",
            "-c",
            "source $argv[1]; and complete -c ufm-pkeyd",
        ])
        .arg(script)
        .output()
        .expect("run fish");
    let mut kinds = BTreeMap::new();
    for line in String::from_utf8_lossy(&registered.stdout).lines() {
        let w = shell_words(line);
        let after = |flag: &str| w.iter().position(|x| x == flag).and_then(|i| w.get(i + 1));
        let (Some(name), Some(condition)) = (after("-l"), after("-n")) else {
            continue;
        };
        let for_command = condition
            .strip_prefix("__fish_seen_subcommand_from ")
            .is_some_and(|c| c.split_whitespace().any(|c| c == command));
        if for_command {
            kinds.insert(format!("--{name}"), fish_kind(&w));
        }
    }
    let prefix = format!("{}/", dir.display());
    let files: BTreeSet<String> = [format!("{prefix}file.yaml"), format!("{prefix}subdir/")].into();
    let dirs: BTreeSet<String> = [format!("{prefix}subdir/")].into();
    let mut offered = BTreeMap::new();
    for name in fish_complete(script, dir, &format!("{command} --")) {
        let kind = kinds.get(&name).cloned().unwrap_or(ValueKind::NoValue);
        // What fish really offers for the value must fit the kind it registered.
        let observed = match &kind {
            ValueKind::File => Some((
                fish_complete(script, dir, &format!("{command} {name} {prefix}")),
                files.clone(),
            )),
            ValueKind::Dir => Some((
                fish_complete(script, dir, &format!("{command} {name} {prefix}")),
                dirs.clone(),
            )),
            ValueKind::Words(words) => Some((
                fish_complete(script, dir, &format!("{command} {name} ")),
                words.clone(),
            )),
            _ => None,
        };
        let kind = match observed {
            Some((got, want)) if got != want => ValueKind::Words(got),
            _ => kind,
        };
        offered.insert(name, kind);
    }
    offered
}

#[test]
fn the_fish_completion_offers_each_commands_flags_and_values() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/ufm-pkeyd.fish");
    let dir = scratch_dir("fish");
    std::fs::create_dir_all(dir.join("subdir")).expect("mkdir");
    std::fs::write(dir.join("file.yaml"), "").expect("write");
    compare_completion("packaging/ufm-pkeyd.fish", |command| {
        fish_offered(command, &script, &dir)
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ufm-pkeyd-docs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The default of a key, as `ufm-pkeyd config` shows it.
#[derive(Debug)]
enum KeyDefault {
    Value(String),
    Unset,
    /// Set by the command line of the test (`use-pcocc` by `--no-pcocc`).
    Unknown,
}

/// Every key of `ufm-pkeyd config` (its first column) with its default.
/// `--config /dev/null` keeps a configuration installed on the test machine out of it.
fn config_keys() -> Vec<(String, KeyDefault)> {
    let text = run(&["config", "--no-pcocc", "--config", "/dev/null"]);
    let keys: Vec<(String, KeyDefault)> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(|line| {
            let mut fields = line.split_whitespace();
            let key = fields.next().unwrap_or_default().to_string();
            let value = fields.next().unwrap_or("-");
            let default = if line.ends_with("(default)") {
                KeyDefault::Value(value.to_string())
            } else if value == "-" {
                KeyDefault::Unset
            } else {
                KeyDefault::Unknown
            };
            (key, default)
        })
        .collect();
    assert!(keys.len() > 30, "few keys in `ufm-pkeyd config`:\n{text}");
    keys
}

#[test]
fn every_config_key_is_in_the_file_format_man_page_with_its_default() {
    let man = entries(&repo_file("man/ufm-pkeyd.yaml.5"));
    let mut problems = Vec::new();
    for (key, default) in config_keys() {
        let Some(entry) = man
            .iter()
            .find(|e| e.section == "KEYS" && e.tag.trim() == key)
        else {
            problems.push(format!("{key}: no entry in KEYS"));
            continue;
        };
        let body = entry.body.split_whitespace().collect::<Vec<_>>().join(" ");
        match default {
            KeyDefault::Value(default) if !body.contains(&format!("Default: {default}")) => {
                problems.push(format!(
                    "{key}: the entry does not say `Default: {default}`: {body}"
                ))
            }
            KeyDefault::Unset if !body.contains("Default: unset") => {
                problems.push(format!("{key}: the entry does not say `Default: unset`"))
            }
            KeyDefault::Unknown if !body.contains("Default: ") => {
                problems.push(format!("{key}: the entry gives no default"))
            }
            _ => {}
        }
    }
    assert!(
        problems.is_empty(),
        "man/ufm-pkeyd.yaml.5:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_key_in_the_file_format_man_page_names_its_flag_or_says_it_has_none() {
    let man = entries(&repo_file("man/ufm-pkeyd.yaml.5"));
    let flags: BTreeSet<String> = help_flags("config")
        .into_iter()
        .flat_map(|f| f.names)
        .collect();
    let mut problems = Vec::new();
    for (key, _) in config_keys() {
        let Some(entry) = man
            .iter()
            .find(|e| e.section == "KEYS" && e.tag.trim() == key)
        else {
            continue; // every_config_key_is_in_the_file_format_man_page_with_its_default
        };
        let body = entry.body.split_whitespace().collect::<Vec<_>>().join(" ");
        let named = body
            .split("Flag ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|flag| flag.trim_end_matches(['.', ',', ';', ')']).to_string())
            .find(|flag| flag.starts_with("--"));
        match named {
            Some(flag) if !flags.contains(&flag) => problems.push(format!(
                "{key}: names the flag {flag}, which `config --help` does not list"
            )),
            Some(_) => {}
            None if !body.contains("No flag") => {
                problems.push(format!("{key}: names no flag, nor says `No flag`"))
            }
            None if flags.contains(&format!("--{key}")) => {
                problems.push(format!("{key}: says `No flag`, but --{key} is one"))
            }
            None => {}
        }
    }
    assert!(
        problems.is_empty(),
        "man/ufm-pkeyd.yaml.5, KEYS:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_example_configuration_lists_every_key_commented_out_with_its_default() {
    let example = repo_file("packaging/ufm-pkeyd.yaml");
    let lines: BTreeMap<&str, &str> = example
        .lines()
        .filter_map(|l| l.strip_prefix('#')?.split_once(':'))
        .filter(|(key, _)| !key.is_empty() && !key.contains(' '))
        .collect();
    let mut problems = Vec::new();
    for line in example.lines() {
        if line.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            problems.push(format!("not commented out: {line}"));
        }
    }
    for (key, default) in config_keys() {
        match (lines.get(key.as_str()), default) {
            (None, _) => problems.push(format!("{key}: no `#{key}:` line")),
            (Some(rest), KeyDefault::Value(default)) => {
                let value = rest.split('#').next().unwrap_or_default().trim();
                if value != default {
                    problems.push(format!(
                        "{key}: shows {value:?}, the default is {default:?}"
                    ));
                }
                if !rest.contains('#') {
                    problems.push(format!("{key}: no explanation after the value"));
                }
            }
            (Some(rest), KeyDefault::Unset) => {
                if !rest.contains("unset") {
                    problems.push(format!("{key}: has no default; its line should say unset"));
                }
            }
            (Some(rest), KeyDefault::Unknown) => {
                if !rest.contains('#') {
                    problems.push(format!("{key}: no explanation after the value"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "packaging/ufm-pkeyd.yaml:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn man_pages_and_debian_changelog_carry_the_crate_version() {
    let version = env!("CARGO_PKG_VERSION");
    for page in ["man/ufm-pkeyd.8", "man/ufm-pkeyd.yaml.5"] {
        let text = repo_file(page);
        let th = text
            .lines()
            .find(|l| l.starts_with(".TH "))
            .unwrap_or_else(|| panic!("{page}: no .TH line"));
        assert!(
            th.contains(&format!("\"ufm-pkeyd {version}\"")),
            "{page}: .TH does not name ufm-pkeyd {version}: {th}"
        );
    }
    let spec = repo_file("packaging/rpm/ufm-pkeyd.spec");
    let spec_version = spec
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(str::trim);
    assert_eq!(
        spec_version,
        Some(version),
        "packaging/rpm/ufm-pkeyd.spec: Version is not {version}"
    );
    let entry = spec
        .lines()
        .skip_while(|l| *l != "%changelog")
        .nth(1)
        .unwrap_or_default();
    assert!(
        entry.ends_with(&format!(" - {version}-1")),
        "packaging/rpm/ufm-pkeyd.spec: the first %changelog entry is not for {version}-1: {entry}"
    );
    let changelog = repo_file("packaging/debian/changelog");
    let first = changelog.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("ufm-pkeyd ({version}-")),
        "packaging/debian/changelog: the first entry is not for {version}: {first}"
    );
}
