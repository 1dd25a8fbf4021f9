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

/// Builds one entry from its `Id` and object (see [`accept`]).
type Build<T> = fn(&str, &Map<String, Value>, &mut Vec<Problem>) -> Result<T, Problem>;

/// Builds the valid entries of `infos` (at most `entries.max`), reporting
/// the others: not an object or no `Id`, a duplicate `Id` (of an accepted
/// entry), or whatever `build` finds. `build` reports the problems of
/// parts it skips in its `Vec` and still returns the entry.
fn accept<T>(
    entries: &Entries,
    infos: &[Value],
    errors: &mut Errors<'_>,
    build: Build<T>,
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::{json, Value};

    use super::*;
    use crate::live::item::Dimensions;

    const VECTORS: &str = include_str!("testdata/filter-vectors.json");
    const ETAG_1: &str = include_str!("testdata/configs-etag-1.json");

    /// Dimensions from pairs.
    struct Dims<'a>(&'a [(&'a str, &'a str)]);

    impl Dimensions for Dims<'_> {
        fn get(&self, key: &str) -> Option<Cow<'_, str>> {
            self.0
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| Cow::Borrowed(*v))
        }
        fn any_value(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
            self.0.iter().any(|(_, v)| f(v))
        }
        fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
            for (k, v) in self.0 {
                f(k, v)
            }
        }
    }

    const GOLD: Dims<'static> = Dims(&[("customer.tier", "gold")]);
    const SILVER: Dims<'static> = Dims(&[("customer.tier", "silver")]);
    const BATCH: Dims<'static> = Dims(&[("batch", "41")]);

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn parse(value: &Value) -> Configuration {
        Configuration::parse(value.to_string().as_bytes()).unwrap()
    }

    fn taken(configuration: &Configuration) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        configuration.take_metrics(&mut out);
        out
    }

    fn error_types(configuration: &Configuration) -> Vec<&str> {
        configuration
            .errors()
            .iter()
            .map(|e| e["CollectionConfigurationErrorType"].as_str().unwrap())
            .collect()
    }

    /// Whether a Count() metric of `item`'s type with one group of
    /// `filters` counts `item`.
    fn matches(filters: &Value, item: &Item<'_>) -> bool {
        let configuration = parse(&json!({
            "ETag": "e",
            "Metrics": [{
                "Id": "m",
                "TelemetryType": format!("{:?}", item.kind),
                "FilterGroups": [{"Filters": filters}],
                "Projection": "Count()",
                "Aggregation": "Sum",
            }],
        }));
        assert_eq!(configuration.errors(), &[] as &[Value], "{filters}");
        configuration.observe(item);
        match taken(&configuration)[..] {
            [(_, value)] => value == 1.0,
            ref other => panic!("{other:?}"),
        }
    }

    /// One second of the reference traffic: 5 requests, 4 dependencies,
    /// 2 exceptions, 1 trace. A request or dependency succeeds when its
    /// status is not an error and its HTTP code is below 400.
    fn traffic() -> Vec<Item<'static>> {
        let request = |name, url, code, text, ms, success, dims: &'static Dims<'static>| Item {
            name,
            url,
            result_code: Some(code),
            result_text: text,
            duration_ms: ms,
            success,
            dimensions: dims,
            ..Item::empty(ItemKind::Request)
        };
        let dependency = |name, target, kind, data, code, text, ms, success| Item {
            name,
            target,
            dependency_type: kind,
            data,
            result_code: code,
            result_text: text,
            duration_ms: ms,
            success,
            ..Item::empty(ItemKind::Dependency)
        };
        let exception = |kind, message, stack| Item {
            exception_type: kind,
            message,
            stack,
            ..Item::empty(ItemKind::Exception)
        };
        vec![
            request(
                "GET /api/items/{id}",
                "http://example.local:8080/api/items/0",
                200,
                "200",
                120.0,
                true,
                &GOLD,
            ),
            request(
                "GET /api/items/{id}",
                "http://example.local:8080/api/items/1",
                200,
                "200",
                120.0,
                true,
                &GOLD,
            ),
            request(
                "GET /api/items/{id}",
                "http://example.local:8080/api/items/2",
                200,
                "200",
                120.0,
                true,
                &GOLD,
            ),
            request(
                "POST /api/orders",
                "https://example.local/api/orders",
                500,
                "500",
                250.0,
                false,
                &SILVER,
            ),
            request(
                "GET /missing",
                "http://example.local/missing",
                404,
                "404",
                5.0,
                false,
                &Dims(&[]),
            ),
            dependency(
                "GET",
                "api.example.com",
                "HTTP",
                "https://api.example.com/v1/x?q=1",
                Some(200),
                "200",
                40.0,
                true,
            ),
            dependency(
                "POST",
                "pay.example.com",
                "HTTP",
                "https://pay.example.com/charge",
                Some(503),
                "503",
                1500.0,
                false,
            ),
            dependency(
                "SELECT orders",
                "db.local",
                "postgresql",
                "SELECT * FROM orders",
                None,
                "0",
                8.0,
                true,
            ),
            dependency("compute-total", "", "InProc", "", None, "0", 2.0, true),
            exception("ValueError", "order 41 failed", ""),
            exception(
                "KeyError",
                "missing key 'sku'",
                "Traceback ...\nKeyError: 'sku'",
            ),
            Item {
                message: "processed batch 41",
                dimensions: &BATCH,
                ..Item::empty(ItemKind::Trace)
            },
        ]
    }

    #[test]
    fn timespans() {
        let vectors = vectors();
        let cases = vectors["timespan_ms"].as_object().unwrap();
        assert!(cases.len() >= 8);
        for (text, expected) in cases {
            assert_eq!(timespan_ms(text), expected.as_f64(), "{text:?}");
        }
        assert_eq!(timespan_ms("0.0:0:0.1234567891"), Some(123.456789));
    }

    #[test]
    fn filters_on_requests() {
        let vectors = vectors();
        for (request, cases) in [
            ("request_post_orders_500", "filters_on_post_orders_500"),
            ("request_get_missing_404", "filters_on_get_missing_404"),
        ] {
            let r = &vectors[request];
            let code = r["ResponseCode"].as_i64().unwrap();
            let text = code.to_string();
            let pairs: Vec<(&str, &str)> = r["CustomDimensions"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
                .collect();
            let dims = Dims(&pairs);
            let item = Item {
                name: r["Name"].as_str().unwrap(),
                url: r["Url"].as_str().unwrap(),
                result_code: Some(code),
                result_text: &text,
                duration_ms: r["DurationMs"].as_f64().unwrap(),
                success: r["Success"].as_bool().unwrap(),
                dimensions: &dims,
                ..Item::empty(ItemKind::Request)
            };
            let cases = vectors[cases].as_array().unwrap();
            assert!(cases.len() >= 4);
            for case in cases {
                let expected = case["expected"].as_bool().unwrap();
                assert_eq!(
                    matches(&case["filters"], &item),
                    expected,
                    "{}",
                    case["name"]
                );
            }
        }
    }

    #[test]
    fn derived_metric_validation() {
        let vectors = vectors();
        let cases = vectors["validate_derived_metric"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for case in cases {
            let name = &case["name"];
            let configuration = parse(&json!({"ETag": "e", "Metrics": [case["metric"]]}));
            match case["error"].as_str() {
                None => {
                    assert_eq!(configuration.errors(), &[] as &[Value], "{name}");
                    assert_eq!(taken(&configuration), [("m".to_owned(), 0.0)], "{name}");
                }
                Some(expected) => {
                    assert_eq!(error_types(&configuration), [expected], "{name}");
                    let error = &configuration.errors()[0];
                    let data =
                        json!([{"key": "MetricId", "value": "m"}, {"key": "ETag", "value": "e"}]);
                    assert_eq!(error["Data"], data, "{name}");
                    assert!(!error["Message"].as_str().unwrap().is_empty());
                    assert_eq!(taken(&configuration), [], "{name}");
                }
            }
        }
    }

    #[test]
    fn etag_1_over_the_reference_traffic() {
        let configuration = Configuration::parse(ETAG_1.as_bytes()).unwrap();
        assert_eq!(
            error_types(&configuration),
            ["MetricTelemetryTypeUnsupported", "MetricDuplicateIds"]
        );
        for item in &traffic() {
            configuration.observe(item);
        }
        let expected = [
            ("req-dur-gold-avg", 120.0),
            ("failed-req-count", 2.0),
            ("slow-dep-max", 1500.0),
            ("dep-dur-max-all", 1500.0),
            ("exc-count", 2.0),
            ("trace-batch-min", 41.0),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(id, v)| (id.to_string(), *v))
            .collect();
        assert_eq!(taken(&configuration), expected);
        // A new interval: every metric again, at 0.
        let zeros: Vec<_> = expected.iter().map(|(id, _)| (id.clone(), 0.0)).collect();
        assert_eq!(taken(&configuration), zeros);
    }

    #[test]
    fn etag_1_documents() {
        let failures = Some(vec!["stream-failures".to_owned()]);
        let requests = Some(vec!["stream-all-requests".to_owned()]);
        let both = Some(vec![
            "stream-failures".to_owned(),
            "stream-all-requests".to_owned(),
        ]);
        let expected = [
            requests.clone(),
            requests.clone(),
            requests.clone(),
            both.clone(),
            both,
            None,
            failures.clone(),
            None,
            None,
            failures.clone(),
            failures.clone(),
            // No stream has a Trace group.
            None,
        ];
        // Items two seconds apart: the quotas never run short.
        let configuration = Configuration::parse(ETAG_1.as_bytes()).unwrap();
        for (i, (item, expected)) in traffic().iter().zip(&expected).enumerate() {
            assert_eq!(
                &configuration.stream_ids(item, 2.0 * i as f64),
                expected,
                "{i}"
            );
        }
        // All at once: each stream takes 3 documents of a type.
        let configuration = Configuration::parse(ETAG_1.as_bytes()).unwrap();
        let mut at_once = expected;
        at_once[3] = failures.clone();
        at_once[4] = failures;
        for (i, (item, expected)) in traffic().iter().zip(&at_once).enumerate() {
            assert_eq!(&configuration.stream_ids(item, 0.5), expected, "{i}");
        }
    }

    fn request_named(name: &'static str) -> Item<'static> {
        Item {
            name,
            ..Item::empty(ItemKind::Request)
        }
    }

    fn streams(quota: Value) -> Configuration {
        let group = |comparand| {
            json!({"TelemetryType": "Request", "Filters": {"Filters": [
            {"FieldName": "Name", "Predicate": "Equal", "Comparand": comparand}]}})
        };
        parse(&json!({
            "ETag": "q",
            "DocumentStreams": [
                {"Id": "a", "DocumentFilterGroups": [group("a"),
                    {"TelemetryType": "Exception", "Filters": {"Filters": []}}]},
                {"Id": "b", "DocumentFilterGroups": [group("b")]},
            ],
            "QuotaInfo": quota,
        }))
    }

    /// How many of `n` requests named `name` at `now` stream `name` takes.
    fn takes(configuration: &Configuration, name: &'static str, now: f64, n: usize) -> usize {
        (0..n)
            .filter(|_| {
                configuration
                    .stream_ids(&request_named(name), now)
                    .is_some()
            })
            .count()
    }

    #[test]
    fn quotas() {
        // Defaults: 3 at first, then 30 / 60 = 0.5 a second, at most 30.
        let c = streams(Value::Null);
        assert_eq!(takes(&c, "a", 10.0, 5), 3);
        assert_eq!(takes(&c, "a", 11.0, 5), 0);
        assert_eq!(takes(&c, "a", 12.0, 5), 1);
        assert_eq!(takes(&c, "a", 1e9, 50), 30);
        // Another stream, and another type of the same stream, have their own.
        assert_eq!(takes(&c, "b", 1e9, 5), 3);
        let exception = Item::empty(ItemKind::Exception);
        assert_eq!(c.stream_ids(&exception, 1e9), Some(vec!["a".to_owned()]));
        // The clock going back, or not finite, accrues nothing.
        assert_eq!(takes(&c, "b", 0.0, 5), 0);
        assert_eq!(takes(&c, "b", f64::NAN, 5), 0);
        assert_eq!(takes(&c, "b", f64::INFINITY, 5), 0);
        assert_eq!(takes(&c, "b", 1e9 + 2.0, 5), 1);

        let c = streams(json!({"InitialQuota": 1, "MaxQuota": 2, "QuotaAccrualRatePerSec": 0.25}));
        assert_eq!(takes(&c, "a", 0.0, 5), 1);
        assert_eq!(takes(&c, "a", 3.0, 5), 0);
        assert_eq!(takes(&c, "a", 4.0, 5), 1);
        assert_eq!(takes(&c, "a", 100.0, 5), 2);
        // Without a rate: MaxQuota / 60.
        let c = streams(json!({"InitialQuota": 0, "MaxQuota": 120}));
        assert_eq!(takes(&c, "a", 0.0, 5), 0);
        assert_eq!(takes(&c, "a", 1.0, 5), 2);

        // Hostile numbers clamp.
        let c = streams(
            json!({"InitialQuota": 1e300, "MaxQuota": -5, "QuotaAccrualRatePerSec": 1e300}),
        );
        assert_eq!(takes(&c, "a", 0.0, 3), 0);
        assert_eq!(takes(&c, "a", 1e300, 3), 0);
        let c =
            streams(json!({"InitialQuota": "9", "MaxQuota": 1e300, "QuotaAccrualRatePerSec": -1}));
        assert_eq!(takes(&c, "a", 0.0, 5), 3);
        assert_eq!(takes(&c, "a", 1e300, 5), 0);
        let c = streams(json!({"QuotaAccrualRatePerSec": 0}));
        assert_eq!(takes(&c, "a", -1e308, 5), 3);
        assert_eq!(takes(&c, "a", 1e308, 5), 0);
        let c = streams(json!("not an object"));
        assert_eq!(takes(&c, "a", 0.0, 5), 3);
    }

    #[test]
    fn error_objects() {
        let metric = |id: &str, kind: &str| {
            json!({"Id": id, "TelemetryType": kind, "FilterGroups": [],
                   "Projection": "Count()", "Aggregation": "Sum"})
        };
        let configuration = parse(&json!({
            "ETag": "etag-9",
            "Metrics": [metric("m1", "Request"), metric("m1", "Trace"), metric("pc", "PerformanceCounter")],
            "DocumentStreams": [
                {"Id": "s", "DocumentFilterGroups": []},
                {"Id": "s", "DocumentFilterGroups": []},
            ],
        }));
        let error = |kind: &str, message: &str, key: &str, id: &str| {
            json!({
                "CollectionConfigurationErrorType": kind,
                "Message": message,
                "FullException": "",
                "Data": [{"key": key, "value": id}, {"key": "ETag", "value": "etag-9"}],
            })
        };
        assert_eq!(
            configuration.errors(),
            [
                error(
                    "MetricDuplicateIds",
                    "the derived metric 'm1' has the Id of an earlier one; it is ignored",
                    "MetricId",
                    "m1"
                ),
                error(
                    "MetricTelemetryTypeUnsupported",
                    "the derived metric 'pc': the telemetry type 'PerformanceCounter' is not \
                     supported (Request, Dependency, Exception or Trace)",
                    "MetricId",
                    "pc"
                ),
                error(
                    "DocumentStreamDuplicateIds",
                    "the document stream 's' has the Id of an earlier one; it is ignored",
                    "DocumentStreamId",
                    "s"
                ),
            ]
        );
        assert_eq!(taken(&configuration), [("m1".to_owned(), 0.0)]);
    }

    #[test]
    fn a_stream_keeps_its_valid_groups() {
        let configuration = parse(&json!({
            "ETag": "g",
            "DocumentStreams": [{"Id": "s", "DocumentFilterGroups": [
                {"TelemetryType": "Trace", "Filters": {"Filters": [
                    {"FieldName": "Message", "Predicate": "LessThan", "Comparand": "x"}]}},
                {"TelemetryType": "Event", "Filters": {"Filters": []}},
                {"TelemetryType": "Request", "Filters": {"Filters": [
                    {"FieldName": "Success", "Predicate": "Equal", "Comparand": "false"}]}},
                "garbage",
                {"TelemetryType": "Exception", "Filters": [1]},
                {"TelemetryType": "Dependency"},
            ]}],
        }));
        assert_eq!(
            error_types(&configuration),
            [
                "FilterFailureToCreateUnexpected",
                "DocumentStreamFailureToCreateFilterUnexpected",
                "DocumentStreamFailureToCreateFilterUnexpected",
                "DocumentStreamFailureToCreateFilterUnexpected",
            ]
        );
        let data =
            json!([{"key": "DocumentStreamId", "value": "s"}, {"key": "ETag", "value": "g"}]);
        assert!(configuration.errors().iter().all(|e| e["Data"] == data));
        let ids = |item: &Item<'_>| configuration.stream_ids(item, 0.0);
        let failed = Item {
            success: false,
            ..Item::empty(ItemKind::Request)
        };
        assert_eq!(ids(&failed), Some(vec!["s".to_owned()]));
        assert_eq!(ids(&Item::empty(ItemKind::Request)), None);
        assert_eq!(ids(&Item::empty(ItemKind::Trace)), None);
        assert_eq!(ids(&Item::empty(ItemKind::Exception)), None);
        // A group without `Filters` takes every item of its type.
        assert_eq!(
            ids(&Item::empty(ItemKind::Dependency)),
            Some(vec!["s".to_owned()])
        );
    }

    #[test]
    fn projections_and_aggregations() {
        let metric = |id: &str, aggregation: &str| {
            json!({"Id": id, "TelemetryType": "Trace", "Projection": "CustomDimensions.v",
                   "Aggregation": aggregation})
        };
        let configuration = parse(&json!({"Metrics": [
            metric("sum", "Sum"), metric("min", "min"), metric("max", "MAX"), metric("avg", "Avg"),
            {"Id": "n", "TelemetryType": "Trace", "Projection": "Count()", "Aggregation": "Sum",
             "FilterGroups": [
                {"Filters": [{"FieldName": "CustomDimensions.v", "Predicate": "GreaterThan", "Comparand": "2.5"}]},
                {"Filters": [{"FieldName": "CustomDimensions.v", "Predicate": "Equal", "Comparand": "x"}]},
             ]},
        ]}));
        assert_eq!(configuration.errors(), &[] as &[Value]);
        for dims in [
            Dims(&[("v", "2")]),
            Dims(&[("v", " 4.0 ")]),
            Dims(&[("v", "x")]),
            Dims(&[("v", "inf")]),
            Dims(&[("v", "NaN")]),
            Dims(&[("w", "7")]),
        ] {
            configuration.observe(&Item {
                dimensions: &dims,
                ..Item::empty(ItemKind::Trace)
            });
        }
        // "x", "inf", "NaN" and the missing `v` are skipped by the
        // projections; `n` counts 4.0 (> 2.5) and "x" (== "x").
        let expected = [
            ("sum", 6.0),
            ("min", 2.0),
            ("max", 4.0),
            ("avg", 3.0),
            ("n", 2.0),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(id, v)| (id.to_string(), *v))
            .collect();
        assert_eq!(taken(&configuration), expected);
        let zeros: Vec<_> = expected.iter().map(|(id, _)| (id.clone(), 0.0)).collect();
        assert_eq!(taken(&configuration), zeros);
        // Huge values stay finite.
        for _ in 0..3 {
            configuration.observe(&Item {
                dimensions: &Dims(&[("v", "1e308")]),
                ..Item::empty(ItemKind::Trace)
            });
        }
        assert_eq!(taken(&configuration)[0], ("sum".to_owned(), f64::MAX));
    }

    #[test]
    fn other_fields() {
        let items = traffic();
        let (db, key_error) = (&items[7], &items[10]);
        let f = |name: &str, predicate: &str, comparand: &str| json!([{"FieldName": name, "Predicate": predicate, "Comparand": comparand}]);
        assert!(matches(
            &f("Exception.StackTrace", "Contains", "keyerror: 'SKU'"),
            key_error
        ));
        assert!(matches(
            &f("exception.message", "Equal", "missing key 'sku'"),
            key_error
        ));
        assert!(matches(&f("*", "Contains", "keyERROR"), key_error));
        assert!(!matches(&f("*", "DoesNotContain", "sku"), key_error));
        assert!(matches(&f("Type", "Equal", "postgresql"), db));
        assert!(matches(&f("Data", "Contains", "from ORDERS"), db));
        assert!(matches(&f("Target", "NotEqual", "db"), db));
        // No numeric result code: no numeric filter matches.
        assert!(!matches(&f("ResultCode", "NotEqual", "200"), db));
        assert!(!matches(&f("ResultCode", "Equal", "0"), db));
        assert!(matches(
            &f("Duration", "LessThanOrEqual", "0.0:0:0.008"),
            db
        ));
        assert!(matches(&f("Success", "NotEqual", "FALSE"), db));
        // Text orderings on dimensions do not match; numbers do.
        let trace = &items[11];
        assert!(matches(
            &f("CustomDimensions.batch", "GreaterThanOrEqual", "41.0"),
            trace
        ));
        assert!(matches(
            &f("CustomDimensions.batch", "Equal", "41.0"),
            trace
        ));
        assert!(!matches(&f("CustomDimensions.batch", "Equal", "x"), trace));
        assert!(matches(
            &f("CustomDimensions.batch", "NotEqual", "x"),
            trace
        ));
        assert!(!matches(
            &f("CustomDimensions.batch", "LessThan", "x"),
            trace
        ));
        assert!(matches(&f("Message", "DoesNotContain", "ünïcode"), trace));
        // Two groups: either.
        let either = json!([
            {"Filters": f("Message", "Contains", "nothing")},
            {"Filters": f("Message", "Contains", "BATCH")},
        ]);
        let configuration = parse(&json!({"Metrics": [{"Id": "t", "TelemetryType": "Trace",
            "FilterGroups": either, "Projection": "Count()", "Aggregation": "Sum"}]}));
        configuration.observe(trace);
        configuration.observe(&items[0]);
        assert_eq!(taken(&configuration), [("t".to_owned(), 1.0)]);
    }

    #[test]
    fn parse_errors() {
        for body in [
            &b""[..],
            b"   ",
            b"{not json",
            b"null",
            b"[]",
            b"42",
            b"\"x\"",
            b"true",
            b"{} x",
        ] {
            let error = Configuration::parse(body).unwrap_err().to_string();
            assert!(!error.is_empty(), "{body:?}");
        }
        assert!(Configuration::parse(b"[{\"ETag\": \"e\"}]")
            .unwrap_err()
            .to_string()
            .contains("a list"));
        let configuration = Configuration::parse(b"\xEF\xBB\xBF{}").unwrap();
        assert!(configuration.errors().is_empty());
        assert_eq!(taken(&configuration), []);
    }

    #[test]
    fn bounds() {
        let metric = |i: usize| {
            json!({"Id": format!("m{i}"), "TelemetryType": "Request", "Projection": "Count()",
                   "Aggregation": "Sum"})
        };
        let configuration = parse(&json!({"Metrics": (0..600).map(metric).collect::<Vec<_>>()}));
        assert_eq!(taken(&configuration).len(), MAX_METRICS);
        assert_eq!(error_types(&configuration), ["MetricFailureToCreate"]);
        let message = configuration.errors()[0]["Message"].as_str().unwrap();
        assert!(message.contains("100 after them"), "{message}");

        let streams: Vec<_> = (0..600)
            .map(|i| json!({"Id": format!("s{i}"), "DocumentFilterGroups": [{"TelemetryType": "Trace"}]}))
            .collect();
        let configuration = parse(&json!({"DocumentStreams": streams}));
        let ids = configuration
            .stream_ids(&Item::empty(ItemKind::Trace), 0.0)
            .unwrap();
        assert_eq!(ids.len(), MAX_STREAMS);
        assert_eq!(
            error_types(&configuration),
            ["DocumentStreamFailureToCreate"]
        );

        let configuration = parse(&json!({"Metrics": vec![json!(1); 10_000]}));
        assert_eq!(configuration.errors().len(), MAX_ERRORS + 1);
        let last = &configuration.errors()[MAX_ERRORS]["Message"];
        assert!(
            last.as_str().unwrap().starts_with("9900 more problems"),
            "{last}"
        );

        let filters =
            vec![json!({"FieldName": "Name", "Predicate": "Equal", "Comparand": "x"}); 101];
        let configuration = parse(&json!({"Metrics": [{"Id": "m", "TelemetryType": "Request",
            "FilterGroups": [{"Filters": filters}], "Projection": "Count()", "Aggregation": "Sum"}]}));
        assert_eq!(error_types(&configuration), ["MetricFailureToCreate"]);
    }

    /// Odd bodies: nothing panics, errors stay bounded and well formed.
    #[test]
    fn garbage() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let huge_id = "x".repeat(100_000);
        let bodies = [
            "{}".to_owned(),
            r#"{"ETag": 5, "Metrics": 5, "DocumentStreams": "x", "QuotaInfo": []}"#.to_owned(),
            r#"{"Metrics": [1, "x", null, [], {}, {"Id": 5}, {"Id": ""}, {"Id": "a", "TelemetryType": 7}]}"#.to_owned(),
            r#"{"Metrics": [{"Id": "a", "TelemetryType": "Request", "FilterGroups": "x"}]}"#.to_owned(),
            r#"{"Metrics": [{"Id": "a", "TelemetryType": "Request", "FilterGroups": [5, null]}]}"#.to_owned(),
            r#"{"Metrics": [{"Id": "a", "TelemetryType": "Request", "FilterGroups": [{"Filters": {"x": 1}}]}]}"#.to_owned(),
            r#"{"Metrics": [{"Id": "a", "TelemetryType": "Request", "Projection": "Count()", "Aggregation": "Sum",
                "FilterGroups": [{"Filters": [{"FieldName": "Duration", "Predicate": "Equal",
                "Comparand": "99999999999999999999.0:0:0"}]}]}]}"#.to_owned(),
            r#"{"Metrics": [{"Id": "a", "TelemetryType": "Request", "Projection": "Count()", "Aggregation": "Sum",
                "FilterGroups": [{"Filters": [{"FieldName": "ResponseCode", "Predicate": "Equal",
                "Comparand": "99999999999999999999"}]}]}]}"#.to_owned(),
            r#"{"Metrics": [{"Id": "a", "TelemetryType": "Request", "Projection": "Count()", "Aggregation": "Sum",
                "FilterGroups": [{"Filters": [{"FieldName": "CustomDimensions.é", "Predicate": "LessThan",
                "Comparand": "1e308"}, {"FieldName": "*", "Predicate": "DoesNotContain", "Comparand": "é"}]}]}]}"#.to_owned(),
            r#"{"DocumentStreams": [1, {"Id": "s"}, {"Id": "t", "DocumentFilterGroups": {"a": 1}},
                {"Id": "u", "DocumentFilterGroups": [{"TelemetryType": "Request", "Filters": "x"}]}]}"#.to_owned(),
            r#"{"QuotaInfo": {"InitialQuota": -1e308, "MaxQuota": 1e308, "QuotaAccrualRatePerSec": 1e308},
                "DocumentStreams": [{"Id": "s", "DocumentFilterGroups": [{"TelemetryType": "Request"},
                {"TelemetryType": "Trace"}, {"TelemetryType": "Exception"}, {"TelemetryType": "Dependency"}]}]}"#.to_owned(),
            r#"{"QuotaInfo": {"MaxQuota": 1e400}}"#.to_owned(),
            format!(r#"{{"ETag": {}}}"#, deep(100)),
            format!(r#"{{"Metrics": {}}}"#, deep(120)),
            deep(100_000),
            format!(r#"{{"Metrics": [{{"Id": "{huge_id}", "TelemetryType": "{huge_id}"}}]}}"#),
            format!(r#"{{"Metrics": [{{"Id": "a", "TelemetryType": "Trace", "Projection": "{huge_id}"}}]}}"#),
            "{\"Metrics\": [{\"Id\": \"\u{0}\u{ffff}\", \"TelemetryType\": \"Trace\", \"Projection\": \"CustomDimensions.\u{1F600}\", \"Aggregation\": \"Avg\"}]}".to_owned(),
        ];
        let items = traffic();
        for body in &bodies {
            let Ok(configuration) = Configuration::parse(body.as_bytes()) else {
                continue;
            };
            assert!(configuration.errors().len() <= MAX_ERRORS + 1);
            for error in configuration.errors() {
                let error = error.as_object().unwrap();
                assert_eq!(error.len(), 4);
                assert!(error["Message"].as_str().unwrap().len() < 1000);
                assert_eq!(error["FullException"], "");
                assert!(error["Data"].is_array());
            }
            for now in [
                0.0,
                -1.0,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                1e308,
                -1e308,
                5.0,
            ] {
                for item in &items {
                    configuration.observe(item);
                    let _ = configuration.stream_ids(item, now);
                }
            }
            let mut out = Vec::new();
            configuration.take_metrics(&mut out);
            assert!(out.iter().all(|(_, v)| v.is_finite()));
        }
        assert!(Configuration::parse(deep(100_000).as_bytes()).is_err());
    }

    #[test]
    fn shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Configuration>();
        // A poisoned lock is recovered.
        let configuration = std::sync::Arc::new(Configuration::parse(ETAG_1.as_bytes()).unwrap());
        let poisoner = configuration.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.state.lock();
            panic!("poison");
        })
        .join();
        configuration.observe(&traffic()[9]);
        assert_eq!(taken(&configuration)[4], ("exc-count".to_owned(), 1.0));
    }
}
