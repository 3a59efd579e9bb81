//! The simulated fabric: partitions (PKeys) with their members and QoS, and the rules UFM
//! applies to them (see `/work/shared/reference/ufm-api.md` §2, §4, §5).
//!
//! Invariants kept here:
//! - 0x7fff always exists, is named `management`, has no listed members and is read-only;
//!   every mutation aimed at it is a [`FabricError::BadRequest`].
//! - Adding GUIDs to a missing partition creates it (`api_pkey_0x<hex>`, default QoS).
//! - Removing the last member of a non-default partition deletes the partition.
//! - Every successful mutation bumps `last_updated` (spelt in one of the [`StampFormat`]s
//!   real UFMs use); nothing else does.
//!
//! Pure data and rules, no I/O: the HTTP layer maps [`FabricError`] to status codes and
//! the JSON views built here are what the API returns.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The default (management) partition key.
pub const MANAGEMENT_PKEY: u16 = 0x7fff;
/// The name UFM gives the default partition.
pub const MANAGEMENT_NAME: &str = "management";
/// The rate limits UFM accepts (Gb/s).
pub const RATE_LIMITS: [f64; 17] = [
    2.5, 5.0, 10.0, 14.0, 20.0, 25.0, 30.0, 40.0, 56.0, 60.0, 80.0, 100.0, 112.0, 120.0, 168.0,
    200.0, 300.0,
];

/// Why a fabric operation was refused; the API maps these to 400, 404 and 409.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FabricError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
}

fn bad(msg: impl Into<String>) -> FabricError {
    FabricError::BadRequest(msg.into())
}

/// Parses a pkey given as `0x`-prefixed hex (any case, any zero padding) in 0x1..=0x7fff.
pub fn parse_pkey(text: &str) -> Result<u16, FabricError> {
    let invalid = || {
        bad(format!(
            "Invalid pkey '{text}': expected a hexadecimal string such as 0x1a2, between 0x0 and 0x7fff exclusive"
        ))
    };
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .ok_or_else(invalid)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 4 {
        return Err(invalid());
    }
    let value = u32::from_str_radix(
        if significant.is_empty() {
            "0"
        } else {
            significant
        },
        16,
    )
    .map_err(|_| invalid())?;
    if value == 0 || value > u32::from(MANAGEMENT_PKEY) {
        return Err(invalid());
    }
    u16::try_from(value).map_err(|_| invalid())
}

/// The canonical spelling UFM uses in responses: lowercase, unpadded.
pub fn format_pkey(pkey: u16) -> String {
    format!("0x{pkey:x}")
}

/// Parses a GUID: exactly 16 hex digits, optional `0x`, either case.
pub fn parse_guid(text: &str) -> Result<u64, FabricError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "Invalid guid '{text}': expected 16 hexadecimal digits"
        )));
    }
    u64::from_str_radix(digits, 16).map_err(|_| bad(format!("Invalid guid '{text}'")))
}

/// Parses a list of GUIDs; an empty list is refused (the field is mandatory).
pub fn parse_guids<S: AsRef<str>>(texts: &[S]) -> Result<Vec<u64>, FabricError> {
    if texts.is_empty() {
        return Err(bad("'guids' must contain at least one GUID"));
    }
    texts.iter().map(|t| parse_guid(t.as_ref())).collect()
}

/// The canonical spelling UFM uses in responses: 16 lowercase hex digits, no `0x`.
pub fn format_guid(guid: u64) -> String {
    format!("{guid:016x}")
}

/// Port membership in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Full,
    Limited,
}

