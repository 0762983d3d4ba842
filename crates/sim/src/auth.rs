//! Authentication pieces shared by both gateway profiles: HS256 JWTs and API keys.
//!
//! Design decisions:
//! - **JWTs are built by hand** (HMAC-SHA256 over `header.payload`, base64url without padding),
//!   because the two gateways differ in exactly the bytes a JWT library hides: the python
//!   gateway serialises its header with `json.dumps` spacing (`{"alg": "HS256", "typ": "JWT"}`),
//!   the C++ one compactly. [`JwtHeaderStyle`] picks which one is minted; the claims are
//!   serialised in the same style. Claims are written in `serde_json::Map` order (sorted), so
//!   a token's bytes are not byte-identical to one the real python gateway would mint
//!   (`{sub, iat, exp}` insertion order) — but it verifies on both, which is what matters.
//! - **Verification rules are data** ([`JwtRules`]): the C++ gateway requires `alg == HS256`
//!   and rejects an `iat` more than 60 s in the future; the python gateway checks neither.
//!   The order of checks is: shape → alg (if required) → signature → `exp` → `iat` rule, so a
//!   forged token is always reported as [`JwtError::BadSignature`], never as expired.
//! - A token without a numeric `exp` is treated as expired (as if `exp` were 0). Both gateways
//!   always mint `exp`; a verifier that let such a token live forever is the riskier guess.
//! - **API keys** are `veloz_<64 hex>` with ids `vk_<16 hex>`, drawn from `rand::rng()` (a
//!   CSPRNG seeded from the OS), and only their SHA-256 hashes are stored, as in the python
//!   gateway. The raw key is returned once, by [`ApiKeyStore::create`].
//! - The signature comparison is constant-time (`hmac`'s `verify_slice`), so the simulator
//!   does not teach a load test a timing side channel the real gateways do not have.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// How the JWT header (and claims) JSON is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtHeaderStyle {
    /// Python `json.dumps` spacing: `{"alg": "HS256", "typ": "JWT"}`.
    Python,
    /// Compact JSON, as the C++ gateway writes it: `{"alg":"HS256","typ":"JWT"}`.
    Compact,
}

/// Which checks [`verify_jwt`] applies beyond the signature and `exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRules {
    /// Reject a header whose `alg` is not `"HS256"` (C++: true; python: false).
    pub require_alg_hs256: bool,
    /// Reject an `iat` more than this many seconds after `now` (C++: `Some(60)`; python: `None`).
    /// When set, a missing `iat` makes the token malformed.
    pub max_future_iat_s: Option<u64>,
}

impl JwtRules {
    /// The python gateway's rules: signature and `exp` only.
    pub fn python() -> Self {
        JwtRules {
            require_alg_hs256: false,
            max_future_iat_s: None,
        }
    }

    /// The C++ gateway's rules: `alg` must be HS256, `iat` at most 60 s in the future.
    pub fn cpp() -> Self {
        JwtRules {
            require_alg_hs256: true,
            max_future_iat_s: Some(60),
        }
    }
}

/// Why a JWT was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url segments, a segment that is not a JSON object, or a required claim
    /// (`iat` under the C++ rules) missing or not a number.
    #[error("malformed token")]
    Malformed,
    /// The HMAC-SHA256 signature does not match the secret.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is in the past (or missing).
    #[error("token expired")]
    Expired,
    /// `iat` is further in the future than the rules allow.
    #[error("token issued in the future")]
    IatInFuture,
    /// The header's `alg` is not `HS256` (only checked when the rules require it).
    #[error("unsupported alg (HS256 required)")]
    BadAlg,
}

