//! The collection configuration (`CollectionConfigurationInfo`): the
//! derived metrics and document streams a portal user adds to the Live
//! Metrics view, with their filters and document quotas.
//!
//! [`Configuration::parse`] reads and validates the body once; the
//! exporter's worker then shows it every sampled item
//! ([`Configuration::observe`], [`Configuration::stream_ids`]) and takes
//! the derived metrics once per post ([`Configuration::take_metrics`]).
//!
//! # What is read
//!
//! * `ETag`, `Metrics` (`DerivedMetricInfo`), `DocumentStreams`
//!   (`DocumentStreamInfo`) and `QuotaInfo`, PascalCase (a key spelled in
//!   another case is accepted when the exact one is absent). A missing or
//!   `null` list is empty; unknown fields are ignored. Only a body that is
//!   not a JSON object at all is a [`ParseError`]; anything wrong inside it
//!   is an error entry ([`Configuration::errors`]).
//! * Telemetry types `Request`, `Dependency`, `Exception`, `Trace`
//!   (`Event`, `Metric`, `PerformanceCounter` and unknown names are
//!   refused). Type, predicate, aggregation, projection and field names
//!   are matched case-insensitively; custom dimension keys are not.
//! * Fields: Request `Name`, `Url`, `ResponseCode`, `Duration`, `Success`;
//!   Dependency `Name`, `Target`, `Type`, `Data`, `ResultCode`, `Duration`,
//!   `Success`; Exception `Exception.Message`, `Exception.StackTrace`;
//!   Trace `Message`; for every type `CustomDimensions.<key>` and `*`.
//! * Projections `Count()`, `Duration` (requests and dependencies) and
//!   `CustomDimensions.<key>`; aggregations `Sum`, `Min`, `Max`, `Avg`
//!   (`BackEndAggregation` is the service's business).
//!
//! # Validation
//!
//! A filter is refused when its comparand is empty; when `*` is used with
//! anything but `Contains`/`DoesNotContain`; when the field is not one of
//! its type's (or starts with `CustomMetrics.`); when `ResponseCode`/
//! `ResultCode` has a non-integer comparand or `Contains`/`DoesNotContain`;
//! when `Duration` has a comparand that is not a `[days].[hours]:[minutes]:
//! [seconds]` timespan (seconds may be fractional) or `Contains`/
//! `DoesNotContain`; when `Success` has anything but `Equal`/`NotEqual`
//! with `true`/`false`; when a text field has an ordering predicate.
//!
//! Every refused entry is skipped (the others still work) and reported
//! once, as a `CollectionConfigurationError` whose `Data` names the
//! `MetricId` or `DocumentStreamId` and the `ETag`:
//!
//! * a derived metric of an unsupported type: `MetricTelemetryTypeUnsupported`;
//!   a second metric with the `Id` of an accepted one: `MetricDuplicateIds`
//!   (the later one is skipped); no `Id`, or a bad projection, aggregation
//!   or shape: `MetricFailureToCreate`; a bad filter: the whole metric is
//!   skipped, `FilterFailureToCreateUnexpected` (a metric is never widened by
//!   dropping one of its filters);
//! * a document stream without `Id` or with a bad shape:
//!   `DocumentStreamFailureToCreate`; a duplicate `Id`:
//!   `DocumentStreamDuplicateIds`. **A stream keeps its valid groups**: a
//!   group of an unsupported type or a bad shape
//!   (`DocumentStreamFailureToCreateFilterUnexpected`) or with a bad filter
//!   (`FilterFailureToCreateUnexpected`) is skipped with its own error, so a
//!   stream's request documents survive a mistake in its trace group. A
//!   stream left without groups asks for nothing.
//!
//! # Evaluation
//!
//! A group matches when all its filters do; a metric when any of its
//! groups does (a metric without groups, or a group without filters,
//! matches every item of its type). Strings compare case-sensitively with
//! `Equal`/`NotEqual` and ASCII-case-insensitively with `Contains`/
//! `DoesNotContain`. `ResponseCode`/`ResultCode` compare as integers (an
//! item without a numeric code matches no such filter), `Duration` in
//! milliseconds, `Success` as a boolean. `CustomDimensions.<key>`: a
//! missing dimension matches nothing, `NotEqual` and `DoesNotContain`
//! included; with any other predicate than `Contains`/`DoesNotContain`, a
//! value and a comparand that both read as finite numbers compare as
//! numbers, otherwise `Equal`/`NotEqual` compare text and orderings do not
//! match. `*` searches the item's text fields (the ones above, the result
//! code as text and the exception type) and every custom dimension value:
//! `Contains` when one contains the comparand, `DoesNotContain` when none
//! does.
//!
//! Each derived metric projects only the items its own filters match:
//! `Count()` is 1, `Duration` the duration in milliseconds,
//! `CustomDimensions.<key>` the dimension read as a number (an item whose
//! value is missing, not a number or not finite is skipped). Every valid
//! metric yields one value per post, 0 when nothing was projected.
//!
//! # Document streams and quotas
//!
//! An item is offered to every stream with a group of the item's type that
//! matches it (a stream without a group for the type never asks for it,
//! so an item no stream asks for is sent nowhere). Each stream keeps a
//! token bucket per telemetry type: `InitialQuota` tokens (default 3) at
//! the first item offered, `QuotaAccrualRatePerSec` more per second of the
//! caller's clock (default `MaxQuota / 60`), at most `MaxQuota` (default
//! 30); a stream takes the document only when it has a whole token, and
//! spends it. Quota numbers are clamped to `0..=`[`MAX_QUOTA`] (the initial
//! quota to the maximum); a value that is not a number takes its default.
//! A clock going backwards or not finite accrues nothing.
//!
//! # Bounds
//!
//! At most [`MAX_METRICS`] derived metrics and [`MAX_STREAMS`] streams are
//! accepted (one error counts the entries after that), [`MAX_GROUPS`]
//! groups per entry and [`MAX_FILTERS`] filters per group, and
//! [`MAX_ERRORS`] errors are listed (one more counts the others).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use super::item::{Item, ItemKind};
use crate::record::text::truncate_utf16;

