//! Microsoft Entra ID: the credential whose tokens requests carry, from
//! [`Builder::with_credential`] (feature `entra`) or, without one, the
//! managed identity that `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` names
//! (feature `managed-identity`); the scope tokens are asked for; and the
//! checks `build` makes (`docs/entra-id.md`).

use super::connection_string::{Authorization, ConnectionString};
use super::Builder;
use crate::appinsights::auth::Auth;
use crate::error::BuildError;

/// The audience of the public cloud's Azure Monitor, when the connection
/// string gives no `AADAudience`.
#[cfg(feature = "entra")]
const DEFAULT_AUDIENCE: &str = "https://monitor.azure.com/";

/// The scope tokens are asked for: the audience and `/.default`, as the
/// other Application Insights SDKs ask (`https://monitor.azure.com//.default`
/// by default: the audience ends in `/`).
#[cfg(feature = "entra")]
pub(crate) fn scope(audience: Option<&str>) -> String {
    format!("{}/.default", audience.unwrap_or(DEFAULT_AUDIENCE))
}

/// A credential as the builder holds it. Its `Debug` shows nothing of it
/// (a credential's own might show a secret).
#[cfg(feature = "entra")]
#[derive(Clone)]
pub(crate) struct Credential(
    pub(crate) std::sync::Arc<dyn azure_core::credentials::TokenCredential>,
);

#[cfg(feature = "entra")]
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCredential(..)")
    }
}

/// A credential, where the crate has them.
#[cfg(feature = "entra")]
type Shared = std::sync::Arc<dyn azure_core::credentials::TokenCredential>;
/// Without feature `entra` there is none.
#[cfg(not(feature = "entra"))]
type Shared = std::convert::Infallible;

/// What `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` asks for: a managed
/// identity, system-assigned, or the user-assigned one with `client_id`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ManagedIdentity {
    pub(crate) client_id: Option<String>,
}

/// Parses `Authorization=AAD[;ClientId=<id>]`: `;`-separated `Key=Value`
/// segments, keys and `AAD` in any case, whitespace and empty segments
/// ignored, other keys ignored, as in connection strings. The error says
/// what is wrong without repeating a value.
pub(crate) fn parse_authentication_string(text: &str) -> Result<ManagedIdentity, &'static str> {
    let mut authorization = None;
    let mut client_id = None;
    for segment in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = segment
            .split_once('=')
            .ok_or("every `;`-separated segment must be `Key=Value`")?;
        let (key, value) = (key.trim(), value.trim());
        if key.eq_ignore_ascii_case("Authorization") {
            authorization = Some(value);
        } else if key.eq_ignore_ascii_case("ClientId") {
            client_id = Some(value);
        }
    }
    match authorization {
        Some(v) if v.eq_ignore_ascii_case("AAD") => {}
        Some(_) => return Err("`Authorization` must be `AAD`"),
        None => return Err("it must say `Authorization=AAD`"),
    }
    if client_id == Some("") {
        return Err(
            "`ClientId` is empty; give the user-assigned identity's client id or remove it",
        );
    }
    Ok(ManagedIdentity {
        client_id: client_id.map(str::to_owned),
    })
}

impl Builder {
    /// How requests to `connection`'s endpoint (given by `origin`) are
    /// authorised: with tokens of the credential given in code, else of the
    /// managed identity `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` names,
    /// else by the instrumentation key alone.
    ///
    /// # Errors
    ///
    /// The connection string says `Authorization=AAD` and there is no
    /// credential; the variable is malformed, or names a managed identity
    /// this build cannot make; a token would go to a plain `http`
    /// endpoint off this machine.
    pub(super) fn auth(
        &self,
        connection: &ConnectionString,
        origin: &'static str,
    ) -> Result<Auth, BuildError> {
        let credential = match self.given_credential() {
            Some(credential) => Some(credential),
            None => match requested_identity()? {
                Some(identity) => Some(self.managed_identity(identity)?),
                None => None,
            },
        };
        match credential {
            Some(credential) => self.bearer(credential, connection),
            None if connection.authorization() == Authorization::Aad => {
                Err(BuildError::AadNeedsTokenProvider { origin })
            }
            None => Ok(Auth::default()),
        }
    }

