//! Input drift: every row a prediction route takes is counted, per feature, into the bins of
//! the training distribution that the artifact carries ([`iris_model::model::bins`]); at
//! scrape time the counts of a sliding window give each feature's population stability index
//! (`encode.rs`).
//!
//! The window is a ring of `--drift-window-slices` slices of counters; a task on the main
//! runtime moves to the next slice every window/slices, zeroing it first, so the sum over the
//! ring covers the last (slices - 1) full slices and the current one. Counting is a relaxed
//! atomic add per feature, in one of [`SHARDS`] cache-line-aligned copies of the counters
//! picked per thread, so the HTTP workers and the gRPC runtime do not contend for a line;
//! no lock and no clock read on the request path.

mod encode;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Args;

use crate::iris::N_FEATURES;
use crate::model::bins::{self, FeatureBins};
use crate::model::ModelArtifact;
use iris_model::env;

pub(crate) use encode::DriftCollector;

/// Default `--drift-window-seconds`: PSI over the last 10 minutes.
pub const DEFAULT_WINDOW_SECONDS: u64 = 600;
/// Default `--drift-window-slices`: the window moves on every minute (at the default length).
pub const DEFAULT_WINDOW_SLICES: usize = 10;

/// Copies of the counters, one picked per thread (threads beyond this share).
const SHARDS: usize = 8;
/// Counters per cache line.
const PER_LINE: usize = 8;
/// Batches of at least this many rows are counted on the stack first.
const BATCH: usize = 16;

/// The drift flags of `serve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Args)]
pub struct DriftArgs {
    /// Length of the sliding window over which each input feature's population stability
    /// index (PSI) against the training distribution is exported on /metrics
    /// (model_server_input_drift_psi); 0 turns drift counting off. An artifact without
    /// training bins (schema version 1) exports no drift whatever this says.
    #[arg(long, value_name = "SECONDS", env = env::DRIFT_WINDOW_SECONDS,
          default_value_t = DEFAULT_WINDOW_SECONDS,
          value_parser = clap::value_parser!(u64).range(0..=7 * 86_400))]
    pub drift_window_seconds: u64,
    /// The window is a ring of this many slices; the oldest is dropped every
    /// window/slices, so the PSI covers between (slices-1)/slices of the window and all of it.
    #[arg(long, value_name = "N", env = env::DRIFT_WINDOW_SLICES,
          default_value_t = DEFAULT_WINDOW_SLICES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..=120))]
    pub drift_window_slices: usize,
}

impl Default for DriftArgs {
    fn default() -> Self {
        DriftArgs {
            drift_window_seconds: DEFAULT_WINDOW_SECONDS,
            drift_window_slices: DEFAULT_WINDOW_SLICES,
        }
    }
}

impl DriftArgs {
    /// The slice length (window / slices), or `None` when drift counting is off.
    pub fn slice(&self) -> Option<Duration> {
        (self.drift_window_seconds > 0).then(|| {
            let slices = u32::try_from(self.drift_window_slices.max(1)).unwrap_or(u32::MAX);
            Duration::from_secs(self.drift_window_seconds) / slices
        })
    }
}

/// One cache line of counters.
#[repr(align(64))]
#[derive(Default)]
struct Line([AtomicU64; PER_LINE]);

/// A feature's bins and where its counters start in a cell.
struct Feature {
    bins: FeatureBins,
    offset: usize,
}

/// The live counts of one model's inputs over the sliding window.
pub(crate) struct Drift {
    features: Vec<Feature>,
    /// Counters of one (slice, shard) cell: every bin of every feature.
    bins_per_cell: usize,
    lines_per_cell: usize,
    slices: usize,
    /// (slice, shard) cells of `lines_per_cell` lines each.
    lines: Box<[Line]>,
    current: AtomicUsize,
    slice: Duration,
}

impl std::fmt::Debug for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drift")
            .field("slices", &self.slices)
            .field("slice", &self.slice)
            .finish_non_exhaustive()
    }
}

/// What the window holds now: the rows, and each feature's name, PSI and live counts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) rows: u64,
    /// Per feature in input order: (PSI, or `None` without rows; the counts per bin).
    pub(crate) features: Vec<(Option<f64>, Vec<u64>)>,
}

