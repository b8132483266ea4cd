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

/// Whether a field's value looks like a direct identifier: an email address anywhere in it
/// (also as `mailto:…`, `<…>` or `Name <…>`), or a number with the digits of an SSN or a US
/// phone number.
///
/// Numbers are read as runs of digits joined by the separators people write in them: space,
/// no-break spaces, `-` and the Unicode dashes, `.`, `/`, `_`, `(`, `)` and `+`
/// ([`is_separator`]). A run is an identifier when
/// - its groups have the shape of one wherever it stands: `123-45-6789`, `617-555-0100`,
///   `(617) 555-0100`, `617-5550100`, `1-617-555-0100`, `+1 617 555 0100`, even inside text
///   (`call 617-555-0100 x12`) or after letters (`E617-555-0100`);
/// - or it ends the value and has nine digits (SSN), ten, or eleven starting with `1` (phone),
///   written any way, after at most a leading label and separators: `123456789`,
///   `SSN-123-45-6789`, `tel:6175550100`, `ssn 123456789`, `(617)555 0100`. A label glued to
///   the digits counts only when it is a word that labels such numbers ([`NUMBER_LABELS`]:
///   `x6175550100`, `ph6175550100`), since ids such as `OD000123401` are letters and digits;
/// - or it has those digits and follows such a label word anywhere (`my ssn 123456789`).
///
/// A value with fewer than nine digits is no such number. `may_hold_at` is false when the
/// caller knows the value has no `@` (it checked the whole line), which skips the email test.
///
/// Inlined for the quick exits that most fields take (too short for an email, or for nine
/// digits when the line has no `@`); the rest is [`identifier_in_value`].
#[inline]
pub fn identifier_value(v: &[u8], may_hold_at: bool) -> Option<IdentifierKind> {
    if v.len() < 6 || (v.len() < 9 && !may_hold_at) || v.len() > MAX_VALUE_BYTES {
        return None;
    }
    identifier_in_value(v, may_hold_at)
}

/// [`identifier_value`] past its quick exits.
#[inline(never)]
fn identifier_in_value(v: &[u8], may_hold_at: bool) -> Option<IdentifierKind> {
    if may_hold_at && memchr::memchr(b'@', v).is_some() && holds_email(v) {
        return Some(IdentifierKind::Email);
    }
    number_kind(v)
}

/// Longest value scanned. Longer values are rejected for their length (and reported by it)
/// by every column type that takes text.
const MAX_VALUE_BYTES: usize = 4096;

/// Words that label an SSN or a phone number when they stand right before its digits, glued
/// or with separators (compared ignoring ASCII case).
/// [`is_known_label`] matches exactly these (its tests compare the two).
#[cfg_attr(not(test), allow(dead_code))]
const NUMBER_LABELS: &[&str] = &[
    "ssn",
    "ss",
    "sin",
    "soc",
    "social",
    "security",
    "tel",
    "tele",
    "telephone",
    "phone",
    "ph",
    "cell",
    "mobile",
    "mob",
    "fax",
    "x",
    "ext",
    "call",
    "sms",
    "number",
    "num",
    "nr",
    "no",
];

/// Whether `c` joins the digit groups of a written number: space and the no-break spaces,
/// `-` and the Unicode hyphens, dashes and minus signs, `.`, `/`, `_`, `(`, `)`, `+`.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '-'
            | '.'
            | '('
            | ')'
            | '+'
            | '/'
            | '_'
            | '\t'
            | '\u{a0}'
            | '\u{2002}'..='\u{200a}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
            | '\u{2010}'..='\u{2015}'
            | '\u{2212}'
            | '\u{2043}'
            | '\u{fe58}'
            | '\u{fe63}'
            | '\u{ff0d}'
            | '\u{ff0e}'
            | '\u{ff0f}'
            | '\u{ff08}'
            | '\u{ff09}'
            | '\u{ff0b}'
    )
}

/// A decimal digit, ASCII or full-width.
fn digit(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '\u{ff10}'..='\u{ff19}' => Some((c as u32 - 0xff10) as u8),
        _ => None,
    }
}

