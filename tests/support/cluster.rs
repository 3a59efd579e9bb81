//! A real three-member etcd cluster on loopback (v2 API on), for fail-over and partition tests:
//! stop, restart, pause or cut off one member, and read or write through a chosen member.
//!
//! Partitions: [`EtcdCluster::start_isolatable`] runs one member in a network namespace of its
//! own (`unshare --net`, only `lo` in it, brought up). `socat` bridges join it to the host's
//! loopback through unix sockets: its client port and its peer port (connections to it) and
//! the other members' peer ports (connections it makes), so every URL is
//! `http://127.0.0.1:PORT` on both sides. [`EtcdCluster::cut_off`] kills the peer bridges (open
//! raft connections break, new ones are refused on both sides) and keeps the client bridge: a
//! client still reaches the member and gets its stale view, as with a lagging member at a site.
//!
//! Every socat runs as PID 1 of a PID namespace of its own (`unshare --pid --fork`): killing it
//! makes the kernel kill every connection process it forked (killing a forking socat alone
//! leaves them running, still forwarding) and reap them, without relying on the machine's init.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{
    CurlReply, Daemon, Pkeyd, Proc, TempDir, UfmSim, curl, form_urlencode, free_port, path_text,
    tail, wait_for, wait_until,
};

/// How long the cluster may take to elect a leader and report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a cut-off member may take to notice it lost its leader, a reconnected one to find
/// it again, the rest to elect a new one, a bridge to listen, a signal to take effect.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// curl's `--max-time` for data requests: above etcd's own request timeout (5 s + two election
/// timeouts = 6 s here), so etcd's error answer is what a test sees, not curl's timeout.
const REQUEST_MAX_TIME: &str = "10";
/// curl's `--max-time` for status and metrics, which a member answers locally at once.
const LOCAL_MAX_TIME: &str = "2";
/// The programs an isolatable cluster needs, and the Debian package of each.
const NETNS_TOOLS: [(&str, &str); 4] = [
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("ip", "iproute2"),
    ("socat", "socat"),
];

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
/// and bridge and removes the data.
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
    isolation: Option<Isolation>,
    dir: TempDir,
}

impl EtcdCluster {
    /// Starts three members on the host's loopback and waits until each reports healthy.
    pub fn start() -> EtcdCluster {
        EtcdCluster::launch_all(None)
    }

    /// Like [`EtcdCluster::start`], but member `isolated` runs in its own network namespace,
    /// bridged to the host, so that [`EtcdCluster::cut_off`] can partition it. Its URLs are the
    /// same `http://127.0.0.1:PORT` form as the others'. One difference: while that member is
    /// stopped, its client port still accepts (the bridge does) and closes the connection
    /// without an answer (curl exit 52) instead of refusing it. Needs root, `unshare`,
    /// `nsenter`, `ip` and `socat` (`packaging/install-test-deps.sh`); panics naming what is
    /// missing otherwise.
    pub fn start_isolatable(isolated: usize) -> EtcdCluster {
        assert!(isolated < 3, "a cluster has members 0, 1 and 2");
        EtcdCluster::launch_all(Some(isolated))
    }

    /// `ufm-pkeyd monitor` over the v2 API against all three members, in the order of the
    /// list: it talks to member 0 until that fails. etcd timeout 2 s, no drift checks, state
    /// in `dir`.
    pub fn monitor(&self, sim: &UfmSim, dir: &TempDir) -> Daemon {
        let endpoints = self.endpoints();
        let password = path_text(sim.password_file());
        let state = path_text(&dir.join("state.json"));
        Pkeyd::new(&[
            "monitor",
            "--no-pcocc",
            "--etcd-endpoints",
            &endpoints,
            "--etcd-api",
            "v2",
            "--etcd-timeout",
            "2",
            "--ufm-host",
            &sim.host_port(),
            "--http",
            "--ufm-password-file",
            &password,
            "--state-file",
            &state,
            "--poll-interval",
            "60",
        ])
        .spawn()
    }

    /// Every member's client endpoint, comma-separated, for `--etcd-endpoints`.
    pub fn endpoints(&self) -> String {
        (0..3)
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One member's client endpoint (`http://127.0.0.1:PORT`; for the isolated member, the host
    /// end of its client bridge, which works while it is cut off).
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

    /// Starts a stopped member again with its data and waits until it is healthy. A cut-off
    /// member cannot be: etcd 3.4 answers no client request before it has published itself
    /// through raft, so it returns once the member listens (requests hang) and
    /// [`EtcdCluster::reconnect`] then waits until it knows a leader.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        self.launch(i, "existing");
        match &self.isolation {
            Some(isolation) if self.is_cut_off(i) => {
                let port = self.members[i].client_port;
                let what = format!("restarted cut-off member {i} to listen");
                wait_until(&what, START_TIMEOUT, || isolation.netns.listening(port));
            }
            _ => self.wait_healthy(i),
        }
    }

