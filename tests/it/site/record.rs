//! The public record read back (`site::record`): from a mirror's folder and from a URL, with
//! the URL record's limits (a non-200, an oversized body, redirect loops, a server that never
//! answers, TLS with a host that speaks none) each an error naming the route; and `outreach
//! verify` over a mirror.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use outreach_warehouse::site::{FolderRecord, RecordError, UrlRecord};
use serde_json::Value;

use super::{StaticServer, export, run, site_in};
use crate::common::server::{current_doc, published};

/// The answer of the test server to `GET path`.
fn answer(path: &str) -> Option<Vec<u8>> {
    let ok = |body: &[u8]| {
        let mut r =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(body);
        r
    };
    let redirect = |status: &str, to: &str| {
        format!("HTTP/1.1 {status}\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n").into_bytes()
    };
    Some(match path {
        "/site/v1/ok.json" => ok(&b"{\"a\":1}"[..]),
        "/site/v1/missing.json" => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "/site/v1/error.json" => {
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\nno".to_vec()
        }
        "/site/v1/big.json" => ok(&[b'x'; 5000][..]),
        "/site/v1/endless.json" => {
            let mut r = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            r.extend_from_slice(&[b'y'; 5000]);
            r
        }
        "/site/v1/chunked.json" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"
                .to_vec()
        }
        "/site/v1/moved.json" => redirect("301 Moved Permanently", "/site/v1/ok.json"),
        "/site/v1/relative.json" => redirect("302 Found", "ok.json"),
        "/site/v1/loop.json" => redirect("302 Found", "/site/v1/loop2.json"),
        "/site/v1/loop2.json" => redirect("307 Temporary Redirect", "loop.json"),
        "/site/v1/gzip.json" => {
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nzz".to_vec()
        }
        "/site/v1/slow.json" => return None,
        p => match p
            .strip_prefix("/site/v1/hop")
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(n) => redirect("302 Found", format!("/site/v1/hop{}.json", n + 1).as_str()),
            None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        },
    })
}

/// A server on loopback that answers each connection's request with [`answer`] (and never
/// answers `slow.json`), in a thread that lives as long as the test binary.
fn test_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split(' ').nth(1).unwrap_or("/").to_string();
                match answer(&path) {
                    Some(bytes) => {
                        let _ = conn.write_all(&bytes);
                    }
                    None => std::thread::sleep(Duration::from_secs(3)),
                }
            });
        }
    });
    addr
}

