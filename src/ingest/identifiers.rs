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
/// Numbers are judged by how they are written, not by how many digits they hold. A value's
/// digits are read as runs: groups of digits joined by the separators people write in them
/// (space, no-break spaces, `-` and the Unicode dashes, `.`, `/`, `_`, `(`, `)` and `+`,
/// [`is_separator`]). Wherever a run stands (alone, after a prefix such as `INC-`, glued to
/// letters as in `E617-555-0100`, or inside text), it is
/// - an SSN when consecutive groups are 3, 2 and 4 digits (`123-45-6789`, `123 45 6789`), and
///   a phone number when they are 3, 3 and 4 or 3 and 7 (`617-555-0100`, `(617) 555-0100`,
///   `617-5550100`), also after the country code `1` (`1-617-555-0100`, `+1 617 555 0100`,
///   `1-6175550100`);
/// - an SSN when a group is nine digits in a row (`123456789`, `ssn 123456789`), and a phone
///   number when it is ten, or eleven starting with `1` (`6175550100`, `tel:16175550100`),
///   unless a word is glued to those digits, before or after them, as ids glue letters and
///   digits (`OD000123401`, `3fa85f6457174562ab`); a word that labels such numbers
///   ([`NUMBER_LABELS`]) glued before them does not spare them (`x6175550100`,
///   `ssn123456789`);
/// - a phone number in the international form, `+` and 9 to 15 digits however grouped
///   (`+44 20 7946 0958`).
///
/// Other groupings are ids, whatever their count of digits: `2024-12345`, `E-2025-000123`,
/// `odin-10000-7881`; a column's declared pattern then decides. So is a value laid out as a
/// UUID (8-4-4-4-12 hex digits), which can hold no written number.
///
/// A value with fewer than nine digits is no such number. `may_hold_at` is false when the
/// caller knows the value has no `@` (it checked the whole line), which skips the email test.
///
/// Inlined for the quick exits that most fields take (too short for an email, or for nine
/// digits when the line has no `@`); the rest is [`identifier_in_value`].
#[inline]
pub fn identifier_value(v: &[u8], may_hold_at: bool) -> Option<IdentifierKind> {
    if v.len() < 6 || (v.len() < NUMBER_DIGITS && !may_hold_at) || v.len() > MAX_VALUE_BYTES {
        return None;
    }
    // A value of up to 16 bytes without an `@` and with fewer digits than any SSN or phone
    // number has is cleared by its digit count, the first test of [`plainly_clear`], read
    // from two words without a loop or a call.
    if !may_hold_at
        && let (Some(head), Some(tail)) = (v.first_chunk::<8>(), v.last_chunk::<8>())
        && v.len() <= 16
    {
        // The tail word's bytes that the head holds too are shifted out.
        let tail = u64::from_le_bytes(*tail) >> (8 * (16 - v.len()));
        let digits = counted_digit_bits(u64::from_le_bytes(*head)).count_ones()
            + counted_digit_bits(tail).count_ones();
        if (digits as usize) < NUMBER_DIGITS {
            return None;
        }
    }
    identifier_in_value(v, may_hold_at)
}

/// The fewest digits an SSN or a phone number is written with.
const NUMBER_DIGITS: usize = 9;

/// The digits of `v` as the number scan counts them: ASCII digits, and the lead byte (0xEF)
/// of each full-width one, so that no digit goes uncounted.
fn counted_digits(v: &[u8]) -> usize {
    v.iter()
        .filter(|b| b.is_ascii_digit() || **b == 0xEF)
        .count()
}

/// The bytes of `w` that [`counted_digits`] counts, as their high bits.
#[inline]
fn counted_digit_bits(w: u64) -> u64 {
    ascii_digit_bits(w) | super::rows::bytes_equal(w, 0xEF)
}