    /// Freezes member `i` with SIGSTOP: connections to it are accepted by the kernel but get
    /// no answer (a request hangs until the client's timeout), and it sends no heartbeats.
    /// Returns once it is stopped and the other two have a leader (if it led, they elect one
    /// within about 1 s), so writes through them succeed at once; when one of them is cut off
    /// there is no quorum left to wait for, and it returns once `i` is stopped.
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

    /// Partitions the isolated member from its peers while its client bridge stays: kills its
    /// peer bridges in both directions (open raft connections break, new ones are refused).
    /// Returns once it reports no leader and the others have one, so a write through another
    /// member succeeds at once and reads through it (default v2 GET, serializable v3 range)
    /// are stale. Panics unless `i` is the member given to [`EtcdCluster::start_isolatable`].
    pub fn cut_off(&mut self, i: usize) {
        self.isolation_mut(i).peers = None;
        if self.members[i].proc.is_some() && !self.members[i].paused {
            let what = format!("cut-off member {i} to notice it has no leader");
            wait_until(&what, CHANGE_TIMEOUT, || {
                self.status(i).is_some_and(|s| s.leader == 0)
            });
        }
        self.wait_leader_among_others(i);
    }

    /// Undoes [`EtcdCluster::cut_off`]: restarts the peer bridges and, when the member runs,
    /// returns once it knows a leader again. It then catches up with the writes it missed on
    /// its own; wait on the data a test expects to see through it.
    pub fn reconnect(&mut self, i: usize) {
        let ports: Vec<u16> = self.members.iter().map(|m| m.peer_port).collect();
        let isolation = self.isolation_mut(i);
        if isolation.peers.is_none() {
            isolation.connect_peers(&ports);
        }
        if self.members[i].proc.is_some() && !self.members[i].paused {
            let what = format!("reconnected member {i} to know a leader");
            wait_until(&what, CHANGE_TIMEOUT, || {
                self.status(i).is_some_and(|s| s.leader != 0)
            });
        }
    }

    /// The member that leads, as the members say: among the running, unpaused members whose
    /// `/v3/maintenance/status` names themselves as leader, the one with the highest raft term
    /// (a leader cut off from the others may claim an old term for up to an election
    /// timeout). `None` when no member claims it, e.g. during an election.
    pub fn leader(&self) -> Option<usize> {
        self.leader_among(&self.answering())
    }

    /// Makes member `i` the leader (etcd's MoveLeader, asked of the current leader, as
    /// `etcdctl move-leader` does) and returns once it leads: to cut off a leader or a follower
    /// on purpose.
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

    /// Writes a key through the v2 API of a reachable member (running, not paused, not cut
    /// off), as pcocc does; panics when none accepts it.
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
    /// it answers 200/201 (a cut-off member answers an error after about 6 s).
    pub fn put_v2_via(&self, i: usize, key: &str, value: &str) {
        let reply = self.v2_put_reply(i, key, value);
        assert!(is_ok(&reply), "v2 PUT {key} via member {i}: {reply:?}");
    }

    /// Reads a key through the v2 API of member `i`. `quorum: false` is the default GET, which
    /// the member answers from its own store, stale when it is cut off; `quorum: true` adds
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
    /// without quorum) or `serializable` (the member's own store, stale when cut off).
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

