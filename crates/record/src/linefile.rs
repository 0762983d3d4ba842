//! Line-oriented files: an appending writer with a flush policy, and readers that apply the
//! torn-last-line rule and name the file and line of anything corrupt.

use std::fs::{self, File};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::RecordError;

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves the data
/// consistent (counters and buffers), so a panic elsewhere must not make records unwritable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An append-only text file written a line at a time.
///
/// Lines go through a `BufWriter` (one `write` system call per flush, not per field). The file
/// is flushed after a line when `flush_every` has passed since the last flush (zero: after every
/// line), on [`LineFile::flush`] and on drop, so a killed process loses at most the lines of one
/// flush period, and at worst leaves a torn last line that readers skip.
#[derive(Debug)]
pub(crate) struct LineFile {
    path: PathBuf,
    out: BufWriter<File>,
    flush_every: Duration,
    last_flush: Instant,
}

impl LineFile {
    /// Creates (truncates) `path`.
    pub(crate) fn create(path: PathBuf, flush_every: Duration) -> Result<LineFile, RecordError> {
        let f = File::create(&path).map_err(|e| RecordError::io(&path, "creating", e))?;
        Ok(LineFile {
            path,
            out: BufWriter::with_capacity(64 * 1024, f),
            flush_every,
            last_flush: Instant::now(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn set_flush_every(&mut self, every: Duration) {
        self.flush_every = every;
    }

    /// Appends `line`, which must end with `\n`, then flushes if the flush period has passed.
    pub(crate) fn append(&mut self, line: &[u8]) -> Result<(), RecordError> {
        self.out
            .write_all(line)
            .map_err(|e| RecordError::io(&self.path, "writing", e))?;
        if self.flush_every.is_zero() || self.last_flush.elapsed() >= self.flush_every {
            self.flush()?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<(), RecordError> {
        self.last_flush = Instant::now();
        self.out
            .flush()
            .map_err(|e| RecordError::io(&self.path, "writing", e))
    }
}

impl Drop for LineFile {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "Could not flush a run file on close.");
        }
    }
}

/// Reads a file that may be absent: `Ok(None)` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, RecordError> {
    match fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RecordError::io(path, "reading", e)),
    }
}

/// Splits `data` into the part that ends with a line end and the unterminated rest (a possible
/// torn line), with the 1-based line number the rest starts on.
pub(crate) fn split_tail(data: &[u8]) -> (&[u8], Option<(usize, &[u8])>) {
    match data.iter().rposition(|&b| b == b'\n') {
        Some(i) if i + 1 == data.len() => (data, None),
        Some(i) => {
            let line = data[..=i].iter().filter(|&&b| b == b'\n').count() + 1;
            (&data[..=i], Some((line, &data[i + 1..])))
        }
        None if data.is_empty() => (data, None),
        None => (&data[..0], Some((1, data))),
    }
}

/// Records the warning for a skipped torn last line.
pub(crate) fn torn_warning(path: &Path, line: usize, text: &[u8], warnings: &mut Vec<String>) {
    let preview: String = String::from_utf8_lossy(text).chars().take(60).collect();
    let msg = format!(
        "{} line {line}: skipped a torn last line (no line end; the writer was probably killed \
         mid-write): {preview:?}",
        path.display()
    );
    tracing::warn!(file = %path.display(), line, "Skipped a torn last line.");
    warnings.push(msg);
}

/// Complete lines of `data` with their 1-based numbers, line ends (`\n`, `\r\n`) removed.
pub(crate) fn numbered_lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    data.split_inclusive(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| {
            let l = l.strip_suffix(b"\n").unwrap_or(l);
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            (i + 1, l)
        })
}

/// Reads an NDJSON file: one `T` per non-blank line. A torn last line that does not parse is
/// skipped with a warning; any other bad line is [`RecordError::Corrupt`].
pub(crate) fn read_ndjson<T: DeserializeOwned>(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<T>, RecordError> {
    let Some(data) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    let (complete, tail) = split_tail(&data);
    let mut out = Vec::new();
    for (line, text) in numbered_lines(complete) {
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v = serde_json::from_slice(text).map_err(|e| {
            RecordError::corrupt(
                path,
                line,
                format!("{e} — the file was edited or written by another tool"),
            )
        })?;
        out.push(v);
    }
    if let Some((line, text)) = tail
        && !text.iter().all(u8::is_ascii_whitespace)
    {
        match serde_json::from_slice(text) {
            Ok(v) => out.push(v),
            Err(_) => torn_warning(path, line, text, warnings),
        }
    }
    Ok(out)
}

/// Reads a CSV file with a header row naming at least `columns`; rows are deserialized by
/// column name, so extra columns (from a newer writer) are ignored.
///
/// Torn-line rule for CSV: the last record is torn when the file does not end with a line end,
/// or when it has an odd number of '"' (cut inside a quoted field that holds a line break). A torn
/// record is *always* skipped with a warning, even if it parses, because a row cut inside its
/// last number (`...,123` cut to `...,12`) still parses, to a wrong value.
pub(crate) fn read_csv<T: DeserializeOwned>(
    path: &Path,
    columns: &[&str],
    check: impl Fn(&T) -> Result<(), String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<T>, RecordError> {
    let Some(data) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    let line_of = |r: &csv::ByteRecord| r.position().map_or(0, |p| p.line() as usize);
    // Byte records first: a torn record may end inside a UTF-8 sequence, and must be found
    // before anything is validated.
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&data[..]);
    let mut records = Vec::new();
    loop {
        let mut r = csv::ByteRecord::new();
        match rdr.read_byte_record(&mut r) {
            Ok(true) => records.push(r),
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                return Err(csv_corrupt(path, line, &e));
            }
        }
    }
    if let Some(last) = records.last() {
        let start = last
            .position()
            .map_or(0, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX))
            .min(data.len());
        let tail = &data[start..];
        let open_quote = tail.iter().filter(|&&b| b == b'"').count() % 2 == 1;
        if !data.ends_with(b"\n") || open_quote {
            torn_warning(path, line_of(last), tail, warnings);
            records.pop();
        }
    }
    let mut records = records.into_iter();
    let Some(header) = records.next() else {
        return Ok(Vec::new());
    };
    let headers = csv::StringRecord::from_byte_record(header).map_err(|e| {
        RecordError::corrupt(path, 1, format!("the header is not valid UTF-8: {e}"))
    })?;
    let missing: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| !headers.iter().any(|h| h == *c))
        .collect();
    if !missing.is_empty() {
        return Err(RecordError::corrupt(
            path,
            1,
            format!(
                "the header lacks column(s) {} (expected {}) — the file was edited or written \
                 by another tool",
                missing.join(", "),
                columns.join(",")
            ),
        ));
    }
    let mut out = Vec::new();
    for record in records {
        let line = line_of(&record);
        if record.len() != headers.len() {
            return Err(RecordError::corrupt(
                path,
                line,
                format!(
                    "expected {} columns, found {} — the file was edited or written by another \
                     tool",
                    headers.len(),
                    record.len()
                ),
            ));
        }
        let record = csv::StringRecord::from_byte_record(record)
            .map_err(|e| RecordError::corrupt(path, line, format!("invalid UTF-8: {e}")))?;
        let row: T = record.deserialize(Some(&headers)).map_err(|e| {
            RecordError::corrupt(
                path,
                line,
                format!(
                    "{} — the file was edited or written by another tool",
                    csv_reason(&e, Some(&headers))
                ),
            )
        })?;
        check(&row).map_err(|reason| RecordError::corrupt(path, line, reason))?;
        out.push(row);
    }
    Ok(out)
}

