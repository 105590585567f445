//! Small text helpers shared by every reader of outside files.

use std::borrow::Cow;

/// Windows line ends (`\r\n`) turned into `\n`.
///
/// Why: the `csv` crate numbers lines one too low in CRLF files (the first record after the
/// header is reported as line 1), and Excel, which writes most registry and station files an
/// office has, writes CRLF. Every CSV reader goes through this, so that "line N" in an error
/// message is the line the officer sees in an editor.
pub fn lf(text: &str) -> Cow<'_, str> {
    if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// A cell a spreadsheet will not run as a formula.
///
/// Why: the CSV files stormbell writes (the board, the after-action report, FWI tables) carry
/// what outsiders typed — a village's name in a registry file, words in an SMS reply — and
/// Excel or WPS run a cell that begins with `=`, `+`, `-` or `@` (or a tab or carriage return
/// before one) as a formula (CSV injection: `=HYPERLINK(…)`, `=cmd|…`). Such a cell gets a
/// leading `'`, which spreadsheets show as text. A plain number (`-3.5`) is left as it is.
pub fn csv_cell(s: &str) -> Cow<'_, str> {
    let risky = s.starts_with(['=', '+', '-', '@', '\t', '\r'])
        || s.trim_start().starts_with(['=', '+', '-', '@']);
    if risky && s.trim().parse::<f64>().is_err() {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// The one CSV writer of the project: every cell goes through [`csv_cell`], so no file
/// stormbell writes hands a formula to the spreadsheet that opens it.
pub struct CsvOut<W: std::io::Write>(csv::Writer<W>);

impl<W: std::io::Write> CsvOut<W> {
    /// A writer onto `out`.
    pub fn new(out: W) -> CsvOut<W> {
        CsvOut(csv::Writer::from_writer(out))
    }

    /// One row, each cell guarded.
    pub fn row<I, T>(&mut self, cells: I) -> csv::Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let guarded: Vec<String> = cells
            .into_iter()
            .map(|c| csv_cell(c.as_ref()).into_owned())
            .collect();
        self.0.write_record(&guarded)
    }

    /// Write out what is buffered.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl CsvOut<Vec<u8>> {
    /// A writer into memory.
    pub fn in_memory() -> CsvOut<Vec<u8>> {
        CsvOut::new(Vec::new())
    }

    /// The text written.
    pub fn into_string(self) -> anyhow::Result<String> {
        let bytes = self
            .0
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing CSV: {}", e.error()))?;
        Ok(String::from_utf8(bytes)?)
    }
}

/// The asker's words as a notice may quote them: one line, at most 40 characters, runs of
/// six digits or more masked (no number can ride in a text from the office).
pub(crate) fn quote(note: &str) -> String {
    let flat: String = note
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.chars().count() >= 6 {
            out.push_str(&"*".repeat(digits.chars().count()));
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in flat.trim().chars() {
        if c.is_ascii_digit() || ('０'..='９').contains(&c) {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    let cut: String = out.chars().take(40).collect();
    if out.chars().count() > 40 {
        format!("{cut}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn typed_text_never_becomes_a_formula_and_numbers_stay_numbers() {
        for (given, want) in [
            (
                "=HYPERLINK(\"http://x\",\"点此\")",
                "'=HYPERLINK(\"http://x\",\"点此\")",
            ),
            ("+86 138 0000 0000", "'+86 138 0000 0000"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("-2+3", "'-2+3"),
            (" =1+1", "' =1+1"),
            ("\t=1", "'\t=1"),
            ("已转移35人", "已转移35人"),
            ("-3.5", "-3.5"),
            ("+12", "+12"),
            ("", ""),
        ] {
            assert_eq!(super::csv_cell(given), want, "{given:?}");
        }
        let mut w = super::CsvOut::in_memory();
        w.row(["name", "t"]).unwrap();
        w.row(["=cmd|' /C calc'!A0", "-1.5"]).unwrap();
        assert_eq!(
            w.into_string().unwrap(),
            "name,t\n'=cmd|' /C calc'!A0,-1.5\n"
        );
    }
    #[test]
    fn csv_lines_are_counted_alike_for_both_line_ends() {
        for data in ["a;b\r\n1;2\r\n3;4\r\n", "a;b\n1;2\n3;4\n"] {
            let text = super::lf(data);
            let mut r = csv::ReaderBuilder::new()
                .delimiter(b';')
                .from_reader(text.as_bytes());
            let lines: Vec<u64> = r
                .records()
                .map(|rec| rec.unwrap().position().unwrap().line())
                .collect();
            assert_eq!(lines, [2, 3], "{data:?}");
        }
    }
}
