//! ufm-pkeyd against the two UFM route sets the simulator serves: `full` (every documented
//! route, under `/ufmRest` with basic authentication here) and `nvidia-mock` (what NVIDIA's own
//! UFM mock serves: `/ufmRestV3` with a token only, `POST /actions/remove_guids_from_pkey` but
//! no `DELETE …/guids/{guids}`, no `DELETE /resources/pkeys/{pkey}`, no
//! `POST /resources/pkeys/add`), with a real etcd.
//!
//! - Every monitor scenario converges on both sets (create, add, remove, replace the GUID set,
//!   repair a GUID added by hand, delete), checked on UFM's state.
//! - Every one-shot `ufm` operation works on both sets, or exits with the status and message
//!   that say why it cannot.
//! - A delete whose routes answer 404 never drops ownership: the partition stays owned and
//!   every pass tries again, until one works.
//! - A 404 from a fixed endpoint (version, list, one PKey) is exit 1 with a hint, never 3.
//! - A one-shot add keeps the partition's IPoIB on a UFM that sets it from every add.
//! - A fail-over to another UFM host learns that host's routes again.

mod support;

use serde_json::{Value, json};
use support::*;

/// The access token both simulators accept.
const TOKEN: &str = "czQYeCfKIeXqlwSqtorunOPysaSp2r";

/// GUIDs of the one-shot tests.
const G1: &str = "0002c903000e0b72";
const G2: &str = "0002c903000e0b73";
const G3: &str = "0002c903000e0b74";

/// A route set of the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Set {
    Full,
    Mock,
}

const SETS: [Set; 2] = [Set::Full, Set::Mock];

impl Set {
    /// A simulator serving this set, knowing every port the tests use (the mock refuses an add
    /// naming a port it does not know).
    fn start(self) -> UfmSim {
        let sim = match self {
            Set::Full => UfmSim::start(SimOptions {
                token: Some(TOKEN.to_string()),
                ..SimOptions::default()
            }),
            Set::Mock => UfmSim::start(SimOptions::nvidia_mock(TOKEN)),
        };
        let ports: Vec<String> = (1..=20)
            .flat_map(|n| [host(n), vf(n)])
            .map(|g| format!("{g:016x}"))
            .chain([G1, G2, G3].map(String::from))
            .collect();
        sim.set_known_guids(&ports.iter().map(String::as_str).collect::<Vec<_>>());
        sim
    }

    /// The authentication flags for this set: the rig's user and password for `full`, a
    /// token file (in `dir`) for the mock, which serves tokens only.
    fn auth(self, dir: &TempDir) -> Vec<String> {
        match self {
            Set::Full => Vec::new(),
            Set::Mock => {
                let file = dir.write("ufm-token", &format!("{TOKEN}\n"));
                vec!["--ufm-token-file".to_string(), path_text(&file)]
            }
        }
    }

    /// Adds `guid` to `pkey` by hand, as an operator would, through the route this set serves.
    fn hand_add(self, sim: &UfmSim, pkey: &str, guid: u64) {
        let body = json!({"pkey": pkey, "guids": [format!("{guid:016x}")], "membership": "full",
                          "index0": false, "ip_over_ib": true});
        let reply = match self {
            Set::Full => sim.api("POST", "/ufmRest/resources/pkeys", Some(&body)),
            Set::Mock => sim.token_api("POST", "/ufmRestV3/resources/pkeys", Some(&body)),
        };
        assert_eq!(reply.status, 200, "{self:?}: adding by hand: {reply:?}");
    }
}

/// `(method, route)` of every UFM API request the simulator logged.
fn routes_used(sim: &UfmSim) -> Vec<(String, String)> {
    sim.requests_log()
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (text("method"), text("route"))
        })
        .collect()
}

fn used(sim: &UfmSim, method: &str, route: &str) -> usize {
    routes_used(sim)
        .iter()
        .filter(|(m, r)| m == method && r == route)
        .count()
}

// ------------------------------------------------------------------------------------------
// monitor: every scenario converges on both sets
// ------------------------------------------------------------------------------------------

