//! The public record read back, route by route, for `outreach verify`: from a mirror's folder
//! ([`FolderRecord`]) or from any http(s) host that serves one, the warehouse's own server
//! included ([`UrlRecord`]). A route is its static form, relative, with its format as a
//! suffix: `v1/ledger.json`, `v1/releases/12.json`, `openapi.json`.
//!
//! The URL record is a plain HTTP/1.1 GET over [`std::net::TcpStream`], TLS through OpenSSL
//! (certificates and host names checked against the system's roots): a timeout on the
//! connection, on each read and on the whole exchange, a cap on the body's size, at most
//! [`MAX_REDIRECTS`] redirects (never from https to http), and any answer but 200 an error
//! naming the route.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::export::is_plain_path;
use crate::Fault;

/// The largest body either record reads, by default: far above any route's (a ledger page
/// of 500 entries is some hundred kilobytes), far below what would exhaust memory.
pub const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The most redirects followed for one route.
pub const MAX_REDIRECTS: usize = 3;

/// The largest response header read.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Why a route of the public record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{url:?} is not a folder or an http(s) URL the record can be read from: {why}")]
    BadLocation { url: String, why: String },
    #[error("{route:?} is not a route's static form (a relative path such as v1/ledger.json)")]
    BadRoute { route: String },
    #[error("route {route}: {path} is missing from the mirror")]
    Missing { route: String, path: PathBuf },
    #[error("route {route}: cannot read {path}: {source}")]
    Read {
        route: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("route {route}: {location} is larger than {limit} bytes")]
    TooLarge {
        route: String,
        location: String,
        limit: u64,
    },
    #[error("route {route}: {url} answered {status}, not 200")]
    Status {
        route: String,
        url: String,
        status: u16,
    },
    #[error("route {route}: {url} redirects more than {MAX_REDIRECTS} times, or in a loop")]
    Redirects { route: String, url: String },
    #[error("route {route}: {url} redirects from https to {to}, which is refused")]
    Downgrade {
        route: String,
        url: String,
        to: String,
    },
    #[error("route {route}: cannot reach {url}: {source}")]
    Connect {
        route: String,
        url: String,
        source: std::io::Error,
    },
    #[error("route {route}: TLS with {url} failed: {why}")]
    Tls {
        route: String,
        url: String,
        why: String,
    },
    #[error("route {route}: {url} took longer than {seconds} s")]
    Timeout {
        route: String,
        url: String,
        seconds: u64,
    },
    #[error("route {route}: {url} answered something that is not HTTP/1.x: {why}")]
    Protocol {
        route: String,
        url: String,
        why: String,
    },
}

impl RecordError {
    pub fn fault(&self) -> Fault {
        match self {
            RecordError::BadLocation { .. } => Fault::Usage,
            RecordError::Connect { .. }
            | RecordError::Tls { .. }
            | RecordError::Timeout { .. }
            | RecordError::Read { .. } => Fault::Internal,
            _ => Fault::BadInput,
        }
    }

    /// The route the error is about, when it is about one.
    pub fn route(&self) -> Option<&str> {
        match self {
            RecordError::BadLocation { .. } => None,
            RecordError::BadRoute { route }
            | RecordError::Missing { route, .. }
            | RecordError::Read { route, .. }
            | RecordError::TooLarge { route, .. }
            | RecordError::Status { route, .. }
            | RecordError::Redirects { route, .. }
            | RecordError::Downgrade { route, .. }
            | RecordError::Connect { route, .. }
            | RecordError::Tls { route, .. }
            | RecordError::Timeout { route, .. }
            | RecordError::Protocol { route, .. } => Some(route),
        }
    }
}

fn check_route(route: &str) -> Result<(), RecordError> {
    if is_plain_path(route) {
        Ok(())
    } else {
        Err(RecordError::BadRoute {
            route: route.to_string(),
        })
    }
}

/// The public record in a mirror's folder (`outreach export-site --out SITE`).
#[derive(Debug, Clone)]
pub struct FolderRecord {
    root: PathBuf,
    max_bytes: u64,
}

impl FolderRecord {
    /// The record in `root`, which must be a folder.
    pub fn open(root: &Path) -> Result<FolderRecord, RecordError> {
        if !root.is_dir() {
            return Err(RecordError::BadLocation {
                url: root.display().to_string(),
                why: "no such folder".into(),
            });
        }
        Ok(FolderRecord {
            root: root.to_path_buf(),
            max_bytes: MAX_BODY_BYTES,
        })
    }

