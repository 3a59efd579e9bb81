//! The domain values of ufm-pkeyd, with no I/O: partition keys, port GUIDs, membership, and
//! the partition entries that pcocc writes into etcd.
//!
//! Outside text becomes one of these types at the edge of the program (command line, etcd
//! value, UFM answer); past that point the code cannot hold an invalid PKey or GUID. Every
//! parse error names the offending input.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// An InfiniBand partition key without its full-membership bit (0x0000–0x7fff).
///
/// Parses any `0x` hex spelling of 1–4 digits in either case (`0x1a`, `0X001A`), compares
/// numerically, and prints as UFM does: lowercase, unpadded (`0x1a`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PKey(u16);

impl PKey {
    /// UFM's read-only default ("management") partition.
    pub(crate) const DEFAULT: PKey = PKey(0x7fff);
    /// The lowest key a partition we write may have.
    pub(crate) const MIN_WRITABLE: u16 = 0x0001;
    /// The highest key a partition we write may have (0x7fff is UFM's own).
    pub(crate) const MAX_WRITABLE: u16 = 0x7ffe;

    /// The key as a number.
    pub(crate) fn value(self) -> u16 {
        self.0
    }

    /// Whether ufm-pkeyd may create, change or delete this partition in UFM.
    pub(crate) fn is_writable(self) -> bool {
        (Self::MIN_WRITABLE..=Self::MAX_WRITABLE).contains(&self.0)
    }

    /// Parses a key that the tool is asked to write: the range 0x0001–0x7ffe.
    pub(crate) fn parse_writable(text: &str) -> Result<PKey, ModelError> {
        let pkey: PKey = text.parse()?;
        if pkey.is_writable() {
            Ok(pkey)
        } else if pkey == PKey::DEFAULT {
            Err(ModelError::new(format!(
                "PKey {text:?} is UFM's read-only default partition: use a key from 0x1 to 0x7ffe"
            )))
        } else {
            Err(ModelError::new(format!(
                "PKey {text:?} is out of range: use a key from 0x1 to 0x7ffe"
            )))
        }
    }
}

impl FromStr for PKey {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<PKey, ModelError> {
        let invalid = || {
            ModelError::new(format!(
                "invalid PKey {text:?}: expected 0x followed by 1 to 4 hex digits, e.g. 0x200e"
            ))
        };
        let digits = strip_hex_prefix(text).ok_or_else(invalid)?;
        if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let value = u16::from_str_radix(digits, 16).map_err(|_| invalid())?;
        if value > 0x7fff {
            return Err(ModelError::new(format!(
                "invalid PKey {text:?}: the highest partition key is 0x7fff (strip the 0x8000 full-membership bit)"
            )));
        }
        Ok(PKey(value))
    }
}

/// A PKey in JSON: its text, as UFM prints it (`"0x1a"`); read back through `FromStr`.
impl serde::Serialize for PKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl fmt::Display for PKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

/// A set of PKeys as an operator types it: PKeys and ranges, comma-separated
/// (`0x1000-0x17cf,0x2000`).
pub(crate) fn parse_pkey_set(text: &str) -> Result<BTreeSet<PKey>, ModelError> {
    let mut set = BTreeSet::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('-') {
            Some((first, last)) => {
                let (first, last): (PKey, PKey) = (first.trim().parse()?, last.trim().parse()?);
                if first > last {
                    return Err(ModelError::new(format!(
                        "invalid PKey range {item:?}: the first PKey is above the last"
                    )));
                }
                set.extend((first.0..=last.0).map(PKey));
            }
            None => {
                set.insert(item.parse()?);
            }
        }
    }
    if set.is_empty() {
        return Err(ModelError::new(format!(
            "no PKey in {text:?}: give PKeys or ranges, e.g. 0x1000-0x17cf,0x2000"
        )));
    }
    Ok(set)
}

/// An InfiniBand port GUID: 64 bits, written as 16 hex digits.
///
/// Parses 16 hex digits with an optional `0x` in either case; prints in UFM's canonical form,
/// 16 lowercase digits without `0x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Guid(u64);

