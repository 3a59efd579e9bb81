//! Leader election over etcd, for running ufm-pkeyd on both hosts of a UFM HA pair: exactly
//! one instance changes UFM, the other stands by and takes over when the leader's claim ends.
//!
//! The claim is a v3 lease attached to the election key (created in a transaction only if the
//! key does not exist), or with v2 a TTL key created with `prevExist=false` and refreshed with
//! `prevValue`. Everything happens in the daemon's one thread: [`Election::tick`] is called
//! before each UFM request and while waiting, and refreshes the claim every third of the TTL.
//!
//! Fencing by proof, not by the local clock (ufm-pkeyd(8), HIGH AVAILABILITY):
//! - Before each UFM write request (each batch, retry, fallback route and host), the leader
//!   asks etcd whether it still holds the key: one linearizable read of it, which must show
//!   this instance's identity (and with v3 its lease) ([`Election::may_write`]). A key that
//!   etcd expired early (a clock step, a new etcd leader), was deleted, or a lease revoked
//!   stops the writes at once.
//! - A new leader sends no write until [`Election::first_write_at`]: the UFM request bound
//!   plus a margin after it won. An old leader's last request went out after its last proof,
//!   which was before the key changed hands, so it has been answered (or given up) by then.
//!   Together the two leave no time in which both instances' requests can reach UFM, for
//!   requests UFM applies within their time bound; one applied later than that (a UFM that
//!   queues a request for minutes) is not covered, nor a leader frozen in the microseconds
//!   between its proof and its request.
//!
//! A standby only reads the election key (from the member's own copy, no quorum round) and
//! campaigns only when it looks free: at rest it costs etcd no Raft proposal.

use std::time::{Duration, Instant};

use crate::net::etcd::{Claim, EtcdClient};

/// How often a standby asks whether the key is free: a clean hand-over takes at most this.
const CAMPAIGN_INTERVAL: Duration = Duration::from_millis(500);

/// What a new leader waits beyond the UFM request bound before its first write: for the
/// old leader's last request to have reached UFM and been answered.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(1);

/// The longest a proof of leadership may take, from sending the read to sending the UFM
/// request it allows: less than [`TAKEOVER_MARGIN`], so that a request sent after a proof
/// cannot reach UFM after a successor's first write.
const PROOF_MAX: Duration = Duration::from_millis(500);

/// What a leader that resigned cleanly (no UFM request of its own in flight or unsettled)
/// leaves in the election key, followed by its identity: its successor need not wait.
const RESIGNED: &str = "resigned:";

/// Election settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub key: String,
    pub ttl: Duration,
}

/// This instance's view of the election.
pub(crate) struct Election {
    settings: Settings,
    /// A client of its own, so the claim can be refreshed while the daemon waits on a watch.
    etcd: EtcdClient,
    identity: String,
    claim: Option<Claim>,
    /// When the request that last renewed the claim was sent.
    renewed: Instant,
    /// When the next campaign or refresh is due.
    due: Instant,
    /// Who holds the key, as last seen (for logs and status).
    holder: Option<String>,
    /// When this instance won its current claim, and whether from a leader that resigned
    /// cleanly (then its first write need not wait).
    won: Option<(Instant, bool)>,
}

impl Election {
    /// A standby with an identity of host name and process id.
    pub(crate) fn new(settings: Settings, etcd: EtcdClient) -> Election {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown-host".to_string());
        let now = Instant::now();
        Election {
            settings,
            etcd,
            identity: format!("{host}:{}", std::process::id()),
            claim: None,
            renewed: now,
            due: now,
            holder: None,
            won: None,
        }
    }

