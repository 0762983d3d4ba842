//! Quantities in threshold expressions and in reports: parsing (`150us`, `1ms`, `200MB`,
//! `0.1%`, `1/7`, `10000`) and formatting.
//!
//! Units, case-sensitive as people write them:
//! - durations: `ns`, `us` (or `µs`), `ms`, `s`, `m`/`min`, `h`;
//! - sizes: `B`, `KB`, `MB`, `GB` (powers of 1000, as the rollout plan and `ps`/`top` users
//!   mostly mean them) and `KiB`, `MiB`, `GiB` (powers of 1024); a size may end in `/h`
//!   (`50MB/h`) where the metric is a growth per hour;
//! - `%` (a hundredth), `x` (times, for ratios), `/s` or `rps` (requests per second).

use std::fmt;

/// A unit written after a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Nanoseconds.
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
    /// Minutes.
    Min,
    /// Hours.
    H,
    /// Bytes.
    B,
    /// 1000 bytes.
    Kb,
    /// 1000² bytes.
    Mb,
    /// 1000³ bytes.
    Gb,
    /// 1024 bytes.
    Kib,
    /// 1024² bytes.
    Mib,
    /// 1024³ bytes.
    Gib,
    /// A size per hour (`50MB/h`): the factor is the size's.
    BytesPerHour(u64),
    /// A hundredth.
    Percent,
    /// Times (`10x`).
    Times,
    /// Per second (`/s`, `rps`).
    PerSecond,
}

/// What a metric measures, which decides the units its threshold may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dimension {
    /// A latency; base unit nanoseconds; a unit is required.
    Duration,
    /// A size; base unit bytes; a unit is required.
    Bytes,
    /// Growth of a size per hour; base unit bytes per hour; a size unit is required.
    BytesPerHour,
    /// A share of requests (0..1); a plain number is the fraction, `%` a hundredth.
    Fraction,
    /// CPU use in percent of one CPU; a plain number and `%` both mean percent points.
    Percent,
    /// Requests per second; plain number, `/s` or `rps`.
    Rate,
    /// A count; plain whole number.
    Count,
    /// A ratio between two targets; plain number, fraction `1/7`, or `10x`.
    Ratio,
}

impl Dimension {
    /// How to write a threshold of this dimension, for error messages.
    pub fn hint(self) -> &'static str {
        match self {
            Dimension::Duration => "a duration with a unit, e.g. 150us, 1ms, 5ms, 2s",
            Dimension::Bytes => "a size with a unit, e.g. 200MB, 512MiB, 1GB",
            Dimension::BytesPerHour => "a size per hour, e.g. 50MB or 50MB/h",
            Dimension::Fraction => "a fraction or a percentage, e.g. 0.001 or 0.1%",
            Dimension::Percent => "a percentage, e.g. 30%",
            Dimension::Rate => "requests per second, e.g. 10000 or 10000/s",
            Dimension::Count => "a whole number, e.g. 0",
            Dimension::Ratio => "a ratio, e.g. 1/7, 0.5 or 10x",
        }
    }
}

/// A number with an optional unit, as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Literal {
    /// The number (a fraction `a/b` is already divided).
    pub number: f64,
    /// The unit, if one was written.
    pub unit: Option<Unit>,
    /// Written as `a/b`.
    pub is_fraction: bool,
}

/// Parses a literal: `150us`, `1.5ms`, `0.1%`, `200MB`, `50MB/h`, `1/7`, `10000`, `10x`,
/// `1e-3`. Whitespace between number and unit is allowed (`150 us`).
pub fn parse_literal(text: &str) -> Result<Literal, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty value; write a number, e.g. 150us or 0.001".to_owned());
    }
    if let Some((a, b)) = t.split_once('/')
        && !b.trim().starts_with(|c: char| c.is_ascii_alphabetic())
    {
        let num = parse_number(a.trim())?;
        let den = parse_number(b.trim())?;
        if den == 0.0 {
            return Err(format!("`{t}` divides by zero"));
        }
        return Ok(Literal {
            number: num / den,
            unit: None,
            is_fraction: true,
        });
    }
    let split = number_prefix_len(t);
    if split == 0 {
        return Err(format!(
            "`{t}` is not a number; write e.g. 150us, 1ms, 0.1%, 200MB or 10000"
        ));
    }
    let (num, unit) = t.split_at(split);
    let number = parse_number(num)?;
    let unit = unit.trim();
    let unit = if unit.is_empty() {
        None
    } else {
        Some(parse_unit(unit)?)
    };
    Ok(Literal {
        number,
        unit,
        is_fraction: false,
    })
}