impl Membership {
    /// Only the lowercase spellings are accepted, as in the docs.
    pub fn parse(text: &str) -> Result<Self, FabricError> {
        match text {
            "full" => Ok(Self::Full),
            "limited" => Ok(Self::Limited),
            other => Err(bad(format!(
                "Invalid membership '{other}': expected 'full' or 'limited'"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Limited => "limited",
        }
    }
}

/// Partition QoS. Defaults: MTU 2 (2K), SL 0, rate 2.5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Qos {
    pub mtu_limit: u8,
    pub service_level: u8,
    pub rate_limit: f64,
}

impl Default for Qos {
    fn default() -> Self {
        Self {
            mtu_limit: 2,
            service_level: 0,
            rate_limit: 2.5,
        }
    }
}

impl Qos {
    /// `self` with the given fields replaced, after checking their ranges.
    pub fn with(
        self,
        mtu_limit: Option<u64>,
        service_level: Option<u64>,
        rate_limit: Option<f64>,
    ) -> Result<Self, FabricError> {
        let mut qos = self;
        if let Some(mtu) = mtu_limit {
            qos.mtu_limit = match mtu {
                2 => 2,
                4 => 4,
                _ => return Err(bad(format!("Invalid mtu_limit {mtu}: expected 2 or 4"))),
            };
        }
        if let Some(sl) = service_level {
            qos.service_level = u8::try_from(sl)
                .ok()
                .filter(|sl| *sl <= 15)
                .ok_or_else(|| bad(format!("Invalid service_level {sl}: expected 0-15")))?;
        }
        if let Some(rate) = rate_limit {
            if !RATE_LIMITS.contains(&rate) {
                return Err(bad(format!(
                    "Invalid rate_limit {rate}: expected one of {RATE_LIMITS:?}"
                )));
            }
            qos.rate_limit = rate;
        }
        Ok(qos)
    }

    /// `{"mtu_limit":4,"rate_limit":200,"service_level":0}`: whole rates print without `.0`.
    pub fn to_json(self) -> Value {
        let rate = if self.rate_limit.fract() == 0.0 && self.rate_limit >= 0.0 {
            json!(self.rate_limit as u64)
        } else {
            json!(self.rate_limit)
        };
        json!({
            "mtu_limit": self.mtu_limit,
            "rate_limit": rate,
            "service_level": self.service_level,
        })
    }
}

/// One port GUID's settings in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub membership: Membership,
    pub index0: bool,
}

/// One partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub name: String,
    pub ip_over_ib: bool,
    pub qos: Qos,
    pub members: BTreeMap<u64, Member>,
}

impl Partition {
    fn new(name: String, ip_over_ib: bool, qos: Qos) -> Self {
        Self {
            name,
            ip_over_ib,
            qos,
            members: BTreeMap::new(),
        }
    }

    fn management() -> Self {
        Self::new(MANAGEMENT_NAME.to_string(), true, Qos::default())
    }
}

/// The name UFM gives partitions it creates on demand.
pub fn default_name(pkey: u16) -> String {
    format!("api_pkey_{}", format_pkey(pkey))
}

/// Checks a user-supplied partition name. UFM's exact rules are unknown; this accepts
/// 1-64 characters from `[A-Za-z0-9_.-]`.
pub fn check_name(name: &str) -> Result<(), FabricError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "Invalid partition_name '{name}': expected 1-64 characters from [A-Za-z0-9_.-]"
        )))
    }
}

/// Arguments of `POST /resources/pkeys/add`.
#[derive(Debug, Clone, Default)]
pub struct NewPartition {
    pub name: Option<String>,
    pub ip_over_ib: Option<bool>,
    pub qos: Qos,
}

/// What a GUID removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Members removed (possibly none); the partition is still there.
    Removed,
    /// The last member went, so the partition was deleted.
    PartitionDeleted,
    /// The pkey did not exist (only returned when a missing pkey is tolerated).
    NoSuchPkey,
}

/// The whole fabric.
#[derive(Debug, Clone)]
pub struct Fabric {
    partitions: BTreeMap<u16, Partition>,
    default_membership: Membership,
    last_updated: Option<SystemTime>,
}

impl Default for Fabric {
    fn default() -> Self {
        Self::new()
    }
}

impl Fabric {
    /// A fabric with only the management partition.
    pub fn new() -> Self {
        let mut partitions = BTreeMap::new();
        partitions.insert(MANAGEMENT_PKEY, Partition::management());
        Self {
            partitions,
            default_membership: Membership::Limited,
            last_updated: None,
        }
    }

    pub fn contains(&self, pkey: u16) -> bool {
        self.partitions.contains_key(&pkey)
    }

    /// The time of the last successful mutation, if any, in `format`.
    pub fn last_updated(&self, format: StampFormat) -> Option<String> {
        self.last_updated.map(|t| format.format(t))
    }

    /// One partition.
    pub fn get(&self, pkey: u16) -> Option<&Partition> {
        self.partitions.get(&pkey)
    }

