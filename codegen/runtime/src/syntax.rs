//! Validated atproto identifier and string-format types (DID, handle, NSID, TID, record
//! key, AT-URI, datetime, language, CID string, URI), hand-written checks following the
//! atproto specs, shared by the generated record validators and the server.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not valid for a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The format that was expected (`"did"`, `"handle"`, ...).
    pub format: &'static str,
    /// What is wrong.
    pub message: String,
}

impl SyntaxError {
    fn new(format: &'static str, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            format,
            message: message.into(),
        }
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.format, self.message)
    }
}

impl std::error::Error for SyntaxError {}

macro_rules! string_type {
    ($(#[$doc:meta])* $name:ident, $format:literal, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The lexicon format name this type validates.
            pub const FORMAT: &'static str = $format;

            /// Validates and wraps a string.
            pub fn new(value: impl Into<String>) -> Result<$name, SyntaxError> {
                let value = value.into();
                $check(&value).map_err(|m| SyntaxError::new($format, m))?;
                Ok($name(value))
            }

            /// The string as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = SyntaxError;
            fn from_str(s: &str) -> Result<$name, SyntaxError> {
                $name::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let s = String::deserialize(deserializer)?;
                $name::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_type!(
    /// A DID: `did:<lowercase method>:<identifier>`, at most 2048 characters.
    Did, "did", check_did
);
string_type!(
    /// A handle: a DNS name of at least two labels whose last label starts with a letter.
    /// Handles compare case-insensitively; the value is kept as given (see [`Handle::to_lowercase`]).
    Handle, "handle", check_handle
);
string_type!(
    /// A namespaced identifier such as `app.bsky.feed.post`.
    Nsid, "nsid", check_nsid
);
string_type!(
    /// A timestamp identifier: 13 characters of sortable base32.
    Tid, "tid", check_tid
);
string_type!(
    /// A record key: 1 to 512 characters of `A-Za-z0-9._:~-`, not `.` or `..`.
    RecordKey, "record-key", check_record_key
);
string_type!(
    /// An AT-URI in the strict form: `at://<did or handle>[/<nsid>[/<record key>]]`.
    AtUri, "at-uri", check_at_uri
);
string_type!(
    /// A DID or a handle.
    AtIdentifier, "at-identifier", check_at_identifier
);
string_type!(
    /// An RFC 3339 / ISO 8601 datetime with a timezone, checked for calendar validity.
    Datetime, "datetime", check_datetime
);
string_type!(
    /// A BCP 47 language tag (no repeated variants or extension singletons).
    Language, "language", check_language
);
string_type!(
    /// The string form of a CID (syntax only; CIDv0 refused).
    CidString, "cid", check_cid_string
);
string_type!(
    /// A URI with a scheme, at most 8192 characters, no whitespace.
    Uri, "uri", check_uri
);

/// Validates `value` against a lexicon string format name.
pub fn validate_format(format: &str, value: &str) -> Result<(), SyntaxError> {
    let (name, result) = match format {
        "did" => ("did", check_did(value)),
        "handle" => ("handle", check_handle(value)),
        "at-identifier" => ("at-identifier", check_at_identifier(value)),
        "at-uri" => ("at-uri", check_at_uri(value)),
        "nsid" => ("nsid", check_nsid(value)),
        "cid" => ("cid", check_cid_string(value)),
        "datetime" => ("datetime", check_datetime(value)),
        "language" => ("language", check_language(value)),
        "uri" => ("uri", check_uri(value)),
        "tid" => ("tid", check_tid(value)),
        "record-key" => ("record-key", check_record_key(value)),
        _ => {
            return Err(SyntaxError::new(
                "format",
                format!("unknown string format {format:?}"),
            ))
        }
    };
    result.map_err(|m| SyntaxError::new(name, m))
}

// ---------------------------------------------------------------------------------------
// Typed accessors.

impl Did {
    /// The method name (`plc`, `web`, ...).
    pub fn method(&self) -> &str {
        self.0[4..].split(':').next().unwrap_or("")
    }
}

impl Handle {
    /// The handle that stands for "no valid handle" in views.
    pub const INVALID: &'static str = "handle.invalid";

    /// The normalised (lowercase) form, used for comparison and storage.
    pub fn to_lowercase(&self) -> Handle {
        Handle(self.0.to_ascii_lowercase())
    }
}

impl Nsid {
    /// The domain authority part, in NSID order (`app.bsky.feed` for `app.bsky.feed.post`).
    pub fn authority(&self) -> &str {
        self.0.rsplit_once('.').map_or("", |(a, _)| a)
    }

    /// The final name segment (`post` for `app.bsky.feed.post`).
    pub fn name(&self) -> &str {
        self.0.rsplit_once('.').map_or("", |(_, n)| n)
    }
}

const S32_ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

impl Tid {
    /// Builds the TID of a microsecond timestamp and a 10-bit clock id.
    /// The timestamp is taken modulo 2^53 and the clock id modulo 2^10.
    pub fn from_parts(timestamp_micros: u64, clock_id: u16) -> Tid {
        let n = ((timestamp_micros & ((1 << 53) - 1)) << 10) | (clock_id as u64 & 0x3ff);
        Tid::from_u64(n)
    }

    /// The TID whose 63-bit integer value is `n` (the top bit is cleared).
    pub fn from_u64(n: u64) -> Tid {
        let n = n & (u64::MAX >> 1);
        let mut s = String::with_capacity(13);
        for i in (0..13).rev() {
            s.push(S32_ALPHABET[((n >> (i * 5)) & 31) as usize] as char);
        }
        Tid(s)
    }

    /// The 63-bit integer value (TIDs sort the same as strings and as integers).
    pub fn to_u64(&self) -> u64 {
        self.0.bytes().fold(0u64, |acc, c| {
            let v = S32_ALPHABET.iter().position(|&a| a == c).unwrap_or(0) as u64;
            (acc << 5) | v
        })
    }

    /// The microsecond timestamp part.
    pub fn timestamp_micros(&self) -> u64 {
        self.to_u64() >> 10
    }

    /// The 10-bit clock id part.
    pub fn clock_id(&self) -> u16 {
        (self.to_u64() & 0x3ff) as u16
    }
}

impl Datetime {
    /// The datetime of a Unix timestamp in milliseconds (times before 1970 as 1970), written
    /// as [`Datetime::from_unix_micros`] writes them.
    pub fn from_unix_millis(millis: i64) -> Datetime {
        Datetime::from_unix_micros(u64::try_from(millis).unwrap_or(0).saturating_mul(1000))
    }

    /// The datetime of a Unix timestamp in microseconds, written the way the reference
    /// implementation writes them (JavaScript `toISOString`): `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    /// Times past the year 9999 are clamped to its last millisecond (4-digit years only).
    pub fn from_unix_micros(micros: u64) -> Datetime {
        let micros = micros.min(253_402_300_799_999_999);
        let secs = micros / 1_000_000;
        let millis = (micros % 1_000_000) / 1000;
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        Datetime(format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        ))
    }

    /// Microseconds since the Unix epoch (negative before 1970), timezone applied and
    /// fractional digits past microseconds dropped.
    pub fn to_unix_micros(&self) -> i64 {
        let b = self.0.as_bytes();
        // The value was validated on construction, so every field below is digits.
        let num = |r: std::ops::Range<usize>| digits(&b[r]).unwrap_or(0) as i64;
        let days = days_from_civil(num(0..4), num(5..7), num(8..10));
        let mut secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
        let mut micros = 0i64;
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let mut scale = 100_000;
            while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                micros += (c - b'0') as i64 * scale;
                scale /= 10;
                i += 1;
            }
        }
        if let Some(&sign) = b.get(i).filter(|&&c| c == b'+' || c == b'-') {
            let offset = num(i + 1..i + 3) * 3600 + num(i + 4..i + 6) * 60;
            secs += if sign == b'+' { -offset } else { offset };
        }
        secs * 1_000_000 + micros
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

impl AtIdentifier {
    /// Whether this identifier is a DID (otherwise it is a handle).
    pub fn is_did(&self) -> bool {
        self.0.starts_with("did:")
    }

    /// The DID, if this is one.
    pub fn as_did(&self) -> Option<Did> {
        self.is_did().then(|| Did(self.0.clone()))
    }

    /// The handle, if this is one.
    pub fn as_handle(&self) -> Option<Handle> {
        (!self.is_did()).then(|| Handle(self.0.clone()))
    }
}

impl From<Did> for AtIdentifier {
    fn from(did: Did) -> AtIdentifier {
        AtIdentifier(did.0)
    }
}

impl From<Handle> for AtIdentifier {
    fn from(handle: Handle) -> AtIdentifier {
        AtIdentifier(handle.0)
    }
}

impl AtUri {
    /// The AT-URI of a record.
    pub fn for_record(did: &Did, collection: &Nsid, rkey: &RecordKey) -> AtUri {
        AtUri(format!("at://{did}/{collection}/{rkey}"))
    }

    fn parts(&self) -> std::str::Split<'_, char> {
        self.0[5..].split('/')
    }

    /// The authority (DID or handle).
    pub fn authority(&self) -> AtIdentifier {
        AtIdentifier(self.parts().next().unwrap_or("").to_owned())
    }

    /// The collection NSID, if the URI has one.
    pub fn collection(&self) -> Option<Nsid> {
        self.parts().nth(1).map(|s| Nsid(s.to_owned()))
    }

    /// The record key, if the URI has one.
    pub fn rkey(&self) -> Option<RecordKey> {
        self.parts().nth(2).map(|s| RecordKey(s.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------
// Checks. Each returns a message saying what is wrong.

type Check = Result<(), String>;

fn check_did(s: &str) -> Check {
    if s.len() > 2048 {
        return Err("longer than 2048 characters".into());
    }
    let rest = s.strip_prefix("did:").ok_or("must start with \"did:\"")?;
    let (method, id) = rest
        .split_once(':')
        .ok_or("missing method-specific identifier")?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err("method must be lowercase letters".into());
    }
    if id.is_empty() {
        return Err("empty method-specific identifier".into());
    }
    if let Some(c) = id
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '%' | '-')))
    {
        return Err(format!("character {c:?} not allowed"));
    }
    if id.ends_with(':') || id.ends_with('%') {
        return Err("must not end with ':' or '%'".into());
    }
    Ok(())
}

/// Checks one DNS label: 1-63 of `A-Za-z0-9-`, no hyphen at either end.
fn check_label(label: &str) -> Check {
    if label.is_empty() || label.len() > 63 {
        return Err("each segment must be 1 to 63 characters".into());
    }
    if let Some(c) = label
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(format!("character {c:?} not allowed"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("segments must not start or end with '-'".into());
    }
    Ok(())
}

fn check_handle(s: &str) -> Check {
    if s.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    let mut labels = 0;
    for label in s.split('.') {
        check_label(label)?;
        labels += 1;
    }
    if labels < 2 {
        return Err("needs at least two segments".into());
    }
    let tld = s.rsplit('.').next().unwrap_or("");
    if !tld.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("the last segment must start with a letter".into());
    }
    Ok(())
}

fn check_at_identifier(s: &str) -> Check {
    if s.starts_with("did:") {
        check_did(s)
    } else {
        check_handle(s)
    }
}

fn check_nsid(s: &str) -> Check {
    if s.len() > 317 {
        return Err("longer than 317 characters".into());
    }
    let segments: Vec<&str> = s.split('.').collect();
    if segments.len() < 3 {
        return Err("needs at least three segments".into());
    }
    let (name, authority) = segments.split_last().ok_or("empty")?;
    for seg in authority {
        check_label(seg)?;
    }
    if authority[0].starts_with(|c: char| c.is_ascii_digit()) {
        return Err("the first segment must not start with a digit".into());
    }
    if name.is_empty() || name.len() > 63 {
        return Err("the name segment must be 1 to 63 characters".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic())
        || !name.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err("the name segment must be letters and digits, starting with a letter".into());
    }
    Ok(())
}

fn check_tid(s: &str) -> Check {
    let b = s.as_bytes();
    if b.len() != 13 {
        return Err("must be 13 characters".into());
    }
    if !b"234567abcdefghij".contains(&b[0]) {
        return Err("first character out of range".into());
    }
    if !b.iter().all(|c| S32_ALPHABET.contains(c)) {
        return Err("characters must be in 234567a-z".into());
    }
    Ok(())
}

fn check_record_key(s: &str) -> Check {
    if s.is_empty() || s.len() > 512 {
        return Err("must be 1 to 512 characters".into());
    }
    if s == "." || s == ".." {
        return Err("must not be \".\" or \"..\"".into());
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '~')))
    {
        return Err(format!("character {c:?} not allowed"));
    }
    Ok(())
}

