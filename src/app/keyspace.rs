//! Which etcd keyspace to follow. etcd's v2 and v3 keyspaces are separate, pcocc writes
//! through v2, and following the wrong one is a silent no-op: every key looks absent. So
//! with `etcd-api: auto` (the default off pcocc nodes) the keys under the prefix decide, once,
//! when the clients are built: the keyspace that holds some; with keys in both, nothing is
//! guessed (exit 2); with none in either, v2 when this etcd serves it (pcocc's), else v3.
//!
//! What was counted is kept for the status file (`status_file::Keyspaces`), so that
//! `ufm-pkeyd status`, which contacts nothing, can warn when the keyspace followed was empty
//! while the other was not.

use std::sync::Mutex;
use std::time::Duration;

use super::status_file::Keyspaces;
use crate::error::{Error, Result};
use crate::net::etcd::{self, Api, ApiChoice, EtcdClient, EtcdError};

/// Keys under the prefix in each keyspace; `None` where it cannot be read (an etcd that does
/// not serve the v2 API, a user without rights there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Census {
    pub v2: Option<usize>,
    pub v3: Option<usize>,
}

/// The keyspace followed, and the line that says why when that is worth an info line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Choice {
    pub api: Api,
    pub note: Option<String>,
}

/// Decides the keyspace (pure). `Err` when both keyspaces hold keys under `prefix` and the
/// configuration says `auto`: the one-line error names both counts and the fix.
pub(crate) fn choose(
    asked: ApiChoice,
    census: Census,
    prefix: &str,
) -> std::result::Result<Choice, String> {
    let keys = |n: Option<usize>| n.unwrap_or(0);
    let (v2, v3) = (keys(census.v2), keys(census.v3));
    let api = match asked {
        ApiChoice::Fixed(api) => return Ok(Choice { api, note: None }),
        ApiChoice::Auto => match (v2, v3) {
            (1.., 1..) => {
                return Err(format!(
                    "etcd-api auto: both etcd keyspaces hold keys under {prefix} (v2: {v2}, v3: {v3}), and ufm-pkeyd will not guess which one to follow: give --etcd-api v2|v3, or etcd-api in the configuration file (pcocc writes v2)"
                ));
            }
            (1.., 0) => Api::V2,
            (0, 1..) => Api::V3,
            (0, 0) => {
                let (api, why) = if census.v2.is_some() {
                    (
                        Api::V2,
                        "the keyspace pcocc writes; --etcd-api v3 for another writer",
                    )
                } else {
                    (Api::V3, "this etcd does not serve the v2 API")
                };
                return Ok(Choice {
                    api,
                    note: Some(format!(
                        "etcd-api auto: no key under {prefix} in either etcd keyspace yet: following {api} ({why})"
                    )),
                });
            }
        },
    };
    Ok(Choice { api, note: None })
}

/// How hard to try when etcd does not answer the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Patience {
    /// Fail (a one-shot command).
    None,
    /// Ask every second until etcd answers or a stop signal arrives (the daemon at start,
    /// which with a fixed keyspace goes on without the count instead).
    Daemon,
}

/// Whether to count the keys when the keyspace is fixed: only for a writer of the status
/// file, which records the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Count {
    IfAuto,
    Always,
}

/// What was counted last, for the status file.
static SEEN: Mutex<Option<Keyspaces>> = Mutex::new(None);

/// The keyspaces as counted when the clients were built, if they were.
pub(crate) fn seen() -> Option<Keyspaces> {
    SEEN.lock().map(|seen| seen.clone()).unwrap_or(None)
}

fn remember(asked: ApiChoice, api: Api, census: Census) {
    if let Ok(mut seen) = SEEN.lock() {
        *seen = Some(Keyspaces {
            followed: api.to_string(),
            asked: asked.to_string(),
            v2_keys: census.v2,
            v3_keys: census.v3,
        });
    }
}

/// The keyspace to follow for these settings, counting the keys under `prefix` when `auto`
/// asks for it (or `count` does), and logging the decision when it was not obvious. `None`:
/// a daemon was stopped while it waited for etcd to answer.
pub(crate) fn resolve(
    settings: &etcd::Settings,
    prefix: &str,
    count: Count,
    patience: Patience,
) -> Result<Option<Api>> {
    let asked = settings.api;
    if let (ApiChoice::Fixed(api), Count::IfAuto) = (asked, count) {
        return Ok(Some(api));
    }
    let client = EtcdClient::new(settings, Api::V3).map_err(Error::Usage)?;
    let census = match (take_census(&client, prefix, asked, patience)?, asked) {
        (Some(census), _) => census,
        // A fixed keyspace does not need the count: it goes on without it.
        (None, ApiChoice::Fixed(api)) => return Ok(Some(api)),
        (None, ApiChoice::Auto) => return Ok(None),
    };
    let choice = choose(asked, census, prefix).map_err(Error::Usage)?;
    match &choice.note {
        Some(note) => log::info!("{note}"),
        None if asked == ApiChoice::Auto => log::debug!(
            "etcd-api auto: following {} (keys under {prefix}: v2 {}, v3 {})",
            choice.api,
            shown(census.v2),
            shown(census.v3)
        ),
        None => {}
    }
    remember(asked, choice.api, census);
    Ok(Some(choice.api))
}

