//! `RequestData`: an incoming request, from a server or consumer span.

use std::borrow::Cow;

use serde::Serialize;

use crate::record::SpanData;

use super::properties::Properties;
use super::semconv::{text, Semantic};
use super::{cut, DurationText, SchemaVersion, SpanHex};

/// `name`: max 1024.
pub(crate) const MAX_NAME: usize = 1024;
/// `responseCode`: max 1024.
pub(crate) const MAX_RESPONSE_CODE: usize = 1024;
/// `source`: max 1024.
pub(crate) const MAX_SOURCE: usize = 1024;
/// `url`: max 2048.
pub(crate) const MAX_URL: usize = 2048;

/// An instance of Request represents completion of an external request to
/// the application to do work and contains a summary of that request
/// execution and the results.
///
/// Required by the schema: `id`, `duration`, `responseCode`, `success`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestData<'a> {
    /// Schema version; always 2.
    pub(crate) ver: SchemaVersion<2>,
    /// Identifier of a request call instance, used for correlation between
    /// the request and other telemetry items: the span id. Max 512 in the
    /// swagger (128 in the docs); ours are 16 hex digits.
    pub(crate) id: SpanHex,
    /// Name of the request: the group of similar requests (e.g. `GET
    /// /values/{id}`): `"METHOD route"` when both are known, else the span
    /// name. Max 1024.
    pub(crate) name: Cow<'a, str>,
    /// Request duration in format `D.HH:MM:SS.ffffff`, less than 1000 days.
    pub(crate) duration: DurationText,
    /// Indication of successful or unsuccessful call.
    pub(crate) success: bool,
    /// Result of a request execution: the HTTP status code, else `"0"`.
    /// Max 1024.
    pub(crate) response_code: Cow<'a, str>,
    /// Source of the request: the `ai.request.source` field (the caller's
    /// `Request-Context` appId); else, for a message consumer,
    /// `<peer>/<destination>` or the destination. Max 1024.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<Cow<'a, str>>,
    /// Request URL with all query string parameters. Max 2048.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<Cow<'a, str>>,
    /// Collection of custom properties: names max 150, values max 8192.
    #[serde(skip_serializing_if = "Properties::is_empty")]
    pub(crate) properties: Properties<'a>,
}

impl<'a> RequestData<'a> {
    /// The request a server or consumer span stands for.
    pub(crate) fn from_span(
        span: &'a SpanData,
        sem: &Semantic<'a>,
        properties: Properties<'a>,
    ) -> Self {
        let name = match sem.method_and_route() {
            Some(name) => Cow::Owned(name),
            None => Cow::Borrowed(&*span.name),
        };
        RequestData {
            ver: SchemaVersion,
            id: SpanHex::span(span.context.span_id),
            name: cut(name, MAX_NAME),
            duration: super::span_duration(span),
            success: sem.success(&span.status),
            response_code: cut(sem.result_code(), MAX_RESPONSE_CODE),
            source: request_source(sem).map(|s| cut(s, MAX_SOURCE)),
            url: sem.full_url().map(|u| cut(u, MAX_URL)),
            properties,
        }
    }
}

/// The request's source: the caller's appId when known, else the
/// messaging source.
fn request_source<'a>(sem: &Semantic<'a>) -> Option<Cow<'a, str>> {
    match sem.request_source {
        Some(source) => Some(text(source)),
        None => messaging_source(sem),
    }
}