    /// The settings.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Who holds the key, when known.
    pub(crate) fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }

    /// The election key and this instance's identity, which the ownership record's writes
    /// compare (v3) so that only the leader can write it.
    pub(crate) fn fence(&self) -> (String, String) {
        (self.settings.key.clone(), self.identity.clone())
    }

    /// How long this instance may still act as leader: two thirds of the TTL after the last
    /// renewal was sent (the last third is the margin for clocks and lease expiry).
    fn time_left(&self) -> Duration {
        if self.claim.is_none() {
            return Duration::ZERO;
        }
        (self.renewed + self.settings.ttl * 2 / 3).saturating_duration_since(Instant::now())
    }

    /// Whether this instance may change UFM now.
    pub(crate) fn is_leader(&self) -> bool {
        !self.time_left().is_zero()
    }

    /// When a new leader may send its first UFM write: `bound` (the longest a UFM request
    /// may take) plus a margin after it won, so that an old leader's last request is over.
    pub(crate) fn first_write_at(&self, bound: Duration) -> Option<Instant> {
        match self.won {
            Some((won, false)) => Some(won + bound + TAKEOVER_MARGIN),
            _ => None,
        }
    }

    /// Whether a UFM write may go now: this instance leads, and etcd shows it (one
    /// linearizable read of the election key, before every write request).
    pub(crate) fn may_write(&mut self) -> Result<(), String> {
        if !self.tick() {
            return Err("this instance does not lead".to_string());
        }
        let Some(claim) = self.claim.clone() else {
            return Err("this instance does not lead".to_string());
        };
        let asked = Instant::now();
        match self
            .etcd
            .holds_claim(&self.settings.key, &self.identity, &claim)
        {
            Ok(true) if asked.elapsed() <= PROOF_MAX => Ok(()),
            Ok(true) => Err(format!(
                "etcd took {:.2} s to confirm the leadership claim, more than {:.2} s: not sending (a successor may be about to write)",
                asked.elapsed().as_secs_f64(),
                PROOF_MAX.as_secs_f64()
            )),
            Ok(false) => {
                self.lose("etcd no longer shows its claim on the election key");
                Err(format!(
                    "the election key {} no longer holds this instance's claim: not sending",
                    self.settings.key
                ))
            }
            Err(e) => Err(format!(
                "etcd could not confirm the leadership claim ({e}): not sending"
            )),
        }
    }

    /// When [`Election::tick`] must run next.
    pub(crate) fn next_due(&self) -> Instant {
        self.due
    }

    fn ttl_secs(&self) -> u64 {
        self.settings.ttl.as_secs().max(1)
    }

    /// Campaigns (standby) or refreshes the claim (leader) when due; logs every change of
    /// role. Returns whether this instance is the leader afterwards.
    pub(crate) fn tick(&mut self) -> bool {
        if Instant::now() < self.due {
            return self.lead_or_step_down();
        }
        let was_leader = self.is_leader();
        match self.claim.clone() {
            Some(claim) => self.refresh(&claim),
            None => self.campaign(),
        }
        if self.is_leader() && !was_leader {
            log::info!(
                "leader election: this instance ({}) is now the leader",
                self.identity
            );
        }
        self.lead_or_step_down()
    }

    /// Steps down once the claim can no longer be trusted, and says so once.
    fn lead_or_step_down(&mut self) -> bool {
        if self.claim.is_some() && !self.is_leader() {
            // etcd did not answer in time: releasing the key would wait on it again.
            self.lose("its claim was not renewed in time");
        }
        self.is_leader()
    }

    /// Gives up the leadership because another instance wrote the ownership record: logs it
    /// once, releases the election key if it is still ours (so that the next leader need not
    /// wait for it to expire), and campaigns again like a standby.
    /// `clean`: none of this instance's UFM requests can still land (none unsettled).
    pub(crate) fn step_down(&mut self, why: &str, clean: bool) {
        if let Some(claim) = self.lose(why) {
            // Conditional on our identity (v2) or our own lease (v3): never someone else's.
            let mark = self.mark(clean);
            let _ = self
                .etcd
                .resign(&self.settings.key, &self.identity, &claim, mark.as_deref());
        }
    }

    /// The mark a clean resignation leaves in the key.
    fn mark(&self, clean: bool) -> Option<String> {
        clean.then(|| format!("{RESIGNED}{}", self.identity))
    }

    /// Drops the claim, saying so once; returns it if there was one.
    fn lose(&mut self, why: &str) -> Option<Claim> {
        let claim = self.claim.take()?;
        self.won = None;
        log::warn!(
            "leader election: this instance ({}) lost the leadership ({why}); standing by",
            self.identity
        );
        self.due = Instant::now() + CAMPAIGN_INTERVAL;
        Some(claim)
    }

    /// A standby reads the key (no quorum, no proposal) and campaigns only when it is free.
    fn campaign(&mut self) {
        self.due = Instant::now() + CAMPAIGN_INTERVAL;
        let holder = match self.etcd.peek(&self.settings.key) {
            Ok(found) => found.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
            Err(e) => {
                log::warn!("leader election: cannot read the election key: {e}");
                return;
            }
        };
        // A key that holds the mark of a clean resignation is free, and its successor need
        // not wait for the old leader's requests.
        let resigned = holder.clone().filter(|h| h.starts_with(RESIGNED));
        if resigned.is_none() && holder.is_some() {
            self.note_holder(holder);
            return;
        }
        let sent = Instant::now();
        match self.etcd.campaign(
            &self.settings.key,
            (&self.identity, resigned.as_deref()),
            self.ttl_secs(),
        ) {
            Ok(Some(claim)) => {
                self.claim = Some(claim);
                self.won = Some((Instant::now(), resigned.is_some()));
                self.renewed = sent;
                self.holder = Some(self.identity.clone());
                self.due = sent + self.settings.ttl / 3;
            }
            // Another candidate was quicker; who, the next read says.
            Ok(None) => {}
            Err(e) => log::warn!("leader election: cannot campaign: {e}"),
        }
    }

    fn note_holder(&mut self, holder: Option<String>) {
        if holder != self.holder {
            if let Some(h) = &holder {
                log::info!("leader election: {h} is the leader; standing by");
            }
            self.holder = holder;
        }
    }

    fn refresh(&mut self, claim: &Claim) {
        let sent = Instant::now();
        match self
            .etcd
            .refresh_claim(&self.settings.key, &self.identity, claim, self.ttl_secs())
        {
            Ok(true) => {
                self.renewed = sent;
                self.due = sent + self.settings.ttl / 3;
            }
            Ok(false) => {
                self.lose("its claim expired or was taken");
            }
            Err(e) => {
                // Try again soon; the claim stops counting on its own before it can expire.
                log::warn!("leader election: cannot refresh the claim: {e}");
                self.due = Instant::now() + Duration::from_secs(1);
            }
        }
    }

    /// Gives the leadership up (on a stop), so a standby takes over within a second; `clean`:
    /// none of this instance's UFM requests can still land, so the successor need not wait.
    pub(crate) fn resign(&mut self, clean: bool) {
        self.won = None;
        if let Some(claim) = self.claim.take() {
            let mark = self.mark(clean);
            match self
                .etcd
                .resign(&self.settings.key, &self.identity, &claim, mark.as_deref())
            {
                Ok(()) => log::info!("leader election: resigned"),
                Err(e) => {
                    log::warn!("leader election: cannot resign ({e}); the claim expires on its own")
                }
            }
        }
    }
}