impl FromStr for Guid {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Guid, ModelError> {
        let digits = strip_hex_prefix(text).unwrap_or(text);
        if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ModelError::new(format!(
                "invalid GUID {text:?}: expected 16 hex digits, optionally prefixed with 0x, e.g. 0x043f720300f55176"
            )));
        }
        u64::from_str_radix(digits, 16)
            .map(Guid)
            .map_err(|_| ModelError::new(format!("invalid GUID {text:?}")))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Parses a comma-separated list of GUIDs, as given on the command line (`--guids a,b,c`).
/// Blank items are ignored; every invalid item is reported.
pub(crate) fn parse_guid_list(text: &str) -> Result<Vec<Guid>, ModelError> {
    let mut guids = Vec::new();
    let mut bad = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<Guid>() {
            Ok(guid) => guids.push(guid),
            Err(_) => bad.push(format!("{item:?}")),
        }
    }
    if !bad.is_empty() {
        return Err(ModelError::new(format!(
            "invalid GUID{} {}: expected 16 hex digits each, optionally prefixed with 0x",
            if bad.len() == 1 { "" } else { "s" },
            bad.join(", ")
        )));
    }
    if guids.is_empty() {
        return Err(ModelError::new(format!("no GUID in {text:?}")));
    }
    Ok(guids)
}

/// How a port is a member of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Membership {
    Full,
    Limited,
}

impl Membership {
    /// The spelling UFM uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Membership::Full => "full",
            Membership::Limited => "limited",
        }
    }
}

impl FromStr for Membership {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Membership, ModelError> {
        match text.to_ascii_lowercase().as_str() {
            "full" => Ok(Membership::Full),
            "limited" => Ok(Membership::Limited),
            _ => Err(ModelError::new(format!(
                "invalid membership {text:?}: use full or limited"
            ))),
        }
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a port joins a partition: its membership, and whether the partition goes at index 0 of
/// the port's PKey table. UFM sets both per GUID; the planner compares them per GUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Join {
    pub membership: Membership,
    pub index0: bool,
}

/// One member of a partition as UFM reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub guid: Guid,
    pub join: Join,
}

/// One partition as UFM reports it, its members sorted by GUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Partition {
    pub pkey: PKey,
    pub name: String,
    pub ip_over_ib: bool,
    pub members: Vec<Member>,
}

/// One partition as pcocc describes it in etcd: the host port GUIDs and the virtual function
/// GUIDs that belong to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PcoccEntry {
    pub host_guids: BTreeSet<Guid>,
    pub vf_guids: BTreeSet<Guid>,
}

/// The largest etcd value we try to parse. etcd's own request limit is 1.5 MiB; a value larger
/// than this is not a pcocc entry.
pub(crate) const MAX_ENTRY_BYTES: usize = 1536 * 1024;

/// The deepest nesting of brackets and braces an entry may have. pcocc's entries have 2
/// (`{'host_guids': [...]}`); the YAML parser that reads them takes time that grows with the
/// square of the depth (a 400 KB value 200,000 levels deep took 76 s of the daemon's only
/// thread), so depth is checked, in one linear scan, before any parser sees the value.
pub(crate) const MAX_ENTRY_DEPTH: usize = 64;

/// The raw shape of an entry: both lists optional, items kept as text so that every invalid GUID
/// can be reported by value instead of failing on the first.
#[derive(serde::Deserialize)]
struct RawEntry {
    #[serde(default)]
    host_guids: Vec<String>,
    #[serde(default)]
    vf_guids: Vec<String>,
}