/// At most this many derived metrics are accepted.
pub(crate) const MAX_METRICS: usize = 500;
/// At most this many document streams are accepted.
pub(crate) const MAX_STREAMS: usize = 500;
/// At most this many filter groups per metric or stream.
pub(crate) const MAX_GROUPS: usize = 100;
/// At most this many filters per group.
pub(crate) const MAX_FILTERS: usize = 100;
/// At most this many errors are listed, plus one counting the rest.
pub(crate) const MAX_ERRORS: usize = 100;
/// Quota numbers are clamped to this.
pub(crate) const MAX_QUOTA: f64 = 1e6;
/// User text quoted in error messages is cut to this many UTF-16 units.
const QUOTED: usize = 100;

/// A body that is not a `CollectionConfigurationInfo` JSON object at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ParseError(String);

/// A parsed collection configuration and its per-interval state (see the
/// module docs).
#[derive(Debug)]
pub(crate) struct Configuration {
    metrics: Vec<DerivedMetric>,
    streams: Vec<Stream>,
    quota: Quota,
    errors: Vec<Value>,
    state: Mutex<State>,
}

impl Configuration {
    /// Reads a `CollectionConfigurationInfo`: every valid entry is kept,
    /// every invalid one reported in [`Configuration::errors`].
    pub(crate) fn parse(body: &[u8]) -> Result<Configuration, ParseError> {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ParseError(format!("the body is not JSON: {e}")))?;
        let Value::Object(info) = &value else {
            return Err(ParseError(format!(
                "the body is {}, not a CollectionConfigurationInfo object",
                json_kind(&value)
            )));
        };
        let etag = get(info, "ETag").and_then(Value::as_str).unwrap_or("");
        let mut errors = Errors {
            etag,
            list: Vec::new(),
            unlisted: 0,
        };
        let metric_infos = errors.list_of(info, "Metrics");
        let stream_infos = errors.list_of(info, "DocumentStreams");
        let metrics = accept(&Entries::METRICS, metric_infos, &mut errors, metric);
        let streams = accept(&Entries::STREAMS, stream_infos, &mut errors, stream);
        let quota = Quota::of(get(info, "QuotaInfo"));
        let state = State {
            aggregates: vec![Aggregate::default(); metrics.len()],
            buckets: vec![[Bucket::new(&quota); KINDS]; streams.len()],
        };
        Ok(Configuration {
            metrics,
            streams,
            quota,
            errors: errors.finish(),
            state: Mutex::new(state),
        })
    }

    /// Projects `item` into every derived metric of its type whose filters
    /// match it.
    pub(crate) fn observe(&self, item: &Item<'_>) {
        let mut state = super::lock(&self.state);
        for (metric, aggregate) in self.metrics.iter().zip(&mut state.aggregates) {
            if metric.kind == item.kind && any_group(&metric.groups, item) {
                if let Some(value) = metric.projection.of(item) {
                    aggregate.add(value);
                }
            }
        }
    }

    /// The ids of the streams that take `item` as a document (a group of
    /// its type matches and the quota has a token), in configuration
    /// order; `None` when none does. `now_secs`: the quota clock.
    pub(crate) fn stream_ids(&self, item: &Item<'_>, now_secs: f64) -> Option<Vec<String>> {
        let mut state = super::lock(&self.state);
        let kind = kind_index(item.kind);
        let ids: Vec<String> = self
            .streams
            .iter()
            .zip(&mut state.buckets)
            .filter(|(stream, _)| stream.asks_for(item))
            .filter_map(|(stream, buckets)| {
                buckets[kind]
                    .take(now_secs, &self.quota)
                    .then(|| stream.id.clone())
            })
            .collect();
        (!ids.is_empty()).then_some(ids)
    }

    /// Appends one `(Id, value)` per valid derived metric (0 when nothing
    /// was projected) and starts a new interval.
    pub(crate) fn take_metrics(&self, out: &mut Vec<(String, f64)>) {
        let mut state = super::lock(&self.state);
        out.extend(
            self.metrics
                .iter()
                .zip(&mut state.aggregates)
                .map(|(metric, aggregate)| (metric.id.clone(), aggregate.take(metric.aggregation))),
        );
    }

    /// The `CollectionConfigurationError` objects of the invalid entries.
    pub(crate) fn errors(&self) -> &[Value] {
        &self.errors
    }
}

