use super::*;

const KEY: &str = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";
const KEY_UPPER: &str = "0A1B2C3D-4E5F-6789-ABCD-EF0123456789";
const DC: &str = DEFAULT_INGESTION_ENDPOINT;
const RT: &str = DEFAULT_LIVE_ENDPOINT;
const WE: &str = "https://westeurope-5.in.applicationinsights.azure.com";
const IKEY: Authorization = Authorization::Ikey;

/// (input, instrumentation key, ingestion endpoint, live endpoint, authorization)
const VALID: &[(&str, &str, &str, &str, Authorization)] = &[
    // minimal: key only
    ("InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789", KEY, DC, RT, IKEY),
    // key + endpoint, with and without trailing `/`
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/",
        KEY, WE, RT, IKEY,
    ),
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com",
        KEY, WE, RT, IKEY,
    ),
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com///",
        KEY, WE, RT, IKEY,
    ),
    // uppercase GUID is normalised
    ("InstrumentationKey=0A1B2C3D-4E5F-6789-ABCD-EF0123456789", KEY, DC, RT, IKEY),
    // mixed-case keys
    (
        "instrumentationkey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;INGESTIONENDPOINT=https://westeurope-5.in.applicationinsights.azure.com/",
        KEY, WE, RT, IKEY,
    ),
    // whitespace around keys and values
    (
        "  InstrumentationKey = 0a1b2c3d-4e5f-6789-abcd-ef0123456789 ;\tIngestionEndpoint =\thttps://westeurope-5.in.applicationinsights.azure.com/  ",
        KEY, WE, RT, IKEY,
    ),
    // trailing `;`, `;;` in the middle, whitespace-only segment
    ("InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;", KEY, DC, RT, IKEY),
    (
        ";;InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;; ;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;",
        KEY, WE, RT, IKEY,
    ),
    // EndpointSuffix alone, with Location, with stray dots and slashes
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;EndpointSuffix=applicationinsights.azure.cn",
        KEY, "https://dc.applicationinsights.azure.cn", "https://live.applicationinsights.azure.cn", IKEY,
    ),
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;EndpointSuffix=applicationinsights.azure.cn;Location=chinaeast2",
        KEY, "https://chinaeast2.dc.applicationinsights.azure.cn", "https://chinaeast2.live.applicationinsights.azure.cn", IKEY,
    ),
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;EndpointSuffix=.applicationinsights.azure.cn/",
        KEY, "https://dc.applicationinsights.azure.cn", "https://live.applicationinsights.azure.cn", IKEY,
    ),
    // Location alone does nothing
    ("InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;Location=westeurope", KEY, DC, RT, IKEY),
    // explicit endpoint beats EndpointSuffix (live still derived)
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;EndpointSuffix=applicationinsights.azure.cn;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/",
        KEY, WE, "https://live.applicationinsights.azure.cn", IKEY,
    ),
    // LiveEndpoint
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/",
        KEY, DC, "https://westeurope.livediagnostics.monitor.azure.com", IKEY,
    ),
    // the full portal string
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/;ApplicationId=11111111-2222-3333-4444-555555555555",
        KEY, WE, "https://westeurope.livediagnostics.monitor.azure.com", IKEY,
    ),
    // unknown keys ignored, including one whose value contains `=`
    ("Foo=bar;InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;Baz=", KEY, DC, RT, IKEY),
    ("InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;SharedSecret=a=b==", KEY, DC, RT, IKEY),
    // Authorization
    ("InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;Authorization=ikey", KEY, DC, RT, IKEY),
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;Authorization=AAD",
        KEY, DC, RT, Authorization::Aad,
    ),
    // duplicate key: the last one wins, even over an earlier invalid one
    (
        "InstrumentationKey=nope;InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        KEY, DC, RT, IKEY,
    ),
    // http, a port, a path prefix, an IPv6 host, an upper-case scheme
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=http://127.0.0.1:8080/",
        KEY, "http://127.0.0.1:8080", RT, IKEY,
    ),
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=https://proxy.example/ai/",
        KEY, "https://proxy.example/ai", RT, IKEY,
    ),
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=http://[::1]:8080",
        KEY, "http://[::1]:8080", RT, IKEY,
    ),
    (
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=HTTPS://dc.example",
        KEY, "https://dc.example", RT, IKEY,
    ),
];