    /// Starts the members (one of them isolated) and waits until all are healthy.
    fn launch_all(isolated: Option<usize>) -> EtcdCluster {
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
        let isolation = isolated.map(|i| Isolation::start(i, &members, dir.path()));
        let mut cluster = EtcdCluster {
            members,
            token,
            isolation,
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

    /// Members that run and are not paused: they answer status requests.
    fn answering(&self) -> Vec<usize> {
        (0..3)
            .filter(|&i| self.members[i].proc.is_some() && !self.members[i].paused)
            .collect()
    }

    /// Members a write can go through: answering and not cut off.
    fn reachable(&self) -> Vec<usize> {
        let answering = self.answering().into_iter();
        answering.filter(|&i| !self.is_cut_off(i)).collect()
    }

    /// Whether member `i` is the isolated one and cut off now.
    fn is_cut_off(&self, i: usize) -> bool {
        matches!(&self.isolation, Some(iso) if iso.member == i && iso.peers.is_none())
    }

    /// Runs `request` on each reachable member in turn until one answers 2xx; panics otherwise.
    fn through_any(&self, what: &str, request: impl Fn(usize) -> CurlReply) {
        let mut failures = Vec::new();
        for i in self.reachable() {
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

    /// Waits until the members other than `i` that can reach each other (answering, not cut
    /// off) have a leader, if they are two. A cut-off member cannot help elect one: with it
    /// and one more member paused, the last member alone has no quorum and nothing is awaited.
    fn wait_leader_among_others(&self, i: usize) {
        let others: Vec<usize> = self.reachable().into_iter().filter(|&j| j != i).collect();
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

    /// The isolation of member `i`; panics when `i` is not the isolated member.
    fn isolation_mut(&mut self, i: usize) -> &mut Isolation {
        match &mut self.isolation {
            Some(isolation) if isolation.member == i => isolation,
            _ => panic!(
                "member {i} is not isolatable: start with EtcdCluster::start_isolatable({i})"
            ),
        }
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
        let mut cmd = match &self.isolation {
            Some(isolation) if isolation.member == i => isolation.netns.command("etcd"),
            _ => Command::new("etcd"),
        };
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

/// The isolated member's network namespace and the bridges that join it to the host.
/// Fields drop in order: bridges first, then the namespace's holder.
struct Isolation {
    member: usize,
    /// Host `127.0.0.1:client_port` to the member's client port; up for the cluster's life.
    client: Bridge,
    /// To the member's peer port, and from it to each other member's; `None` while cut off.
    peers: Option<Vec<Bridge>>,
    netns: Netns,
    /// Where the bridges' unix sockets and logs go.
    dir: PathBuf,
}

impl Isolation {
    /// Creates the namespace and every bridge for member `member` (before any etcd starts).
    fn start(member: usize, members: &[Member], dir: &Path) -> Isolation {
        require_tools();
        let dir = dir.join("netns");
        std::fs::create_dir(&dir).expect("creating the netns dir");
        let netns = Netns::create(&dir);
        let client_port = members[member].client_port;
        let client = Bridge::start("client", client_port, Side::Host, &netns, &dir);
        let mut isolation = Isolation {
            member,
            client,
            peers: None,
            netns,
            dir,
        };
        let ports: Vec<u16> = members.iter().map(|m| m.peer_port).collect();
        isolation.connect_peers(&ports);
        isolation
    }

    /// Starts the peer bridges: into the namespace for the member's own peer port, out of it
    /// for the others'.
    fn connect_peers(&mut self, peer_ports: &[u16]) {
        let bridges = peer_ports
            .iter()
            .enumerate()
            .map(|(j, &port)| {
                let side = if j == self.member {
                    Side::Host
                } else {
                    Side::Netns
                };
                Bridge::start(&format!("peer{j}"), port, side, &self.netns, &self.dir)
            })
            .collect();
        self.peers = Some(bridges);
    }
}

/// Panics naming the programs an isolatable cluster needs that are not on `PATH`.
fn require_tools() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = |tool: &str| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file());
    let missing: Vec<String> = NETNS_TOOLS
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(tool, package)| format!("{tool} (Debian package {package})"))
        .collect();
    assert!(
        missing.is_empty(),
        "EtcdCluster::start_isolatable needs unshare, nsenter, ip and socat; not on PATH: {}. \
         Install them with packaging/install-test-deps.sh (apt-get install -y socat iproute2).",
        missing.join(", ")
    );
}

/// A network namespace with only `lo`, up, held by `unshare --net sleep infinity`. It lives
/// while any process is in it: its holder, the member's etcd, the namespace side of bridges.
struct Netns {
    holder: Proc,
    /// `/proc/<holder pid>/ns/net`, for `nsenter --net=`.
    path: String,
}

impl Netns {
    fn create(dir: &Path) -> Netns {
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "sleep", "infinity"])
            .stdin(Stdio::null());
        let mut holder = Proc::spawn("netns-holder", cmd, dir);
        let path = format!("/proc/{}/ns/net", holder.pid());
        let host = std::fs::read_link("/proc/self/ns/net").expect("reading our network namespace");
        let stderr = holder.stderr_path().to_path_buf();
        let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
        let created = wait_for(
            "unshare --net to create a namespace",
            CHANGE_TIMEOUT,
            log,
            || {
                if holder.exited().is_some() {
                    return Some(false);
                }
                let ns = std::fs::read_link(&path).ok()?;
                (ns != host).then_some(true)
            },
        );
        assert!(
            created,
            "`unshare --net` failed: an isolatable etcd cluster needs root (CAP_SYS_ADMIN) and \
             network namespaces in the kernel\n{}",
            holder.log_tail()
        );
        let netns = Netns { holder, path };
        let out = netns
            .command("ip")
            .args(["link", "set", "lo", "up"])
            .output()
            .expect("running nsenter … ip");
        assert!(
            out.status.success(),
            "bringing lo up in the namespace (nsenter --net=… ip link set lo up) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        netns
    }

    /// Whether a TCP socket listens on `127.0.0.1:port` in the namespace (`/proc/<pid>/net/tcp`
    /// shows the sockets of that process's network namespace).
    fn listening(&self, port: u16) -> bool {
        let table = std::fs::read_to_string(format!("/proc/{}/net/tcp", self.holder.pid()));
        let local = format!("0100007F:{port:04X}");
        // `sl local_address rem_address st …`; state 0A is LISTEN.
        table.unwrap_or_default().lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        })
    }

    /// `nsenter --net=<ns> -- program`: runs `program` in the namespace. nsenter execs it
    /// (no fork for a network namespace), so the child's pid is the program's.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path))
            .arg("--")
            .arg(program);
        cmd
    }
}

