//! The alert rules and the dashboard on a real Prometheus (Debian's, installed by
//! `scripts/check-rules.sh`), scraping a real api and processor.
//!
//! With the processor stopped and a product posted, `CatalogImagesWaiting` goes pending,
//! then firing; with the processor back, it resolves. The rule is the committed one with
//! its threshold and `for` divided by [`SCALE`], so the drill takes seconds, not minutes:
//! the expression, what it reads and how Prometheus evaluates it are what production runs.
//! Then every query of `deploy/observability/dashboard.json` runs against the same
//! Prometheus: none may fail, and none may name a metric the services do not export.
//!
//! The timeline it measured is printed:
//! `cargo nextest run -p system-tests --test pipeline -E 'test(alerts::)' --no-capture`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use system_tests::{
    pipeline::{Pipeline, spawn_pipeline_without_processor},
    poll::poll_until,
    process::{ChildGuard, free_port},
};

/// The alert the drill drives.
const ALERT: &str = "CatalogImagesWaiting";
/// Its threshold (seconds) and `for` as committed, and how much shorter the drill runs them.
const THRESHOLD: &str = "> 120";
const FOR: &str = "for: 3m";
const SCALE: u32 = 60;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn observability(file: &str) -> PathBuf {
    repository().join("deploy/observability").join(file)
}

/// The committed rule of [`ALERT`], alone in a rules file, with its threshold and `for`
/// divided by [`SCALE`]. Fails when the rule no longer reads as this drill expects.
fn scaled_rule() -> String {
    let rules = std::fs::read_to_string(observability("rules.yml")).unwrap();
    let lines: Vec<&str> = rules.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("- alert: {ALERT}"))
        .unwrap_or_else(|| panic!("rules.yml has the alert {ALERT}"));
    let indent = lines[start].len() - lines[start].trim_start().len();
    let end = lines[start + 1..]
        .iter()
        .position(|l| {
            let trimmed = l.trim_start();
            !trimmed.is_empty() && (l.len() - trimmed.len()) <= indent
        })
        .map_or(lines.len(), |n| start + 1 + n);
    let block = lines[start..end].join("\n");
    assert!(
        block.contains(THRESHOLD) && block.contains(FOR),
        "{ALERT} in rules.yml no longer reads `{THRESHOLD}` and `{FOR}`; update this drill:\n{block}"
    );
    let block = block
        .replace(THRESHOLD, &format!("> {}", 120 / SCALE))
        .replace(FOR, &format!("for: {}s", 180 / SCALE));
    let body: String = block
        .lines()
        .map(|l| format!("      {}\n", &l[indent.min(l.len())..]))
        .collect();
    format!("groups:\n  - name: drill\n    rules:\n{body}")
}

/// A Prometheus of the drill's own, scraping `api` and `processor` every second.
struct Prometheus {
    child: ChildGuard,
    base: String,
    http: reqwest::Client,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    async fn start(api: &str, processor: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "catalog-prometheus-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rules.yml"), scaled_rule()).unwrap();
        // The dashboard's recordings too: its panels read them.
        std::fs::copy(observability("rules.yml"), dir.join("catalog.yml")).unwrap();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [rules.yml, catalog.yml]\n\
             scrape_configs:\n\
             \x20 - job_name: catalog-api\n\
             \x20   static_configs: [{{targets: ['{api}']}}]\n\
             \x20 - job_name: image-processor\n\
             \x20   static_configs: [{{targets: ['{processor}']}}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (scripts/check-rules.sh installs it)");
        let prometheus = Self {
            child: ChildGuard(child),
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            dir,
        };
        poll_until(
            "Prometheus to be ready",
            Duration::from_secs(30),
            || async {
                match prometheus
                    .http
                    .get(format!("{}/-/ready", prometheus.base))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        prometheus
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base)).unwrap();
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let response = self.http.get(url).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// The state of [`ALERT`]: `pending`, `firing`, or `None` when inactive.
    async fn alert_state(&self) -> Option<String> {
        let alerts = self.api("/api/v1/alerts", &[]).await;
        alerts["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == ALERT)
            .and_then(|a| a["state"].as_str().map(str::to_owned))
    }

    async fn wait_for(&self, wanted: Option<&str>, within: Duration) -> Duration {
        let started = Instant::now();
        poll_until(&format!("{ALERT} to be {wanted:?}"), within, || async {
            match self.alert_state().await {
                state if state.as_deref() == wanted => Ok(()),
                state => Err(state),
            }
        })
        .await;
        started.elapsed()
    }
}

/// Every metric family the services export, as Prometheus may name their series.
async fn exported_names(pipeline: &Pipeline, pages: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for page in pages {
        let text = pipeline.app.text_of(page).await;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    let rules = std::fs::read_to_string(observability("rules.yml")).unwrap();
    for line in rules.lines() {
        if let Some(record) = line.trim().strip_prefix("- record: ") {
            names.insert(record.trim().to_owned());
        }
    }
    names.insert("up".to_owned());
    names
}

/// The metric names a PromQL expression reads: identifiers outside label matchers,
/// grouping clauses and strings, that are neither functions nor keywords.
fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 11] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
    ];
    // Aggregations may put `by (…)` between their name and their parenthesis.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    let mut out = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let (mut i, mut depth_braces) = (0, 0);
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            '"' | '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += 1;
                }
            }
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
            }
            ')' if skip_group => skip_group = false,
            // A number or a duration (`0.99`, `15m`, `1e3`): not a name.
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                continue;
            }
            c if depth_braces == 0 && (c.is_ascii_alphabetic() || c == '_' || c == ':') => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if KEYWORDS.contains(&word.as_str()) {
                    // `by (a, b)`, `on (slo)`: label names follow (not after a set operator,
                    // `unless (x)`, whose parenthesis holds an expression).
                    skip_group = next == Some(&'(')
                        && !["and", "or", "unless", "bool", "offset"].contains(&word.as_str());
                } else if next != Some(&'(')
                    && !skip_group
                    && !AGGREGATIONS.contains(&word.as_str())
                {
                    out.push(word);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Each query of the dashboard, with Grafana's variables given values.
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let title = panel["title"].as_str().unwrap_or("?").to_owned();
                    let expr = expr
                        .replace("$__rate_interval", "1m")
                        .replace("$__interval", "1m")
                        .replace("$__range", "1h");
                    out.push((title, expr));
                }
            }
            walk(panel["panels"].as_array().map_or(&[], Vec::as_slice), out);
        }
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(observability("dashboard.json")).unwrap())
            .unwrap();
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().unwrap(), &mut out);
    out
}