/// `auto` resolved for `ufm-pkeyd config`, which must not hang on an etcd that does not
/// answer: one try, at most 2 s per request. `Err`: why it could not tell.
pub(crate) fn preview(
    settings: &etcd::Settings,
    prefix: &str,
) -> std::result::Result<(Api, Census), String> {
    let quick = etcd::Settings {
        timeout: settings.timeout.min(Duration::from_secs(2)),
        ..settings.clone()
    };
    let client = EtcdClient::new(&quick, Api::V3)?;
    let census = count_both(&client, prefix).map_err(|e| e.to_string())?;
    let choice = choose(settings.api, census, prefix)?;
    Ok((choice.api, census))
}

fn shown(keys: Option<usize>) -> String {
    keys.map_or_else(|| "unreadable".to_string(), |n| n.to_string())
}

/// Counts both keyspaces; `None` when etcd does not answer and the keyspace is fixed (the
/// count is not needed), or when a waiting daemon was told to stop.
fn take_census(
    client: &EtcdClient,
    prefix: &str,
    asked: ApiChoice,
    patience: Patience,
) -> Result<Option<Census>> {
    let mut said = false;
    loop {
        match count_both(client, prefix) {
            Ok(census) => return Ok(Some(census)),
            Err(EtcdError::Unreachable(_)) if matches!(asked, ApiChoice::Fixed(_)) => {
                return Ok(None);
            }
            Err(EtcdError::Unreachable(m)) if patience == Patience::Daemon => {
                if !said {
                    log::error!(
                        "{m}; which etcd keyspace to follow (etcd-api auto) is decided once etcd answers: asking every second"
                    );
                    said = true;
                }
                crate::systemd::notify(&format!(
                    "STATUS=waiting for etcd to choose the keyspace: {m}\nEXTEND_TIMEOUT_USEC=5000000"
                ));
                if !pause_unless_stopped(Duration::from_secs(1)) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sleeps, waking for SIGTERM and SIGINT; false when one came.
fn pause_unless_stopped(duration: Duration) -> bool {
    let end = std::time::Instant::now() + duration;
    while !super::monitor::stopping() {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
    false
}

/// Keys under `prefix` in each keyspace, through `client` (v3) and its other keyspace. A
/// keyspace that cannot be read counts as `None`, unless neither can: then the v3 error says
/// why (credentials refused: exit 5). An etcd that does not answer is an error.
fn count_both(client: &EtcdClient, prefix: &str) -> std::result::Result<Census, EtcdError> {
    let v3 = count(client, prefix);
    if let Err(e @ EtcdError::Unreachable(_)) = v3 {
        return Err(e);
    }
    let v2 = count(&client.other_keyspace(), prefix);
    match (v2, v3) {
        (Err(e @ EtcdError::Unreachable(_)), _) | (Err(_), Err(e)) => Err(e),
        (v2, v3) => Ok(Census {
            v2: v2.ok(),
            v3: v3.ok(),
        }),
    }
}

fn count(client: &EtcdClient, prefix: &str) -> std::result::Result<usize, EtcdError> {
    client
        .list(prefix)
        .map(|listing| listing.kvs.len())
        .inspect_err(|e| {
            log::debug!(
                "the {} keyspace cannot be read under {prefix}: {e}",
                client.api()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/pcocc/global/opensm/pkeys/";

    fn census(v2: Option<usize>, v3: Option<usize>) -> Census {
        Census { v2, v3 }
    }

    fn auto(v2: Option<usize>, v3: Option<usize>) -> std::result::Result<Choice, String> {
        choose(ApiChoice::Auto, census(v2, v3), PREFIX)
    }

    #[test]
    fn auto_follows_the_keyspace_that_holds_keys() {
        assert_eq!(auto(Some(2045), Some(0)).map(|c| c.api), Ok(Api::V2));
        assert_eq!(auto(None, Some(3)).map(|c| c.api), Ok(Api::V3));
        assert_eq!(auto(Some(0), Some(3)).map(|c| c.api), Ok(Api::V3));
        assert_eq!(auto(Some(1), None).map(|c| c.api), Ok(Api::V2));
    }

    #[test]
    fn auto_refuses_to_guess_when_both_hold_keys_and_names_both_counts() {
        let e = auto(Some(2045), Some(12)).expect_err("both hold keys");
        assert!(e.contains("v2: 2045, v3: 12"), "{e}");
        assert!(e.contains("--etcd-api v2|v3"), "{e}");
        assert!(e.contains(PREFIX), "{e}");
    }

    #[test]
    fn with_no_key_anywhere_auto_follows_v2_where_etcd_serves_it_and_says_so() {
        let choice = auto(Some(0), Some(0)).expect("empty");
        assert_eq!(choice.api, Api::V2);
        assert!(choice.note.is_some_and(|n| n.contains("following v2")));
        let choice = auto(None, Some(0)).expect("no v2 API");
        assert_eq!(choice.api, Api::V3);
        assert!(
            choice
                .note
                .is_some_and(|n| n.contains("does not serve the v2 API"))
        );
    }

    #[test]
    fn a_fixed_keyspace_is_followed_whatever_the_counts() {
        let fixed = choose(
            ApiChoice::Fixed(Api::V3),
            census(Some(2045), Some(0)),
            PREFIX,
        );
        assert_eq!(
            fixed,
            Ok(Choice {
                api: Api::V3,
                note: None
            })
        );
    }
}
