//! The envelope's context tags (`tags`: a map of `ai.*` keys to strings),
//! as a struct of optional borrowed fields: absent tags are not sent.
//!
//! Maximum lengths (in UTF-16 code units, as the service counts) are the
//! Bond schema's for each context tag key; `docs/mapping.md` lists them.

use std::borrow::Cow;

use serde::Serialize;

use super::{SpanHex, TraceHex};

/// `ai.application.ver`: max 1024.
pub(crate) const MAX_APPLICATION_VER: usize = 1024;
/// `ai.cloud.role`: max 256.
pub(crate) const MAX_CLOUD_ROLE: usize = 256;
/// `ai.cloud.roleInstance`: max 256.
pub(crate) const MAX_CLOUD_ROLE_INSTANCE: usize = 256;
/// `ai.internal.sdkVersion`: max 64.
pub(crate) const MAX_SDK_VERSION: usize = 64;
/// `ai.operation.name`: max 1024.
pub(crate) const MAX_OPERATION_NAME: usize = 1024;
/// `ai.user.id`: max 128.
pub(crate) const MAX_USER_ID: usize = 128;
/// `ai.location.ip`: max 46 (an IPv6 address with zone fits).
pub(crate) const MAX_LOCATION_IP: usize = 46;
/// `ai.user.userAgent`: not in the swagger's key list (the successor sends
/// it anyway); we apply the common 1024.
pub(crate) const MAX_USER_AGENT: usize = 1024;

/// The context tags of one envelope. Text is borrowed from the record and
/// the context, or owned when a processor set it.
///
/// Field order is the JSON order: process-wide tags first, then the
/// operation (correlation) tags, then the end user's.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Tags<'a> {
    /// Application version (`ai.application.ver`), from the builder. Max 1024.
    #[serde(rename = "ai.application.ver", skip_serializing_if = "Option::is_none")]
    pub(crate) application_ver: Option<Cow<'a, str>>,
    /// Name of the role the application is a part of (`ai.cloud.role`): the
    /// node of the application map. Max 256.
    #[serde(rename = "ai.cloud.role", skip_serializing_if = "Option::is_none")]
    pub(crate) cloud_role: Option<Cow<'a, str>>,
    /// Name of the instance where the application is running
    /// (`ai.cloud.roleInstance`). Max 256.
    #[serde(
        rename = "ai.cloud.roleInstance",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) cloud_role_instance: Option<Cow<'a, str>>,
    /// SDK version (`ai.internal.sdkVersion`), `rs<rustc version>:tai<crate version>`.
    /// Max 64.
    #[serde(
        rename = "ai.internal.sdkVersion",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) sdk_version: Option<Cow<'a, str>>,
    /// A unique identifier for the operation instance (`ai.operation.id`):
    /// the trace id, 32 lowercase hex. Max 128.
    #[serde(rename = "ai.operation.id", skip_serializing_if = "Option::is_none")]
    pub(crate) operation_id: Option<TraceHex>,
    /// The unique identifier of the telemetry item's immediate parent
    /// (`ai.operation.parentId`): the parent span id, 16 lowercase hex;
    /// absent for a root. Max 128.
    #[serde(
        rename = "ai.operation.parentId",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) operation_parent_id: Option<SpanHex>,
    /// The name (group) of the operation (`ai.operation.name`): the local
    /// root's name, on every item of the operation. Max 1024.
    #[serde(rename = "ai.operation.name", skip_serializing_if = "Option::is_none")]
    pub(crate) operation_name: Option<Cow<'a, str>>,
    /// Anonymous user id (`ai.user.id`), from `enduser.id`. Max 128.
    #[serde(rename = "ai.user.id", skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<Cow<'a, str>>,
    /// The IP address of the client device (`ai.location.ip`), from
    /// `client.address` / `http.client_ip`. Max 46.
    #[serde(rename = "ai.location.ip", skip_serializing_if = "Option::is_none")]
    pub(crate) location_ip: Option<Cow<'a, str>>,
    /// The client's user agent (`ai.user.userAgent`), from
    /// `user_agent.original` / `http.user_agent`. Max 1024 (our choice).
    #[serde(rename = "ai.user.userAgent", skip_serializing_if = "Option::is_none")]
    pub(crate) user_agent: Option<Cow<'a, str>>,
}

impl<'a> Tags<'a> {
    /// The tags' text values with their keys, for cutting an oversized
    /// item (see [`write_envelope`](super::write_envelope)); ids are
    /// fixed-size and not included.
    pub(crate) fn texts_mut(&mut self) -> [(&'static str, &mut Option<Cow<'a, str>>); 8] {
        [
            ("ai.application.ver", &mut self.application_ver),
            ("ai.cloud.role", &mut self.cloud_role),
            ("ai.cloud.roleInstance", &mut self.cloud_role_instance),
            ("ai.internal.sdkVersion", &mut self.sdk_version),
            ("ai.operation.name", &mut self.operation_name),
            ("ai.user.id", &mut self.user_id),
            ("ai.location.ip", &mut self.location_ip),
            ("ai.user.userAgent", &mut self.user_agent),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ids::{SpanId, TraceId};
    use serde_json::json;

    #[test]
    fn absent_tags_are_not_sent() {
        let tags = Tags {
            cloud_role: Some("svc".into()),
            ..Tags::default()
        };
        assert_eq!(
            serde_json::to_value(&tags).unwrap(),
            json!({ "ai.cloud.role": "svc" })
        );
    }

    #[test]
    fn every_key_is_spelled_as_the_schema_says() {
        let tags = Tags {
            application_ver: Some("1.2.3".into()),
            cloud_role: Some("role".into()),
            cloud_role_instance: Some("host".into()),
            sdk_version: Some("rs:tai0.1.0".into()),
            operation_id: Some(TraceHex::trace(TraceId::from_int(0xabc))),
            operation_parent_id: Some(SpanHex::span(SpanId::from_int(0xdef))),
            operation_name: Some("GET /x".into()),
            user_id: Some("alice".into()),
            location_ip: Some("10.0.0.1".into()),
            user_agent: Some("curl/8".into()),
        };
        let want = json!({
            "ai.application.ver": "1.2.3",
            "ai.cloud.role": "role",
            "ai.cloud.roleInstance": "host",
            "ai.internal.sdkVersion": "rs:tai0.1.0",
            "ai.operation.id": "00000000000000000000000000000abc",
            "ai.operation.parentId": "0000000000000def",
            "ai.operation.name": "GET /x",
            "ai.user.id": "alice",
            "ai.location.ip": "10.0.0.1",
            "ai.user.userAgent": "curl/8",
        });
        assert_eq!(serde_json::to_value(&tags).unwrap(), want);
    }

    #[test]
    fn texts_mut_reaches_every_text_tag() {
        let mut tags = Tags {
            application_ver: Some("v".into()),
            cloud_role: Some("r".into()),
            cloud_role_instance: Some("i".into()),
            sdk_version: Some("s".into()),
            operation_name: Some("n".into()),
            user_id: Some("u".into()),
            location_ip: Some("l".into()),
            user_agent: Some("a".into()),
            ..Tags::default()
        };
        for (_, text) in tags.texts_mut() {
            *text = None;
        }
        assert_eq!(serde_json::to_value(&tags).unwrap(), json!({}));
    }
}
