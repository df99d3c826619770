//! The text exposition format 0.0.4: grouping series into families and writing them.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io;

use super::name::{self, SeriesName};
use super::source::{self, MetricSource, Number, Sample};

/// The kind of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FamilyKind {
    Counter,
    Gauge,
    Histogram,
}

impl FamilyKind {
    fn type_name(self) -> &'static str {
        match self {
            FamilyKind::Counter => "counter",
            FamilyKind::Gauge => "gauge",
            FamilyKind::Histogram => "histogram",
        }
    }

    /// The sample names a family of this kind named `name` writes.
    fn sample_names(self, name: &str) -> Vec<String> {
        match self {
            FamilyKind::Histogram => vec![
                name.to_owned(),
                format!("{name}_bucket"),
                format!("{name}_sum"),
                format!("{name}_count"),
            ],
            _ => vec![name.to_owned()],
        }
    }
}

/// Why an object of a region was left out of an exposition.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Its name holds a label set that does not parse (names without one are sanitised
    /// instead), or is empty.
    InvalidName,
    /// A series of the same name and labels came first (from this or an earlier region,
    /// or another object's name that sanitises to the same).
    Duplicate,
    /// Its family name is taken by a family of another kind (a counter and a gauge named
    /// alike, or a counter named like a histogram's `_count`).
    KindConflict,
    /// A histogram with an `le` label (reserved for its buckets).
    ReservedLabel,
}

/// An object left out of an exposition, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Skipped {
    /// The object's name in its region.
    pub object: String,
    /// Why.
    pub reason: SkipReason,
}

struct Family {
    name: String,
    kind: FamilyKind,
    /// The shmstate type of the family's first series (`Counter`, `Value<f64>`, ...), for
    /// its HELP line.
    help: String,
    series: Vec<Series>,
}

/// A series of a family: its text in [`Exposition::text`] and its sample.
struct Series {
    /// Where its text starts: the metric name.
    start: usize,
    /// Where its label set starts (`{...}` as the format writes it), or `end` if none.
    labels: usize,
    /// Where its text ends.
    end: usize,
    sample: Sample,
}

impl Series {
    fn name<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.start..self.labels).unwrap_or("")
    }
    fn labels<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.labels..self.end).unwrap_or("")
    }
}