/// What a step of a partition's life changes.
enum Change {
    /// The pcocc entry becomes these host and VF GUIDs (by number: `host(n)`, `vf(n)`).
    Put(&'static [u64], &'static [u64]),
    /// Somebody adds this host GUID in UFM by hand; the next full pass (the poll interval)
    /// repairs it.
    HandAdd(u64),
    /// The entry leaves etcd.
    Delete,
}

/// One step, and the partition UFM must then hold (`None`: deleted).
struct Step {
    what: &'static str,
    change: Change,
    want: Option<(&'static [u64], &'static [u64])>,
}

/// The life of one partition, each step a scenario the daemon must converge on.
const LIFE: &[Step] = &[
    Step {
        what: "create",
        change: Change::Put(&[1, 2], &[1]),
        want: Some((&[1, 2], &[1])),
    },
    Step {
        what: "add a GUID",
        change: Change::Put(&[1, 2, 3], &[1]),
        want: Some((&[1, 2, 3], &[1])),
    },
    Step {
        what: "remove a GUID",
        change: Change::Put(&[1, 3], &[1]),
        want: Some((&[1, 3], &[1])),
    },
    Step {
        what: "replace the GUID set",
        change: Change::Put(&[4, 5], &[2]),
        want: Some((&[4, 5], &[2])),
    },
    Step {
        what: "repair a GUID added by hand",
        change: Change::HandAdd(9),
        want: Some((&[4, 5], &[2])),
    },
    Step {
        what: "delete",
        change: Change::Delete,
        want: None,
    },
];

fn guids(numbers: &[u64], make: fn(u64) -> u64) -> Vec<u64> {
    numbers.iter().map(|n| make(*n)).collect()
}

/// The daemon polls every 2 s: drift is repaired by the poll, not by a SIGHUP, which would
/// build a new UFM client that learns the routes again.
fn monitor_converges_through_a_partitions_life(set: Set) {
    let rig = Rig::with_sim(Api::V3, set.start());
    let mut args = vec!["--poll-interval".to_string(), "2".to_string()];
    args.extend(set.auth(&rig.dir));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let notify = Notify::new();
    let daemon = rig.monitor(&args, &notify);
    let mut passes = 0;
    notify.next_pass(&daemon, &mut passes, secs(10));

    for step in LIFE {
        match step.change {
            Change::Put(hosts, vfs) => rig.put("0x10", &guids(hosts, host), &guids(vfs, vf)),
            Change::HandAdd(n) => set.hand_add(&rig.sim, "0x10", host(n)),
            Change::Delete => rig.delete("0x10"),
        }
        let want = step
            .want
            .map(|(hosts, vfs)| partition(&guids(hosts, host), &guids(vfs, vf)));
        rig.wait_partition(&daemon, "0x10", want.as_ref(), secs(10));
        let owned: &[&str] = if step.want.is_some() { &["0x10"] } else { &[] };
        wait_until(
            &format!("{set:?}, {}: the state file to own {owned:?}", step.what),
            secs(5),
            || rig.owned() == owned,
        );
    }
    assert_eq!(rig.pkeys(), Vec::<String>::new(), "{set:?}");

    let run = daemon.stop();
    run.assert_ok();
    assert!(
        !run.stderr.contains("error:"),
        "{set:?}: no error:\n{}",
        run.stderr
    );
    let csv_removes = used(&rig.sim, "DELETE", "/resources/pkeys/{pkey}/guids");
    let action_removes = used(&rig.sim, "POST", "/actions/remove_guids_from_pkey");
    match set {
        Set::Full => {
            assert_eq!(
                action_removes,
                0,
                "the documented routes serve: {:?}",
                routes_used(&rig.sim)
            );
            assert!(csv_removes >= 3, "{:?}", routes_used(&rig.sim));
            assert_eq!(used(&rig.sim, "DELETE", "/resources/pkeys/{pkey}"), 1);
        }
        Set::Mock => {
            // Learned once, from the first answer; every later remove goes the other way.
            assert_eq!(csv_removes, 1, "{:?}", routes_used(&rig.sim));
            assert!(action_removes >= 3, "{:?}", routes_used(&rig.sim));
            assert_eq!(
                run.stderr
                    .matches("has no DELETE /resources/pkeys/{pkey}/guids/{guids} (HTTP 404)")
                    .count(),
                1,
                "the new route set is logged once:\n{}",
                run.stderr
            );
            assert!(
                run.stderr
                    .contains("has no DELETE /resources/pkeys/{pkey} (HTTP 405)"),
                "{}",
                run.stderr
            );
        }
    }
}

