//! Statistics: the memory-leak slope and the Mann-Whitney U test on two latency histograms.
//!
//! # Mann-Whitney U from histograms
//!
//! The test needs the rank of every sample among both samples. A run holds millions of
//! samples, but only as HDR histograms (3 significant digits: each bucket is at most 0.1 % of
//! its value wide), so the ranks are computed from the buckets: the two histograms share one
//! bucket layout, their recorded buckets are walked together in value order, and every bucket
//! is one *tie group* — all samples in it share the mid-rank `R + (a + b + 1) / 2`, where `R`
//! counts the samples in lower buckets and `a`, `b` are the bucket's counts in each histogram.
//! The rank sum of the first sample gives `U₁ = R₁ − n₁(n₁+1)/2`; the p-value comes from the
//! normal approximation with the tie correction and the continuity correction, the same
//! formulas as `scipy.stats.mannwhitneyu(method="asymptotic")` and statrs' `mannwhitneyu`
//! (whose `Normal` distribution this uses). So the result is exact for the bucketed data:
//! values closer than 0.1 % count as equal, which can only make the test more conservative.
//! It costs O(buckets), not O(n log n); statrs' own function checks its input pairwise
//! (O(n²)) and overflows its tie term past ~2.6 million equal samples, so it is used in the
//! tests to confirm the two agree, not on run data.
//!
//! With millions of samples even a trivial shift is "significant", so the report pairs the
//! p-value with the effect size `P(candidate > primary)` (`U₁ / (n₁ n₂)`, 0.5 = no shift) and
//! calls the candidate slower only when the p-value is under alpha *and* the effect is above
//! 0.5.

use shadowgate_record::hdrhistogram::Histogram;
use statrs::distribution::{ContinuousCDF, Normal};

/// Result of a Mann-Whitney U test of `a` against `b`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MannWhitney {
    /// Samples in `a`.
    pub n_a: u64,
    /// Samples in `b`.
    pub n_b: u64,
    /// U statistic of `a`: pairs (x from a, y from b) with x > y, plus half the ties.
    pub u: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// One-sided p-value for "a is stochastically greater (slower) than b".
    pub p_greater: f64,
    /// One-sided p-value for "a is stochastically less (faster) than b".
    pub p_less: f64,
    /// `U / (n_a n_b)`: the probability that a sample of `a` exceeds one of `b` (ties count
    /// half). 0.5 means no shift.
    pub effect: f64,
}

/// The Mann-Whitney U test from two histograms' recorded values (see the module docs).
/// `None` when either is empty.
pub fn mann_whitney(a: &Histogram<u64>, b: &Histogram<u64>) -> Option<MannWhitney> {
    let bucket = |h: &Histogram<u64>| -> Vec<(u64, u64)> {
        h.iter_recorded()
            .map(|v| {
                (
                    h.lowest_equivalent(v.value_iterated_to()),
                    v.count_at_value(),
                )
            })
            .collect()
    };
    mann_whitney_counts(&bucket(a), &bucket(b))
}

/// The test from `(value, count)` lists sorted by value; equal values are ties.
pub fn mann_whitney_counts(a: &[(u64, u64)], b: &[(u64, u64)]) -> Option<MannWhitney> {
    let n_a: u64 = a.iter().map(|(_, c)| c).sum();
    let n_b: u64 = b.iter().map(|(_, c)| c).sum();
    if n_a == 0 || n_b == 0 {
        return None;
    }
    let (mut i, mut j) = (0, 0);
    let mut below = 0.0_f64; // samples in lower tie groups
    let mut rank_sum_a = 0.0_f64;
    let mut tie_term = 0.0_f64; // Σ (t³ − t)
    while i < a.len() || j < b.len() {
        let va = a.get(i).map_or(u64::MAX, |x| x.0);
        let vb = b.get(j).map_or(u64::MAX, |x| x.0);
        let v = va.min(vb);
        let mut ca = 0.0;
        let mut cb = 0.0;
        while i < a.len() && a[i].0 == v {
            ca += a[i].1 as f64;
            i += 1;
        }
        while j < b.len() && b[j].0 == v {
            cb += b[j].1 as f64;
            j += 1;
        }
        let t = ca + cb;
        rank_sum_a += ca * (below + (t + 1.0) / 2.0);
        tie_term += t * t * t - t;
        below += t;
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let u = rank_sum_a - na * (na + 1.0) / 2.0;
    let n = na + nb;
    let mu = na * nb / 2.0;
    let var = na * nb / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    let sd = var.max(0.0).sqrt();
    let normal = Normal::standard();
    // Survival function with the continuity correction; every sample tied means no evidence.
    let sf = |stat: f64| {
        if sd > 0.0 {
            normal.sf((stat - mu - 0.5) / sd).clamp(0.0, 1.0)
        } else {
            1.0
        }
    };
    let u_other = na * nb - u;
    Some(MannWhitney {
        n_a,
        n_b,
        u,
        p_value: (2.0 * sf(u.max(u_other))).min(1.0),
        p_greater: sf(u),
        p_less: sf(u_other),
        effect: u / (na * nb),
    })
}

/// What a comparison of two latency distributions concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shift {
    /// `a` is slower than `b`, significantly.
    Slower,
    /// `a` is faster than `b`, significantly.
    Faster,
    /// No significant difference at the chosen alpha.
    NoSignificantDifference,
}

impl MannWhitney {
    /// The conclusion at significance level `alpha` (two-sided test plus the effect's sign).
    pub fn shift(&self, alpha: f64) -> Shift {
        if self.p_value < alpha && self.effect > 0.5 {
            Shift::Slower
        } else if self.p_value < alpha && self.effect < 0.5 {
            Shift::Faster
        } else {
            Shift::NoSignificantDifference
        }
    }
}

