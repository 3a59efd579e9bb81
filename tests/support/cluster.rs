//! A real three-member etcd cluster on loopback (v2 API on), for fail-over tests: stop the
//! member a client talks to and the others go on.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Proc, TempDir, curl, free_port, wait_until};

/// How long the cluster may take to elect a leader and report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One member's ports and process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    proc: Option<Proc>,
}

/// A running three-member etcd cluster. Dropping it kills every member.
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
    dir: TempDir,
}

impl EtcdCluster {
    /// Starts three members and waits until each reports healthy.
    pub fn start() -> EtcdCluster {
        let dir = TempDir::new("etcd-cluster");
        let token = format!("cluster-{}-{}", std::process::id(), free_port());
        let members = (1..=3)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                proc: None,
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

    /// One member's client endpoint.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Stops one member (SIGTERM) and keeps its data for [`EtcdCluster::restart`].
    pub fn stop(&mut self, i: usize) {
        if let Some(mut proc) = self.members[i].proc.take() {
            proc.terminate(Duration::from_secs(10));
        }
    }

    /// Starts a stopped member again with its data; it rejoins the cluster.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        self.launch(i, "existing");
        self.wait_healthy(i);
    }

    /// Writes a key through the v2 API of a running member, as pcocc does.
    pub fn put_v2(&self, key: &str, value: &str) {
        let body = format!("value={}", super::form_urlencode(value));
        for i in self.running() {
            let url = format!("{}/v2/keys{key}", self.endpoint(i));
            let reply = curl(&["-X", "PUT", "--data-binary", &body, &url]);
            if matches!(reply.status, 200 | 201) {
                return;
            }
        }
        panic!("no running member accepted the v2 PUT of {key}");
    }

    fn running(&self) -> Vec<usize> {
        (0..3).filter(|i| self.members[*i].proc.is_some()).collect()
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
        wait_until(&what, START_TIMEOUT, || {
            let reply = curl(&["--max-time", "2", &health]);
            reply.status == 200 && reply.body.contains(r#""health":"true""#)
        });
    }
}
