//! `api feed backfill`: republishes every product's current state on the products topic,
//! through the outbox, for a new subscriber or after the topic lost records.
//!
//! - **Idempotent**: it writes each product's current state, which is what the topic's last
//!   record of that product already says unless records were lost; subscribers keep the last
//!   value per key, so running it again changes nothing they see.
//! - **In order with live writes**: each batch locks its products (`FOR SHARE`) before
//!   writing their states, so a concurrent change either committed first (and the backfill
//!   writes the changed state) or waits and writes its own record after the backfill's.
//! - **Resumable**: each batch records its progress in `feed_backfills` in the same
//!   transaction as its outbox rows; a run that stopped (Ctrl-C, a crash, a deploy) is
//!   resumed by the next `api feed backfill` from the product after the last one done.
//! - **Rate-limited**: at most `--rate` products per second (default 500), so the relay and
//!   the broker keep up and live changes are not delayed behind a long backlog.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use anyhow::Context;
use deadpool_postgres::Pool;

use crate::products::store;

/// How `api feed backfill` runs.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct BackfillOptions {
    /// At most this many products per second (0: no limit).
    #[arg(long = "rate", value_name = "PER_SECOND", default_value_t = 500)]
    pub per_second: u32,
    /// Products per transaction.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        value_parser = clap::value_parser!(i64).range(1..=10_000)
    )]
    pub batch: i64,
    /// Abandon an unfinished run and start again from the first product.
    #[arg(long)]
    pub restart: bool,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        Self::parse(&[]).expect("the defaults parse")
    }
}

impl BackfillOptions {
    /// Parses the options as `api feed backfill` takes them (`--rate`, `--batch`,
    /// `--restart`).
    pub fn parse(args: &[&str]) -> anyhow::Result<Self> {
        #[derive(clap::Parser)]
        #[command(no_binary_name = true)]
        struct Line {
            #[command(flatten)]
            options: BackfillOptions,
        }
        Ok(<Line as clap::Parser>::try_parse_from(args)?.options)
    }
}

/// What a backfill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backfilled {
    /// The run's id in `feed_backfills`.
    pub run: i64,
    /// Products republished by the whole run, including before a resume.
    pub products: i64,
    /// Whether this invocation resumed a run that had stopped.
    pub resumed: bool,
}

/// Runs (or resumes) a backfill to its end, writing progress lines to `progress`.
pub async fn run(
    pool: &Pool,
    options: &BackfillOptions,
    progress: &mut impl Write,
) -> anyhow::Result<Backfilled> {
    let client = pool
        .get()
        .await
        .context("Failed to connect to PostgreSQL")?;
    if options.restart {
        client
            .execute(
                "UPDATE feed_backfills SET finished_at = now(), updated_at = now() \
                 WHERE finished_at IS NULL",
                &[],
            )
            .await?;
    }
    let unfinished = client
        .query_opt(
            "SELECT id FROM feed_backfills WHERE finished_at IS NULL ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?;
    let (run, resumed) = match unfinished {
        Some(row) => (row.try_get::<_, i64>("id")?, true),
        None => (
            client
                .query_one(
                    "INSERT INTO feed_backfills DEFAULT VALUES RETURNING id",
                    &[],
                )
                .await?
                .try_get("id")?,
            false,
        ),
    };
    // For the progress lines only: products still to do when this invocation starts.
    let total: i64 = client
        .query_one(
            "SELECT b.products + (SELECT count(*) FROM products p WHERE p.id > b.last_product_id) \
               AS total \
             FROM feed_backfills b WHERE b.id = $1",
            &[&run],
        )
        .await?
        .try_get("total")?;
    drop(client);

    let started = Instant::now();
    let pause = (options.per_second > 0)
        .then(|| Duration::from_secs_f64(options.batch as f64 / f64::from(options.per_second)));
    let mut done_here = 0_i64;
    loop {
        let batch_started = Instant::now();
        let step = backfill_batch(pool, run, options.batch).await?;
        done_here += step.written;
        // The rate limit's pause comes before the progress line, so the rate shown is the
        // one kept.
        if let (Some(pause), false) = (pause, step.finished) {
            tokio::time::sleep(pause.saturating_sub(batch_started.elapsed())).await;
        }
        let rate = done_here as f64 / started.elapsed().as_secs_f64().max(0.001);
        let total = total.max(step.products);
        let left = total - step.products;
        writeln!(
            progress,
            "backfill run {run}: {} of about {total} products republished ({:.0}%), {rate:.0}/s{}",
            step.products,
            100.0 * step.products as f64 / total.max(1) as f64,
            if step.finished {
                String::new()
            } else {
                format!(", about {:.0} s left", left as f64 / rate.max(1.0))
            }
        )?;
        if step.finished {
            return Ok(Backfilled {
                run,
                products: step.products,
                resumed,
            });
        }
    }
}

struct Step {
    written: i64,
    /// Products republished by the run so far.
    products: i64,
    finished: bool,
}

/// Republishes the next `batch` products of run `run` in one transaction.
async fn backfill_batch(pool: &Pool, run: i64, batch: i64) -> anyhow::Result<Step> {
    let mut client = pool
        .get()
        .await
        .context("Failed to connect to PostgreSQL")?;
    let tx = client.transaction().await?;
    // Locks the run's row: two backfills at once take turns batch by batch, never writing
    // one product twice for the same position.
    let state = tx
        .query_one(
            "SELECT last_product_id, products, finished_at IS NOT NULL AS finished \
             FROM feed_backfills WHERE id = $1 FOR UPDATE",
            &[&run],
        )
        .await?;
    let (after, mut products, finished): (i64, i64, bool) = (
        state.try_get("last_product_id")?,
        state.try_get("products")?,
        state.try_get("finished")?,
    );
    if finished {
        tx.commit().await?;
        return Ok(Step {
            written: 0,
            products,
            finished: true,
        });
    }
    let ids = store::republish_after(&tx, after, batch).await?;
    let written = ids.len() as i64;
    products += written;
    let finished = written < batch;
    let last = ids.last().copied().unwrap_or(after);
    tx.execute(
        "UPDATE feed_backfills SET last_product_id = $2, products = $3, updated_at = now(), \
           finished_at = CASE WHEN $4 THEN now() END \
         WHERE id = $1",
        &[&run, &last, &products, &finished],
    )
    .await?;
    tx.commit().await?;
    Ok(Step {
        written,
        products,
        finished,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_with_defaults() {
        assert_eq!(
            BackfillOptions::default(),
            BackfillOptions {
                per_second: 500,
                batch: 100,
                restart: false
            }
        );
        let options =
            BackfillOptions::parse(&["--rate", "0", "--batch", "20", "--restart"]).unwrap();
        assert_eq!(
            options,
            BackfillOptions {
                per_second: 0,
                batch: 20,
                restart: true
            }
        );
        assert!(BackfillOptions::parse(&["--rate"]).is_err());
        assert!(BackfillOptions::parse(&["--fast"]).is_err());
        assert!(
            BackfillOptions::parse(&["--batch", "0"]).is_err(),
            "a batch of nothing is refused, not taken as 1"
        );
    }
}
