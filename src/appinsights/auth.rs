//! How requests are authorised: by the instrumentation key in each
//! envelope alone, or also by a Microsoft Entra ID bearer token from a
//! credential (feature `entra`; [`Auth`]).
//!
//! A token is asked of the credential by the send that needs it, in that
//! send's task on the worker's runtime: never on an application thread,
//! and never holding up the worker's loop (the other sends and the queue go
//! on). It is cached and used until it is due for refresh: five minutes
//! before it expires, or half way through the life of a token that lives
//! less than ten minutes, on the exporter's clock. A send that finds the
//! token due asks for a new one first (one at a time: the sends that arrive
//! meanwhile wait for that answer and share it); if the credential fails
//! then, the current token is used until it expires, and asked again with
//! a backoff. Without a usable token the send fails as
//! [`SendOutcome::Credential`], a retryable failure of its own: the batch
//! waits like any other (in memory, then in offline storage). A 401 drops
//! the token that was refused, so that the next attempt gets a new one.
//!
//! A token is never sent over plain `http` except to a loopback address
//! ([`exposes_token`]), never logged, and never written to disk (only the
//! envelopes are).

use bytes::Bytes;
use http::HeaderValue;

use super::response::SendOutcome;
use super::transport::Transport;

#[cfg(feature = "entra")]
pub(crate) use self::tokens::Tokens;

/// How the sink's requests are authorised. Cheap to clone: every send
/// task holds one.
#[derive(Clone, Debug, Default)]
pub(crate) struct Auth {
    /// The bearer tokens, with a credential.
    #[cfg(feature = "entra")]
    tokens: Option<std::sync::Arc<Tokens>>,
}

impl Auth {
    /// Requests carry a bearer token from `tokens`.
    #[cfg(feature = "entra")]
    pub(crate) fn bearer(tokens: Tokens) -> Self {
        Auth {
            tokens: Some(std::sync::Arc::new(tokens)),
        }
    }

    /// Whether requests carry a bearer token.
    pub(crate) fn is_bearer(&self) -> bool {
        #[cfg(feature = "entra")]
        {
            self.tokens.is_some()
        }
        #[cfg(not(feature = "entra"))]
        {
            false
        }
    }

    /// POSTs `body` through `transport`, with a bearer token when requests
    /// carry one; `on_request` runs just before the request goes out (not
    /// at all when there is no token to send it with).
    pub(crate) async fn send(
        &self,
        transport: &Transport,
        body: Bytes,
        gzipped: bool,
        on_request: impl FnOnce(),
    ) -> SendOutcome {
        #[cfg(feature = "entra")]
        if let Some(tokens) = &self.tokens {
            return tokens.send(transport, body, gzipped, on_request).await;
        }
        on_request();
        transport.send(body, gzipped, None).await
    }
}

impl Auth {
    /// The `Authorization` value for a request to `endpoint` (Live
    /// Metrics'): `None` without a credential, an error when no token could
    /// be had or the endpoint would expose it.
    pub(crate) async fn authorization(
        &self,
        endpoint: &str,
    ) -> Option<Result<HeaderValue, String>> {
        #[cfg(feature = "entra")]
        if let Some(tokens) = &self.tokens {
            if exposes_token(endpoint) {
                return Some(Err(
                    "a bearer token is never sent over plain http beyond loopback".to_owned(),
                ));
            }
            return Some(tokens.get().await.map(|token| token.header().clone()));
        }
        let _ = endpoint;
        None
    }
}

/// Whether a bearer token sent to `endpoint` could cross a network in
/// clear: it is not `https`, unless it is plain `http` to a loopback
/// address (`127.0.0.0/8`, `::1`, `localhost`).
pub(crate) fn exposes_token(endpoint: &str) -> bool {
    let Ok(uri) = endpoint.trim().parse::<http::Uri>() else {
        return true;
    };
    if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
        return false;
    }
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return true;
    }
    let host = uri.host().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let loopback = host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback());
    !loopback
}

#[cfg(feature = "entra")]
mod tokens {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use azure_core::credentials::TokenCredential;
    use bytes::Bytes;
    use http::HeaderValue;

