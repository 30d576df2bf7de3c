//! The harness the `countersign` binary's integration tests share: child processes whose output
//! is collected (and which are killed when dropped), runs of the binary with a clean
//! environment, polling, a minimal HTTP client over std, and gateways started from a config
//! file (a free port, SQLite in the test's directory, three principals) and ready on `/readyz`.
// Each test binary uses a different subset of this module.
#![allow(dead_code)]

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long any single step (startup, a command, a state change) may take.
pub const STEP: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A child process whose output is collected in the background; killed when dropped.
pub struct Proc {
    what: String,
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

/// The result of a finished process.
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut stream = stream;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .expect("output lock")
                .extend_from_slice(&buf[..n]);
        }
    })
}

impl Proc {
    pub fn spawn(what: impl Into<String>, command: &mut Command) -> Proc {
        let what = what.into();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), stdout.clone()),
            collect(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        Proc {
            what,
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().expect("output lock")).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("output lock")).into_owned()
    }

    /// The exit code if the process has ended.
    pub fn exited(&mut self) -> Option<Option<i32>> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot poll {}: {e}", self.what))
            .map(|s| s.code())
    }

    /// The output of a process that has ended with `code`, once its readers are done.
    pub fn finished(&mut self, code: Option<i32>) -> Output {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Output {
            code,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }

    /// Waits for the process to end; panics (and kills it) after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.exited() {
                return self.finished(code);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let out = self.finished(None);
                panic!(
                    "{} did not finish within {timeout:?}\n{}",
                    self.what,
                    out.describe()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends the signal `name` (`HUP`, `TERM`, …) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `countersign` binary, with none of its environment variables set and colour off.
pub fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_countersign"));
    for var in ["COUNTERSIGN_URL", "COUNTERSIGN_TOKEN", "COUNTERSIGN_LOG"] {
        command.env_remove(var);
    }
    command.env("NO_COLOR", "1");
    command
}

/// Runs `countersign ARGS…` in `cwd` (as `token`, if any) to completion.
pub fn cli(cwd: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = bin();
    command.current_dir(cwd).args(args);
    if let Some(token) = token {
        command.env("COUNTERSIGN_TOKEN", token);
    }
    Proc::spawn(format!("countersign {}", args.join(" ")), &mut command).wait(STEP)
}

/// Runs `countersign ARGS…` and expects exit code 0.
pub fn cli_ok(cwd: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let out = cli(cwd, token, args);
    assert_eq!(
        out.code,
        Some(0),
        "countersign {} failed\n{}",
        args.join(" "),
        out.describe()
    );
    out
}

/// Polls `check` every 50 ms until it answers `Some`, panicking with `what` after `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

// ---------------------------------------------------------------------------------------------
// HTTP (a minimal client over std)
// ---------------------------------------------------------------------------------------------

/// `METHOD path` on the gateway at `port`; the status and the body, or `None` if unreachable.
pub fn try_http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = body.map(Value::to_string).unwrap_or_default();
    let content = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/json\r\n".to_owned()
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}{content}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// As [`try_http`], panicking if the gateway does not answer, with the body parsed as JSON.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let (status, text) = try_http(port, method, path, Some(token), body)
        .unwrap_or_else(|| panic!("the gateway does not answer {method} {path}"));
    let value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{method} {path} answered {status} with non-JSON ({e}): {text}")
    });
    (status, value)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free local port")
        .port()
}

// ---------------------------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------------------------

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The bearer tokens of the three principals of a test config.
pub struct Tokens {
    /// `ci-agent`, in group `agents`.
    pub agent: &'static str,
    /// `alice@example.com`, in [`Config::alice_groups`].
    pub alice: &'static str,
    /// `bob@example.com`, a reviewer.
    pub bob: &'static str,
}

/// What a test's config file holds besides its listen address and its SQLite store.
pub struct Config<'a> {
    pub tokens: &'a Tokens,
    pub alice_groups: &'a [&'a str],
    /// More TOML sections (`[policy]`, `[audit]`, …), written before the principals.
    pub sections: String,
}

/// Writes `dir/countersign.toml`: listening on `port`, SQLite at `dir/db.sqlite`, `config`'s
/// sections and its three principals (by their tokens' SHA-256s); its path.
pub fn write_config(dir: &Path, port: u16, config: &Config) -> PathBuf {
    let text = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

[store]
url = "sqlite://{db}"

{sections}
[[principals]]
kind = "agent"
id = "ci-agent"
groups = ["agents"]
token_sha256 = "{agent}"

[[principals]]
kind = "user"
id = "alice@example.com"
groups = {alice_groups:?}
token_sha256 = "{alice}"

[[principals]]
kind = "user"
id = "bob@example.com"
groups = ["reviewers"]
token_sha256 = "{bob}"
"#,
        db = dir.join("db.sqlite").display(),
        sections = config.sections,
        alice_groups = config.alice_groups,
        agent = sha256_hex(config.tokens.agent),
        alice = sha256_hex(config.tokens.alice),
        bob = sha256_hex(config.tokens.bob),
    );
    let path = dir.join("countersign.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

// ---------------------------------------------------------------------------------------------
// Gateways
// ---------------------------------------------------------------------------------------------

/// A `countersign serve` process, ready on `port`.
pub struct Gateway {
    pub proc: Proc,
    pub port: u16,
}

impl Gateway {
    /// Starts `countersign serve ARGS…` in `cwd` and waits until `/readyz` answers 200.
    /// `Err` if it exited before becoming ready (with its output).
    pub fn try_start(cwd: &Path, args: &[&str], port: u16) -> Result<Gateway, Output> {
        let mut command = bin();
        command.current_dir(cwd).arg("serve").args(args);
        let mut proc = Proc::spawn(
            format!("countersign serve {}", args.join(" ")),
            &mut command,
        );
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(code) = proc.exited() {
                return Err(proc.finished(code));
            }
            if let Some((200, _)) = try_http(port, "GET", "/readyz", None, None) {
                return Ok(Gateway { proc, port });
            }
            assert!(
                Instant::now() < deadline,
                "the gateway was not ready on port {port} within {STEP:?}\n--- stderr\n{}",
                proc.stderr()
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// A gateway in `dir` from the config file [`write_config`] writes there.
    pub fn configured(dir: &Path, config: &Config) -> Gateway {
        // A free port can be taken between probing and binding; try a few.
        let mut last = None;
        for _ in 0..3 {
            let port = free_port();
            let path = write_config(dir, port, config);
            let path = path.to_str().expect("utf-8");
            match Gateway::try_start(dir, &["--config", path], port) {
                Ok(gateway) => return gateway,
                Err(out) if out.stderr.contains("cannot listen") => last = Some(out),
                Err(out) => panic!("the gateway exited at start\n{}", out.describe()),
            }
        }
        panic!(
            "the gateway could not bind a port\n{}",
            last.expect("attempted").describe()
        );
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
