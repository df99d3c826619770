//! Series names: a metric name with optional labels, in the exposition syntax
//! (`http_requests_total{method="GET"}`), parsed, validated and written back.

use core::fmt;

use crate::region::MAX_NAME_LEN;

/// Why a series name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricNameError {
    /// The metric name is empty or not `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name {name:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName {
        /// The metric name (before any `{`).
        name: String,
    },
    /// A label name is not `[a-zA-Z_][a-zA-Z0-9_]*`, or starts with `__` (reserved).
    #[error(
        "invalid label name {label:?} in {series:?}: must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __"
    )]
    InvalidLabelName {
        /// The whole series name.
        series: String,
        /// The label name.
        label: String,
    },
    /// The same label name twice.
    #[error("label {label:?} appears twice in {series:?}")]
    DuplicateLabel {
        /// The whole series name.
        series: String,
        /// The label name.
        label: String,
    },
    /// A label name reserved for this kind of metric (`le` on a histogram).
    #[error("label {label:?} is reserved for {kind} metrics ({series:?})")]
    ReservedLabel {
        /// The whole series name.
        series: String,
        /// The label name.
        label: String,
        /// The metric kind.
        kind: &'static str,
    },
    /// The label set is not `{name="value",...}` with values escaped as the text format
    /// escapes them (`\\`, `\"`, `\n`; no raw line feed).
    #[error("malformed labels in {series:?} at byte {at}: {reason}")]
    Malformed {
        /// The whole series name.
        series: String,
        /// Byte offset of the problem.
        at: usize,
        /// What was expected.
        reason: &'static str,
    },
    /// The series name is longer than a region's object name may be
    /// ([`MAX_NAME_LEN`](crate::region::MAX_NAME_LEN) bytes).
    #[error("series name {series:?} is {len} bytes; a region's object names are at most {max}")]
    TooLong {
        /// The whole series name.
        series: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// A parsed series name: the metric (family) name and its labels, in order, with the
/// label values unescaped.
///
/// # Examples
///
/// ```
/// use shmstate::metrics::SeriesName;
///
/// let s = SeriesName::parse(r#"http_requests_total{method="GET",path="/a\"b"}"#)?;
/// assert_eq!(s.name(), "http_requests_total");
/// assert_eq!(s.labels()[1], ("path".to_string(), "/a\"b".to_string()));
/// assert_eq!(s.to_string(), r#"http_requests_total{method="GET",path="/a\"b"}"#);
/// # Ok::<(), shmstate::metrics::MetricNameError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesName {
    name: String,
    labels: Vec<(String, String)>,
}

impl SeriesName {
    /// Builds a series name from a metric name and labels (values as they are: they are
    /// escaped when written).
    ///
    /// # Errors
    ///
    /// [`MetricNameError`] for an invalid metric or label name, or a label given twice.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::metrics::SeriesName;
    ///
    /// let s = SeriesName::new("jobs_total", &[("queue", "mail\n")])?;
    /// assert_eq!(s.to_string(), r#"jobs_total{queue="mail\n"}"#);
    /// # Ok::<(), shmstate::metrics::MetricNameError>(())
    /// ```
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Result<SeriesName, MetricNameError> {
        let s = SeriesName {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        if !is_metric_name(name) {
            return Err(MetricNameError::InvalidMetricName { name: name.into() });
        }
        s.check_labels(|| s.to_string())?;
        Ok(s)
    }

    /// Parses `series`: a metric name, optionally followed by `{label="value",...}` in
    /// the text format's syntax (no spaces; values escaped with `\\`, `\"`, `\n`).
    ///
    /// # Errors
    ///
    /// [`MetricNameError`] saying what is wrong and where.
    pub fn parse(series: &str) -> Result<SeriesName, MetricNameError> {
        let mut spans = Vec::new();
        let shape = check_series(series, &mut spans)?;
        let labels = spans
            .iter()
            .map(|&[ks, ke, vs, ve]| (series[ks..ke].to_owned(), unescape(&series[vs..ve])))
            .collect();
        Ok(SeriesName {
            name: series[..shape.name_len].to_owned(),
            labels,
        })
    }

    /// The metric (family) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The labels, in order, values unescaped.
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }

    fn check_labels(&self, series: impl Fn() -> String) -> Result<(), MetricNameError> {
        for (i, (k, _)) in self.labels.iter().enumerate() {
            if !is_label_name(k) {
                return Err(MetricNameError::InvalidLabelName {
                    series: series(),
                    label: k.clone(),
                });
            }
            if self.labels[..i].iter().any(|(o, _)| o == k) {
                return Err(MetricNameError::DuplicateLabel {
                    series: series(),
                    label: k.clone(),
                });
            }
        }
        Ok(())
    }

