//! The standard environment: what OpenTelemetry tooling and the Azure
//! hosts set, read once at build time into the process-wide tags.
//!
//! Precedence, highest first (the crate docs' environment table):
//!
//! | tag | builder | OpenTelemetry | platform | last resort |
//! |---|---|---|---|---|
//! | `ai.cloud.role` | `with_cloud_role` | `OTEL_SERVICE_NAME`, else `service.name` of `OTEL_RESOURCE_ATTRIBUTES`, prefixed `service.namespace.` when given | `WEBSITE_SITE_NAME` (App Service, Functions), `CONTAINER_APP_NAME` (Container Apps) | the executable's name |
//! | `ai.cloud.roleInstance` | `with_cloud_role_instance` | `service.instance.id` | `WEBSITE_INSTANCE_ID`, `CONTAINER_APP_REPLICA_NAME`, the pod name on Kubernetes (`POD_NAME`, else `HOSTNAME` when `KUBERNETES_SERVICE_HOST` is set) | the host name |
//! | `ai.application.ver` | `with_application_version` | `service.version` | | none |
//!
//! Everything here reads the environment through a lookup function, so
//! the tests feed it a table. A malformed value is a [`Note`] (a warning
//! naming the variable), never a panic.

use crate::appinsights::envelope::TelemetrySettings;
use crate::diag::Note;

/// `OTEL_SERVICE_NAME`.
pub(crate) const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// `OTEL_RESOURCE_ATTRIBUTES`.
pub(crate) const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// The resource attributes this crate uses, from
/// `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    pub(crate) service_name: Option<String>,
    pub(crate) service_namespace: Option<String>,
    pub(crate) service_instance_id: Option<String>,
    pub(crate) service_version: Option<String>,
    pub(crate) deployment_environment: Option<String>,
}

impl Resource {
    /// Reads `OTEL_RESOURCE_ATTRIBUTES` (`key=value` pairs separated by
    /// commas, values percent-encoded) and `OTEL_SERVICE_NAME`, which
    /// beats `service.name` there, as the OpenTelemetry specification
    /// says. Malformed entries are skipped, each with a warning.
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>, notes: &mut Vec<Note>) -> Self {
        let mut resource = Resource::default();
        if let Some(list) = env(OTEL_RESOURCE_ATTRIBUTES) {
            for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let Some((key, value)) = entry.split_once('=') else {
                    notes.push(malformed(
                        OTEL_RESOURCE_ATTRIBUTES,
                        &format!("the entry `{}` has no `=`", shown(entry)),
                    ));
                    continue;
                };
                let Some(value) = percent_decode(value.trim()) else {
                    notes.push(malformed(
                        OTEL_RESOURCE_ATTRIBUTES,
                        &format!(
                            "the value of `{}` is not valid percent-encoded UTF-8",
                            shown(key)
                        ),
                    ));
                    continue;
                };
                let value = non_empty(value);
                match key.trim() {
                    "service.name" => resource.service_name = value,
                    "service.namespace" => resource.service_namespace = value,
                    "service.instance.id" => resource.service_instance_id = value,
                    "service.version" => resource.service_version = value,
                    "deployment.environment" | "deployment.environment.name" => {
                        resource.deployment_environment = value;
                    }
                    // Other attributes are for other exporters.
                    _ => {}
                }
            }
        }
        if let Some(name) = env(OTEL_SERVICE_NAME).and_then(non_empty) {
            resource.service_name = Some(name);
        }
        resource
    }

    /// `namespace.name`, or the name alone.
    pub(crate) fn role(&self) -> Option<String> {
        let name = self.service_name.as_deref()?;
        Some(match &self.service_namespace {
            Some(namespace) => format!("{namespace}.{name}"),
            None => name.to_owned(),
        })
    }
}

/// The Azure host's names for this service and this instance.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Platform {
    pub(crate) role: Option<String>,
    pub(crate) instance: Option<String>,
}

impl Platform {
    /// App Service and Functions, Container Apps, then Kubernetes.
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| env(name).and_then(non_empty);
        if let Some(site) = get("WEBSITE_SITE_NAME") {
            return Platform {
                role: Some(site),
                instance: get("WEBSITE_INSTANCE_ID"),
            };
        }
        if let Some(app) = get("CONTAINER_APP_NAME") {
            return Platform {
                role: Some(app),
                instance: get("CONTAINER_APP_REPLICA_NAME"),
            };
        }
        if get("KUBERNETES_SERVICE_HOST").is_some() {
            return Platform {
                role: None,
                instance: get("POD_NAME").or_else(|| get("HOSTNAME")),
            };
        }
        Platform::default()
    }
}

/// The process-wide tags the environment supplies where the builder set
/// none: role, role instance and application version (`None` where
/// neither says anything: the envelope falls back to the executable's and
/// the host's names).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Defaults {
    pub(crate) role: Option<String>,
    pub(crate) instance: Option<String>,
    pub(crate) version: Option<String>,
}

impl Defaults {
    /// OpenTelemetry's variables first, then the platform's.
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>, notes: &mut Vec<Note>) -> Self {
        let resource = Resource::from_env(env, notes);
        let platform = Platform::from_env(env);
        Defaults {
            role: resource.role().or(platform.role),
            instance: resource.service_instance_id.clone().or(platform.instance),
            version: resource.service_version,
        }
    }
}

