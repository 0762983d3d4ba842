//! `report.json`: the [`Report`] as documented in [`crate::model`] (`schema_version` 1).

use std::io::{self, Write};

use crate::model::Report;

/// Writes the report as pretty JSON with a final newline.
pub fn render(r: &Report, w: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, r).map_err(io::Error::other)?;
    writeln!(w)
}