fn check_at_uri(s: &str) -> Check {
    if s.len() > 8192 {
        return Err("longer than 8192 characters".into());
    }
    let rest = s.strip_prefix("at://").ok_or("must start with \"at://\"")?;
    let mut parts = rest.split('/');
    let authority = parts.next().unwrap_or("");
    check_at_identifier(authority).map_err(|m| format!("authority: {m}"))?;
    if let Some(collection) = parts.next() {
        check_nsid(collection).map_err(|m| format!("collection: {m}"))?;
    }
    if let Some(rkey) = parts.next() {
        check_record_key(rkey).map_err(|m| format!("record key: {m}"))?;
    }
    if parts.next().is_some() {
        return Err("too many path segments".into());
    }
    Ok(())
}

fn check_cid_string(s: &str) -> Check {
    if s.len() < 8 || s.len() > 256 {
        return Err("must be 8 to 256 characters".into());
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '+' || c == '='))
    {
        return Err(format!("character {c:?} not allowed"));
    }
    // 'Q' is no multibase prefix: "Qm..." is a bare base58 CIDv0, which atproto refuses.
    if s.starts_with("Qm") {
        return Err("CIDv0 is not allowed".into());
    }
    Ok(())
}

fn check_uri(s: &str) -> Check {
    if s.len() > 8192 {
        return Err("longer than 8192 characters".into());
    }
    let (scheme, rest) = s.split_once(':').ok_or("missing scheme")?;
    if scheme.is_empty()
        || scheme.len() > 81
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err("invalid scheme".into());
    }
    if rest.is_empty() {
        return Err("nothing after the scheme".into());
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("whitespace or control characters".into());
    }
    Ok(())
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            let leap =
                (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
            if leap {
                29
            } else {
                28
            }
        }
    }
}

