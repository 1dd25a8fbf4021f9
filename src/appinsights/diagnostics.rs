//! What the sink tells the application's logs: each kind of trouble once
//! at warning (or error) level, then at debug level.

use std::time::Duration;

use super::response::{DropReason, RetryReason};
use super::AppInsightsSink;
use crate::diag;

/// Which kinds of trouble were already reported at warning level (later
/// ones go to debug level, so a dead endpoint does not flood the logs).
#[derive(Debug, Default)]
pub(super) struct Warned {
    pub(super) retry: diag::Once,
    pub(super) network: diag::Once,
    pub(super) partial: diag::Once,
    pub(super) dropped: diag::Once,
    pub(super) no_storage: diag::Once,
    pub(super) unencodable: diag::Once,
    pub(super) too_old: diag::Once,
    pub(super) corrupt: diag::Once,
    pub(super) oversize: diag::Once,
    pub(super) quota: diag::Once,
    pub(super) slow: diag::Once,
    pub(super) redirect: diag::Once,
    pub(super) unauthorized: diag::Once,
    pub(super) forbidden: diag::Once,
    pub(super) credential: diag::Once,
    pub(super) processor_panic: diag::Once,
}

/// `5 minutes`, `42 s`: a duration for a log line.
fn humantime(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 60 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} s"),
    }
}

impl AppInsightsSink {
    pub(super) fn report_retry(&self, reason: &RetryReason, after: Option<Duration>, n: usize) {
        let (warned, what) = match reason {
            RetryReason::Status(401) if self.auth.is_bearer() => (
                &self.warned.unauthorized,
                "the ingestion service refused the bearer token (401); it was dropped, and \
                 the batch goes again with a new one"
                    .to_owned(),
            ),
            RetryReason::Status(401) => (
                &self.warned.unauthorized,
                "the ingestion service answered 401: the resource may accept only Microsoft \
                 Entra ID tokens (local authentication disabled); give the exporter a \
                 credential (Builder::with_credential, feature `entra`)"
                    .to_owned(),
            ),
            RetryReason::Status(403) => (
                &self.warned.forbidden,
                "the ingestion service answered 403: the identity may not send to this \
                 resource; give it the `Monitoring Metrics Publisher` role on the Application \
                 Insights resource (a new role assignment can take minutes to apply); sending \
                 pauses and backs off, and what waits goes to offline storage (if on)"
                    .to_owned(),
            ),
            RetryReason::Credential(error) => (
                &self.warned.credential,
                format!(
                    "{error}; sending pauses and backs off, and what waits goes to offline \
                     storage (if on)"
                ),
            ),
            RetryReason::Status(status) => (
                &self.warned.retry,
                format!("the ingestion service answered {status}"),
            ),
            RetryReason::Timeout => (&self.warned.network, "the request timed out".to_owned()),
            RetryReason::Connect(error) => (
                &self.warned.network,
                format!("could not reach the ingestion endpoint ({error})"),
            ),
            RetryReason::Quota(status, message) => (
                &self.warned.quota,
                format!(
                    "the ingestion service answered {status} ({message}): the resource is over \
                     its daily cap or throttled; nothing is sent until its Retry-After, or for \
                     {} without one, and what waits goes to offline storage (if on)",
                    humantime(super::retry::QUOTA_PROBE_INTERVAL)
                ),
            ),
            RetryReason::RefusedRedirect(why) => (
                &self.warned.redirect,
                format!("a redirect was not followed: {why}"),
            ),
        };
        let after = after.map_or(String::new(), |a| format!(" (Retry-After {a:?})"));
        warned.warn(format_args!(
            "Exporter.Retrying: {what}{after}; {n} items will be sent again"
        ));
    }

    pub(super) fn report_drop(&self, reason: &DropReason, n: usize) {
        let what = match reason {
            DropReason::Status(status, message) => {
                format!("the ingestion service answered {status} ({message})")
            }
            DropReason::UnreadablePartial => {
                "the ingestion service answered 206 without saying which items it refused"
                    .to_owned()
            }
            DropReason::BadRedirect(why) => format!("unusable redirect: {why}"),
        };
        // An error: data is lost and the cause (a wrong key, a quota) is
        // the user's to fix. The first of each run; later ones at debug.
        self.warned.dropped.error(format_args!(
            "Exporter.Dropped: {what}; {n} items dropped (ExporterStats::dropped_rejected)"
        ));
    }
}
