//! Learned noise (Twitter's Diffy rule).
//!
//! For idempotent routes the mirror can send each request to a *second* primary too. Whatever
//! differs between two instances of the same implementation is non-determinism, not a
//! regression. Per (route, signature) the model counts in how many requests the candidate
//! differed from the primary (`candidate`) and in how many the secondary did (`secondary`).
//! A signature is a regression only when
//!
//! * `candidate > secondary × (1 + relative)` (default: more than 20 % above the noise floor),
//!   and
//! * `(candidate − secondary) / requests > absolute` (default: more than 0.03 % of requests).
//!
//! Counts are per request (a signature that occurs three times in one answer counts once), and
//! `requests` counts the requests of that route that had both comparisons. Models merge by
//! adding counts, so each worker keeps its own and they are combined later.

use std::collections::HashMap;

use crate::compare::{Class, Comparison, Signature};

/// Thresholds of the Diffy rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseThresholds {
    /// Relative excess over the secondary count (0.2 = 20 %).
    pub relative: f64,
    /// Excess as a fraction of requests (0.0003 = 0.03 %).
    pub absolute: f64,
}

impl Default for NoiseThresholds {
    fn default() -> Self {
        Self {
            relative: 0.2,
            absolute: 0.0003,
        }
    }
}

/// The Diffy rule as a pure function.
pub fn is_regression(candidate: u64, secondary: u64, requests: u64, t: NoiseThresholds) -> bool {
    if requests == 0 {
        // Nothing to compare against: keep what the rules said.
        return candidate > 0;
    }
    // u64 → f64 only loses precision beyond 2^53 requests.
    #[allow(clippy::cast_precision_loss)]
    let (c, s, n) = (candidate as f64, secondary as f64, requests as f64);
    c > s * (1.0 + t.relative) && (c - s) / n > t.absolute
}

/// Per-signature counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignatureCounts {
    /// Requests where candidate vs primary showed this signature.
    pub candidate: u64,
    /// Requests where secondary vs primary showed this signature.
    pub secondary: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct RouteNoise {
    requests: u64,
    counts: HashMap<Signature, SignatureCounts>,
}

/// Accumulates counts and classifies signatures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NoiseModel {
    thresholds: NoiseThresholds,
    routes: HashMap<String, RouteNoise>,
    scratch: Vec<Signature>,
}

