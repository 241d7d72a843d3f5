//! Peers the delivery benchmarks send to, each in its own process so that the memory figure
//! of the benchmark process is Herald's alone: postfix's `smtp-sink` (accepts and discards
//! every message) and a bare HTTP endpoint answering 204 (this bench binary re-executed
//! with `--serve-http`).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `postfix` package puts the SMTP test tools.
pub const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// What to tell someone who runs a benchmark that needs `smtp-sink` without it.
pub const NO_SMTP_SINK: &str = "postfix's smtp-sink is not installed (/usr/sbin/smtp-sink): \
     run scripts/bench/deliver-mixed or scripts/bench/email-vs-postfix, which install it \
     (apt-get install postfix), or set HERALD_BENCH_SMTP=host:port to a sink of your own";

/// A free loopback port (bound, read, released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_until_listening(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("nothing listens on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Peak RSS of another process (its `VmHWM`), in MiB.
pub fn peak_rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// Where email goes: `HERALD_BENCH_SMTP` (host:port, a sink someone else runs — the
/// email-vs-postfix script shares one with `smtp-source`), else an `smtp-sink` started here,
/// else an error saying how to get one.
pub enum SmtpPeer {
    External(SocketAddr),
    Owned(SmtpSink),
}

impl SmtpPeer {
    pub fn from_env_or_start() -> anyhow::Result<Self> {
        if let Ok(addr) = std::env::var("HERALD_BENCH_SMTP") {
            let addr: SocketAddr = addr
                .parse()
                .map_err(|e| anyhow::anyhow!("HERALD_BENCH_SMTP={addr:?}: {e} (want ip:port)"))?;
            wait_until_listening(addr, Duration::from_secs(2))?;
            return Ok(Self::External(addr));
        }
        Ok(Self::Owned(SmtpSink::start()?))
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            SmtpPeer::External(addr) => *addr,
            SmtpPeer::Owned(sink) => sink.addr,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SmtpPeer::External(addr) => format!("the SMTP sink at {addr} (HERALD_BENCH_SMTP)"),
            SmtpPeer::Owned(sink) => format!("smtp-sink at {} (pid {})", sink.addr, sink.pid()),
        }
    }
}

/// postfix's `smtp-sink` on a free loopback port: accepts every message and throws it away
/// (nothing is written to disk without `-d`/`-D`). Killed when dropped.
pub struct SmtpSink {
    child: Child,
    pub addr: SocketAddr,
}

impl SmtpSink {
    pub fn available() -> bool {
        std::path::Path::new(SMTP_SINK).exists()
    }

    pub fn start() -> anyhow::Result<Self> {
        if !Self::available() {
            anyhow::bail!("{NO_SMTP_SINK}");
        }
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(SMTP_SINK);
        if running_as_root() {
            // smtp-sink refuses to run as root without a user to switch to.
            cmd.args(["-u", "nobody"]);
        }
        // 256: backlog; smtp-sink's own default cap of 256 simultaneous sessions stays.
        cmd.arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn()?;
        let sink = Self { child, addr };
        wait_until_listening(addr, Duration::from_secs(5))?;
        Ok(sink)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare HTTP endpoint answering 204 to everything, in a child process (this binary run
/// with `--serve-http`). It counts requests; it exits when its stdin closes, so it never
/// outlives the benchmark.
pub struct HttpEndpoint {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub addr: SocketAddr,
}

impl HttpEndpoint {
    pub fn start() -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve-http")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("HTTP endpoint did not report its port: {line:?}"))?;
        Ok(Self {
            child,
            stdin,
            stdout,
            addr: ([127, 0, 0, 1], port).into(),
        })
    }

    /// Requests answered so far.
    pub fn requests(&mut self) -> anyhow::Result<u64> {
        self.ask("count")
    }

    /// Items listed in the request bodies so far (occurrences of `"itemId"`: one in a single
    /// item's webhook, one per item in a digest's).
    pub fn items(&mut self) -> anyhow::Result<u64> {
        self.ask("items")
    }

    fn ask(&mut self, question: &str) -> anyhow::Result<u64> {
        self.stdin.write_all(format!("{question}\n").as_bytes())?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim().parse()?)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HttpEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child side of [`HttpEndpoint`]: print the port, answer 204 to every request on one
/// thread, answer `count` lines on stdin with the number of requests and `items` lines with
/// the items their bodies listed, exit at stdin's end.
pub fn serve_http() -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    // One thread serves (a current-thread runtime runs only inside `block_on`); another reads
    // the parent's questions.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let count = Arc::new(AtomicU64::new(0));
    let items = Arc::new(AtomicU64::new(0));
    let (served, listed) = (count.clone(), items.clone());
    let router = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let (served, listed) = (served.clone(), listed.clone());
        async move {
            served.fetch_add(1, Ordering::Relaxed);
            let n = body.windows(8).filter(|w| w == b"\"itemId\"").count();
            listed.fetch_add(n as u64, Ordering::Relaxed);
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            let answer = match line.trim() {
                "count" => &count,
                "items" => &items,
                _ => continue,
            };
            println!("{}", answer.load(Ordering::Relaxed));
            let _ = std::io::stdout().flush();
        }
        std::process::exit(0);
    });
    runtime.block_on(async move { axum::serve(listener, router).await })?;
    Ok(())
}
