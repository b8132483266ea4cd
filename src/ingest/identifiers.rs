//! Direct-identifier detection. A file with a column whose name or values look like a direct
//! identifier (name, date of birth, SSN, address, phone, email, MRN, or a raw person id beside
//! `person_key`) is refused whole: the warehouse must never hold one, even in quarantine.

/// What kind of direct identifier a column name or value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierKind {
    Name,
    DateOfBirth,
    SocialSecurityNumber,
    Address,
    Phone,
    Email,
    MedicalRecordNumber,
    RawPersonId,
}

impl IdentifierKind {
    pub fn describe(self) -> &'static str {
        match self {
            IdentifierKind::Name => "a person's name",
            IdentifierKind::DateOfBirth => "a date of birth",
            IdentifierKind::SocialSecurityNumber => "a social security number",
            IdentifierKind::Address => "a street address",
            IdentifierKind::Phone => "a phone number",
            IdentifierKind::Email => "an email address",
            IdentifierKind::MedicalRecordNumber => "a medical record number",
            IdentifierKind::RawPersonId => "a raw person identifier beside person_key",
        }
    }
}

/// Column names (lower case, with `_` for any separator) that name a direct identifier.
const NAME_PATTERNS: &[(&str, IdentifierKind)] = &[
    ("name", IdentifierKind::Name),
    ("first_name", IdentifierKind::Name),
    ("firstname", IdentifierKind::Name),
    ("last_name", IdentifierKind::Name),
    ("lastname", IdentifierKind::Name),
    ("surname", IdentifierKind::Name),
    ("full_name", IdentifierKind::Name),
    ("middle_name", IdentifierKind::Name),
    ("client_name", IdentifierKind::Name),
    ("patient_name", IdentifierKind::Name),
    ("survivor_name", IdentifierKind::Name),
    ("person_name", IdentifierKind::Name),
    ("alias", IdentifierKind::Name),
    ("dob", IdentifierKind::DateOfBirth),
    ("date_of_birth", IdentifierKind::DateOfBirth),
    ("birth_date", IdentifierKind::DateOfBirth),
    ("birthdate", IdentifierKind::DateOfBirth),
    ("ssn", IdentifierKind::SocialSecurityNumber),
    ("social_security", IdentifierKind::SocialSecurityNumber),
    (
        "social_security_number",
        IdentifierKind::SocialSecurityNumber,
    ),
    ("address", IdentifierKind::Address),
    ("street", IdentifierKind::Address),
    ("street_address", IdentifierKind::Address),
    ("home_address", IdentifierKind::Address),
    ("address_line_1", IdentifierKind::Address),
    ("address1", IdentifierKind::Address),
    ("zip", IdentifierKind::Address),
    ("zip_code", IdentifierKind::Address),
    ("zipcode", IdentifierKind::Address),
    ("postal_code", IdentifierKind::Address),
    ("latitude", IdentifierKind::Address),
    ("longitude", IdentifierKind::Address),
    ("phone", IdentifierKind::Phone),
    ("phone_number", IdentifierKind::Phone),
    ("telephone", IdentifierKind::Phone),
    ("mobile", IdentifierKind::Phone),
    ("cell_phone", IdentifierKind::Phone),
    ("email", IdentifierKind::Email),
    ("email_address", IdentifierKind::Email),
    ("e_mail", IdentifierKind::Email),
    ("mrn", IdentifierKind::MedicalRecordNumber),
    ("medical_record_number", IdentifierKind::MedicalRecordNumber),
    ("medical_record", IdentifierKind::MedicalRecordNumber),
    ("person_id", IdentifierKind::RawPersonId),
    ("client_id", IdentifierKind::RawPersonId),
    ("patient_id", IdentifierKind::RawPersonId),
    ("survivor_id", IdentifierKind::RawPersonId),
    ("subject_id", IdentifierKind::RawPersonId),
    ("member_id", IdentifierKind::RawPersonId),
    ("medicaid_id", IdentifierKind::RawPersonId),
    ("drivers_license", IdentifierKind::RawPersonId),
    ("driver_license", IdentifierKind::RawPersonId),
    ("license_number", IdentifierKind::RawPersonId),
    ("state_id", IdentifierKind::RawPersonId),
    ("sid", IdentifierKind::RawPersonId),
    ("booking_number", IdentifierKind::RawPersonId),
    ("case_number", IdentifierKind::RawPersonId),
];

/// Whether a header column name looks like a direct identifier.
pub fn identifier_column(name: &str) -> Option<IdentifierKind> {
    let norm: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let norm = norm.trim_matches('_');
    NAME_PATTERNS
        .iter()
        .find(|(p, _)| *p == norm)
        .map(|(_, k)| *k)
}

