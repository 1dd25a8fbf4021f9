//! [`UrlTemplate`]: the low-cardinality path template of an outgoing HTTP
//! request (OpenTelemetry's `url.template`), given by the caller or derived
//! from the path by a fixed rule. The HTTP client middleware (features
//! `tower` and `reqwest`) record it on the client span, and the dependency
//! is named `"METHOD <template>"` from it.

use std::borrow::Cow;
use std::fmt;

/// The placeholder a high-cardinality path segment becomes.
const PLACEHOLDER: &str = "{id}";

/// A segment this long (in bytes) or longer is taken for an id whatever it
/// holds: tokens, hashes, slugs of titles.
const LONG_SEGMENT: usize = 32;

/// The path template of an outgoing request: the `url.template` field of
/// its client span, from which the dependency's name `"METHOD <template>"`
/// is made. Dependencies of one template are grouped together in the
/// portal, so a template must not contain ids.
///
/// Give one for a request by putting it in the request's extensions
/// (`reqwest_middleware::RequestBuilder::with_extension`, or
/// `http::Request::extensions_mut` for the `tower` client layer); without
/// one, the middleware derives it from the path with
/// [`from_path`](Self::from_path).
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "reqwest")]
/// use tracing_appinsights::reqwest::UrlTemplate;
/// # #[cfg(all(feature = "tower", not(feature = "reqwest")))]
/// # use tracing_appinsights::tower::UrlTemplate;
///
/// let template = UrlTemplate::new("/items/{item}/reviews");
/// assert_eq!(template.as_str(), "/items/{item}/reviews");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UrlTemplate(Cow<'static, str>);

impl UrlTemplate {
    /// The template `template` (used as given: it should start with `/`
    /// and hold no ids).
    pub fn new(template: impl Into<Cow<'static, str>>) -> Self {
        UrlTemplate(template.into())
    }

    /// The template the middleware derives from a request path when none
    /// was given. The path is split at `/` and each segment that looks like
    /// an id becomes `{id}`:
    ///
    /// * a segment containing an ASCII digit (`42`, `a1b2c3`, a UUID, a
    ///   date, a hash, `order-17`, a percent-encoded character), unless it
    ///   is a version: `v` or `V`, digits, and optionally `.`-separated
    ///   digits (`v1`, `v2.1`), which is kept;
    /// * a segment of 32 bytes or more (tokens, slugs);
    /// * a segment containing `@` (e-mail addresses).
    ///
    /// Empty segments are kept (`//` stays `//`); a query or fragment is
    /// dropped; an empty path is `/`. Segments without digits shorter than
    /// 32 bytes (`items`, `search`, a name such as `alice`) are kept as
    /// they are: give a template when a path carries such values.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "reqwest")]
    /// use tracing_appinsights::reqwest::UrlTemplate;
    /// # #[cfg(all(feature = "tower", not(feature = "reqwest")))]
    /// # use tracing_appinsights::tower::UrlTemplate;
    ///
    /// let derived = |path| UrlTemplate::from_path(path).as_str().to_owned();
    /// assert_eq!(derived("/items/42?x=1"), "/items/{id}");
    /// assert_eq!(derived("/api/v2/orders/7f3c9a1e-2b4d-4c8e-9f00-1a2b3c4d5e6f"), "/api/v2/orders/{id}");
    /// assert_eq!(derived("/users/alice@example.com/avatar"), "/users/{id}/avatar");
    /// assert_eq!(derived(""), "/");
    /// ```
    pub fn from_path(path: &str) -> Self {
        UrlTemplate(Cow::Owned(derive(path).into_owned()))
    }

    /// The template's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for UrlTemplate {
    fn from(template: &'static str) -> Self {
        UrlTemplate::new(template)
    }
}

impl From<String> for UrlTemplate {
    fn from(template: String) -> Self {
        UrlTemplate::new(template)
    }
}

