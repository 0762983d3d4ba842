//! `.hgrm` percentile distributions, the text HdrHistogram's `outputPercentileDistribution`
//! prints and wrk2, HdrHistogram's plotter and hdr-plot read:
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        0.090 0.000000000000          1           1.00
//!        ...
//! #[Mean    =        0.118, StdDeviation   =        0.020]
//! #[Max     =        0.500, Total count    =       2000]
//! #[Buckets =           27, SubBuckets     =       2048]
//! ```
//!
//! Values are in milliseconds (the unit those tools assume; recorded values are ns, so the
//! scaling ratio is 1e6), 5 percentile ticks per half-distance, as Java's default.

use std::io::{self, Write};

use shadowgate_record::hdrhistogram::Histogram;

/// Writes one histogram's percentile distribution.
pub fn render(h: &Histogram<u64>, w: &mut dyn Write) -> io::Result<()> {
    const SCALE: f64 = 1e6; // ns → ms
    const TICKS: u32 = 5;
    writeln!(
        w,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if !h.is_empty() {
        let mut count = 0_u64;
        for v in h.iter_quantiles(TICKS) {
            let q = v.quantile_iterated_to();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / SCALE;
            count += v.count_since_last_iteration();
            if q < 1.0 {
                writeln!(
                    w,
                    "{value:>12.3} {q:>2.12} {count:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                // Java prints the 100th percentile without the 1/(1-p) column (it is infinite).
                writeln!(w, "{value:>12.3} {q:>2.12} {count:>10}")?;
                break;
            }
        }
    }
    let mean = if h.is_empty() { 0.0 } else { h.mean() / SCALE };
    let sd = if h.is_empty() { 0.0 } else { h.stdev() / SCALE };
    let max = h.max() as f64 / SCALE;
    writeln!(w, "#[Mean    = {mean:>12.3}, StdDeviation   = {sd:>12.3}]")?;
    writeln!(
        w,
        "#[Max     = {max:>12.3}, Total count    = {:>12}]",
        h.len()
    )?;
    writeln!(
        w,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    )
}

/// HdrHistogram's sub-bucket count for `sigfig` significant digits (2048 for 3).
fn sub_buckets(sigfig: u8) -> u64 {
    let largest = 2.0 * 10f64.powi(i32::from(sigfig));
    1_u64 << (largest.log2().ceil() as u32)
}

/// Every series of the merged run (file name from its tag), then each target's response time
/// over all routes (`<target>.hgrm`).
pub fn series(m: &crate::measure::Measurements) -> Vec<(String, Histogram<u64>)> {
    let mut out: Vec<(String, Histogram<u64>)> = m
        .run
        .latency
        .iter()
        .filter(|(_, d)| !d.total.is_empty())
        .map(|(k, d)| (file_name(&k.tag()), d.total.clone()))
        .collect();
    for t in m.targets() {
        if let Some(h) = m.latency(&t, None, &shadowgate_record::Measure::Response) {
            out.push((file_name(&t), h));
        }
    }
    out
}

/// A file name for a series tag: characters other than letters, digits, `-`, `_` and `.`
/// become `_` (`candidate:GET:/api/order` → `candidate_GET__api_order.hgrm`).
pub fn file_name(tag: &str) -> String {
    let mut s: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.push_str(".hgrm");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_text_has_the_wrk2_shape() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for i in 1..=1000_u64 {
            h.record(i * 1_000).unwrap(); // 1 µs .. 1 ms
        }
        let mut out = Vec::new();
        render(&h, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert!(
            lines[2].starts_with("       0.001 0.000000000000          1           1.00"),
            "{text}"
        );
        let median = lines
            .iter()
            .find(|l| l.contains(" 0.500000000000 "))
            .unwrap();
        assert!(median.trim_start().starts_with("0.500"), "{median}");
        assert!(median.contains("        500 "), "{median}");
        let last_data = lines[lines.len() - 4];
        assert!(last_data.contains(" 1.000000000000       1000"), "{text}");
        assert!(
            text.contains("#[Mean    =        0.501, StdDeviation   =        0.289]"),
            "{text}"
        );
        assert!(
            text.contains("#[Max     =        1.000, Total count    =         1000]"),
            "{text}"
        );
        assert!(text.ends_with("SubBuckets     =         2048]\n"), "{text}");
        assert_eq!(
            file_name("candidate:GET:/api/order"),
            "candidate_GET__api_order.hgrm"
        );
    }
}