#[test]
fn the_url_record_refuses_a_non_200_an_oversized_body_and_a_redirect_loop() {
    let addr = test_server();
    let mut record = UrlRecord::open(&format!("http://{addr}/site")).unwrap();
    record.max_bytes = 1000;
    record.timeout = Duration::from_millis(500);
    assert_eq!(record.get("v1/ok.json").unwrap(), b"{\"a\":1}");
    assert_eq!(record.get("v1/chunked.json").unwrap(), b"{\"a\":1}");
    // Redirects are followed, absolute paths and relative ones.
    assert_eq!(record.get("v1/moved.json").unwrap(), b"{\"a\":1}");
    assert_eq!(record.get("v1/relative.json").unwrap(), b"{\"a\":1}");
    for (route, status) in [("v1/missing.json", 404), ("v1/error.json", 500)] {
        match record.get(route) {
            Err(e @ RecordError::Status { status: s, .. }) if s == status => {
                assert!(e.to_string().contains(route), "{e}");
            }
            other => panic!("{route}: {other:?}"),
        }
    }
    for route in ["v1/big.json", "v1/endless.json"] {
        match record.get(route) {
            Err(e @ RecordError::TooLarge { .. }) => assert!(e.to_string().contains(route)),
            other => panic!("{route}: {other:?}"),
        }
    }
    for route in ["v1/loop.json", "v1/hop1.json"] {
        match record.get(route) {
            Err(e @ RecordError::Redirects { .. }) => assert!(e.to_string().contains(route)),
            other => panic!("{route}: {other:?}"),
        }
    }
    assert!(matches!(
        record.get("v1/gzip.json"),
        Err(RecordError::Protocol { .. })
    ));
    assert!(matches!(
        record.get("v1/slow.json"),
        Err(RecordError::Timeout { .. })
    ));
    // A route is a relative path of plain names.
    for route in ["../etc/passwd", "/v1/ok.json", "v1//ok.json", ""] {
        assert!(
            matches!(record.get(route), Err(RecordError::BadRoute { .. })),
            "{route}"
        );
    }
    // https with a host that speaks no TLS fails the handshake, naming the route.
    let mut tls = UrlRecord::open(&format!("https://{addr}/site/")).unwrap();
    tls.timeout = Duration::from_millis(500);
    match tls.get("v1/ok.json") {
        Err(e @ (RecordError::Tls { .. } | RecordError::Timeout { .. })) => {
            assert!(e.to_string().contains("v1/ok.json"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    for bad in ["ftp://x/", "http://", "http://a:b@host/"] {
        assert!(matches!(
            UrlRecord::open(bad),
            Err(RecordError::BadLocation { .. })
        ));
    }
}

#[test]
fn the_folder_record_names_a_missing_route_and_refuses_an_oversized_one() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("v1")).unwrap();
    std::fs::write(tmp.path().join("v1/ok.json"), "{}").unwrap();
    std::fs::write(tmp.path().join("v1/big.json"), vec![b'x'; 100]).unwrap();
    let record = FolderRecord::open(tmp.path()).unwrap().with_max_bytes(50);
    assert_eq!(record.get("v1/ok.json").unwrap(), b"{}");
    match record.get("v1/gone.json") {
        Err(e @ RecordError::Missing { .. }) => assert!(e.to_string().contains("v1/gone.json")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        record.get("v1/big.json"),
        Err(RecordError::TooLarge { .. })
    ));
    assert!(matches!(
        record.get("../v1/ok.json"),
        Err(RecordError::BadRoute { .. })
    ));
    assert!(matches!(
        FolderRecord::open(&tmp.path().join("nowhere")),
        Err(RecordError::BadLocation { .. })
    ));
}

/// Adds 1 to every number under a key named `rho`, `debit_rho` or `value`.
fn edit_numbers(v: &mut Value) -> usize {
    let mut edited = 0;
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if matches!(k.as_str(), "rho" | "debit_rho" | "value")
                    && let Some(n) = x.as_f64()
                {
                    *x = Value::from(n + 1.0);
                    edited += 1;
                } else {
                    edited += edit_numbers(x);
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                edited += edit_numbers(x);
            }
        }
        _ => {}
    }
    edited
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_on_an_untouched_mirror_and_names_a_missing_or_edited_release() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let site = site_in(tmp.path());
    export(&wh, &site, &[]);
    let shown = run(&wh, &["key", "show", "--warehouse", wh.to_str().unwrap()]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let key = tmp.path().join("outreach-key.pub");
    std::fs::write(&key, &shown.stdout).unwrap();
    let key = key.to_str().unwrap();
    let site_arg = site.to_str().unwrap();
    let verified = run(&wh, &["verify", site_arg, "--public-key", key]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("verifies"));
    let json = run(
        &wh,
        &["verify", site_arg, "--public-key", key, "--format", "json"],
    );
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["verified"], true, "{report}");
    // Over a URL: the same mirror on a plain static host.
    if let Some(statics) = StaticServer::start(&site) {
        let url = format!("http://{}/", statics.addr);
        let over_http = run(&wh, &["verify", &url, "--public-key", key]);
        assert_eq!(
            over_http.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&over_http.stderr)
        );
    }
    // A key that is no key is the user's to fix.
    let bad_key = run(&wh, &["verify", site_arg, "--public-key", "not-a-key"]);
    assert_eq!(bad_key.status.code(), Some(2));
    // A release removed from the mirror: exit 1, naming its route.
    let id = current_doc(&wh, "2025Q1")["release_id"].as_i64().unwrap();
    let route = format!("v1/releases/{id}.json");
    let file = site.join(&route);
    let original = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let missing = run(&wh, &["verify", site_arg, "--public-key", key]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains(&route) || err.contains(&format!("release {id}")),
        "{err}"
    );
    // Its numbers edited: exit 1, naming the release.
    let mut edited: Value = serde_json::from_slice(&original).unwrap();
    assert!(edit_numbers(&mut edited) > 0);
    std::fs::write(&file, serde_json::to_vec(&edited).unwrap()).unwrap();
    let damaged = run(
        &wh,
        &["verify", site_arg, "--public-key", key, "--format", "json"],
    );
    assert_eq!(damaged.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&damaged.stdout).unwrap();
    assert_eq!(report["verified"], false);
    assert!(
        report["error"].as_str().unwrap().contains(&id.to_string()),
        "{report}"
    );
    // Put back, it verifies again.
    std::fs::write(&file, &original).unwrap();
    assert_eq!(
        run(&wh, &["verify", site_arg, "--public-key", key])
            .status
            .code(),
        Some(0)
    );
}