impl PcoccEntry {
    /// Parses an etcd value written by pcocc. pcocc stores `str(dict)`, a Python literal
    /// (`{'host_guids': ['0x…'], 'vf_guids': []}`), not JSON; other writers use JSON. Both are
    /// read: JSON first, then YAML, whose flow mappings read Python's single-quoted literal.
    pub(crate) fn parse(value: &[u8]) -> Result<PcoccEntry, ModelError> {
        if value.len() > MAX_ENTRY_BYTES {
            return Err(ModelError::new(format!(
                "value is {} bytes, larger than the {} bytes a PKey entry may have",
                value.len(),
                MAX_ENTRY_BYTES
            )));
        }
        let text = std::str::from_utf8(value)
            .map_err(|_| ModelError::new("value is not UTF-8 text".to_string()))?;
        let raw = parse_raw_entry(text)?;
        let mut bad = Vec::new();
        let host_guids = collect_guids(&raw.host_guids, &mut bad);
        let vf_guids = collect_guids(&raw.vf_guids, &mut bad);
        if !bad.is_empty() {
            return Err(ModelError::new(format!(
                "invalid GUID{} {}: expected 16 hex digits, optionally prefixed with 0x",
                if bad.len() == 1 { "" } else { "s" },
                bad.join(", ")
            )));
        }
        Ok(PcoccEntry {
            host_guids,
            vf_guids,
        })
    }
}

fn parse_raw_entry(text: &str) -> Result<RawEntry, ModelError> {
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        return Err(ModelError::new(
            "value is not a mapping: expected {\"host_guids\": [...], \"vf_guids\": [...]}"
                .to_string(),
        ));
    }
    check_nesting(trimmed)?;
    if let Ok(raw) = serde_json::from_str::<RawEntry>(trimmed) {
        return Ok(raw);
    }
    serde_yaml::from_str::<RawEntry>(trimmed).map_err(|e| {
        ModelError::new(format!(
            "value is neither JSON nor a Python literal of the form {{'host_guids': [...], 'vf_guids': [...]}}: {}",
            first_line(&e.to_string())
        ))
    })
}

/// Refuses, in time linear in its length, a mapping nested deeper than [`MAX_ENTRY_DEPTH`], with
/// text after its closing brace, or with a YAML tag, anchor or alias (which no entry has).
///
/// The depth is counted as the YAML parser (libyaml) will see it: a bracket is structure unless
/// it lies in a quoted scalar or a comment. A quote starts a scalar only where a token starts
/// (after a bracket, a comma, `:` or `?`, or blanks there); inside a plain scalar it is a
/// character like another, and so is `#` unless blanks come before it. In a flow collection a
/// plain scalar ends at every bracket and comma, so no bracket outside quotes and comments is
/// ever content. Any value JSON reads, the scan reads the same way.
fn check_nesting(mapping: &str) -> Result<(), ModelError> {
    let mut scan = Nesting::default();
    let mut chars = mapping.chars().peekable();
    while let Some(c) = chars.next() {
        if scan.closed && !is_yaml_blank(c) && c != '#' {
            return Err(ModelError::new(
                "value has text after its closing brace".to_string(),
            ));
        }
        scan.step(c, &mut chars)?;
    }
    Ok(())
}

/// Where [`check_nesting`] is.
#[derive(Default)]
struct Nesting {
    depth: usize,
    /// Inside a plain (unquoted) scalar, which blanks do not end.
    in_plain: bool,
    /// The last character was a blank: a `#` now starts a comment.
    after_blank: bool,
    /// The outermost mapping closed.
    closed: bool,
}

