//! Header handling on the way through: hop-by-hop fields (RFC 9110 §7.6.1), `X-Forwarded-For`,
//! `Host`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Forwarded-For`.
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The marker of mirrored writes (`write_policy = "mirror-marked"`).
pub(crate) static X_SHADOWGATE_SHADOW: HeaderName = HeaderName::from_static("x-shadowgate-shadow");

/// Fields that belong to one connection and are never forwarded: the ones RFC 9110 §7.6.1
/// names, plus the proxy-authentication pair, which is meant for this hop (the mirror takes no
/// proxy credentials, so it neither uses nor forwards them). A `static`: a `const` array would
/// be built and dropped at every use.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Whether `name` is one of [`HOP_BY_HOP`] (a match on the lowercase name: no header values
/// built or compared).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// Removes hop-by-hop fields, including every field the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names is cheaper than a hashed lookup and
    // removal per hop-by-hop name (twice per request).
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION) {
        // Allocates only when `Connection` names a real field (not `close`/`keep-alive`).
        let mut named: Vec<HeaderName> = Vec::new();
        if let Ok(text) = conn.to_str() {
            for token in text.split(',') {
                let token = token.trim();
                if token.is_empty()
                    || token.eq_ignore_ascii_case("close")
                    || token.eq_ignore_ascii_case("keep-alive")
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends the client address to `X-Forwarded-For` (one field, comma-joined, so readers that
/// take only the first field line still see the whole chain).
pub(crate) fn add_forwarded_for(headers: &mut HeaderMap, client: &HeaderValue) {
    match headers.get(&X_FORWARDED_FOR) {
        None => {
            headers.insert(X_FORWARDED_FOR.clone(), client.clone());
        }
        Some(_) => {
            let mut joined: Vec<u8> = Vec::with_capacity(64);
            for v in headers.get_all(&X_FORWARDED_FOR) {
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(v.as_bytes());
            }
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
    }
}

/// Whether the response is an event stream (passed through, never buffered).
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        // The media type, before any parameters (bytes: no UTF-8 check per response).
        let ct = v.as_bytes();
        let media = ct
            .iter()
            .position(|&b| b == b';')
            .map_or(ct, |end| &ct[..end]);
        media
            .trim_ascii()
            .eq_ignore_ascii_case(b"text/event-stream")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_fields() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Trace"),
        );
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, vec!["content-type", "content-length"]);
    }

    #[test]
    fn the_name_match_agrees_with_the_list() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        assert!(!is_hop_by_hop(&header::HOST));
        assert!(!is_hop_by_hop(&X_FORWARDED_FOR));
        assert!(!is_hop_by_hop(&HeaderName::from_static("x-upgrade")));
    }

    #[test]
    fn messages_without_hop_by_hop_fields_are_left_alone() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        h.append("x-keep", HeaderValue::from_static("2"));
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
        // A custom hop-by-hop name alone still triggers the strip.
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn forwarded_for_appends() {
        let ip = HeaderValue::from_static("127.0.0.1");
        let mut h = HeaderMap::new();
        add_forwarded_for(&mut h, &ip);
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        add_forwarded_for(&mut h, &ip);
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2, 127.0.0.1");
    }

    #[test]
    fn event_stream_detection() {
        let mut h = HeaderMap::new();
        assert!(!is_event_stream(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Text/Event-Stream; charset=utf-8"),
        );
        assert!(is_event_stream(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(" text/event-stream "),
        );
        assert!(is_event_stream(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-streams"),
        );
        assert!(!is_event_stream(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!is_event_stream(&h));
    }
}
