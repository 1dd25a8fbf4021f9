use super::*;

#[test]
fn tokens_cross_no_network_in_clear() {
    for endpoint in [
        "https://dc.services.visualstudio.com",
        "HTTPS://dc.example",
        "http://127.0.0.1:8080",
        "http://127.1.2.3",
        "http://localhost:1",
        "http://LOCALHOST.:1/prefix",
        "http://[::1]:8080",
        "http://[::ffff:127.0.0.1]:8080",
    ] {
        assert!(!exposes_token(endpoint), "{endpoint}");
    }
    for endpoint in [
        "http://dc.services.visualstudio.com",
        "http://10.0.0.1",
        "http://128.0.0.1",
        "http://[::2]:80",
        "http://localhost.example.com",
        "http://127.0.0.1.example.com",
        "ftp://127.0.0.1",
        "not a url",
        "",
    ] {
        assert!(exposes_token(endpoint), "{endpoint}");
    }
}

#[cfg(feature = "entra")]
mod tokens {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
    use azure_core::time::OffsetDateTime;

    use super::super::tokens::{schedule, Tokens, REFRESH_AHEAD};
    use crate::pipeline::{Clock, ManualClock};

    /// A credential answering from a script: a token living this long, or
    /// an error. Records the scopes of every call.
    #[derive(Debug)]
    struct Scripted {
        answers: Mutex<VecDeque<Result<Duration, String>>>,
        calls: Mutex<Vec<Vec<String>>>,
        /// The exporter's clock's wall time at offset zero.
        wall: SystemTime,
        clock: ManualClock,
    }

    #[async_trait::async_trait]
    impl TokenCredential for Scripted {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            // Answers later, as a real credential does: other sends run
            // meanwhile.
            tokio::task::yield_now().await;
            let mut calls = self.calls.lock().unwrap();
            calls.push(scopes.iter().map(|s| (*s).to_owned()).collect());
            let n = calls.len();
            let answer = self.answers.lock().unwrap().pop_front();
            match answer.expect("a scripted answer") {
                Ok(lifetime) => {
                    let expires = self.wall + self.clock.elapsed() + lifetime;
                    Ok(AccessToken::new(
                        format!("token-{n}"),
                        OffsetDateTime::from(expires),
                    ))
                }
                Err(why) => Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    why,
                )),
            }
        }
    }

    fn setup(answers: Vec<Result<Duration, String>>) -> (Tokens, Arc<Scripted>, ManualClock) {
        let clock = ManualClock::new();
        let credential = Arc::new(Scripted {
            answers: Mutex::new(answers.into()),
            calls: Mutex::new(Vec::new()),
            wall: Clock::Manual(clock.clone()).wall(),
            clock: clock.clone(),
        });
        let tokens = Tokens::new(
            credential.clone(),
            "https://monitor.azure.com//.default".to_owned(),
            Clock::Manual(clock.clone()),
            Duration::from_secs(10),
        );
        (tokens, credential, clock)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn refresh_comes_five_minutes_early_or_half_way_for_short_tokens() {
        let now = std::time::Instant::now();
        assert_eq!(
            schedule(now, HOUR),
            (now + HOUR, now + HOUR - REFRESH_AHEAD)
        );
        let ten = Duration::from_secs(600);
        assert_eq!(schedule(now, ten), (now + ten, now + ten - REFRESH_AHEAD));
        let short = Duration::from_secs(200);
        assert_eq!(schedule(now, short), (now + short, now + short / 2));
        assert_eq!(schedule(now, Duration::ZERO), (now, now));
        // A nonsense lifetime is capped, never overflowing.
        let (expires, refresh) = schedule(now, Duration::from_secs(u64::MAX / 4));
        assert_eq!(expires - now, Duration::from_secs(24 * 3600));
        assert!(refresh < expires);
    }

    #[test]
    fn a_token_is_cached_then_refreshed_before_it_expires() {
        let (tokens, credential, clock) = setup(vec![Ok(HOUR), Ok(HOUR)]);
        block_on(async {
            let first = tokens.get().await.unwrap();
            assert_eq!(first.header(), "Bearer token-1");
            assert!(first.header().is_sensitive());
            clock.advance(Duration::from_secs(3000));
            assert_eq!(tokens.get().await.unwrap().header(), "Bearer token-1");
            // Inside the last five minutes, still valid: refreshed.
            clock.advance(Duration::from_secs(310));
            assert_eq!(tokens.get().await.unwrap().header(), "Bearer token-2");
        });
        let calls = credential.calls.lock().unwrap();
        assert_eq!(
            *calls,
            vec![vec!["https://monitor.azure.com//.default".to_owned()]; 2]
        );
    }

    #[test]
    fn a_failed_refresh_keeps_the_current_token_then_tries_again_later() {
        let (tokens, credential, clock) = setup(vec![Ok(HOUR), Err("down".into()), Ok(HOUR)]);
        block_on(async {
            tokens.get().await.unwrap();
            clock.advance(HOUR - Duration::from_secs(60));
            // The refresh fails: the current token is still good.
            assert_eq!(tokens.get().await.unwrap().header(), "Bearer token-1");
            // Not asked again before the retry delay.
            assert_eq!(tokens.get().await.unwrap().header(), "Bearer token-1");
            assert_eq!(credential.calls.lock().unwrap().len(), 2);
            clock.advance(Duration::from_secs(5));
            assert_eq!(tokens.get().await.unwrap().header(), "Bearer token-3");
        });
    }

    #[test]
    fn without_a_token_the_error_is_shared_by_the_sends_that_waited() {
        let (tokens, credential, _clock) = setup(vec![Err("no identity".into()), Ok(HOUR)]);
        let tokens = Arc::new(tokens);
        block_on(async {
            let (a, b) = tokio::join!(tokens.get(), tokens.get());
            for result in [a, b] {
                let error = result.unwrap_err();
                assert!(error.contains("no identity"), "{error}");
                assert!(
                    error.contains("https://monitor.azure.com//.default"),
                    "{error}"
                );
            }
            assert_eq!(credential.calls.lock().unwrap().len(), 1, "asked once");
            // The next send asks again.
            assert_eq!(tokens.get().await.unwrap().header(), "Bearer token-2");
        });
    }

    #[test]
    fn a_refused_token_is_dropped_but_not_a_newer_one() {
        let (tokens, _credential, _clock) = setup(vec![Ok(HOUR), Ok(HOUR), Ok(HOUR)]);
        block_on(async {
            let first = tokens.get().await.unwrap();
            tokens.invalidate(&first).await;
            let second = tokens.get().await.unwrap();
            assert_eq!(second.header(), "Bearer token-2");
            // A late 401 for the first token leaves the second alone.
            tokens.invalidate(&first).await;
            assert_eq!(tokens.get().await.unwrap().header(), "Bearer token-2");
        });
    }

    #[test]
    fn an_expired_token_is_not_used() {
        let (tokens, _credential, clock) = setup(vec![Ok(HOUR), Err("down".into())]);
        block_on(async {
            tokens.get().await.unwrap();
            clock.advance(HOUR);
            assert!(tokens.get().await.is_err());
        });
    }

    #[test]
    fn debug_shows_no_token() {
        let (tokens, _credential, _clock) = setup(vec![Ok(HOUR)]);
        block_on(async {
            let token = tokens.get().await.unwrap();
            for shown in [format!("{token:?}"), format!("{tokens:?}")] {
                assert!(!shown.contains("token-1"), "{shown}");
            }
        });
    }
}
