//! Latency series names and their interval-log tags.
//!
//! A tag is `<target>:<METHOD>:<route>[;<measure>]`. HdrHistogram tags may not contain ' ', ',',
//! CR or LF (the Rust writer refuses them and Java's reader splits on them), so the route, which
//! can contain anything, is percent-encoded: ' ' ',' ';' '%' and every ASCII control character
//! become `%XX`. Target and method are checked instead of encoded, so tags stay readable.

use std::fmt;

use crate::RecordError;

/// What a latency series measures.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Measure {
    /// Response time as the phase gate uses it (no tag suffix). For the load generator this is
    /// measured from the *intended* send time, which corrects for coordinated omission.
    Response,
    /// Service time: from the actual send time (tag suffix `;service`).
    Service,
    /// Anything else, e.g. `lag` for SSE event lag (tag suffix `;<name>`). Names are
    /// `[A-Za-z0-9_.-]+`; `response` and `service` are normalised to the variants above.
    Other(String),
}

impl Measure {
    /// Parses a measure name (the part after `;`). The empty name and `response` are
    /// [`Measure::Response`].
    pub fn from_name(name: &str) -> Result<Measure, RecordError> {
        match name {
            "" | "response" => Ok(Measure::Response),
            "service" => Ok(Measure::Service),
            other => {
                if other
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                {
                    Ok(Measure::Other(other.to_owned()))
                } else {
                    Err(RecordError::InvalidSeries {
                        what: "measure",
                        value: other.to_owned(),
                        reason: "a measure name may contain only letters, digits, '_', '.', '-'",
                    })
                }
            }
        }
    }

    /// The name used in tags (`response` for the default).
    pub fn name(&self) -> &str {
        match self {
            Measure::Response => "response",
            Measure::Service => "service",
            Measure::Other(s) => s,
        }
    }
}

/// One latency series: which target, which request, what is measured.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// Target name as in the manifest (`primary`, `candidate`, ...). No ':', ';', ',', '%',
    /// whitespace or control characters.
    pub target: String,
    /// HTTP method (an HTTP token, e.g. `POST`).
    pub method: String,
    /// Route template (e.g. `/api/order/{id}`). Anything goes: it is encoded in the tag.
    pub route: String,
    /// What is measured.
    pub measure: Measure,
}

/// Target and route of a series, without the measure: the key of `counts.csv` rows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey {
    /// Target name.
    pub target: String,
    /// HTTP method.
    pub method: String,
    /// Route template.
    pub route: String,
}

impl SeriesKey {
    /// A checked series key. Fails if the target or method cannot appear in a tag; a measure of
    /// `Other("service")`/`Other("response")` is normalised.
    pub fn new(
        target: impl Into<String>,
        method: impl Into<String>,
        route: impl Into<String>,
        measure: Measure,
    ) -> Result<SeriesKey, RecordError> {
        let measure = match measure {
            Measure::Other(name) => Measure::from_name(&name)?,
            m => m,
        };
        let key = SeriesKey {
            target: target.into(),
            method: method.into(),
            route: route.into(),
            measure,
        };
        key.validate()?;
        Ok(key)
    }

    /// The default (response-time) series of a request.
    pub fn response(
        target: impl Into<String>,
        method: impl Into<String>,
        route: impl Into<String>,
    ) -> Result<SeriesKey, RecordError> {
        SeriesKey::new(target, method, route, Measure::Response)
    }

    /// Checks that this key has a tag that parses back to itself.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.target.is_empty()
            || self
                .target
                .chars()
                .any(|c| matches!(c, ':' | ';' | ',' | '%') || c.is_whitespace() || c.is_control())
        {
            return Err(RecordError::InvalidSeries {
                what: "target",
                value: self.target.clone(),
                reason: "a target name must be non-empty, without ':', ';', ',', '%', \
                         whitespace or control characters",
            });
        }
        if self.method.is_empty() || !self.method.bytes().all(is_token_byte) {
            return Err(RecordError::InvalidSeries {
                what: "method",
                value: self.method.clone(),
                reason: "an HTTP method must be a non-empty token (letters, digits, !#$&'*+.^_`|~-)",
            });
        }
        if let Measure::Other(name) = &self.measure {
            // Re-parse: catches bad characters and the names that belong to other variants.
            if Measure::from_name(name)? != self.measure {
                return Err(RecordError::InvalidSeries {
                    what: "measure",
                    value: name.clone(),
                    reason: "use Measure::Response or Measure::Service for these names",
                });
            }
        }
        Ok(())
    }

    /// The interval-log tag: `<target>:<METHOD>:<route>[;<measure>]`, route percent-encoded.
    ///
    /// Call on validated keys (those from [`SeriesKey::new`] or accepted by a recorder); an
    /// invalid key gives a tag that [`SeriesKey::parse_tag`] rejects or reads differently.
    pub fn tag(&self) -> String {
        let mut tag =
            String::with_capacity(self.target.len() + self.method.len() + self.route.len() + 12);
        tag.push_str(&self.target);
        tag.push(':');
        tag.push_str(&self.method);
        tag.push(':');
        encode_route(&self.route, &mut tag);
        if self.measure != Measure::Response {
            tag.push(';');
            tag.push_str(self.measure.name());
        }
        tag
    }

    /// Parses a tag written by [`SeriesKey::tag`].
    pub fn parse_tag(tag: &str) -> Result<SeriesKey, RecordError> {
        let bad = |reason: &'static str| RecordError::InvalidSeries {
            what: "tag",
            value: tag.to_owned(),
            reason,
        };
        let (target, rest) = tag
            .split_once(':')
            .ok_or_else(|| bad("expected <target>:<METHOD>:<route>[;<measure>]"))?;
        let (method, rest) = rest
            .split_once(':')
            .ok_or_else(|| bad("expected <target>:<METHOD>:<route>[;<measure>]"))?;
        let (route, measure) = match rest.split_once(';') {
            Some((route, measure)) if !measure.is_empty() => (route, Measure::from_name(measure)?),
            Some(_) => return Err(bad("empty measure after ';'")),
            None => (rest, Measure::Response),
        };
        let route = decode_route(route).ok_or_else(|| {
            bad("the route has a '%' that is not followed by two hex digits of valid UTF-8")
        })?;
        let key = SeriesKey {
            target: target.to_owned(),
            method: method.to_owned(),
            route,
            measure,
        };
        key.validate()?;
        Ok(key)
    }

    /// The key of this series' `counts.csv` rows.
    pub fn route_key(&self) -> RouteKey {
        RouteKey {
            target: self.target.clone(),
            method: self.method.clone(),
            route: self.route.clone(),
        }
    }
}

