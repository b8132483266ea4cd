//! The public record as files (`src/site`): the static mirror (`outreach export-site`) served
//! by a plain static server answers every public route as `outreach serve` does; re-exports
//! write only what changed; the record read back from a folder or a URL; `outreach verify`
//! over a mirror, and `--since` a head saved earlier (`heads`); and the registry disclosure.
//! The Chromium test of the mirror's dashboard is in `browser`.

mod disclosure;
mod heads;
mod mirror;
mod record;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `outreach ARGS` with the warehouse from `OUTREACH_WAREHOUSE`, whatever its outcome.
pub(crate) fn run(wh: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(args)
        .env("OUTREACH_WAREHOUSE", wh)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `outreach export-site --out SITE` over `wh`; panics unless it succeeds.
pub(crate) fn export(wh: &Path, site: &Path, more: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["export-site", "--out"])
        .arg(site)
        .args(more)
        .env("OUTREACH_WAREHOUSE", wh)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "export-site: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file under `dir`, by its path relative to `dir` with `/` between names.
pub(crate) fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                let names: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(names.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A free port of loopback (free when asked: the caller binds it at once).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Python's plain static server (`python3 -m http.server`) over a folder, on a port of its
/// own; killed when dropped.
pub(crate) struct StaticServer {
    child: Child,
    pub addr: String,
}

impl StaticServer {
    /// `None`, saying why on stderr, only when there is no `python3` on this machine.
    pub(crate) fn start(dir: &Path) -> Option<StaticServer> {
        if Command::new("python3").arg("--version").output().is_err() {
            eprintln!(
                "SKIPPED: no python3 on this machine, so no plain static server to test the mirror with"
            );
            return None;
        }
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "python3 -m http.server did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(StaticServer { child, addr })
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mirror's folder in `tmp`.
pub(crate) fn site_in(tmp: &Path) -> PathBuf {
    tmp.join("site")
}