    use super::super::response::SendOutcome;
    use super::super::transport::{describe, Transport};
    use crate::diag::{self, TARGET};
    use crate::pipeline::Clock;

    /// A token is refreshed this long before it expires (when it lives at
    /// least twice as long; a shorter-lived one half way through its life).
    pub(crate) const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);

    /// A token is taken to live at most this long, whatever it says (a
    /// credential's nonsense expiry must not overflow the clock).
    const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

    /// After a failed refresh while the current token is still good, the
    /// next try waits this long, doubling with each failure in a row, up to
    /// [`REFRESH_RETRY_CAP`].
    const REFRESH_RETRY: Duration = Duration::from_secs(5);
    const REFRESH_RETRY_CAP: Duration = Duration::from_secs(60);

    /// The longest part of a credential's error shown in a log line.
    const MAX_ERROR_CHARS: usize = 512;

    /// A credential's tokens for one scope: cached, refreshed ahead of
    /// expiry, dropped when refused (see the module docs).
    pub(crate) struct Tokens {
        credential: Arc<dyn TokenCredential>,
        scope: String,
        clock: Clock,
        /// The longest a credential may take to answer.
        timeout: Duration,
        /// Held while a token is asked for: the sends that need one
        /// meanwhile wait for that answer.
        state: tokio::sync::Mutex<State>,
        /// Answers of the credential so far: a send that waited for
        /// another's request shares its failure instead of asking again.
        answers: AtomicU64,
        /// A refresh failed while the current token was still good.
        refresh_failed: diag::Once,
    }

    #[derive(Default)]
    struct State {
        token: Option<Token>,
        /// The last answer's error, until an answer brings a token.
        error: Option<String>,
        /// Refreshes failed in a row; the next not before `retry_at`.
        failures: u32,
        retry_at: Option<Instant>,
        /// Numbers the tokens, to drop only the one refused.
        next_id: u64,
    }

    /// One token and its times on the exporter's clock.
    #[derive(Clone)]
    pub(crate) struct Token {
        /// `Bearer …`, marked sensitive.
        header: HeaderValue,
        expires_at: Instant,
        refresh_at: Instant,
        id: u64,
    }

    impl std::fmt::Debug for Tokens {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Tokens")
                .field("scope", &self.scope)
                .finish_non_exhaustive()
        }
    }

    impl std::fmt::Debug for Token {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Token")
                .field("expires_at", &self.expires_at)
                .finish_non_exhaustive()
        }
    }

    /// When a token that lives `lifetime` from `now` expires and is
    /// refreshed.
    pub(crate) fn schedule(now: Instant, lifetime: Duration) -> (Instant, Instant) {
        let lifetime = lifetime.min(MAX_LIFETIME);
        let ahead = if lifetime >= 2 * REFRESH_AHEAD {
            REFRESH_AHEAD
        } else {
            lifetime / 2
        };
        (now + lifetime, now + lifetime - ahead)
    }

    impl Tokens {
        /// Tokens of `credential` for `scope`, timed on `clock`; a
        /// credential that does not answer within `timeout` failed.
        pub(crate) fn new(
            credential: Arc<dyn TokenCredential>,
            scope: String,
            clock: Clock,
            timeout: Duration,
        ) -> Self {
            Tokens {
                credential,
                scope,
                clock,
                timeout,
                state: tokio::sync::Mutex::new(State::default()),
                answers: AtomicU64::new(0),
                refresh_failed: diag::Once::default(),
            }
        }

        /// Sends with a token; a 401 drops it (see [`super::Auth::send`]).
        pub(super) async fn send(
            &self,
            transport: &Transport,
            body: Bytes,
            gzipped: bool,
            on_request: impl FnOnce(),
        ) -> SendOutcome {
            let token = match self.get().await {
                Ok(token) => token,
                Err(error) => return SendOutcome::Credential(error),
            };
            on_request();
            let outcome = transport.send(body, gzipped, Some(&token.header)).await;
            if let SendOutcome::Response { status: 401, .. } = outcome {
                self.invalidate(&token).await;
            }
            outcome
        }

        /// A token to send with now: the cached one, or a new one when
        /// there is none, it expired, or it is due for refresh. The error
        /// says why there is none, without secrets.
        pub(crate) async fn get(&self) -> Result<Token, String> {
            let seen = self.answers.load(Ordering::Acquire);
            let mut state = self.state.lock().await;
            let now = self.clock.now();
            let current = state.token.clone().filter(|t| now < t.expires_at);
            match &current {
                Some(token) => {
                    let due = now >= token.refresh_at && state.retry_at.is_none_or(|at| now >= at);
                    if !due {
                        return Ok(token.clone());
                    }
                }
                None => {
                    // The credential failed while this send waited for
                    // its answer: this send fails alike.
                    if self.answers.load(Ordering::Acquire) != seen {
                        if let Some(error) = &state.error {
                            return Err(error.clone());
                        }
                    }
                }
            }
            let answer = self.ask().await;
            self.answers.fetch_add(1, Ordering::Release);
            let now = self.clock.now();
            match answer {
                Ok((header, expires)) => {
                    let lifetime = expires
                        .duration_since(self.clock.wall())
                        .unwrap_or_default();
                    let (expires_at, refresh_at) = schedule(now, lifetime);
                    state.next_id += 1;
                    let token = Token {
                        header,
                        expires_at,
                        refresh_at,
                        id: state.next_id,
                    };
                    state.token = Some(token.clone());
                    state.error = None;
                    state.failures = 0;
                    state.retry_at = None;
                    tracing::debug!(
                        target: TARGET,
                        scope = %self.scope,
                        lifetime_s = lifetime.as_secs(),
                        "Exporter.TokenAcquired: a new Microsoft Entra ID token"
                    );
                    Ok(token)
                }
                Err(error) => {
                    state.failures += 1;
                    let shift = (state.failures - 1).min(8);
                    let wait = REFRESH_RETRY
                        .saturating_mul(1 << shift)
                        .min(REFRESH_RETRY_CAP);
                    state.retry_at = Some(now + wait);
                    state.error = Some(error.clone());
                    match current {
                        Some(token) if now < token.expires_at => {
                            self.refresh_failed.warn(format_args!(
                                "Exporter.TokenRefreshFailed: {error}; the current token is \
                                 used until it expires (in {} s), and a new one asked for \
                                 again in {} s",
                                (token.expires_at - now).as_secs(),
                                wait.as_secs()
                            ));
                            Ok(token)
                        }
                        _ => Err(error),
                    }
                }
            }
        }

        /// The service refused `token`: it is not used again (a newer one
        /// is kept).
        pub(crate) async fn invalidate(&self, token: &Token) {
            let mut state = self.state.lock().await;
            if state.token.as_ref().is_some_and(|t| t.id == token.id) {
                state.token = None;
            }
        }

        /// Asks the credential, within the timeout: the `Authorization`
        /// value and when the token expires.
        async fn ask(&self) -> Result<(HeaderValue, SystemTime), String> {
            let scopes = [self.scope.as_str()];
            let answer =
                tokio::time::timeout(self.timeout, self.credential.get_token(&scopes, None)).await;
            let fail = |why: String| {
                let why: String = why.chars().take(MAX_ERROR_CHARS).collect();
                format!(
                    "the credential gave no token for the scope {}: {why}",
                    self.scope
                )
            };
            let token = match answer {
                Ok(Ok(token)) => token,
                Ok(Err(err)) => return Err(fail(describe(&err))),
                Err(_) => return Err(fail(format!("no answer within {:?}", self.timeout))),
            };
            let mut header = HeaderValue::try_from(format!("Bearer {}", token.token.secret()))
                .map_err(|_| {
                    fail("the token holds characters an HTTP header cannot carry".to_owned())
                })?;
            header.set_sensitive(true);
            let expires = u64::try_from(token.expires_on.unix_timestamp())
                .ok()
                .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            Ok((header, expires))
        }
    }

    impl Token {
        /// The `Authorization` header value, `Bearer …`.
        pub(crate) fn header(&self) -> &HeaderValue {
            &self.header
        }
    }
}

#[cfg(test)]
mod tests;
