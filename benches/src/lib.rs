//! Benchmarks live in `benches/`; see `make bench` and docs/benchmarks.md.
