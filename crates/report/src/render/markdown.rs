//! `report.md`: the verdict and tables for a pull request or a wiki page (GitHub-flavoured:
//! tables and `<details>` for discrepancy groups).

use std::io::{self, Write};

use crate::model::{Report, SectionKind, Status};
use crate::render::{
    STREAM_HEADS, audit_line, class_name, flows_line, fmt_frac, fmt_lat, fmt_rate, fmt_ratio,
    fmt_shift, group_place, ids_line, orders_text, section_line, shown_sections, stream_cells,
    verdict_line,
};

/// Escapes text for a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Writes the Markdown report.
pub fn render(r: &Report, w: &mut dyn Write) -> io::Result<()> {
    writeln!(
        w,
        "# shadowgate report — phase {}: {}\n",
        r.phase.id,
        cell(&r.phase.title)
    )?;
    let icon = match r.verdict {
        crate::model::Verdict::Pass => "✅",
        crate::model::Verdict::Fail => "❌",
    };
    writeln!(w, "**{icon} {}**\n", verdict_line(r))?;
    writeln!(w, "Criteria: `{}`\n", r.criteria_file)?;
    writeln!(w, "| run | kind | started | ended | note |")?;
    writeln!(w, "|---|---|---|---|---|")?;
    for s in &r.sources {
        let start = humantime::format_rfc3339_millis(s.started_at).to_string();
        let end = s.ended_at.map_or_else(
            || "unfinished".to_owned(),
            |e| humantime::format_rfc3339_millis(e).to_string(),
        );
        let note = if s.generator_limited {
            "generator-limited"
        } else {
            ""
        };
        writeln!(
            w,
            "| `{}` | {} | {start} | {end} | {note} |",
            s.dir.display(),
            s.kind.as_str()
        )?;
    }

    writeln!(w, "\n## Criteria\n")?;
    writeln!(w, "| criterion | target | threshold | measured | result |")?;
    writeln!(w, "|---|---|---|---|---|")?;
    for c in &r.criteria {
        let result = match c.status {
            Status::Pass => "✅ pass".to_owned(),
            Status::Fail => "❌ fail".to_owned(),
            Status::NoData => "❌ no data".to_owned(),
            Status::Skipped => "➖ skipped (no data)".to_owned(),
            Status::GeneratorLimited => "⚠️ generator-limited".to_owned(),
        };
        let result = match (&c.detail, c.status) {
            (Some(d), s) if s != Status::Pass => format!("{result}: {}", cell(d)),
            _ => result,
        };
        writeln!(
            w,
            "| {} | {} | {} {} | {} | {} |",
            cell(&c.name),
            cell(&c.target),
            c.op,
            cell(&c.threshold.display),
            c.measured
                .as_ref()
                .map_or_else(|| "-".into(), |m| cell(&m.display)),
            result
        )?;
    }

    if !r.targets.is_empty() {
        writeln!(w, "\n## Targets\n")?;
        writeln!(
            w,
            "| target | requests | error rate | throughput | P50 | P99 | P99.9 | max | CPU (mean) | RSS (peak) | RSS growth |"
        )?;
        writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for s in &r.targets {
            let l = s.latency.as_ref();
            let res = s.resources.as_ref();
            let limited = if s.generator_limited {
                " ⚠️ generator-limited"
            } else {
                ""
            };
            writeln!(
                w,
                "| {}{limited} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&s.name),
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
                res.and_then(|x| x.rss_growth_per_hour.map(|g| (g, x.rss_span_s)))
                    .map_or_else(|| "-".into(), |(g, span)| crate::units::fmt_growth(g, span)),
            )?;
        }
    }

    if let Some(c) = &r.comparison {
        writeln!(w, "\n## {} vs {}\n", cell(&c.candidate), cell(&c.primary))?;
        writeln!(
            w,
            "Ratios are candidate ÷ primary. The latency verdict is a two-sided Mann-Whitney U \
             test on the two histograms at alpha {}; P(c>p) is the chance a candidate request \
             is slower than a primary one (0.5 = same).\n",
            c.alpha
        )?;
        writeln!(
            w,
            "| route | P50 c / p | P99 c / p | P99.9 c / p | throughput c / p | error rate c / p | latency |"
        )?;
        writeln!(w, "|---|---|---|---|---|---|---|")?;
        for row in &c.routes {
            let route = if row.route == "*" {
                "**all routes**".to_owned()
            } else {
                format!("`{} {}`", row.method, cell(&row.route))
            };
            let (a, b) = (&row.candidate, &row.primary);
            let lat = |s: &crate::model::Side, f: fn(&crate::model::Latency) -> u64| {
                fmt_lat(s.latency.as_ref().map(f))
            };
            writeln!(
                w,
                "| {route} | {} / {} ({}) | {} / {} ({}) | {} / {} ({}) | {} / {} ({}) | {} / {} | {} |",
                lat(a, |l| l.p50_ns),
                lat(b, |l| l.p50_ns),
                fmt_ratio(row.ratio.p50),
                lat(a, |l| l.p99_ns),
                lat(b, |l| l.p99_ns),
                fmt_ratio(row.ratio.p99),
                lat(a, |l| l.p999_ns),
                lat(b, |l| l.p999_ns),
                fmt_ratio(row.ratio.p999),
                fmt_rate(a.throughput),
                fmt_rate(b.throughput),
                fmt_ratio(row.ratio.throughput),
                fmt_frac(a.error_rate),
                fmt_frac(b.error_rate),
                fmt_shift(row),
            )?;
        }
    }

    let d = &r.discrepancies;
    if d.compared || d.total > 0 {
        writeln!(w, "\n## Discrepancies\n")?;
        writeln!(
            w,
            "{} regression, {} noise, {} ignored ({} order-flow), in {} groups.\n",
            d.regression,
            d.noise,
            d.ignored,
            d.flow,
            d.groups.len()
        )?;
        let shown = shown_sections(d);
        writeln!(
            w,
            "| section | lines | regression | noise | ignored | groups |"
        )?;
        writeln!(w, "|---|---:|---:|---:|---:|---:|")?;
        for (_, t) in &shown {
            writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} |",
                t.title, t.total, t.regression, t.noise, t.ignored, t.groups
            )?;
        }
        for (section, t) in shown {
            writeln!(w, "\n### {}\n", section.title())?;
            writeln!(w, "{}.\n", section_line(t))?;
            match section {
                SectionKind::Exchange => {}
                SectionKind::Flow => {
                    if let Some(f) = &d.flows {
                        writeln!(w, "- {}", flows_line(f))?;
                    }
                    if let Some(i) = &d.ids {
                        writeln!(w, "- {}", ids_line(i))?;
                    }
                    if d.flows.is_some() || d.ids.is_some() {
                        writeln!(w)?;
                    }
                }
                SectionKind::Stream => {
                    if !d.streams.is_empty() {
                        writeln!(w, "| {} |", STREAM_HEADS.join(" | "))?;
                        writeln!(w, "|---{}|", "|---:".repeat(STREAM_HEADS.len() - 1))?;
                        for s in &d.streams {
                            writeln!(w, "| {} |", stream_cells(s).join(" | "))?;
                        }
                        writeln!(w)?;
                    }
                }
                SectionKind::Audit => {
                    if let Some(a) = &d.audit {
                        writeln!(w, "- {}\n", audit_line(a))?;
                    }
                }
            }
            for g in d.groups_in(section) {
                write_group(w, g)?;
            }
        }
    }

    if !r.warnings.is_empty() {
        writeln!(w, "\n## Warnings\n")?;
        for x in &r.warnings {
            writeln!(w, "- {}", x.replace('\n', " "))?;
        }
    }
    writeln!(
        w,
        "\n<sub>shadowgate {} · report schema {}</sub>",
        r.tool_version, r.schema_version
    )
}

fn write_group(w: &mut dyn Write, g: &crate::model::Group) -> io::Result<()> {
    writeln!(
        w,
        "<details><summary>{} × <b>{}</b> <code>{} {}</code> {} <code>{}</code></summary>\n",
        g.count,
        class_name(g.class),
        html_escape(&g.method),
        html_escape(&g.route),
        html_escape(&g.kind),
        html_escape(&group_place(g))
    )?;
    if !g.orders.is_empty() {
        writeln!(
            w,
            "Orders (primary ↔ candidate): {}\n",
            html_escape(&orders_text(g))
        )?;
    }
    writeln!(w, "| time | flow | primary | candidate |")?;
    writeln!(w, "|---|---|---|---|")?;
    for s in &g.samples {
        writeln!(
            w,
            "| {} | {} | `{}` | `{}` |",
            s.ts,
            s.flow_id.as_deref().unwrap_or("-"),
            cell(&s.primary.to_string()).replace('`', "'"),
            cell(&s.candidate.to_string()).replace('`', "'"),
        )?;
    }
    writeln!(w, "\n</details>\n")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
