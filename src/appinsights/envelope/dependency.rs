//! `RemoteDependencyData`: an outgoing call or in-process work, from client,
//! producer, internal and unspecified spans.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::record::{AttributeValue, SpanData, SpanKind};

use super::event::EventView;
use super::exception::is_exception;
use super::properties::{PropValue, Properties};
use super::semconv::{db_type, text, Semantic};
use super::{cut, DurationText, SchemaVersion, SpanHex};

/// The target of sqlx's query events (one per statement run, at the end of
/// it; sqlx opens no span).
pub(crate) use crate::targets::SQLX_QUERY as SQLX_TARGET;
/// sqlx's fields that make the dependency itself rather than properties:
/// the first words of the statement, its run time (as `Debug` text and as
/// seconds).
const SQLX_SUMMARY: &str = "summary";
const SQLX_ELAPSED: &str = "elapsed";
const SQLX_ELAPSED_SECS: &str = "elapsed_secs";
/// The property that keeps a sqlx event's message (sqlx writes one for a
/// slow statement).
const PROPERTY_MESSAGE: &str = "message";

/// `name`: max 1024.
pub(crate) const MAX_NAME: usize = 1024;
/// `resultCode`: max 1024.
pub(crate) const MAX_RESULT_CODE: usize = 1024;
/// `data`: max 8192.
pub(crate) const MAX_DATA: usize = 8192;
/// `type`: max 1024.
pub(crate) const MAX_TYPE: usize = 1024;
/// `target`: max 1024.
pub(crate) const MAX_TARGET: usize = 1024;

/// An instance of Remote Dependency represents an interaction of the
/// monitored component with a remote component/service like SQL or an HTTP
/// endpoint (and, with type `InProc`, work inside the process).
///
/// Required by the schema: `name`, `duration`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RemoteDependencyData<'a> {
    /// Schema version; always 2.
    pub(crate) ver: SchemaVersion<2>,
    /// Name of the command initiated with this dependency call. Low
    /// cardinality value. Examples are stored procedure name and URL path
    /// template: `"METHOD path"` for HTTP, else the span name. Max 1024.
    pub(crate) name: Cow<'a, str>,
    /// Identifier of a dependency call instance, used for correlation with
    /// the request telemetry item corresponding to this dependency call: the
    /// span id. Max 512 (docs: 128).
    pub(crate) id: SpanHex,
    /// Result code of a dependency call: the HTTP status code, else `"0"`.
    /// Max 1024.
    pub(crate) result_code: Cow<'a, str>,
    /// Request duration in format `D.HH:MM:SS.ffffff`, less than 1000 days.
    pub(crate) duration: DurationText,
    /// Indication of successful or unsuccessful call.
    pub(crate) success: bool,
    /// Command initiated by this dependency call: the full URL, or the SQL
    /// statement (else the operation). Max 8192.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<Cow<'a, str>>,
    /// Dependency type name. Very low cardinality value for logical
    /// grouping of dependencies and interpretation of other fields like
    /// commandName and resultCode: `HTTP`, `SQL`, `mysql`, `kafka`,
    /// `Queue Message | kafka`, `InProc`, … Max 1024.
    #[serde(rename = "type")]
    pub(crate) dependency_type: Cow<'a, str>,
    /// Target site of a dependency call: server name, host address
    /// (`host[:port]`, default ports omitted), `host|database`, queue. Max 1024.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<Cow<'a, str>>,
    /// Collection of custom properties: names max 150, values max 8192.
    #[serde(skip_serializing_if = "Properties::is_empty")]
    pub(crate) properties: Properties<'a>,
}

/// What the conventions of a span decide: type, target, data, name.
struct Shape<'a> {
    dependency_type: Cow<'a, str>,
    target: Option<Cow<'a, str>>,
    data: Option<Cow<'a, str>>,
    name: Option<String>,
}

impl<'a> Shape<'a> {
    fn new(dependency_type: Cow<'a, str>, target: Option<Cow<'a, str>>) -> Self {
        Shape {
            dependency_type,
            target,
            data: None,
            name: None,
        }
    }
}

