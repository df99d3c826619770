//! Creating metric objects under validated series names.

use super::name::{MetricNameError, SeriesName};
use crate::values::histogram::HistogramError;
use crate::{Counter, GetError, Histogram, Region, StripedCounter, Value, ValueType};

/// Why a metric object could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricError {
    /// The series name is not valid (or does not fit a region's object names).
    #[error(transparent)]
    Name(#[from] MetricNameError),
    /// The region refused the object (another type under the name, full, ...); never
    /// [`GetError::Timeout`], which is [`MetricError::Timeout`].
    #[error(transparent)]
    Get(GetError),
    /// The histogram's bounds are invalid, differ from the existing object's, or the
    /// object is corrupt; never [`HistogramError::Timeout`].
    #[error(transparent)]
    Histogram(HistogramError),
    /// Another live process kept creating the object longer than the region's timeout.
    #[error("timed out waiting for another process to create the metric")]
    Timeout,
}

impl From<GetError> for MetricError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Timeout => MetricError::Timeout,
            e => MetricError::Get(e),
        }
    }
}

impl From<HistogramError> for MetricError {
    fn from(e: HistogramError) -> Self {
        match e {
            HistogramError::Timeout => MetricError::Timeout,
            e => MetricError::Histogram(e),
        }
    }
}

impl From<crate::Timeout> for MetricError {
    fn from(_: crate::Timeout) -> Self {
        MetricError::Timeout
    }
}

/// Checks `series` and returns the object name to store it under (canonical form).
fn object_name(series: &str) -> Result<String, MetricNameError> {
    SeriesName::parse(series)?.object_name()
}

/// The [`Counter`] of series `series` (`name` or `name{label="value",...}`), created at
/// 0 if there is none.
///
/// The object is stored under the series name written canonically (as
/// [`SeriesName`]'s `Display` writes it: `x{}` becomes `x`).
///
/// # Errors
///
/// [`MetricError::Name`] if `series` is not a valid series name or is longer than a
/// region's object names; otherwise as [`Region::get_or_default`].
///
/// # Examples
///
/// ```
/// use shmstate::metrics::{self, MetricError};
/// use shmstate::Region;
///
/// let region = Region::anonymous(1 << 16)?;
/// metrics::counter(&region, r#"jobs_total{queue="mail"}"#)?.inc();
/// assert!(matches!(metrics::counter(&region, "jobs-total"), Err(MetricError::Name(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn counter<'r>(region: &'r Region, series: &str) -> Result<&'r Counter, MetricError> {
    Ok(region.get_or_default::<Counter>(&object_name(series)?)?)
}

/// The [`StripedCounter`] of series `series`, created with
/// [`StripedCounter::default_stripes`] stripes if there is none (an existing one is
/// opened whatever its stripe count).
///
/// # Errors
///
/// As for [`counter`].
///
/// # Examples
///
/// ```
/// use shmstate::{metrics, Region};
///
/// let region = Region::anonymous(1 << 16)?;
/// metrics::striped_counter(&region, "requests_total")?.add(2);
/// assert_eq!(metrics::striped_counter(&region, "requests_total")?.sum(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn striped_counter<'r>(
    region: &'r Region,
    series: &str,
) -> Result<&'r StripedCounter, MetricError> {
    let name = object_name(series)?;
    match region.get::<StripedCounter>(&name) {
        Err(GetError::NotFound { .. }) => {
            match region
                .get_or_default_slice::<StripedCounter>(&name, StripedCounter::default_stripes())
            {
                // Created meanwhile with another stripe count.
                Err(GetError::TypeMismatch { .. }) => Ok(region.get::<StripedCounter>(&name)?),
                r => Ok(r?),
            }
        }
        r => Ok(r?),
    }
}