/// A hasher for keys that are already hashes (the duplicate set's `u64`s, made with the
/// exposition's `RandomState`).
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// An exposition being collected from one or more regions, then written at once.
///
/// Series are grouped into families by metric name: one `# HELP` and one `# TYPE` line
/// per family, then its series, in the order their objects first appear (regions in the
/// order added, objects in directory order). Objects that are not metric-shaped (locks,
/// queues, arrays, ...) are not part of it; metric-shaped objects that cannot be written
/// without breaking the exposition are left out and listed by
/// [`skipped`](Self::skipped).
///
/// # Examples
///
/// ```
/// use shmstate::metrics::Exposition;
/// use shmstate::{Counter, Region};
///
/// let (a, b) = (Region::anonymous(1 << 16)?, Region::anonymous(1 << 16)?);
/// a.get_or_default::<Counter>(r#"jobs_total{worker="a"}"#)?.add(2);
/// b.get_or_default::<Counter>(r#"jobs_total{worker="b"}"#)?.add(3);
/// let mut e = Exposition::new();
/// e.add(&a);
/// e.add(&b);
/// let mut out = Vec::new();
/// e.write(&mut out)?;
/// assert_eq!(
///     String::from_utf8(out)?,
///     "# HELP jobs_total shmstate Counter\n# TYPE jobs_total counter\n\
///      jobs_total{worker=\"a\"} 2\njobs_total{worker=\"b\"} 3\n"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
    /// Family name → index.
    by_name: HashMap<String, usize>,
    /// Sample name → the family that writes it.
    taken: HashMap<String, usize>,
    /// A hash of every series added so far (family and label set, with `hasher`), for
    /// duplicates: a hit is confirmed by comparing with the family's series, so a
    /// collision costs a scan, never a wrongly skipped series.
    series: HashSet<u64, BuildHasherDefault<Prehashed>>,
    hasher: RandomState,
    /// The text of every series, one after another (see [`Series`]): one buffer rather
    /// than a string per series.
    text: String,
    /// The family of the last series added: series of one family usually come in a row.
    last: Option<usize>,
    /// Scratch for checking names.
    spans: Vec<[usize; 4]>,
    skipped: Vec<Skipped>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("families", &self.families.len())
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Adds every metric-shaped object of `source`: reads each one now (word loads
    /// only).
    pub fn add<S: MetricSource + ?Sized>(&mut self, source: &S) {
        source::for_each_sample(source, |object, tag, sample| {
            // A name that is not UTF-8 is read as `Region::entries` reads it.
            let object = match std::str::from_utf8(object) {
                Ok(s) => std::borrow::Cow::Borrowed(s),
                Err(_) => String::from_utf8_lossy(object),
            };
            if let Err(reason) = self.push(&object, sample, tag) {
                self.skipped.push(Skipped {
                    object: object.into_owned(),
                    reason,
                });
            }
        });
    }

    /// Adds the series of the object named `object`: its name when it is a series name,
    /// else the name sanitised.
    fn push(
        &mut self,
        object: &str,
        sample: Sample,
        tag: crate::TypeTag,
    ) -> Result<(), SkipReason> {
        let start = self.text.len();
        let pushed = self.push_text(object, &sample);
        let r = pushed.and_then(|labels| self.push_series(start, labels, sample, tag));
        if r.is_err() {
            self.text.truncate(start);
        }
        r
    }

    /// Appends the series text of `object` to `text`; returns where its label set starts.
    fn push_text(&mut self, object: &str, sample: &Sample) -> Result<usize, SkipReason> {
        match name::check_series(object, &mut self.spans) {
            Ok(shape) => {
                if matches!(sample, Sample::Histogram(_)) && shape.has_le {
                    return Err(SkipReason::ReservedLabel);
                }
                let (metric, labels) = object.split_at(shape.name_len);
                self.text.push_str(metric);
                let at = self.text.len();
                // `{}` is no label set: written as nothing.
                if labels != "{}" {
                    self.text.push_str(labels);
                }
                Ok(at)
            }
            Err(_) => {
                let s = SeriesName::sanitised(object).ok_or(SkipReason::InvalidName)?;
                self.text.push_str(s.name());
                Ok(self.text.len())
            }
        }
    }

    /// Files the series whose text is `text[start..]` (label set from `labels`).
    fn push_series(
        &mut self,
        start: usize,
        labels: usize,
        sample: Sample,
        tag: crate::TypeTag,
    ) -> Result<(), SkipReason> {
        let kind = match sample {
            Sample::Counter(_) => FamilyKind::Counter,
            Sample::Gauge(_) => FamilyKind::Gauge,
            Sample::Histogram(_) => FamilyKind::Histogram,
        };
        let end = self.text.len();
        let name = self.text.get(start..labels).unwrap_or("");
        let found = match self.last {
            Some(i) if self.families.get(i).is_some_and(|f| f.name == name) => Some(i),
            _ => self.by_name.get(name).copied(),
        };
        let index = match found {
            Some(i) => {
                if self.families.get(i).is_none_or(|f| f.kind != kind) {
                    return Err(SkipReason::KindConflict);
                }
                i
            }
            None => {
                let names = kind.sample_names(name);
                if names.iter().any(|n| self.taken.contains_key(n)) {
                    return Err(SkipReason::KindConflict);
                }
                let i = self.families.len();
                for n in names {
                    self.taken.insert(n, i);
                }
                // A later histogram `x` must not take `x_count` from this family either:
                // `taken` is checked for all of a new family's names above, and this
                // family's own name is taken now.
                self.by_name.insert(name.to_owned(), i);
                self.families.push(Family {
                    name: name.to_owned(),
                    kind,
                    help: tag.to_string(),
                    series: Vec::new(),
                });
                i
            }
        };
        self.last = Some(index);
        let text = &self.text;
        let label_set = text.get(labels..end).unwrap_or("");
        let family = &mut self.families[index];
        if !self.series.insert(self.hasher.hash_one((index, label_set)))
            && family.series.iter().any(|s| s.labels(text) == label_set)
        {
            return Err(SkipReason::Duplicate);
        }
        family.series.push(Series {
            start,
            labels,
            end,
            sample,
        });
        Ok(())
    }

    /// The objects left out so far, and why.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Writes the exposition (text format 0.0.4) to `out`.
    ///
    /// # Errors
    ///
    /// The first error `out` returns.
    pub fn write(&self, out: &mut impl io::Write) -> io::Result<()> {
        /// Bytes gathered before they go to `out`.
        const CHUNK: usize = 64 << 10;
        let mut buf = String::with_capacity(CHUNK + 4096);
        for f in &self.families {
            let _ = write!(buf, "# HELP {} shmstate ", f.name);
            // HELP text escapes `\` and line feed (a type name has neither; escaped all
            // the same).
            for c in f.help.chars() {
                match c {
                    '\\' => buf.push_str("\\\\"),
                    '\n' => buf.push_str("\\n"),
                    c => buf.push(c),
                }
            }
            buf.push('\n');
            let _ = writeln!(buf, "# TYPE {} {}", f.name, f.kind.type_name());
            for s in &f.series {
                write_series(&mut buf, &self.text, s);
                if buf.len() >= CHUNK {
                    out.write_all(buf.as_bytes())?;
                    buf.clear();
                }
            }
        }
        out.write_all(buf.as_bytes())
    }
}