/// The four telemetry types, for the per-type quota buckets.
const KINDS: usize = 4;

fn kind_index(kind: ItemKind) -> usize {
    match kind {
        ItemKind::Request => 0,
        ItemKind::Dependency => 1,
        ItemKind::Exception => 2,
        ItemKind::Trace => 3,
    }
}

// ---------------------------------------------------------------------------
// Compiled configuration

#[derive(Debug)]
struct DerivedMetric {
    id: String,
    kind: ItemKind,
    /// Empty: every item of `kind`.
    groups: Vec<Vec<Test>>,
    projection: Projection,
    aggregation: Aggregation,
}

#[derive(Debug)]
struct Stream {
    id: String,
    groups: Vec<(ItemKind, Vec<Test>)>,
}

impl Stream {
    fn asks_for(&self, item: &Item<'_>) -> bool {
        self.groups
            .iter()
            .any(|(kind, group)| *kind == item.kind && all(group, item))
    }
}

fn all(group: &[Test], item: &Item<'_>) -> bool {
    group.iter().all(|test| test.matches(item))
}

fn any_group(groups: &[Vec<Test>], item: &Item<'_>) -> bool {
    groups.is_empty() || groups.iter().any(|group| all(group, item))
}

#[derive(Debug)]
enum Projection {
    Count,
    Duration,
    Dimension(String),
}

impl Projection {
    fn of(&self, item: &Item<'_>) -> Option<f64> {
        match self {
            Projection::Count => Some(1.0),
            Projection::Duration => Some(item.duration_ms).filter(|v| v.is_finite()),
            Projection::Dimension(key) => item.dimensions.get(key).and_then(|v| parse_number(&v)),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Aggregation {
    Sum,
    Min,
    Max,
    Avg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Predicate {
    Equal,
    NotEqual,
    LessThan,
    GreaterThan,
    LessThanOrEqual,
    GreaterThanOrEqual,
    Contains,
    DoesNotContain,
}

impl Predicate {
    fn is_contains(self) -> bool {
        matches!(self, Predicate::Contains | Predicate::DoesNotContain)
    }

    fn is_equality(self) -> bool {
        matches!(self, Predicate::Equal | Predicate::NotEqual)
    }

    /// Whether a value that compares to the comparand as `ordering`
    /// matches (never for `Contains`/`DoesNotContain`).
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Predicate::Equal => ordering.is_eq(),
            Predicate::NotEqual => ordering.is_ne(),
            Predicate::LessThan => ordering.is_lt(),
            Predicate::GreaterThan => ordering.is_gt(),
            Predicate::LessThanOrEqual => ordering.is_le(),
            Predicate::GreaterThanOrEqual => ordering.is_ge(),
            Predicate::Contains | Predicate::DoesNotContain => false,
        }
    }

    fn text(self, value: &str, comparand: &str) -> bool {
        match self {
            Predicate::Contains => contains_ignore_case(value, comparand),
            Predicate::DoesNotContain => !contains_ignore_case(value, comparand),
            _ => self.holds(value.cmp(comparand)),
        }
    }

    fn number(self, value: f64, comparand: f64) -> bool {
        value
            .partial_cmp(&comparand)
            .is_some_and(|ordering| self.holds(ordering))
    }
}

/// A text field of an item.
#[derive(Clone, Copy, Debug)]
enum Text {
    Name,
    Url,
    Target,
    Type,
    Data,
    Message,
    Stack,
}

impl Text {
    fn of<'a>(self, item: &Item<'a>) -> &'a str {
        match self {
            Text::Name => item.name,
            Text::Url => item.url,
            Text::Target => item.target,
            Text::Type => item.dependency_type,
            Text::Data => item.data,
            Text::Message => item.message,
            Text::Stack => item.stack,
        }
    }
}

/// A built-in field of a telemetry type.
#[derive(Clone, Copy, Debug)]
enum Field {
    Text(Text),
    Code,
    Duration,
    Success,
}

