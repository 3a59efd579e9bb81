//! HTTP requests made by the harness itself, through the `curl` program: a client independent
//! of the code under test (other HTTP and TLS stack), used for assertions and server setup.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// What one `curl` call gave.
#[derive(Debug, Clone)]
pub struct CurlReply {
    /// curl's exit code: 0 when an HTTP answer came (whatever its status), else e.g. 7
    /// (connection refused), 28 (timeout), 35/56 (TLS handshake), 52 (empty reply).
    pub rc: i32,
    /// The HTTP status, 0 when no answer came.
    pub status: u16,
    /// The response body.
    pub body: String,
    /// curl's own error message (empty on success).
    pub stderr: String,
}

impl CurlReply {
    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {self:?}"))
    }
}

/// Runs `curl -sS --noproxy '*' --max-time 15 ARGS…` and returns what came back.
/// `args` are plain curl arguments, including the URL (e.g. `["-X", "POST", url, "-d", body]`).
pub fn curl<S: AsRef<OsStr>>(args: &[S]) -> CurlReply {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "15",
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running curl (is it installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    CurlReply {
        rc: out.status.code().unwrap_or(-1),
        status: status.trim().parse().unwrap_or(0),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value, byte for byte as Python's
/// `urllib.parse.urlencode` (`quote_plus`) does it, i.e. as python-etcd sends a v2 value:
/// `A-Za-z0-9_.-~` are kept, a space becomes `+`, every other byte `%XX`.
pub fn form_urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