/// Whether a field's value looks like a direct identifier: an email address, or a number
/// that, stripped of the separators people write in them (space, `-`, `.`, `(`, `)`, `+`),
/// has the digits of an SSN or a US phone number: nine (`123-45-6789`, `123.45.6789`,
/// `123456789`), ten (`6175550100`, `(617) 555-0100`, `617-5550100`) or eleven starting with
/// `1` (`1-617-555-0100`, `+1 617 555 0100`). Shapes are not matched exactly, since people
/// write these numbers in every way; a column whose declared id pattern accepts such a value
/// is exempt (see `ingest`). `may_hold_at` is false when the caller knows the value has no
/// `@` (it checked the whole line), which skips the email test.
pub fn identifier_value(v: &[u8], may_hold_at: bool) -> Option<IdentifierKind> {
    if v.len() < 6 || v.len() > 254 {
        return None;
    }
    if may_hold_at && memchr::memchr(b'@', v).is_some() {
        return looks_like_email(v).then_some(IdentifierKind::Email);
    }
    number_kind(v)
}

/// Longest value read as a written number: `+1 (617) 555-0100` with room for more spaces.
const MAX_NUMBER_BYTES: usize = 24;

/// An SSN or phone number, told by its digits once separators are stripped. Stops at the
/// first byte that is neither, which for ids, enums and text is nearly always the first.
fn number_kind(v: &[u8]) -> Option<IdentifierKind> {
    if !(9..=MAX_NUMBER_BYTES).contains(&v.len()) {
        return None;
    }
    let mut digits = 0u32;
    let mut first = 0u8;
    for &b in v {
        match b {
            b'0'..=b'9' => {
                if digits == 0 {
                    first = b;
                }
                digits += 1;
            }
            b' ' | b'-' | b'.' | b'(' | b')' | b'+' => {}
            _ => return None,
        }
    }
    match digits {
        9 => Some(IdentifierKind::SocialSecurityNumber),
        10 => Some(IdentifierKind::Phone),
        11 if first == b'1' => Some(IdentifierKind::Phone),
        _ => None,
    }
}

fn looks_like_email(v: &[u8]) -> bool {
    let Some(at) = memchr::memchr(b'@', v) else {
        return false;
    };
    let (local, domain) = (&v[..at], &v[at + 1..]);
    let ok = |b: &u8| b.is_ascii_alphanumeric() || b"._%+-".contains(b);
    !local.is_empty()
        && local.iter().all(ok)
        && domain.len() >= 3
        && domain.iter().all(ok)
        && domain.contains(&b'.')
        && !domain.starts_with(b".")
        && !domain.ends_with(b".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_identifier_column_names() {
        for (name, kind) in [
            ("First Name", IdentifierKind::Name),
            ("DOB", IdentifierKind::DateOfBirth),
            ("date-of-birth", IdentifierKind::DateOfBirth),
            ("SSN", IdentifierKind::SocialSecurityNumber),
            ("street_address", IdentifierKind::Address),
            ("Phone Number", IdentifierKind::Phone),
            ("email", IdentifierKind::Email),
            ("MRN", IdentifierKind::MedicalRecordNumber),
            ("client_id", IdentifierKind::RawPersonId),
        ] {
            assert_eq!(identifier_column(name), Some(kind), "{name}");
        }
        for ok in [
            "person_key",
            "program_name",
            "event_id",
            "region",
            "source",
            "sex",
        ] {
            assert_eq!(identifier_column(ok), None, "{ok}");
        }
    }

    #[test]
    fn flags_identifier_values() {
        for (v, kind) in [
            ("jane.doe@example.org", IdentifierKind::Email),
            ("123-45-6789", IdentifierKind::SocialSecurityNumber),
            ("123 45 6789", IdentifierKind::SocialSecurityNumber),
            ("(617) 555-0100", IdentifierKind::Phone),
            ("617-555-0100", IdentifierKind::Phone),
            ("617.555.0100", IdentifierKind::Phone),
            ("+1 617 555 0100", IdentifierKind::Phone),
            // Written any other way, the digits still tell.
            ("6175550100", IdentifierKind::Phone),
            ("1-617-555-0100", IdentifierKind::Phone),
            ("617-5550100", IdentifierKind::Phone),
            ("617 555-0100", IdentifierKind::Phone),
            ("+1 (617) 555-0100", IdentifierKind::Phone),
            ("16175550100", IdentifierKind::Phone),
            ("123.45.6789", IdentifierKind::SocialSecurityNumber),
            ("123456789", IdentifierKind::SocialSecurityNumber),
            ("12-345-6789", IdentifierKind::SocialSecurityNumber),
            ("2024-12345", IdentifierKind::SocialSecurityNumber),
        ] {
            assert_eq!(identifier_value(v.as_bytes(), true), Some(kind), "{v}");
        }
        for ok in [
            "2025-03-14",
            "2025/03/14",
            "E000012345",
            "12345678",
            "26175550100",
            "123456789012",
            "pk_3fa85f6457174562",
            "OD000123401",
            "engaged_survivor",
            "Greater Boston PORT",
            "a@b",
            "617-555-0100 ext",
        ] {
            assert_eq!(identifier_value(ok.as_bytes(), true), None, "{ok}");
        }
    }
}