/// The built-in fields of `kind` by name (case-insensitive).
fn field(kind: ItemKind, name: &str) -> Option<Field> {
    use Field::{Code, Duration, Success};
    let fields: &[(&str, Field)] = match kind {
        ItemKind::Request => &[
            ("Name", Field::Text(Text::Name)),
            ("Url", Field::Text(Text::Url)),
            ("ResponseCode", Code),
            ("Duration", Duration),
            ("Success", Success),
        ],
        ItemKind::Dependency => &[
            ("Name", Field::Text(Text::Name)),
            ("Target", Field::Text(Text::Target)),
            ("Type", Field::Text(Text::Type)),
            ("Data", Field::Text(Text::Data)),
            ("ResultCode", Code),
            ("Duration", Duration),
            ("Success", Success),
        ],
        ItemKind::Exception => &[
            ("Exception.Message", Field::Text(Text::Message)),
            ("Exception.StackTrace", Field::Text(Text::Stack)),
        ],
        ItemKind::Trace => &[("Message", Field::Text(Text::Message))],
    };
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, f)| *f)
}

/// One compiled filter.
#[derive(Debug)]
enum Test {
    Text(Text, Predicate, String),
    Code(Predicate, i64),
    Duration(Predicate, f64),
    /// Matches items whose `success` is this.
    Success(bool),
    Dimension {
        key: String,
        predicate: Predicate,
        comparand: String,
        /// The comparand as a number, when it is one.
        number: Option<f64>,
    },
    /// `*`: `contains` (or not) in any text field or dimension.
    Any {
        contains: bool,
        comparand: String,
    },
}

impl Test {
    fn matches(&self, item: &Item<'_>) -> bool {
        match self {
            Test::Text(field, predicate, comparand) => predicate.text(field.of(item), comparand),
            Test::Code(predicate, comparand) => item
                .result_code
                .is_some_and(|code| predicate.holds(code.cmp(comparand))),
            Test::Duration(predicate, ms) => predicate.number(item.duration_ms, *ms),
            Test::Success(success) => item.success == *success,
            Test::Dimension {
                key,
                predicate,
                comparand,
                number,
            } => item.dimensions.get(key).is_some_and(|value| {
                if predicate.is_contains() {
                    return predicate.text(&value, comparand);
                }
                match number.zip(parse_number(&value)) {
                    Some((comparand, value)) => predicate.number(value, comparand),
                    None => predicate.is_equality() && predicate.text(&value, comparand),
                }
            }),
            Test::Any {
                contains,
                comparand,
            } => {
                let mut found = |text: &str| contains_ignore_case(text, comparand);
                let found = texts(item).into_iter().any(&mut found)
                    || item.dimensions.any_value(&mut found);
                found == *contains
            }
        }
    }
}

/// The text fields `*` searches besides the dimensions (empty strings
/// where a type has fewer).
fn texts<'a>(item: &Item<'a>) -> [&'a str; 5] {
    match item.kind {
        ItemKind::Request => [item.name, item.url, item.result_text, "", ""],
        ItemKind::Dependency => [
            item.name,
            item.target,
            item.dependency_type,
            item.data,
            item.result_text,
        ],
        ItemKind::Exception => [item.exception_type, item.message, item.stack, "", ""],
        ItemKind::Trace => [item.message, "", "", "", ""],
    }
}

/// ASCII-case-insensitive substring test, without allocating.
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