impl Drift {
    /// Counters for `model`'s training bins over `slices` slices of `slice`; `None` when the
    /// artifact has no bins.
    pub(crate) fn new(model: &ModelArtifact, slices: usize, slice: Duration) -> Option<Drift> {
        let mut offset = 0;
        let features: Vec<Feature> = model
            .training_bins()?
            .iter()
            .map(|b| {
                let f = Feature {
                    bins: b.clone(),
                    offset,
                };
                offset += b.len();
                f
            })
            .collect();
        let lines_per_cell = offset.div_ceil(PER_LINE).max(1);
        let slices = slices.max(1);
        Some(Drift {
            features,
            bins_per_cell: offset,
            lines_per_cell,
            slices,
            lines: (0..slices * SHARDS * lines_per_cell)
                .map(|_| Line::default())
                .collect(),
            current: AtomicUsize::new(0),
            slice,
        })
    }

    /// Counts each row's features into the current slice: a few rows straight into the
    /// counters, a batch first into counts on the stack (one atomic add per bin touched).
    #[inline]
    pub(crate) fn count<'a>(&self, rows: impl IntoIterator<Item = &'a [f64; N_FEATURES]>) {
        let rows = rows.into_iter();
        let cell = self.current.load(Relaxed) * SHARDS + shard();
        let start = cell * self.lines_per_cell;
        let Some(lines) = self.lines.get(start..start + self.lines_per_cell) else {
            return;
        };
        let add = |i: usize, n: u64| {
            if let Some(line) = lines.get(i / PER_LINE) {
                line.0[i % PER_LINE].fetch_add(n, Relaxed);
            }
        };
        if rows.size_hint().0 < BATCH {
            for row in rows {
                for (feature, x) in self.features.iter().zip(row) {
                    add(feature.offset + feature.bins.bin_of(*x), 1);
                }
            }
            return;
        }
        let mut local = [0u64; N_FEATURES * bins::MAX_BINS];
        for row in rows {
            for (feature, x) in self.features.iter().zip(row) {
                if let Some(n) = local.get_mut(feature.offset + feature.bins.bin_of(*x)) {
                    *n += 1;
                }
            }
        }
        for (i, n) in local.iter().take(self.bins_per_cell).enumerate() {
            if *n > 0 {
                add(i, *n);
            }
        }
    }

    /// Moves the window on by one slice: the oldest slice is zeroed and becomes the current
    /// one. A request that read the old index a moment ago still counts into the slice before,
    /// which stays in the window.
    pub(crate) fn rotate(&self) {
        let next = (self.current.load(Relaxed) + 1) % self.slices;
        let start = next * SHARDS * self.lines_per_cell;
        let end = start + SHARDS * self.lines_per_cell;
        for line in self.lines.get(start..end).unwrap_or_default() {
            for c in &line.0 {
                c.store(0, Relaxed);
            }
        }
        self.current.store(next, Relaxed);
    }

    /// The counts of the whole window and each feature's PSI.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut totals = vec![0u64; self.bins_per_cell];
        for cell in self.lines.chunks(self.lines_per_cell) {
            let counters = cell.iter().flat_map(|l| &l.0);
            for (t, c) in totals.iter_mut().zip(counters) {
                *t += c.load(Relaxed);
            }
        }
        let features: Vec<(Option<f64>, Vec<u64>)> = self
            .features
            .iter()
            .map(|f| {
                let counts = totals
                    .get(f.offset..f.offset + f.bins.len())
                    .unwrap_or_default()
                    .to_vec();
                (bins::psi(&f.bins.expected_shares, &counts), counts)
            })
            .collect();
        let rows = features.first().map_or(0, |(_, c)| c.iter().sum());
        Snapshot { rows, features }
    }
}

/// The shard of this thread: threads take the next one on first use.
#[inline]
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// Moves `drift`'s window on every slice, for as long as the server runs (on the main
/// runtime, like the files' reloads).
pub(crate) async fn rotate_every(drift: Arc<OnceLock<Drift>>) {
    let Some(slice) = drift.get().map(|d| d.slice) else {
        return;
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + slice, slice);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Some(d) = drift.get() {
            d.rotate();
        }
    }
}
