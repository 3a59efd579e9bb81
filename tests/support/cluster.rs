//! A real three-member etcd cluster on loopback (v2 API on), for fail-over tests: stop,
//! restart or pause one member, and read or write through a chosen member.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{
    CurlReply, Proc, TempDir, curl, form_urlencode, free_port, tail, wait_for, wait_until,
};

/// How long the cluster may take to elect a leader and report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the members may take to elect a leader, or a signal to take effect.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// curl's `--max-time` for data requests: above etcd's own request timeout (5 s + two election
/// timeouts = 6 s here), so etcd's error answer is what a test sees, not curl's timeout.
const REQUEST_MAX_TIME: &str = "10";
/// curl's `--max-time` for status and metrics, which a member answers locally at once.
const LOCAL_MAX_TIME: &str = "2";

/// One member's ports and process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    proc: Option<Proc>,
    /// Stopped with SIGSTOP (see [`EtcdCluster::pause`]).
    paused: bool,
}

/// What `/v3/maintenance/status` says about one member.
struct Status {
    member_id: u64,
    /// 0 when the member knows no leader.
    leader: u64,
    raft_term: u64,
}

/// A running three-member etcd cluster (`--heartbeat-interval 50 --election-timeout 500`, so
/// elections take 0.5–1 s and etcd's own request timeout is 6 s). Dropping it kills every member
/// and removes the data.
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
    dir: TempDir,
}