/// A text read as a finite number.
fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A `[days].[hours]:[minutes]:[seconds]` timespan (seconds may have a
/// fraction) in milliseconds.
fn timespan_ms(text: &str) -> Option<f64> {
    fn digits(s: &str) -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
    let (days, rest) = text.trim().split_once('.')?;
    let mut parts = rest.split(':');
    let (hours, minutes, seconds) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (seconds, fraction) = match seconds.split_once('.') {
        Some((seconds, fraction)) => (seconds, Some(fraction)),
        None => (seconds, None),
    };
    let whole_ms = digits(days)?
        .checked_mul(24)?
        .checked_add(digits(hours)?)?
        .checked_mul(60)?
        .checked_add(digits(minutes)?)?
        .checked_mul(60)?
        .checked_add(digits(seconds)?)?
        .checked_mul(1000)?;
    // The fraction as nanoseconds (its first nine digits), exactly.
    let fraction_ms = match fraction {
        None => 0.0,
        Some(fraction) => {
            digits(fraction)?;
            let nine = &fraction[..fraction.len().min(9)];
            let nanos = digits(nine)? * 10u64.pow(9 - nine.len() as u32);
            nanos as f64 / 1e6
        }
    };
    Some(whole_ms as f64 + fraction_ms)
}

// ---------------------------------------------------------------------------
// Interval state

#[derive(Debug)]
struct State {
    /// One per metric, in order.
    aggregates: Vec<Aggregate>,
    /// One set per stream, in order, indexed by [`kind_index`].
    buckets: Vec<[Bucket; KINDS]>,
}

#[derive(Clone, Debug)]
struct Aggregate {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Aggregate {
    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// The interval's value (0 when empty, finite), resetting it.
    fn take(&mut self, aggregation: Aggregation) -> f64 {
        let a = std::mem::take(self);
        let value = match aggregation {
            _ if a.count == 0 => 0.0,
            Aggregation::Sum => a.sum,
            Aggregation::Min => a.min,
            Aggregation::Max => a.max,
            Aggregation::Avg => a.sum / a.count as f64,
        };
        value.clamp(-f64::MAX, f64::MAX)
    }
}

/// `QuotaInfo`, clamped.
#[derive(Debug)]
struct Quota {
    initial: f64,
    max: f64,
    per_sec: f64,
}

impl Quota {
    fn of(info: Option<&Value>) -> Quota {
        let info = info.and_then(Value::as_object);
        let read = |key| {
            info.and_then(|info| get(info, key))
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite())
                .map(|v| v.clamp(0.0, MAX_QUOTA))
        };
        let max = read("MaxQuota").unwrap_or(30.0);
        Quota {
            initial: read("InitialQuota").unwrap_or(3.0).min(max),
            max,
            per_sec: read("QuotaAccrualRatePerSec").unwrap_or(max / 60.0),
        }
    }
}

/// A stream's documents of one type.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    /// The clock at the last accrual (`None` before the first item).
    last: Option<f64>,
}

impl Bucket {
    fn new(quota: &Quota) -> Bucket {
        Bucket {
            tokens: quota.initial,
            last: None,
        }
    }

    /// Accrues up to `now`, then spends a token if there is one.
    fn take(&mut self, now: f64, quota: &Quota) -> bool {
        if now.is_finite() {
            match self.last {
                Some(last) if now > last => {
                    // Bounded so that `inf * 0` cannot occur.
                    let elapsed = (now - last).min(1e12);
                    self.tokens = (self.tokens + elapsed * quota.per_sec).min(quota.max);
                    self.last = Some(now);
                }
                Some(_) => {}
                None => self.last = Some(now),
            }
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

// ---------------------------------------------------------------------------
// Reading and validation

/// A `CollectionConfigurationErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorType {
    MetricDuplicateIds,
    MetricTelemetryTypeUnsupported,
    MetricFailureToCreate,
    DocumentStreamDuplicateIds,
    DocumentStreamFailureToCreate,
    DocumentStreamFailureToCreateFilterUnexpected,
    FilterFailureToCreateUnexpected,
    CollectionConfigurationFailureToCreateUnexpected,
}

impl ErrorType {
    fn name(self) -> &'static str {
        match self {
            ErrorType::MetricDuplicateIds => "MetricDuplicateIds",
            ErrorType::MetricTelemetryTypeUnsupported => "MetricTelemetryTypeUnsupported",
            ErrorType::MetricFailureToCreate => "MetricFailureToCreate",
            ErrorType::DocumentStreamDuplicateIds => "DocumentStreamDuplicateIds",
            ErrorType::DocumentStreamFailureToCreate => "DocumentStreamFailureToCreate",
            ErrorType::DocumentStreamFailureToCreateFilterUnexpected => {
                "DocumentStreamFailureToCreateFilterUnexpected"
            }
            ErrorType::FilterFailureToCreateUnexpected => "FilterFailureToCreateUnexpected",
            ErrorType::CollectionConfigurationFailureToCreateUnexpected => {
                "CollectionConfigurationFailureToCreateUnexpected"
            }
        }
    }
}

/// Why an entry (or a part of one) was refused.
#[derive(Debug)]
struct Problem {
    kind: ErrorType,
    message: String,
}

fn problem(kind: ErrorType, message: String) -> Problem {
    Problem { kind, message }
}

/// The error objects of one configuration, bounded.
struct Errors<'a> {
    etag: &'a str,
    list: Vec<Value>,
    unlisted: usize,
}