/// The gauge of series `series`: a [`Value<T>`] of a numeric `T` (`i64`, `u64`, `f64`,
/// the other integers, `f32`), created at 0 if there is none.
///
/// # Errors
///
/// As for [`counter`].
///
/// # Examples
///
/// ```
/// use shmstate::sync::Ordering::Relaxed;
/// use shmstate::{metrics, Region};
///
/// let region = Region::anonymous(1 << 16)?;
/// let temp = metrics::gauge::<f64>(&region, r#"temperature_celsius{room="lab"}"#)?;
/// temp.store(21.5, Relaxed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn gauge<'r, T: ValueType>(
    region: &'r Region,
    series: &str,
) -> Result<&'r Value<T>, MetricError>
where
    Value<T>: crate::SharedSized,
{
    Ok(region.get_or_default::<Value<T>>(&object_name(series)?)?)
}

/// The [`Histogram`] of series `series` over `bounds`, as
/// [`Region::histogram`] creates or opens it. `le` is not allowed as a label: it is the
/// bucket label.
///
/// # Errors
///
/// [`MetricError::Name`] for an invalid series name (or an `le` label,
/// [`MetricNameError::ReservedLabel`]); [`MetricError::Histogram`] for invalid bounds or
/// bounds that differ from the existing histogram's; otherwise as [`counter`].
///
/// # Examples
///
/// ```
/// use shmstate::{metrics, Region};
///
/// let region = Region::anonymous(1 << 16)?;
/// let h = metrics::histogram(&region, r#"db_seconds{op="read"}"#, &[0.01, 0.1, 1.0])?;
/// h.observe(0.05);
/// assert!(metrics::histogram(&region, r#"x{le="1"}"#, &[1.0]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn histogram<'r>(
    region: &'r Region,
    series: &str,
    bounds: &[f64],
) -> Result<&'r Histogram, MetricError> {
    let s = SeriesName::parse(series)?;
    if s.labels().iter().any(|(k, _)| k == "le") {
        return Err(MetricNameError::ReservedLabel {
            series: series.to_owned(),
            label: "le".to_owned(),
            kind: "histogram",
        }
        .into());
    }
    Ok(region.histogram(&s.object_name()?, bounds)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> Region {
        Region::anonymous(1 << 16).unwrap()
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn bad_series_names_are_typed_errors_and_create_nothing() {
        let r = region();
        let name_err = |e: MetricError| match e {
            MetricError::Name(n) => n,
            e => panic!("{e:?}"),
        };
        assert!(matches!(
            name_err(counter(&r, "http-requests").unwrap_err()),
            MetricNameError::InvalidMetricName { .. }
        ));
        assert!(matches!(
            name_err(gauge::<i64>(&r, r#"temp{__room="a"}"#).unwrap_err()),
            MetricNameError::InvalidLabelName { .. }
        ));
        assert!(matches!(
            name_err(striped_counter(&r, r#"x{a="1"#).unwrap_err()),
            MetricNameError::Malformed { .. }
        ));
        let long = format!(r#"requests_total{{path="{}"}}"#, "p".repeat(40));
        assert!(matches!(
            name_err(counter(&r, &long).unwrap_err()),
            MetricNameError::TooLong { max: 47, .. }
        ));
        assert!(matches!(
            name_err(histogram(&r, r#"lat{le="1"}"#, &[1.0]).unwrap_err()),
            MetricNameError::ReservedLabel { .. }
        ));
        assert!(r.entries().is_empty());
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn objects_are_stored_under_the_canonical_series_name() {
        let r = region();
        counter(&r, "jobs_total{}").unwrap().add(2);
        assert_eq!(r.get::<Counter>("jobs_total").unwrap().get(), 2);
        assert_eq!(counter(&r, "jobs_total").unwrap().get(), 2);
        // Another kind under the same name: the region's type check, as a typed error.
        assert!(matches!(
            gauge::<u64>(&r, "jobs_total"),
            Err(MetricError::Get(GetError::TypeMismatch { .. }))
        ));
        assert!(matches!(
            histogram(&r, "lat", &[2.0, 1.0]),
            Err(MetricError::Histogram(HistogramError::Bounds(_)))
        ));
    }
}
