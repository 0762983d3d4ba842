//! `report.html`: one self-contained file (inline CSS and SVG, no script, no network).

use std::io::Write;

use crate::error::ReportError;
use crate::measure::Measurements;
use crate::model::Report;

/// Writes the HTML report.
pub fn render(r: &Report, m: &Measurements, w: &mut dyn Write) -> Result<(), ReportError> {
    let _ = (r, m, w);
    Ok(())
}