/// Punctuation around a number, or between a label and its number, that is no separator of
/// the number itself: `tel:`, `SSN#`, `no=`, quotes and brackets, `,` and `;`.
fn is_label_joiner(c: char) -> bool {
    matches!(
        c,
        ':' | '#'
            | '='
            | '\''
            | '"'
            | '<'
            | '>'
            | '['
            | ']'
            | '{'
            | '}'
            | '*'
            | ','
            | ';'
            | '|'
            | '~'
            | '\u{2018}'
            | '\u{2019}'
            | '\u{201c}'
            | '\u{201d}'
            | '\u{ab}'
            | '\u{bb}'
            | '\u{ff1a}'
            | '\u{ff03}'
    )
}

/// What is known of the text before a run of digits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Before {
    /// Nothing but separators and joiners: the run may be the value's number.
    Start,
    /// One word, then separators or joiners (`SSN-`, `tel:`, `ssn `).
    Label { known: bool },
    /// One word glued to the digits (`x6175550100`, `OD000123401`).
    Glued { known: bool },
    /// Anything else: the run is inside text.
    Text { known_label: bool },
}

/// The run of digits being read.
struct Run {
    before: Before,
    digits: u32,
    first: u8,
    groups: [u8; 8],
    n_groups: usize,
    /// A separator was read since the last digit.
    pending_sep: bool,
}

impl Run {
    fn push_digit(&mut self, d: u8) {
        if self.digits == 0 {
            self.first = d;
            self.n_groups = 1;
            self.groups[0] = 0;
        } else if self.pending_sep {
            if self.n_groups < self.groups.len() {
                self.n_groups += 1;
                self.groups[self.n_groups - 1] = 0;
            } else {
                // More groups than any number written so has: never a shape.
                self.groups[self.groups.len() - 1] = u8::MAX;
            }
        }
        let g = &mut self.groups[self.n_groups - 1];
        *g = g.saturating_add(1);
        self.digits += 1;
        self.pending_sep = false;
    }

    fn by_count(&self) -> Option<IdentifierKind> {
        match self.digits {
            9 => Some(IdentifierKind::SocialSecurityNumber),
            10 => Some(IdentifierKind::Phone),
            11 if self.first == 1 => Some(IdentifierKind::Phone),
            _ => None,
        }
    }

    fn by_shape(&self) -> Option<IdentifierKind> {
        match &self.groups[..self.n_groups] {
            [3, 2, 4] => Some(IdentifierKind::SocialSecurityNumber),
            [3, 3, 4] | [3, 7] => Some(IdentifierKind::Phone),
            [1, 3, 3, 4] | [1, 3, 7] if self.first == 1 => Some(IdentifierKind::Phone),
            _ => None,
        }
    }

    /// What the run is, given whether it ends the value.
    fn kind(&self, ends_value: bool) -> Option<IdentifierKind> {
        if let Some(k) = self.by_shape() {
            return Some(k);
        }
        let counted = match self.before {
            Before::Start | Before::Label { .. } => ends_value,
            Before::Glued { known } => known && ends_value,
            Before::Text { known_label } => known_label,
        };
        if counted { self.by_count() } else { None }
    }
}

/// A fast proof that [`number_kind`]'s scan would find nothing, for the common id shape of
/// ASCII letters and digits only (`OD000000001`, `pk56636c115697669c`). With no separator,
/// digits form no written shape; a run of nine or more digits is then an SSN or a phone
/// number only when it opens the value, or stands after a label word (glued or anywhere
/// before). So: letters and digits only, no label word, and every run of nine or more digits
/// glued to a word before it. Anything else takes the full scan; a unit test checks the two
/// agree on random values. [`plainly_clear`] runs it fused with the digit count.
#[cfg(test)]
fn plainly_no_number(v: &[u8]) -> bool {
    if !v.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut i = 0;
    let mut after_word = false;
    while i < v.len() {
        let start = i;
        if v[i].is_ascii_alphabetic() {
            while i < v.len() && v[i].is_ascii_alphabetic() {
                i += 1;
            }
            if is_known_label(&v[start..i]) {
                return false;
            }
            after_word = true;
        } else {
            while i < v.len() && v[i].is_ascii_digit() {
                i += 1;
            }
            if i - start >= 9 && !after_word {
                return false;
            }
            after_word = false;
        }
    }
    true
}

