//! The Live Metrics wire format (API `2024-04-01-preview`): URLs, the
//! `x-ms-qps-*` headers, the `MonitoringDataPoint` JSON, the metric names
//! and .NET ticks.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::document::Document;

/// The API version every request names.
pub(crate) const API_VERSION: &str = "2024-04-01-preview";
/// The path of the "is anyone watching?" request.
pub(crate) const PING_PATH: &str = "/QuickPulseService.svc/ping";
/// The path of the once-a-second data point.
pub(crate) const POST_PATH: &str = "/QuickPulseService.svc/post";
/// `InvariantVersion`: 5 = the client supports filtering (derived metrics
/// and document streams).
pub(crate) const INVARIANT_VERSION: u32 = 5;

/// Request headers.
pub(crate) mod header {
    pub(crate) const TRANSMISSION_TIME: &str = "x-ms-qps-transmission-time";
    pub(crate) const MACHINE_NAME: &str = "x-ms-qps-machine-name";
    pub(crate) const INSTANCE_NAME: &str = "x-ms-qps-instance-name";
    pub(crate) const STREAM_ID: &str = "x-ms-qps-stream-id";
    pub(crate) const ROLE_NAME: &str = "x-ms-qps-role-name";
    pub(crate) const INVARIANT_VERSION: &str = "x-ms-qps-invariant-version";
    pub(crate) const CONFIGURATION_ETAG: &str = "x-ms-qps-configuration-etag";
    /// Response: `true` when someone watches.
    pub(crate) const SUBSCRIBED: &str = "x-ms-qps-subscribed";
    /// Response: the ping interval the service wants, in milliseconds.
    pub(crate) const POLLING_HINT: &str = "x-ms-qps-service-polling-interval-hint";
    /// Response: the host to use from now on.
    pub(crate) const REDIRECT: &str = "x-ms-qps-service-endpoint-redirect-v2";
}

/// The standard metric names (single backslashes on the wire).
pub(crate) mod metric {
    pub(crate) const REQUESTS: &str = r"\ApplicationInsights\Requests/Sec";
    pub(crate) const REQUESTS_FAILED: &str = r"\ApplicationInsights\Requests Failed/Sec";
    pub(crate) const REQUEST_DURATION: &str = r"\ApplicationInsights\Request Duration";
    pub(crate) const DEPENDENCIES: &str = r"\ApplicationInsights\Dependency Calls/Sec";
    pub(crate) const DEPENDENCIES_FAILED: &str =
        r"\ApplicationInsights\Dependency Calls Failed/Sec";
    pub(crate) const DEPENDENCY_DURATION: &str = r"\ApplicationInsights\Dependency Call Duration";
    pub(crate) const EXCEPTIONS: &str = r"\ApplicationInsights\Exceptions/Sec";
    pub(crate) const COMMITTED_BYTES: &str = r"\Memory\Committed Bytes";
    pub(crate) const PHYSICAL_BYTES: &str = r"\Process\Physical Bytes";
    pub(crate) const PROCESSOR_TIME: &str = r"\Processor(_Total)\% Processor Time";
    pub(crate) const PROCESS_CPU_NORMALIZED: &str = r"\% Process\Processor Time Normalized";
}

/// `{base}{path}?api-version=…&ikey=…`, `base` with or without its
/// trailing `/`.
pub(crate) fn url(base: &str, path: &str, ikey: &str) -> String {
    format!(
        "{}{path}?api-version={API_VERSION}&ikey={ikey}",
        base.trim_end_matches('/')
    )
}

/// .NET ticks (100 ns since 0001-01-01T00:00:00Z) of `time`.
pub(crate) fn dotnet_ticks(time: SystemTime) -> u64 {
    const UNIX_EPOCH_TICKS: u64 = 621_355_968_000_000_000;
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH_TICKS + (d.as_nanos() / 100) as u64,
        Err(e) => UNIX_EPOCH_TICKS.saturating_sub((e.duration().as_nanos() / 100) as u64),
    }
}

/// Who sends: the fields a ping's body and every post's data point carry.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Identity {
    pub(crate) version: String,
    pub(crate) invariant_version: u32,
    pub(crate) instance: String,
    pub(crate) role_name: String,
    pub(crate) machine_name: String,
    pub(crate) stream_id: String,
    pub(crate) is_web_app: bool,
    pub(crate) performance_collection_supported: bool,
}

/// One `MetricPoint`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct MetricPoint {
    pub(crate) name: String,
    pub(crate) value: f64,
    pub(crate) weight: u32,
}

impl MetricPoint {
    pub(crate) fn new(name: impl Into<String>, value: f64) -> Self {
        MetricPoint {
            name: name.into(),
            // NaN and infinities are not JSON.
            value: if value.is_finite() { value } else { 0.0 },
            weight: 1,
        }
    }
}

/// A post's `MonitoringDataPoint`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DataPoint<'a, E: Serialize> {
    #[serde(flatten)]
    pub(crate) identity: &'a Identity,
    /// Collection time, RFC 3339 UTC with microseconds.
    pub(crate) timestamp: String,
    pub(crate) metrics: &'a [MetricPoint],
    pub(crate) documents: &'a [Document],
    /// Problems in the collection configuration, so the portal shows them.
    #[serde(skip_serializing_if = "<[E]>::is_empty")]
    pub(crate) collection_configuration_errors: &'a [E],
}

/// RFC 3339 with microseconds and `Z`.
pub(crate) fn timestamp(time: SystemTime) -> String {
    let bytes = crate::time::iso8601_bytes(time);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn ticks_match_the_reference_vectors() {
        assert_eq!(dotnet_ticks(UNIX_EPOCH), 621_355_968_000_000_000);
        // 2026-12-01T21:45:55.7617976Z
        let t = UNIX_EPOCH + Duration::new(1_796_161_555, 761_797_600);
        assert_eq!(dotnet_ticks(t), 639_317_583_557_617_976);
    }

    #[test]
    fn urls_join_with_one_slash() {
        let zeros = "00000000-0000-0000-0000-000000000000";
        let want = "http://127.0.0.1:18103/QuickPulseService.svc/post?api-version=2024-04-01-preview&ikey=00000000-0000-0000-0000-000000000000";
        assert_eq!(url("http://127.0.0.1:18103/", POST_PATH, zeros), want);
        assert_eq!(url("http://127.0.0.1:18103", POST_PATH, zeros), want);
    }

    #[test]
    fn non_finite_values_are_sent_as_zero() {
        assert_eq!(MetricPoint::new("x", f64::NAN).value, 0.0);
        assert_eq!(MetricPoint::new("x", f64::INFINITY).value, 0.0);
    }
}
