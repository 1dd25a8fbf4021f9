//! Proxies: which one the endpoint goes through (hyper-util's [`Matcher`],
//! which reads `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` in
//! both cases, as curl does), and the connector that goes through it: a
//! CONNECT tunnel (hyper-util's [`Tunnel`]) for `https` endpoints, the
//! proxy itself with absolute-form requests for `http` ones.
//!
//! Credentials come from the proxy URL's user information; they travel in
//! `Proxy-Authorization` (marked sensitive) and are never logged: the
//! proxy is named by [`Route::describe`], scheme and host only.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::origin;

/// Which proxy the exporter uses (its `Debug` never shows credentials).
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) enum ProxySetting {
    /// The environment's (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
    /// `NO_PROXY`, upper or lower case): the default.
    #[default]
    FromEnv,
    /// No proxy, whatever the environment says.
    Direct,
    /// This one (an `http://` URL, perhaps with `user:password@`), for
    /// every endpoint.
    Url(String),
}

impl std::fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxySetting::FromEnv => f.write_str("FromEnv"),
            ProxySetting::Direct => f.write_str("Direct"),
            ProxySetting::Url(url) => {
                let shown = url
                    .parse::<Uri>()
                    .map_or_else(|_| "<unparsable>".into(), |u| origin(&u));
                f.debug_tuple("Url").field(&shown).finish()
            }
        }
    }
}

/// Why a proxy cannot be used. Never holds its credentials.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// Not an `http://host[:port]` URL.
    #[error("the proxy `{shown}` cannot be used: {reason}")]
    Unusable {
        /// The proxy, without user information.
        shown: String,
        reason: &'static str,
    },
}

/// How a connection reaches the endpoint.
#[derive(Clone, Debug)]
pub(crate) enum Route {
    /// Straight to it.
    Direct(HttpConnector),
    /// Through a CONNECT tunnel (an `https` endpoint); `shown` names the
    /// proxy without credentials.
    Tunnel {
        tunnel: Tunnel<HttpConnector>,
        shown: String,
    },
    /// To the proxy, which is sent absolute-form requests (an `http`
    /// endpoint), with `auth` on each.
    Forward {
        proxy: Uri,
        auth: Option<HeaderValue>,
        inner: HttpConnector,
        shown: String,
    },
}

impl Route {
    /// The route to `endpoint` under `setting`, over `tcp`.
    pub(crate) fn new(
        setting: &ProxySetting,
        endpoint: &Uri,
        tcp: HttpConnector,
    ) -> Result<Self, ProxyError> {
        let matcher = match setting {
            ProxySetting::Direct => return Ok(Route::Direct(tcp)),
            ProxySetting::FromEnv => Matcher::from_env(),
            ProxySetting::Url(url) => Matcher::builder().all(url.clone()).build(),
        };
        let Some(intercept) = matcher.intercept(endpoint) else {
            return Ok(Route::Direct(tcp));
        };
        let proxy = intercept.uri().clone();
        let shown = origin(&proxy);
        if !proxy
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("http"))
        {
            return Err(ProxyError::Unusable {
                shown,
                reason: "only http:// proxies are supported (a CONNECT tunnel carries TLS to the endpoint)",
            });
        }
        if proxy.host().is_none_or(str::is_empty) {
            return Err(ProxyError::Unusable {
                shown,
                reason: "it has no host",
            });
        }
        let auth = intercept.basic_auth().cloned().map(|mut auth| {
            auth.set_sensitive(true);
            auth
        });
        let https = endpoint
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"));
        Ok(if https {
            let tunnel = Tunnel::new(proxy, tcp);
            let tunnel = match auth {
                Some(auth) => tunnel.with_auth(auth),
                None => tunnel,
            };
            Route::Tunnel { tunnel, shown }
        } else {
            Route::Forward {
                proxy,
                auth,
                inner: tcp,
                shown,
            }
        })
    }

    /// The proxy in use, as a log line may name it (`http://host:port`,
    /// never its credentials); `None` when direct.
    pub(crate) fn describe(&self) -> Option<&str> {
        match self {
            Route::Direct(_) => None,
            Route::Tunnel { shown, .. } | Route::Forward { shown, .. } => Some(shown),
        }
    }

    /// The `Proxy-Authorization` each request carries (an `http` endpoint
    /// through a proxy that wants credentials).
    pub(crate) fn request_auth(&self) -> Option<&HeaderValue> {
        match self {
            Route::Forward { auth, .. } => auth.as_ref(),
            _ => None,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for Route {
    type Response = RouteIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<RouteIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Route::Direct(tcp) | Route::Forward { inner: tcp, .. } => {
                tcp.poll_ready(cx).map_err(Into::into)
            }
            Route::Tunnel { tunnel, .. } => tunnel.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match self {
            Route::Direct(tcp) => {
                let connecting = tcp.call(dst);
                Box::pin(async move {
                    let io = connecting.await?;
                    Ok(RouteIo { io, forward: false })
                })
            }
            Route::Tunnel { tunnel, .. } => {
                let connecting = tunnel.call(dst);
                Box::pin(async move {
                    let io = connecting.await?;
                    Ok(RouteIo { io, forward: false })
                })
            }
            Route::Forward { proxy, inner, .. } => {
                let connecting = inner.call(proxy.clone());
                Box::pin(async move {
                    let io = connecting.await?;
                    Ok(RouteIo { io, forward: true })
                })
            }
        }
    }
}

/// A connection made by a [`Route`]: to a forward proxy, it says so, and
/// hyper then writes absolute-form request targets.
#[derive(Debug)]
pub(crate) struct RouteIo {
    io: TokioIo<TcpStream>,
    forward: bool,
}

impl Connection for RouteIo {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forward)
    }
}

impl Read for RouteIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for RouteIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