    /// The labels written as the text format writes them, without braces, with `extra`
    /// appended (for a histogram's `le`).
    pub(crate) fn write_labels(
        &self,
        out: &mut impl fmt::Write,
        extra: Option<(&str, &str)>,
    ) -> fmt::Result {
        let all = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra);
        let mut first = true;
        for (k, v) in all {
            if first {
                out.write_char('{')?;
            } else {
                out.write_char(',')?;
            }
            first = false;
            write!(out, "{k}=\"")?;
            for c in v.chars() {
                match c {
                    '\\' => out.write_str("\\\\")?,
                    '"' => out.write_str("\\\"")?,
                    '\n' => out.write_str("\\n")?,
                    c => out.write_char(c)?,
                }
            }
            out.write_char('"')?;
        }
        if !first {
            out.write_char('}')?;
        }
        Ok(())
    }

    /// The name a region object with this series name is stored under, checked against
    /// the region's name limit.
    pub(crate) fn object_name(&self) -> Result<String, MetricNameError> {
        let s = self.to_string();
        if s.len() > MAX_NAME_LEN {
            return Err(MetricNameError::TooLong {
                len: s.len(),
                series: s,
                max: MAX_NAME_LEN,
            });
        }
        Ok(s)
    }

    /// A series name for an object whose name is not one: the name with every character
    /// outside `[a-zA-Z0-9_:]` replaced by `_`, and a `_` in front of a leading digit.
    /// `None` for names holding `{` (a label set that did not parse: skipped rather than
    /// guessed at) and empty names.
    pub(crate) fn sanitised(name: &str) -> Option<SeriesName> {
        if name.is_empty() || name.contains('{') {
            return None;
        }
        let mut out: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if out.starts_with(|c: char| c.is_ascii_digit()) {
            out.insert(0, '_');
        }
        Some(SeriesName {
            name: out,
            labels: Vec::new(),
        })
    }
}

impl fmt::Display for SeriesName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        self.write_labels(f, None)
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn is_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_' || *c == b':')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !s.starts_with("__")
        && b.first()
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// What [`check_series`] found in a valid series name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// The length of the metric name: the label set, if any, starts there.
    pub(crate) name_len: usize,
    /// Whether a label is named `le`.
    pub(crate) has_le: bool,
}

/// Checks `series` as [`SeriesName::parse`] does, without allocating unless it fails:
/// the metric name, the label set's syntax, then each label name in order (valid, not a
/// repeat). `spans` receives each label's `[name start, name end, value start, value
/// end]` (byte offsets in `series`, the value as written, escaped); it is scratch space
/// that a caller checking many names reuses.
///
/// A valid label set is written exactly as the text format writes it (the escapes it
/// accepts are the ones the format's writer makes), except `{}`, which is written as
/// nothing.
pub(crate) fn check_series(
    series: &str,
    spans: &mut Vec<[usize; 4]>,
) -> Result<Shape, MetricNameError> {
    spans.clear();
    let name_len = series.find('{').unwrap_or(series.len());
    let name = &series[..name_len];
    if !is_metric_name(name) {
        return Err(MetricNameError::InvalidMetricName { name: name.into() });
    }
    scan_labels(series, name_len, spans)?;
    let key = |i: usize| spans.get(i).map_or("", |&[ks, ke, ..]| &series[ks..ke]);
    let mut has_le = false;
    for i in 0..spans.len() {
        let k = key(i);
        if !is_label_name(k) {
            return Err(MetricNameError::InvalidLabelName {
                series: series.to_owned(),
                label: k.to_owned(),
            });
        }
        if (0..i).any(|j| key(j) == k) {
            return Err(MetricNameError::DuplicateLabel {
                series: series.to_owned(),
                label: k.to_owned(),
            });
        }
        has_le |= k == "le";
    }
    Ok(Shape { name_len, has_le })
}