impl Errors<'_> {
    /// Reports `problem`; `entry` names the metric or stream
    /// (`("MetricId", id)`), if any.
    fn push(&mut self, problem: Problem, entry: Option<(&str, &str)>) {
        if self.list.len() >= MAX_ERRORS {
            self.unlisted += 1;
        } else {
            self.list.push(self.error(problem, entry));
        }
    }

    fn error(&self, problem: Problem, entry: Option<(&str, &str)>) -> Value {
        let mut data = Vec::with_capacity(2);
        if let Some((key, id)) = entry {
            data.push(json!({"key": key, "value": id}));
        }
        data.push(json!({"key": "ETag", "value": self.etag}));
        json!({
            "CollectionConfigurationErrorType": problem.kind.name(),
            "Message": problem.message,
            "FullException": "",
            "Data": data,
        })
    }

    /// The list `key` of `info` (none when absent or `null`; an error
    /// when not a list).
    fn list_of<'v>(&mut self, info: &'v Map<String, Value>, key: &str) -> &'v [Value] {
        match get(info, key) {
            None | Some(Value::Null) => &[],
            Some(Value::Array(list)) => list,
            Some(other) => {
                self.push(
                    problem(
                        ErrorType::CollectionConfigurationFailureToCreateUnexpected,
                        format!("{key} is {}, not a list; it is ignored", json_kind(other)),
                    ),
                    None,
                );
                &[]
            }
        }
    }

    /// The list, and one more error counting the unlisted ones.
    fn finish(mut self) -> Vec<Value> {
        if self.unlisted > 0 {
            let message = format!(
                "{} more problems in the collection configuration are not listed",
                self.unlisted
            );
            let kind = ErrorType::CollectionConfigurationFailureToCreateUnexpected;
            let summary = self.error(problem(kind, message), None);
            self.list.push(summary);
        }
        self.list
    }
}

/// What [`accept`] needs to know of metrics or streams.
struct Entries {
    what: &'static str,
    id_key: &'static str,
    max: usize,
    duplicate: ErrorType,
    failure: ErrorType,
}

impl Entries {
    const METRICS: Entries = Entries {
        what: "derived metric",
        id_key: "MetricId",
        max: MAX_METRICS,
        duplicate: ErrorType::MetricDuplicateIds,
        failure: ErrorType::MetricFailureToCreate,
    };
    const STREAMS: Entries = Entries {
        what: "document stream",
        id_key: "DocumentStreamId",
        max: MAX_STREAMS,
        duplicate: ErrorType::DocumentStreamDuplicateIds,
        failure: ErrorType::DocumentStreamFailureToCreate,
    };
}