    /// The same record, reading at most `max_bytes` a route.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> FolderRecord {
        self.max_bytes = max_bytes;
        self
    }

    /// The bytes of `route`'s file.
    pub fn get(&self, route: &str) -> Result<Vec<u8>, RecordError> {
        check_route(route)?;
        let path = self.root.join(route);
        let read = |source| RecordError::Read {
            route: route.to_string(),
            path: path.clone(),
            source,
        };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RecordError::Missing {
                    route: route.to_string(),
                    path: path.clone(),
                });
            }
            Err(e) => return Err(read(e)),
        };
        let mut bytes = Vec::new();
        file.take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(RecordError::TooLarge {
                route: route.to_string(),
                location: path.display().to_string(),
                limit: self.max_bytes,
            });
        }
        Ok(bytes)
    }
}

/// Where an http(s) URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// The host as the URL writes it (`example.org`, `[::1]`), for the `Host` header.
    authority: String,
    /// The host name or address to connect to and to check the certificate against.
    host: String,
    port: u16,
    /// The path and query, from `/`.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("it starts with neither http:// nor https://".into());
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = path.split('#').next().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if authority.is_empty() || authority.contains('@') {
            return Err("it names no host, or a user and password".into());
        }
        let default = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or("an IPv6 address without its closing ]")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
                None if after.is_empty() => default,
                None => return Err(format!("unexpected {after:?} after the address")),
            };
            (addr.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("bad port {p:?}"))?,
                ),
                None => (authority.to_string(), default),
            }
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c))
        {
            return Err(format!("bad host {host:?}"));
        }
        Ok(Target {
            tls,
            authority: authority.to_string(),
            host,
            port,
            path,
        })
    }

    fn url(&self) -> String {
        format!(
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            self.authority,
            self.path
        )
    }

    /// Where a redirect's `Location` leads from here: an absolute URL, or a path on this host.
    fn follow(&self, location: &str) -> Result<Target, String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            return Target::parse(location);
        }
        if location.starts_with("//") {
            let scheme = if self.tls { "https:" } else { "http:" };
            return Target::parse(&format!("{scheme}{location}"));
        }
        if location.starts_with('/') {
            return Ok(Target {
                path: location.to_string(),
                ..self.clone()
            });
        }
        // Relative to the current path's folder.
        let base = match self.path.split('?').next().unwrap_or("/").rsplit_once('/') {
            Some((dir, _)) => dir.to_string(),
            None => String::new(),
        };
        Ok(Target {
            path: format!("{base}/{location}"),
            ..self.clone()
        })
    }
}

/// The public record served at an http(s) URL: a static host of the mirror, or `outreach
/// serve` (which answers the same path forms).
#[derive(Debug, Clone)]
pub struct UrlRecord {
    base: Target,
    /// The connection's, each read's and each write's timeout.
    pub timeout: Duration,
    /// How long one route's whole exchange may take, redirects included.
    pub deadline: Duration,
    pub max_bytes: u64,
}

impl UrlRecord {
    /// The record under `url` (`https://data.example.gov/outreach/`): routes are read below it.
    pub fn open(url: &str) -> Result<UrlRecord, RecordError> {
        let mut base = Target::parse(url).map_err(|why| RecordError::BadLocation {
            url: url.to_string(),
            why,
        })?;
        if base.path.contains('?') {
            return Err(RecordError::BadLocation {
                url: url.to_string(),
                why: "a query string: give the folder the mirror is served from".into(),
            });
        }
        if !base.path.ends_with('/') {
            base.path.push('/');
        }
        Ok(UrlRecord {
            base,
            timeout: Duration::from_secs(15),
            deadline: Duration::from_secs(120),
            max_bytes: MAX_BODY_BYTES,
        })
    }

    /// The body of `route`, answered 200.
    pub fn get(&self, route: &str) -> Result<Vec<u8>, RecordError> {
        check_route(route)?;
        let start = Instant::now();
        let mut target = Target {
            path: format!("{}{route}", self.base.path),
            ..self.base.clone()
        };
        let mut seen = vec![target.url()];
        for _ in 0..=MAX_REDIRECTS {
            match self.exchange(route, &target, start)? {
                Answer::Body(body) => return Ok(body),
                Answer::Redirect(location) => {
                    let url = target.url();
                    let next = target
                        .follow(&location)
                        .map_err(|why| RecordError::Protocol {
                            route: route.to_string(),
                            url: url.clone(),
                            why: format!("a redirect to {location:?}: {why}"),
                        })?;
                    if target.tls && !next.tls {
                        return Err(RecordError::Downgrade {
                            route: route.to_string(),
                            url,
                            to: next.url(),
                        });
                    }
                    if seen.contains(&next.url()) {
                        return Err(RecordError::Redirects {
                            route: route.to_string(),
                            url,
                        });
                    }
                    seen.push(next.url());
                    target = next;
                }
            }
        }
        Err(RecordError::Redirects {
            route: route.to_string(),
            url: self.base.url(),
        })
    }