impl fmt::Display for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The template of a request to `path`: the [`UrlTemplate`] the caller put
/// in its extensions, else [`derive`]d from the path.
pub(crate) fn of_request<'a>(extensions: &'a http::Extensions, path: &'a str) -> Cow<'a, str> {
    match extensions.get::<UrlTemplate>() {
        Some(given) => Cow::Borrowed(given.as_str()),
        None => derive(path),
    }
}

/// The template of `path` by the rule of [`UrlTemplate::from_path`];
/// borrowed (no allocation) when no segment is replaced.
pub(crate) fn derive(path: &str) -> Cow<'_, str> {
    let path = path.find(['?', '#']).map_or(path, |end| &path[..end]);
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    if !path.split('/').any(is_id) {
        return Cow::Borrowed(path);
    }
    let mut template = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            template.push('/');
        }
        template.push_str(if is_id(segment) { PLACEHOLDER } else { segment });
    }
    Cow::Owned(template)
}

/// Whether a path segment looks like an id (see [`UrlTemplate::from_path`]).
fn is_id(segment: &str) -> bool {
    if segment.len() >= LONG_SEGMENT || segment.contains('@') {
        return true;
    }
    segment.bytes().any(|b| b.is_ascii_digit()) && !is_version(segment)
}

/// `v1`, `V2`, `v2.1`: a `v`, then digits in `.`-separated groups.
fn is_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix(['v', 'V']) else {
        return false;
    };
    rest.split('.')
        .all(|group| !group.is_empty() && group.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_placeholders() {
        let cases = [
            ("/items/42", "/items/{id}"),
            ("/items/42?x=1", "/items/{id}"),
            ("/items/42#top", "/items/{id}"),
            ("/items/42/reviews/7", "/items/{id}/reviews/{id}"),
            (
                "/orders/7f3c9a1e-2b4d-4c8e-9f00-1a2b3c4d5e6f",
                "/orders/{id}",
            ),
            ("/blobs/9f86d081884c7d659a2feaa0c55ad015", "/blobs/{id}"),
            ("/days/2026-12-03", "/days/{id}"),
            ("/orders/order-17", "/orders/{id}"),
            ("/files/caf%C3%A9", "/files/{id}"),
            ("/users/alice@example.com", "/users/{id}"),
            (
                "/tokens/aGVsbG8taGVsbG8taGVsbG8taGVsbG8tYWJj",
                "/tokens/{id}",
            ),
            (
                "/posts/getting-started-with-distributed-tracing",
                "/posts/{id}",
            ),
            ("/42", "/{id}"),
            ("42", "{id}"),
        ];
        for (path, want) in cases {
            assert_eq!(derive(path), want, "{path}");
            assert_eq!(UrlTemplate::from_path(path).as_str(), want, "{path}");
        }
    }

    #[test]
    fn words_and_versions_are_kept_without_allocating() {
        for path in [
            "/",
            "/items",
            "/api/v1/items",
            "/api/V2/items/",
            "/api/v2.1/search",
            "//double//slashes",
            "/users/alice",
            "/a-segment-of-thirty-one-bytes-x",
        ] {
            assert!(
                matches!(derive(path), Cow::Borrowed(p) if p == path),
                "{path}"
            );
        }
        assert!(matches!(derive("/items?id=42"), Cow::Borrowed("/items")));
    }

    #[test]
    fn what_is_not_a_version() {
        for (path, want) in [
            ("/v", "/v"),
            ("/v1a", "/{id}"),
            ("/v1.", "/{id}"),
            ("/v.1", "/{id}"),
            ("/version2", "/{id}"),
            ("/a-segment-of-thirty-two-bytes-xy", "/{id}"),
        ] {
            assert_eq!(derive(path), want, "{path}");
        }
    }

    #[test]
    fn empty_paths_are_the_root() {
        assert_eq!(derive(""), "/");
        assert_eq!(derive("?q=1"), "/");
    }

    #[test]
    fn given_templates_are_kept_as_given() {
        assert_eq!(UrlTemplate::new("/items/{item}").as_str(), "/items/{item}");
        assert_eq!(
            UrlTemplate::from(String::from("/x/42")).to_string(),
            "/x/42"
        );
    }
}
