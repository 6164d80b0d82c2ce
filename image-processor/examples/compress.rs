//! Times the processor's transform on image files, as the running service would do it:
//! `cargo run --example compress -- photo.jpg …` (add `--release` to compare builds).
//! Prints, per file, the median of five runs (`RUNS` to change) in milliseconds, the
//! output's size and the peak memory the processor budgets for it (`IMAGE_DECODE_MEMORY_MB`).

use std::time::Instant;

use image_processor::{settings::Settings, transform};

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?.transform;
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path)?;
        let header = transform::inspect(&bytes, &settings)
            .map_err(|failure| anyhow::anyhow!("{path}: {failure}"))?;
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            let started = Instant::now();
            let compressed = transform::compress(&bytes, &settings)
                .map_err(|failure| anyhow::anyhow!("{path}: {failure}"))?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            size = compressed.bytes.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{path}: {:.0} ms (median of {runs}), {size} bytes, budgeted peak {} MB",
            times[runs / 2],
            header.peak_bytes(&settings) >> 20
        );
    }
    Ok(())
}