impl<'a> RemoteDependencyData<'a> {
    /// The dependency a client, producer, internal or unspecified span
    /// stands for.
    pub(crate) fn from_span(
        span: &'a SpanData,
        sem: &Semantic<'a>,
        properties: Properties<'a>,
    ) -> Self {
        let shape = shape(span.kind, sem);
        let name = match shape.name {
            Some(name) => Cow::Owned(name),
            None => Cow::Borrowed(&*span.name),
        };
        RemoteDependencyData {
            ver: SchemaVersion,
            name: cut(name, MAX_NAME),
            id: SpanHex::span(span.context.span_id),
            result_code: cut(sem.result_code(), MAX_RESULT_CODE),
            duration: super::span_duration(span),
            success: sem.success(&span.status),
            data: shape.data.map(|d| cut(d, MAX_DATA)),
            dependency_type: cut(shape.dependency_type, MAX_TYPE),
            target: shape.target.map(|t| cut(t, MAX_TARGET)),
            properties,
        }
    }
}

impl<'a> RemoteDependencyData<'a> {
    /// The SQL dependency a sqlx query event stands for, with its start
    /// (the event's time less the statement's run time); `None` for any
    /// other event (another target, or no `elapsed_secs`).
    ///
    /// `name` is sqlx's `summary` (the statement's first four words), `data`
    /// the statement (sqlx leaves `db.statement` empty when it is the
    /// summary), `type` the event's `db.system` when it has one, else
    /// `SQL`; failed when the event carries an error. The other fields
    /// (`rows_affected`, `rows_returned`, a slow statement's threshold and
    /// message) are properties.
    pub(crate) fn from_sqlx_event(event: &EventView<'a>) -> Option<(Self, SystemTime)> {
        if event.target != SQLX_TARGET {
            return None;
        }
        let elapsed = match event.attributes.get(SQLX_ELAPSED_SECS)? {
            // Capped, so that the start stays as far back as the duration
            // sent says.
            AttributeValue::F64(secs) => {
                crate::time::capped(Duration::try_from_secs_f64(*secs).ok()?)
            }
            _ => return None,
        };
        let mut props = Properties::with_capacity(event.attributes.len());
        let sem = Semantic::scan(event.attributes, false, &mut props);
        for own in [SQLX_SUMMARY, SQLX_ELAPSED, SQLX_ELAPSED_SECS] {
            props.remove(own);
        }
        if !event.message.is_empty() {
            let message =
                crate::record::text::truncate_utf16(event.message, super::properties::MAX_VALUE);
            props.push(PROPERTY_MESSAGE, PropValue::Str(message));
        }
        let summary = event.attributes.get(SQLX_SUMMARY).map(text);
        let statement = sem
            .db_statement
            .map(text)
            .map(|s| match s {
                Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
                Cow::Owned(s) => Cow::Owned(s.trim().to_owned()),
            })
            .filter(|s| !s.is_empty());
        let mut shape = match sem.db_system {
            Some(_) => database(&sem),
            None => Shape::new(Cow::Borrowed("SQL"), sem.peer_target(None)),
        };
        shape.data = statement.or_else(|| summary.clone());
        let name = summary
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(Cow::Borrowed("SQL"));
        let start = event
            .timestamp
            .checked_sub(elapsed)
            .unwrap_or(event.timestamp);
        let dependency = RemoteDependencyData {
            ver: SchemaVersion,
            name: cut(name, MAX_NAME),
            id: SpanHex::span(crate::record::ids::new_span_id()),
            result_code: Cow::Borrowed("0"),
            duration: DurationText::of(elapsed),
            success: !is_exception(event.attributes),
            data: shape.data.map(|d| cut(d, MAX_DATA)),
            dependency_type: cut(shape.dependency_type, MAX_TYPE),
            target: shape.target.map(|t| cut(t, MAX_TARGET)),
            properties: props,
        };
        Some((dependency, start))
    }
}

/// The first convention that applies: producer, HTTP (`http.method`),
/// database (`db.system`), messaging (`messaging.system`); else `component`
/// or `N/A` for a client, `InProc` for internal and unspecified spans.
fn shape<'a>(kind: SpanKind, sem: &Semantic<'a>) -> Shape<'a> {
    if kind == SpanKind::Producer {
        return producer(sem);
    }
    if sem.method.is_some() {
        return http(sem);
    }
    if sem.db_system.is_some() {
        return database(sem);
    }
    if let Some(system) = sem.messaging_system {
        return Shape::new(text(system), messaging_target(sem));
    }
    match kind {
        SpanKind::Client => {
            let ty = sem.component.map_or(Cow::Borrowed("N/A"), text);
            Shape::new(ty, sem.peer_target(None))
        }
        _ => Shape::new(Cow::Borrowed("InProc"), None),
    }
}