/// A consumed message's source: `<peer>/<destination>`, else the
/// destination; only for spans with `messaging.system`.
fn messaging_source<'a>(sem: &Semantic<'a>) -> Option<Cow<'a, str>> {
    sem.messaging_system?;
    let destination = text(sem.messaging_destination?);
    match sem.server_address.or(sem.peer_name) {
        Some(peer) => Some(Cow::Owned(format!("{}/{destination}", text(peer)))),
        None => Some(destination),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use crate::record::{AttributeValue, SpanKind};
    use serde_json::json;

    #[test]
    fn server_span_with_route_is_a_request() {
        let item = one(span(
            SpanKind::Server,
            &[
                ("http.request.method", s("GET")),
                ("url.full", s("http://shop.example/orders/42")),
                ("http.route", s("/orders/{id}")),
                ("http.response.status_code", AttributeValue::I64(200)),
                ("customer", s("alice")),
            ],
        ));
        let want = json!({
            "ver": 1,
            "name": "Microsoft.ApplicationInsights.Request",
            "time": "2010-10-25T11:15:18.123456Z",
            "sampleRate": 25.0,
            "iKey": IKEY,
            "tags": {
                "ai.application.ver": "1.2.3",
                "ai.cloud.role": "shop",
                "ai.cloud.roleInstance": "shop-1",
                "ai.internal.sdkVersion": concat!("rs", env!("TAI_RUSTC_VERSION"), ":tai", env!("CARGO_PKG_VERSION")),
                "ai.operation.id": TRACE,
                "ai.operation.parentId": PARENT,
                "ai.operation.name": "GET /orders/{id}",
            },
            "data": {
                "baseType": "RequestData",
                "baseData": {
                    "ver": 2,
                    "id": SPAN,
                    "name": "GET /orders/{id}",
                    "duration": "0.00:00:00.111111",
                    "success": true,
                    "responseCode": "200",
                    "url": "http://shop.example/orders/42",
                    "properties": { "customer": "alice" },
                },
            },
        });
        assert_eq!(item, want);
    }

    #[test]
    fn server_span_without_method_keeps_its_name() {
        let item = one(span(SpanKind::Server, &[("http.route", s("/r"))]));
        let data = base_data(&item);
        assert_eq!(data["name"], "span-name");
        assert_eq!(data["responseCode"], "0");
        assert_eq!(data["success"], true);
        assert!(data.get("url").is_none());
        assert!(data.get("properties").is_none());
    }

    #[test]
    fn server_url_is_built_from_its_parts() {
        let parts = |port: u64| {
            span(
                SpanKind::Server,
                &[
                    ("url.scheme", s("https")),
                    ("server.address", s("shop.example")),
                    ("server.port", AttributeValue::U64(port)),
                    ("url.path", s("/orders")),
                    ("url.query", s("page=2")),
                ],
            )
        };
        let item = one(parts(8443));
        assert_eq!(
            base_data(&item)["url"],
            "https://shop.example:8443/orders?page=2"
        );
        let item = one(parts(443));
        assert_eq!(
            base_data(&item)["url"],
            "https://shop.example/orders?page=2"
        );
    }

    #[test]
    fn request_tags_come_from_client_fields() {
        let item = one(span(
            SpanKind::Server,
            &[
                ("enduser.id", s("alice")),
                ("client.address", s("10.1.2.3")),
                ("http.user_agent", s("curl/8.0")),
            ],
        ));
        assert_eq!(item["tags"]["ai.user.id"], "alice");
        assert_eq!(item["tags"]["ai.location.ip"], "10.1.2.3");
        assert_eq!(item["tags"]["ai.user.userAgent"], "curl/8.0");
        assert!(base_data(&item).get("properties").is_none());
    }

    #[test]
    fn consumer_span_is_a_request_with_a_source() {
        let item = one(span(
            SpanKind::Consumer,
            &[
                ("messaging.system", s("kafka")),
                ("messaging.destination.name", s("orders")),
                ("net.peer.name", s("broker")),
            ],
        ));
        assert_eq!(item["data"]["baseType"], "RequestData");
        assert_eq!(base_data(&item)["source"], "broker/orders");
        assert_eq!(base_data(&item)["name"], "span-name");
    }

    #[test]
    fn request_source_comes_from_the_callers_app_id() {
        let id = "cid-v1:8e8d2a5b-7c26-4d8a-b5b9-9b2c3d2c1f00";
        let item = one(span(SpanKind::Server, &[("ai.request.source", s(id))]));
        assert_eq!(base_data(&item)["source"], id);
        assert!(base_data(&item).get("properties").is_none(), "consumed");
        // It wins over a messaging source.
        let item = one(span(
            SpanKind::Consumer,
            &[
                ("messaging.system", s("kafka")),
                ("messaging.destination.name", s("orders")),
                ("ai.request.source", s(id)),
            ],
        ));
        assert_eq!(base_data(&item)["source"], id);
        // On a dependency it is an ordinary property.
        let item = one(span(SpanKind::Client, &[("ai.request.source", s(id))]));
        assert_eq!(base_data(&item)["properties"]["ai.request.source"], id);
    }
}
