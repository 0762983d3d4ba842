//! The terminal table: verdict, criteria (criterion, threshold, measured, result), targets,
//! candidate vs primary, discrepancy groups, warnings. Plain text, no colour, so it reads the
//! same in a CI log.

use std::io::{self, Write};

use crate::model::{Report, SectionKind, Status};
use crate::render::{
    STREAM_HEADS, audit_line, class_name, flows_line, fmt_frac, fmt_lat, fmt_rate, fmt_ratio,
    fmt_shift, group_place, ids_line, orders_text, section_line, shown_sections, stream_cells,
    verdict_line,
};

/// Columns aligned by character count.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn write(&self, w: &mut dyn Write, indent: &str) -> io::Result<()> {
        let n = self.header.len();
        let mut width = vec![0; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |w: &mut dyn Write, cells: &[String]| -> io::Result<()> {
            let mut s = String::from(indent);
            for (i, c) in cells.iter().enumerate().take(n) {
                s.push_str(c);
                if i + 1 < n {
                    let pad = width[i] - c.chars().count() + 2;
                    s.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(w, "{}", s.trim_end())
        };
        line(w, &self.header)?;
        let rule: Vec<String> = width.iter().map(|&k| "-".repeat(k)).collect();
        line(w, &rule)?;
        for r in &self.rows {
            line(w, r)?;
        }
        Ok(())
    }
}

/// Writes the terminal report.
pub fn render(r: &Report, w: &mut dyn Write) -> io::Result<()> {
    writeln!(
        w,
        "shadowgate report — phase {}: {}",
        r.phase.id, r.phase.title
    )?;
    writeln!(w, "criteria: {}", r.criteria_file)?;
    for s in &r.sources {
        let limited = if s.generator_limited {
            "  [generator-limited]"
        } else {
            ""
        };
        writeln!(w, "run: {} ({}){limited}", s.dir.display(), s.kind.as_str())?;
    }
    writeln!(w)?;

    let mut t = Table::new(&["criterion", "target", "threshold", "measured", "result"]);
    for c in &r.criteria {
        t.row(vec![
            c.name.clone(),
            c.target.clone(),
            format!("{} {}", c.op, c.threshold.display),
            c.measured
                .as_ref()
                .map_or_else(|| "-".into(), |m| m.display.clone()),
            c.status.label().to_owned(),
        ]);
    }
    t.write(w, "")?;
    let notes: Vec<String> = r
        .criteria
        .iter()
        .filter(|c| c.status != Status::Pass && c.detail.is_some())
        .map(|c| format!("  {}: {}", c.name, c.detail.as_deref().unwrap_or_default()))
        .collect();
    if !notes.is_empty() {
        writeln!(w)?;
        for n in notes {
            writeln!(w, "{n}")?;
        }
    }

    if !r.targets.is_empty() {
        writeln!(w, "\ntargets")?;
        let mut t = Table::new(&[
            "target",
            "requests",
            "error rate",
            "throughput",
            "p50",
            "p99",
            "p99.9",
            "max",
            "cpu",
            "rss",
        ]);
        for s in &r.targets {
            let l = s.latency.as_ref();
            let res = s.resources.as_ref();
            t.row(vec![
                s.name.clone(),
                crate::units::fmt_number(s.requests as f64),
                fmt_frac(s.error_rate),
                fmt_rate(s.throughput),
                fmt_lat(l.map(|l| l.p50_ns)),
                fmt_lat(l.map(|l| l.p99_ns)),
                fmt_lat(l.map(|l| l.p999_ns)),
                fmt_lat(l.map(|l| l.max_ns)),
                res.and_then(|x| x.cpu_mean)
                    .map_or_else(|| "-".into(), crate::units::fmt_percent),
                res.and_then(|x| x.rss_max)
                    .map_or_else(|| "-".into(), crate::units::fmt_bytes),
            ]);
        }
        t.write(w, "  ")?;
    }

    if let Some(c) = &r.comparison {
        writeln!(
            w,
            "\n{} vs {} (ratios candidate/primary; Mann-Whitney U at alpha {})",
            c.candidate, c.primary, c.alpha
        )?;
        let mut t = Table::new(&["route", "p50", "p99", "p99.9", "throughput", "latency"]);
        for row in &c.routes {
            let route = if row.route == "*" {
                "all routes".to_owned()
            } else {
                format!("{} {}", row.method, row.route)
            };
            t.row(vec![
                route,
                fmt_ratio(row.ratio.p50),
                fmt_ratio(row.ratio.p99),
                fmt_ratio(row.ratio.p999),
                fmt_ratio(row.ratio.throughput),
                fmt_shift(row),
            ]);
        }
        t.write(w, "  ")?;
    }

    let d = &r.discrepancies;
    if d.compared || d.total > 0 {
        writeln!(
            w,
            "\ndiscrepancies: {} regression, {} noise, {} ignored ({} order-flow)",
            d.regression, d.noise, d.ignored, d.flow
        )?;
        for (section, totals) in shown_sections(d) {
            writeln!(
                w,
                "\n{}: {}",
                section.title().to_lowercase(),
                section_line(totals)
            )?;
            match section {
                SectionKind::Exchange => {}
                SectionKind::Flow => {
                    if let Some(f) = &d.flows {
                        writeln!(w, "  {}", flows_line(f))?;
                    }
                    if let Some(i) = &d.ids {
                        writeln!(w, "  {}", ids_line(i))?;
                    }
                }
                SectionKind::Stream => {
                    if !d.streams.is_empty() {
                        let mut t = Table::new(&STREAM_HEADS);
                        for s in &d.streams {
                            t.row(stream_cells(s));
                        }
                        t.write(w, "  ")?;
                    }
                }
                SectionKind::Audit => {
                    if let Some(a) = &d.audit {
                        writeln!(w, "  {}", audit_line(a))?;
                    }
                }
            }
            let limit = if section == SectionKind::Exchange {
                20
            } else {
                10
            };
            let mut shown = 0;
            for g in d.groups_in(section).take(limit) {
                shown += 1;
                writeln!(
                    w,
                    "  {:>6}  {:<10}  {} {}  {} {}",
                    g.count,
                    class_name(g.class),
                    g.method,
                    g.route,
                    g.kind,
                    group_place(g)
                )?;
                if !g.orders.is_empty() {
                    writeln!(w, "          e.g. {}", orders_text(g))?;
                }
            }
            let more = totals.groups.saturating_sub(shown);
            if more > 0 {
                writeln!(w, "  ... {more} more groups (see report.md or report.html)")?;
            }
        }
    }

    if !r.warnings.is_empty() {
        writeln!(w, "\nwarnings")?;
        for x in &r.warnings {
            writeln!(w, "  - {x}")?;
        }
    }
    writeln!(w, "\n{}", verdict_line(r))
}