/// `Queue Message | <messaging.system>` to the destination.
fn producer<'a>(sem: &Semantic<'a>) -> Shape<'a> {
    let ty = match sem.messaging_system {
        Some(system) => Cow::Owned(format!("Queue Message | {}", text(system))),
        None => Cow::Borrowed("Queue Message"),
    };
    Shape::new(ty, messaging_target(sem))
}

/// A message destination, else the messaging system.
fn messaging_target<'a>(sem: &Semantic<'a>) -> Option<Cow<'a, str>> {
    sem.messaging_destination.or(sem.messaging_system).map(text)
}

/// `HTTP`: `"METHOD path"`, the full URL, the host.
fn http<'a>(sem: &Semantic<'a>) -> Shape<'a> {
    Shape {
        dependency_type: Cow::Borrowed("HTTP"),
        target: sem.http_target(),
        data: sem.full_url(),
        name: sem.method_and_path(),
    }
}

/// A database: the system (or `SQL`), `host|db`, the statement.
fn database<'a>(sem: &Semantic<'a>) -> Shape<'a> {
    let system = sem.db_system.map(text).unwrap_or_default();
    let db_name = sem.db_name.map(text);
    let target = match (sem.peer_target(Some(&system)), db_name) {
        (Some(peer), Some(db)) => Some(Cow::Owned(format!("{peer}|{db}"))),
        (Some(peer), None) => Some(peer),
        (None, Some(db)) => Some(db),
        (None, None) => Some(system.clone()),
    };
    let dependency_type = match system {
        Cow::Borrowed(s) => Cow::Borrowed(db_type(s)),
        Cow::Owned(s) => Cow::Owned(db_type(&s).to_owned()),
    };
    let data = sem.db_statement.or(sem.db_operation).map(text);
    Shape {
        dependency_type,
        target,
        data,
        name: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use crate::record::{AttributeValue, SpanKind};
    use serde_json::json;

    #[test]
    fn http_client_omits_default_ports() {
        let client = |url: &str| {
            span(
                SpanKind::Client,
                &[
                    ("http.method", s("GET")),
                    ("http.url", s(url)),
                    ("http.status_code", AttributeValue::I64(503)),
                ],
            )
        };
        let item = one(client("https://user:pw@inventory.example:443/items?id=42"));
        assert_eq!(
            item["name"],
            "Microsoft.ApplicationInsights.RemoteDependency"
        );
        let want = json!({
            "ver": 2,
            "name": "GET /items",
            "id": SPAN,
            "resultCode": "503",
            "duration": "0.00:00:00.111111",
            "success": false,
            "data": "https://inventory.example:443/items?id=42",
            "type": "HTTP",
            "target": "inventory.example",
        });
        assert_eq!(base_data(&item), &want);
        let item = one(client("http://inventory.example:8080/items"));
        assert_eq!(base_data(&item)["target"], "inventory.example:8080");
        let item = one(client("http://inventory.example"));
        assert_eq!(base_data(&item)["name"], "GET /");
    }

    #[test]
    fn http_client_prefers_server_address() {
        let item = one(span(
            SpanKind::Client,
            &[
                ("http.request.method", s("POST")),
                ("url.full", s("http://10.0.0.7/pay")),
                ("server.address", s("payments")),
                ("server.port", AttributeValue::I64(80)),
            ],
        ));
        assert_eq!(base_data(&item)["target"], "payments");
        assert_eq!(base_data(&item)["name"], "POST /pay");
    }

    #[test]
    fn http_client_is_named_by_its_url_template() {
        let item = one(span(
            SpanKind::Client,
            &[
                ("http.request.method", s("GET")),
                ("url.full", s("http://inventory.example/items/42?x=1")),
                ("url.template", s("/items/{id}")),
                ("http.response.status_code", AttributeValue::U64(200)),
            ],
        ));
        let data = base_data(&item);
        assert_eq!(data["name"], "GET /items/{id}");
        assert_eq!(data["data"], "http://inventory.example/items/42?x=1");
        assert!(data.get("properties").is_none(), "consumed: {data}");
        // Without a template, the path as before.
        let item = one(span(
            SpanKind::Client,
            &[
                ("http.request.method", s("GET")),
                ("url.full", s("http://inventory.example/items/42?x=1")),
            ],
        ));
        assert_eq!(base_data(&item)["name"], "GET /items/42");
    }

    #[test]
    fn a_server_span_keeps_a_url_template_as_a_property() {
        let item = one(span(
            SpanKind::Server,
            &[
                ("http.request.method", s("GET")),
                ("http.route", s("/items/{id}")),
                ("url.template", s("/items/{item}")),
            ],
        ));
        let data = base_data(&item);
        assert_eq!(data["name"], "GET /items/{id}");
        assert_eq!(data["properties"]["url.template"], "/items/{item}");
    }

    #[test]
    fn postgres_omits_its_default_port_and_names_the_database() {
        let db = |port: i64| {
            span(
                SpanKind::Client,
                &[
                    ("db.system", s("postgresql")),
                    ("server.address", s("db.local")),
                    ("server.port", AttributeValue::I64(port)),
                    ("db.name", s("orders")),
                    ("db.statement", s("SELECT * FROM orders")),
                ],
            )
        };
        let item = one(db(5432));
        let data = base_data(&item);
        assert_eq!(data["type"], "postgresql");
        assert_eq!(data["target"], "db.local|orders");
        assert_eq!(data["data"], "SELECT * FROM orders");
        assert_eq!(data["name"], "span-name");
        let item = one(db(5433));
        assert_eq!(base_data(&item)["target"], "db.local:5433|orders");
    }

    #[test]
    fn sql_family_is_sql() {
        let item = one(span(
            SpanKind::Client,
            &[
                ("db.system", s("mssql")),
                ("db.namespace", s("sales")),
                ("db.query.text", s("SELECT 1")),
            ],
        ));
        let data = base_data(&item);
        assert_eq!(data["type"], "SQL");
        assert_eq!(data["target"], "sales");
        assert_eq!(data["data"], "SELECT 1");
        let item = one(span(SpanKind::Client, &[("db.system", s("sqlite"))]));
        assert_eq!(base_data(&item)["target"], "sqlite");
    }

    #[test]
    fn producer_is_a_queue_message() {
        let item = one(span(
            SpanKind::Producer,
            &[
                ("messaging.system", s("kafka")),
                ("messaging.destination", s("orders")),
            ],
        ));
        assert_eq!(base_data(&item)["type"], "Queue Message | kafka");
        assert_eq!(base_data(&item)["target"], "orders");
    }

    #[test]
    fn internal_and_unspecified_are_in_process() {
        for kind in [SpanKind::Internal, SpanKind::Unspecified] {
            let item = one(span(kind, &[("key1", s("value1"))]));
            let want = json!({
                "ver": 2, "name": "span-name", "id": SPAN, "resultCode": "0",
                "duration": "0.00:00:00.111111", "success": true, "type": "InProc",
                "properties": { "key1": "value1" },
            });
            assert_eq!(base_data(&item), &want);
        }
    }

    #[test]
    fn client_without_convention_uses_component_else_na() {
        let item = one(span(SpanKind::Client, &[("component", s("grpc"))]));
        assert_eq!(base_data(&item)["type"], "grpc");
        assert_eq!(base_data(&item)["properties"]["component"], "grpc");
        let item = one(span(SpanKind::Client, &[("peer.service", s("billing"))]));
        assert_eq!(base_data(&item)["type"], "N/A");
        assert_eq!(base_data(&item)["target"], "billing");
    }

    #[test]
    fn client_spans_keep_client_fields_as_properties() {
        let item = one(span(
            SpanKind::Client,
            &[
                ("enduser.id", s("alice")),
                ("user_agent.original", s("reqwest/0.12")),
            ],
        ));
        assert_eq!(item["tags"]["ai.user.id"], "alice");
        assert!(item["tags"].get("ai.user.userAgent").is_none());
        assert_eq!(
            base_data(&item)["properties"],
            json!({ "user_agent.original": "reqwest/0.12" })
        );
    }

    #[test]
    fn new_convention_names_win_over_old() {
        let item = one(span(
            SpanKind::Client,
            &[
                ("http.request.method", s("PUT")),
                ("http.method", s("GET")),
                ("http.url", s("http://old/x")),
                ("url.full", s("http://new/y")),
            ],
        ));
        assert_eq!(base_data(&item)["name"], "PUT /y");
        assert_eq!(base_data(&item)["data"], "http://new/y");
    }

    /// A sqlx query event, as sqlx writes it, outside spans.
    fn sqlx_event(fields: &[(&'static str, AttributeValue)]) -> crate::record::Record {
        crate::record::Record::Event(Box::new(crate::record::EventData {
            timestamp: start(),
            level: tracing_core::Level::DEBUG,
            target: super::SQLX_TARGET,
            message: Default::default(),
            attributes: attrs(fields),
            span: None,
            sample_rate: None,
        }))
    }

    #[test]
    fn a_sqlx_event_is_a_sql_dependency_that_started_elapsed_before_it() {
        let items = items(&sqlx_event(&[
            ("summary", s("SELECT id FROM orders …")),
            (
                "db.statement",
                s("\n\nSELECT id FROM orders WHERE item = ?\n"),
            ),
            ("rows_affected", AttributeValue::U64(0)),
            ("rows_returned", AttributeValue::U64(3)),
            ("elapsed", AttributeValue::Debug("1.5ms".into())),
            ("elapsed_secs", AttributeValue::F64(0.0015)),
        ]));
        assert_eq!(items.len(), 1);
        let item = &items[0];
        assert_eq!(item["time"], "2010-10-25T11:15:18.121956Z");
        let data = base_data(item);
        assert_eq!(data["name"], "SELECT id FROM orders …");
        assert_eq!(data["data"], "SELECT id FROM orders WHERE item = ?");
        assert_eq!(data["type"], "SQL");
        assert_eq!(data["duration"], "0.00:00:00.001500");
        assert_eq!(data["success"], true);
        assert_eq!(
            data["properties"],
            json!({ "rows_affected": "0", "rows_returned": "3" })
        );
        // Outside spans: an operation of its own, no parent.
        assert_eq!(item["tags"]["ai.operation.id"].as_str().unwrap().len(), 32);
        assert!(item["tags"].get("ai.operation.parentId").is_none());
    }

    #[test]
    fn a_sqlx_event_without_a_statement_shows_its_summary_and_names_a_database_it_knows() {
        let items = items(&sqlx_event(&[
            ("summary", s("BEGIN")),
            ("db.statement", s("")),
            ("db.system", s("postgresql")),
            ("server.address", s("db.internal")),
            ("elapsed_secs", AttributeValue::F64(0.0)),
            ("exception.message", s("connection reset")),
        ]));
        let data = base_data(&items[0]);
        assert_eq!(data["name"], "BEGIN");
        assert_eq!(data["data"], "BEGIN");
        assert_eq!(data["type"], "postgresql");
        assert_eq!(data["target"], "db.internal");
        assert_eq!(data["success"], false);
    }

    #[test]
    fn a_sqlx_event_with_a_hostile_elapsed_is_a_log_line() {
        for elapsed in [f64::NAN, -1.0, f64::INFINITY] {
            let items = items(&sqlx_event(&[
                ("summary", s("SELECT 1")),
                ("elapsed_secs", AttributeValue::F64(elapsed)),
            ]));
            assert_eq!(items[0]["data"]["baseType"], "MessageData", "{elapsed}");
        }
        // A statement that ran for longer than the schema's duration: capped.
        let items = items(&sqlx_event(&[
            ("summary", s("")),
            ("elapsed_secs", AttributeValue::F64(1e12)),
        ]));
        let data = base_data(&items[0]);
        assert_eq!(data["name"], "SQL");
        assert_eq!(data["duration"], "999.23:59:59.999999");
        // 2010-10-25 less 1000 days.
        assert!(items[0]["time"]
            .as_str()
            .unwrap()
            .starts_with("2008-01-29T"));
    }
}