    /// Every partition, by PKey.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Partition)> {
        self.partitions.iter().map(|(k, p)| (*k, p))
    }

    /// UFM dropping members on its own (a node restarted, a port left the fabric): removes
    /// `guids` from every partition and deletes the partitions this empties, as removals do.
    /// Returns how many memberships went and which partitions were deleted. Bumps
    /// `last_updated` when anything changed.
    pub fn drop_guids(&mut self, guids: &[u64]) -> (usize, Vec<u16>) {
        let mut removed = 0;
        let mut emptied = Vec::new();
        for (pkey, partition) in &mut self.partitions {
            let before = partition.members.len();
            for guid in guids {
                partition.members.remove(guid);
            }
            removed += before - partition.members.len();
            if before > 0 && partition.members.is_empty() && *pkey != MANAGEMENT_PKEY {
                emptied.push(*pkey);
            }
        }
        for pkey in &emptied {
            self.partitions.remove(pkey);
        }
        if removed > 0 {
            self.touch();
        }
        (removed, emptied)
    }

    fn touch(&mut self) {
        self.last_updated = Some(SystemTime::now());
    }

    fn writable(pkey: u16) -> Result<(), FabricError> {
        if pkey == MANAGEMENT_PKEY {
            Err(bad(
                "PKey 0x7fff is the read-only management partition and cannot be modified",
            ))
        } else {
            Ok(())
        }
    }

    fn missing(pkey: u16) -> FabricError {
        FabricError::NotFound(format!("PKey {} does not exist", format_pkey(pkey)))
    }

    /// `POST /resources/pkeys/add`: creates an empty partition.
    pub fn create(&mut self, pkey: u16, spec: NewPartition) -> Result<(), FabricError> {
        Self::writable(pkey)?;
        if self.contains(pkey) {
            return Err(FabricError::Conflict(format!(
                "PKey {} already exists",
                format_pkey(pkey)
            )));
        }
        let name = match spec.name {
            Some(name) => {
                check_name(&name)?;
                name
            }
            None => default_name(pkey),
        };
        self.partitions.insert(
            pkey,
            Partition::new(name, spec.ip_over_ib.unwrap_or(true), spec.qos),
        );
        self.touch();
        Ok(())
    }

    /// `POST /resources/pkeys`: adds (or re-adds, overwriting membership and index0) GUIDs,
    /// creating the partition if needed. `ip_over_ib`, when given, overwrites the flag.
    pub fn add_guids(
        &mut self,
        pkey: u16,
        guids: &[u64],
        member: Member,
        ip_over_ib: Option<bool>,
    ) -> Result<(), FabricError> {
        Self::writable(pkey)?;
        if guids.is_empty() {
            return Err(bad("'guids' must contain at least one GUID"));
        }
        let partition = self.partition_for_write(pkey, ip_over_ib);
        for guid in guids {
            partition.members.insert(*guid, member);
        }
        self.touch();
        Ok(())
    }

    /// Creates the partition with UFM's defaults if it is missing, and sets its `ip_over_ib`
    /// when given (NVIDIA's mock does this for an add with no GUIDs).
    pub fn upsert_partition(
        &mut self,
        pkey: u16,
        ip_over_ib: Option<bool>,
    ) -> Result<(), FabricError> {
        Self::writable(pkey)?;
        self.partition_for_write(pkey, ip_over_ib);
        self.touch();
        Ok(())
    }

    /// The partition an add or set writes to, created with UFM's defaults when missing (add
    /// creates on demand); `ip_over_ib`, when given, overwrites its flag.
    fn partition_for_write(&mut self, pkey: u16, ip_over_ib: Option<bool>) -> &mut Partition {
        let partition = self.partitions.entry(pkey).or_insert_with(|| {
            Partition::new(
                default_name(pkey),
                ip_over_ib.unwrap_or(true),
                Qos::default(),
            )
        });
        if let Some(flag) = ip_over_ib {
            partition.ip_over_ib = flag;
        }
        partition
    }

    /// `PUT /resources/pkeys`: the member list becomes exactly `members` (later duplicates
    /// win), creating the partition if needed. An empty list is refused.
    pub fn set_guids(
        &mut self,
        pkey: u16,
        members: &[(u64, Member)],
        ip_over_ib: Option<bool>,
    ) -> Result<(), FabricError> {
        Self::writable(pkey)?;
        if members.is_empty() {
            return Err(bad("'guids' must contain at least one GUID"));
        }
        let partition = self.partition_for_write(pkey, ip_over_ib);
        partition.members = members.iter().copied().collect();
        self.touch();
        Ok(())
    }

    /// Removes GUIDs (non-members are ignored). When this takes the partition from at
    /// least one member to none, the partition is deleted. A missing pkey is
    /// [`FabricError::NotFound`] unless `missing_ok`, then [`Removal::NoSuchPkey`].
    pub fn remove_guids(
        &mut self,
        pkey: u16,
        guids: &[u64],
        missing_ok: bool,
    ) -> Result<Removal, FabricError> {
        Self::writable(pkey)?;
        if guids.is_empty() {
            return Err(bad("'guids' must contain at least one GUID"));
        }
        let Some(partition) = self.partitions.get_mut(&pkey) else {
            return if missing_ok {
                Ok(Removal::NoSuchPkey)
            } else {
                Err(Self::missing(pkey))
            };
        };
        let had_members = !partition.members.is_empty();
        for guid in guids {
            partition.members.remove(guid);
        }
        let outcome = if had_members && partition.members.is_empty() {
            self.partitions.remove(&pkey);
            Removal::PartitionDeleted
        } else {
            Removal::Removed
        };
        self.touch();
        Ok(outcome)
    }

    /// `DELETE /resources/pkeys/{pkey}`.
    pub fn delete(&mut self, pkey: u16) -> Result<(), FabricError> {
        Self::writable(pkey)?;
        if self.partitions.remove(&pkey).is_none() {
            return Err(Self::missing(pkey));
        }
        self.touch();
        Ok(())
    }

    /// `PUT /resources/pkeys/qos_conf`: fields left out keep their value.
    pub fn set_qos(
        &mut self,
        pkey: u16,
        mtu_limit: Option<u64>,
        service_level: Option<u64>,
        rate_limit: Option<f64>,
    ) -> Result<(), FabricError> {
        Self::writable(pkey)?;
        let partition = self
            .partitions
            .get_mut(&pkey)
            .ok_or_else(|| Self::missing(pkey))?;
        partition.qos = partition.qos.with(mtu_limit, service_level, rate_limit)?;
        self.touch();
        Ok(())
    }

    /// The list without flags: `["0x2fb","0x7fff"]`.
    pub fn list_names(&self) -> Value {
        Value::Array(
            self.partitions
                .keys()
                .map(|p| Value::String(format_pkey(*p)))
                .collect(),
        )
    }

    /// The list with `qos_conf=true`: `{pkey: {ip_over_ib, partition, qos_conf}}`.
    pub fn list_qos(&self) -> Value {
        self.list_with(|pkey, _| self.view(pkey, false, true))
    }

    /// The list with `guids_data=true`: `{pkey: {guids, ip_over_ib, partition}}`, 0x7fff
    /// also carrying `membership` and `index0`.
    pub fn list_guids(&self) -> Value {
        self.list_with(|pkey, _| self.view(pkey, true, false))
    }

    fn list_with(&self, view: impl Fn(u16, &Partition) -> Option<Value>) -> Value {
        let mut map = Map::new();
        for (pkey, partition) in &self.partitions {
            if let Some(value) = view(*pkey, partition) {
                map.insert(format_pkey(*pkey), value);
            }
        }
        Value::Object(map)
    }

    /// `GET /resources/pkeys/{pkey}`: the flat object, or `None` if the pkey is missing.
    pub fn view(&self, pkey: u16, guids_data: bool, qos_conf: bool) -> Option<Value> {
        let partition = self.partitions.get(&pkey)?;
        let mut map = Map::new();
        map.insert("ip_over_ib".into(), Value::Bool(partition.ip_over_ib));
        map.insert("partition".into(), Value::String(partition.name.clone()));
        if guids_data {
            let guids = partition
                .members
                .iter()
                .map(|(guid, m)| {
                    json!({
                        "guid": format_guid(*guid),
                        "index0": m.index0,
                        "membership": m.membership.as_str(),
                    })
                })
                .collect();
            map.insert("guids".into(), Value::Array(guids));
            if pkey == MANAGEMENT_PKEY {
                map.insert(
                    "membership".into(),
                    Value::String(self.default_membership.as_str().into()),
                );
                map.insert("index0".into(), Value::Bool(false));
            }
        }
        if qos_conf {
            map.insert("qos_conf".into(), partition.qos.to_json());
        }
        Some(Value::Object(map))
    }

    /// `GET /_sim/state`: the `guids_data` list plus each partition's `qos_conf`.
    pub fn snapshot(&self) -> Value {
        self.list_with(|pkey, _| self.view(pkey, true, true))
    }

    /// `POST /_sim/state`: replaces every partition with the ones in `value` (the
    /// [`Fabric::snapshot`] shape; `guids`, `ip_over_ib`, `partition` and `qos_conf` are
    /// optional). 0x7fff is kept whether listed or not and may not be given members.
    /// All or nothing: on error the fabric is unchanged.
    pub fn load(&mut self, value: Value) -> Result<(), FabricError> {
        let seed: BTreeMap<String, SeedPartition> =
            serde_json::from_value(value).map_err(|e| bad(format!("Invalid state: {e}")))?;
        let mut partitions = BTreeMap::new();
        partitions.insert(MANAGEMENT_PKEY, Partition::management());
        let mut default_membership = self.default_membership;
        for (key, entry) in seed {
            let pkey = parse_pkey(&key)?;
            let qos = match entry.qos_conf {
                Some(q) => Qos::default().with(q.mtu_limit, q.service_level, q.rate_limit)?,
                None => Qos::default(),
            };
            if pkey == MANAGEMENT_PKEY {
                if !entry.guids.is_empty() {
                    return Err(bad("0x7fff cannot be seeded with members"));
                }
                if let Some(m) = entry.membership {
                    default_membership = Membership::parse(&m)?;
                }
                continue;
            }
            if entry.membership.is_some() || entry.index0.is_some() {
                return Err(bad(format!(
                    "{key}: top-level 'membership'/'index0' are only allowed on 0x7fff"
                )));
            }
            let name = match entry.partition {
                Some(name) => {
                    check_name(&name)?;
                    name
                }
                None => default_name(pkey),
            };
            let mut partition = Partition::new(name, entry.ip_over_ib.unwrap_or(true), qos);
            for m in entry.guids {
                let member = Member {
                    membership: match m.membership {
                        Some(text) => Membership::parse(&text)?,
                        None => Membership::Full,
                    },
                    index0: m.index0.unwrap_or(false),
                };
                partition.members.insert(parse_guid(&m.guid)?, member);
            }
            partitions.insert(pkey, partition);
        }
        self.partitions = partitions;
        self.default_membership = default_membership;
        self.touch();
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedPartition {
    #[serde(default)]
    guids: Vec<SeedMember>,
    ip_over_ib: Option<bool>,
    partition: Option<String>,
    qos_conf: Option<SeedQos>,
    membership: Option<String>,
    index0: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedMember {
    guid: String,
    index0: Option<bool>,
    membership: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedQos {
    mtu_limit: Option<u64>,
    service_level: Option<u64>,
    rate_limit: Option<f64>,
}

/// How `GET /resources/pkeys/last_updated` spells the time (real UFMs differ, §3.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StampFormat {
    /// `2025-01-31T12:34:56.789012Z`
    #[default]
    Rfc3339,
    /// `Thu Sep  3 11:42:39 UTC 2020` (`date`'s output; 1-second resolution)
    Ctime,
    /// `03-09-2020, 11:42:39`: the subnet manager's local time without a zone (UTC here;
    /// 1-second resolution)
    DmyLocal,
}

impl StampFormat {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "rfc3339" => Ok(Self::Rfc3339),
            "ctime" => Ok(Self::Ctime),
            "dmy-local" => Ok(Self::DmyLocal),
            other => Err(format!(
                "invalid last_updated_format '{other}': expected rfc3339, ctime or dmy-local"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rfc3339 => "rfc3339",
            Self::Ctime => "ctime",
            Self::DmyLocal => "dmy-local",
        }
    }

    pub fn format(self, time: SystemTime) -> String {
        match self {
            Self::Rfc3339 => rfc3339(time),
            Self::Ctime => ctime(time),
            Self::DmyLocal => dmy(time),
        }
    }
}

/// A UTC time split into its calendar fields.
struct Civil {
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    micros: u32,
    /// 0 is Sunday.
    weekday: u64,
}

fn civil(time: SystemTime) -> Civil {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        micros: since.subsec_micros(),
        weekday: (days + 4) % 7, // 1970-01-01 was a Thursday
    }
}

/// Formats a time as RFC 3339 UTC with microseconds: `2025-01-31T12:34:56.789012Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let c = civil(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.micros
    )
}