const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// The ASCII digits of `w`, as their high bits. The range tests add to each byte's low seven
/// bits, which cannot carry into the next byte; bytes from 0x80 up are no digit.
#[inline]
fn ascii_digit_bits(w: u64) -> u64 {
    let x = w & !HIGH_BITS;
    (x + splat(0x80 - b'0')) & !(x + splat(0x80 - b'9' - 1)) & !w & HIGH_BITS
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

/// A group of digits inside a run: how many digits, and the first of them.
#[derive(Clone, Copy, Default)]
struct Group {
    len: u32,
    first: u8,
}

/// The written shape of an SSN or a phone number that consecutive groups of a run form:
/// `123-45-6789`; `617-555-0100`, `617-5550100`, and both after the country code `1`
/// (`1-617-555-0100`, `+1 617 555 0100`), as well as `1-6175550100`.
fn written_shape(groups: &[Group]) -> Option<IdentifierKind> {
    match groups {
        [
            Group { len: 3, .. },
            Group { len: 2, .. },
            Group { len: 4, .. },
        ] => Some(IdentifierKind::SocialSecurityNumber),
        [
            Group { len: 3, .. },
            Group { len: 3, .. },
            Group { len: 4, .. },
        ]
        | [Group { len: 3, .. }, Group { len: 7, .. }]
        | [
            Group { len: 1, first: 1 },
            Group { len: 3, .. },
            Group { len: 3, .. },
            Group { len: 4, .. },
        ]
        | [
            Group { len: 1, first: 1 },
            Group { len: 3, .. },
            Group { len: 7, .. },
        ]
        | [Group { len: 1, first: 1 }, Group { len: 10, .. }] => Some(IdentifierKind::Phone),
        _ => None,
    }
}

/// The digits of one group written in a row: nine are an SSN, ten or eleven starting with
/// `1` a phone number.
fn digits_in_a_row(g: Group) -> Option<IdentifierKind> {
    match (g.len, g.first) {
        (9, _) => Some(IdentifierKind::SocialSecurityNumber),
        (10, _) | (11, 1) => Some(IdentifierKind::Phone),
        _ => None,
    }
}

/// The run of digits being read: groups of digits joined by separators.
struct Run {
    /// `Some(label)` when a word is glued to the first digit (`OD000123401`, `x6175550100`),
    /// with whether that word labels such numbers ([`is_known_label`]).
    glued_word: Option<bool>,
    /// A `+` opens the run, glued to no letter before it (`+44 20 7946 0958`).
    plus: bool,
    digits: u32,
    /// Groups completed so far.
    completed: u32,
    /// The last four completed groups, the newest last: no written shape has more.
    recent: [Group; 4],
    current: Group,
    /// A separator was read since the last digit.
    pending_sep: bool,
}

impl Run {
    fn new(glued_word: Option<bool>, plus: bool) -> Run {
        Run {
            glued_word,
            plus,
            digits: 0,
            completed: 0,
            recent: [Group::default(); 4],
            current: Group::default(),
            pending_sep: false,
        }
    }

    /// Reads a digit; returns what a group it completes turned out to be.
    fn push_digit(&mut self, d: u8) -> Option<IdentifierKind> {
        let mut found = None;
        if self.pending_sep && self.current.len > 0 {
            found = self.complete(false);
        }
        if self.current.len == 0 {
            self.current.first = d;
        }
        self.current.len = self.current.len.saturating_add(1);
        self.digits = self.digits.saturating_add(1);
        self.pending_sep = false;
        found
    }

    /// Completes the current group, which a letter follows when `glued_after`.
    ///
    /// Nine, ten or eleven digits in a row are an identifier unless a word is glued to
    /// them, as ids glue letters and digits (`OD000123401`, `3fa85f6457174562ab`); a label
    /// word glued before them still makes them one (`x6175550100`). Then the groups that
    /// end with this one are compared with the written shapes.
    fn complete(&mut self, glued_after: bool) -> Option<IdentifierKind> {
        let g = std::mem::take(&mut self.current);
        let opens = self.completed == 0;
        let in_a_row = digits_in_a_row(g).filter(|_| match self.glued_word {
            Some(true) if opens => true,
            Some(false) if opens => false,
            _ => !glued_after,
        });
        self.recent.rotate_left(1);
        self.recent[3] = g;
        self.completed += 1;
        let n = (self.completed as usize).min(self.recent.len());
        in_a_row
            .or_else(|| (2..=n).find_map(|w| written_shape(&self.recent[4 - w..])))
            .or_else(|| {
                // The international form: `+`, a country code and the number, 9 to 15
                // digits however grouped (E.164 allows 15), whatever follows them.
                (self.plus && (9..=15).contains(&self.digits)).then_some(IdentifierKind::Phone)
            })
    }

    /// Ends the run, which a letter follows when `glued_after`.
    fn end(mut self, glued_after: bool) -> Option<IdentifierKind> {
        self.complete(glued_after)
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
    if plainly_clear(v) || is_uuid(v) {
        return None;
    }
    scan_numbers(v)
}

/// Whether `v` is laid out as a UUID: 8, 4, 4, 4 and 12 hex digits joined by `-`. Its digit
/// groups are hex, cut by letters, and form no written number; read as runs, a letter glued
/// to a group could otherwise make `…abc1-1234567890ab` look like `1-6175550100`.
fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
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
        return counted_digits(v) < NUMBER_DIGITS;
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
    if ((digit.count_ones() + wide.count_ones()) as usize) < NUMBER_DIGITS {
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
    /// The high bit of each byte, gathered into the low eight bits.
    fn gather(m: u64) -> u64 {
        (m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
    }
    let ascii = !w & HIGH_BITS;
    // Setting 0x20 maps the upper-case letters onto the lower-case ones, and nothing else
    // onto them.
    let y = (w & !HIGH_BITS) | splat(0x20);
    let alpha = (y + splat(0x80 - b'a')) & !(y + splat(0x80 - b'z' - 1)) & ascii;
    let wide = super::rows::bytes_equal(w, 0xEF);
    (gather(ascii_digit_bits(w)), gather(alpha), gather(wide))
}

/// The full character-level scan of [`number_kind`], without its quick exits.
fn scan_numbers(v: &[u8]) -> Option<IdentifierKind> {
    let text = String::from_utf8_lossy(v);
    let text = text.trim();
    let mut scan = NumberScan::default();
    for c in text.chars() {
        if let Some(k) = scan.push(c) {
            return Some(k);
        }
    }
    scan.run.and_then(|r| r.end(false))
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
    /// Whether the last word read is a label word.
    last_word_known: bool,
    /// A `+` glued to no word came, and only separators since.
    plus: bool,
    run: Option<Run>,
}

impl NumberScan {
    fn end_word(&mut self) {
        if self.in_word {
            self.in_word = false;
            self.last_word_known = self.word_plain && is_known_label(&self.word[..self.word_len]);
        }
    }

    /// Reads one character; returns the identifier that a group it completes, or a run it
    /// ends, turned out to be.
    fn push(&mut self, c: char) -> Option<IdentifierKind> {
        if let Some(d) = digit(c) {
            if self.run.is_none() {
                let glued = self.in_word;
                self.end_word();
                let glued_word = glued.then_some(self.last_word_known);
                let plus = std::mem::take(&mut self.plus);
                self.run = Some(Run::new(glued_word, plus));
            }
            return self.run.as_mut().expect("set above").push_digit(d);
        }
        if is_separator(c) {
            match self.run.as_mut() {
                Some(r) => r.pending_sep = true,
                None => {
                    if matches!(c, '+' | '\u{ff0b}') {
                        self.plus = !self.in_word;
                    }
                    self.end_word();
                }
            }
            return None;
        }
        // Anything else ends the run; a letter right after its last digit is glued to it.
        self.plus = false;
        if let Some(r) = self.run.take() {
            let glued = c.is_alphabetic() && !r.pending_sep;
            if let Some(k) = r.end(glued) {
                return Some(k);
            }
        }
        if c.is_alphabetic() {
            if !self.in_word {
                self.in_word = true;
                self.word_len = 0;
                self.word_plain = true;
            }
            if c.is_ascii_alphabetic() && self.word_len < self.word.len() {
                self.word[self.word_len] = c.to_ascii_lowercase() as u8;
                self.word_len += 1;
            } else {
                self.word_plain = false;
            }
        } else {
            self.end_word();
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// The quick exits of [`identifier_value`] (the digit count of a short value among
        /// them) hide nothing the full test finds: on short values of digits, separators,
        /// letters, labels and full-width digits, with and without an `@`.
        #[test]
        fn the_quick_exits_hide_nothing_the_full_test_finds(
            parts in proptest::collection::vec(proptest::prop_oneof![
                proptest::string::string_regex("[A-Za-z]{1,3}").unwrap(),
                proptest::string::string_regex("[0-9]{1,11}").unwrap(),
                proptest::string::string_regex("[ ./()+_,-]{1,2}").unwrap(),
                proptest::sample::select(vec![
                    "ssn".to_string(), "tel".into(), "\u{ff11}".into(), "\u{a0}".into(),
                    "@".into(), "a@b.org".into(),
                ]),
            ], 1..8),
            may_hold_at in proptest::bool::ANY,
        ) {
            let v = parts.concat();
            let b = v.as_bytes();
            let full = if b.len() > MAX_VALUE_BYTES { None } else { identifier_in_value(b, true) };
            let at = may_hold_at || b.contains(&b'@');
            // A caller says "no `@`" only when there is none.
            if at || !b.contains(&b'@') {
                proptest::prop_assert_eq!(identifier_value(b, at), full, "{}", v);
            }
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

    /// Digits of `n` digits, as text, from a seed.
    fn digits(seed: u64, n: usize) -> String {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'0' + (x % 10) as u8)
            })
            .collect()
    }

    /// An SSN or a phone number in one of the shapes people write them.
    fn written_number(shape: usize, sep: &str, seed: u64) -> String {
        let d = |k: u64, n: usize| digits(seed.wrapping_mul(31).wrapping_add(k), n);
        match shape {
            0 => format!("{}{sep}{}{sep}{}", d(1, 3), d(2, 2), d(3, 4)),
            1 => d(1, 9),
            2 => format!("{}{sep}{}{sep}{}", d(1, 3), d(2, 3), d(3, 4)),
            3 => format!("({}){sep}{}{sep}{}", d(1, 3), d(2, 3), d(3, 4)),
            4 => format!("{}{sep}{}", d(1, 3), d(2, 7)),
            5 => format!("1{sep}{}{sep}{}{sep}{}", d(1, 3), d(2, 3), d(3, 4)),
            6 => format!("+1{sep}{}{sep}{}{sep}{}", d(1, 3), d(2, 3), d(3, 4)),
            7 => d(1, 10),
            8 => format!("1{}", d(1, 10)),
            9 => format!("+1 ({}) {}-{}", d(1, 3), d(2, 3), d(3, 4)),
            10 => format!("+44 {} {} {}", d(1, 2), d(2, 4), d(3, 4)),
            _ => format!("+{} {}", d(1, 3), d(2, 8)),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]
        /// An SSN or a phone number written in any of its shapes, alone or inside text, is
        /// always refused. Text before and after it ends with a character that is no digit,
        /// and a written shape may have letters glued to it; nine to eleven digits in a row
        /// may not, since that is how ids write them.
        #[test]
        fn written_ssns_and_phone_numbers_are_refused_wherever_they_stand(
            shape in 0usize..12,
            sep in proptest::sample::select(vec!["-", " ", ".", "/", "\u{2013}", "\u{a0}", "_"]),
            seed in proptest::prelude::any::<u64>(),
            before in proptest::sample::select(vec![
                "", "call ", "INC-", "SSN: ", "my number is ", "E", "tel:", "(", "\"", "x", "note 12, ",
            ]),
            after in proptest::sample::select(vec!["", " x12", ".", " today", ",", ";", "x", " 2024"]),
        ) {
            let number = written_number(shape, sep, seed);
            let in_a_row = matches!(shape, 1 | 7 | 8);
            let glued = |s: &str, at_end: bool| {
                let c = if at_end { s.chars().last() } else { s.chars().next() };
                c.is_some_and(char::is_alphabetic)
            };
            // Nine to eleven digits in a row with an unlabelled word glued to them are an
            // id's digits (`OD000123401`); a label word glued before them is refused.
            let spared = (in_a_row
                && ((glued(before, true) && before != "x") || glued(after, false)))
                // `+` glued to a word is no international prefix (`E+44…`).
                || (matches!(shape, 10 | 11) && glued(before, true));
            proptest::prop_assume!(!spared);
            let v = format!("{before}{number}{after}");
            proptest::prop_assert!(identifier_value(v.as_bytes(), true).is_some(), "{}", v);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]
        /// Case numbers as record systems write them (a year and a sequence of one to eight
        /// digits, with an optional letter prefix and parts, or two numbers after a word)
        /// are never refused when their groups form no written shape.
        #[test]
        fn case_numbers_that_form_no_written_shape_are_ids(
            form in 0usize..4,
            year in 2000u32..2031,
            seq_len in 1usize..9,
            other_len in 1usize..9,
            seed in proptest::prelude::any::<u64>(),
            prefix in proptest::sample::select(vec!["", "E-", "INC-", "OD", "AR-", "case ", "E"]),
            sep in proptest::sample::select(vec!["-", "/", "."]),
        ) {
            let seq = digits(seed, seq_len);
            let other = digits(seed ^ 0x5555, other_len);
            let v = match form {
                0 => format!("{prefix}{year}{sep}{seq}"),
                1 => format!("{prefix}{year}{sep}{}{sep}{seq}", &other[..other_len.min(2)]),
                2 => format!("odin-{other}-{seq}"),
                _ => format!("OD{other}{sep}{seq}"),
            };
            // Two numbers of 3 and 7 digits are a written phone number (`617-5550100`).
            let groups: Vec<usize> = v
                .split(|c: char| !c.is_ascii_digit())
                .filter(|g| !g.is_empty())
                .map(str::len)
                .collect();
            proptest::prop_assume!(!groups.windows(2).any(|w| w == [3, 7]));
            proptest::prop_assert_eq!(identifier_value(v.as_bytes(), true), None, "{}", v);
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
            ("1-6175550100", IdentifierKind::Phone),
            ("+44 20 7946 0958", IdentifierKind::Phone),
            ("+33 1 42 68 53 00", IdentifierKind::Phone),
            ("INC-123-45-6789", IdentifierKind::SocialSecurityNumber),
            ("2025-617-555-0100", IdentifierKind::Phone),
            ("617-555-0100-12", IdentifierKind::Phone),
            (
                "ssn 123456789 on file",
                IdentifierKind::SocialSecurityNumber,
            ),
            (
                "seen at 123456789 today",
                IdentifierKind::SocialSecurityNumber,
            ),
            ("123456789;", IdentifierKind::SocialSecurityNumber),
            ("ssn123456789abc", IdentifierKind::SocialSecurityNumber),
            ("1 2 3 4 123-45-6789", IdentifierKind::SocialSecurityNumber),
            ("2024-123456789", IdentifierKind::SocialSecurityNumber),
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
            // Case numbers as record systems write them: their digit groups form no written
            // SSN or phone number, whatever their count of digits.
            "2024-12345",
            "2025-000123",
            "E-2025-000123",
            "INC-2025-04-12345",
            "odin-10000-7881",
            "OD10000-7881",
            "2024-12345678",
            // A sloppily written SSN is an id to the scan; the column's pattern decides.
            "12-345-6789",
            "1234-56789",
            // Pseudonymous keys: hex digests whose digit runs are glued to letters, UUIDs.
            "123456789abcdef0123456789abcdef0",
            "3fa85f6457174562b3fc2c963f66afa6",
            "123e4567-e89b-12d3-a456-426614174000",
            "abc41234-e89b-12d3-abc1-1234567890ab",
            "pk_6457174562abc",
        ] {
            assert_eq!(identifier_value(ok.as_bytes(), true), None, "{ok}");
        }
    }
}