#[test]
fn valid_connection_strings() {
    for &(input, ikey, ingestion, live, auth) in VALID {
        let cs: ConnectionString = input
            .parse()
            .unwrap_or_else(|e| panic!("{input:?} should parse, got {e:?}"));
        assert_eq!(cs.instrumentation_key(), ikey, "{input:?}");
        assert_eq!(cs.ingestion_endpoint(), ingestion, "{input:?}");
        assert_eq!(cs.live_endpoint(), live, "{input:?}");
        assert_eq!(cs.authorization(), auth, "{input:?}");
    }
}

fn endpoint_err(key: &'static str, reason: &'static str) -> ParseError {
    ParseError::InvalidEndpoint { key, reason }
}

fn bad_key(shortened: &str) -> ParseError {
    ParseError::InvalidInstrumentationKey {
        shortened: shortened.to_owned(),
    }
}

fn with_key(rest: &str) -> String {
    format!("InstrumentationKey={KEY};{rest}")
}

fn invalid_cases() -> Vec<(String, ParseError)> {
    let no_scheme = "must start with `https://` (or `http://` for a local test endpoint), \
                     e.g. `https://dc.services.visualstudio.com`";
    let no_host = "has no host after the scheme; give a URL such as \
                   `https://dc.services.visualstudio.com`";
    let not_ascii = "must contain only printable ASCII characters (no spaces; write an \
                     international host name in punycode)";
    let megabyte = "a".repeat(1 << 20);
    vec![
        (String::new(), ParseError::Empty),
        ("   ".into(), ParseError::Empty),
        (";;;".into(), ParseError::Empty),
        (" ; ;\t;".into(), ParseError::Empty),
        // no `=`: the segment number counts empty pieces too
        (KEY.into(), ParseError::MissingEquals { segment: 1 }),
        (
            format!("InstrumentationKey={KEY};;oops"),
            ParseError::MissingEquals { segment: 3 },
        ),
        ("=abc".into(), ParseError::EmptyKey { segment: 1 }),
        (
            format!("InstrumentationKey={KEY}; =abc"),
            ParseError::EmptyKey { segment: 2 },
        ),
        // missing or empty key
        (
            "IngestionEndpoint=https://x".into(),
            ParseError::MissingInstrumentationKey,
        ),
        (
            "InstrumentationKey=".into(),
            ParseError::MissingInstrumentationKey,
        ),
        (
            "InstrumentationKey=  ;Foo=bar".into(),
            ParseError::MissingInstrumentationKey,
        ),
        // not a GUID
        ("InstrumentationKey=not-a-guid".into(), bad_key("not-a…")),
        (
            "InstrumentationKey=0a1b2c3d4-e5f-6789-abcd-ef0123456789".into(),
            bad_key("0a1b2c3d…"),
        ),
        (
            "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef012345678".into(),
            bad_key("0a1b2c3d…"),
        ),
        (
            "InstrumentationKey={0a1b2c3d-4e5f-6789-abcd-ef0123456789}".into(),
            bad_key("{0a1b2c3…"),
        ),
        (
            "InstrumentationKey=0a1b2c3g-4e5f-6789-abcd-ef0123456789".into(),
            bad_key("0a1b2c3g…"),
        ),
        // multi-byte characters and NUL in the key
        (
            "InstrumentationKey=0a1b2c3é-4e5f-6789-abcd-ef012345678".into(),
            bad_key("0a1b2c3é…"),
        ),
        (
            "InstrumentationKey=ééééééééé-4e5f-6789-abcd-ef0123456789".into(),
            bad_key("éééééééé…"),
        ),
        (
            "InstrumentationKey=\0a1b2c3d-4e5f-6789-abcd-ef0123456789".into(),
            bad_key("\\0a1b2c3d…"),
        ),
        (
            "Instrumentation\u{1F600}Key=x".into(),
            ParseError::MissingInstrumentationKey,
        ),
        // endpoints
        (
            with_key("IngestionEndpoint=ftp://x"),
            endpoint_err(KEY_INGESTION_ENDPOINT, no_scheme),
        ),
        (
            with_key("IngestionEndpoint=dc.example"),
            endpoint_err(KEY_INGESTION_ENDPOINT, no_scheme),
        ),
        (
            with_key("IngestionEndpoint=https://"),
            endpoint_err(KEY_INGESTION_ENDPOINT, no_host),
        ),
        (
            with_key("IngestionEndpoint=https:///"),
            endpoint_err(KEY_INGESTION_ENDPOINT, no_host),
        ),
        (
            with_key("IngestionEndpoint=https:///path"),
            endpoint_err(KEY_INGESTION_ENDPOINT, no_host),
        ),
        (
            with_key("IngestionEndpoint=https://:443"),
            endpoint_err(KEY_INGESTION_ENDPOINT, no_host),
        ),
        (
            with_key("IngestionEndpoint=https://[]:443"),
            endpoint_err(KEY_INGESTION_ENDPOINT, no_host),
        ),
        (
            with_key("IngestionEndpoint="),
            endpoint_err(
                KEY_INGESTION_ENDPOINT,
                "is empty; give a URL such as `https://dc.services.visualstudio.com` \
                 or remove the segment",
            ),
        ),
        (
            with_key("IngestionEndpoint=https://a b"),
            endpoint_err(KEY_INGESTION_ENDPOINT, not_ascii),
        ),
        (
            with_key("IngestionEndpoint=https://x/?a=b"),
            endpoint_err(
                KEY_INGESTION_ENDPOINT,
                "must not contain a query (`?`) or fragment (`#`)",
            ),
        ),
        (
            with_key("IngestionEndpoint=https://user:secret@x"),
            endpoint_err(
                KEY_INGESTION_ENDPOINT,
                "must not contain user information (`user@`); remove it",
            ),
        ),
        (
            with_key("IngestionEndpoint=https://x:99999"),
            endpoint_err(
                KEY_INGESTION_ENDPOINT,
                "has an invalid port (expected 1 to 65535)",
            ),
        ),
        (
            with_key("IngestionEndpoint=https://[::1"),
            endpoint_err(KEY_INGESTION_ENDPOINT, "has an unclosed `[` in its host"),
        ),
        (
            with_key("IngestionEndpoint=é://x"),
            endpoint_err(KEY_INGESTION_ENDPOINT, not_ascii),
        ),
        (
            with_key("IngestionEndpoint=https://é"),
            endpoint_err(KEY_INGESTION_ENDPOINT, not_ascii),
        ),
        (
            with_key("IngestionEndpoint=https://x\0"),
            endpoint_err(KEY_INGESTION_ENDPOINT, not_ascii),
        ),
        (
            with_key("LiveEndpoint=ftp://x"),
            endpoint_err(KEY_LIVE_ENDPOINT, no_scheme),
        ),
        (
            with_key("LiveEndpoint=https://"),
            endpoint_err(KEY_LIVE_ENDPOINT, no_host),
        ),
        (
            with_key("EndpointSuffix=./"),
            endpoint_err(
                KEY_ENDPOINT_SUFFIX,
                "must be a DNS suffix such as `applicationinsights.azure.cn` \
                 (letters, digits, `-` and `.` only)",
            ),
        ),
        (
            with_key("EndpointSuffix=azure.cn;Location=west europe"),
            endpoint_err(
                KEY_LOCATION,
                "must be a region name such as `westeurope` \
                 (letters, digits, `-` and `.` only)",
            ),
        ),
        // Authorization
        (
            with_key("Authorization=Basic"),
            ParseError::InvalidAuthorization,
        ),
        (with_key("Authorization="), ParseError::InvalidAuthorization),
        // hostile sizes
        (megabyte.clone(), ParseError::MissingEquals { segment: 1 }),
        (
            format!("InstrumentationKey={megabyte}"),
            bad_key("aaaaaaaa…"),
        ),
        (
            format!("{megabyte}=x"),
            ParseError::MissingInstrumentationKey,
        ),
        (";".repeat(1 << 20), ParseError::Empty),
        (
            format!("{};x", ";".repeat(1 << 20)),
            ParseError::MissingEquals {
                segment: (1 << 20) + 2,
            },
        ),
    ]
}

