//! The gate before UFM writes (SIGTERM, a leadership claim that may not outlast the request)
//! holds for every write request of an operation, not only for its first one: on the
//! simulator's `nvidia-mock` route set a delete is `DELETE /resources/pkeys/{pkey}` (405), then
//! one `POST /actions/remove_guids_from_pkey` per 200 GUIDs; a remove is `DELETE
//! /resources/pkeys/{pkey}/guids/{guids}` (404), then the `/actions/*` fallback.
//!
//! Each test holds the first write request of the operation in the simulator (a delay fault),
//! sends SIGTERM while it is held, and checks that the daemon's gate, now closed, lets no
//! second write request reach UFM; the partition stays owned, and a restarted daemon finishes
//! the job.

mod support;

use serde_json::{Value, json};
use support::*;

/// The access token the simulator accepts.
const TOKEN: &str = "czQYeCfKIeXqlwSqtorunOPysaSp2r";

/// GUIDs of the partition deleted: three remove requests of at most 200.
const HOSTS: u64 = 450;

/// How long the simulator holds the first write: ample time for the signal to land.
const HOLD_MS: u64 = 2000;

/// An etcd, the simulator with NVIDIA's mock routes (knowing every port the tests use), and
/// the daemon's flags: the mock takes a token only; no full pass in the middle of a test.
fn mock_rig() -> (Rig, Vec<String>) {
    let rig = Rig::with_sim(Api::V3, UfmSim::start(SimOptions::nvidia_mock(TOKEN)));
    let ports: Vec<String> = (1..=HOSTS).map(|n| format!("{:016x}", host(n))).collect();
    rig.sim
        .set_known_guids(&ports.iter().map(String::as_str).collect::<Vec<_>>());
    let token = rig.dir.write("ufm-token", &format!("{TOKEN}\n"));
    let args = vec![
        "--poll-interval".to_string(),
        "600".to_string(),
        "--ufm-token-file".to_string(),
        path_text(&token),
    ];
    (rig, args)
}

fn hosts(range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.map(host).collect()
}

/// `(method, route)` of every write request (anything but GET) the simulator logged.
fn writes(sim: &UfmSim) -> Vec<(String, String)> {
    sim.requests_log()
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (text("method"), text("route"))
        })
        .filter(|(method, _)| method != "GET")
        .collect()
}

/// Starts the daemon and waits for its first pass to leave `pkey` in UFM as `want`.
fn start(rig: &Rig, args: &[String], pkey: &str, want: &Value) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let notify = Notify::new();
    let daemon = rig.monitor(&args, &notify);
    rig.wait_partition(&daemon, pkey, Some(want), secs(15));
    wait_until(&format!("the state file to own {pkey}"), secs(5), || {
        rig.owned() == [pkey]
    });
    daemon
}

/// Holds the first write request matching `method` and `route` for [`HOLD_MS`], makes the
/// etcd change with `change`, and sends SIGTERM once that request reached the simulator.
/// Returns the log of the daemon, which then exits.
fn sigterm_during_first_write(
    rig: &Rig,
    mut daemon: Daemon,
    (method, route): (&str, &str),
    change: impl FnOnce(),
) -> String {
    rig.sim.clear_requests_log();
    rig.sim.add_faults(json!([
        {"method": method, "route": route, "delay_ms": HOLD_MS, "count": 1}
    ]));
    change();
    wait_until(&format!("{method} {route} to reach UFM"), secs(10), || {
        !writes(&rig.sim).is_empty()
    });
    daemon.signal("TERM");
    let run = daemon.wait(secs(15));
    run.assert_ok();
    run.stderr
}

#[test]
fn sigterm_during_a_delete_by_removing_guids_lets_no_other_write_out() {
    let (rig, args) = mock_rig();
    rig.put("0x20", &hosts(1..=HOSTS), &[]);
    let full = partition(&hosts(1..=HOSTS), &[]);
    let daemon = start(&rig, &args, "0x20", &full);

    let stderr =
        sigterm_during_first_write(&rig, daemon, ("DELETE", "/resources/pkeys/{pkey}"), || {
            rig.delete("0x20")
        });
    assert_eq!(
        writes(&rig.sim),
        [("DELETE".to_string(), "/resources/pkeys/{pkey}".to_string())],
        "only the write that was on its way when the gate closed reached UFM:\n{stderr}"
    );
    assert_eq!(
        rig.partition("0x20").as_ref(),
        Some(&full),
        "no GUID removed"
    );
    assert_eq!(
        rig.owned(),
        ["0x20"],
        "still owned: the next pass deletes it"
    );
    assert!(
        !stderr.contains("0x20: delete partition failed"),
        "a closed gate is no failure:\n{stderr}"
    );

    // The next instance finishes the delete.
    rig.sim.clear_faults();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let notify = Notify::new();
    let daemon = rig.monitor(&args, &notify);
    rig.wait_partition(&daemon, "0x20", None, secs(15));
    wait_until("the state file to drop 0x20", secs(5), || {
        rig.owned().is_empty()
    });
    daemon.stop().assert_ok();
}

#[test]
fn sigterm_during_a_removes_first_route_keeps_its_fallback_from_going_out() {
    let (rig, args) = mock_rig();
    rig.put("0x21", &hosts(1..=3), &[]);
    let daemon = start(&rig, &args, "0x21", &partition(&hosts(1..=3), &[]));

    let stderr = sigterm_during_first_write(
        &rig,
        daemon,
        ("DELETE", "/resources/pkeys/{pkey}/guids"),
        || rig.put("0x21", &hosts(1..=2), &[]),
    );
    assert_eq!(
        writes(&rig.sim),
        [(
            "DELETE".to_string(),
            "/resources/pkeys/{pkey}/guids".to_string()
        )],
        "the /actions/* fallback did not go out after the gate closed:\n{stderr}"
    );
    assert_eq!(
        rig.partition("0x21"),
        Some(partition(&hosts(1..=3), &[])),
        "no GUID removed"
    );
}
