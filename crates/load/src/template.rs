//! Request templates: paths, header values and bodies with `{variable}` placeholders.
//!
//! A template is split once, when the scenario is loaded, into literal and variable parts, so
//! rendering a request is appending bytes to a buffer the worker owns: no parsing, no
//! `format!`, no allocation once the buffer has grown.
//!
//! Syntax: `{name}` where `name` is `[A-Za-z0-9_]+` is a variable; every other `{` is literal,
//! so JSON bodies need no escaping (`{"qty":{qty}}` has one variable). `{{` is a literal `{`,
//! for the rare text that must contain `{name}` itself.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use rand::rngs::SmallRng;

/// A variable a template can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// The request's sequence number in this generator (the schedule index of its ticket;
    /// every step of a flow shares the first step's number).
    Seq,
    /// This generator's shard index `I` of `--shard I/N` (0 without sharding).
    Shard,
    /// The shard count `N` (1 without sharding).
    Shards,
    /// A short token naming this run (8 hex digits).
    Run,
    /// `sg-<run>-<shard>-<seq>`: unique per request (per flow) across shards and runs.
    ClientOrderId,
    /// A random UUID (version 4), new each time it appears.
    Uuid,
    /// `symbols[seq % len]`.
    Symbol,
    /// `BUY` for even sequence numbers, `SELL` for odd ones.
    Side,
    /// `buy` / `sell`.
    SideLower,
    /// Wall-clock milliseconds since the Unix epoch when the request is built.
    TsMs,
    /// The Goose user (connection) index.
    User,
    /// A constant from the scenario's `[vars]` table (index).
    Const(usize),
    /// A value extracted from an earlier step's response in the same flow (index).
    Extracted(usize),
}

/// The names of the built-in variables, for error messages.
pub const BUILTIN_NAMES: [&str; 11] = [
    "seq",
    "shard",
    "shards",
    "run",
    "client_order_id",
    "uuid",
    "symbol",
    "side",
    "side_lower",
    "ts_ms",
    "user",
];

impl Var {
    /// The built-in variable with this name.
    pub fn builtin(name: &str) -> Option<Var> {
        Some(match name {
            "seq" => Var::Seq,
            "shard" => Var::Shard,
            "shards" => Var::Shards,
            "run" => Var::Run,
            "client_order_id" => Var::ClientOrderId,
            "uuid" => Var::Uuid,
            "symbol" => Var::Symbol,
            "side" => Var::Side,
            "side_lower" => Var::SideLower,
            "ts_ms" => Var::TsMs,
            "user" => Var::User,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Box<[u8]>),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Everything a template can refer to when one request is rendered.
#[derive(Debug)]
pub struct RenderCtx<'a> {
    pub seq: u64,
    pub shard: u32,
    pub shards: u32,
    /// The run token (8 hex digits).
    pub run: &'a str,
    pub user: usize,
    pub symbols: &'a [String],
    pub consts: &'a [String],
    pub extracted: &'a [String],
    /// For `{uuid}`.
    pub rng: &'a mut SmallRng,
}

impl Template {
    /// Parses `text`; `resolve` maps a variable name to a variable. Unknown names are all
    /// returned (in order, without duplicates) as the error.
    pub fn parse(
        text: &str,
        mut resolve: impl FnMut(&str) -> Option<Var>,
    ) -> Result<Template, Vec<String>> {
        let bytes = text.as_bytes();
        let mut parts = Vec::new();
        let mut lit: Vec<u8> = Vec::new();
        let mut unknown: Vec<String> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b != b'{' {
                lit.push(b);
                i += 1;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'{') {
                lit.push(b'{');
                i += 2;
                continue;
            }
            let name_len = bytes[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            let close = i + 1 + name_len;
            if name_len == 0 || bytes.get(close) != Some(&b'}') {
                lit.push(b'{');
                i += 1;
                continue;
            }
            let name = &text[i + 1..close];
            match resolve(name) {
                Some(var) => {
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit).into_boxed_slice()));
                    }
                    parts.push(Part::Var(var));
                }
                None => {
                    if !unknown.iter().any(|u| u == name) {
                        unknown.push(name.to_owned());
                    }
                }
            }
            i = close + 1;
        }
        if !unknown.is_empty() {
            return Err(unknown);
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit.into_boxed_slice()));
        }
        Ok(Template {
            source: text.to_owned(),
            parts,
        })
    }

    /// The text as written in the scenario.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the template has no variables (it renders to the same bytes every time).
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// True when the template uses `var`.
    pub fn uses(&self, var: Var) -> bool {
        self.parts.contains(&Part::Var(var))
    }

    /// The rendered text of a static template (no variables).
    pub fn static_bytes(&self) -> Option<Vec<u8>> {
        if !self.is_static() {
            return None;
        }
        let mut out = Vec::new();
        for p in &self.parts {
            if let Part::Lit(b) = p {
                out.extend_from_slice(b);
            }
        }
        Some(out)
    }

    /// Appends the rendered template to `out`.
    pub fn render(&self, ctx: &mut RenderCtx<'_>, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Lit(b) => out.extend_from_slice(b),
                Part::Var(v) => render_var(*v, ctx, out),
            }
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn render_var(var: Var, ctx: &mut RenderCtx<'_>, out: &mut Vec<u8>) {
    match var {
        Var::Seq => push_u64(out, ctx.seq),
        Var::Shard => push_u64(out, u64::from(ctx.shard)),
        Var::Shards => push_u64(out, u64::from(ctx.shards)),
        Var::Run => out.extend_from_slice(ctx.run.as_bytes()),
        Var::ClientOrderId => push_client_order_id(out, ctx.run, ctx.shard, ctx.seq),
        Var::Uuid => push_uuid(out, ctx.rng),
        Var::Symbol => {
            if !ctx.symbols.is_empty() {
                let i = (ctx.seq % ctx.symbols.len() as u64) as usize;
                out.extend_from_slice(ctx.symbols[i].as_bytes());
            }
        }
        Var::Side => out.extend_from_slice(if ctx.seq.is_multiple_of(2) {
            b"BUY"
        } else {
            b"SELL"
        }),
        Var::SideLower => out.extend_from_slice(if ctx.seq.is_multiple_of(2) {
            b"buy"
        } else {
            b"sell"
        }),
        Var::TsMs => {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            push_u64(out, ms);
        }
        Var::User => push_u64(out, ctx.user as u64),
        Var::Const(i) => {
            if let Some(v) = ctx.consts.get(i) {
                out.extend_from_slice(v.as_bytes());
            }
        }
        Var::Extracted(i) => {
            if let Some(v) = ctx.extracted.get(i) {
                out.extend_from_slice(v.as_bytes());
            }
        }
    }
}