/// Length of the leading number (digits, sign, '.', exponent).
fn number_prefix_len(t: &str) -> usize {
    let b = t.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits_start = i;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'_') {
        i += 1;
    }
    if i == digits_start {
        return 0;
    }
    // An exponent only if digits follow (so `1e` is not eaten, and `5ms` stays a unit).
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'-' || b[j] == b'+') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    i
}

fn parse_number(s: &str) -> Result<f64, String> {
    let cleaned: String = s.chars().filter(|&c| c != '_').collect();
    match cleaned.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a number")),
    }
}

fn parse_unit(u: &str) -> Result<Unit, String> {
    if let Some(size) = u.strip_suffix("/h").or_else(|| u.strip_suffix("/hour")) {
        let base = parse_unit(size.trim())?;
        return match size_factor(base) {
            Some(f) => Ok(Unit::BytesPerHour(f)),
            None => Err(format!("`{u}`: only a size can be per hour (e.g. 50MB/h)")),
        };
    }
    Ok(match u {
        "ns" => Unit::Ns,
        "us" | "µs" | "μs" => Unit::Us,
        "ms" => Unit::Ms,
        "s" | "sec" => Unit::S,
        "m" | "min" => Unit::Min,
        "h" => Unit::H,
        "B" => Unit::B,
        "KB" | "kB" => Unit::Kb,
        "MB" => Unit::Mb,
        "GB" => Unit::Gb,
        "KiB" => Unit::Kib,
        "MiB" => Unit::Mib,
        "GiB" => Unit::Gib,
        "%" => Unit::Percent,
        "x" | "×" => Unit::Times,
        "/s" | "rps" | "req/s" => Unit::PerSecond,
        other => {
            return Err(format!(
                "unknown unit `{other}`; use ns, us, ms, s (durations), B, KB, MB, GB, KiB, \
                 MiB, GiB (sizes), % (percent), x (times) or /s (per second)"
            ));
        }
    })
}

fn size_factor(u: Unit) -> Option<u64> {
    Some(match u {
        Unit::B => 1,
        Unit::Kb => 1_000,
        Unit::Mb => 1_000_000,
        Unit::Gb => 1_000_000_000,
        Unit::Kib => 1 << 10,
        Unit::Mib => 1 << 20,
        Unit::Gib => 1 << 30,
        _ => return None,
    })
}

fn duration_factor(u: Unit) -> Option<f64> {
    Some(match u {
        Unit::Ns => 1.0,
        Unit::Us => 1e3,
        Unit::Ms => 1e6,
        Unit::S => 1e9,
        Unit::Min => 60e9,
        Unit::H => 3600e9,
        _ => return None,
    })
}

/// Converts a literal to the base unit of `dim` (ns, bytes, bytes/hour, fraction, percent
/// points, req/s, count, ratio), or says what to write instead.
pub fn to_base(lit: &Literal, dim: Dimension, text: &str) -> Result<f64, String> {
    let wrong = || format!("`{text}` does not fit: this metric takes {}", dim.hint());
    let v = lit.number;
    if lit.is_fraction && !matches!(dim, Dimension::Ratio | Dimension::Fraction) {
        return Err(wrong());
    }
    match dim {
        Dimension::Duration => match lit.unit {
            None => Err(format!(
                "`{text}` has no unit; latency needs one: write {text}us, {text}ms or {text}s"
            )),
            Some(u) => duration_factor(u).map(|f| v * f).ok_or_else(wrong),
        },
        Dimension::Bytes => match lit.unit {
            None => Err(format!(
                "`{text}` has no unit; a size needs one: write {text}MB, {text}MiB or {text}B"
            )),
            Some(u) => size_factor(u).map(|f| v * f as f64).ok_or_else(wrong),
        },
        Dimension::BytesPerHour => match lit.unit {
            None => Err(format!(
                "`{text}` has no unit; a growth per hour needs a size: write {text}MB or \
                 {text}MB/h"
            )),
            Some(Unit::BytesPerHour(f)) => Ok(v * f as f64),
            Some(u) => size_factor(u).map(|f| v * f as f64).ok_or_else(wrong),
        },
        Dimension::Fraction => match lit.unit {
            None => Ok(v),
            Some(Unit::Percent) => Ok(v / 100.0),
            Some(_) => Err(wrong()),
        },
        Dimension::Percent => match lit.unit {
            None | Some(Unit::Percent) => Ok(v),
            Some(_) => Err(wrong()),
        },
        Dimension::Rate => match lit.unit {
            None | Some(Unit::PerSecond) => Ok(v),
            Some(_) => Err(wrong()),
        },
        Dimension::Count => match lit.unit {
            None if v >= 0.0 && v.fract() == 0.0 => Ok(v),
            _ => Err(wrong()),
        },
        Dimension::Ratio => match lit.unit {
            None | Some(Unit::Times) => Ok(v),
            Some(Unit::Percent) => Ok(v / 100.0),
            Some(_) => Err(wrong()),
        },
    }
}