/// A label value as written (escaped, already checked by [`scan_labels`]), unescaped.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(c) => out.push(c),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Scans the label set of `series` from byte `base` (`""` or `{...}`), pushing each
/// label's spans (see [`check_series`]).
fn scan_labels(
    series: &str,
    base: usize,
    spans: &mut Vec<[usize; 4]>,
) -> Result<(), MetricNameError> {
    let bytes = series.as_bytes();
    if base == bytes.len() {
        return Ok(());
    }
    let bad = |at: usize, reason: &'static str| MetricNameError::Malformed {
        series: series.to_owned(),
        at,
        reason,
    };
    // `series[base..]` starts with `{`.
    let mut i = base + 1;
    if bytes.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            let start = i;
            while bytes
                .get(i)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            {
                i += 1;
            }
            if i == start {
                return Err(bad(i, "expected a label name"));
            }
            let key_end = i;
            if bytes.get(i) != Some(&b'=') {
                return Err(bad(i, "expected `=`"));
            }
            if bytes.get(i + 1) != Some(&b'"') {
                return Err(bad(i + 1, "expected `\"`"));
            }
            i += 2;
            let value_start = i;
            loop {
                // Skip the run of plain bytes up to the next `"`, `\` or line feed.
                i = bytes
                    .get(i..)
                    .and_then(|r| r.iter().position(|b| matches!(b, b'"' | b'\\' | b'\n')))
                    .map_or(bytes.len(), |n| i + n);
                let Some(&b) = bytes.get(i) else {
                    return Err(bad(i, "unterminated label value"));
                };
                match b {
                    b'"' => break,
                    b'\\' => {
                        if !matches!(bytes.get(i + 1), Some(b'\\' | b'"' | b'n')) {
                            return Err(bad(i, "bad escape (only \\\\, \\\" and \\n)"));
                        }
                        i += 2;
                    }
                    _ => return Err(bad(i, "raw line feed in a label value (write \\n)")),
                }
            }
            spans.push([start, key_end, value_start, i]);
            i += 1;
            match bytes.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(bad(i, "expected `,` or `}`")),
            }
        }
    }
    if i != bytes.len() {
        return Err(bad(i, "text after `}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_round_trip() {
        for s in [
            "a",
            "_a:b_1",
            ":x",
            "x{}",
            r#"x{a="1"}"#,
            r#"x{a="",b_2="q\\w\"e\nr"}"#,
            r#"x{a="ünï{}=,"}"#,
        ] {
            let p = SeriesName::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            let back = if s == "x{}" { "x" } else { s };
            assert_eq!(p.to_string(), back);
        }
        let p = SeriesName::parse(r#"x{a="q\\w\"e\nr"}"#).unwrap();
        assert_eq!(p.labels()[0].1, "q\\w\"e\nr");
    }

    #[test]
    fn invalid_names_are_refused_with_their_reason() {
        let m = |s: &str| SeriesName::parse(s).unwrap_err();
        for s in ["", "1a", "a-b", "a b", "a.b", "{a=\"1\"}", "é"] {
            assert!(
                matches!(m(s), MetricNameError::InvalidMetricName { .. }),
                "{s}"
            );
        }
        for s in [r#"x{__a="1"}"#, r#"x{a:b="1"}"#, r#"x{1a="1"}"#] {
            assert!(
                matches!(
                    m(s),
                    MetricNameError::InvalidLabelName { .. } | MetricNameError::Malformed { .. }
                ),
                "{s}: {:?}",
                m(s)
            );
        }
        assert!(matches!(
            m(r#"x{__name__="y"}"#),
            MetricNameError::InvalidLabelName { .. }
        ));
        assert!(matches!(
            m(r#"x{a="1",a="2"}"#),
            MetricNameError::DuplicateLabel { .. }
        ));
        for s in [
            "x{",
            r#"x{a}"#,
            r#"x{a=1}"#,
            r#"x{a="1"#,
            r#"x{a="1",}"#,
            r#"x{a="1" }"#,
            r#"x{a="\t"}"#,
            "x{a=\"\n\"}",
            r#"x{a="1"}y"#,
        ] {
            assert!(
                matches!(m(s), MetricNameError::Malformed { .. }),
                "{s}: {:?}",
                m(s)
            );
        }
    }

    #[test]
    fn sanitising_replaces_bad_characters_and_skips_broken_label_sets() {
        let s = |n: &str| SeriesName::sanitised(n).map(|s| s.to_string());
        assert_eq!(s("queue-depth.main").as_deref(), Some("queue_depth_main"));
        assert_eq!(s("9lives").as_deref(), Some("_9lives"));
        assert_eq!(s("x{oops"), None);
        assert_eq!(s(""), None);
    }

    #[test]
    fn object_names_must_fit_the_region() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        let s = SeriesName::parse(&long).unwrap();
        assert!(matches!(
            s.object_name(),
            Err(MetricNameError::TooLong { .. })
        ));
        assert!(SeriesName::parse(&long[1..]).unwrap().object_name().is_ok());
    }
}