#[test]
fn invalid_connection_strings() {
    for (input, expected) in invalid_cases() {
        let shown: String = input.chars().take(80).collect();
        assert_eq!(
            input.parse::<ConnectionString>(),
            Err(expected),
            "{shown:?}"
        );
    }
}

#[test]
fn errors_never_contain_the_full_key() {
    let inputs = [
        // almost-GUIDs: the whole value is secret-looking
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef01234567890".to_owned(),
        "InstrumentationKey=0a1b2c3d_4e5f_6789_abcd_ef0123456789".to_owned(),
        "InstrumentationKey=s3cr3t".to_owned(),
        KEY.to_owned(),
        format!("InstrumentationKey={KEY};IngestionEndpoint=ftp://x"),
        format!("InstrumentationKey={KEY};{KEY}"),
        format!("InstrumentationKey={KEY};Authorization={KEY}"),
    ];
    for input in &inputs {
        let err = input.parse::<ConnectionString>().unwrap_err();
        let value = input
            .split(';')
            .next()
            .and_then(|s| s.split_once('=').map(|(_, v)| v))
            .unwrap_or(input);
        for rendered in [format!("{err}"), format!("{err:?}")] {
            assert!(!rendered.contains(value), "{rendered}");
            assert!(!rendered.contains(KEY), "{rendered}");
        }
    }
}