/// A value in the base unit of its dimension, formatted for people.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Display {
    /// The value.
    pub value: f64,
    /// Its dimension.
    pub dim: Dimension,
}

impl fmt::Display for Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        match self.dim {
            Dimension::Duration => f.write_str(&fmt_ns(v)),
            Dimension::Bytes => f.write_str(&fmt_bytes(v)),
            Dimension::BytesPerHour => write!(f, "{}/h", fmt_bytes(v)),
            Dimension::Fraction => f.write_str(&fmt_percent(v * 100.0)),
            Dimension::Percent => f.write_str(&fmt_percent(v)),
            Dimension::Rate => write!(f, "{} req/s", fmt_number(v)),
            Dimension::Count => f.write_str(&fmt_number(v)),
            Dimension::Ratio => write!(f, "{}x", sig3(v)),
        }
    }
}

/// `v` with three significant digits, trailing zeros trimmed (`0.143`, `7`, `12.5`, `1230`).
pub fn sig3(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "n/a".into()
        } else {
            "∞".into()
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    let decimals = (2 - mag).clamp(0, 9) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A latency in ns as `812 ns`, `150 µs`, `1.23 ms`, `4.5 s`.
pub fn fmt_ns(ns: f64) -> String {
    let a = ns.abs();
    if a < 1e3 {
        format!("{} ns", sig3(ns))
    } else if a < 1e6 {
        format!("{} µs", sig3(ns / 1e3))
    } else if a < 1e9 {
        format!("{} ms", sig3(ns / 1e6))
    } else {
        format!("{} s", sig3(ns / 1e9))
    }
}

/// A size as `812 B`, `1.5 KB`, `200 MB`, `1.2 GB` (powers of 1000).
pub fn fmt_bytes(b: f64) -> String {
    let a = b.abs();
    if a < 1e3 {
        format!("{} B", sig3(b))
    } else if a < 1e6 {
        format!("{} KB", sig3(b / 1e3))
    } else if a < 1e9 {
        format!("{} MB", sig3(b / 1e6))
    } else {
        format!("{} GB", sig3(b / 1e9))
    }
}

/// A memory growth per hour with the time its samples span: `15.6 GB/h over 25s`. A slope
/// over a short run is mostly start-up (buffers and caches filling), so the span is shown
/// next to it rather than left for the reader to guess.
pub fn fmt_growth(per_hour: f64, span_s: Option<f64>) -> String {
    match span_s {
        Some(s) if s.is_finite() && s >= 0.0 => format!(
            "{}/h over {}",
            fmt_bytes(per_hour),
            humantime::format_duration(std::time::Duration::from_secs(s.round() as u64))
        ),
        _ => format!("{}/h", fmt_bytes(per_hour)),
    }
}

/// Percent points as `0.1%`, `12.5%`.
pub fn fmt_percent(points: f64) -> String {
    format!("{}%", sig3(points))
}

/// A number with thousands separators when whole (`10,000`), else three significant digits.
pub fn fmt_number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        let n = v.abs() as u64;
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if v.is_finite() && v.abs() >= 1000.0 {
        fmt_number(v.round())
    } else {
        sig3(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growth_shows_its_span() {
        assert_eq!(fmt_growth(15.6e9, Some(25.2)), "15.6 GB/h over 25s");
        assert_eq!(fmt_growth(-2e6, Some(3_720.0)), "-2 MB/h over 1h 2m");
        assert_eq!(fmt_growth(40e6, None), "40 MB/h");
    }

    fn base(text: &str, dim: Dimension) -> Result<f64, String> {
        to_base(&parse_literal(text)?, dim, text)
    }

    #[test]
    fn durations() {
        assert_eq!(base("150us", Dimension::Duration).unwrap(), 150_000.0);
        assert_eq!(base("150µs", Dimension::Duration).unwrap(), 150_000.0);
        assert_eq!(base("150 us", Dimension::Duration).unwrap(), 150_000.0);
        assert_eq!(base("1ms", Dimension::Duration).unwrap(), 1_000_000.0);
        assert_eq!(base("1.5ms", Dimension::Duration).unwrap(), 1_500_000.0);
        assert_eq!(base("5ms", Dimension::Duration).unwrap(), 5_000_000.0);
        assert_eq!(base("2s", Dimension::Duration).unwrap(), 2e9);
        assert_eq!(base("800ns", Dimension::Duration).unwrap(), 800.0);
        assert_eq!(base("1m", Dimension::Duration).unwrap(), 60e9);
        let e = base("150", Dimension::Duration).unwrap_err();
        assert!(e.contains("150us"), "{e}");
        let e = base("150MB", Dimension::Duration).unwrap_err();
        assert!(e.contains("duration"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(base("200MB", Dimension::Bytes).unwrap(), 200e6);
        assert_eq!(base("1GB", Dimension::Bytes).unwrap(), 1e9);
        assert_eq!(base("1KB", Dimension::Bytes).unwrap(), 1e3);
        assert_eq!(base("512MiB", Dimension::Bytes).unwrap(), 512.0 * 1048576.0);
        assert_eq!(base("1KiB", Dimension::Bytes).unwrap(), 1024.0);
        assert_eq!(base("1GiB", Dimension::Bytes).unwrap(), 1073741824.0);
        assert_eq!(base("10B", Dimension::Bytes).unwrap(), 10.0);
        assert!(base("200", Dimension::Bytes).unwrap_err().contains("200MB"));
        assert!(base("200ms", Dimension::Bytes).is_err());
        assert_eq!(base("50MB", Dimension::BytesPerHour).unwrap(), 50e6);
        assert_eq!(base("50MB/h", Dimension::BytesPerHour).unwrap(), 50e6);
        assert!(base("50MB/h", Dimension::Bytes).is_err());
        assert!(parse_literal("5ms/h").is_err());
    }

    #[test]
    fn percent_fraction_rate_count_ratio() {
        assert_eq!(base("0.1%", Dimension::Fraction).unwrap(), 0.001);
        assert_eq!(base("0.001", Dimension::Fraction).unwrap(), 0.001);
        assert_eq!(base("1e-3", Dimension::Fraction).unwrap(), 0.001);
        assert_eq!(base("30%", Dimension::Percent).unwrap(), 30.0);
        assert_eq!(base("30", Dimension::Percent).unwrap(), 30.0);
        assert!(base("30ms", Dimension::Percent).is_err());
        assert_eq!(base("10000", Dimension::Rate).unwrap(), 10_000.0);
        assert_eq!(base("10_000/s", Dimension::Rate).unwrap(), 10_000.0);
        assert_eq!(base("10000rps", Dimension::Rate).unwrap(), 10_000.0);
        assert!(base("10000ms", Dimension::Rate).is_err());
        assert_eq!(base("0", Dimension::Count).unwrap(), 0.0);
        assert!(base("0.5", Dimension::Count).is_err());
        assert!(base("1/2", Dimension::Count).is_err());
        assert!((base("1/7", Dimension::Ratio).unwrap() - 1.0 / 7.0).abs() < 1e-12);
        assert_eq!(base("10x", Dimension::Ratio).unwrap(), 10.0);
        assert_eq!(base("10", Dimension::Ratio).unwrap(), 10.0);
        assert_eq!(base("50%", Dimension::Ratio).unwrap(), 0.5);
        assert!(parse_literal("1/0").unwrap_err().contains("zero"));
    }

    #[test]
    fn bad_literals() {
        assert!(parse_literal("").is_err());
        assert!(parse_literal("fast").unwrap_err().contains("not a number"));
        assert!(
            parse_literal("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_literal("1.2.3ms").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_ns(812.0), "812 ns");
        assert_eq!(fmt_ns(150_000.0), "150 µs");
        assert_eq!(fmt_ns(1_234_567.0), "1.23 ms");
        assert_eq!(fmt_ns(4.5e9), "4.5 s");
        assert_eq!(fmt_bytes(200e6), "200 MB");
        assert_eq!(fmt_percent(0.1), "0.1%");
        assert_eq!(fmt_number(10_000.0), "10,000");
        assert_eq!(fmt_number(9_876.4), "9,876");
        assert_eq!(fmt_number(0.25), "0.25");
        assert_eq!(sig3(1.0 / 7.0), "0.143");
        assert_eq!(
            Display {
                value: 0.001,
                dim: Dimension::Fraction
            }
            .to_string(),
            "0.1%"
        );
        assert_eq!(
            Display {
                value: 7.0,
                dim: Dimension::Ratio
            }
            .to_string(),
            "7x"
        );
    }
}