/// `sg-<run>-<shard>-<seq>`. The shard index keeps generators of one sharded run apart; the
/// run token keeps consecutive runs against one gateway apart (the engine rejects a reused
/// `client_order_id` as a duplicate).
pub fn push_client_order_id(out: &mut Vec<u8>, run: &str, shard: u32, seq: u64) {
    out.extend_from_slice(b"sg-");
    out.extend_from_slice(run.as_bytes());
    out.push(b'-');
    push_u64(out, u64::from(shard));
    out.push(b'-');
    push_u64(out, seq);
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends a random version-4 UUID (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`).
fn push_uuid(out: &mut Vec<u8>, rng: &mut SmallRng) {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(byte >> 4)]);
        out.push(HEX[usize::from(byte & 0x0f)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn parse(text: &str) -> Result<Template, Vec<String>> {
        Template::parse(text, |n| {
            Var::builtin(n).or(match n {
                "qty" => Some(Var::Const(0)),
                "id" => Some(Var::Extracted(0)),
                _ => None,
            })
        })
    }

    fn render(t: &Template, seq: u64) -> String {
        let mut rng = SmallRng::seed_from_u64(7);
        let symbols = vec!["BTCUSDT".to_owned(), "ETHUSDT".to_owned()];
        let consts = vec!["0.01".to_owned()];
        let extracted = vec!["veloz_1_2".to_owned()];
        let mut ctx = RenderCtx {
            seq,
            shard: 1,
            shards: 2,
            run: "0badcafe",
            user: 3,
            symbols: &symbols,
            consts: &consts,
            extracted: &extracted,
            rng: &mut rng,
        };
        let mut out = Vec::new();
        t.render(&mut ctx, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_braces_are_literal_and_variables_expand() {
        let t =
            parse(r#"{"symbol":"{symbol}","qty":{qty},"side":"{side}","id":"{client_order_id}"}"#)
                .unwrap();
        assert!(!t.is_static());
        assert_eq!(
            render(&t, 41),
            r#"{"symbol":"ETHUSDT","qty":0.01,"side":"SELL","id":"sg-0badcafe-1-41"}"#
        );
        assert_eq!(
            render(&t, 42),
            r#"{"symbol":"BTCUSDT","qty":0.01,"side":"BUY","id":"sg-0badcafe-1-42"}"#
        );
    }

    #[test]
    fn every_builtin_renders() {
        let t = parse("/x/{seq}/{shard}/{shards}/{run}/{side_lower}/{user}/{id}").unwrap();
        assert_eq!(render(&t, 0), "/x/0/1/2/0badcafe/buy/3/veloz_1_2");
        let ts = parse("{ts_ms}").unwrap();
        let ms: u64 = render(&ts, 0).parse().unwrap();
        assert!(ms > 1_600_000_000_000);
    }

    #[test]
    fn uuid_has_the_v4_shape_and_changes() {
        let t = parse("{uuid} {uuid}").unwrap();
        let s = render(&t, 0);
        let (a, b) = s.split_once(' ').unwrap();
        assert_ne!(a, b);
        for u in [a, b] {
            assert_eq!(u.len(), 36, "{u}");
            let groups: Vec<&str> = u.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(groups[2].starts_with('4'), "{u}");
            assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"), "{u}");
        }
    }

    #[test]
    fn unknown_variables_are_all_reported_once() {
        let err = parse("/a/{nope}/{seq}/{nope}/{other}").unwrap_err();
        assert_eq!(err, vec!["nope".to_owned(), "other".to_owned()]);
    }

    #[test]
    fn escapes_and_non_variables_stay_literal() {
        let t = parse("{{seq} { } {} {a-b} {").unwrap();
        assert!(t.is_static());
        assert_eq!(t.static_bytes().unwrap(), b"{seq} { } {} {a-b} {");
        assert!(parse("/plain").unwrap().is_static());
    }

    #[test]
    fn numbers_are_formatted_in_decimal() {
        for n in [0u64, 7, 10, 999, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }
}