/// Where a bridge's TCP listener is.
#[derive(Clone, Copy)]
enum Side {
    /// On the host: connections to the isolated member.
    Host,
    /// In the namespace: connections the isolated member makes.
    Netns,
}

/// Forwards every TCP connection to `127.0.0.1:PORT` on one side of the namespace to
/// `127.0.0.1:PORT` on the other, through a unix socket: one socat per side. Dropping it kills
/// both and every connection they carry. Fields drop in order: listener first.
struct Bridge {
    listener: Relay,
    connector: Relay,
}

impl Bridge {
    /// Starts the unix side, then the TCP listener; returns once both listen.
    fn start(name: &str, port: u16, listen: Side, netns: &Netns, dir: &Path) -> Bridge {
        let sock = dir.join(format!("{name}.sock"));
        let sock = sock.display();
        let (listen_ns, connect_ns) = match listen {
            Side::Host => (None, Some(netns)),
            Side::Netns => (Some(netns), None),
        };
        let unix_listen = format!("UNIX-LISTEN:{sock},fork,unlink-early");
        let tcp_connect = format!("TCP4:127.0.0.1:{port}");
        let connector = Relay::start(
            &format!("{name}-unix"),
            [&unix_listen, &tcp_connect],
            connect_ns,
            dir,
        );
        let tcp_listen = format!("TCP4-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork");
        let unix_connect = format!("UNIX-CONNECT:{sock}");
        let listener = Relay::start(
            &format!("{name}-tcp"),
            [&tcp_listen, &unix_connect],
            listen_ns,
            dir,
        );
        Bridge {
            listener,
            connector,
        }
    }
}

/// `socat -d -d A B` as PID 1 of a PID namespace of its own (`unshare --pid --fork
/// --kill-child`), on the host or in the network namespace.
struct Relay {
    /// The `unshare` process; socat is its only child.
    proc: Proc,
}

impl Relay {
    /// Starts socat and returns once it logs that it listens (its first address listens).
    /// A restarted relay appends to the same log: only what this one wrote counts.
    fn start(name: &str, addresses: [&str; 2], netns: Option<&Netns>, dir: &Path) -> Relay {
        let stderr = dir.join(format!("{name}.stderr"));
        let logged_before = std::fs::metadata(&stderr).map_or(0, |m| m.len() as usize);
        let mut cmd = match netns {
            Some(netns) => netns.command("unshare"),
            None => Command::new("unshare"),
        };
        cmd.args(["--pid", "--fork", "--kill-child", "socat", "-d", "-d"])
            .args(addresses)
            .stdin(Stdio::null());
        let mut proc = Proc::spawn(name, cmd, dir);
        let log = || {
            let text = std::fs::read_to_string(&stderr).unwrap_or_default();
            text.get(logged_before..).unwrap_or_default().to_string()
        };
        let what = format!("socat {name} ({}) to listen", addresses[0]);
        let listening = wait_for(&what, CHANGE_TIMEOUT, log, || {
            if proc.exited().is_some() {
                return Some(false);
            }
            log().contains(" listening on ").then_some(true)
        });
        assert!(listening, "socat {name} exited:\n{}", proc.log_tail());
        Relay { proc }
    }
}

impl Drop for Relay {
    /// Kills socat, not unshare: as PID 1 of its namespace its death makes the kernel kill
    /// and reap every connection process it forked, and unshare reaps it and exits.
    fn drop(&mut self) {
        let pid = self.proc.pid();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
        for child in children.unwrap_or_default().split_whitespace() {
            let _ = Command::new("kill").args(["-s", "KILL", child]).status();
        }
        if self.proc.wait_exit(Duration::from_secs(5)).is_none() {
            self.proc.kill();
        }
    }
}