#[test]
fn monitor_converges_on_every_scenario_with_the_full_route_set() {
    monitor_converges_through_a_partitions_life(Set::Full);
}

#[test]
fn monitor_converges_on_every_scenario_with_nvidia_mocks_route_set() {
    monitor_converges_through_a_partitions_life(Set::Mock);
}

// ------------------------------------------------------------------------------------------
// A 404 for a missing route on delete never drops ownership
// ------------------------------------------------------------------------------------------

/// Fault rules that leave this set no route to delete a partition with: each answers an
/// Apache 404 page, as a UFM without the route would.
fn no_delete_route(set: Set) -> Value {
    let page_404 =
        |method: &str, route: &str| json!({"method": method, "route": route, "status": 404});
    match set {
        Set::Full => json!([
            page_404("DELETE", "/resources/pkeys/{pkey}"),
            page_404("DELETE", "/resources/pkeys/{pkey}/guids"),
            page_404("POST", "/actions/remove_guids_from_pkey"),
        ]),
        // The mock has neither DELETE route of its own.
        Set::Mock => json!([page_404("POST", "/actions/remove_guids_from_pkey")]),
    }
}

fn a_missing_delete_route_keeps_the_partition_owned_and_tried(set: Set) {
    let rig = Rig::with_sim(Api::V3, set.start());
    let mut args = vec!["--poll-interval".to_string(), "60".to_string()];
    args.extend(set.auth(&rig.dir));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    rig.put("0x20", &[host(1), host(2)], &[]);
    let notify = Notify::new();
    let mut daemon = rig.monitor(&args, &notify);
    let mut passes = 0;
    notify.next_pass(&daemon, &mut passes, secs(10));
    assert_eq!(rig.owned(), ["0x20"], "{set:?}");

    rig.sim.add_faults(no_delete_route(set));
    rig.delete("0x20");
    let failed = "0x20: delete partition failed";
    daemon.wait_for_stderr_count(failed, 1, secs(10));
    for expected in 2..=3 {
        daemon.signal("HUP");
        daemon.wait_for_stderr_count(failed, expected, secs(10));
        assert_eq!(
            rig.owned(),
            ["0x20"],
            "{set:?}: still owned after {expected} passes"
        );
        assert!(
            rig.partition("0x20").is_some(),
            "{set:?}: the partition is still in UFM"
        );
    }
    let stderr = daemon.stderr();
    assert!(
        stderr.contains(
            "cannot delete (it has no DELETE /resources/pkeys/{pkey}) by removing the GUIDs of 0x20"
        ),
        "{set:?}: the log says why:\n{stderr}"
    );
    assert!(!stderr.contains("0x20: delete partition\n"), "{stderr}");

    // Once UFM serves a route again, the next pass deletes it and ownership ends.
    rig.sim.clear_faults();
    daemon.signal("HUP");
    rig.wait_partition(&daemon, "0x20", None, secs(10));
    wait_until("the state file to drop 0x20", secs(5), || {
        rig.owned().is_empty()
    });
    daemon.stop().assert_ok();
}

#[test]
fn a_404_for_every_delete_route_keeps_the_partition_owned_full_set() {
    a_missing_delete_route_keeps_the_partition_owned_and_tried(Set::Full);
}

#[test]
fn a_404_for_every_delete_route_keeps_the_partition_owned_nvidia_mock() {
    a_missing_delete_route_keeps_the_partition_owned_and_tried(Set::Mock);
}

// ------------------------------------------------------------------------------------------
// One-shot operations on both sets
// ------------------------------------------------------------------------------------------

/// `ufm-pkeyd ufm` against one simulator, authenticated as its set needs.
struct OneShot {
    sim: UfmSim,
    set: Set,
    dir: TempDir,
}

