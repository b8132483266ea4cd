//! What the Rust benchmarks share: medians, and peak memory measured in a child process.

/// Peak resident memory of this process so far (VmHWM of `/proc/self/status`), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The median of the timings (sorts them).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs this benchmark binary again with `--only WHICH` and returns the peak memory it
/// printed (`peak_mib N`), so each path's peak is measured alone.
pub fn child_peak_mib(which: &str, persons: usize) -> String {
    let me = std::env::args().next().expect("the benchmark's own path");
    let out = std::process::Command::new(me)
        .args(["--only", which])
        .env("BENCH_PERSONS", persons.to_string())
        .output()
        .expect("child");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("peak_mib "))
        .unwrap_or("?")
        .to_string()
}
