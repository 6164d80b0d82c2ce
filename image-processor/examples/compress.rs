//! Times the processor's transform on image files, as the running service would do it:
//! `cargo run --example compress -- photo.jpg …` (add `--release` to compare builds).
//! Prints, per file, the median of five runs (`RUNS` to change) in milliseconds for the whole
//! ladder (`IMAGE_VARIANT_WIDTHS` x `IMAGE_VARIANT_FORMATS`), each variant's size, and the
//! peak memory the processor budgets for it (`IMAGE_DECODE_MEMORY_MB`). `OUT=dir` writes
//! the variants there.

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
        let mut last = None;
        for _ in 0..runs {
            let started = Instant::now();
            let compressed = transform::compress(&bytes, &settings)
                .map_err(|failure| anyhow::anyhow!("{path}: {failure}"))?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            last = Some(compressed);
        }
        times.sort_by(f64::total_cmp);
        let compressed = last.expect("at least one run");
        println!(
            "{path}: {:.0} ms (median of {runs}), {}x{} source, budgeted peak {} MB",
            times[runs / 2],
            compressed.source_width,
            compressed.source_height,
            header.peak_bytes(&settings) >> 20
        );
        let stem = std::path::Path::new(&path)
            .file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
        for variant in &compressed.variants {
            println!(
                "  {} {}x{}: {} bytes",
                variant.format.media_type(),
                variant.width,
                variant.height,
                variant.bytes.len()
            );
            if let Ok(dir) = std::env::var("OUT") {
                let name = format!("{stem}-{}.{}", variant.width, variant.format.extension());
                std::fs::write(std::path::Path::new(&dir).join(name), &variant.bytes)?;
            }
        }
    }
    Ok(())
}
