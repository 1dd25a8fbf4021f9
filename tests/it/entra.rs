//! Microsoft Entra ID (feature `entra`, `docs/entra-id.md`): with a
//! credential, every request carries `Authorization: Bearer <token>` for
//! the right scope; tokens are cached and refreshed before they expire; a
//! 401 drops the token and resends at once with a new one (and backs off
//! when the new one is refused too); a 403 keeps the token, backs off and
//! stores meanwhile; a failing credential is retried with backoff while
//! the data waits in memory, then in storage; a token never goes over plain
//! `http` off this machine, never shows in a log line at TRACE or in a
//! `Debug`. `Authorization=AAD` without a credential is a build error that
//! says where one comes from (this one needs no feature). With feature
//! `managed-identity`, `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` makes the
//! managed identity's credential, tested against a fake App Service token
//! endpoint on 127.0.0.1.
//!
//! Timers run on a [`ManualClock`](tracing_appinsights::ManualClock); the
//! fake credential's tokens live on it.

use tracing_appinsights::{BuildError, Builder};

use crate::support::connection_string;

#[test]
fn aad_without_a_credential_names_where_one_comes_from() {
    let err = Builder::new()
        .with_connection_string(format!(
            "{};Authorization=AAD",
            connection_string("http://127.0.0.1:9")
        ))
        .with_offline_storage(false)
        .build::<tracing_subscriber::Registry>()
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::AadNeedsTokenProvider {
                origin: "with_connection_string"
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    for fix in [
        "Builder::with_credential",
        "feature `entra`",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD",
        "feature `managed-identity`",
    ] {
        assert!(text.contains(fix), "{fix}: {text}");
    }
}

#[cfg(feature = "entra")]
mod with_credential {
    use std::sync::Arc;
    use std::time::Duration;

    use tracing_appinsights::{BuildError, Builder, ExporterGuard, ManualClock};

    use crate::support::credential::{FakeCredential, TOKEN_PREFIX};
    use crate::support::delivery::{advance_until, builder, emit, start, TempDir};
    use crate::support::{connection_string, wait_until, FakeIngestion, ScriptedResponse};

    const HOUR: Duration = Duration::from_secs(3600);
    const SCOPE: &str = "https://monitor.azure.com//.default";

    /// An exporter for `server` with a fake credential whose tokens live
    /// `lifetime`, on a manual clock; batches of `batch` records go out at
    /// once.
    pub(super) struct Setup {
        pub(super) server: FakeIngestion,
        pub(super) credential: Arc<FakeCredential>,
        pub(super) clock: ManualClock,
        pub(super) dispatch: tracing::Dispatch,
        pub(super) guard: ExporterGuard,
        _dir: TempDir,
    }

    impl Setup {
        pub(super) fn new(tag: &str, lifetime: Duration, batch: usize) -> Setup {
            let server = FakeIngestion::start();
            let clock = ManualClock::new();
            let credential = FakeCredential::new(&clock, lifetime);
            let dir = TempDir::new(tag);
            let (dispatch, guard) = start(
                builder(&server.endpoint(), dir.path())
                    .with_manual_clock(&clock)
                    .with_max_batch_size(batch)
                    .with_credential(credential.clone()),
            );
            Setup {
                server,
                credential,
                clock,
                dispatch,
                guard,
                _dir: dir,
            }
        }

        /// The `Authorization` header of each request so far.
        pub(super) fn authorizations(&self) -> Vec<Option<String>> {
            self.server
                .requests()
                .iter()
                .map(|r| r.header("authorization").map(str::to_owned))
                .collect()
        }

        /// When the credential was called, on the clock.
        pub(super) fn call_times(&self) -> Vec<Duration> {
            self.credential.calls().iter().map(|c| c.at).collect()
        }
    }

    fn bearer(n: usize) -> Option<String> {
        Some(format!("Bearer {TOKEN_PREFIX}{n}"))
    }

    #[test]
    fn every_request_carries_a_token_for_the_scope() {
        let s = Setup::new("entra-header", HOUR, 512);
        for round in 0..3 {
            emit(&s.dispatch, &format!("h{round}"), 0..2);
            s.guard.flush(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(s.authorizations(), vec![bearer(1); 3]);
        // The instrumentation key is still in every envelope.
        for envelope in s.server.envelopes() {
            assert_eq!(envelope["iKey"], crate::support::TEST_IKEY);
        }
        // Asked once, for the one scope: the token is cached.
        let calls = s.credential.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].scopes, [SCOPE]);
        let stats = s.guard.stats();
        assert_eq!((stats.exported, stats.requests), (6, 3), "{stats:?}");

        // Without a credential, no Authorization header at all.
        let plain = FakeIngestion::start();
        let dir = TempDir::new("entra-none");
        let (dispatch, guard) = start(builder(&plain.endpoint(), dir.path()));
        emit(&dispatch, "n", 0..1);
        guard.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(plain.requests()[0].header("authorization"), None);
    }

    #[test]
    fn the_connection_strings_audience_sets_the_scope() {
        for (audience, scope) in [
            (
                "https://monitor.azure.us/",
                "https://monitor.azure.us//.default",
            ),
            (
                "https://monitor.azure.com",
                "https://monitor.azure.com/.default",
            ),
        ] {
            let server = FakeIngestion::start();
            let clock = ManualClock::new();
            let credential = FakeCredential::new(&clock, HOUR);
            let dir = TempDir::new("entra-audience");
            let (dispatch, guard) = start(
                builder(&server.endpoint(), dir.path())
                    .with_connection_string(format!(
                        "{};AADAudience={audience}",
                        connection_string(&server.endpoint())
                    ))
                    .with_credential(credential.clone()),
            );
            emit(&dispatch, "a", 0..1);
            guard.flush(Duration::from_secs(10)).unwrap();
            assert_eq!(credential.calls()[0].scopes, [scope]);
            assert_eq!(
                server.requests()[0].header("authorization"),
                bearer(1).as_deref()
            );
        }
    }

    #[test]
    fn tokens_are_refreshed_before_they_expire() {
        let s = Setup::new("entra-refresh", HOUR, 512);
        let send = |name: &str| {
            emit(&s.dispatch, name, 0..1);
            s.guard.flush(Duration::from_secs(10)).unwrap();
        };
        send("r0");
        // 50 minutes on: the token is good for ten more; kept.
        s.clock.advance(Duration::from_secs(50 * 60));
        send("r1");
        assert_eq!(s.credential.calls().len(), 1);
        // 56 minutes: inside the last five minutes, still valid: the send
        // asks for a new token first.
        s.clock.advance(Duration::from_secs(6 * 60));
        send("r2");
        send("r3");
        assert_eq!(
            s.authorizations(),
            [bearer(1), bearer(1), bearer(2), bearer(2)]
        );
        assert_eq!(
            s.call_times(),
            [Duration::ZERO, Duration::from_secs(56 * 60)]
        );
    }

    #[test]
    fn a_401_drops_the_token_and_resends_at_once_with_a_new_one() {
        let s = Setup::new("entra-401", HOUR, 512);
        s.server.script([ScriptedResponse::status(401)]);
        emit(&s.dispatch, "u", 0..3);
        // The clock stands still: the resend needs no backoff to pass.
        s.guard.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(s.authorizations(), [bearer(1), bearer(2)]);
        assert_eq!(s.call_times(), [Duration::ZERO; 2]);
        let stats = s.guard.stats();
        assert_eq!(
            (stats.exported, stats.retried, stats.requests),
            (3, 3, 2),
            "{stats:?}"
        );
        assert!(stats.balances(), "{stats:?}");
    }

    #[test]
    fn a_credential_whose_tokens_keep_being_refused_backs_off() {
        let s = Setup::new("entra-401-loop", HOUR, 1);
        s.credential.give_the_same_token();
        s.server
            .script((0..100).map(|_| ScriptedResponse::status(401)));
        emit(&s.dispatch, "l", 0..1);
        wait_until(|| (s.server.requests().len() >= 2).then_some(()));
        // The first 401 was resent at once; the second waits for its
        // backoff, which the still clock never reaches.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(s.server.requests().len(), 2);
        let resent = advance_until(
            &s.clock,
            Duration::from_secs(1),
            Duration::from_secs(300),
            || s.server.requests().len() >= 6,
        );
        assert!(resent, "{:?}", s.guard.stats());
        // A token is asked for before each request (the refused one is
        // dropped each time), and never twice at one instant after the
        // first resend.
        let times = s.call_times();
        assert_eq!(times[0], times[1]);
        assert!(times[1..].windows(2).all(|w| w[0] < w[1]), "{times:?}");
        assert!(s.authorizations().iter().all(|a| *a == bearer(1)));
        let stats = s.guard.stats();
        assert_eq!(stats.exported, 0, "{stats:?}");
        assert!(stats.balances(), "{stats:?}");
    }

    #[test]
    fn a_403_keeps_the_token_backs_off_and_stores_meanwhile() {
        let s = Setup::new("entra-403", HOUR, 5);
        // Enough 403s that their backoff passes a minute whatever the
        // jitter draws.
        s.server
            .script((0..20).map(|_| ScriptedResponse::status(403)));
        emit(&s.dispatch, "f", 0..5);
        wait_until(|| (!s.server.requests().is_empty()).then_some(()));
        // Sending pauses at once: nothing more while the clock stands still.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(s.server.requests().len(), 1);
        let delivered = advance_until(
            &s.clock,
            Duration::from_secs(1),
            Duration::from_secs(30 * 60),
            || s.guard.stats().exported == 5,
        );
        let stats = s.guard.stats();
        assert!(delivered, "{stats:?}");
        // It waited in storage meanwhile, and came back from there.
        assert_eq!(
            (stats.stored, stats.read_back, stats.requests),
            (5, 5, 21),
            "{stats:?}"
        );
        // One token for all of them: a 403 is not the token's fault.
        assert_eq!(s.authorizations(), vec![bearer(1); 21]);
        assert_eq!(s.credential.calls().len(), 1);
        assert!(stats.balances(), "{stats:?}");
    }

    #[test]
    fn a_failing_credential_is_retried_with_backoff_while_the_data_waits() {
        let s = Setup::new("entra-failing", HOUR, 5);
        s.credential.fail(Some("no managed identity here"));
        emit(&s.dispatch, "c", 0..5);
        wait_until(|| (!s.credential.calls().is_empty()).then_some(()));
        let stats = s.guard.stats();
        assert_eq!(stats.in_memory, 5, "{stats:?}");
        // A minute and more on the clock: the batch goes to storage.
        let stored = advance_until(
            &s.clock,
            Duration::from_secs(1),
            Duration::from_secs(300),
            || s.guard.stats().stored == 5,
        );
        let stats = s.guard.stats();
        assert!(stored, "{stats:?}");
        // Kept in memory until its next try would fall past a minute from
        // the first (a try is at most 30 s after the one before).
        assert!(s.clock.elapsed() > Duration::from_secs(30), "{:?}", s.clock);
        // Nothing was sent without a token, nor counted as sent.
        assert!(s.server.requests().is_empty());
        assert_eq!((stats.requests, stats.retried), (0, 0), "{stats:?}");
        // Asked again and again, never twice at one instant.
        let times = s.call_times();
        assert!(times.len() > 1, "{times:?}");
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");

        // The credential recovers: the stored batch goes out with a token.
        s.credential.fail(None);
        let delivered = advance_until(
            &s.clock,
            Duration::from_secs(1),
            Duration::from_secs(300),
            || s.guard.stats().exported == 5,
        );
        let stats = s.guard.stats();
        assert!(delivered, "{stats:?}");
        let last = s.credential.calls().len();
        assert_eq!(s.authorizations(), [bearer(last)]);
        assert_eq!(stats.read_back, 5, "{stats:?}");
        assert!(stats.balances(), "{stats:?}");
    }

    #[test]
    fn a_token_never_goes_over_plain_http_off_this_machine() {
        let credential = FakeCredential::new(&ManualClock::new(), HOUR);
        let build = |endpoint: &str| {
            Builder::new()
                .with_connection_string(connection_string(endpoint))
                .with_credential(credential.clone())
                .with_offline_storage(false)
                .build::<tracing_subscriber::Registry>()
        };
        for endpoint in [
            "http://dc.services.visualstudio.com",
            "http://10.1.2.3:8080",
        ] {
            let err = build(endpoint).unwrap_err();
            assert!(
                matches!(&err, BuildError::TokenOverPlainHttp { endpoint: e } if e == endpoint),
                "{err}"
            );
            assert!(err.to_string().contains("use https://"), "{err}");
        }
        // Loopback over http (tests, local viewers), anything over https.
        for endpoint in [
            "http://127.0.0.1:9",
            "http://127.0.0.2:9",
            "http://localhost:9",
            "http://[::1]:9",
            "https://dc.services.visualstudio.com",
        ] {
            let (_layer, guard) = build(endpoint).unwrap_or_else(|e| panic!("{endpoint}: {e}"));
            guard.shutdown(Duration::from_secs(5)).unwrap();
        }
        // No data, no token: nothing was asked, nothing sent.
        assert!(credential.calls().is_empty());
    }

    #[test]
    fn debug_output_shows_no_credential() {
        let credential = FakeCredential::new(&ManualClock::new(), HOUR);
        assert!(format!("{credential:?}").contains(TOKEN_PREFIX));
        let builder = Builder::new().with_credential(credential);
        let shown = format!("{builder:?}");
        assert!(!shown.contains(TOKEN_PREFIX), "{shown}");
        assert!(shown.contains("TokenCredential(..)"), "{shown}");
    }
}

#[cfg(feature = "entra")]
mod logs {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing::Level;
    use tracing_subscriber::prelude::*;

    use super::with_credential::Setup;
    use crate::support::child::own_process;
    use crate::support::credential::TOKEN_PREFIX;
    use crate::support::delivery::{advance_until, emit};
    use crate::support::diagnostics::Diagnostics;
    use crate::support::ScriptedResponse;

    /// Everything a `fmt` subscriber at `RUST_LOG=trace` prints: every
    /// event of every target (the `log` records of the TLS stack too),
    /// spans opening and closing with their fields.
    #[derive(Clone, Default)]
    pub(super) struct Printed(Arc<Mutex<Vec<u8>>>);

    impl Write for Printed {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Printed {
        /// Installs the global subscriber: `fmt` at TRACE into the returned
        /// buffer, beside the crate's diagnostics.
        pub(super) fn install() -> (Printed, Diagnostics) {
            let printed = Printed::default();
            let diagnostics = Diagnostics::default();
            let writer = printed.clone();
            tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(move || writer.clone())
                        .with_ansi(false)
                        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
                        .with_filter(tracing_subscriber::EnvFilter::new("trace")),
                )
                .with(diagnostics.clone())
                .try_init()
                .expect("the only global subscriber of this process");
            (printed, diagnostics)
        }

        pub(super) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[test]
    fn no_token_in_any_log_line_at_trace_and_each_trouble_said_once() {
        let Some(_own_process) = own_process(
            module_path!(),
            "no_token_in_any_log_line_at_trace_and_each_trouble_said_once",
        ) else {
            return;
        };
        let (printed, diagnostics) = Printed::install();
        let s = Setup::new("entra-logs", Duration::from_secs(3600), 1);
        let sent = |n: usize| {
            let done = advance_until(
                &s.clock,
                Duration::from_secs(1),
                Duration::from_secs(600),
                || s.guard.stats().exported >= n as u64,
            );
            assert!(done, "{:?}", s.guard.stats());
        };
        // A send, a 401 and its resend, two 403s.
        s.server.script([
            ScriptedResponse::status(401),
            ScriptedResponse::status(403),
            ScriptedResponse::status(403),
        ]);
        emit(&s.dispatch, "a", 0..2);
        sent(2);
        // A failing credential, twice; then a refresh after 56 minutes.
        s.credential.fail(Some("the identity endpoint is down"));
        s.clock.advance(Duration::from_secs(3600));
        emit(&s.dispatch, "b", 0..1);
        let failed_twice = advance_until(
            &s.clock,
            Duration::from_secs(1),
            Duration::from_secs(600),
            || s.credential.calls().len() >= 4,
        );
        assert!(failed_twice, "{:?}", s.credential.calls());
        s.credential.fail(None);
        sent(3);
        s.clock.advance(Duration::from_secs(56 * 60));
        emit(&s.dispatch, "c", 0..1);
        sent(4);
        s.guard.shutdown(Duration::from_secs(10)).unwrap();

        let text = printed.text();
        assert!(text.contains("TRACE") && text.contains("DEBUG"), "{text}");
        assert!(text.contains("Exporter.TokenAcquired"), "{text}");
        assert!(!text.contains(TOKEN_PREFIX), "a token in the logs:\n{text}");
        // Each kind of trouble: one warning, naming what to do.
        for (what, needle) in [
            ("401", "refused the bearer token (401)"),
            ("403", "Monitoring Metrics Publisher"),
            ("credential", "the identity endpoint is down"),
        ] {
            let warnings: Vec<_> = diagnostics
                .with(needle)
                .into_iter()
                .filter(|(level, _)| *level == Level::WARN)
                .collect();
            assert_eq!(warnings.len(), 1, "{what}: {:?}", diagnostics.all());
        }
        // `build` said that requests carry tokens (and nothing of them).
        let configured = diagnostics.with("Exporter.Configured");
        assert_eq!(configured.len(), 1, "{configured:?}");
        assert!(
            configured[0].1.contains("with Microsoft Entra ID tokens"),
            "{configured:?}"
        );
        let credential = diagnostics.with("the identity endpoint is down");
        assert!(
            credential[0]
                .1
                .contains("https://monitor.azure.com//.default"),
            "{credential:?}"
        );
    }
}

#[cfg(feature = "managed-identity")]
mod managed_identity {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use tracing_appinsights::Builder;

    use super::logs::Printed;
    use crate::support::child::own_process;
    use crate::support::delivery::{builder, emit, start, TempDir};
    use crate::support::{FakeIngestion, ScriptedResponse};

    /// App Service's token endpoint, as `azure_identity` calls it: `GET
    /// {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<audience>[&client_id=…]`
    /// with `X-IDENTITY-HEADER: {IDENTITY_HEADER}`; the answer's
    /// `expires_on` is a string of Unix seconds.
    fn token_answer(token: &str) -> ScriptedResponse {
        let expires =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(3600);
        ScriptedResponse::status(200).with_body(format!(
            r#"{{"access_token":"{token}","expires_on":"{}","token_type":"Bearer","resource":"https://monitor.azure.com/"}}"#,
            expires.as_secs()
        ))
    }

    #[test]
    fn the_authentication_string_makes_the_app_service_managed_identity() {
        let Some(_own_process) = own_process(
            module_path!(),
            "the_authentication_string_makes_the_app_service_managed_identity",
        ) else {
            return;
        };
        let (printed, _diagnostics) = Printed::install();
        let identity = FakeIngestion::start();
        identity.script([token_answer("secret-token-mi")]);
        // App Service's variables, pointing at the fake on 127.0.0.1.
        std::env::set_var(
            "IDENTITY_ENDPOINT",
            format!("{}/msi/token", identity.endpoint()),
        );
        std::env::set_var("IDENTITY_HEADER", "identity-header-secret");
        std::env::set_var(
            Builder::ENV_AUTHENTICATION_STRING,
            "Authorization=AAD;ClientId=11111111-2222-3333-4444-555555555555",
        );
        let server = FakeIngestion::start();
        let dir = TempDir::new("entra-mi");
        let (dispatch, guard) = start(builder(&server.endpoint(), dir.path()));
        // azure_identity chose App Service's endpoint when the credential
        // was made, before anything could be asked: it never falls back to
        // the instance metadata service, so nothing leaves this machine.
        let chosen = printed.text();
        assert!(
            chosen.contains("ManagedIdentityCredential will use App Service managed identity"),
            "{chosen}"
        );
        assert!(identity.requests().is_empty(), "nothing asked before data");

        emit(&dispatch, "m", 0..2);
        guard.flush(Duration::from_secs(10)).unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(
            requests[0].header("authorization"),
            Some("Bearer secret-token-mi")
        );
        let asked = identity.requests();
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert_eq!(asked[0].method, "GET");
        assert_eq!(
            asked[0].path,
            "/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fmonitor.azure.com%2F\
             &client_id=11111111-2222-3333-4444-555555555555"
        );
        assert_eq!(
            asked[0].header("x-identity-header"),
            Some("identity-header-secret")
        );
        guard.shutdown(Duration::from_secs(10)).unwrap();
        let text = printed.text();
        for secret in ["secret-token-mi", "identity-header-secret"] {
            assert!(!text.contains(secret), "{secret} in the logs:\n{text}");
        }
    }
}