impl fmt::Display for SeriesKey {
    /// Human form: `candidate POST /api/order` (plus ` [service]` for non-default measures).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.target, self.method, self.route)?;
        if self.measure != Measure::Response {
            write!(f, " [{}]", self.measure.name())?;
        }
        Ok(())
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.target, self.method, self.route)
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b)
}

fn encode_route(route: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for c in route.chars() {
        let needs = matches!(c, ' ' | ',' | ';' | '%') || c.is_ascii_control();
        if needs {
            // All of these are ASCII, so one byte each.
            let b = c as u8;
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push(c);
        }
    }
}

fn decode_route(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_val(*bytes.get(i + 1)?)?;
            let lo = hex_val(*bytes.get(i + 2)?)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_format() {
        let k = SeriesKey::response("candidate", "POST", "/api/order").unwrap();
        assert_eq!(k.tag(), "candidate:POST:/api/order");
        let k = SeriesKey::new("primary", "GET", "/a b,c;d%e", Measure::Service).unwrap();
        assert_eq!(k.tag(), "primary:GET:/a%20b%2Cc%3Bd%25e;service");
        let k = SeriesKey::new("p", "GET", "/sse", Measure::Other("lag".into())).unwrap();
        assert_eq!(k.tag(), "p:GET:/sse;lag");
    }

    #[test]
    fn odd_routes_round_trip_and_tags_are_valid_hdr_tags() {
        let routes = [
            "",
            "/",
            "/api/order/{id}",
            "/a b",
            "/a,b",
            "/a;b",
            "/100%",
            "/%41",
            "/x:y:z",
            "/line\nbreak\r\n",
            "/tab\there",
            "/ünïcødé/日本",
            "%%%;;;,,,   ",
            "/q?x=1&y=2#frag",
            "\u{7f}\u{0}",
        ];
        for (i, route) in routes.iter().enumerate() {
            let measure = match i % 3 {
                0 => Measure::Response,
                1 => Measure::Service,
                _ => Measure::Other("lag".into()),
            };
            let k = SeriesKey::new("candidate", "PATCH", *route, measure).unwrap();
            let tag = k.tag();
            assert!(
                hdrhistogram::serialization::interval_log::Tag::new(&tag).is_some(),
                "hdrhistogram refuses tag {tag:?}"
            );
            assert!(!tag.contains(['\r', '\n', ' ', ',']), "{tag:?}");
            assert_eq!(SeriesKey::parse_tag(&tag).unwrap(), k, "tag {tag:?}");
        }
    }

    #[test]
    fn invalid_parts_are_rejected() {
        for target in ["", "a:b", "a;b", "a b", "a,b", "a%b", "a\nb"] {
            assert!(
                SeriesKey::response(target, "GET", "/").is_err(),
                "{target:?}"
            );
        }
        for method in ["", "GE T", "GET:", "G,ET"] {
            assert!(SeriesKey::response("t", method, "/").is_err(), "{method:?}");
        }
        assert!(SeriesKey::new("t", "GET", "/", Measure::Other("a b".into())).is_err());
        assert_eq!(
            SeriesKey::new("t", "GET", "/", Measure::Other("service".into()))
                .unwrap()
                .measure,
            Measure::Service
        );
        let mut k = SeriesKey::response("t", "GET", "/").unwrap();
        k.measure = Measure::Other("response".into());
        assert!(k.validate().is_err());
    }

    #[test]
    fn bad_tags_are_errors() {
        for tag in [
            "no-colons",
            "t:GET",
            "t:GET:/%4",
            "t:GET:/%zz",
            "t:GET:/%FF",
            "t:GET:/;",
            "t:GET:/;bad measure",
            ":GET:/",
            "t::/",
        ] {
            assert!(SeriesKey::parse_tag(tag).is_err(), "{tag:?}");
        }
    }

    #[test]
    fn display_is_human() {
        let k = SeriesKey::new("candidate", "POST", "/api/order", Measure::Service).unwrap();
        assert_eq!(k.to_string(), "candidate POST /api/order [service]");
        assert_eq!(k.route_key().to_string(), "candidate POST /api/order");
    }
}
