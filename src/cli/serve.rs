//! `outreach serve`: the published releases, the dashboard and the researchers' request
//! routes over HTTP, read-only, until Ctrl-C; and the limits the server keeps, which
//! `outreach demo` takes too.

use std::path::PathBuf;

use super::WAREHOUSE_ENV;
use super::values::{
    parse_body_bytes, parse_burst, parse_connections, parse_rate_per_minute, parse_rate_per_second,
    parse_small_cell, parse_timeout_seconds,
};
use crate::Error;
use crate::api::{self, Limits};

/// Where and how `serve` listens.
#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach serve --warehouse wh\n",
    "  outreach serve --warehouse wh --addr 0.0.0.0:8080 --trusted-proxy 10.0.0.0/8 --small-cell 11",
))]
pub(super) struct ServeArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    #[command(flatten)]
    listen: ListenArgs,
}

#[derive(clap::Args, Clone)]
pub(super) struct ListenArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(super) addr: std::net::SocketAddr,
    /// Requests per second each client IP may make, on average (1e-6 to 1e9).
    #[arg(long, default_value_t = Limits::default().per_ip_per_second,
        value_parser = parse_rate_per_second, allow_negative_numbers = true)]
    per_ip_per_second: f64,
    /// Requests a client IP may make at once (1 to 4294967295).
    #[arg(long, default_value_t = Limits::default().per_ip_burst,
        value_parser = parse_burst, allow_negative_numbers = true)]
    per_ip_burst: u32,
    /// Requests per minute per researcher token on the request routes (6e-5 to 1e9).
    #[arg(long, default_value_t = Limits::default().per_token_per_minute,
        value_parser = parse_rate_per_minute, allow_negative_numbers = true)]
    per_token_per_minute: f64,
    /// Requests a token may make at once on the request routes (1 to 4294967295).
    #[arg(long, default_value_t = Limits::default().per_token_burst,
        value_parser = parse_burst, allow_negative_numbers = true)]
    per_token_burst: u32,
    /// Largest request body, in bytes (at least 1).
    #[arg(long, default_value_t = Limits::default().max_body_bytes,
        value_parser = parse_body_bytes, allow_negative_numbers = true)]
    max_body_bytes: usize,
    /// Seconds a request may take before it is answered 504 (0.001 to 3600).
    #[arg(long, default_value_t = Limits::default().timeout.as_secs_f64(),
        value_parser = parse_timeout_seconds, allow_negative_numbers = true)]
    timeout_seconds: f64,
    /// Seconds a client may take to send a request's header before its connection is closed
    /// (0.001 to 3600).
    #[arg(long, default_value_t = Limits::default().header_read_timeout.as_secs_f64(),
        value_parser = parse_timeout_seconds, allow_negative_numbers = true)]
    header_read_timeout_seconds: f64,
    /// Connections open at once; more wait until one closes (1 to 1048576).
    #[arg(long, default_value_t = Limits::default().max_connections,
        value_parser = parse_connections, allow_negative_numbers = true)]
    max_connections: usize,
    /// Dashboard display rule: grey out figures resting on a noisy count below this (a number of at least 0) [default: off].
    #[arg(long, value_parser = parse_small_cell, allow_negative_numbers = true)]
    small_cell: Option<f64>,
    /// A reverse proxy, an address or a block such as 10.0.0.0/8, whose Forwarded or
    /// X-Forwarded-For header names the client; repeat for each [default: none, the TCP peer
    /// is the client].
    #[arg(long = "trusted-proxy", value_name = "ADDR_OR_CIDR")]
    trusted_proxies: Vec<api::IpNet>,
}

impl ListenArgs {
    /// The server's limits. Every value was checked as the flags were parsed (the value
    /// parsers of [`super::values`]), so a bad one is clap's usage error, exit 2, naming the
    /// flag.
    pub(super) fn limits(&self) -> Limits {
        Limits {
            per_ip_per_second: self.per_ip_per_second,
            per_ip_burst: self.per_ip_burst,
            per_token_per_minute: self.per_token_per_minute,
            per_token_burst: self.per_token_burst,
            max_body_bytes: self.max_body_bytes,
            small_cell: self.small_cell,
            timeout: std::time::Duration::from_secs_f64(self.timeout_seconds),
            header_read_timeout: std::time::Duration::from_secs_f64(
                self.header_read_timeout_seconds,
            ),
            max_connections: self.max_connections,
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }
}

/// `outreach serve`.
pub(super) fn run_serve(args: ServeArgs) -> Result<(), Error> {
    let limits = args.listen.limits();
    super::runtime().block_on(serve_until_ctrl_c(
        &args.warehouse,
        args.listen.addr,
        limits,
    ))
}

/// Serves a warehouse and prints its URL until the process is stopped (Ctrl-C). The server
/// writes only the request queue, in SQLite transactions, so stopping it at any moment
/// loses nothing.
pub(super) async fn serve_until_ctrl_c(
    warehouse: &std::path::Path,
    addr: std::net::SocketAddr,
    limits: Limits,
) -> Result<(), Error> {
    let shutdown = std::future::pending::<()>();
    api::serve(
        warehouse,
        addr,
        limits,
        |bound| {
            // Closed pipe: `out` ends the process quietly. Any other failure to show the
            // address leaves the server serving: it is found by the address it was given.
            let _ = super::out(&format!(
                "Serving {} at http://{bound}/ (OpenAPI: http://{bound}/openapi.json). Ctrl-C stops.\n",
                warehouse.display()
            ));
        },
        shutdown,
    )
    .await
}