impl Defaults {
    /// `settings` (the builder's), with what they leave unset taken from
    /// these defaults.
    pub(crate) fn complete(self, settings: &TelemetrySettings) -> TelemetrySettings {
        let pick = |set: &Option<String>, default: Option<String>| {
            set.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .or(default)
        };
        TelemetrySettings {
            cloud_role: pick(&settings.cloud_role, self.role),
            cloud_role_instance: pick(&settings.cloud_role_instance, self.instance),
            application_version: pick(&settings.application_version, self.version),
        }
    }
}

/// The process's environment as a lookup (unset and non-UTF-8 values are
/// `None`).
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A warning about a malformed variable.
pub(crate) fn malformed(variable: &str, what: &str) -> Note {
    Note {
        warn: true,
        text: format!("Config.Malformed: {variable}: {what}; ignored"),
    }
}

/// At most 64 characters of a value, for a warning.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn non_empty(s: String) -> Option<String> {
    let trimmed = s.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Decodes `%XX` escapes; `None` for a broken escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'t>(table: &'t [(&'t str, &'t str)]) -> impl Fn(&str) -> Option<String> + 't {
        move |name| {
            table
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn defaults(table: &[(&str, &str)]) -> (Defaults, Vec<Note>) {
        let mut notes = Vec::new();
        let d = Defaults::from_env(&lookup(table), &mut notes);
        (d, notes)
    }

    fn d(role: Option<&str>, instance: Option<&str>, version: Option<&str>) -> Defaults {
        Defaults {
            role: role.map(str::to_owned),
            instance: instance.map(str::to_owned),
            version: version.map(str::to_owned),
        }
    }

    /// The precedence table of the module docs, row by row.
    #[test]
    fn precedence_otel_then_platform() {
        let app_service = [
            ("WEBSITE_SITE_NAME", "shop-web"),
            ("WEBSITE_INSTANCE_ID", "a1b2c3"),
        ];
        let table: Vec<(Vec<(&str, &str)>, Defaults)> = vec![
            (vec![], d(None, None, None)),
            (app_service.to_vec(), d(Some("shop-web"), Some("a1b2c3"), None)),
            (
                vec![
                    ("CONTAINER_APP_NAME", "orders"),
                    ("CONTAINER_APP_REPLICA_NAME", "orders--rev1-7d9f"),
                ],
                d(Some("orders"), Some("orders--rev1-7d9f"), None),
            ),
            (
                vec![
                    ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
                    ("HOSTNAME", "api-5f7c9-xk2p"),
                ],
                d(None, Some("api-5f7c9-xk2p"), None),
            ),
            (
                vec![
                    ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
                    ("HOSTNAME", "node"),
                    ("POD_NAME", "api-5f7c9-xk2p"),
                ],
                d(None, Some("api-5f7c9-xk2p"), None),
            ),
            // OpenTelemetry beats the platform.
            (
                [
                    app_service.as_slice(),
                    &[(
                        "OTEL_RESOURCE_ATTRIBUTES",
                        "service.name=cart,service.namespace=shop,service.instance.id=i-7,service.version=1.4.2",
                    )],
                ]
                .concat(),
                d(Some("shop.cart"), Some("i-7"), Some("1.4.2")),
            ),
            // OTEL_SERVICE_NAME beats service.name; the platform's
            // instance stays when OpenTelemetry names none.
            (
                [
                    app_service.as_slice(),
                    &[
                        ("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored"),
                        ("OTEL_SERVICE_NAME", "checkout"),
                    ],
                ]
                .concat(),
                d(Some("checkout"), Some("a1b2c3"), None),
            ),
        ];
        for (env, expected) in table {
            let (got, notes) = defaults(&env);
            assert_eq!(got, expected, "{env:?}");
            assert!(notes.is_empty(), "{notes:?}");
        }
    }

    #[test]
    fn resource_attributes_are_percent_decoded_and_trimmed() {
        let mut notes = Vec::new();
        let r = Resource::from_env(
            &lookup(&[(
                "OTEL_RESOURCE_ATTRIBUTES",
                " service.name = my%20api , deployment.environment=prod%2Ceu ,other=x",
            )]),
            &mut notes,
        );
        assert_eq!(r.service_name.as_deref(), Some("my api"));
        assert_eq!(r.deployment_environment.as_deref(), Some("prod,eu"));
        assert!(notes.is_empty());
    }

    #[test]
    fn malformed_values_are_warnings_naming_the_variable() {
        let mut notes = Vec::new();
        let r = Resource::from_env(
            &lookup(&[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "novalue,service.name=%zz,service.version=%ff%fe,service.namespace=ok",
            )]),
            &mut notes,
        );
        assert_eq!(r.service_namespace.as_deref(), Some("ok"));
        assert_eq!((r.service_name, r.service_version), (None, None));
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes
            .iter()
            .all(|n| n.warn && n.text.contains("OTEL_RESOURCE_ATTRIBUTES")));
        // Hostile values never panic, whatever they hold.
        for hostile in ["%", "a=%", "a=%4", "=", ",,,", "a=b=c", "é=%C3%A9%"] {
            let mut notes = Vec::new();
            Resource::from_env(
                &lookup(&[("OTEL_RESOURCE_ATTRIBUTES", hostile)]),
                &mut notes,
            );
        }
    }
}