impl OneShot {
    fn new(set: Set) -> OneShot {
        OneShot {
            sim: set.start(),
            set,
            dir: TempDir::new("ufm-routes"),
        }
    }

    /// Runs `ufm` with `args` after the connection flags; `basic` forces basic authentication.
    fn run_as(&self, basic: bool, args: &[&str]) -> Run {
        let mut all: Vec<String> = ["ufm", "--no-pcocc", "--http", "--ufm-host"]
            .map(String::from)
            .to_vec();
        all.push(self.sim.host_port());
        if basic || self.set == Set::Full {
            all.extend([
                "--ufm-password-file".to_string(),
                path_text(self.sim.password_file()),
            ]);
        } else {
            all.extend(self.set.auth(&self.dir));
        }
        all.extend(args.iter().map(|a| a.to_string()));
        pkeyd(&all.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_as(false, args)
    }

    /// The members of `pkey` in UFM, by GUID (`None`: no such partition).
    fn members(&self, pkey: &str) -> Option<Vec<String>> {
        let state = self.sim.state();
        let partition = state.get(pkey)?;
        let mut guids: Vec<String> = partition["guids"]
            .as_array()
            .expect("guids")
            .iter()
            .map(|m| m["guid"].as_str().expect("guid").to_string())
            .collect();
        guids.sort();
        Some(guids)
    }
}

/// Runs `args`, checks the exit status and that stdout (on success) or stderr holds `says`.
fn expect(ufm: &OneShot, args: &[&str], code: i32, says: &str) -> Run {
    let run = ufm.run(args);
    run.assert_code(code);
    let text = if code == 0 { &run.stdout } else { &run.stderr };
    assert!(
        text.contains(says),
        "{:?} {args:?}: expected {says:?} in:\n{text}",
        ufm.set
    );
    run
}

fn one_shot_operations(set: Set) {
    let ufm = OneShot::new(set);
    ufm.sim.seed(json!({"0x5000": {"guids": [
        {"guid": G1, "membership": "full", "index0": true},
        {"guid": G2, "membership": "full", "index0": true}], "ip_over_ib": true}}));

    expect(
        &ufm,
        &["--check"],
        0,
        "UFM 6.19.1-4: connected and authenticated",
    );
    expect(&ufm, &["--list"], 0, "0x5000");
    expect(&ufm, &["--get-pkey", "0x5000"], 0, G2);
    expect(
        &ufm,
        &["--get-pkey", "0x5001"],
        3,
        "PKey 0x5001 not found in UFM",
    );

    // Adding and removing GUIDs: the mock has no DELETE …/guids route, and an existing PKey
    // is never reported as not found.
    expect(
        &ufm,
        &["--pkey", "0x5000", "--guids", G3],
        0,
        "added 1 GUID to PKey 0x5000",
    );
    expect(
        &ufm,
        &["--pkey", "0x5000", "--guids", G1, "--remove-guids"],
        0,
        "removed 1 GUID from PKey 0x5000",
    );
    assert_eq!(
        ufm.members("0x5000"),
        Some(vec![G2.to_string(), G3.to_string()]),
        "{set:?}"
    );
    expect(
        &ufm,
        &["--pkey", "0x5999", "--guids", G1, "--remove-guids"],
        3,
        "PKey 0x5999 not found in UFM",
    );

    // Creating: empty (the mock has no /pkeys/add: an add without GUIDs, read back), or with
    // GUIDs; never over an existing partition.
    expect(
        &ufm,
        &["--create-pkey", "0x6000"],
        0,
        "created PKey 0x6000 (ip_over_ib on)",
    );
    assert_eq!(ufm.members("0x6000"), Some(vec![]), "{set:?}");
    assert_eq!(
        ufm.sim.state()["0x6000"]["ip_over_ib"],
        true,
        "{set:?}: UFM's default"
    );
    expect(
        &ufm,
        &["--create-pkey", "0x6000"],
        1,
        "PKey 0x6000 already exists in UFM",
    );
    expect(
        &ufm,
        &["--create-pkey", "0x6001", "--guids", G1, "--no-ip-over-ib"],
        0,
        "created PKey 0x6001 with 1 GUID (ip_over_ib off)",
    );
    assert_eq!(ufm.members("0x6001"), Some(vec![G1.to_string()]), "{set:?}");
    assert_eq!(ufm.sim.state()["0x6001"]["ip_over_ib"], false, "{set:?}");

    // Deleting: the mock deletes a partition by removing its last GUIDs, and says it cannot
    // delete an empty one.
    match set {
        Set::Full => {
            expect(&ufm, &["--delete-pkey", "0x6001"], 0, "deleted PKey 0x6001");
            expect(&ufm, &["--delete-pkey", "0x6000"], 0, "deleted PKey 0x6000");
        }
        Set::Mock => {
            expect(
                &ufm,
                &["--delete-pkey", "0x6001"],
                0,
                "deleted PKey 0x6001 by removing its 1 GUID (this UFM has no DELETE /resources/pkeys/{pkey}",
            );
            let run = expect(
                &ufm,
                &["--delete-pkey", "0x6000"],
                1,
                "cannot delete 0x6000: it has no DELETE /resources/pkeys/{pkey}, and 0x6000 has no GUID whose removal would make UFM delete it",
            );
            assert!(!run.stderr.contains("not found"), "{}", run.stderr);
            assert!(ufm.members("0x6000").is_some(), "still there");
        }
    }
    assert_eq!(ufm.members("0x6001"), None, "{set:?}");
    expect(
        &ufm,
        &["--delete-pkey", "0x6002"],
        3,
        "PKey 0x6002 not found in UFM",
    );
}

#[test]
fn every_one_shot_operation_works_on_the_full_route_set() {
    one_shot_operations(Set::Full);
}

#[test]
fn every_one_shot_operation_works_or_says_why_on_nvidia_mocks_route_set() {
    one_shot_operations(Set::Mock);
}

// ------------------------------------------------------------------------------------------
// Exit codes for 404s that are not about a PKey
// ------------------------------------------------------------------------------------------

#[test]
fn basic_auth_on_a_token_only_ufm_exits_1_with_the_hint_never_3() {
    let ufm = OneShot::new(Set::Mock);
    ufm.sim
        .seed(json!({"0x5000": {"guids": [{"guid": G1, "membership": "full", "index0": true}]}}));
    let hint = "wrong URL, UFM version or auth mode? this UFM answers /ufmRestV3 only";
    for args in [
        &["--check"][..],
        &["--list"][..],
        &["--get-pkey", "0x5000"][..],
        &["--pkey", "0x5000", "--guids", G1, "--remove-guids"][..],
        &["--delete-pkey", "0x5000"][..],
    ] {
        let run = ufm.run_as(true, args);
        run.assert_code(1);
        assert!(run.stderr.contains(hint), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("--ufm-token-file"),
            "{args:?}: names the fix: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("not found"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.reveals(ufm.sim.password()), "{run:?}");
    }
    assert_eq!(
        ufm.members("0x5000"),
        Some(vec![G1.to_string()]),
        "nothing changed"
    );
}

#[test]
fn a_404_page_from_the_list_or_the_version_exits_1_naming_the_url() {
    let ufm = OneShot::new(Set::Full);
    ufm.sim
        .add_faults(json!([{"method": "GET", "route": "/resources/pkeys", "status": 404}]));
    let run = ufm.run(&["--list"]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("/ufmRest/resources/pkeys?guids_data=true answered HTTP 404 with a web page")
            && run
                .stderr
                .contains("UFM 6.19.1-4 answers /app/ufm_version but not this read"),
        "{}",
        run.stderr
    );
    ufm.sim.clear_faults();
    // Under either root: not a UFM, or not this URL.
    ufm.sim
        .add_faults(json!([{"route": "/app/ufm_version", "status": 404}]));
    let run = ufm.run(&["--check"]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("/ufmRest/app/ufm_version answered HTTP 404 with a web page")
            && run.stderr.contains(
                "wrong URL, UFM version or auth mode? neither /ufmRest nor /ufmRestV3 answers there: check --ufm-host"
            ),
        "{}",
        run.stderr
    );
}

// ------------------------------------------------------------------------------------------
// IPoIB on a UFM that sets it from every add
// ------------------------------------------------------------------------------------------

#[test]
fn a_one_shot_add_keeps_the_partitions_ip_over_ib_where_every_add_sets_it() {
    for set in SETS {
        let ufm = OneShot::new(set);
        ufm.sim.set_mode(json!({"ipoib_on_add": "follow"}));
        ufm.sim.seed(json!({
            "0x5000": {"guids": [{"guid": G1, "membership": "full", "index0": true}], "ip_over_ib": true},
            "0x5001": {"guids": [{"guid": G1, "membership": "full", "index0": true}], "ip_over_ib": false},
        }));
        expect(
            &ufm,
            &["--pkey", "0x5000", "--guids", G2],
            0,
            "ip_over_ib on: kept",
        );
        expect(
            &ufm,
            &["--pkey", "0x5001", "--guids", G2],
            0,
            "ip_over_ib off: kept",
        );
        let state = ufm.sim.state();
        assert_eq!(
            state["0x5000"]["ip_over_ib"], true,
            "{set:?}: still on for every VM"
        );
        assert_eq!(state["0x5001"]["ip_over_ib"], false, "{set:?}: still off");
        assert_eq!(
            ufm.members("0x5000"),
            Some(vec![G1.to_string(), G2.to_string()])
        );

        // The control: in this mode a flag does change it.
        expect(
            &ufm,
            &["--pkey", "0x5000", "--guids", G3, "--no-ip-over-ib"],
            0,
            "ip_over_ib off: as asked",
        );
        assert_eq!(ufm.sim.state()["0x5000"]["ip_over_ib"], false, "{set:?}");
    }
}

// ------------------------------------------------------------------------------------------
// Fail-over to another UFM host
// ------------------------------------------------------------------------------------------

#[test]
fn a_fail_over_to_another_ufm_host_learns_its_routes_again() {
    // The first host is NVIDIA's mock, the second a full UFM; both take the token.
    let mut rig = Rig::with_sim(Api::V3, Set::Mock.start());
    let second = Set::Full.start();
    let hosts = format!("{},{}", rig.sim.url(), second.url());
    let mut args = vec!["--poll-interval", "60", "--ufm-host", hosts.as_str()];
    let auth = Set::Mock.auth(&rig.dir);
    args.extend(auth.iter().map(String::as_str));
    let notify = Notify::new();
    let daemon = rig.monitor(&args, &notify);
    let mut passes = 0;
    notify.next_pass(&daemon, &mut passes, secs(10));

    rig.put("0x10", &[host(1), host(2)], &[]);
    rig.wait_partition(
        &daemon,
        "0x10",
        Some(&partition(&[host(1), host(2)], &[])),
        secs(10),
    );
    rig.put("0x10", &[host(1)], &[]);
    rig.wait_partition(&daemon, "0x10", Some(&partition(&[host(1)], &[])), secs(10));
    assert_eq!(used(&rig.sim, "POST", "/actions/remove_guids_from_pkey"), 1);

    // The mock goes away: the second host takes over, and its documented routes are used.
    rig.sim.stop();
    rig.put("0x10", &[host(1), host(3)], &[]);
    let on_second = |want: &Value| {
        wait_for(
            &format!("the second UFM to hold {want}"),
            secs(15),
            || daemon.stderr(),
            || {
                let state = second.state();
                let p = state.get("0x10")?;
                (json!({"guids": p["guids"], "ip_over_ib": p["ip_over_ib"]}) == *want).then_some(())
            },
        )
    };
    on_second(&partition(&[host(1), host(3)], &[]));
    rig.put("0x10", &[host(3)], &[]);
    on_second(&partition(&[host(3)], &[]));
    assert_eq!(
        used(&second, "DELETE", "/resources/pkeys/{pkey}/guids"),
        1,
        "{:?}",
        routes_used(&second)
    );
    assert_eq!(used(&second, "POST", "/actions/remove_guids_from_pkey"), 0);
    let run = daemon.stop();
    assert!(
        run.stderr.contains("learning its PKey routes again"),
        "{}",
        run.stderr
    );
}