impl EtcdCluster {
    /// Starts three members on the host's loopback and waits until each reports healthy.
    pub fn start() -> EtcdCluster {
        let dir = TempDir::new("etcd-cluster");
        let token = format!("cluster-{}-{}", std::process::id(), free_port());
        let members: Vec<Member> = (1..=3)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                proc: None,
                paused: false,
            })
            .collect();
        let mut cluster = EtcdCluster {
            members,
            token,
            dir,
        };
        for i in 0..3 {
            cluster.launch(i, "new");
        }
        for i in 0..3 {
            cluster.wait_healthy(i);
        }
        cluster
    }

    /// Every member's client endpoint, comma-separated, for `--etcd-endpoints`.
    pub fn endpoints(&self) -> String {
        (0..3)
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One member's client endpoint (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Stops one member (SIGTERM, SIGKILL after 10 s; a paused member is resumed first) and
    /// keeps its data for [`EtcdCluster::restart`].
    pub fn stop(&mut self, i: usize) {
        if self.members[i].paused {
            self.resume(i);
        }
        if let Some(mut proc) = self.members[i].proc.take() {
            proc.terminate(Duration::from_secs(10));
        }
    }

    /// Starts a stopped member again with its data and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        self.launch(i, "existing");
        self.wait_healthy(i);
    }

    /// Freezes member `i` with SIGSTOP: connections to it are accepted by the kernel but get
    /// no answer (a request hangs until the client's timeout), and it sends no heartbeats.
    /// Returns once it is stopped and the other two have a leader (if it led, they elect one
    /// within about 1 s), so writes through them succeed at once.
    pub fn pause(&mut self, i: usize) {
        let proc = self.members[i]
            .proc
            .as_mut()
            .expect("pause: member not running");
        proc.signal("STOP");
        let pid = proc.pid();
        let what = format!("member {i} to be stopped by SIGSTOP");
        wait_until(&what, CHANGE_TIMEOUT, || process_state(pid) == Some('T'));
        self.members[i].paused = true;
        self.wait_leader_among_others(i);
    }

    /// Lets a paused member go on (SIGCONT); returns once it runs. It catches up by itself;
    /// wait on the data a test expects to see through it.
    pub fn resume(&mut self, i: usize) {
        let proc = self.members[i]
            .proc
            .as_mut()
            .expect("resume: member not running");
        proc.signal("CONT");
        let pid = proc.pid();
        let what = format!("member {i} to run again after SIGCONT");
        wait_until(&what, CHANGE_TIMEOUT, || process_state(pid) != Some('T'));
        self.members[i].paused = false;
    }

    /// The member that leads, as the members say: among the running, unpaused members whose
    /// `/v3/maintenance/status` names themselves as leader, the one with the highest raft term
    /// (a leader cut off from the others may claim an old term for up to an election
    /// timeout). `None` when no member claims it, e.g. during an election.
    pub fn leader(&self) -> Option<usize> {
        self.leader_among(&self.answering())
    }

    /// Makes member `i` the leader (etcd's MoveLeader, asked of the current leader, as
    /// `etcdctl move-leader` does) and returns once it leads: to choose whether a test stops or
    /// pauses the leader or a follower.
    pub fn make_leader(&self, i: usize) {
        let target = self.status(i).expect("make_leader: member does not answer");
        let body = json!({"targetID": target.member_id.to_string()});
        wait_until(&format!("member {i} to lead"), CHANGE_TIMEOUT, || {
            match self.leader() {
                Some(leader) if leader == i => true,
                Some(leader) => {
                    // It answers once the transfer is done or failed; then look again.
                    self.v3_via(leader, "maintenance/transfer-leadership", body.clone());
                    false
                }
                None => false,
            }
        });
    }

    /// The sum over all label sets of the metric `name` (e.g.
    /// `etcd_server_proposals_committed_total`, `etcd_server_leader_changes_seen_total`,
    /// `etcd_server_has_leader`) on member `i`'s `/metrics`. Panics when the member does not
    /// answer within 2 s or exports no such metric.
    pub fn metric(&self, i: usize, name: &str) -> f64 {
        let url = format!("{}/metrics", self.endpoint(i));
        let reply = curl(&["--max-time", LOCAL_MAX_TIME, &url]);
        assert_eq!(reply.status, 200, "GET {url}: {reply:?}");
        let values: Vec<f64> = reply
            .body
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let series_name = series.split('{').next()?;
                (series_name == name).then(|| value.parse().ok())?
            })
            .collect();
        assert!(!values.is_empty(), "member {i} exports no metric {name}");
        values.iter().sum()
    }

    /// Writes a key through the v2 API of a reachable member (running, not paused), as pcocc
    /// does; panics when none accepts it.
    pub fn put_v2(&self, key: &str, value: &str) {
        self.through_any(&format!("v2 PUT {key}"), |i| {
            self.v2_put_reply(i, key, value)
        });
    }

    /// Deletes a key through the v2 API of a reachable member (no error when absent).
    pub fn delete_v2(&self, key: &str) {
        self.through_any(&format!("v2 DELETE {key}"), |i| {
            let reply = self.v2_via(i, &["-X", "DELETE"], key);
            if reply.status == 404 {
                ok_reply(&reply)
            } else {
                reply
            }
        });
    }

    /// Writes a key through the v2 API of member `i` exactly as python-etcd does; panics unless
    /// it answers 200/201.
    pub fn put_v2_via(&self, i: usize, key: &str, value: &str) {
        let reply = self.v2_put_reply(i, key, value);
        assert!(is_ok(&reply), "v2 PUT {key} via member {i}: {reply:?}");
    }

    /// Reads a key through the v2 API of member `i`. `quorum: false` is the default GET, which
    /// the member answers from its own store (possibly stale); `quorum: true` adds
    /// `?quorum=true` and goes through raft. `Ok(Some(value))` on 200, `Ok(None)` on 404, the
    /// raw reply otherwise (e.g. no quorum).
    pub fn get_v2_via(
        &self,
        i: usize,
        key: &str,
        quorum: bool,
    ) -> Result<Option<String>, CurlReply> {
        let path = if quorum {
            format!("{key}?quorum=true")
        } else {
            key.to_string()
        };
        let reply = self.v2_via(i, &[], &path);
        match reply.status {
            404 => Ok(None),
            200 => match reply.json()["node"]["value"].as_str() {
                Some(value) => Ok(Some(value.to_string())),
                None => panic!("v2 GET {key} via member {i}: not a value node: {reply:?}"),
            },
            _ => Err(reply),
        }
    }

    /// One v2 request on member `i`: `curl ARGS… <endpoint(i)>/v2/keys<path>` (path may carry a
    /// query), with `--max-time 10`; the raw reply.
    pub fn v2_via(&self, i: usize, args: &[&str], path: &str) -> CurlReply {
        assert!(path.starts_with('/'), "v2 keys start with '/': {path:?}");
        let url = format!("{}/v2/keys{path}", self.endpoint(i));
        let mut all = vec!["--max-time", REQUEST_MAX_TIME];
        all.extend(args);
        all.push(&url);
        curl(&all)
    }

    /// Writes a key through the v3 API of a reachable member; panics when none accepts it.
    pub fn put_v3(&self, key: &str, value: &str) {
        let body = json!({"key": B64.encode(key), "value": B64.encode(value)});
        self.through_any(&format!("v3 put {key}"), |i| {
            self.v3_via(i, "kv/put", body.clone())
        });
    }

    /// Deletes a key through the v3 API of a reachable member (no error when absent).
    pub fn delete_v3(&self, key: &str) {
        let body = json!({"key": B64.encode(key)});
        self.through_any(&format!("v3 delete {key}"), |i| {
            self.v3_via(i, "kv/deleterange", body.clone())
        });
    }

    /// Reads a key through the v3 API of member `i`: linearizable (through the leader, fails
    /// without quorum) or `serializable` (the member's own store, possibly stale).
    /// `Ok(Some(value))` / `Ok(None)` on 200, the raw reply otherwise.
    pub fn get_v3_via(
        &self,
        i: usize,
        key: &str,
        serializable: bool,
    ) -> Result<Option<String>, CurlReply> {
        let body = json!({"key": B64.encode(key), "serializable": serializable});
        let reply = self.v3_via(i, "kv/range", body);
        if reply.status != 200 {
            return Err(reply);
        }
        let Some(kv) = reply.json()["kvs"].get(0).cloned() else {
            return Ok(None);
        };
        // An empty value is omitted from the JSON.
        let bytes = B64
            .decode(kv["value"].as_str().unwrap_or(""))
            .expect("etcd sent bad base64");
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// One v3 gateway call on member `i` (`POST /v3/<rpc>` with `body`, `--max-time 10`); the
    /// raw reply.
    pub fn v3_via(&self, i: usize, rpc: &str, body: Value) -> CurlReply {
        let url = format!("{}/v3/{rpc}", self.endpoint(i));
        let body = body.to_string();
        curl(&[
            "--max-time",
            REQUEST_MAX_TIME,
            "-X",
            "POST",
            &url,
            "-d",
            &body,
        ])
    }

    /// Members that run and are not paused: they answer status requests.
    fn answering(&self) -> Vec<usize> {
        (0..3)
            .filter(|&i| self.members[i].proc.is_some() && !self.members[i].paused)
            .collect()
    }

    /// Runs `request` on each running, unpaused member in turn until one answers 2xx; panics
    /// otherwise.
    fn through_any(&self, what: &str, request: impl Fn(usize) -> CurlReply) {
        let mut failures = Vec::new();
        for i in self.answering() {
            let reply = request(i);
            if is_ok(&reply) {
                return;
            }
            failures.push(format!("member {i}: {reply:?}"));
        }
        panic!(
            "no reachable member accepted the {what}:\n{}",
            failures.join("\n")
        );
    }

    fn v2_put_reply(&self, i: usize, key: &str, value: &str) -> CurlReply {
        let body = format!("value={}", form_urlencode(value));
        self.v2_via(i, &["-X", "PUT", "--data-binary", &body], key)
    }

    /// Member `i`'s own view of the cluster; `None` when it does not answer within 2 s.
    fn status(&self, i: usize) -> Option<Status> {
        let url = format!("{}/v3/maintenance/status", self.endpoint(i));
        let reply = curl(&["--max-time", LOCAL_MAX_TIME, "-X", "POST", &url, "-d", "{}"]);
        if reply.status != 200 {
            return None;
        }
        let json = reply.json();
        // uint64 fields are JSON strings; a 0 (no leader) is omitted.
        let number = |v: &Value| v.as_str().map_or(Some(0), |s| s.parse().ok());
        Some(Status {
            member_id: number(&json["header"]["member_id"])?,
            leader: number(&json["leader"])?,
            raft_term: number(&json["raftTerm"])?,
        })
    }

    /// Waits until the members other than `i` that answer have a leader, if they are two.
    fn wait_leader_among_others(&self, i: usize) {
        let others: Vec<usize> = self.answering().into_iter().filter(|&j| j != i).collect();
        if others.len() >= 2 {
            wait_until("the other members to have a leader", CHANGE_TIMEOUT, || {
                self.leader_among(&others).is_some()
            });
        }
    }

    /// See [`EtcdCluster::leader`], among `members` only.
    fn leader_among(&self, members: &[usize]) -> Option<usize> {
        members
            .iter()
            .filter_map(|&i| Some((i, self.status(i)?)))
            .filter(|(_, s)| s.leader != 0 && s.leader == s.member_id)
            .max_by_key(|(_, s)| s.raft_term)
            .map(|(i, _)| i)
    }

    fn launch(&mut self, i: usize, state: &str) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let member = &self.members[i];
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let mut cmd = Command::new("etcd");
        cmd.args([
            "--name",
            &member.name,
            "--initial-cluster-token",
            &self.token,
        ])
        .arg("--data-dir")
        .arg(self.dir.join(&member.name))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &initial.join(",")])
        .args(["--initial-cluster-state", state])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        .arg("--enable-v2")
        .env_remove("ETCD_CONFIG_FILE")
        .stdin(Stdio::null());
        let log_dir = self.dir.join(&format!("{}-logs", member.name));
        std::fs::create_dir_all(&log_dir).expect("creating a member's log dir");
        let proc = Proc::spawn(&member.name, cmd, &log_dir);
        self.members[i].proc = Some(proc);
    }

    fn wait_healthy(&mut self, i: usize) {
        let health = format!("{}/health", self.endpoint(i));
        let what = format!("etcd member {} to report healthy", self.members[i].name);
        let log = self.members[i]
            .proc
            .as_ref()
            .map(|p| p.stderr_path().to_path_buf());
        let log_tail = || {
            let text = log.as_ref().map(std::fs::read_to_string);
            let text = text.and_then(Result::ok).unwrap_or_default();
            format!("--- etcd log tail ---\n{}", tail(&text, 30))
        };
        wait_for(&what, START_TIMEOUT, log_tail, || {
            let reply = curl(&["--max-time", LOCAL_MAX_TIME, &health]);
            (reply.status == 200 && reply.body.contains(r#""health":"true""#)).then_some(())
        });
    }
}

/// A 2xx reply.
fn is_ok(reply: &CurlReply) -> bool {
    (200..300).contains(&reply.status)
}

/// `reply` with its status turned into 200 (an expected "not found" counts as done).
fn ok_reply(reply: &CurlReply) -> CurlReply {
    CurlReply {
        status: 200,
        ..reply.clone()
    }
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T` for stopped…); `None` when gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S …`: comm may hold spaces and parentheses, the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}