impl Nesting {
    fn step(
        &mut self,
        c: char,
        rest: &mut std::iter::Peekable<std::str::Chars<'_>>,
    ) -> Result<(), ModelError> {
        let blank_before = std::mem::replace(&mut self.after_blank, false);
        match c {
            '[' | '{' => {
                self.in_plain = false;
                self.depth += 1;
                if self.depth > MAX_ENTRY_DEPTH {
                    return Err(ModelError::new(format!(
                        "value is nested deeper than {MAX_ENTRY_DEPTH} levels of brackets and braces; a PKey entry has 2"
                    )));
                }
            }
            ']' | '}' => {
                self.in_plain = false;
                self.depth = self.depth.saturating_sub(1);
                self.closed = self.depth == 0;
            }
            ',' => self.in_plain = false,
            '#' if !self.in_plain || blank_before => {
                // A comment, to the end of the line.
                self.in_plain = false;
                while rest.next_if(|c| !is_yaml_break(*c)).is_some() {}
            }
            c if is_yaml_blank(c) => self.after_blank = true,
            _ if self.in_plain => {
                // `: ` ends a plain scalar; `:` followed by anything else is part of it.
                if c == ':' && rest.peek().is_none_or(|n| is_yaml_blank(*n)) {
                    self.in_plain = false;
                }
            }
            // From here on, `c` starts a token.
            '\'' => skip_single_quoted(rest),
            '"' => skip_double_quoted(rest),
            ':' | '?' => {}
            '!' | '&' | '*' => {
                return Err(ModelError::new(
                    "value uses a YAML tag, anchor or alias (!, &, *), which no PKey entry has"
                        .to_string(),
                ));
            }
            _ => self.in_plain = true,
        }
        Ok(())
    }
}

/// Past a single-quoted scalar, whose only escape is `''`.
fn skip_single_quoted(rest: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = rest.next() {
        if c == '\'' && rest.next_if_eq(&'\'').is_none() {
            return;
        }
    }
}

/// Past a double-quoted scalar, in which a backslash escapes the next character.
fn skip_double_quoted(rest: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = rest.next() {
        match c {
            '\\' => {
                rest.next();
            }
            '"' => return,
            _ => {}
        }
    }
}

/// YAML's blanks and line breaks (libyaml's `IS_BLANK` and `IS_BREAK`).
fn is_yaml_blank(c: char) -> bool {
    matches!(c, ' ' | '\t') || is_yaml_break(c)
}

fn is_yaml_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn collect_guids(items: &[String], bad: &mut Vec<String>) -> BTreeSet<Guid> {
    let mut guids = BTreeSet::new();
    for item in items {
        match item.parse::<Guid>() {
            Ok(guid) => {
                guids.insert(guid);
            }
            Err(_) => bad.push(format!("{item:?}")),
        }
    }
    guids
}