    #[cfg(feature = "entra")]
    fn given_credential(&self) -> Option<Shared> {
        self.credential
            .as_ref()
            .map(|c| std::sync::Arc::clone(&c.0))
    }

    #[cfg(not(feature = "entra"))]
    fn given_credential(&self) -> Option<Shared> {
        None
    }

    /// Tokens of `credential` for `connection`, on the exporter's clock.
    #[cfg(feature = "entra")]
    fn bearer(
        &self,
        credential: Shared,
        connection: &ConnectionString,
    ) -> Result<Auth, BuildError> {
        let endpoint = connection.ingestion_endpoint();
        if crate::appinsights::auth::exposes_token(endpoint) {
            return Err(BuildError::TokenOverPlainHttp {
                endpoint: endpoint.to_owned(),
            });
        }
        let tokens = crate::appinsights::auth::Tokens::new(
            credential,
            scope(connection.aad_audience()),
            self.clock.clone(),
            self.request_timeout,
        );
        Ok(Auth::bearer(tokens))
    }

    #[cfg(not(feature = "entra"))]
    fn bearer(&self, credential: Shared, _: &ConnectionString) -> Result<Auth, BuildError> {
        match credential {}
    }

    /// The managed identity's credential.
    #[cfg(feature = "managed-identity")]
    fn managed_identity(&self, identity: ManagedIdentity) -> Result<Shared, BuildError> {
        crate::appinsights::identity_http::managed_identity(
            identity.client_id,
            self.connect_timeout,
            self.request_timeout,
        )
        .map_err(|why| BuildError::InvalidSetting {
            setting: Builder::ENV_AUTHENTICATION_STRING,
            reason: format!("the managed identity's credential could not be made: {why}"),
        })
    }

    /// This build cannot make one.
    #[cfg(not(feature = "managed-identity"))]
    fn managed_identity(&self, _: ManagedIdentity) -> Result<Shared, BuildError> {
        Err(BuildError::InvalidSetting {
            setting: Builder::ENV_AUTHENTICATION_STRING,
            reason: "it asks for a managed identity (Authorization=AAD), which needs the \
                     crate's `managed-identity` feature; enable it, give a credential with \
                     Builder::with_credential (feature `entra`), or unset the variable"
                .to_owned(),
        })
    }
}

/// The managed identity `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` names,
/// if it is set (and not blank).
fn requested_identity() -> Result<Option<ManagedIdentity>, BuildError> {
    let Some(text) = std::env::var(Builder::ENV_AUTHENTICATION_STRING)
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    parse_authentication_string(&text)
        .map(Some)
        .map_err(|why| BuildError::InvalidSetting {
            setting: Builder::ENV_AUTHENTICATION_STRING,
            reason: format!("{why} (as in `Authorization=AAD;ClientId=<client id>`)"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "entra")]
    #[test]
    fn the_scope_is_the_audience_and_default() {
        assert_eq!(scope(None), "https://monitor.azure.com//.default");
        assert_eq!(
            scope(Some("https://monitor.azure.us/")),
            "https://monitor.azure.us//.default"
        );
        assert_eq!(
            scope(Some("https://monitor.azure.com")),
            "https://monitor.azure.com/.default"
        );
    }

    #[test]
    fn authentication_strings() {
        let system = ManagedIdentity { client_id: None };
        let user = |id: &str| ManagedIdentity {
            client_id: Some(id.to_owned()),
        };
        let valid = [
            ("Authorization=AAD", system),
            (
                "Authorization=AAD;ClientId=11111111-2222-3333-4444-555555555555",
                user("11111111-2222-3333-4444-555555555555"),
            ),
            ("authorization=aad;clientid=abc", user("abc")),
            (" Authorization = AAD ; ;ClientId= abc ;", user("abc")),
            (
                "Authorization=AAD;Other=x",
                ManagedIdentity { client_id: None },
            ),
        ];
        for (text, expected) in valid {
            assert_eq!(parse_authentication_string(text), Ok(expected), "{text:?}");
        }
        for text in [
            "garbage",
            "Authorization=ikey",
            "ClientId=abc",
            "Authorization=AAD;ClientId=",
        ] {
            assert!(parse_authentication_string(text).is_err(), "{text:?}");
        }
    }
}
