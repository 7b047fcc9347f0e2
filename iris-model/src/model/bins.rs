//! The training distribution of each feature, kept for drift detection: bins whose edges are
//! fixed from the training rows (deciles, ties merged) and the share of training rows in
//! each, and the population stability index (PSI) of live counts against those shares.
//!
//! Bin `0` is `(-inf, edges[0])`, bin `i` is `[edges[i-1], edges[i])` and the last bin is
//! `[edges[last], +inf)`: every finite value falls in exactly one bin.

use serde::{Deserialize, Serialize};

use super::error::ArtifactError;
use crate::iris::{IrisSample, N_FEATURES};

/// Quantile bins fitted per feature at training time (deciles).
pub const TRAINING_BINS: usize = 10;

/// Most bins a feature may have in an artifact (so a hostile file cannot make the server
/// allocate or scan without bound).
pub const MAX_BINS: usize = 64;

/// How far the expected shares of a feature may sum from 1.
pub const SHARE_SUM_TOLERANCE: f64 = 1e-6;

/// The smallest share PSI works with: an empty bin (live or expected) counts as this share,
/// so its term is large but finite instead of infinite.
pub const PSI_EPSILON: f64 = 1e-4;

/// One feature's bins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureBins {
    /// Interior edges, strictly increasing (at most [`MAX_BINS`] - 1); none means one bin.
    pub edges: Vec<f64>,
    /// Share of the training rows in each bin: `edges.len() + 1` values in [0, 1] summing
    /// to 1.
    pub expected_shares: Vec<f64>,
}

impl FeatureBins {
    /// The bin `x` falls in (`0..=edges.len()`); a NaN (which no request gets past the
    /// input checks) falls in bin 0.
    /// Counts the edges at or below `x` (the edges are sorted, so this is the partition
    /// point): without branches, faster than a binary search on a few edges.
    #[inline]
    pub fn bin_of(&self, x: f64) -> usize {
        self.edges.iter().map(|e| usize::from(*e <= x)).sum()
    }

    /// Number of bins.
    pub fn len(&self) -> usize {
        self.expected_shares.len()
    }

    /// Never true for a validated artifact (there is always at least one bin).
    pub fn is_empty(&self) -> bool {
        self.expected_shares.is_empty()
    }
}

/// Fits the bins of every feature on the training rows `rows` of `data`: the cut points are
/// the training values at ranks `k * n / 10` (k = 1..9), with repeated values and a cut at
/// the minimum (which would leave bin 0 empty) dropped; then every bin holds at least one
/// training row.
pub(crate) fn fit(data: &[IrisSample], rows: &[usize]) -> Vec<FeatureBins> {
    (0..N_FEATURES)
        .map(|f| {
            let mut values: Vec<f64> = rows.iter().map(|&i| data[i].features[f]).collect();
            values.sort_by(f64::total_cmp);
            let n = values.len();
            let mut edges: Vec<f64> = Vec::with_capacity(TRAINING_BINS - 1);
            for k in 1..TRAINING_BINS {
                let Some(&cut) = values.get(k * n / TRAINING_BINS) else {
                    continue;
                };
                let above_last = edges.last().is_none_or(|last| cut > *last);
                if above_last && values.first().is_some_and(|min| cut > *min) {
                    edges.push(cut);
                }
            }
            let mut bins = FeatureBins {
                expected_shares: vec![0.0; edges.len() + 1],
                edges,
            };
            let mut counts = vec![0u64; bins.len()];
            for v in &values {
                counts[bins.bin_of(*v)] += 1;
            }
            bins.expected_shares = counts.iter().map(|c| *c as f64 / n as f64).collect();
            bins
        })
        .collect()
}