#[test]
fn metric_names_are_read_from_expressions() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.9, sum by (le, stage) (rate(a_bucket{job="x",le=~"1"}[5m]))) / on (slo) b:c"#
        ),
        ["a_bucket", "b:c"]
    );
    assert_eq!(metric_names("x and y or z"), ["x", "y", "z"]);
    assert_eq!(metric_names("x unless (y)"), ["x", "y"]);
    assert_eq!(
        metric_names("max by (job) (x offset 15m) > 120 unless y"),
        ["x", "y"]
    );
}

#[tokio::test]
async fn the_waiting_images_alert_fires_while_the_processor_is_down_and_resolves_after() {
    let pipeline = spawn_pipeline_without_processor().await;
    let mut command = pipeline.processor_command(None);
    let processor = command
        .get_envs()
        .find(|(k, _)| *k == "PROCESSOR_ADDR")
        .and_then(|(_, v)| v)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let api = pipeline
        .app
        .metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let prometheus = Prometheus::start(&api, &processor).await;

    let posted = Instant::now();
    let id = pipeline
        .create_product(&[pipeline.images.url("/img/chelsea.png")])
        .await;
    // Scaled: over 2 s of waiting for 3 s; the gauges refresh every 5 s and Prometheus
    // scrapes and evaluates every second.
    let pending = prometheus
        .wait_for(Some("pending"), Duration::from_secs(30))
        .await;
    let firing = prometheus
        .wait_for(Some("firing"), Duration::from_secs(30))
        .await;
    assert_eq!(
        pipeline.app.product(&id).await["processing_status"],
        "pending",
        "nothing processed it meanwhile"
    );

    let restarted = Instant::now();
    let _processor = ChildGuard(command.spawn().expect("the processor starts"));
    pipeline.wait_until_processed(&id).await;
    let processed = restarted.elapsed();
    prometheus.wait_for(None, Duration::from_secs(60)).await;
    eprintln!(
        "{ALERT} (threshold and `for` / {SCALE}): posted at 0 s; pending {pending:.1?} after; \
         firing {firing:.1?} later; processor started {:.1?} after the post; product processed \
         {processed:.1?} after its start; alert resolved {:.1?} after its start",
        restarted - posted,
        restarted.elapsed()
    );

    // The dashboard, against the same Prometheus with both services up.
    let pages = [
        pipeline.app.metrics_url.clone(),
        format!("http://{processor}/metrics"),
    ];
    let known = exported_names(&pipeline, &pages).await;
    let mut problems = Vec::new();
    for (title, expr) in dashboard_queries() {
        let answer = prometheus.api("/api/v1/query", &[("query", &expr)]).await;
        if answer["status"] != "success" {
            problems.push(format!("{title}: `{expr}` failed: {}", answer["error"]));
        }
        for name in metric_names(&expr) {
            if !known.contains(&name) {
                problems.push(format!(
                    "{title}: `{expr}` reads {name}, which nothing exports"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