impl NoiseModel {
    /// An empty model.
    pub fn new(thresholds: NoiseThresholds) -> Self {
        Self {
            thresholds,
            routes: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// The thresholds in use.
    pub fn thresholds(&self) -> NoiseThresholds {
        self.thresholds
    }

    /// Runs `f` on a route's counts, creating them on first use (a known route costs no
    /// allocation).
    fn with_route(&mut self, route: &str, f: impl FnOnce(&mut RouteNoise)) {
        if let Some(r) = self.routes.get_mut(route) {
            f(r);
        } else {
            f(self.routes.entry(route.to_owned()).or_default());
        }
    }

    /// Records one request that was compared both ways: `candidate` (candidate vs primary)
    /// and `secondary` (secondary vs primary). Ignored differences are not counted.
    pub fn observe(&mut self, candidate: &Comparison, secondary: &Comparison) {
        let mut scratch = std::mem::take(&mut self.scratch);
        self.with_route(&candidate.route, |route| {
            route.requests += 1;
            for (cmp, is_candidate) in [(candidate, true), (secondary, false)] {
                scratch.clear();
                scratch.extend(
                    cmp.differences
                        .iter()
                        .filter(|d| d.class != Class::Ignored)
                        .map(|d| d.signature),
                );
                scratch.sort_unstable();
                scratch.dedup();
                for sig in &scratch {
                    let counts = route.counts.entry(*sig).or_default();
                    if is_candidate {
                        counts.candidate += 1;
                    } else {
                        counts.secondary += 1;
                    }
                }
            }
        });
        self.scratch = scratch;
    }

    /// Adds counts directly (e.g. read back from a run directory). `requests` is added to the
    /// route's request count.
    pub fn add(
        &mut self,
        route: &str,
        requests: u64,
        signature: Signature,
        counts: SignatureCounts,
    ) {
        self.with_route(route, |r| {
            r.requests += requests;
            let c = r.counts.entry(signature).or_default();
            c.candidate += counts.candidate;
            c.secondary += counts.secondary;
        });
    }

    /// Adds another model's counts into this one.
    pub fn merge(&mut self, other: &NoiseModel) {
        for (route, theirs) in &other.routes {
            self.with_route(route, |ours| {
                ours.requests += theirs.requests;
                for (sig, c) in &theirs.counts {
                    let mine = ours.counts.entry(*sig).or_default();
                    mine.candidate += c.candidate;
                    mine.secondary += c.secondary;
                }
            });
        }
    }

    /// Requests observed for a route.
    pub fn requests(&self, route: &str) -> u64 {
        self.routes.get(route).map_or(0, |r| r.requests)
    }

    /// Counts for a signature.
    pub fn counts(&self, route: &str, signature: Signature) -> SignatureCounts {
        self.routes
            .get(route)
            .and_then(|r| r.counts.get(&signature))
            .copied()
            .unwrap_or_default()
    }

    /// The learned class of a signature, or `None` when the route has no observations.
    pub fn classify(&self, route: &str, signature: Signature) -> Option<Class> {
        let r = self.routes.get(route)?;
        if r.requests == 0 {
            return None;
        }
        let c = r.counts.get(&signature).copied().unwrap_or_default();
        Some(
            if is_regression(c.candidate, c.secondary, r.requests, self.thresholds) {
                Class::Regression
            } else {
                Class::Noise
            },
        )
    }

    /// Re-classes the regressions of `cmp` that the model calls noise; returns how many.
    /// Ignored and noise differences are left alone.
    pub fn apply(&self, cmp: &mut Comparison) -> usize {
        let mut changed = 0;
        for d in &mut cmp.differences {
            if d.class == Class::Regression
                && self.classify(&cmp.route, d.signature) == Some(Class::Noise)
            {
                d.class = Class::Noise;
                changed += 1;
            }
        }
        changed
    }

    /// Every (route, signature, counts, route requests), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Signature, SignatureCounts, u64)> {
        self.routes.iter().flat_map(|(route, r)| {
            r.counts
                .iter()
                .map(move |(sig, c)| (route.as_str(), *sig, *c, r.requests))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Difference, Kind};
    use serde_json::Value;

    #[test]
    fn diffy_rule_with_numbers() {
        let t = NoiseThresholds::default();
        // 100 vs 90 of 10 000: within 20 % of the noise floor → noise.
        assert!(!is_regression(100, 90, 10_000, t));
        // 120 vs 90: 33 % above, and 30/10 000 = 0.3 % of requests → regression.
        assert!(is_regression(120, 90, 10_000, t));
        // Exactly 20 % above is not "more than 20 %".
        assert!(!is_regression(120, 100, 10_000, t));
        // No noise at all, but only 3 of 100 000 requests (0.003 %) → below the absolute bar.
        assert!(!is_regression(3, 0, 100_000, t));
        // 50 of 100 000 (0.05 %) → regression.
        assert!(is_regression(50, 0, 100_000, t));
        // 30 of 100 000 is exactly 0.03 %: not more than → noise.
        assert!(!is_regression(30, 0, 100_000, t));
        assert!(!is_regression(0, 0, 10, t));
        assert!(is_regression(1, 0, 0, t));
    }

    fn diff(sig: u64, class: Class) -> Difference {
        Difference {
            path: "/x".into(),
            kind: Kind::Value,
            primary: Value::Null,
            candidate: Value::Null,
            class,
            label: None,
            signature: Signature(sig),
            pattern: "/x".into(),
            detail: None,
        }
    }

    fn cmp(diffs: Vec<Difference>) -> Comparison {
        Comparison {
            method: "GET".into(),
            route: "/r".into(),
            differences: diffs,
            truncated: false,
        }
    }

    #[test]
    fn model_learns_and_applies() {
        let mut m = NoiseModel::new(NoiseThresholds::default());
        for i in 0..1000 {
            // Signature 1 differs in every request on both sides (a timestamp): noise.
            // Signature 2 differs only against the candidate, in 10 % of requests: regression.
            let mut cand = vec![diff(1, Class::Regression), diff(1, Class::Regression)];
            if i % 10 == 0 {
                cand.push(diff(2, Class::Regression));
            }
            cand.push(diff(3, Class::Ignored));
            m.observe(&cmp(cand), &cmp(vec![diff(1, Class::Regression)]));
        }
        assert_eq!(m.requests("/r"), 1000);
        assert_eq!(
            m.counts("/r", Signature(1)),
            SignatureCounts {
                candidate: 1000,
                secondary: 1000
            }
        );
        assert_eq!(
            m.counts("/r", Signature(2)),
            SignatureCounts {
                candidate: 100,
                secondary: 0
            }
        );
        assert_eq!(m.counts("/r", Signature(3)), SignatureCounts::default());
        assert_eq!(m.classify("/r", Signature(1)), Some(Class::Noise));
        assert_eq!(m.classify("/r", Signature(2)), Some(Class::Regression));
        assert_eq!(m.classify("/other", Signature(2)), None);

        let mut c = cmp(vec![
            diff(1, Class::Regression),
            diff(2, Class::Regression),
            diff(3, Class::Ignored),
        ]);
        assert_eq!(m.apply(&mut c), 1);
        let classes: Vec<Class> = c.differences.iter().map(|d| d.class).collect();
        assert_eq!(
            classes,
            vec![Class::Noise, Class::Regression, Class::Ignored]
        );

        let mut merged = NoiseModel::default();
        merged.merge(&m);
        merged.merge(&m);
        assert_eq!(merged.requests("/r"), 2000);
        assert_eq!(merged.counts("/r", Signature(2)).candidate, 200);
        merged.add(
            "/r",
            0,
            Signature(2),
            SignatureCounts {
                candidate: 0,
                secondary: 200,
            },
        );
        assert_eq!(merged.classify("/r", Signature(2)), Some(Class::Noise));
        assert_eq!(merged.iter().count(), 2);
    }
}
