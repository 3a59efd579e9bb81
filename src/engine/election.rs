//! Leader election over etcd, for running ufm-pkeyd on both hosts of a UFM HA pair: exactly
//! one instance changes UFM, the other stands by and takes over when the leader's claim ends.
//!
//! The claim is a v3 lease attached to the election key (created in a transaction only if the
//! key does not exist), or with v2 a TTL key created with `prevExist=false` and refreshed with
//! `prevValue`. Everything happens in the daemon's one thread: [`Election::tick`] is called
//! before each UFM request and while waiting, and refreshes the claim every third of the TTL.
//!
//! Fencing by time: the claim is counted from when its last refresh was *sent* (etcd renews it
//! no earlier), and this instance writes to UFM only while the claim is sure to last longer
//! than the request can take, with a third of the TTL to spare ([`Election::may_write`]). So
//! an instance cut off from etcd, or stopped and resumed, sends nothing once a standby may
//! have taken over. A resigning leader deletes the claim at once.
//!
//! A standby only reads the election key (from the member's own copy, no quorum round) and
//! campaigns only when it looks free: at rest it costs etcd no Raft proposal.

use std::time::{Duration, Instant};

use crate::net::etcd::{Claim, EtcdClient};

/// How often a standby asks whether the key is free: a clean hand-over takes at most this.
const CAMPAIGN_INTERVAL: Duration = Duration::from_secs(1);

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

    /// Whether a UFM request that may take up to `bound` may start now: the claim, refreshed
    /// first if due, lasts longer than that.
    pub(crate) fn may_write(&mut self, bound: Duration) -> Result<(), String> {
        self.tick();
        let left = self.time_left();
        if left > bound {
            Ok(())
        } else {
            Err(format!(
                "the leadership claim is sure for {:.1} s only, less than a UFM request may take ({:.1} s): not sending it",
                left.as_secs_f64(),
                bound.as_secs_f64()
            ))
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
    pub(crate) fn step_down(&mut self, why: &str) {
        if let Some(claim) = self.lose(why) {
            // Conditional on our identity (v2) or our own lease (v3): never someone else's.
            let _ = self.etcd.resign(&self.settings.key, &self.identity, &claim);
        }
    }

    /// Drops the claim, saying so once; returns it if there was one.
    fn lose(&mut self, why: &str) -> Option<Claim> {
        let claim = self.claim.take()?;
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
        if holder.is_some() {
            self.note_holder(holder);
            return;
        }
        let sent = Instant::now();
        match self
            .etcd
            .campaign(&self.settings.key, &self.identity, self.ttl_secs())
        {
            Ok(Some(claim)) => {
                self.claim = Some(claim);
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

    /// Gives the leadership up (on a clean stop), so a standby takes over within a second.
    pub(crate) fn resign(&mut self) {
        if let Some(claim) = self.claim.take() {
            match self.etcd.resign(&self.settings.key, &self.identity, &claim) {
                Ok(()) => log::info!("leader election: resigned"),
                Err(e) => {
                    log::warn!("leader election: cannot resign ({e}); the claim expires on its own")
                }
            }
        }
    }
}