/// Writes a series' lines: its name and label set are written as they are in `text`
/// (checked and in the format's own escaping when the series was added).
fn write_series(buf: &mut String, text: &str, s: &Series) {
    let (name, labels) = (s.name(text), s.labels(text));
    match &s.sample {
        Sample::Counter(v) => {
            buf.push_str(name);
            buf.push_str(labels);
            buf.push(' ');
            buf.push_str(itoa::Buffer::new().format(*v));
            buf.push('\n');
        }
        Sample::Gauge(n) => {
            buf.push_str(name);
            buf.push_str(labels);
            buf.push(' ');
            match *n {
                Number::U(v) => buf.push_str(itoa::Buffer::new().format(v)),
                Number::I(v) => buf.push_str(itoa::Buffer::new().format(v)),
                Number::F(v) => {
                    let _ = write_float(buf, v);
                }
            }
            buf.push('\n');
        }
        Sample::Histogram(h) => {
            // `{a="b"}` becomes `{a="b",le="..."}`; no label set, `{le="..."}`.
            let open = labels.strip_suffix('}').unwrap_or("{");
            let sep = if labels.is_empty() { "" } else { "," };
            for (bound, count) in h.buckets() {
                buf.push_str(name);
                buf.push_str("_bucket");
                buf.push_str(open);
                buf.push_str(sep);
                buf.push_str("le=\"");
                let _ = write_float(buf, bound);
                buf.push_str("\"} ");
                buf.push_str(itoa::Buffer::new().format(count));
                buf.push('\n');
            }
            buf.push_str(name);
            buf.push_str("_sum");
            buf.push_str(labels);
            buf.push(' ');
            let _ = write_float(buf, h.sum);
            buf.push('\n');
            buf.push_str(name);
            buf.push_str("_count");
            buf.push_str(labels);
            buf.push(' ');
            buf.push_str(itoa::Buffer::new().format(h.count));
            buf.push('\n');
        }
    }
}

/// A float as the text format writes it: `+Inf`, `-Inf`, `NaN`; integral values below
/// 2⁵³ without a fraction (`1`, as `le="1"` in the Go client); otherwise Rust's shortest
/// representation that reads back to the same `f64` (`0.005`, `1e-7`, `1.5e300`).
pub(crate) fn write_float(out: &mut impl std::fmt::Write, v: f64) -> std::fmt::Result {
    if v.is_nan() {
        out.write_str("NaN")
    } else if v.is_infinite() {
        out.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
    } else if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        if v == 0.0 && v.is_sign_negative() {
            out.write_str("-0")
        } else {
            out.write_str(itoa::Buffer::new().format(v as i64))
        }
    } else {
        write!(out, "{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_the_text_format_reads_them() {
        let f = |v: f64| {
            let mut s = String::new();
            write_float(&mut s, v).unwrap();
            s
        };
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(1.0), "1");
        assert_eq!(f(-3.0), "-3");
        assert_eq!(f(0.005), "0.005");
        assert_eq!(f(2.5), "2.5");
        assert_eq!(f(1e-7), "1e-7");
        assert_eq!(f(1e300), "1e300");
        for v in [0.1, 1.0 / 3.0, 123456.789, 9.007199254740993e15, 1e300] {
            assert_eq!(f(v).parse::<f64>().unwrap(), v);
        }
    }
}

