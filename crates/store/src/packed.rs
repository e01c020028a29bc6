//! Event documents with their fixed texts packed into single bytes, as the embedded store keeps
//! them.
//!
//! Why: a `seccft` (one per issued token) is ~650 bytes of JSON, and ~340 of them are member
//! names and fixed values that every `seccft` repeats (`"$event_schema":{"version":"1.0.0"}`,
//! `,"description":"Client Credentials for Access Token"`, …). SQLite's CPU per indexed event
//! grows with the row: ~0.8 µs less for rows ~290 bytes shorter (the `append_events` example,
//! docs/benchmarks.md), a tenth of a token's CPU beyond its signature. The event journal and the
//! database shrink by as much.
//!
//! Two members repeat what the row holds anyway: `log_id` and `date` are the event's own columns
//! (and the journal line's), so their codes stand for the member with the column's value.
//!
//! How: the event writer puts a [`Member`]'s code byte where its text would be. Codes are control
//! bytes other than tab, newline and carriage return, which JSON text never holds raw (a string
//! escapes them, and compact JSON has no whitespace): a document with one is packed, one without
//! is plain JSON, and [`unpack`] tells them apart without a marker. Documents written before
//! packing, and events other than the packed members, stay plain and read back unchanged.
//!
//! Codes are stored: a code's text never changes and a retired code is never reused. New members
//! take unused codes.

use std::borrow::Cow;

use ration_domain::UnixTime;

/// What a packed document leaves to its row: the values of [`Member::LogId`] and [`Member::Date`].
#[derive(Clone, Copy, Debug)]
pub struct Columns<'a> {
    pub log_id: &'a str,
    pub date: UnixTime,
}

/// Declares [`Member`] from one list of `Name = code => text`, so that the enum, its texts and
/// [`Member::ALL`] (which unpacking searches) cannot drift apart.
macro_rules! members {
    ($($name:ident = $code:literal => $text:literal,)*) => {
        /// A text that a packed document holds as one byte.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Member {
            $($name = $code,)*
        }

        impl Member {
            pub const ALL: [Member; [$($code),*].len()] = [$(Member::$name),*];

            /// What the code stands for: a member's name with its separators, and its value where
            /// every event has the same one. The first member of an object has no leading comma.
            /// The two members whose values are columns, [`Member::LogId`] and [`Member::Date`],
            /// are completed by [`Member::write`].
            pub const fn text(self) -> &'static str {
                match self {
                    $(Member::$name => $text,)*
                }
            }
        }
    };
}

// 0x09, 0x0A and 0x0D (tab, newline, carriage return) are never codes.
members! {
    EventSchema = 0x01 => r#""$event_schema":{"version":"1.0.0"}"#,
    Audience = 0x02 => r#","audience":"#,
    ClientId = 0x03 => r#","client_id":"#,
    ClientIp = 0x04 => r#","client_ip":"#,
    ClientName = 0x05 => r#","client_name":"#,
    NoConnectionId = 0x06 => r#","connection_id":"""#,
    Date = 0x07 => r#","date":""#,
    SeccftDescription = 0x08 => r#","description":"Client Credentials for Access Token""#,
    AccessTokenJti = 0x0B => r#","details":{"access_token_jti":"#,
    Hostname = 0x0C => r#","hostname":"#,
    Ip = 0x0E => r#","ip":"#,
    NotMobile = 0x0F => r#","isMobile":false"#,
    OrganizationId = 0x10 => r#","organization_id":"#,
    OrganizationName = 0x11 => r#","organization_name":"#,
    Scope = 0x12 => r#","scope":"#,
    SeccftType = 0x13 => r#","type":"seccft""#,
    UserAgent = 0x14 => r#","user_agent":"#,
    NoUserId = 0x15 => r#","user_id":"""#,
    NoUserName = 0x16 => r#","user_name":"""#,
    LogId = 0x17 => r#""log_id":""#,
}

impl Member {
    /// The byte that stands for [`Member::text`].
    pub const fn code(self) -> u8 {
        self as u8
    }

    fn of(code: u8) -> Option<Member> {
        Member::ALL.into_iter().find(|m| m.code() == code)
    }

    /// Appends what the code stands for in a document of the row `columns`.
    fn write(self, out: &mut String, columns: Columns<'_>) {
        out.push_str(self.text());
        match self {
            // Ids and dates are digits and ASCII: nothing to escape.
            Member::LogId => {
                out.push_str(columns.log_id);
                out.push_str("\",");
            }
            Member::Date => {
                out.push_str(&columns.date.to_rfc3339());
                out.push('"');
            }
            _ => {}
        }
    }
}

/// The JSON text of a document of the row `columns`, packed or not. A plain document is returned
/// as it is.
pub fn unpack<'a>(doc: &'a str, columns: Columns<'_>) -> Cow<'a, str> {
    let bytes = doc.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b < 0x20) else {
        return Cow::Borrowed(doc);
    };
    let mut out = String::with_capacity(doc.len() + 400);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        if let Some(member) = if b < 0x20 { Member::of(b) } else { None } {
            // `i` and `start` are at ASCII bytes, so both are character boundaries.
            out.push_str(doc.get(start..i).unwrap_or_default());
            member.write(&mut out, columns);
            start = i + 1;
        }
    }
    out.push_str(doc.get(start..).unwrap_or_default());
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_control_bytes_that_json_never_holds_raw() {
        let mut seen = std::collections::HashSet::new();
        for member in Member::ALL {
            let code = member.code();
            assert!(code > 0 && code < 0x20, "{member:?}");
            assert!(![b'\t', b'\n', b'\r'].contains(&code), "{member:?}");
            assert!(seen.insert(code), "{member:?} reuses {code:#04x}");
            assert_eq!(Member::of(code), Some(member));
            assert!(member.text().bytes().all(|b| b >= 0x20), "{member:?}'s text must not itself look packed");
        }
    }

    #[test]
    fn a_packed_document_unpacks_to_its_json_and_a_plain_one_is_untouched() {
        let code = |m: Member| char::from(m.code()).to_string();
        let columns = Columns { log_id: "9001", date: UnixTime::from_millis(1_796_515_200_000) };
        let packed = format!(
            "{{{}{}{}\"https://api/\"{}\"c\\u0001\"{}{}{}{}{}\"j\"}}{}}}",
            code(Member::LogId),
            code(Member::EventSchema),
            code(Member::Audience),
            code(Member::ClientId),
            code(Member::NoConnectionId),
            code(Member::NotMobile),
            code(Member::Date),
            code(Member::SeccftDescription),
            code(Member::AccessTokenJti),
            code(Member::SeccftType),
        );
        let plain = r#"{"log_id":"9001","$event_schema":{"version":"1.0.0"},"audience":"https://api/","client_id":"c\u0001","connection_id":"","isMobile":false,"date":"2026-12-06T00:00:00.000Z","description":"Client Credentials for Access Token","details":{"access_token_jti":"j"},"type":"seccft"}"#;
        assert_eq!(unpack(&packed, columns), plain);
        let value: serde_json::Value = serde_json::from_str(&unpack(&packed, columns)).expect("valid JSON");
        assert_eq!(value["client_id"], "c\u{1}", "an escaped control character is not a code");
        assert!(matches!(unpack(plain, columns), Cow::Borrowed(_)));
        assert_eq!(unpack("{}", columns), "{}");
        // A byte that is no code (corruption) is kept, not dropped.
        assert_eq!(unpack("{\u{1f}}", columns), "{\u{1f}}");
    }
}