#[test]
fn debug_shows_only_shortened_key() {
    let cs: ConnectionString = format!("InstrumentationKey={KEY_UPPER}").parse().unwrap();
    let debug = format!("{cs:?}");
    assert!(
        !debug.contains(KEY) && !debug.contains(KEY_UPPER),
        "{debug}"
    );
    assert!(debug.contains("\"0a1b2c3d…\""), "{debug}");
    assert!(debug.contains(DC) && debug.contains(RT), "{debug}");
    assert_eq!(cs.shortened_key(), "0a1b2c3d…");
    assert!(!format!("{cs:#?}").contains(KEY));
}

/// A `Builder` holds the key as given, and its `Debug` shortens it too.
#[test]
fn a_builders_debug_never_shows_the_key() {
    for builder in [
        crate::Builder::new().with_connection_string(format!("InstrumentationKey={KEY}")),
        crate::Builder::new().with_instrumentation_key(KEY),
    ] {
        let debug = format!("{builder:?} {builder:#?}");
        assert!(!debug.contains(KEY), "{debug}");
    }
}

#[test]
fn error_messages_name_the_problem() {
    let cases = [
        ("x=1;y", "segment 2"),
        ("=1", "segment 1"),
        ("", "InstrumentationKey=<guid>"),
        (
            "InstrumentationKey=abc",
            "00000000-0000-0000-0000-000000000000",
        ),
        ("Foo=bar", "no `InstrumentationKey`"),
    ];
    for (input, needle) in cases {
        let message = input.parse::<ConnectionString>().unwrap_err().to_string();
        assert!(message.contains(needle), "{input:?}: {message}");
    }
    let message = with_key("LiveEndpoint=ftp://x")
        .parse::<ConnectionString>()
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("`LiveEndpoint` must start with `https://`"),
        "{message}"
    );
}

#[test]
fn shorten_is_char_boundary_safe_and_hides_short_values() {
    assert_eq!(shorten(""), "…");
    assert_eq!(shorten("ab"), "a…");
    assert_eq!(shorten("s3cr3t"), "s3c…");
    assert_eq!(
        shorten("日本語日本語日本語日本語日本語日本語"),
        "日本語日本語日本…"
    );
    assert_eq!(shorten("\u{7}\u{7}"), "\\u{7}…");
}

#[test]
fn never_panics_on_odd_input() {
    let inputs = [
        "\0",
        "=",
        "==",
        ";=;",
        "é",
        "é=é",
        "InstrumentationKey=\u{FFFF}",
        "IngestionEndpoint=h",
        "IngestionEndpoint=https:/",
        "IngestionEndpoint=[",
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=https://[",
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=https://x:",
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=https://é",
        "InstrumentationKey=0a1b2c3d-4e5f-6789-abcd-ef0123456789;EndpointSuffix=é;Location=é",
    ];
    for input in inputs {
        let _ = input.parse::<ConnectionString>();
    }
    // every prefix of a valid string, split anywhere (char boundaries)
    let full = format!(
        "InstrumentationKey={KEY};IngestionEndpoint=https://[::1]:80/é;LiveEndpoint=http://é;EndpointSuffix=x;Location=y"
    );
    for (i, _) in full.char_indices() {
        let _ = full[..i].parse::<ConnectionString>();
        let _ = full[i..].parse::<ConnectionString>();
    }
}

#[test]
fn aad_audience_is_kept_as_given() {
    let cases = [
        (with_key(""), None),
        (
            with_key("AADAudience=https://monitor.azure.us/"),
            Some("https://monitor.azure.us/"),
        ),
        (
            with_key("aadaudience= https://monitor.azure.com "),
            Some("https://monitor.azure.com"),
        ),
    ];
    for (input, audience) in cases {
        let cs: ConnectionString = input.parse().unwrap();
        assert_eq!(cs.aad_audience(), audience, "{input:?}");
    }
    for bad in [
        "AADAudience=",
        "AADAudience=https://a b/",
        "AADAudience=https://é/",
    ] {
        assert_eq!(
            with_key(bad).parse::<ConnectionString>(),
            Err(ParseError::InvalidAadAudience),
            "{bad:?}"
        );
    }
}
