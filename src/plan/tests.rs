//! Planner tests: one per rule, named after the behaviour it pins, then property tests that
//! check the invariants on random desired, actual and owned states.

use super::*;
use crate::model::Member;

fn pk(v: u16) -> PKey {
    format!("0x{v:x}").parse().expect("pkey")
}

fn guid(v: u64) -> Guid {
    format!("{v:016x}").parse().expect("guid")
}

const PREFIX: &str = "/pcocc/global/opensm/pkeys/";

/// One etcd key under the prefix and its value.
type Kv = (String, String);

fn kv(name: &str, value: &str) -> Kv {
    (format!("{PREFIX}{name}"), value.to_string())
}

fn entry(hosts: &[u64], vfs: &[u64]) -> String {
    let list = |g: &[u64]| {
        g.iter()
            .map(|v| format!("'0x{v:016x}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{{'host_guids': [{}], 'vf_guids': [{}]}}",
        list(hosts),
        list(vfs)
    )
}

fn desired(kvs: &[Kv]) -> Desired {
    desired_with(kvs, &Policy::default())
}

fn desired_with(kvs: &[Kv], policy: &Policy) -> Desired {
    let entries = kvs.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    desired_from_listing(PREFIX, entries, policy)
}

/// Whether a plan changes nothing.
fn changes_nothing(plan: &Plan) -> bool {
    plan.actions.is_empty() && plan.forget.is_empty()
}

fn member(g: u64, index0: bool) -> Member {
    Member {
        guid: guid(g),
        join: Join {
            membership: Membership::Full,
            index0,
        },
    }
}

fn partition(p: u16, members: Vec<Member>) -> (PKey, Partition) {
    (
        pk(p),
        Partition {
            pkey: pk(p),
            name: format!("api_pkey_0x{p:x}"),
            ip_over_ib: true,
            members,
        },
    )
}

fn ufm(partitions: Vec<(PKey, Partition)>) -> Actual {
    let mut map: BTreeMap<PKey, Partition> = partitions.into_iter().collect();
    map.extend([partition(0x7fff, vec![])]);
    map.entry(PKey::DEFAULT)
        .and_modify(|p| p.name = "management".into());
    Actual {
        partitions: map,
        unreadable: BTreeMap::new(),
    }
}

/// Plans with nothing known about how keys left etcd.
fn plan_plain(want: &Desired, have: &Actual, owned: &BTreeSet<PKey>, guard: &DeleteGuard) -> Plan {
    plan(want, have, owned, guard, &Removals::default())
}

fn owned(keys: &[u16]) -> BTreeSet<PKey> {
    keys.iter().map(|k| pk(*k)).collect()
}

#[test]
fn creates_missing_partition_with_vfs_at_index0_and_hosts_not() {
    let want = desired(&[kv("0x200e", &entry(&[1], &[2, 3]))]);
    let result = plan_plain(&want, &ufm(vec![]), &owned(&[]), &DeleteGuard::default());
    let join = |index0| Join {
        membership: Membership::Full,
        index0,
    };
    assert_eq!(
        result.actions,
        vec![
            Action::Add {
                pkey: pk(0x200e),
                guids: vec![guid(1)],
                join: join(false),
                ip_over_ib: true,
                creates: true
            },
            Action::Add {
                pkey: pk(0x200e),
                guids: vec![guid(2), guid(3)],
                join: join(true),
                ip_over_ib: true,
                creates: false
            },
        ]
    );
}

#[test]
fn in_sync_partition_needs_nothing_and_becomes_owned() {
    let want = desired(&[kv("0x2000", &entry(&[1], &[2]))]);
    let have = ufm(vec![partition(
        0x2000,
        vec![member(1, false), member(2, true)],
    )]);
    let result = plan_plain(&want, &have, &owned(&[]), &DeleteGuard::default());
    assert!(changes_nothing(&result), "{result:?}");
    assert_eq!(result.in_sync, vec![pk(0x2000)]);
}

#[test]
fn adds_before_removing() {
    let want = desired(&[kv("0x2000", &entry(&[], &[2]))]);
    let have = ufm(vec![partition(0x2000, vec![member(1, true)])]);
    let result = plan_plain(&want, &have, &owned(&[0x2000]), &DeleteGuard::default());
    assert!(matches!(result.actions[0], Action::Add { ref guids, .. } if guids == &[guid(2)]));
    assert!(matches!(result.actions[1], Action::Remove { ref guids, .. } if guids == &[guid(1)]));
    assert_eq!(result.actions.len(), 2);
}

#[test]
fn corrects_wrong_index0_by_re_adding() {
    let want = desired(&[kv("0x2000", &entry(&[1], &[]))]);
    let have = ufm(vec![partition(0x2000, vec![member(1, true)])]);
    let result = plan_plain(&want, &have, &owned(&[0x2000]), &DeleteGuard::default());
    assert!(matches!(
        result.actions.as_slice(),
        [Action::Add {
            join: Join { index0: false, .. },
            creates: false,
            ..
        }]
    ));
}

#[test]
fn corrects_wrong_ip_over_ib_flag() {
    let want = desired(&[kv("0x2000", &entry(&[1], &[]))]);
    let mut have = ufm(vec![partition(0x2000, vec![member(1, false)])]);
    if let Some(p) = have.partitions.get_mut(&pk(0x2000)) {
        p.ip_over_ib = false;
    }
    let result = plan_plain(&want, &have, &owned(&[0x2000]), &DeleteGuard::default());
    assert!(matches!(
        result.actions.as_slice(),
        [Action::Add {
            ip_over_ib: true,
            ..
        }]
    ));
}

#[test]
fn deletes_owned_partition_whose_key_left_etcd() {
    let want = desired(&[kv("0x2000", &entry(&[1], &[]))]);
    let have = ufm(vec![
        partition(0x2000, vec![member(1, false)]),
        partition(0x2001, vec![member(5, false)]),
    ]);
    let result = plan_plain(
        &want,
        &have,
        &owned(&[0x2000, 0x2001]),
        &DeleteGuard::default(),
    );
    assert_eq!(result.actions, vec![Action::Delete { pkey: pk(0x2001) }]);
}

#[test]
fn keeps_unmanaged_partition() {
    let want = desired(&[kv("0x2000", &entry(&[1], &[]))]);
    let have = ufm(vec![
        partition(0x2000, vec![member(1, false)]),
        partition(0x10, vec![member(7, false)]),
    ]);
    let result = plan_plain(&want, &have, &owned(&[0x2000]), &DeleteGuard::default());
    assert!(result.actions.is_empty());
    assert_eq!(result.unmanaged, vec![pk(0x10)]);
}

#[test]
fn never_reports_or_touches_the_default_partition() {
    let result = plan_plain(
        &desired(&[]),
        &ufm(vec![]),
        &owned(&[0x7fff]),
        &DeleteGuard::default(),
    );
    assert!(result.actions.is_empty());
    assert!(result.unmanaged.is_empty());
}

#[test]
fn invalid_entry_leaves_its_partition_untouched() {
    let want = desired(&[
        kv("0x2000", "{'host_guids': ['0xnothex'], 'vf_guids': []}"),
        kv("0x2001", "{'host_guids': [], 'vf_guids': []}"),
        kv("0x2002", "not a dict"),
    ]);
    let have = ufm(vec![
        partition(0x2000, vec![member(1, false)]),
        partition(0x2001, vec![member(2, false)]),
        partition(0x2002, vec![member(3, false)]),
    ]);
    let result = plan_plain(
        &want,
        &have,
        &owned(&[0x2000, 0x2001, 0x2002]),
        &DeleteGuard::default(),
    );
    assert!(result.actions.is_empty(), "{:?}", result.actions);
    assert_eq!(result.invalid.len(), 3);
    assert!(result.invalid.iter().all(|i| i.pkey.is_some()));
    assert!(result.invalid[0].reason.contains("0xnothex"));
    assert!(result.forget.is_empty());
}

#[test]
fn reports_bad_key_names() {
    let want = desired(&[
        kv("0x12345", &entry(&[1], &[])),
        kv("notakey", &entry(&[1], &[])),
        kv("0x7fff", &entry(&[1], &[])),
        kv("0x0", &entry(&[1], &[])),
        kv("sub/0x2000", &entry(&[1], &[])),
    ]);
    assert!(want.partitions.is_empty());
    assert_eq!(want.invalid.len(), 5);
}

#[test]
fn reads_unpadded_and_uppercase_key_names() {
    let want = desired(&[kv("0x1a", &entry(&[1], &[])), kv("0X2B", &entry(&[2], &[]))]);
    assert_eq!(
        want.partitions.keys().copied().collect::<Vec<_>>(),
        vec![pk(0x1a), pk(0x2b)]
    );
}

#[test]
fn two_spellings_of_one_key_leave_it_untouched() {
    let want = desired(&[
        kv("0x1a", &entry(&[1], &[])),
        kv("0x001a", &entry(&[2], &[])),
    ]);
    assert!(want.partitions.is_empty());
    assert_eq!(want.invalid.len(), 1);
}

#[test]
fn refuses_mass_delete() {
    let keep: Vec<Kv> = (0..5)
        .map(|i| kv(&format!("0x{:x}", 0x100 + i), &entry(&[1], &[])))
        .collect();
    let mut have = Vec::new();
    for i in 0..5 {
        have.push(partition(0x100 + i, vec![member(1, false)]));
    }
    for i in 0..11 {
        have.push(partition(0x200 + i, vec![member(1, false)]));
    }
    let all: Vec<u16> = (0..5)
        .map(|i| 0x100 + i)
        .chain((0..11).map(|i| 0x200 + i))
        .collect();
    let result = plan_plain(
        &desired(&keep),
        &ufm(have.clone()),
        &owned(&all),
        &DeleteGuard::default(),
    );
    assert!(result.refusal.is_some());
    assert_eq!(result.refused_deletes.len(), 11);
    assert!(
        !result
            .actions
            .iter()
            .any(|a| matches!(a, Action::Delete { .. }))
    );

    let allow = DeleteGuard {
        allow_mass_delete: true,
        ..DeleteGuard::default()
    };
    let result = plan_plain(&desired(&keep), &ufm(have), &owned(&all), &allow);
    assert_eq!(result.actions.len(), 11);
}

#[test]
fn refuses_deleting_everything_when_the_prefix_reads_empty() {
    let have = ufm(vec![
        partition(0x2000, vec![member(1, false)]),
        partition(0x2001, vec![member(2, false)]),
    ]);
    let result = plan_plain(
        &desired(&[]),
        &have,
        &owned(&[0x2000, 0x2001]),
        &DeleteGuard::default(),
    );
    assert!(
        result
            .refusal
            .as_deref()
            .is_some_and(|r| r.contains("empty"))
    );
    assert!(result.actions.is_empty());
}

#[test]
fn last_job_ending_deletes_its_one_partition() {
    let have = ufm(vec![partition(0x2000, vec![member(1, false)])]);
    let result = plan_plain(
        &desired(&[]),
        &have,
        &owned(&[0x2000]),
        &DeleteGuard::default(),
    );
    assert_eq!(result.actions, vec![Action::Delete { pkey: pk(0x2000) }]);
}

#[test]
fn forgets_owned_partitions_gone_from_both_sides() {
    let result = plan_plain(
        &desired(&[]),
        &ufm(vec![]),
        &owned(&[0x2000]),
        &DeleteGuard::default(),
    );
    assert_eq!(result.forget, vec![pk(0x2000)]);
    let next = next_owned(
        &owned(&[0x2000]),
        &result,
        &BTreeSet::new(),
        &BTreeSet::new(),
    );
    assert!(next.is_empty());
}

#[test]
fn ownership_follows_successes_and_deletions() {
    let want = desired(&[
        kv("0x2000", &entry(&[1], &[])),
        kv("0x2001", &entry(&[2], &[])),
    ]);
    let have = ufm(vec![
        partition(0x2001, vec![member(2, false)]),
        partition(0x2002, vec![member(3, false)]),
    ]);
    let before = owned(&[0x2002]);
    let result = plan_plain(&want, &have, &before, &DeleteGuard::default());
    let next = next_owned(&before, &result, &owned(&[0x2000]), &owned(&[0x2002]));
    assert_eq!(next, owned(&[0x2000, 0x2001]));
}

/// Ownership after a pass, as the engine keeps it: partitions synced or changed are owned;
/// deleted and forgotten ones are not.
fn next_owned(
    owned: &BTreeSet<PKey>,
    plan: &Plan,
    succeeded: &BTreeSet<PKey>,
    deleted: &BTreeSet<PKey>,
) -> BTreeSet<PKey> {
    let mut next = owned.clone();
    next.extend(plan.in_sync.iter().copied());
    next.extend(succeeded.iter().copied());
    for pkey in deleted.iter().chain(plan.forget.iter()) {
        next.remove(pkey);
    }
    next
}

// ---- Property tests -------------------------------------------------------------------------

/// xorshift64*: deterministic, dependency-free randomness for the property tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// UFM's semantics, as the simulator implements them: add creates and overwrites, removing
/// the last member deletes the partition. `fails` says which actions UFM refuses; as the engine
/// does, a partition's later actions are skipped after one of its actions failed. Returns the
/// state and the partitions whose actions all went through.
fn apply(
    actual: &BTreeMap<PKey, Partition>,
    actions: &[Action],
    mut fails: impl FnMut(&Action) -> bool,
) -> (BTreeMap<PKey, Partition>, BTreeSet<PKey>) {
    let mut state = actual.clone();
    let mut failed = BTreeSet::new();
    let mut succeeded = BTreeSet::new();
    for action in actions {
        let pkey = action.pkey();
        if failed.contains(&pkey) {
            continue;
        }
        if fails(action) {
            failed.insert(pkey);
            succeeded.remove(&pkey);
            continue;
        }
        succeeded.insert(pkey);
        match action {
            Action::Add {
                pkey,
                guids,
                join,
                ip_over_ib,
                ..
            } => {
                let p = state.entry(*pkey).or_insert_with(|| Partition {
                    pkey: *pkey,
                    name: format!("api_pkey_{pkey}"),
                    ip_over_ib: *ip_over_ib,
                    members: Vec::new(),
                });
                p.ip_over_ib = *ip_over_ib;
                for g in guids {
                    p.members.retain(|m| m.guid != *g);
                    p.members.push(Member {
                        guid: *g,
                        join: *join,
                    });
                }
                p.members.sort_by_key(|m| m.guid);
            }
            Action::Remove { pkey, guids, .. } => {
                let p = state
                    .get_mut(pkey)
                    .expect("remove from an existing partition");
                let before = p.members.len();
                p.members.retain(|m| !guids.contains(&m.guid));
                assert!(
                    before == 0 || !p.members.is_empty(),
                    "removing the last GUID of {pkey} would delete a partition that should stay"
                );
            }
            Action::Delete { pkey } => {
                state.remove(pkey);
            }
        }
    }
    (state, succeeded)
}

/// Keys of one to four hex digits, so that padding and case change their spelling.
const KEYS: [u16; 9] = [
    0x5, 0x1a, 0x2b, 0x3c0, 0x4d1, 0x2000, 0x2001, 0x7ffe, 0x7fff,
];

/// The three ways a key name is written: pcocc's unpadded lowercase, padded, upper case.
fn spelling(rng: &mut Rng, k: u16) -> String {
    match rng.below(3) {
        0 => format!("0x{k:x}"),
        1 => format!("0x{k:04x}"),
        _ => format!("0X{k:X}"),
    }
}

fn random_policy(rng: &mut Rng) -> Policy {
    Policy {
        host_index0: rng.chance(30),
        vf_index0: rng.chance(70),
        membership: random_membership(rng),
        ip_over_ib: rng.chance(70),
    }
}

fn random_membership(rng: &mut Rng) -> Membership {
    if rng.chance(25) {
        Membership::Limited
    } else {
        Membership::Full
    }
}

fn random_guard(rng: &mut Rng) -> DeleteGuard {
    DeleteGuard {
        max_deletes: rng.below(4) as usize,
        allow_mass_delete: rng.chance(50),
    }
}

fn random_state(rng: &mut Rng) -> (Vec<Kv>, Actual, BTreeSet<PKey>) {
    let mut kvs = Vec::new();
    let mut actual = ufm(vec![]);
    let mut owned = BTreeSet::new();
    let pick =
        |rng: &mut Rng| -> Vec<u64> { (0..rng.below(4)).map(|_| 1 + rng.below(6)).collect() };
    for &k in &KEYS {
        if rng.chance(60) {
            let value = match rng.below(10) {
                0 => "{'host_guids': ['0xbad'], 'vf_guids': []}".to_string(),
                1 => "garbage".to_string(),
                _ => entry(&pick(rng), &pick(rng)),
            };
            let name = spelling(rng, k);
            kvs.push(kv(&name, &value));
        }
        if rng.chance(60) && k != 0x7fff {
            let members = pick(rng)
                .into_iter()
                .map(|g| {
                    let mut m = member(g, rng.chance(50));
                    m.join.membership = random_membership(rng);
                    (g, m)
                })
                .collect::<BTreeMap<_, _>>()
                .into_values()
                .collect();
            let (pkey, mut p) = partition(k, members);
            p.ip_over_ib = rng.chance(80);
            actual.partitions.insert(pkey, p);
        }
        if rng.chance(50) {
            owned.insert(pk(k));
        }
    }
    (kvs, actual, owned)
}

fn random_removals(rng: &mut Rng, owned: &BTreeSet<PKey>) -> Removals {
    let verdicts = owned
        .iter()
        .filter_map(|p| match rng.below(3) {
            0 => Some((*p, Removal::OneByOne)),
            1 => Some((*p, Removal::Bulk("removed together".into()))),
            _ => None,
        })
        .collect();
    Removals {
        verdicts,
        locked: rng.chance(5).then(|| "another etcd".to_string()),
        suspect: rng.chance(10).then(|| "wrong keyspace".to_string()),
        unknown: None,
        deferred: BTreeSet::new(),
        confirmed: BTreeSet::new(),
    }
}

/// Marks a random partition UFM listed as unreadable.
fn spoil_one(rng: &mut Rng, actual: &mut Actual) {
    let keys: Vec<PKey> = actual.partitions.keys().copied().collect();
    if !keys.is_empty() && rng.chance(20) {
        let pkey = keys[rng.below(keys.len() as u64) as usize];
        actual.partitions.remove(&pkey);
        actual.unreadable.insert(pkey, "invalid GUID".into());
    }
}

/// The Delete actions of a plan.
fn deletions(plan: &Plan) -> BTreeSet<PKey> {
    plan.actions
        .iter()
        .filter(|a| matches!(a, Action::Delete { .. }))
        .map(Action::pkey)
        .collect()
}

/// For 5,000 random etcd, UFM and ownership states, with a random policy, deletion guard and
/// knowledge of how keys left, some partitions unreadable, and UFM refusing random actions:
/// the plan touches only partitions it owns or etcd lists, never 0x7fff, an invalid entry's
/// or an unreadable partition; never empties a partition that should stay; deletes nothing a
/// lock, a suspicion or a bulk verdict forbids, and no more than the count guard allows; and
/// once every action has gone through, the partitions match etcd and the next plan changes
/// nothing but deletions the guard held back.
#[test]
fn property_plans_respect_ownership_and_converge() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..5000 {
        let (kvs, mut actual, owned) = random_state(&mut rng);
        spoil_one(&mut rng, &mut actual);
        let policy = random_policy(&mut rng);
        let guard = random_guard(&mut rng);
        let removals = random_removals(&mut rng, &owned);
        let want = desired_with(&kvs, &policy);
        let result = plan(&want, &actual, &owned, &guard, &removals);
        let untouchable: BTreeSet<PKey> = want
            .invalid
            .iter()
            .filter_map(|i| i.pkey)
            .chain(actual.unreadable.keys().copied())
            .collect();
        for action in &result.actions {
            let pkey = action.pkey();
            assert_ne!(pkey, PKey::DEFAULT, "case {case}: touched 0x7fff");
            assert!(
                !untouchable.contains(&pkey),
                "case {case}: touched invalid or unreadable {pkey}"
            );
            let ours = owned.contains(&pkey) || want.partitions.contains_key(&pkey);
            assert!(ours, "case {case}: touched unowned, unlisted {pkey}");
        }
        let deleted = deletions(&result);
        let candidates = deletion_candidates(&want, &actual, &owned);
        if removals.locked.is_some() {
            assert!(deleted.is_empty(), "case {case}: deleted despite the lock");
        } else if guard.allow_mass_delete {
            assert_eq!(deleted, candidates, "case {case}: the override deletes all");
        } else if removals.suspect.is_some() {
            assert!(
                deleted.is_empty(),
                "case {case}: deleted despite the suspicion"
            );
        } else {
            for pkey in &deleted {
                let verdict = removals.verdicts.get(pkey);
                assert!(
                    !matches!(verdict, Some(Removal::Bulk(_))),
                    "case {case}: deleted {pkey} removed in bulk"
                );
            }
            let unknown = deleted
                .iter()
                .filter(|p| !removals.verdicts.contains_key(p))
                .count();
            if unknown > guard.max_deletes {
                assert!(
                    unknown * 2 <= owned.len(),
                    "case {case}: the guard let {unknown} through"
                );
            }
        }
        assert!(
            deleted.len() + result.refused_deletes.len() == candidates.len(),
            "case {case}: every candidate is deleted or refused"
        );

        // First UFM refuses about a third of the actions: nothing that should stay is emptied
        // (checked inside `apply`), and ownership follows what went through.
        let (partial, succeeded) = apply(&actual.partitions, &result.actions, |_| rng.chance(30));
        let partial = Actual {
            partitions: partial,
            unreadable: actual.unreadable.clone(),
        };
        let deleted: BTreeSet<PKey> = deleted.intersection(&succeeded).copied().collect();
        let owned_partial = next_owned(&owned, &result, &succeeded, &deleted);
        for pkey in actual.partitions.keys() {
            let kept = !owned.contains(pkey)
                || want.partitions.contains_key(pkey)
                || untouchable.contains(pkey);
            if kept {
                assert!(
                    partial.partitions.contains_key(pkey),
                    "case {case}: {pkey} disappeared"
                );
            }
        }

        // Then the next pass retries, and everything goes through.
        let retry = plan(&want, &partial, &owned_partial, &guard, &removals);
        let (after, succeeded) = apply(&partial.partitions, &retry.actions, |_| false);
        for (pkey, partition) in &want.partitions {
            if untouchable.contains(pkey) {
                continue;
            }
            let got = after
                .get(pkey)
                .expect("desired partition exists after apply");
            let members: BTreeMap<Guid, Join> =
                got.members.iter().map(|m| (m.guid, m.join)).collect();
            assert_eq!(
                &members, &partition.members,
                "case {case}: {pkey} not converged"
            );
            assert_eq!(got.ip_over_ib, partition.ip_over_ib);
        }
        let after = Actual {
            partitions: after,
            unreadable: actual.unreadable.clone(),
        };
        let owned_after = next_owned(&owned_partial, &retry, &succeeded, &deletions(&retry));
        // Only deletions the guard held back may be left (their count relative to what is
        // owned may let them through now).
        let again = plan(&want, &after, &owned_after, &guard, &removals);
        let left: Vec<&Action> = again
            .actions
            .iter()
            .filter(|a| retry.refusal.is_none() || !matches!(a, Action::Delete { .. }))
            .collect();
        assert!(
            left.is_empty(),
            "case {case}: third plan not empty: {left:?}"
        );
    }
}

#[test]
fn keys_removed_one_by_one_are_deleted_however_many() {
    let have: Vec<(PKey, Partition)> = (0..12)
        .map(|i| partition(0x100 + i, vec![member(1, false)]))
        .collect();
    let all: Vec<u16> = (0..12).map(|i| 0x100 + i).collect();
    let keep = desired(&[kv("0x100", &entry(&[1], &[]))]);
    let removals = Removals {
        verdicts: all[1..]
            .iter()
            .map(|p| (pk(*p), Removal::OneByOne))
            .collect(),
        ..Removals::default()
    };
    let result = plan(
        &keep,
        &ufm(have.clone()),
        &owned(&all),
        &DeleteGuard::default(),
        &removals,
    );
    assert_eq!(deletions(&result).len(), 11, "11 of 12 job ends go through");
    assert!(result.refusal.is_none());
    // The last two jobs end while the prefix reads empty: both go too.
    let two = Removals {
        verdicts: [
            (pk(0x100), Removal::OneByOne),
            (pk(0x101), Removal::OneByOne),
        ]
        .into(),
        ..Removals::default()
    };
    let result = plan(
        &desired(&[]),
        &ufm(have[..2].to_vec()),
        &owned(&all[..2]),
        &DeleteGuard::default(),
        &two,
    );
    assert_eq!(deletions(&result).len(), 2);
}

#[test]
fn keys_removed_together_are_refused_with_the_reason_until_allowed() {
    let have = ufm(vec![
        partition(0x100, vec![member(1, false)]),
        partition(0x101, vec![member(1, false)]),
        partition(0x102, vec![member(1, false)]),
    ]);
    let removals = Removals {
        verdicts: [
            (
                pk(0x100),
                Removal::Bulk("2 keys deleted at revision 9".into()),
            ),
            (
                pk(0x101),
                Removal::Bulk("2 keys deleted at revision 9".into()),
            ),
            (pk(0x102), Removal::OneByOne),
        ]
        .into(),
        ..Removals::default()
    };
    let all = owned(&[0x100, 0x101, 0x102]);
    let result = plan(
        &desired(&[]),
        &have,
        &all,
        &DeleteGuard::default(),
        &removals,
    );
    assert_eq!(deletions(&result), [pk(0x102)].into());
    assert_eq!(result.refused_deletes, vec![pk(0x100), pk(0x101)]);
    assert_eq!(
        result.refusal.as_deref(),
        Some("2 keys deleted at revision 9")
    );
    let allow = DeleteGuard {
        allow_mass_delete: true,
        ..DeleteGuard::default()
    };
    assert_eq!(
        deletions(&plan(&desired(&[]), &have, &all, &allow, &removals)).len(),
        3
    );
}

#[test]
fn a_record_of_another_etcd_deletes_nothing_even_when_allowed() {
    let have = ufm(vec![partition(0x100, vec![member(1, false)])]);
    let removals = Removals {
        verdicts: [(pk(0x100), Removal::OneByOne)].into(),
        locked: Some("it was made with etcd cluster 1".into()),
        ..Removals::default()
    };
    let allow = DeleteGuard {
        allow_mass_delete: true,
        ..DeleteGuard::default()
    };
    let result = plan(&desired(&[]), &have, &owned(&[0x100]), &allow, &removals);
    assert!(deletions(&result).is_empty());
    assert_eq!(
        result.refusal.as_deref(),
        Some("it was made with etcd cluster 1")
    );
}

#[test]
fn an_unreadable_partition_is_reported_and_left_alone() {
    let want = desired(&[kv("0x100", &entry(&[1], &[]))]);
    let mut have = ufm(vec![]);
    have.unreadable
        .insert(pk(0x100), "invalid GUID \"0xBAD\"".into());
    have.unreadable
        .insert(pk(0x200), "invalid GUID \"0xBAD\"".into());
    let result = plan_plain(&want, &have, &owned(&[0x200]), &DeleteGuard::default());
    assert!(result.actions.is_empty(), "{:?}", result.actions);
    assert!(result.forget.is_empty(), "nor is its ownership dropped");
    assert_eq!(result.unreadable.len(), 2);
}

#[test]
fn a_suspect_configuration_refuses_deletions_but_not_other_changes() {
    let want = desired(&[kv("0x2000", &entry(&[1], &[]))]);
    let have = ufm(vec![partition(0x2001, vec![member(5, false)])]);
    let removals = Removals {
        suspect: Some("wrong keyspace".into()),
        ..Removals::default()
    };
    let result = plan(
        &want,
        &have,
        &owned(&[0x2001]),
        &DeleteGuard::default(),
        &removals,
    );
    assert_eq!(result.refused_deletes, vec![pk(0x2001)]);
    assert_eq!(result.refusal.as_deref(), Some("wrong keyspace"));
    assert!(matches!(
        result.actions.as_slice(),
        [Action::Add { creates: true, .. }]
    ));
}