fn check_datetime(s: &str) -> Check {
    const SYNTAX: &str = "expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)";
    let b = s.as_bytes();
    if b.len() > 64 {
        return Err("longer than 64 characters".into());
    }
    if b.len() < 20 {
        return Err(SYNTAX.into());
    }
    let field = |range: std::ops::Range<usize>| digits(&b[range]).ok_or(SYNTAX);
    let year = field(0..4)?;
    let month = field(5..7)?;
    let day = field(8..10)?;
    let hour = field(11..13)?;
    let minute = field(14..16)?;
    let second = field(17..19)?;
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(SYNTAX.into());
    }
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err("empty fractional seconds".into());
        }
    }
    let zone = &b[i..];
    let offset_minutes: i64 = match zone {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2]).ok_or(SYNTAX)?;
            let m = digits(&[*m1, *m2]).ok_or(SYNTAX)?;
            if h > 23 || m > 59 {
                return Err("timezone offset out of range".into());
            }
            if *sign == b'-' && h == 0 && m == 0 {
                return Err("\"-00:00\" is not allowed; use \"Z\" or \"+00:00\"".into());
            }
            let total = (h * 60 + m) as i64;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return Err(SYNTAX.into()),
    };
    if !(1..=12).contains(&month) {
        return Err("month out of range".into());
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range".into());
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("time of day out of range".into());
    }
    // A positive offset early on 0000-01-01 would put the instant before year 0.
    if year == 0 && month == 1 && day == 1 && ((hour * 60 + minute) as i64) < offset_minutes {
        return Err("normalizes to a time before year 0".into());
    }
    Ok(())
}