/// The population stability index of live `counts` (one per bin) against `expected`
/// shares: `sum_i (a_i - e_i) * ln(a_i / e_i)` with `a_i = counts[i] / total`, each share
/// floored at [`PSI_EPSILON`]. `None` without any count or when the lengths differ.
pub fn psi(expected: &[f64], counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || expected.len() != counts.len() {
        return None;
    }
    let total = total as f64;
    Some(
        expected
            .iter()
            .zip(counts)
            .map(|(e, c)| {
                let a = (*c as f64 / total).max(PSI_EPSILON);
                let e = e.max(PSI_EPSILON);
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// One set of bins per feature; edges finite and strictly increasing, at most [`MAX_BINS`]
/// bins, shares finite, in [0, 1], one per bin, summing to 1 within
/// [`SHARE_SUM_TOLERANCE`].
pub(crate) fn check(bins: &[FeatureBins]) -> Result<(), ArtifactError> {
    if bins.len() != N_FEATURES {
        return Err(ArtifactError::Shape(format!(
            "training_bins has {} entries, expected {N_FEATURES} (one per feature)",
            bins.len()
        )));
    }
    for (f, b) in bins.iter().enumerate() {
        let name = |what: &str, i: usize| format!("training_bins[{f}].{what}[{i}]");
        if b.edges.len() >= MAX_BINS {
            return Err(ArtifactError::Shape(format!(
                "training_bins[{f}].edges has {} values, at most {} ({MAX_BINS} bins)",
                b.edges.len(),
                MAX_BINS - 1
            )));
        }
        if b.expected_shares.len() != b.edges.len() + 1 {
            return Err(ArtifactError::Shape(format!(
                "training_bins[{f}].expected_shares has {} values, expected {} (one per bin: \
                 edges + 1)",
                b.expected_shares.len(),
                b.edges.len() + 1
            )));
        }
        for (i, e) in b.edges.iter().enumerate() {
            if !e.is_finite() {
                return Err(ArtifactError::NonFinite {
                    field: name("edges", i),
                });
            }
            if i > 0 && *e <= b.edges[i - 1] {
                return Err(invalid(format!(
                    "{} is {e}, not above the edge before it ({}): edges must increase",
                    name("edges", i),
                    b.edges[i - 1]
                )));
            }
        }
        for (i, s) in b.expected_shares.iter().enumerate() {
            if !s.is_finite() {
                return Err(ArtifactError::NonFinite {
                    field: name("expected_shares", i),
                });
            }
            if !(0.0..=1.0).contains(s) {
                return Err(invalid(format!(
                    "{} is {s}, outside [0, 1]",
                    name("expected_shares", i)
                )));
            }
        }
        let sum: f64 = b.expected_shares.iter().sum();
        if (sum - 1.0).abs() > SHARE_SUM_TOLERANCE {
            return Err(invalid(format!(
                "training_bins[{f}].expected_shares sum to {sum}, not 1"
            )));
        }
    }
    Ok(())
}

fn invalid(reason: String) -> ArtifactError {
    ArtifactError::InvalidValue {
        field: "training_bins",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iris;

    fn one(edges: &[f64], shares: &[f64]) -> FeatureBins {
        FeatureBins {
            edges: edges.to_vec(),
            expected_shares: shares.to_vec(),
        }
    }

    #[test]
    fn bins_split_on_edges_with_the_edge_in_the_upper_bin() {
        let b = one(&[1.0, 2.0], &[0.25, 0.5, 0.25]);
        let got: Vec<usize> = [-1e300, 0.99, 1.0, 1.5, 2.0, 7.0]
            .iter()
            .map(|x| b.bin_of(*x))
            .collect();
        assert_eq!(got, [0, 0, 1, 1, 2, 2]);
        assert_eq!(one(&[], &[1.0]).bin_of(3.0), 0);
    }

    #[test]
    fn deciles_of_the_training_rows() {
        let data = iris::dataset();
        let rows: Vec<usize> = (0..data.len()).collect();
        let bins = fit(data, &rows);
        assert_eq!(bins.len(), N_FEATURES);
        check(&bins).unwrap();
        for (f, b) in bins.iter().enumerate() {
            // Ties merge some deciles, never below 5 bins on the Iris data.
            assert!((5..=TRAINING_BINS).contains(&b.len()), "feature {f}: {b:?}");
            // Every bin holds training rows, and the shares are the rows' own.
            assert!(b.expected_shares.iter().all(|s| *s > 0.0), "{b:?}");
            let mut counts = vec![0u64; b.len()];
            for &i in &rows {
                counts[b.bin_of(data[i].features[f])] += 1;
            }
            let shares: Vec<f64> = counts.iter().map(|c| *c as f64 / 150.0).collect();
            assert_eq!(shares, b.expected_shares);
            // The training data itself has no drift.
            assert!(psi(&b.expected_shares, &counts).unwrap().abs() < 1e-12);
        }
        // Petal length (1.0 .. 6.9 cm): its first decile of 150 rows is the 16th smallest.
        let mut pl: Vec<f64> = data.iter().map(|s| s.features[2]).collect();
        pl.sort_by(f64::total_cmp);
        assert_eq!(bins[2].edges[0], pl[15]);
        // A constant feature has a single bin.
        let mut constant = data.to_vec();
        for s in &mut constant {
            s.features[0] = 5.0;
        }
        assert_eq!(fit(&constant, &rows)[0], one(&[], &[1.0]));
    }

    #[test]
    fn psi_matches_a_hand_computation() {
        // expected 0.5/0.5, live 3 and 1 of 4: (0.75-0.5)ln(1.5) + (0.25-0.5)ln(0.5).
        let hand = 0.25 * 1.5f64.ln() + (-0.25) * 0.5f64.ln();
        let got = psi(&[0.5, 0.5], &[3, 1]).unwrap();
        assert!((got - hand).abs() < 1e-15, "{got} vs {hand}");
        assert!((got - 0.274_653_072_167_027).abs() < 1e-12);
        // An empty live bin counts as PSI_EPSILON: (1e-4 - 0.5) ln(1e-4/0.5) + (1 - 0.5) ln 2
        // (the share of the full bin is 1, not reduced by the floor).
        let hand = (1e-4 - 0.5) * (1e-4f64 / 0.5).ln() + 0.5 * 2f64.ln();
        assert!((psi(&[0.5, 0.5], &[0, 8]).unwrap() - hand).abs() < 1e-12);
        // Same distribution: 0. No rows or mismatched lengths: none.
        assert_eq!(psi(&[0.25, 0.75], &[1, 3]), Some(0.0));
        assert_eq!(psi(&[0.5, 0.5], &[0, 0]), None);
        assert_eq!(psi(&[0.5, 0.5], &[1, 1, 1]), None);
    }

    #[test]
    fn hostile_bins_are_refused_with_the_field_named() {
        let good = || vec![one(&[1.0, 2.0], &[0.25, 0.5, 0.25]); N_FEATURES];
        let refused = |edit: &dyn Fn(&mut Vec<FeatureBins>)| {
            let mut b = good();
            edit(&mut b);
            check(&b).unwrap_err().to_string()
        };
        check(&good()).unwrap();
        type Edit = Box<dyn Fn(&mut Vec<FeatureBins>)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|b| b.truncate(3)), "training_bins has 3 entries"),
            (
                Box::new(|b| b[1].edges.push(3.0)),
                "training_bins[1].expected_shares has 3 values, expected 4",
            ),
            (
                Box::new(|b| b[2].edges[1] = f64::INFINITY),
                "training_bins[2].edges[1] is not a finite number",
            ),
            (
                Box::new(|b| b[0].edges = vec![2.0, 1.0]),
                "training_bins[0].edges[1] is 1, not above the edge before it (2)",
            ),
            (
                Box::new(|b| b[0].edges = vec![1.0, 1.0]),
                "edges must increase",
            ),
            (
                Box::new(|b| b[3].expected_shares[0] = f64::NAN),
                "training_bins[3].expected_shares[0] is not a finite number",
            ),
            (
                Box::new(|b| b[3].expected_shares = vec![-0.5, 1.0, 0.5]),
                "expected_shares[0] is -0.5, outside [0, 1]",
            ),
            (
                Box::new(|b| b[3].expected_shares = vec![0.3, 0.3, 0.3]),
                "training_bins[3].expected_shares sum to",
            ),
            (
                Box::new(|b| {
                    b[0].edges = (0..MAX_BINS).map(|i| i as f64).collect();
                    b[0].expected_shares = vec![1.0 / 65.0; MAX_BINS + 1];
                }),
                "training_bins[0].edges has 64 values, at most 63",
            ),
        ];
        for (edit, expected) in cases {
            let e = refused(&*edit);
            assert!(e.contains(expected), "{e:?} lacks {expected:?}");
        }
        // The most bins allowed, and a single bin, are fine.
        let mut b = good();
        b[0].edges = (0..MAX_BINS - 1).map(|i| i as f64).collect();
        b[0].expected_shares = vec![1.0 / 64.0; MAX_BINS];
        b[1] = one(&[], &[1.0]);
        check(&b).unwrap();
    }
}