/// A fast proof for ASCII letters and digits only: with no separator, a letter ends a run of
/// digits, so the runs are the digit stretches between letters, and none has the groups of a
/// written shape. A run is counted as an SSN or phone number only with nine, ten or eleven
/// digits, so a value with no such run holds none, whatever its words. [`plainly_clear`]
/// runs it fused with the other tests.
#[cfg(test)]
fn alnum_without_counted_run(v: &[u8]) -> bool {
    v.iter().all(u8::is_ascii_alphanumeric)
        && v.split(|b| !b.is_ascii_digit())
            .all(|run| !(9..=11).contains(&run.len()))
}

fn is_known_label(word: &[u8]) -> bool {
    // The longest label is `telephone`: most words end the search at their length. The
    // match below is `NUMBER_LABELS` (a test keeps the two equal); compiled as a switch on
    // the length, it costs a compare or two per word, where a search of the list cost a
    // sixth of the identifier scan.
    if word.is_empty() || word.len() > 9 {
        return false;
    }
    let mut lower = [0u8; 9];
    for (l, b) in lower.iter_mut().zip(word) {
        *l = b.to_ascii_lowercase();
    }
    matches!(
        &lower[..word.len()],
        b"ssn"
            | b"ss"
            | b"sin"
            | b"soc"
            | b"social"
            | b"security"
            | b"tel"
            | b"tele"
            | b"telephone"
            | b"phone"
            | b"ph"
            | b"cell"
            | b"mobile"
            | b"mob"
            | b"fax"
            | b"x"
            | b"ext"
            | b"call"
            | b"sms"
            | b"number"
            | b"num"
            | b"nr"
            | b"no"
    )
}

/// An SSN or phone number among the runs of digits of a value (see [`identifier_value`]).
fn number_kind(v: &[u8]) -> Option<IdentifierKind> {
    // Nine digits need nine bytes: most values stop here, before any byte is read.
    if v.len() < 9 {
        return None;
    }
    if plainly_clear(v) {
        return None;
    }
    scan_numbers(v)
}

/// Proves, for most values, that [`scan_numbers`] would find nothing:
/// - fewer than nine digits (counting full-width ones, whose UTF-8 starts with 0xEF) hold no
///   SSN or phone number;
/// - a value of ASCII letters and digits only has no separator, so its digit runs are its
///   runs of digits between letters and form no written shape: it holds one only if a run has
///   nine to eleven digits ([`alnum_without_counted_run`]); this clears most ids with no label
///   test at all;
/// - the rest of what [`plainly_no_number`] clears: letters and digits only, no label word,
///   every long digit run glued to a word before it. The label words are only looked for
///   when everything else allows it.
///
/// This runs on every field of every line, so a value of up to 64 bytes is read once into
/// bit masks (eight bytes at a time) and the tests are done on the masks; a longer value is
/// only cleared by its digit count. Proptests check it against the tests it fuses.
fn plainly_clear(v: &[u8]) -> bool {
    if v.len() > 64 {
        // Long values are free text, and rare: only the digit count spares them the scan.
        return v
            .iter()
            .filter(|b| b.is_ascii_digit() || **b == 0xEF)
            .count()
            < 9;
    }
    let (mut digit, mut alpha, mut wide) = (0u64, 0u64, 0u64);
    let mut words = v.chunks_exact(8);
    for (k, w) in (&mut words).enumerate() {
        let (d, a, e) = word_masks(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        digit |= d << (8 * k);
        alpha |= a << (8 * k);
        wide |= e << (8 * k);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        // Padded with zero bytes, which are of no class.
        let w = tail
            .iter()
            .rev()
            .fold(0u64, |w, b| (w << 8) | u64::from(*b));
        let (d, a, e) = word_masks(w);
        let k = v.len() / 8;
        digit |= d << (8 * k);
        alpha |= a << (8 * k);
        wide |= e << (8 * k);
    }
    if digit.count_ones() + wide.count_ones() < 9 {
        return true;
    }
    let all = u64::MAX >> (64 - v.len());
    if digit | alpha != all {
        return false;
    }
    // Bit i of `long`: nine digits start at byte i.
    let long = (1..9).fold(digit, |m, k| m & (digit >> k));
    if long == 0 {
        return true;
    }
    if !runs(digit).any(|(_, len)| (9..=11).contains(&len)) {
        return true;
    }
    // A run of nine or more digits opens the value: no word is glued before it.
    if long & 1 == 1 {
        return false;
    }
    !runs(alpha).any(|(start, len)| is_known_label(&v[start..start + len]))
}

/// The runs of set bits of `mask`, as (first bit, length).
fn runs(mut mask: u64) -> impl Iterator<Item = (usize, usize)> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let start = mask.trailing_zeros();
        let len = (!(mask >> start)).trailing_zeros();
        mask &= !((u64::MAX >> (64 - len)) << start);
        Some((start as usize, len as usize))
    })
}

