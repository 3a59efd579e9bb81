//! Leader election over etcd, for running ufm-pkeyd on both hosts of a UFM HA pair: exactly
//! one instance changes UFM, the other stands by and takes over when the leader's claim ends.
//!
//! The claim is a v3 lease attached to the election key (created in a transaction only if the
//! key does not exist), or with v2 a TTL key created with `prevExist=false` and refreshed with
//! `prevValue`. Everything happens in the daemon's one thread: [`Election::tick`] is called
//! between UFM requests and while waiting, refreshes the claim every third of the TTL, and
//! steps down when a refresh has not succeeded for two thirds of it — before the claim can
//! expire and a standby can take over. A resigning leader deletes the claim at once.

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
    /// When the claim was last confirmed by etcd.
    confirmed: Instant,
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
            confirmed: now,
            due: now,
            holder: None,
        }
    }

    /// Who holds the key, when known.
    pub(crate) fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }

    /// Whether this instance may change UFM now.
    pub(crate) fn is_leader(&self) -> bool {
        self.claim.is_some() && self.confirmed.elapsed() < self.settings.ttl * 2 / 3
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
            return self.is_leader();
        }
        let was_leader = self.is_leader();
        match self.claim.clone() {
            Some(claim) => self.refresh(&claim),
            None => self.campaign(),
        }
        let is_leader = self.is_leader();
        if is_leader && !was_leader {
            log::info!(
                "leader election: this instance ({}) is now the leader",
                self.identity
            );
        } else if was_leader && !is_leader {
            log::warn!(
                "leader election: this instance ({}) lost the leadership; standing by",
                self.identity
            );
            self.claim = None;
        }
        is_leader
    }

    fn campaign(&mut self) {
        let etcd = &self.etcd;
        self.due = Instant::now() + CAMPAIGN_INTERVAL;
        match etcd.campaign(&self.settings.key, &self.identity, self.ttl_secs()) {
            Ok(Some(claim)) => {
                self.claim = Some(claim);
                self.confirmed = Instant::now();
                self.holder = Some(self.identity.clone());
                self.due = Instant::now() + self.settings.ttl / 3;
            }
            Ok(None) => {
                let holder = etcd
                    .get(&self.settings.key)
                    .ok()
                    .flatten()
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                if holder != self.holder {
                    if let Some(h) = &holder {
                        log::info!("leader election: {h} is the leader; standing by");
                    }
                    self.holder = holder;
                }
            }
            Err(e) => log::warn!("leader election: cannot campaign: {e}"),
        }
    }

    fn refresh(&mut self, claim: &Claim) {
        match self
            .etcd
            .refresh_claim(&self.settings.key, &self.identity, claim, self.ttl_secs())
        {
            Ok(true) => {
                self.confirmed = Instant::now();
                self.due = Instant::now() + self.settings.ttl / 3;
            }
            Ok(false) => {
                self.claim = None;
                self.due = Instant::now();
            }
            Err(e) => {
                // Try again soon; is_leader() turns false on its own before the claim expires.
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