/// Mints an HS256 JWT for `claims` (which should be a JSON object) signed with `secret`.
pub fn mint_jwt(style: JwtHeaderStyle, claims: &Value, secret: &[u8]) -> String {
    let header = match style {
        JwtHeaderStyle::Python => r#"{"alg": "HS256", "typ": "JWT"}"#,
        JwtHeaderStyle::Compact => r#"{"alg":"HS256","typ":"JWT"}"#,
    };
    let payload = match style {
        JwtHeaderStyle::Python => to_python_json(claims),
        JwtHeaderStyle::Compact => claims.to_string(),
    };
    let mut token = String::with_capacity(header.len() * 2 + payload.len() * 2 + 48);
    URL_SAFE_NO_PAD.encode_string(header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = sign(token.as_bytes(), secret);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}

/// Verifies `token` against `secret` at time `now_s` (Unix seconds) and returns its claims.
pub fn verify_jwt(
    token: &str,
    secret: &[u8],
    now_s: u64,
    rules: &JwtRules,
) -> Result<Map<String, Value>, JwtError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header = decode_object(header_b64)?;
    if rules.require_alg_hs256 && header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(JwtError::BadAlg);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| JwtError::Malformed)?;
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let mut mac = new_mac(secret);
    mac.update(&token.as_bytes()[..signing_input_len]);
    mac.verify_slice(&signature)
        .map_err(|_| JwtError::BadSignature)?;

    let claims = decode_object(payload_b64)?;
    let now = now_s as f64;
    let exp = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0);
    if now > exp {
        return Err(JwtError::Expired);
    }
    if let Some(max_future) = rules.max_future_iat_s {
        let iat = claims
            .get("iat")
            .and_then(Value::as_f64)
            .ok_or(JwtError::Malformed)?;
        if iat > now + max_future as f64 {
            return Err(JwtError::IatInFuture);
        }
    }
    Ok(claims)
}

fn new_mac(secret: &[u8]) -> HmacSha256 {
    // HMAC is defined for keys of every length (long keys are hashed, short ones padded), and
    // hmac's `new_from_slice` only reports InvalidLength for fixed-key MACs, never for HMAC.
    #[allow(clippy::expect_used)]
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

fn sign(signing_input: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(secret);
    mac.update(signing_input);
    mac.finalize().into_bytes().into()
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed),
    }
}

/// Serialises `value` the way Python's `json.dumps` does by default: `", "` and `": "`
/// separators and non-ASCII characters escaped as `\uXXXX` (`ensure_ascii=True`).
fn to_python_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Serialising a `Value` into a Vec cannot fail: no I/O errors, no non-string map keys.
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        return value.to_string();
    }
    // The formatter writes only what serde_json hands it plus ASCII, so this stays UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// A newly created API key. `api_key` is the only time the raw key is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedKey {
    /// `vk_<16 hex>`.
    pub key_id: String,
    /// `veloz_<64 hex>`.
    pub api_key: String,
}

/// What the store knows about a key (never the key itself). Serialises to the python
/// gateway's `GET /api/auth/keys` item shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyInfo {
    pub key_id: String,
    pub user_id: String,
    pub name: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last successful [`ApiKeyStore::verify`].
    pub last_used_at: Option<u64>,
    pub revoked: bool,
    pub permissions: Vec<String>,
}

struct StoredKey {
    hash: [u8; 32],
    info: ApiKeyInfo,
}

#[derive(Default)]
struct KeyTable {
    /// Insertion order, for `list`.
    keys: Vec<StoredKey>,
    /// SHA-256 of the raw key → index into `keys`.
    by_hash: HashMap<[u8; 32], usize>,
}

/// In-memory API key store, safe to share between connections.
#[derive(Default)]
pub struct ApiKeyStore {
    table: Mutex<KeyTable>,
}

impl std::fmt::Debug for ApiKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes are not secrets, but there is nothing useful in printing them either.
        let count = self.with_table(|t| t.keys.len());
        f.debug_struct("ApiKeyStore").field("keys", &count).finish()
    }
}