fn check_language(s: &str) -> Check {
    let mut subtags = s.split('-');
    let primary = subtags.next().unwrap_or("");
    let private_only = primary == "x" || primary == "X";
    let primary_ok = private_only
        || primary == "i"
        || ((2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase()));
    if !primary_ok {
        return Err("primary language subtag must be 2 or 3 lowercase letters".into());
    }
    let mut variants: Vec<String> = Vec::new();
    let mut singletons: Vec<u8> = Vec::new();
    let mut in_private_use = private_only;
    let mut in_extension = false;
    let mut count = 0;
    for tag in subtags {
        count += 1;
        if tag.is_empty() || tag.len() > 8 || !tag.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("subtags must be 1 to 8 letters or digits".into());
        }
        if in_private_use {
            continue;
        }
        if tag.len() == 1 {
            let singleton = tag.as_bytes()[0].to_ascii_lowercase();
            if singleton == b'x' {
                in_private_use = true;
                continue;
            }
            if singletons.contains(&singleton) {
                return Err(format!("extension singleton {tag:?} repeated"));
            }
            singletons.push(singleton);
            in_extension = true;
            continue;
        }
        let is_variant = tag.len() >= 5 || (tag.len() == 4 && tag.as_bytes()[0].is_ascii_digit());
        if !in_extension && is_variant {
            let lower = tag.to_ascii_lowercase();
            if variants.contains(&lower) {
                return Err(format!("variant subtag {tag:?} repeated"));
            }
            variants.push(lower);
        }
    }
    if private_only && count == 0 {
        return Err("private-use tag without subtags".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_unix_round_trip() {
        let dt = Datetime::from_unix_micros(482_196_050_123_000);
        assert_eq!(dt.as_str(), "1985-04-12T23:20:50.123Z");
        assert_eq!(dt.to_unix_micros(), 482_196_050_123_000);
        assert_eq!(
            Datetime::from_unix_micros(0).as_str(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Datetime::from_unix_micros(951_782_400_000_000).as_str(),
            "2000-02-29T00:00:00.000Z"
        );
        let tz = Datetime::new("1985-04-12T23:20:50.123456789-07:00").unwrap();
        assert_eq!(tz.to_unix_micros(), 482_196_050_123_456 + 7 * 3_600_000_000);
        assert_eq!(
            Datetime::from_unix_micros(u64::MAX).as_str(),
            "9999-12-31T23:59:59.999Z"
        );
        let early = Datetime::new("0001-01-01T00:00:00Z").unwrap();
        assert_eq!(early.to_unix_micros(), -62_135_596_800_000_000);
        for micros in (0..4_000_000_000_000_000u64).step_by(37_000_000_123_000) {
            let dt = Datetime::from_unix_micros(micros);
            assert!(Datetime::new(dt.as_str()).is_ok(), "{dt}");
            assert_eq!(dt.to_unix_micros() as u64, micros / 1000 * 1000);
        }
    }

    #[test]
    fn tid_parts_round_trip() {
        let tid = Tid::from_parts(1_700_000_000_000_000, 0x2a5);
        assert!(Tid::new(tid.as_str()).is_ok());
        assert_eq!(tid.timestamp_micros(), 1_700_000_000_000_000);
        assert_eq!(tid.clock_id(), 0x2a5);
        assert!(Tid::from_parts(1, 0) < Tid::from_parts(2, 0));
    }

    #[test]
    fn at_uri_parts() {
        let uri = AtUri::new("at://did:plc:abc/app.bsky.feed.post/3k2").unwrap();
        assert_eq!(uri.authority().as_str(), "did:plc:abc");
        assert_eq!(uri.collection().unwrap().name(), "post");
        assert_eq!(uri.rkey().unwrap().as_str(), "3k2");
        assert!(AtUri::new("at://did:plc:abc")
            .unwrap()
            .collection()
            .is_none());
    }
}