/// The classes of the eight bytes of `w` (little-endian) as three 8-bit masks, bit i for
/// byte i: ASCII digits, ASCII letters, and 0xEF (the first byte of a full-width digit's
/// UTF-8, counted as a digit). Eight bytes at once: the range tests add to each byte's low
/// seven bits, which cannot carry into the next byte, and bytes from 0x80 up are no digit or
/// letter.
fn word_masks(w: u64) -> (u64, u64, u64) {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const fn splat(b: u8) -> u64 {
        0x0101_0101_0101_0101 * b as u64
    }
    /// The high bit of each byte, gathered into the low eight bits.
    fn gather(m: u64) -> u64 {
        (m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
    }
    let ascii = !w & HIGH;
    let x = w & !HIGH;
    let digit = (x + splat(0x80 - b'0')) & !(x + splat(0x80 - b'9' - 1)) & ascii;
    // Setting 0x20 maps the upper-case letters onto the lower-case ones, and nothing else
    // onto them.
    let y = x | splat(0x20);
    let alpha = (y + splat(0x80 - b'a')) & !(y + splat(0x80 - b'z' - 1)) & ascii;
    let wide = super::rows::bytes_equal(w, 0xEF);
    (gather(digit), gather(alpha), gather(wide))
}

/// The full character-level scan of [`number_kind`], without its quick exits.
fn scan_numbers(v: &[u8]) -> Option<IdentifierKind> {
    let text = String::from_utf8_lossy(v);
    // Punctuation after the number does not put it inside text (`123456789;`).
    let text = text
        .trim()
        .trim_end_matches(|c: char| is_separator(c) || is_label_joiner(c));
    let mut scan = NumberScan::default();
    for c in text.chars() {
        if let Some(k) = scan.push(c) {
            return Some(k);
        }
    }
    scan.run.and_then(|r| r.kind(true))
}

/// The state of [`number_kind`]'s pass over a value's characters.
#[derive(Default)]
struct NumberScan {
    /// The word being read (ASCII letters in lower case; a longer or non-ASCII word is no
    /// label), and whether one is being read.
    word: [u8; 12],
    word_len: usize,
    word_plain: bool,
    in_word: bool,
    /// Words read before the current position, since the value's start.
    words: usize,
    /// Whether the last word is a label word, and whether only separators and joiners came
    /// since it.
    last_word_known: bool,
    joined_since_word: bool,
    /// Whether a label word came since the last run of digits.
    label_seen: bool,
    /// Whether anything but one word, separators and joiners came before.
    other: bool,
    run: Option<Run>,
}

impl NumberScan {
    fn end_word(&mut self) {
        if self.in_word {
            self.in_word = false;
            self.last_word_known = self.word_plain && is_known_label(&self.word[..self.word_len]);
            self.label_seen |= self.last_word_known;
        }
    }

    /// Reads one character; returns the identifier that a run it ends turned out to be.
    fn push(&mut self, c: char) -> Option<IdentifierKind> {
        if let Some(d) = digit(c) {
            if self.run.is_none() {
                let glued = self.in_word;
                self.end_word();
                let before = if glued {
                    if self.words == 1 && !self.other {
                        Before::Glued {
                            known: self.last_word_known,
                        }
                    } else {
                        Before::Text {
                            known_label: self.label_seen,
                        }
                    }
                } else if self.words == 0 && !self.other {
                    Before::Start
                } else if self.words == 1 && !self.other && self.joined_since_word {
                    Before::Label {
                        known: self.last_word_known,
                    }
                } else {
                    Before::Text {
                        known_label: self.label_seen,
                    }
                };
                self.run = Some(Run {
                    before,
                    digits: 0,
                    first: 0,
                    groups: [0; 8],
                    n_groups: 0,
                    pending_sep: false,
                });
            }
            self.run.as_mut().expect("set above").push_digit(d);
            return None;
        }
        if is_separator(c) {
            match self.run.as_mut() {
                Some(r) => r.pending_sep = true,
                None => {
                    self.end_word();
                    self.joined_since_word = true;
                }
            }
            return None;
        }
        // Anything else ends the run, and what follows a number is no label of the next.
        if let Some(r) = self.run.take() {
            if let Some(k) = r.kind(false) {
                return Some(k);
            }
            self.other = true;
            self.label_seen = false;
            self.last_word_known = false;
            self.joined_since_word = false;
        }
        if c.is_alphabetic() {
            if !self.in_word {
                self.in_word = true;
                self.words += 1;
                self.word_len = 0;
                self.word_plain = true;
                self.joined_since_word = false;
            }
            if c.is_ascii_alphabetic() && self.word_len < self.word.len() {
                self.word[self.word_len] = c.to_ascii_lowercase() as u8;
                self.word_len += 1;
            } else {
                self.word_plain = false;
            }
        } else if is_label_joiner(c) {
            self.end_word();
            self.joined_since_word = true;
        } else {
            self.end_word();
            self.other = true;
            self.last_word_known = false;
            self.joined_since_word = false;
        }
        None
    }
}

/// Whether an email address stands anywhere in `v`: a local part of letters, digits and
/// `._%+-'`, an `@`, and a domain of letters, digits, `.` and `-` with a dot inside it.
fn holds_email(v: &[u8]) -> bool {
    let local_ok = |b: u8| b.is_ascii_alphanumeric() || b"._%+-'".contains(&b);
    let domain_ok = |b: u8| b.is_ascii_alphanumeric() || b".-".contains(&b);
    memchr::memchr_iter(b'@', v).any(|at| {
        let local = v[..at].iter().rev().take_while(|b| local_ok(**b)).count();
        let domain_end = v[at + 1..].iter().take_while(|b| domain_ok(**b)).count();
        let domain = &v[at + 1..at + 1 + domain_end];
        let domain = {
            let mut d = domain;
            while let [rest @ .., b'.' | b'-'] = d {
                d = rest;
            }
            d
        };
        local > 0
            && domain.len() >= 3
            && domain.contains(&b'.')
            && !domain.starts_with(b".")
            && !domain.starts_with(b"-")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// Whenever the fast path says "no number", the full scan agrees: random values of
        /// letters, digit runs and label words, the shapes ids take.
        #[test]
        fn the_fast_path_never_hides_what_the_scan_finds(
            parts in proptest::collection::vec(proptest::prop_oneof![
                proptest::string::string_regex("[A-Za-z]{1,3}").unwrap(),
                proptest::string::string_regex("[0-9]{1,12}").unwrap(),
                proptest::sample::select(vec![
                    "x".to_string(), "ssn".into(), "No".into(), "tel".into(), "PH".into(),
                    "OD".into(), "pk".into(), "E".into(),
                ]),
            ], 1..6)
        ) {
            let v = parts.concat();
            if plainly_no_number(v.as_bytes()) || alnum_without_counted_run(v.as_bytes()) {
                proptest::prop_assert_eq!(scan_numbers(v.as_bytes()), None, "{}", v);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// The fused one-pass check clears exactly what the digit count and the fast path
        /// clear together, on values with separators, full-width digits, labels and text.
        #[test]
        fn the_fused_check_is_the_digit_count_and_the_fast_paths(
            parts in proptest::collection::vec(proptest::prop_oneof![
                proptest::string::string_regex("[A-Za-z]{1,4}").unwrap(),
                proptest::string::string_regex("[0-9]{1,12}").unwrap(),
                proptest::string::string_regex("[ ./()+_-]{1,2}").unwrap(),
                proptest::sample::select(vec![
                    "x".to_string(), "ssn".into(), "No".into(), "tel".into(), "\u{ff11}".into(),
                    "\u{a0}".into(), "é".into(), "@".into(),
                ]),
            ], 0..8)
        ) {
            clears_as_the_tests_it_fuses(&parts.concat())?;
        }
    }

    /// [`plainly_clear`] clears exactly what the digit count and the fast paths clear
    /// together (the fast paths up to the 64 bytes the masks hold), and the full scan finds
    /// nothing in what it clears.
    fn clears_as_the_tests_it_fuses(v: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        let b = v.as_bytes();
        let digits = b
            .iter()
            .filter(|c| c.is_ascii_digit() || **c == 0xEF)
            .count();
        let fast = plainly_no_number(b) || alnum_without_counted_run(b);
        let expected = digits < 9 || (b.len() <= 64 && fast);
        proptest::prop_assert_eq!(plainly_clear(b), expected, "{}", v);
        if expected {
            proptest::prop_assert_eq!(scan_numbers(b), None, "{}", v);
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// On ids of letters and digits of every length up to and past the 64 bytes the
        /// masks hold: the masks clear exactly what the tests they fuse clear.
        #[test]
        fn the_masks_clear_ids_of_any_length_as_the_tests_they_fuse(
            parts in proptest::collection::vec(proptest::prop_oneof![
                proptest::string::string_regex("[A-Za-z]{1,5}").unwrap(),
                proptest::string::string_regex("[0-9]{1,13}").unwrap(),
                proptest::sample::select(vec![
                    "x".to_string(), "ssn".into(), "No".into(), "TEL".into(), "pk".into(),
                ]),
            ], 1..14)
        ) {
            clears_as_the_tests_it_fuses(&parts.concat())?;
        }
    }

    /// Every byte value at every position of a word gets the class a byte-by-byte test gives.
    #[test]
    fn word_masks_classify_every_byte_at_every_position() {
        for b in 0..=255u8 {
            for at in 0..8 {
                // The other bytes are a digit, a letter and 0xEF in turn, so that a carry or
                // a borrow between bytes would show.
                let mut bytes = [b'7', b'q', 0xEF, b'Z', b'0', 0xFF, b'9', b'@'];
                bytes[at] = b;
                let (d, a, e) = word_masks(u64::from_le_bytes(bytes));
                for (i, c) in bytes.iter().enumerate() {
                    let bit = |m: u64| (m >> i) & 1 == 1;
                    assert_eq!(bit(d), c.is_ascii_digit(), "{b:#x} at {at}, byte {i}");
                    assert_eq!(bit(a), c.is_ascii_alphabetic(), "{b:#x} at {at}, byte {i}");
                    assert_eq!(bit(e), *c == 0xEF, "{b:#x} at {at}, byte {i}");
                }
                assert!(d < 256 && a < 256 && e < 256);
            }
        }
    }

    proptest::proptest! {
        /// The label match is the list: every word of up to ten letters, any case.
        #[test]
        fn the_label_match_is_the_label_list(word in "[A-Za-z]{0,10}") {
            let listed = NUMBER_LABELS
                .iter()
                .any(|l| l.as_bytes().eq_ignore_ascii_case(word.as_bytes()));
            proptest::prop_assert_eq!(is_known_label(word.as_bytes()), listed, "{}", word);
        }
    }

    #[test]
    fn every_listed_label_is_known_in_any_case() {
        for l in NUMBER_LABELS {
            assert!(is_known_label(l.as_bytes()), "{l}");
            assert!(is_known_label(l.to_uppercase().as_bytes()), "{l}");
        }
        assert!(!is_known_label(b"od") && !is_known_label(b"pk") && !is_known_label(b"phones"));
    }

    #[test]
    fn the_fast_path_takes_ids_and_leaves_numbers_to_the_scan() {
        // is_known_label stops at words longer than the longest label.
        assert!(NUMBER_LABELS.iter().all(|l| l.len() <= 9));
        assert!(is_known_label(b"TELEPHONE") && !is_known_label(b"telephones"));
        for id in ["OD000000001", "pk56636c115697669c", "E123456789"] {
            assert!(plainly_no_number(id.as_bytes()), "{id}");
        }
        for v in [
            "123456789",
            "x6175550100",
            "ssn123456789",
            "ab12 345678",
            "no123456789",
        ] {
            assert!(!plainly_no_number(v.as_bytes()), "{v}");
        }
        // With no run of nine to eleven digits, label words do not matter.
        for v in [
            "pk56636c1156976a9c",
            "ssn12345678",
            "tel1234567890123",
            "No12x345678",
        ] {
            assert!(alnum_without_counted_run(v.as_bytes()), "{v}");
            assert!(plainly_clear(v.as_bytes()), "{v}");
            assert_eq!(scan_numbers(v.as_bytes()), None, "{v}");
        }
        for v in [
            "ssn123456789",
            "x6175550100",
            "no123456789",
            "tel16175550100",
        ] {
            assert!(!plainly_clear(v.as_bytes()), "{v}");
            assert!(scan_numbers(v.as_bytes()).is_some(), "{v}");
        }
    }

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
            // Behind a label, inside text, with other separators.
            ("SSN-123-45-6789", IdentifierKind::SocialSecurityNumber),
            ("ssn 123456789", IdentifierKind::SocialSecurityNumber),
            ("tel:6175550100", IdentifierKind::Phone),
            ("x6175550100", IdentifierKind::Phone),
            ("E617-555-0100", IdentifierKind::Phone),
            ("617-555-0100 ext", IdentifierKind::Phone),
            ("call 617-555-0100 x12", IdentifierKind::Phone),
            ("my ssn is 123456789", IdentifierKind::SocialSecurityNumber),
            ("123/45/6789", IdentifierKind::SocialSecurityNumber),
            ("617_555_0100", IdentifierKind::Phone),
            ("617\u{2013}555\u{2013}0100", IdentifierKind::Phone),
            ("617\u{a0}555\u{a0}0100", IdentifierKind::Phone),
            ("\u{ff16}\u{ff11}\u{ff17}5550100", IdentifierKind::Phone),
            ("mailto:jane@example.org", IdentifierKind::Email),
            ("Jane <jane@example.org>", IdentifierKind::Email),
            ("o'brien@example.org", IdentifierKind::Email),
            ("'123456789", IdentifierKind::SocialSecurityNumber),
            ("\"123-45-6789\";", IdentifierKind::SocialSecurityNumber),
            ("<6175550100>", IdentifierKind::Phone),
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
            "OD000123401",
            "OA123456701",
            "pk0123456789012345",
            "pk56636c115697669c",
            "pk_6457174562abc",
            "E-2025-0001",
            "RF1234567-01",
            "617 555-01",
            "MRN:0012345",
            "2025-01-01 10:30:00",
            "2024-01-01 to 2024-12-31",
            "Route 9, exit 12345678",
            "x@y",
        ] {
            assert_eq!(identifier_value(ok.as_bytes(), true), None, "{ok}");
        }
    }
}
