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

#[cfg(test)]
mod tests {
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
