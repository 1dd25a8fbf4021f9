//! A fake Microsoft Entra ID credential (feature `entra`): tokens named
//! `secret-token-<n>` (the n-th call), living as long as the test says on
//! the exporter's [`ManualClock`], or errors while it is told to fail. It
//! records every call: the scopes and the clock's reading.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::time::OffsetDateTime;
use tracing_appinsights::ManualClock;

/// What every token this credential gives starts with: a test that looks
/// for tokens in logs looks for this.
pub const TOKEN_PREFIX: &str = "secret-token-";

/// One call of [`FakeCredential::get_token`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub scopes: Vec<String>,
    /// The clock's [`ManualClock::elapsed`] then.
    pub at: Duration,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    failing: Option<String>,
    /// Give the same token on every call (a credential caching a token the
    /// service refuses).
    same_token: bool,
}

/// See the module docs. Its `Debug` deliberately shows a secret, so tests
/// can check that nothing of ours prints a credential.
pub struct FakeCredential {
    clock: ManualClock,
    /// The clock's wall time at offset zero (as near as the test can tell).
    wall: SystemTime,
    lifetime: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for FakeCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FakeCredential {{ client_secret: \"{TOKEN_PREFIX}debug\" }}"
        )
    }
}

impl FakeCredential {
    /// Tokens living `lifetime` on `clock` (made just before).
    pub fn new(clock: &ManualClock, lifetime: Duration) -> Arc<FakeCredential> {
        Arc::new(FakeCredential {
            wall: SystemTime::now() - clock.elapsed(),
            clock: clock.clone(),
            lifetime,
            state: Mutex::new(State::default()),
        })
    }

    /// From now on every call fails with `why` (or, with `None`, succeeds).
    pub fn fail(&self, why: Option<&str>) {
        self.state.lock().unwrap().failing = why.map(str::to_owned);
    }

    /// From now on every call gives `secret-token-1`.
    pub fn give_the_same_token(&self) {
        self.state.lock().unwrap().same_token = true;
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }
}

#[async_trait::async_trait]
impl TokenCredential for FakeCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let mut state = self.state.lock().unwrap();
        state.calls.push(Call {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            at: self.clock.elapsed(),
        });
        if let Some(why) = &state.failing {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                why.clone(),
            ));
        }
        let n = if state.same_token {
            1
        } else {
            state.calls.len()
        };
        let expires = self.wall + self.clock.elapsed() + self.lifetime;
        Ok(AccessToken::new(
            format!("{TOKEN_PREFIX}{n}"),
            OffsetDateTime::from(expires),
        ))
    }
}