/// Builds the valid entries of `infos` (at most `entries.max`), reporting
/// the others: not an object or no `Id`, a duplicate `Id` (of an accepted
/// entry), or whatever `build` finds. `build` reports the problems of
/// parts it skips in its `Vec` and still returns the entry.
fn accept<T>(
    entries: &Entries,
    infos: &[Value],
    errors: &mut Errors<'_>,
    build: fn(&str, &Map<String, Value>, &mut Vec<Problem>) -> Result<T, Problem>,
) -> Vec<T> {
    let mut accepted: Vec<T> = Vec::new();
    let mut ids = HashSet::new();
    let mut parts = Vec::new();
    for (index, info) in infos.iter().enumerate() {
        if accepted.len() == entries.max {
            errors.push(
                problem(
                    entries.failure,
                    format!(
                        "only {} {}s are accepted; the {} after them are ignored",
                        entries.max,
                        entries.what,
                        infos.len() - index
                    ),
                ),
                None,
            );
            break;
        }
        let object = info.as_object();
        let id = object
            .and_then(|o| get(o, "Id"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let entry = Some((entries.id_key, id));
        let Some(object) = object.filter(|_| !id.is_empty()) else {
            let message = format!("a {} without an Id is ignored", entries.what);
            errors.push(problem(entries.failure, message), entry);
            continue;
        };
        if ids.contains(id) {
            let message = format!(
                "the {} {} has the Id of an earlier one; it is ignored",
                entries.what,
                quoted(id)
            );
            errors.push(problem(entries.duplicate, message), entry);
            continue;
        }
        let built = build(id, object, &mut parts);
        for part in parts.drain(..) {
            errors.push(part, entry);
        }
        match built {
            Ok(built) => {
                ids.insert(id);
                accepted.push(built);
            }
            Err(problem) => errors.push(problem, entry),
        }
    }
    accepted
}

/// A `DerivedMetricInfo`.
fn metric(
    id: &str,
    info: &Map<String, Value>,
    _parts: &mut Vec<Problem>,
) -> Result<DerivedMetric, Problem> {
    let context = format!("the derived metric {}", quoted(id));
    let failure = |message: String| {
        problem(
            ErrorType::MetricFailureToCreate,
            format!("{context}: {message}"),
        )
    };
    let kind = telemetry_type(get(info, "TelemetryType")).map_err(|name| {
        problem(
            ErrorType::MetricTelemetryTypeUnsupported,
            format!(
                "{context}: the telemetry type {name} is not supported \
                 (Request, Dependency, Exception or Trace)"
            ),
        )
    })?;
    let groups = list(get(info, "FilterGroups"))
        .ok_or_else(|| failure("FilterGroups is not a list".into()))?;
    if groups.len() > MAX_GROUPS {
        return Err(failure(format!("more than {MAX_GROUPS} filter groups")));
    }
    let groups = groups
        .iter()
        .map(|group| {
            let group = group
                .as_object()
                .ok_or_else(|| failure("a filter group is not an object".into()))?;
            let shape = ErrorType::MetricFailureToCreate;
            conjunction(kind, get(group, "Filters"), shape, &context)
        })
        .collect::<Result<_, _>>()?;
    let projection_name = get(info, "Projection")
        .and_then(Value::as_str)
        .unwrap_or("");
    let projection = if projection_name.eq_ignore_ascii_case("Count()") {
        Projection::Count
    } else if projection_name.eq_ignore_ascii_case("Duration")
        && matches!(kind, ItemKind::Request | ItemKind::Dependency)
    {
        Projection::Duration
    } else {
        match strip_prefix_ignore_case(projection_name, "CustomDimensions.") {
            Some(key) if !key.is_empty() => Projection::Dimension(key.to_owned()),
            _ => {
                return Err(failure(format!(
                    "the projection {} is not supported for {kind:?} (Count(), Duration for \
                     requests and dependencies, CustomDimensions.<key>)",
                    quoted(projection_name)
                )))
            }
        }
    };
    let aggregation_name = get(info, "Aggregation")
        .and_then(Value::as_str)
        .unwrap_or("");
    let aggregation = [
        ("Sum", Aggregation::Sum),
        ("Min", Aggregation::Min),
        ("Max", Aggregation::Max),
        ("Avg", Aggregation::Avg),
    ]
    .into_iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(aggregation_name))
    .map(|(_, aggregation)| aggregation)
    .ok_or_else(|| {
        failure(format!(
            "the aggregation {} is not supported (Sum, Min, Max or Avg)",
            quoted(aggregation_name)
        ))
    })?;
    Ok(DerivedMetric {
        id: id.to_owned(),
        kind,
        groups,
        projection,
        aggregation,
    })
}

/// A `DocumentStreamInfo`: its invalid groups go to `parts`.
fn stream(
    id: &str,
    info: &Map<String, Value>,
    parts: &mut Vec<Problem>,
) -> Result<Stream, Problem> {
    let infos = list(get(info, "DocumentFilterGroups")).ok_or_else(|| {
        problem(
            ErrorType::DocumentStreamFailureToCreate,
            format!(
                "the document stream {}: DocumentFilterGroups is not a list",
                quoted(id)
            ),
        )
    })?;
    if infos.len() > MAX_GROUPS {
        return Err(problem(
            ErrorType::DocumentStreamFailureToCreate,
            format!(
                "the document stream {}: more than {MAX_GROUPS} filter groups",
                quoted(id)
            ),
        ));
    }
    let mut groups = Vec::new();
    for (index, group) in infos.iter().enumerate() {
        let context = format!(
            "the document stream {}: filter group {index} is skipped",
            quoted(id)
        );
        let shape = ErrorType::DocumentStreamFailureToCreateFilterUnexpected;
        let failure = |message: String| problem(shape, format!("{context}: {message}"));
        let built = group
            .as_object()
            .ok_or_else(|| failure("it is not an object".into()))
            .and_then(|group| {
                let kind = telemetry_type(get(group, "TelemetryType")).map_err(|name| {
                    failure(format!("the telemetry type {name} is not supported"))
                })?;
                // `Filters` is a `FilterConjunctionGroupInfo`: `{"Filters": [..]}`.
                let filters = match get(group, "Filters") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(filters)) => get(filters, "Filters"),
                    Some(_) => return Err(failure("Filters is not an object".into())),
                };
                Ok((kind, conjunction(kind, filters, shape, &context)?))
            });
        match built {
            Ok(group) => groups.push(group),
            Err(problem) => parts.push(problem),
        }
    }
    Ok(Stream {
        id: id.to_owned(),
        groups,
    })
}

/// The telemetry type `value` names, or its name (quoted) when it is not
/// a supported one.
fn telemetry_type(value: Option<&Value>) -> Result<ItemKind, String> {
    let Some(name) = value.and_then(Value::as_str) else {
        return Err(value.map_or("(none)".into(), |v| json_kind(v).into()));
    };
    [
        ("Request", ItemKind::Request),
        ("Dependency", ItemKind::Dependency),
        ("Exception", ItemKind::Exception),
        ("Trace", ItemKind::Trace),
    ]
    .into_iter()
    .find(|(n, _)| n.eq_ignore_ascii_case(name))
    .map(|(_, kind)| kind)
    .ok_or_else(|| quoted(name))
}

/// The filters of one group (the AND of them). A bad filter is a
/// `FilterFailureToCreateUnexpected`, a bad shape a `shape`; `context`
/// begins the message.
fn conjunction(
    kind: ItemKind,
    filters: Option<&Value>,
    shape: ErrorType,
    context: &str,
) -> Result<Vec<Test>, Problem> {
    let fail = |kind, message| problem(kind, format!("{context}: {message}"));
    let filters = list(filters).ok_or_else(|| fail(shape, "Filters is not a list".into()))?;
    if filters.len() > MAX_FILTERS {
        let message = format!("more than {MAX_FILTERS} filters in a group");
        return Err(fail(shape, message));
    }
    filters
        .iter()
        .map(|f| filter(kind, f).map_err(|m| fail(ErrorType::FilterFailureToCreateUnexpected, m)))
        .collect()
}

