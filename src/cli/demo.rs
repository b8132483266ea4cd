//! `outreach demo`: the main job on built-in synthetic data, from synthesis through
//! ingest, the budget and publication, then serving the demo warehouse like
//! `outreach serve`.

use std::path::PathBuf;

use super::serve::{ListenArgs, serve_until_ctrl_c};
use crate::Error;
use crate::synth::SynthConfig;

#[derive(clap::Args)]
pub(super) struct DemoArgs {
    /// Folder for the demo's exports and warehouse [default: a new folder under the system's temporary folder].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Survivors to synthesise.
    #[arg(long, default_value_t = SynthConfig::default().persons)]
    persons: usize,
    /// Programs to synthesise.
    #[arg(long, default_value_t = SynthConfig::default().programs)]
    programs: usize,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = SynthConfig::default().seed)]
    seed: u64,
    /// Stop after publishing instead of serving the demo warehouse (for scripts and tests).
    #[arg(long)]
    pub(super) no_serve: bool,
    #[command(flatten)]
    listen: ListenArgs,
}

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
