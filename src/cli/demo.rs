//! `outreach demo`: the main job on built-in synthetic data, from synthesis through
//! ingest, the budget and publication, then serving the demo warehouse like
//! `outreach serve`.

use std::path::PathBuf;

use super::serve::{ListenArgs, serve_until_ctrl_c};
use super::values::{parse_seed, parse_synth_persons, parse_synth_programs};
use crate::Error;
use crate::synth::SynthConfig;

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach demo --dir /tmp/outreach-demo\n",
    "  outreach demo --dir /tmp/outreach-demo --addr 127.0.0.1:9090\n",
    "  outreach demo --dir /tmp/outreach-demo --persons 2000 --programs 5 --seed 7 --no-serve",
))]
pub(super) struct DemoArgs {
    /// Folder for the demo's exports and warehouse [default: a new folder under the system's temporary folder].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Survivors to synthesise (1 to 9999999).
    #[arg(long, default_value_t = SynthConfig::default().persons,
        value_parser = parse_synth_persons, allow_negative_numbers = true)]
    persons: usize,
    /// Programs to synthesise (1 to 999).
    #[arg(long, default_value_t = SynthConfig::default().programs,
        value_parser = parse_synth_programs, allow_negative_numbers = true)]
    programs: usize,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = SynthConfig::default().seed,
        value_parser = parse_seed, allow_negative_numbers = true)]
    seed: u64,
    /// Stop after publishing instead of serving the demo warehouse (for scripts and tests);
    /// the server's flags then have nothing to apply to, and are refused beside it.
    #[arg(long, conflicts_with_all = LISTEN_FLAGS)]
    pub(super) no_serve: bool,
    #[command(flatten)]
    listen: ListenArgs,
}

/// The flags of [`ListenArgs`], by their ids: what `--no-serve` is refused beside.
const LISTEN_FLAGS: [&str; 11] = [
    "addr",
    "per_ip_per_second",
    "per_ip_burst",
    "per_token_per_minute",
    "per_token_burst",
    "max_body_bytes",
    "timeout_seconds",
    "header_read_timeout_seconds",
    "max_connections",
    "small_cell",
    "trusted_proxies",
];

/// `outreach demo`.
pub(super) fn run_demo(args: DemoArgs, progress: bool) -> Result<(), Error> {
    let DemoArgs {
        dir,
        persons,
        programs,
        seed,
        no_serve,
        listen,
    } = args;
    let limits = listen.limits();
    let dir = dir.unwrap_or_else(|| {
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
        std::env::temp_dir().join(format!("outreach-demo-{stamp}-{}", std::process::id()))
    });
    let cfg = SynthConfig {
        persons,
        programs,
        seed,
        ..SynthConfig::default()
    };
    let rt = super::runtime();
    let report = rt.block_on(crate::demo::run_demo(&dir, &cfg, progress))?;
    super::out(&report.to_string())?;
    if !no_serve {
        let warehouse = report.dir.join("warehouse");
        rt.block_on(serve_until_ctrl_c(&warehouse, listen.addr, limits))?;
    }
    Ok(())
}
