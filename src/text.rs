//! Text from outside (UFM partition names and error texts, etcd keys and values, URLs) made
//! safe to show to a person: control characters are escaped, so that a value cannot move the
//! cursor, retitle or clear a terminal (`ESC ] 0 ; … BEL`, `ESC [ 2 J`), or start a line of its
//! own in a log (a forged `info:` record is a journal entry of its own under journald).
//!
//! Also how a count is said ("1 partition", "2 partitions"), and a list of PKeys kept short.
//!
//! The one rule, used by the logger for every record, by the text renderers of the commands
//! for every field that came from outside, and for sd_notify's `STATUS=`. JSON output
//! (`--json`) does not use it: serde_json escapes control characters itself and keeps every
//! other character exact.

use std::borrow::Cow;
use std::collections::BTreeSet;

use crate::model::PKey;

/// `text` with every control character (C0, DEL, C1) and every Unicode bidirectional
/// override written as an escape: `\n`, `\r`, `\t`, `\x1b`, `\u{202e}`. Other characters,
/// the backslash included, stay as they are. Borrows when there is nothing to escape, which
/// is nearly always.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Control characters, and the bidirectional embeddings, overrides and isolates that make a
/// terminal show text in another order than it is (U+202A–U+202E, U+2066–U+2069).
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A count with its noun: "1 partition", "2 partitions".
pub(crate) fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// How many PKeys a list in a log line or message names before "… and N more".
const LISTED: usize = 10;

/// A list of PKeys for a log line or a message, kept short: runs of consecutive PKeys as one
/// range (`0x1000-0x17cf`), at most ten items, then how many more and where to see them all.
pub(crate) fn pkey_list(pkeys: &BTreeSet<PKey>) -> String {
    let mut runs: Vec<(PKey, PKey)> = Vec::new();
    for pkey in pkeys {
        match runs.last_mut() {
            Some((_, last)) if last.value().checked_add(1) == Some(pkey.value()) => {
                *last = *pkey;
            }
            _ => runs.push((*pkey, *pkey)),
        }
    }
    let mut items: Vec<String> = runs
        .iter()
        .take(LISTED)
        .map(|(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect();
    if runs.len() > LISTED {
        let more: usize = runs[LISTED..]
            .iter()
            .map(|(first, last)| usize::from(last.value() - first.value()) + 1)
            .sum();
        items.push(format!("… and {more} more (ufm-pkeyd state --json)"));
    }
    items.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_and_line_breaks_are_shown_not_obeyed() {
        assert_eq!(
            escape("a\x1b]0;title\x07b\x1b[2Jc"),
            "a\\x1b]0;title\\x07b\\x1b[2Jc"
        );
        assert_eq!(
            escape("x\ninfo: 0x570: delete partition"),
            "x\\ninfo: 0x570: delete partition"
        );
        assert_eq!(escape("\r\t\u{7f}\u{9b}"), "\\r\\t\\x7f\\x9b");
        assert_eq!(escape("abc\u{202e}cba"), "abc\\u{202e}cba");
    }

    #[test]
    fn plain_text_is_kept_as_it_is_without_a_copy() {
        for text in ["0x1a", "pcocc/ω \\n-literal", ""] {
            assert!(matches!(escape(text), Cow::Borrowed(t) if t == text));
        }
    }
}