/// Formats a time as `date` does in UTC: `Thu Sep  3 11:42:39 UTC 2020`.
pub fn ctime(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(time);
    let weekday = DAYS.get(c.weekday as usize).copied().unwrap_or("???");
    let month = MONTHS
        .get(c.month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("???");
    format!(
        "{weekday} {month} {:>2} {:02}:{:02}:{:02} UTC {}",
        c.day, c.hour, c.minute, c.second, c.year
    )
}

/// Formats a time as `DD-MM-YYYY, HH:MM:SS` (no zone): `03-09-2020, 11:42:39`.
pub fn dmy(time: SystemTime) -> String {
    let c = civil(time);
    format!(
        "{:02}-{:02}-{:04}, {:02}:{:02}:{:02}",
        c.day, c.month, c.year, c.hour, c.minute, c.second
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const G1: u64 = 0x946d_ae03_0059_75c8;
    const G2: u64 = 0x946d_ae03_0059_85c8;

    fn full() -> Member {
        Member {
            membership: Membership::Full,
            index0: false,
        }
    }

    fn limited_index0() -> Member {
        Member {
            membership: Membership::Limited,
            index0: true,
        }
    }

    #[test]
    fn pkey_spellings_normalise() {
        for text in ["0x2fb", "0x2FB", "0X02fb", "0x00002fb", "0x02Fb"] {
            assert_eq!(parse_pkey(text), Ok(0x2fb), "{text}");
        }
        assert_eq!(parse_pkey("0x7fff"), Ok(0x7fff));
        assert_eq!(parse_pkey("0x1"), Ok(1));
        assert_eq!(format_pkey(0x2fb), "0x2fb");
        assert_eq!(format_pkey(parse_pkey("0x0A12").unwrap_or(0)), "0xa12");
        for text in [
            "", "0x", "2fb", "10", "0x0", "0x0000", "0x8000", "0xffff", "0x10000", "0x2fg", " 0x1",
            "0x1 ", "-0x1", "0x+1",
        ] {
            assert!(
                matches!(parse_pkey(text), Err(FabricError::BadRequest(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn guid_spellings_normalise() {
        for text in [
            "946dae03005975c8",
            "946DAE03005975C8",
            "0x946dae03005975c8",
            "0X946DAE03005975C8",
        ] {
            assert_eq!(parse_guid(text), Ok(G1), "{text}");
        }
        assert_eq!(format_guid(1), "0000000000000001");
        for text in [
            "",
            "946dae03005975c",
            "946dae03005975c80",
            "94:6d:ae:03:00:59:75:c8",
            "946dae03005975cg",
            "0x",
        ] {
            assert!(parse_guid(text).is_err(), "{text:?}");
        }
        assert!(parse_guids::<&str>(&[]).is_err());
    }

    #[test]
    fn management_always_exists_and_is_read_only() {
        let mut fabric = Fabric::new();
        assert!(fabric.contains(MANAGEMENT_PKEY));
        let ro = |r: Result<(), FabricError>| matches!(r, Err(FabricError::BadRequest(_)));
        assert!(ro(fabric.create(MANAGEMENT_PKEY, NewPartition::default())));
        assert!(ro(fabric.add_guids(MANAGEMENT_PKEY, &[G1], full(), None)));
        assert!(ro(fabric.set_guids(MANAGEMENT_PKEY, &[(G1, full())], None)));
        assert!(ro(fabric
            .remove_guids(MANAGEMENT_PKEY, &[G1], true)
            .map(|_| ())));
        assert!(ro(fabric.delete(MANAGEMENT_PKEY)));
        assert!(ro(fabric.set_qos(MANAGEMENT_PKEY, Some(4), None, None)));
        assert!(fabric.last_updated(StampFormat::Rfc3339).is_none());
        assert_eq!(fabric.get(MANAGEMENT_PKEY), Some(&Partition::management()));
        // Even a full state load keeps it.
        assert_eq!(fabric.load(json!({"0x5": {"guids": []}})), Ok(()));
        assert!(fabric.contains(MANAGEMENT_PKEY));
        assert!(
            fabric
                .load(json!({"0x7fff": {"guids": [{"guid": "946dae03005975c8"}]}}))
                .is_err()
        );
    }

    #[test]
    fn add_creates_with_defaults_and_readd_overwrites() {
        let mut fabric = Fabric::new();
        assert_eq!(fabric.add_guids(0x2fb, &[G1, G2], full(), None), Ok(()));
        let p = fabric.get(0x2fb).cloned().unwrap_or_else(|| panic!());
        assert_eq!(p.name, "api_pkey_0x2fb");
        assert!(p.ip_over_ib);
        assert_eq!(p.qos, Qos::default());
        assert_eq!(p.members.len(), 2);
        assert!(fabric.last_updated(StampFormat::Rfc3339).is_some());

        assert_eq!(
            fabric.add_guids(0x2fb, &[G1], limited_index0(), Some(false)),
            Ok(())
        );
        let p = fabric.get(0x2fb).cloned().unwrap_or_else(|| panic!());
        assert_eq!(p.members.get(&G1), Some(&limited_index0()));
        assert_eq!(p.members.get(&G2), Some(&full()));
        assert!(!p.ip_over_ib);
        // ip_over_ib left out keeps the flag.
        assert_eq!(fabric.add_guids(0x2fb, &[G2], full(), None), Ok(()));
        assert_eq!(fabric.get(0x2fb).map(|p| p.ip_over_ib), Some(false));
    }

    #[test]
    fn removing_last_member_deletes_partition() {
        let mut fabric = Fabric::new();
        assert_eq!(fabric.add_guids(0x10, &[G1, G2], full(), None), Ok(()));
        assert_eq!(
            fabric.remove_guids(0x10, &[G1], false),
            Ok(Removal::Removed)
        );
        // A non-member is a no-op.
        assert_eq!(
            fabric.remove_guids(0x10, &[G1], false),
            Ok(Removal::Removed)
        );
        assert!(fabric.contains(0x10));
        assert_eq!(
            fabric.remove_guids(0x10, &[G1, G2], false),
            Ok(Removal::PartitionDeleted)
        );
        assert!(!fabric.contains(0x10));
        assert!(fabric.view(0x10, true, true).is_none());
        assert!(matches!(
            fabric.remove_guids(0x10, &[G1], false),
            Err(FabricError::NotFound(_))
        ));
        assert_eq!(
            fabric.remove_guids(0x10, &[G1], true),
            Ok(Removal::NoSuchPkey)
        );
    }

    #[test]
    fn empty_partition_from_add_survives_removal_of_non_members() {
        let mut fabric = Fabric::new();
        assert_eq!(fabric.create(0x20, NewPartition::default()), Ok(()));
        assert!(matches!(
            fabric.create(0x20, NewPartition::default()),
            Err(FabricError::Conflict(_))
        ));
        assert_eq!(
            fabric.remove_guids(0x20, &[G1], false),
            Ok(Removal::Removed)
        );
        assert!(fabric.contains(0x20));
        assert_eq!(fabric.delete(0x20), Ok(()));
        assert!(matches!(fabric.delete(0x20), Err(FabricError::NotFound(_))));
    }

    #[test]
    fn put_sets_exact_member_list() {
        let mut fabric = Fabric::new();
        assert_eq!(fabric.add_guids(0x30, &[G1], full(), None), Ok(()));
        assert_eq!(
            fabric.set_guids(0x30, &[(G2, limited_index0())], None),
            Ok(())
        );
        let members = fabric
            .get(0x30)
            .map(|p| p.members.clone())
            .unwrap_or_default();
        assert_eq!(
            members.into_iter().collect::<Vec<_>>(),
            vec![(G2, limited_index0())]
        );
        assert!(fabric.set_guids(0x30, &[], None).is_err());
        assert!(fabric.set_guids(0x31, &[(G1, full())], None).is_ok());
        assert_eq!(
            fabric.get(0x31).map(|p| p.name.as_str()),
            Some("api_pkey_0x31")
        );
    }

    #[test]
    fn list_shapes() {
        let mut fabric = Fabric::new();
        assert_eq!(
            fabric.add_guids(0x2fb, &[G1], limited_index0(), None),
            Ok(())
        );
        assert_eq!(fabric.set_qos(0x2fb, Some(4), Some(0), Some(200.0)), Ok(()));
        assert_eq!(fabric.list_names(), json!(["0x2fb", "0x7fff"]));
        assert_eq!(
            fabric.list_qos(),
            json!({
                "0x2fb": {"ip_over_ib": true, "partition": "api_pkey_0x2fb",
                          "qos_conf": {"mtu_limit": 4, "rate_limit": 200, "service_level": 0}},
                "0x7fff": {"ip_over_ib": true, "partition": "management",
                           "qos_conf": {"mtu_limit": 2, "rate_limit": 2.5, "service_level": 0}}
            })
        );
        assert_eq!(
            fabric.list_guids(),
            json!({
                "0x2fb": {"guids": [{"guid": "946dae03005975c8", "index0": true, "membership": "limited"}],
                          "ip_over_ib": true, "partition": "api_pkey_0x2fb"},
                "0x7fff": {"guids": [], "index0": false, "ip_over_ib": true,
                           "membership": "limited", "partition": "management"}
            })
        );
        assert_eq!(
            serde_json::to_string(&fabric.list_qos()).unwrap_or_default(),
            r#"{"0x2fb":{"ip_over_ib":true,"partition":"api_pkey_0x2fb","qos_conf":{"mtu_limit":4,"rate_limit":200,"service_level":0}},"0x7fff":{"ip_over_ib":true,"partition":"management","qos_conf":{"mtu_limit":2,"rate_limit":2.5,"service_level":0}}}"#
        );
        assert_eq!(
            fabric.view(0x2fb, false, false),
            Some(json!({"ip_over_ib": true, "partition": "api_pkey_0x2fb"}))
        );
        assert_eq!(fabric.view(0x2fc, false, false), None);
    }

    #[test]
    fn qos_is_validated() {
        let q = Qos::default();
        assert!(q.with(Some(3), None, None).is_err());
        assert!(q.with(None, Some(16), None).is_err());
        assert!(q.with(None, None, Some(7.0)).is_err());
        assert_eq!(
            q.with(Some(4), Some(15), Some(300.0)),
            Ok(Qos {
                mtu_limit: 4,
                service_level: 15,
                rate_limit: 300.0
            })
        );
    }

    #[test]
    fn snapshot_round_trips() {
        let mut fabric = Fabric::new();
        assert_eq!(
            fabric.add_guids(0x2fb, &[G1], limited_index0(), None),
            Ok(())
        );
        let mut other = Fabric::new();
        assert_eq!(other.load(fabric.snapshot()), Ok(()));
        assert_eq!(other.snapshot(), fabric.snapshot());
        assert!(other.load(json!({"0x5": {"bogus": 1}})).is_err());
        assert!(other.load(json!({"5": {}})).is_err());
        // A failed load leaves the fabric alone.
        assert_eq!(other.snapshot(), fabric.snapshot());
    }

    #[test]
    fn last_updated_formats() {
        // Thu Sep  3 11:42:39 UTC 2020
        let t = UNIX_EPOCH + Duration::new(1_599_133_359, 250_000_000);
        assert_eq!(ctime(t), "Thu Sep  3 11:42:39 UTC 2020");
        assert_eq!(dmy(t), "03-09-2020, 11:42:39");
        assert_eq!(
            StampFormat::Rfc3339.format(t),
            "2020-09-03T11:42:39.250000Z"
        );
        assert_eq!(
            ctime(UNIX_EPOCH + Duration::from_secs(1_609_459_199)),
            "Thu Dec 31 23:59:59 UTC 2020"
        );
        assert_eq!(ctime(UNIX_EPOCH), "Thu Jan  1 00:00:00 UTC 1970");
        for f in ["rfc3339", "ctime", "dmy-local"] {
            assert_eq!(StampFormat::parse(f).map(StampFormat::as_str), Ok(f));
        }
        assert!(StampFormat::parse("iso").is_err());
    }

    #[test]
    fn dropped_guids_leave_every_partition() {
        let mut fabric = Fabric::new();
        assert_eq!(fabric.add_guids(0x10, &[G1, G2], full(), None), Ok(()));
        assert_eq!(fabric.add_guids(0x11, &[G1], full(), None), Ok(()));
        assert_eq!(fabric.create(0x12, NewPartition::default()), Ok(()));
        assert_eq!(fabric.drop_guids(&[G1]), (2, vec![0x11]));
        assert!(fabric.contains(0x10) && fabric.contains(0x12) && !fabric.contains(0x11));
        let stamp = fabric.last_updated(StampFormat::Rfc3339);
        assert_eq!(fabric.drop_guids(&[G1]), (0, vec![]));
        assert_eq!(
            fabric.last_updated(StampFormat::Rfc3339),
            stamp,
            "nothing changed"
        );
    }

    #[test]
    fn rfc3339_formats_utc() {
        let t = UNIX_EPOCH + Duration::new(1_637_067_961, 5_000);
        assert_eq!(rfc3339(t), "2021-11-16T13:06:01.000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }
}