/// Least-squares slope of `y` over `x` (units of y per unit of x). `None` with fewer than two
/// distinct `x`.
pub fn least_squares_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let mut sxx = 0.0;
    let mut sxy = 0.0;
    for &(x, y) in points {
        sxx += (x - mean_x) * (x - mean_x);
        sxy += (x - mean_x) * (y - mean_y);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Mean of the values (`None` when empty).
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Nearest-rank quantile of the values (`None` when empty); `q` in [0, 1].
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    v.get(rank.saturating_sub(1).min(v.len() - 1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use statrs::stats_tests::Alternative;
    use statrs::stats_tests::mannwhitneyu::{MannWhitneyUMethod, mannwhitneyu};

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    fn statrs_p(a: &[u64], b: &[u64], alt: Alternative) -> (f64, f64) {
        mannwhitneyu(
            a,
            b,
            MannWhitneyUMethod::AsymptoticInclContinuityCorrection,
            alt,
        )
        .unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
    }

    #[test]
    fn matches_statrs_on_the_scipy_example() {
        let male = [19, 22, 16, 29, 24];
        let female = [20, 11, 17, 12];
        let mw = mann_whitney(&hist(&male), &hist(&female)).unwrap();
        let (u, p) = statrs_p(&male, &female, Alternative::TwoSided);
        assert_eq!(mw.u, u);
        assert_eq!(mw.u, 17.0);
        assert!(close(mw.p_value, p), "{} vs {p}", mw.p_value);
        let (_, pg) = statrs_p(&male, &female, Alternative::Greater);
        assert!(close(mw.p_greater, pg), "{} vs {pg}", mw.p_greater);
        let (_, pl) = statrs_p(&male, &female, Alternative::Less);
        assert!(close(mw.p_less, pl), "{} vs {pl}", mw.p_less);
        assert_eq!(mw.n_a, 5);
        assert_eq!(mw.effect, 17.0 / 20.0);
    }

    #[test]
    fn matches_statrs_with_many_ties() {
        // Values below 2048 are exact in a 3-digit histogram, so both see the same data.
        let mut seed = 12345_u64;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        };
        let a: Vec<u64> = (0..600).map(|_| 100 + next(50)).collect();
        let b: Vec<u64> = (0..500).map(|_| 103 + next(50)).collect();
        let mw = mann_whitney(&hist(&a), &hist(&b)).unwrap();
        let (u, p) = statrs_p(&a, &b, Alternative::TwoSided);
        assert_eq!(mw.u, u);
        assert!(close(mw.p_value, p), "{} vs {p}", mw.p_value);
        assert!(mw.p_value < 0.05 && mw.effect < 0.5);
        assert_eq!(mw.shift(0.05), Shift::Faster);
    }

    #[test]
    fn shifts_and_edge_cases() {
        let fast: Vec<u64> = (0..200).map(|i| 100_000 + i * 100).collect();
        let slow: Vec<u64> = (0..200).map(|i| 700_000 + i * 100).collect();
        let mw = mann_whitney(&hist(&slow), &hist(&fast)).unwrap();
        assert_eq!(mw.effect, 1.0);
        assert!(mw.p_value < 1e-12);
        assert_eq!(mw.shift(0.05), Shift::Slower);
        let same = mann_whitney(&hist(&fast), &hist(&fast)).unwrap();
        assert_eq!(same.effect, 0.5);
        assert!(same.p_value > 0.9);
        assert_eq!(same.shift(0.05), Shift::NoSignificantDifference);
        let all_tied = mann_whitney(&hist(&[5, 5]), &hist(&[5])).unwrap();
        assert_eq!(all_tied.p_value, 1.0);
        assert!(mann_whitney(&hist(&[]), &hist(&[1])).is_none());
    }

    #[test]
    fn large_histograms_are_cheap_and_tie_safe() {
        // 10 million samples each: far past statrs' quadratic check and usize tie term.
        let mut a = hist(&[]);
        let mut b = hist(&[]);
        a.record_n(150_000, 5_000_000).unwrap();
        a.record_n(160_000, 5_000_000).unwrap();
        b.record_n(150_000, 5_000_000).unwrap();
        b.record_n(140_000, 5_000_000).unwrap();
        let mw = mann_whitney(&a, &b).unwrap();
        assert!(mw.p_value < 1e-12 && mw.effect > 0.5, "{mw:?}");
        assert_eq!(mw.shift(0.05), Shift::Slower);
    }

    #[test]
    fn leak_slope() {
        // 1 MB per minute = 60 MB per hour, plus alternating noise that cancels out.
        let pts: Vec<(f64, f64)> = (0..61)
            .map(|i| {
                let t = i as f64 * 60.0;
                let noise = if i % 2 == 0 { 3e5 } else { -3e5 };
                (t, 100e6 + t / 60.0 * 1e6 + noise)
            })
            .collect();
        let per_hour = least_squares_slope(&pts).unwrap() * 3600.0;
        assert!((per_hour - 60e6).abs() < 0.5e6, "{per_hour}");
        assert_eq!(least_squares_slope(&[(0.0, 1.0), (10.0, 1.0)]), Some(0.0));
        assert_eq!(least_squares_slope(&[(1.0, 1.0)]), None);
        assert_eq!(least_squares_slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn mean_and_quantile() {
        assert_eq!(mean(&[1.0, 2.0, 3.0]), Some(2.0));
        assert_eq!(mean(&[]), None);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.95), Some(95.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