    fn exchange(
        &self,
        route: &str,
        target: &Target,
        start: Instant,
    ) -> Result<Answer, RecordError> {
        let url = target.url();
        let connect = |source| RecordError::Connect {
            route: route.to_string(),
            url: url.clone(),
            source,
        };
        let addrs: Vec<_> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(connect)?
            .collect();
        let mut last = None;
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = stream.ok_or_else(|| {
            connect(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address")
            }))
        })?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(connect)?;
        if target.tls {
            let tls = |why: String| RecordError::Tls {
                route: route.to_string(),
                url: url.clone(),
                why,
            };
            let connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
                .map_err(|e| tls(e.to_string()))?
                .build();
            let stream = connector
                .connect(&target.host, stream)
                .map_err(|e| tls(e.to_string()))?;
            self.talk(route, target, stream, start)
        } else {
            self.talk(route, target, stream, start)
        }
    }

    fn talk<S: Read + Write>(
        &self,
        route: &str,
        target: &Target,
        mut stream: S,
        start: Instant,
    ) -> Result<Answer, RecordError> {
        let url = target.url();
        let protocol = |why: String| RecordError::Protocol {
            route: route.to_string(),
            url: url.clone(),
            why,
        };
        let io = |e: std::io::Error| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                RecordError::Timeout {
                    route: route.to_string(),
                    url: url.clone(),
                    seconds: self.timeout.as_secs(),
                }
            } else {
                RecordError::Connect {
                    route: route.to_string(),
                    url: url.clone(),
                    source: e,
                }
            }
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: outreach-verify\r\nAccept: */*\r\n\
             Accept-Encoding: identity\r\nConnection: close\r\n\r\n",
            target.path, target.authority
        );
        stream.write_all(request.as_bytes()).map_err(io)?;
        stream.flush().map_err(io)?;
        // Reads until the header ends, then the body as its framing says, within the
        // deadline and the size cap.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let mut read_more = |buf: &mut Vec<u8>| -> Result<usize, RecordError> {
            if start.elapsed() > self.deadline {
                return Err(RecordError::Timeout {
                    route: route.to_string(),
                    url: url.clone(),
                    seconds: self.deadline.as_secs(),
                });
            }
            let n = stream.read(&mut chunk).map_err(io)?;
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        };
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if buf.len() > MAX_HEADER_BYTES {
                return Err(protocol(format!("a header over {MAX_HEADER_BYTES} bytes")));
            }
            if read_more(&mut buf)? == 0 {
                return Err(protocol(
                    "the connection closed before the header ended".into(),
                ));
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if !version.starts_with("HTTP/1.") {
            return Err(protocol(format!("the status line {status_line:?}")));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| protocol(format!("the status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if matches!(status, 301 | 302 | 303 | 307 | 308) {
            let location = header("location")
                .ok_or_else(|| protocol(format!("a {status} without a Location")))?;
            return Ok(Answer::Redirect(location.to_string()));
        }
        if status != 200 {
            return Err(RecordError::Status {
                route: route.to_string(),
                url: url.clone(),
                status,
            });
        }
        if let Some(encoding) = header("content-encoding")
            && !encoding.eq_ignore_ascii_case("identity")
        {
            return Err(protocol(format!(
                "a body encoded as {encoding:?}, though identity was asked"
            )));
        }
        let too_large = || RecordError::TooLarge {
            route: route.to_string(),
            location: url.clone(),
            limit: self.max_bytes,
        };
        let chunked =
            header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        let length = match header("content-length") {
            Some(v) if !chunked => Some(
                v.parse::<u64>()
                    .map_err(|_| protocol(format!("Content-Length {v:?}")))?,
            ),
            _ => None,
        };
        if length.is_some_and(|n| n > self.max_bytes) {
            return Err(too_large());
        }
        let mut body = buf.split_off(header_end + 4);
        let cap = self.max_bytes as usize;
        // The framing read whole: to its length, to the end of its chunks, or to the close.
        loop {
            let done = match length {
                Some(n) => body.len() as u64 >= n,
                None if chunked => dechunk(&body).map_err(protocol)?.is_some(),
                None => false,
            };
            if done {
                break;
            }
            // Chunked framing adds a few bytes a chunk; the cap is on the body, checked below.
            if body.len() > cap + cap / 8 + 1024 {
                return Err(too_large());
            }
            if read_more(&mut body)? == 0 {
                if length.is_some() || chunked {
                    return Err(protocol(
                        "the connection closed before the body ended".into(),
                    ));
                }
                break;
            }
        }
        let body = if chunked {
            dechunk(&body)
                .map_err(protocol)?
                .ok_or_else(|| protocol("unterminated chunks".into()))?
        } else {
            if let Some(n) = length {
                body.truncate(n as usize);
            }
            body
        };
        if body.len() > cap {
            return Err(too_large());
        }
        Ok(Answer::Body(body))
    }
}

/// What one exchange gave.
enum Answer {
    Body(Vec<u8>),
    Redirect(String),
}

/// The body of a whole chunked message, `None` while its last chunk has not arrived.
fn dechunk(raw: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = raw[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line =
            std::str::from_utf8(&raw[at..at + eol]).map_err(|_| "a chunk size that is not text")?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("the chunk size {size_text:?}"))?;
        at += eol + 2;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            return Ok(raw[at..].windows(2).position(|w| w == b"\r\n").map(|_| out));
        }
        let end = at.checked_add(size).ok_or("a chunk size too large")?;
        if raw.len() < end + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&raw[at..end]);
        at = end + 2;
    }
}

/// The record at `site_or_url`: a URL when it starts with `http://` or `https://`, otherwise
/// a mirror's folder.
pub enum AnyRecord {
    Folder(FolderRecord),
    Url(UrlRecord),
}

impl AnyRecord {
    pub fn open(site_or_url: &str) -> Result<AnyRecord, RecordError> {
        if site_or_url.starts_with("http://") || site_or_url.starts_with("https://") {
            UrlRecord::open(site_or_url).map(AnyRecord::Url)
        } else {
            FolderRecord::open(Path::new(site_or_url)).map(AnyRecord::Folder)
        }
    }

    pub fn get(&self, route: &str) -> Result<Vec<u8>, RecordError> {
        match self {
            AnyRecord::Folder(f) => f.get(route),
            AnyRecord::Url(u) => u.get(route),
        }
    }
}

// The contract with `crate::verify` (the chain's check): each record is a `PublicRecord`, and
// a route that cannot be read is a failed verification naming the route.
impl From<RecordError> for crate::verify::VerifyError {
    fn from(e: RecordError) -> crate::verify::VerifyError {
        crate::verify::VerifyError::Fetch {
            route: e.route().unwrap_or_default().to_string(),
            message: e.to_string(),
        }
    }
}

impl crate::verify::PublicRecord for FolderRecord {
    fn fetch(&self, route: &str) -> Result<Vec<u8>, crate::verify::VerifyError> {
        self.get(route).map_err(Into::into)
    }
}

impl crate::verify::PublicRecord for UrlRecord {
    fn fetch(&self, route: &str) -> Result<Vec<u8>, crate::verify::VerifyError> {
        self.get(route).map_err(Into::into)
    }
}

impl crate::verify::PublicRecord for AnyRecord {
    fn fetch(&self, route: &str) -> Result<Vec<u8>, crate::verify::VerifyError> {
        self.get(route).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_with_their_port_and_folder() {
        let t = Target::parse("https://data.example.gov/outreach/").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (true, "data.example.gov", 443, "/outreach/")
        );
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.port, t.path.as_str()), (8080, "/"));
        let t = Target::parse("http://[::1]:9000/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        for bad in [
            "ftp://x/",
            "http://",
            "http://user:pw@host/",
            "http://host:port/",
            "http://ho st/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_redirect_is_followed_from_where_it_was_answered() {
        let t = Target::parse("https://a.example/site/v1/x.json").unwrap();
        assert_eq!(
            t.follow("/other/y").unwrap().url(),
            "https://a.example/other/y"
        );
        assert_eq!(
            t.follow("y.json").unwrap().url(),
            "https://a.example/site/v1/y.json"
        );
        assert_eq!(
            t.follow("//b.example/z").unwrap().url(),
            "https://b.example/z"
        );
        assert!(!t.follow("http://b.example/z").unwrap().tls);
    }

    #[test]
    fn chunks_are_joined_and_an_unfinished_message_waits() {
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n").unwrap(),
            Some(b"Wikipedia".to_vec())
        );
        assert_eq!(dechunk(b"4\r\nWiki\r\n5\r\nped").unwrap(), None);
        assert_eq!(dechunk(b"4\r\nWiki\r\n0\r\n").unwrap(), None);
        assert!(dechunk(b"zz\r\n").is_err());
    }
}