fn strip_hex_prefix(text: &str) -> Option<&str> {
    text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Deserializes a type from its text form through `FromStr`, so that JSON answers are parsed
/// straight into typed values with the same error messages as everywhere else.
macro_rules! deserialize_from_str {
    ($type:ty) => {
        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<$type, D::Error> {
                let text: std::borrow::Cow<'de, str> =
                    serde::Deserialize::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

deserialize_from_str!(PKey);
deserialize_from_str!(Guid);
deserialize_from_str!(Membership);

/// An invalid value from outside, with a message that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ModelError(String);

impl ModelError {
    fn new(message: String) -> ModelError {
        ModelError(message)
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModelError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkey(text: &str) -> Result<PKey, ModelError> {
        text.parse()
    }

    #[test]
    fn pkey_accepts_every_hex_spelling_and_prints_like_ufm() {
        for text in ["0x1a", "0X1A", "0x001a", "0x01A", "0X001a"] {
            assert_eq!(
                pkey(text).map(|p| p.to_string()),
                Ok("0x1a".into()),
                "{text}"
            );
        }
        assert_eq!(pkey("0x200e").map(|p| p.to_string()), Ok("0x200e".into()));
    }

    #[test]
    fn pkey_compares_numerically() {
        assert_eq!(pkey("0x00ff"), pkey("0xFF"));
        assert!(pkey("0x9").unwrap() < pkey("0x10").unwrap());
    }

    #[test]
    fn pkey_rejects_bad_spellings_naming_them() {
        for text in [
            "", "0x", "1a", "0x12345", "0xg1", "0x-1", " 0x1", "0x1 ", "x1a",
        ] {
            let err = pkey(text).expect_err(text);
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn pkey_above_0x7fff_is_rejected_with_the_membership_hint() {
        let err = pkey("0x8000").expect_err("0x8000");
        assert!(err.to_string().contains("0x8000"));
        assert!(err.to_string().contains("full-membership bit"));
        assert!(pkey("0xffff").is_err());
    }

    #[test]
    fn writable_range_excludes_zero_and_the_default_partition() {
        assert!(PKey::parse_writable("0x0").is_err());
        assert!(PKey::parse_writable("0x0000").is_err());
        let err = PKey::parse_writable("0x7fff").expect_err("0x7fff");
        assert!(err.to_string().contains("read-only"));
        assert_eq!(
            PKey::parse_writable("0x1").map(|p| p.to_string()),
            Ok("0x1".into())
        );
        assert_eq!(
            PKey::parse_writable("0x7ffe").map(|p| p.to_string()),
            Ok("0x7ffe".into())
        );
        assert!(pkey("0x0").is_ok(), "0x0 parses, it is only not writable");
    }

    #[test]
    fn guid_accepts_optional_prefix_and_either_case() {
        let canonical = "043f720300f55176";
        for text in [
            "0x043f720300f55176",
            "043F720300F55176",
            "0X043f720300F55176",
        ] {
            assert_eq!(
                text.parse::<Guid>().map(|g| g.to_string()),
                Ok(canonical.into())
            );
        }
    }

    #[test]
    fn guid_rejects_wrong_lengths_and_non_hex_naming_them() {
        for text in [
            "043f720300f5517",      // 15 digits
            "043f720300f551760",    // 17 digits
            "0x043f720300f5517",    // 15 after 0x
            "043f720300f5517g",     // non-hex
            "04:3f:72:03:00:f5:51", // colons
            "",
            "0x",
        ] {
            let err = text.parse::<Guid>().expect_err(text);
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn guid_list_reports_every_bad_item() {
        let err = parse_guid_list("0x043f720300f55176,nothex,123").expect_err("bad");
        assert!(err.to_string().contains("\"nothex\""), "{err}");
        assert!(err.to_string().contains("\"123\""), "{err}");
        assert_eq!(
            parse_guid_list(" 043f720300f55176 , 0x043f720300f55177,").map(|g| g.len()),
            Ok(2)
        );
        assert!(parse_guid_list(" , ").is_err());
    }

    #[test]
    fn membership_parses_both_kinds() {
        assert_eq!("FULL".parse(), Ok(Membership::Full));
        assert_eq!("limited".parse(), Ok(Membership::Limited));
        assert!("both".parse::<Membership>().is_err());
    }

    fn entry(text: &str) -> Result<PcoccEntry, ModelError> {
        PcoccEntry::parse(text.as_bytes())
    }

    #[test]
    fn entry_reads_pcocc_python_literal() {
        let parsed = entry(
            "{'host_guids': ['0x0002c903000e4c31', '0x0002c903000e4c51'], 'vf_guids': ['0xc0cc200000000000', '0xc0cc200000000100']}",
        )
        .expect("python literal");
        assert_eq!(parsed.host_guids.len(), 2);
        assert_eq!(parsed.vf_guids.len(), 2);
        assert!(
            parsed
                .vf_guids
                .contains(&"c0cc200000000100".parse().expect("guid"))
        );
    }

    #[test]
    fn entry_reads_json() {
        let parsed =
            entry(r#"{"host_guids": ["0x043f720300f55176"], "vf_guids": []}"#).expect("json");
        assert_eq!(parsed.host_guids.len(), 1);
        assert!(parsed.vf_guids.is_empty());
    }

    #[test]
    fn entry_missing_list_is_empty() {
        let parsed = entry(r#"{"vf_guids": ["0xc0cc200000000000"]}"#).expect("json");
        assert!(parsed.host_guids.is_empty());
        assert_eq!(parsed.vf_guids.len(), 1);
        assert_eq!(entry("{}"), Ok(PcoccEntry::default()));
    }

    #[test]
    fn entry_reports_every_invalid_guid_by_value() {
        let err = entry("{'host_guids': ['0xbad', '0x043f720300f55176'], 'vf_guids': ['zz']}")
            .expect_err("invalid");
        let message = err.to_string();
        assert!(message.contains("\"0xbad\""), "{message}");
        assert!(message.contains("\"zz\""), "{message}");
    }

    #[test]
    fn entry_rejects_values_that_are_not_mappings() {
        for text in ["", "hello", "[1,2]", "{'host_guids': 'notalist'}", "{"] {
            assert!(entry(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn entry_rejects_non_utf8() {
        let err = PcoccEntry::parse(b"{'host_guids': ['\xff\xfe']}").expect_err("bytes");
        assert!(err.to_string().contains("UTF-8"));
    }

    #[test]
    fn a_deeply_nested_value_is_an_invalid_entry_without_reaching_a_parser() {
        // 1.4 MB, under etcd's request limit: the YAML parser would take minutes.
        let deep = format!("{{\"host_guids\": {}", "[".repeat(700_000));
        let err = entry(&deep).expect_err("too deep");
        assert!(
            err.to_string().contains("nested deeper than 64 levels"),
            "{err}"
        );
        let python = format!(
            "{{'host_guids': {}'0x043f720300f55176'{}}}",
            "[".repeat(70),
            "]".repeat(70)
        );
        assert!(entry(&python).is_err_and(|e| e.to_string().contains("deeper than 64")));
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_hide_nesting() {
        let nested = |level: &str, n: usize| format!("{{'a': {}}}", level.repeat(n));
        // Each level opens a list whose first item is a quoted closing bracket (YAML sees it as
        // text), or a comment that holds one.
        for level in ["[']', ", "[\"]\", ", "[ #]\n", "[a'b, ']', ", "[y #]\n, "] {
            let err = entry(&nested(level, 100)).expect_err(level);
            assert!(
                err.to_string().contains("deeper than 64"),
                "{level:?}: {err}"
            );
        }
        // Quote characters inside a plain scalar or a comment are text, not the start of a
        // quoted scalar that would hide the brackets after them.
        for level in ["[it's, ", "[a\"b, ", "[ # it's\n"] {
            let err = entry(&nested(level, 100)).expect_err(level);
            assert!(
                err.to_string().contains("deeper than 64"),
                "{level:?}: {err}"
            );
        }
        let err = entry("{}\n---\n[[[[").expect_err("a second document");
        assert!(err.to_string().contains("after its closing brace"), "{err}");
        for tagged in ["{'a': !!str [1]}", "{'a': &x [1], 'b': *x}"] {
            let err = entry(tagged).expect_err(tagged);
            assert!(err.to_string().contains("tag, anchor or alias"), "{err}");
        }
    }

    #[test]
    fn nesting_up_to_the_bound_and_brackets_in_strings_are_allowed() {
        let at_bound = format!(
            "{{'host_guids': ['0x043f720300f55176'], 'x': {}1{}}}",
            "[".repeat(MAX_ENTRY_DEPTH - 1),
            "]".repeat(MAX_ENTRY_DEPTH - 1)
        );
        assert_eq!(entry(&at_bound).map(|e| e.host_guids.len()), Ok(1));
        let texts =
            r#"{"host_guids": ["0x043f720300f55176"], "note": "[[[{{ ]] it's", "n": 'a''[b'} # [["#;
        assert_eq!(entry(texts).map(|e| e.host_guids.len()), Ok(1));
    }

    #[test]
    fn a_wide_value_of_etcds_largest_size_is_parsed() {
        let guids: Vec<String> = (0..60_000u64).map(|n| format!("'0x{:016x}'", n)).collect();
        let value = format!("{{'host_guids': [{}], 'vf_guids': []}}", guids.join(", "));
        assert!(value.len() > 1_300_000, "{}", value.len());
        assert_eq!(entry(&value).map(|e| e.host_guids.len()), Ok(60_000));
    }

    #[test]
    fn entry_rejects_huge_values_without_parsing_them() {
        let huge = format!("{{'host_guids': ['{}']}}", "a".repeat(2 * 1024 * 1024));
        let err = entry(&huge).expect_err("huge");
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
