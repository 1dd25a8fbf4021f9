//! The managed identity's credential (feature `managed-identity`):
//! `azure_identity`'s `ManagedIdentityCredential`, whose requests to the
//! platform's token endpoint (App Service's `IDENTITY_ENDPOINT`, a VM's
//! instance metadata service) go through a hyper client like ours
//! ([`IdentityHttp`]) instead of a second HTTP stack.
//!
//! `azure_identity` chooses the endpoint once, when the credential is made:
//! App Service's when `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set,
//! else the instance metadata service. It never falls back from one to the
//! other.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::error::{Error, ErrorKind};
use azure_core::http::headers::Headers;
use azure_core::http::request::{Body, Request};
use azure_core::http::{AsyncRawResponse, ClientOptions, HttpClient, StatusCode};
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;

use super::transport::{any_scheme_client, describe, Connector, TransportError};

/// A token endpoint's answer is read up to this size.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// How long an unused connection to the token endpoint is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The managed identity's credential: the system-assigned identity, or
/// the user-assigned one with `client_id`. Each request to the token
/// endpoint is bounded by `request_timeout`, its connect by
/// `connect_timeout`. Reads the environment; sends nothing.
///
/// # Errors
///
/// When no HTTP client can be built, or `azure_identity` refuses the
/// environment (a malformed `IDENTITY_ENDPOINT`, a platform it does not
/// support).
pub(crate) fn managed_identity(
    client_id: Option<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<Arc<dyn TokenCredential>, String> {
    let client = IdentityHttp {
        client: any_scheme_client(connect_timeout, IDLE_TIMEOUT)
            .map_err(|e: TransportError| e.to_string())?,
        request_timeout,
    };
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.map(UserAssignedId::ClientId),
        client_options: ClientOptions {
            transport: Some(azure_core::http::Transport::new(Arc::new(client))),
            ..ClientOptions::default()
        },
    };
    let credential = ManagedIdentityCredential::new(Some(options)).map_err(|e| describe(&e))?;
    Ok(credential)
}

/// `azure_core`'s [`HttpClient`] over hyper: one request, its whole
/// answer.
struct IdentityHttp {
    client: Client<Connector, Full<Bytes>>,
    request_timeout: Duration,
}

impl std::fmt::Debug for IdentityHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityHttp")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl HttpClient for IdentityHttp {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let body = match request.body() {
            Body::Bytes(bytes) => bytes.clone(),
            Body::SeekableStream(_) => {
                return Err(Error::with_message(
                    ErrorKind::Other,
                    "a streamed request body is not supported",
                ))
            }
        };
        let mut builder = http::Request::builder()
            .method(request.method().as_str())
            .uri(request.url().as_str());
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| Error::new(ErrorKind::DataConversion, e))?;
        let exchange = async {
            let (parts, body) = self
                .client
                .request(request)
                .await
                .map_err(|e| Error::with_message(ErrorKind::Io, describe(&e)))?
                .into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BODY)
                .collect()
                .await
                .map_err(|e| Error::with_message(ErrorKind::Io, e.to_string()))?
                .to_bytes();
            Ok::<_, Error>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| {
                Error::with_message(
                    ErrorKind::Io,
                    format!(
                        "the token endpoint did not answer within {:?}",
                        self.request_timeout
                    ),
                )
            })??;
        let mut headers = Headers::new();
        for (name, value) in &parts.headers {
            if let Ok(value) = value.to_str() {
                headers.insert(name.as_str().to_owned(), value.to_owned());
            }
        }
        Ok(AsyncRawResponse::from_bytes(
            StatusCode::from(parts.status.as_u16()),
            headers,
            body,
        ))
    }
}