impl ApiKeyStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a key for `user_id` and returns its id and raw value.
    pub fn create(
        &self,
        user_id: &str,
        name: &str,
        permissions: Vec<String>,
        now_s: u64,
    ) -> CreatedKey {
        let mut rng = rand::rng();
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let api_key = format!("veloz_{}", hex::encode(secret));
        let hash: [u8; 32] = Sha256::digest(api_key.as_bytes()).into();
        self.with_table(|t| {
            // 64 random bits: a collision is practically impossible, but an id must be unique.
            let key_id = loop {
                let mut id = [0u8; 8];
                rng.fill_bytes(&mut id);
                let candidate = format!("vk_{}", hex::encode(id));
                if !t.keys.iter().any(|k| k.info.key_id == candidate) {
                    break candidate;
                }
            };
            let info = ApiKeyInfo {
                key_id: key_id.clone(),
                user_id: user_id.to_owned(),
                name: name.to_owned(),
                created_at: now_s,
                last_used_at: None,
                revoked: false,
                permissions,
            };
            t.by_hash.insert(hash, t.keys.len());
            t.keys.push(StoredKey { hash, info });
            CreatedKey { key_id, api_key }
        })
    }

    /// Looks a raw key up by its SHA-256 hash; on success records `now_s` as its last use.
    /// Unknown and revoked keys give `None`.
    pub fn verify(&self, raw: &str, now_s: u64) -> Option<ApiKeyInfo> {
        let hash: [u8; 32] = Sha256::digest(raw.as_bytes()).into();
        self.with_table(|t| {
            let idx = *t.by_hash.get(&hash)?;
            let stored = t.keys.get_mut(idx)?;
            debug_assert_eq!(stored.hash, hash);
            if stored.info.revoked {
                return None;
            }
            stored.info.last_used_at = Some(now_s);
            Some(stored.info.clone())
        })
    }

    /// Every key, revoked ones included, in creation order.
    pub fn list(&self) -> Vec<ApiKeyInfo> {
        self.with_table(|t| t.keys.iter().map(|k| k.info.clone()).collect())
    }

    /// Marks a key revoked. Returns false when no key has that id.
    pub fn revoke(&self, key_id: &str) -> bool {
        self.with_table(
            |t| match t.keys.iter_mut().find(|k| k.info.key_id == key_id) {
                Some(k) => {
                    k.info.revoked = true;
                    true
                }
                None => false,
            },
        )
    }

    fn with_table<R>(&self, f: impl FnOnce(&mut KeyTable) -> R) -> R {
        // A panic while holding the lock cannot leave the table half-updated in a way that
        // matters (each update is a push or a flag), so a poisoned lock is simply reused.
        let mut guard = self.table.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"a-test-secret-that-is-at-least-32-bytes-long";

    fn segment(token: &str, i: usize) -> Vec<u8> {
        URL_SAFE_NO_PAD
            .decode(token.split('.').nth(i).unwrap())
            .unwrap()
    }

    #[test]
    fn python_header_is_spelled_like_json_dumps() {
        let t = mint_jwt(
            JwtHeaderStyle::Python,
            &json!({"sub": "admin", "exp": 10}),
            SECRET,
        );
        assert_eq!(segment(&t, 0), br#"{"alg": "HS256", "typ": "JWT"}"#);
        assert_eq!(segment(&t, 1), br#"{"exp": 10, "sub": "admin"}"#);
        let c = mint_jwt(
            JwtHeaderStyle::Compact,
            &json!({"sub": "admin", "exp": 10}),
            SECRET,
        );
        assert_eq!(segment(&c, 0), br#"{"alg":"HS256","typ":"JWT"}"#);
        assert_eq!(segment(&c, 1), br#"{"exp":10,"sub":"admin"}"#);
        assert!(!t.contains('=') && !t.contains('+') && !t.contains('/'));
    }

    #[test]
    fn python_json_escapes_non_ascii_like_ensure_ascii() {
        let v = json!({"a": ["é", "𝄞", 1.5, null], "b": {"c": true}});
        assert_eq!(
            to_python_json(&v),
            r#"{"a": ["\u00e9", "\ud834\udd1e", 1.5, null], "b": {"c": true}}"#
        );
    }

    #[test]
    fn jwt_io_hs256_example_signature() {
        // The HS256 example token from jwt.io, signed with "your-256-bit-secret".
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let payload =
            URL_SAFE_NO_PAD.encode(r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#);
        let input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(sign(input.as_bytes(), b"your-256-bit-secret"));
        assert_eq!(sig, "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c");
        // The verifier accepts its signature; the token has no `exp`, so it is expired.
        let token = format!("{input}.{sig}");
        let r = verify_jwt(
            &token,
            b"your-256-bit-secret",
            1516239022,
            &JwtRules::python(),
        );
        assert_eq!(r, Err(JwtError::Expired));
        let r = verify_jwt(&token, b"another-secret", 1516239022, &JwtRules::python());
        assert_eq!(r, Err(JwtError::BadSignature));
    }

    #[test]
    fn mint_then_verify_round_trips_claims() {
        let claims = json!({"sub": "admin", "iat": 1000, "exp": 4600, "type": "access"});
        for style in [JwtHeaderStyle::Python, JwtHeaderStyle::Compact] {
            for rules in [JwtRules::python(), JwtRules::cpp()] {
                let t = mint_jwt(style, &claims, SECRET);
                let got = verify_jwt(&t, SECRET, 1001, &rules).unwrap();
                assert_eq!(Value::Object(got), claims, "{style:?} {rules:?}");
            }
        }
    }

    #[test]
    fn python_style_token_verifies_under_cpp_rules() {
        let t = mint_jwt(
            JwtHeaderStyle::Python,
            &json!({"sub": "admin", "iat": 5000, "exp": 8600}),
            SECRET,
        );
        let claims = verify_jwt(&t, SECRET, 5000, &JwtRules::cpp()).unwrap();
        assert_eq!(claims["sub"], "admin");
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let t = mint_jwt(
            JwtHeaderStyle::Compact,
            &json!({"sub": "user", "iat": 0, "exp": 100}),
            SECRET,
        );
        let forged_payload = URL_SAFE_NO_PAD.encode(r#"{"exp":100,"iat":0,"sub":"admin"}"#);
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[1] = &forged_payload;
        let forged = parts.join(".");
        assert_eq!(
            verify_jwt(&forged, SECRET, 1, &JwtRules::python()),
            Err(JwtError::BadSignature)
        );
        assert_eq!(
            verify_jwt(&t, b"wrong", 1, &JwtRules::cpp()),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn expiry_is_checked_after_the_signature() {
        let t = mint_jwt(
            JwtHeaderStyle::Python,
            &json!({"sub": "admin", "iat": 0, "exp": 100}),
            SECRET,
        );
        assert!(verify_jwt(&t, SECRET, 100, &JwtRules::python()).is_ok());
        assert_eq!(
            verify_jwt(&t, SECRET, 101, &JwtRules::python()),
            Err(JwtError::Expired)
        );
        assert_eq!(
            verify_jwt(&t, SECRET, 101, &JwtRules::cpp()),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn future_iat_is_rejected_only_under_cpp_rules() {
        let claims = json!({"sub": "admin", "iat": 1061, "exp": 5000});
        let t = mint_jwt(JwtHeaderStyle::Compact, &claims, SECRET);
        assert_eq!(
            verify_jwt(&t, SECRET, 1000, &JwtRules::cpp()),
            Err(JwtError::IatInFuture)
        );
        assert!(
            verify_jwt(&t, SECRET, 1001, &JwtRules::cpp()).is_ok(),
            "60 s of skew allowed"
        );
        assert!(verify_jwt(&t, SECRET, 1000, &JwtRules::python()).is_ok());
        let no_iat = mint_jwt(
            JwtHeaderStyle::Compact,
            &json!({"sub": "a", "exp": 5000}),
            SECRET,
        );
        assert_eq!(
            verify_jwt(&no_iat, SECRET, 1000, &JwtRules::cpp()),
            Err(JwtError::Malformed)
        );
        assert!(verify_jwt(&no_iat, SECRET, 1000, &JwtRules::python()).is_ok());
    }

    #[test]
    fn alg_is_required_only_under_cpp_rules() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"a","iat":0,"exp":100}"#);
        let input = format!("{header}.{payload}");
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(sign(input.as_bytes(), SECRET))
        );
        assert_eq!(
            verify_jwt(&token, SECRET, 1, &JwtRules::cpp()),
            Err(JwtError::BadAlg)
        );
        assert!(verify_jwt(&token, SECRET, 1, &JwtRules::python()).is_ok());
    }

    #[test]
    fn malformed_tokens_are_rejected_without_panicking() {
        let good = mint_jwt(JwtHeaderStyle::Compact, &json!({"exp": 9}), SECRET);
        let not_json = format!(
            "{}.{}.x",
            URL_SAFE_NO_PAD.encode("nope"),
            URL_SAFE_NO_PAD.encode("{}")
        );
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.??.##",
            &not_json,
            &format!("{good}.extra"),
            &good.replace('.', ""),
        ] {
            let r = verify_jwt(bad, SECRET, 0, &JwtRules::cpp());
            assert!(
                matches!(
                    r,
                    Err(JwtError::Malformed | JwtError::BadAlg | JwtError::BadSignature)
                ),
                "{bad:?} gave {r:?}"
            );
        }
        // A payload that is JSON but not an object.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode("[1,2]");
        let input = format!("{header}.{payload}");
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(sign(input.as_bytes(), SECRET))
        );
        assert_eq!(
            verify_jwt(&token, SECRET, 0, &JwtRules::cpp()),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn api_keys_have_the_python_shapes_and_verify_by_hash() {
        let store = ApiKeyStore::new();
        let created = store.create("admin", "ci", vec!["read".into()], 100);
        assert!(created.key_id.starts_with("vk_") && created.key_id.len() == 3 + 16);
        assert!(created.api_key.starts_with("veloz_") && created.api_key.len() == 6 + 64);
        assert!(
            created.api_key[6..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_uppercase())
        );
        assert!(created.key_id[3..].chars().all(|c| c.is_ascii_hexdigit()));

        let info = store.verify(&created.api_key, 150).unwrap();
        assert_eq!(info.key_id, created.key_id);
        assert_eq!(info.user_id, "admin");
        assert_eq!(info.last_used_at, Some(150));
        assert_eq!(store.list()[0].last_used_at, Some(150));
        assert!(store.verify("veloz_00", 150).is_none());

        let other = store.create("admin", "second", vec![], 200);
        assert_ne!(other.api_key, created.api_key);
        assert_ne!(other.key_id, created.key_id);
        assert_eq!(store.list().len(), 2);
        assert_eq!(store.list()[1].name, "second");
    }

    #[test]
    fn revoked_keys_no_longer_verify() {
        let store = ApiKeyStore::new();
        let created = store.create("u", "k", vec![], 1);
        assert!(store.revoke(&created.key_id));
        assert!(!store.revoke("vk_0000000000000000"));
        assert!(store.verify(&created.api_key, 2).is_none());
        assert!(store.list()[0].revoked);
        assert_eq!(store.list()[0].last_used_at, None);
    }

    #[test]
    fn api_key_info_serialises_to_the_python_list_item_shape() {
        let store = ApiKeyStore::new();
        store.create("admin", "n", vec!["read".into(), "write".into()], 7);
        let v = serde_json::to_value(&store.list()[0]).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "created_at",
                "key_id",
                "last_used_at",
                "name",
                "permissions",
                "revoked",
                "user_id"
            ]
        );
        assert_eq!(v["last_used_at"], Value::Null);
        assert!(format!("{store:?}").contains("keys: 1"));
    }
}
