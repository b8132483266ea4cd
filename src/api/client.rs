//! The client's address behind a reverse proxy.
//!
//! The TCP peer is the client unless it is one of the operator's trusted proxies
//! (`outreach serve --trusted-proxy`, [`super::Limits::trusted_proxies`]). Only then is the
//! client taken from the forwarding headers the proxy appends to: `Forwarded` (RFC 7239, its
//! `for=` parameters) or `X-Forwarded-For`, read from the right, skipping the addresses that
//! are themselves trusted proxies. The first one that is not is the client: everything to
//! its left was written by the client, who can put anything there.
//!
//! Whatever cannot be read falls back to the peer: a right-most hop that is not an address
//! (`unknown`, an obfuscated `_name`, garbage), a chain made only of trusted proxies, or the
//! two headers naming different clients (a proxy appends to one of them; the other then
//! comes from the client, and neither can be told from the other). A request from an
//! untrusted peer never has its headers read at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, header};

/// An address block: an address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`); a bare
/// address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in the block. An IPv4-mapped IPv6 address counts as its IPv4 one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                (net.to_bits() ^ ip.to_bits()) & mask == 0
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                (net.to_bits() ^ ip.to_bits()) & mask == 0
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<IpNet, String> {
        let bad =
            || format!("{s:?} is not an IP address or a block such as 10.0.0.0/8 or 2001:db8::/32");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(IpNet { addr, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The client's address of a request, put in its extensions by the router's outermost
/// layer: what the rate limits key on and the access log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The client of a request: its [`ClientAddr`] when the router put one there, else the
    /// TCP peer; `None` in process (tests through `oneshot`), where there is no peer.
    pub fn of<T>(req: &axum::http::Request<T>) -> Option<IpAddr> {
        let ext = req.extensions();
        ext.get::<ClientAddr>().map(|c| c.0).or_else(|| {
            ext.get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_canonical())
        })
    }
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|net| net.contains(ip))
}

/// The client's address: the TCP `peer`, unless it is in `proxies`; then the right-most
/// forwarded address that is not in `proxies`, or the peer when the headers cannot say.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted(peer, proxies) {
        return peer;
    }
    let forwarded = read_chain(headers, header::FORWARDED, forwarded_hops, proxies);
    let x_forwarded_for = read_chain(
        headers,
        HeaderName::from_static("x-forwarded-for"),
        x_forwarded_for_hops,
        proxies,
    );
    match (forwarded, x_forwarded_for) {
        (None, None) => peer,
        (Some(one), None) | (None, Some(one)) => one.unwrap_or(peer),
        (Some(Some(a)), Some(Some(b))) if a == b => a,
        // Two headers naming different clients, or one that cannot be read.
        _ => peer,
    }
}

/// `None` when the request has no `name` header; otherwise the right-most hop of its chain
/// that is not a trusted proxy, or `Some(None)` when a hop before it cannot be read or
/// every hop is a trusted proxy.
fn read_chain(
    headers: &HeaderMap,
    name: HeaderName,
    hops: fn(&str, &mut Vec<Option<IpAddr>>),
    proxies: &[IpNet],
) -> Option<Option<IpAddr>> {
    let mut chain = Vec::new();
    let mut present = false;
    // Repeated header lines are one list, in order.
    for value in headers.get_all(&name) {
        present = true;
        match value.to_str() {
            Ok(v) => hops(v, &mut chain),
            Err(_) => chain.push(None),
        }
    }
    if !present {
        return None;
    }
    for hop in chain.into_iter().rev() {
        let Some(ip) = hop else {
            return Some(None);
        };
        let ip = ip.to_canonical();
        if !trusted(ip, proxies) {
            return Some(Some(ip));
        }
    }
    Some(None)
}

/// The hops of an `X-Forwarded-For` value: comma-separated addresses.
fn x_forwarded_for_hops(value: &str, out: &mut Vec<Option<IpAddr>>) {
    out.extend(value.split(',').map(node));
}

/// The hops of a `Forwarded` value (RFC 7239): comma-separated elements of
/// `;`-separated `name=value` pairs; each element's hop is its `for` parameter.
fn forwarded_hops(value: &str, out: &mut Vec<Option<IpAddr>>) {
    for element in split_unquoted(value, ',') {
        let mut hop = None;
        for pair in split_unquoted(element, ';') {
            let Some((name, v)) = pair.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("for") {
                hop = unquote(v.trim()).and_then(|v| node(&v));
            }
        }
        out.push(hop);
    }
}

/// Splits `s` at `sep` outside quoted strings.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A token, or a quoted string without its quotes and escapes; `None` for a broken quote.
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return (!v.contains('"')).then(|| v.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// A node (RFC 7239 §6): an IPv4 address, a bracketed IPv6 address, either with a port, or a
/// bare IPv6 address (as `X-Forwarded-For` writes them). `unknown` and obfuscated names are
/// no address.
fn node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port)) {
            return None;
        }
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (v4, p) = s.split_once(':')?;
    if !port(p) {
        return None;
    }
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port: 1 to 5 digits, or an obfuscated one (`_` and letters, digits, `.`, `_`, `-`).
fn port(p: &str) -> bool {
    let digits = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = p.len() > 1
        && p.starts_with('_')
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    digits || obfuscated
}