#[cfg(test)]
mod exposition_tests {
    use super::*;
    use crate::{Counter, Region};

    fn render(r: &Region) -> (String, Vec<Skipped>) {
        let mut e = Exposition::new();
        e.add(r);
        let mut out = Vec::new();
        e.write(&mut out).unwrap();
        (String::from_utf8(out).unwrap(), e.skipped().to_vec())
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_histogram_and_a_counter_named_like_its_samples_do_not_both_render() {
        let skipped = |r: &Region| {
            render(r)
                .1
                .into_iter()
                .map(|s| s.reason)
                .collect::<Vec<_>>()
        };
        // Histogram first: the counter `x_sum` is left out.
        let r = Region::anonymous(1 << 16).unwrap();
        r.histogram("x", &[1.0]).unwrap();
        r.get_or_default::<Counter>("x_sum").unwrap();
        assert_eq!(skipped(&r), [SkipReason::KindConflict]);
        // Counter first: the histogram is left out.
        let r = Region::anonymous(1 << 16).unwrap();
        r.get_or_default::<Counter>("x_bucket").unwrap();
        r.histogram("x", &[1.0]).unwrap();
        assert_eq!(skipped(&r), [SkipReason::KindConflict]);
        assert!(!render(&r).0.contains("histogram"));
        // A histogram created outside the metrics API with an `le` label.
        let r = Region::anonymous(1 << 16).unwrap();
        r.histogram(r#"y{le="1"}"#, &[1.0]).unwrap();
        assert_eq!(skipped(&r), [SkipReason::ReservedLabel]);
        // Two objects whose names sanitise to the same series.
        let r = Region::anonymous(1 << 16).unwrap();
        r.get_or_default::<Counter>("a-b").unwrap();
        r.get_or_default::<Counter>("a.b").unwrap();
        assert_eq!(skipped(&r), [SkipReason::Duplicate]);
        assert_eq!(render(&r).0.matches("\na_b ").count(), 1);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn series_text_is_written_as_named_sanitised_or_without_an_empty_label_set() {
        let r = Region::anonymous(1 << 16).unwrap();
        r.histogram("h", &[0.5, 2.0]).unwrap().observe(1.0);
        r.histogram(r#"h{a="x\"y"}"#, &[0.5, 2.0])
            .unwrap()
            .observe(0.25);
        r.get_or_default::<Counter>("c{}").unwrap().add(2);
        r.get_or_default::<Counter>("c").unwrap().add(9);
        r.get_or_default::<crate::Value<i32>>("queue-depth")
            .unwrap()
            .store(-4, crate::sync::Ordering::Relaxed);
        r.get_or_default::<crate::Value<f64>>("ratio")
            .unwrap()
            .store(0.75, crate::sync::Ordering::Relaxed);
        let (text, skipped) = render(&r);
        let expected = [
            "# HELP h shmstate Histogram",
            "# TYPE h histogram",
            "h_bucket{le=\"0.5\"} 0",
            "h_bucket{le=\"2\"} 1",
            "h_bucket{le=\"+Inf\"} 1",
            "h_sum 1",
            "h_count 1",
            "h_bucket{a=\"x\\\"y\",le=\"0.5\"} 1",
            "h_bucket{a=\"x\\\"y\",le=\"2\"} 1",
            "h_bucket{a=\"x\\\"y\",le=\"+Inf\"} 1",
            "h_sum{a=\"x\\\"y\"} 0.25",
            "h_count{a=\"x\\\"y\"} 1",
            "# HELP c shmstate Counter",
            "# TYPE c counter",
            "c 2",
            "# HELP queue_depth shmstate Value<i32>",
            "# TYPE queue_depth gauge",
            "queue_depth -4",
            "# HELP ratio shmstate Value<f64>",
            "# TYPE ratio gauge",
            "ratio 0.75",
        ];
        assert_eq!(text, expected.join("\n") + "\n");
        // `c{}` and `c` are one series: the second is a duplicate.
        assert_eq!(
            skipped,
            [Skipped {
                object: "c".into(),
                reason: SkipReason::Duplicate
            }]
        );
    }
}