fn csv_corrupt(path: &Path, line: usize, e: &csv::Error) -> RecordError {
    RecordError::corrupt(path, line.max(1), csv_reason(e, None))
}

/// The csv error text without its own position prefix (we print the line ourselves).
fn csv_reason(e: &csv::Error, headers: Option<&csv::StringRecord>) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(i) => {
                let name = usize::try_from(i)
                    .ok()
                    .and_then(|i| headers.and_then(|h| h.get(i)))
                    .unwrap_or("?");
                format!("column {} ({name}): {}", i + 1, err.kind())
            }
            None => err.kind().to_string(),
        },
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8: {err}"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_tail_cases() {
        assert_eq!(split_tail(b""), (&b""[..], None));
        assert_eq!(split_tail(b"a\nb\n"), (&b"a\nb\n"[..], None));
        assert_eq!(
            split_tail(b"a\nb\nc"),
            (&b"a\nb\n"[..], Some((3, &b"c"[..])))
        );
        assert_eq!(split_tail(b"abc"), (&b""[..], Some((1, &b"abc"[..]))));
    }

    #[test]
    fn numbered_lines_strip_crlf() {
        let lines: Vec<_> = numbered_lines(b"a\r\nb\n\nc\n").collect();
        assert_eq!(
            lines,
            vec![
                (1, &b"a"[..]),
                (2, &b"b"[..]),
                (3, &b""[..]),
                (4, &b"c"[..])
            ]
        );
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Row {
        a: String,
        b: u64,
    }

    fn read_rows(text: &[u8]) -> (Result<Vec<Row>, RecordError>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        fs::write(&path, text).unwrap();
        let mut warnings = Vec::new();
        let rows = read_csv(&path, &["a", "b"], |_: &Row| Ok(()), &mut warnings);
        (rows, warnings)
    }

    #[test]
    fn csv_torn_inside_a_quoted_line_break_is_skipped() {
        let row = |a: &str, b| Row { a: a.into(), b };
        let (rows, w) = read_rows(b"a,b\nx,1\n\"multi\nline\",2\n");
        assert_eq!(rows.unwrap(), vec![row("x", 1), row("multi\nline", 2)]);
        assert!(w.is_empty());
        // Cut right after the quoted line break: the file ends with a line end, yet is torn.
        let (rows, w) = read_rows(b"a,b\nx,1\n\"multi\n");
        assert_eq!(rows.unwrap(), vec![row("x", 1)]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("line 3"), "{w:?}");
        // Cut inside a multi-byte character.
        let (rows, w) = read_rows("a,b\nx,1\nü".as_bytes().split_last().unwrap().1);
        assert_eq!(rows.unwrap(), vec![row("x", 1)]);
        assert_eq!(w.len(), 1);
        // Only a torn header.
        let (rows, w) = read_rows(b"a,");
        assert!(rows.unwrap().is_empty());
        assert_eq!(w.len(), 1);
        // Extra columns are fine; a short row in the middle is not.
        let (rows, _) = read_rows(b"a,b,c\nx,1,zz\n");
        assert_eq!(rows.unwrap(), vec![row("x", 1)]);
        let (rows, _) = read_rows(b"a,b\nx\ny,2\n");
        let e = rows.unwrap_err().to_string();
        assert!(e.ends_with("x.csv line 2: expected 2 columns, found 1 — the file was edited or written by another tool"), "{e}");
    }

    #[test]
    fn line_file_flushes_every_line_by_default_and_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ndjson");
        let mut f = LineFile::create(path.clone(), Duration::ZERO).unwrap();
        f.append(b"{}\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");
        f.set_flush_every(Duration::from_secs(3600));
        f.append(b"[]\n").unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            b"{}\n",
            "buffered until the period passes"
        );
        drop(f);
        assert_eq!(fs::read(&path).unwrap(), b"{}\n[]\n");
    }
}