/// A `FilterInfo` for items of `kind`, or why not.
fn filter(kind: ItemKind, info: &Value) -> Result<Test, String> {
    let Some(info) = info.as_object() else {
        return Err(format!("a filter is {}, not an object", json_kind(info)));
    };
    let text = |key| get(info, key).and_then(Value::as_str);
    let (Some(name), Some(predicate_name), Some(comparand)) =
        (text("FieldName"), text("Predicate"), text("Comparand"))
    else {
        return Err("a filter needs the texts FieldName, Predicate and Comparand".into());
    };
    let shown = format!(
        "the filter `{} {} {}`",
        truncate_utf16(name, QUOTED),
        truncate_utf16(predicate_name, QUOTED),
        truncate_utf16(comparand, QUOTED)
    );
    let refuse = |why: &str| Err(format!("{shown}: {why}"));
    let Some(predicate) = predicate(predicate_name) else {
        return refuse("unknown predicate");
    };
    if comparand.is_empty() {
        return refuse("the comparand is empty");
    }
    if name == "*" {
        return if predicate.is_contains() {
            Ok(Test::Any {
                contains: predicate == Predicate::Contains,
                comparand: comparand.to_owned(),
            })
        } else {
            refuse("`*` takes only Contains or DoesNotContain")
        };
    }
    if strip_prefix_ignore_case(name, "CustomMetrics.").is_some() {
        return refuse("custom metrics are not supported");
    }
    if let Some(key) = strip_prefix_ignore_case(name, "CustomDimensions.") {
        if key.is_empty() {
            return refuse("CustomDimensions. needs a key");
        }
        return Ok(Test::Dimension {
            key: key.to_owned(),
            predicate,
            comparand: comparand.to_owned(),
            number: parse_number(comparand),
        });
    }
    let Some(field) = field(kind, name) else {
        return refuse(&format!("not a field of {kind:?} telemetry"));
    };
    match field {
        Field::Code | Field::Duration if predicate.is_contains() => {
            refuse("a number takes no Contains or DoesNotContain")
        }
        Field::Code => match comparand.trim().parse() {
            Ok(code) => Ok(Test::Code(predicate, code)),
            Err(_) => refuse("the comparand is not an integer"),
        },
        Field::Duration => match timespan_ms(comparand) {
            Some(ms) => Ok(Test::Duration(predicate, ms)),
            None => refuse("the comparand is not a [days].[hours]:[minutes]:[seconds] timespan"),
        },
        Field::Success => {
            let value = ["true", "false"]
                .into_iter()
                .find(|v| v.eq_ignore_ascii_case(comparand));
            match value {
                Some(value) if predicate.is_equality() => Ok(Test::Success(
                    (value == "true") == (predicate == Predicate::Equal),
                )),
                Some(_) => refuse("Success takes only Equal or NotEqual"),
                None => refuse("Success compares to true or false"),
            }
        }
        Field::Text(_) if !(predicate.is_equality() || predicate.is_contains()) => {
            refuse("a text field takes no ordering predicate")
        }
        Field::Text(text) => Ok(Test::Text(text, predicate, comparand.to_owned())),
    }
}

fn predicate(name: &str) -> Option<Predicate> {
    [
        ("Equal", Predicate::Equal),
        ("NotEqual", Predicate::NotEqual),
        ("LessThan", Predicate::LessThan),
        ("GreaterThan", Predicate::GreaterThan),
        ("LessThanOrEqual", Predicate::LessThanOrEqual),
        ("GreaterThanOrEqual", Predicate::GreaterThanOrEqual),
        ("Contains", Predicate::Contains),
        ("DoesNotContain", Predicate::DoesNotContain),
    ]
    .into_iter()
    .find(|(n, _)| n.eq_ignore_ascii_case(name))
    .map(|(_, p)| p)
}

/// Field `key` of a JSON object: the exact key, else one in another case.
fn get<'v>(object: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A list that may be absent or `null` (empty); `None` when it is
/// something else.
fn list(value: Option<&Value>) -> Option<&[Value]> {
    match value {
        None | Some(Value::Null) => Some(&[]),
        Some(Value::Array(list)) => Some(list),
        Some(_) => None,
    }
}

fn strip_prefix_ignore_case<'s>(text: &'s str, prefix: &str) -> Option<&'s str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// User text for a message: quoted, cut.
fn quoted(text: &str) -> String {
    format!("'{}'", truncate_utf16(text, QUOTED))
}
