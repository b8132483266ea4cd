//! The functions a person-level query may call, and the safe forms of the unsafe ones.
//!
//! An error that one person's data can trigger is a channel: the release fails, or not,
//! depending on that person. So every function, operator, cast and literal that the analyser
//! lets through is on an allow-list here, and each entry is exercised by tests over
//! adversarial values (`tests/it/privacy/functions.rs`, `tests/it/privacy/allowlist_audit.rs`)
//! that fail if the entry can raise an error on data.
//!
//! Refused on purpose, with the safe form to use instead:
//! - `/` and `%` raise on a zero divisor: use `safe_div(a, b)`, NULL when `b` is 0 or NULL.
//! - `CAST` raises on text that does not parse: use `TRY_CAST`, NULL on failure. Casts that
//!   cannot fail (widening numbers, anything to text, dictionary to its values) stay allowed,
//!   since DataFusion's type coercion inserts them itself.
//! - Date ± interval (or ± a number) raises on overflow: use `add_days(date, n)`, NULL when the
//!   result leaves the calendar.
//! - Casts to types off [`cast_refusal`]'s list, for `CAST` and `TRY_CAST` alike (and
//!   `arrow_cast`/`arrow_try_cast`, which the simplifier turns into them): dictionaries
//!   (Arrow's dictionary builder raises on key overflow, at 128 distinct values for `Int8`
//!   keys, even in safe mode), timestamps (a date becomes nanoseconds unchecked and overflows
//!   after 2262-04-11), decimals, intervals, times and nested types.
//! - `date_trunc`: on a date, DataFusion inserts that cast to a timestamp. Use `quarter_of` or
//!   `date_part`.
//! - `date_part` only with a literal unit from [`DATE_PART_UNITS`] and a date: other units
//!   (`'century'`, misspellings) plan, then raise when a row reaches them.
//! - `round(x, n)` only on floats, or with `n` a literal 0 or more: DataFusion rounds integers
//!   to negative digits with checked arithmetic, which raises near the integer's limits.
//! - `to_date`, `make_date`, `substr` (negative lengths), `abs` (overflow on the minimum),
//!   regular expressions, and every function not listed.
//! - `concat`, `concat_ws` and `||`: text they build can double at every step, so a chain of
//!   them over one person's row can pass the 2 GiB that Arrow's `i32` offsets hold, and then
//!   `concat` raises ("byte array offset overflow") while `||` panics, or the process runs out
//!   of memory, all depending on that row. No sound bound on the growth is cheap to enforce,
//!   so they are refused ([`STRING_GROWTH_REFUSAL`]); compare or test the parts instead. The
//!   text functions left (`lower`, `upper`, the trims) change a value's length by at most a
//!   small constant factor.
//! - `repeat`, `lpad`, `rpad`, `replace`, `regexp_replace`, `overlay` and the array builders
//!   ([`SIZE_GROWTH_FUNCTIONS`]): their output grows with an integer argument or with the
//!   product of two texts, and DataFusion's optimiser evaluates a function of constants while
//!   it plans. These, like every function off the list, are refused by name on the plan as
//!   written, before the optimiser runs ([`super::analyser::check_unoptimised`]); so are
//!   written casts to types off the list (`CAST(NULL AS INT[2000000000])` is 8 GB).
//! - `CAST`/`TRY_CAST` from text (or a dictionary of text) to a date: Arrow parses signed
//!   extended years over the whole `i32` range (`+5881580-07-11` is `i32::MAX` days), far
//!   outside chrono's calendar, and such a date raises when it is shown as text. Date literals
//!   (`DATE '2025-01-01'`, `'2025-01-01'::date`, `d = '2025-01-01'`) are folded into checked
//!   date literals before the analyser sees them, so they still work.
//! - `RANGE` window frames with an offset (`RANGE BETWEEN INTERVAL '7 days' PRECEDING ...`,
//!   `RANGE 5 PRECEDING`): the frame's edges are computed as value ± offset for every row, with
//!   arithmetic that raises on overflow. `ROWS` frames and `RANGE` frames bounded by
//!   `UNBOUNDED` or `CURRENT ROW` stay allowed.
//!
//! Every date a query can make stays inside chrono's calendar (about ±262,000 years, less than
//! `Date32`'s range): ingest bounds stored dates, date literals are checked
//! ([`literal_refusal`]), neither text nor integers cast to dates ([`cast_refusal`]), and
//! `add_days` gives NULL outside it; `coalesce`, `greatest`, `least`, `CASE`, `min`, `max` and
//! the window functions only pick among such dates. Arrow turns a date into text only inside
//! that calendar (it raises outside it, even in `TRY_CAST`), so `CAST(date AS VARCHAR)` is
//! safe.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
    WindowFrame, WindowFrameBound, WindowFrameUnits,
};
use datafusion::prelude::SessionContext;

use crate::dictionary::EPOCH_DAYS_FROM_CE;

/// Scalar functions a person-level query may call, by DataFusion's canonical name, each with
/// the rule its arguments must keep.
pub const SCALAR_FUNCTIONS: &[ScalarAllowance] = &[
    ScalarAllowance::any("quarter_of"),
    ScalarAllowance::any("safe_div"),
    ScalarAllowance::any("add_days"),
    ScalarAllowance::any("coalesce"),
    ScalarAllowance::any("nullif"),
    ScalarAllowance::any("greatest"),
    ScalarAllowance::any("least"),
    ScalarAllowance::with("date_part", ArgRule::DatePartUnit),
    ScalarAllowance::any("lower"),
    ScalarAllowance::any("upper"),
    ScalarAllowance::any("btrim"),
    ScalarAllowance::any("ltrim"),
    ScalarAllowance::any("rtrim"),
    ScalarAllowance::any("character_length"),
    ScalarAllowance::any("starts_with"),
    ScalarAllowance::with("round", ArgRule::RoundDigits),
    ScalarAllowance::any("floor"),
    ScalarAllowance::any("ceil"),
];

/// Functions that build text by concatenation, refused with [`STRING_GROWTH_REFUSAL`]
/// (`||` is DataFusion's `StringConcat` operator, refused with the same reason).
pub const STRING_GROWTH_FUNCTIONS: &[&str] = &["concat", "concat_ws"];

/// Functions whose output can be far larger than their arguments: its size is set by an
/// integer argument (`repeat('a1', 300000000)` is 600 MB, `lpad`, `rpad`, `array_repeat`,
/// `array_resize`, `range`, `generate_series`) or by the product of two texts (`replace`,
/// `regexp_replace`). None is on [`SCALAR_FUNCTIONS`], and none may be: DataFusion's optimiser
/// evaluates a function of constants while it plans, before any check of the optimized plan,
/// so such a call in a researcher's SQL would take gigabytes on the server without reading a
/// row. Refused by name with [`SIZE_GROWTH_REFUSAL`], on the plan as written
/// ([`super::analyser::check_unoptimised`]). Every function left on the list gives output at
/// most a small constant factor of its arguments, so what the optimiser can fold is bounded by
/// the length of the SQL ([`super::spec::MAX_SQL_BYTES`]).
pub const SIZE_GROWTH_FUNCTIONS: &[&str] = &[
    "repeat",
    "lpad",
    "rpad",
    "replace",
    "regexp_replace",
    "overlay",
    "array_repeat",
    "array_resize",
    "range",
    "generate_series",
];

/// Why the functions of [`SIZE_GROWTH_FUNCTIONS`] are refused.
pub const SIZE_GROWTH_REFUSAL: &str = "its output grows with an integer argument (or the product of two texts), and DataFusion evaluates a function of constants while it plans the query, so one call could take gigabytes of the server's memory before any row is read";

/// Why `date_trunc` is refused.
pub const DATE_TRUNC_REFUSAL: &str = "`date_trunc` casts a date to a timestamp, which overflows after 2262-04-11 and raises, and raises on a unit it does not know when a row reaches it: use quarter_of(date), or date_part('year' | 'quarter' | 'month' | ..., date)";

/// Why a scalar function is refused by its name alone, or `None` when the name is on
/// [`SCALAR_FUNCTIONS`] (whose argument rules are checked on the optimized plan).
pub fn scalar_name_refusal(name: &str) -> Option<String> {
    if name == "date_trunc" {
        return Some(DATE_TRUNC_REFUSAL.to_string());
    }
    if STRING_GROWTH_FUNCTIONS.contains(&name) {
        return Some(format!("`{name}`: {STRING_GROWTH_REFUSAL}"));
    }
    if SIZE_GROWTH_FUNCTIONS.contains(&name) {
        return Some(format!(
            "function `{name}` is not on the allow-list: {SIZE_GROWTH_REFUSAL}"
        ));
    }
    match scalar_allowance(name) {
        Some(_) => None,
        None => Some(format!("function `{name}` is not on the allow-list")),
    }
}

/// Why `concat`, `concat_ws` and `||` are refused.
pub const STRING_GROWTH_REFUSAL: &str = "text built by concatenation can double at every step, and past Arrow's 2 GiB offsets it raises or panics (or runs out of memory) depending on one person's row, so concat, concat_ws and || are not on the allow-list: compare or test the parts separately";

/// Units that DataFusion's `date_part` computes on a `Date32` for every value, NULL outside
/// the calendar (checked by value, ignoring ASCII case). Other units either raise on every
/// row (`'century'`, `'decade'`, misspellings) or are meaningless on a date.
pub const DATE_PART_UNITS: &[&str] = &[
    "year", "isoyear", "quarter", "month", "week", "day", "dow", "isodow", "doy", "epoch",
];

/// Aggregate functions allowed over private data grouped by `person_key` (and anywhere over
/// public data).
pub const AGGREGATE_FUNCTIONS: &[&str] =
    &["count", "sum", "min", "max", "bool_or", "bool_and", "avg"];

/// Window functions allowed over private data partitioned by `person_key`; the aggregate
/// functions above are allowed as window functions too.
pub const WINDOW_FUNCTIONS: &[&str] = &[
    "row_number",
    "rank",
    "dense_rank",
    "lag",
    "lead",
    "first_value",
    "last_value",
];

/// The rule an allowed scalar function's arguments must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgRule {
    /// Any arguments of the types DataFusion's signature accepts.
    Any,
    /// `date_part(unit, date)`: the unit a text literal from [`DATE_PART_UNITS`], the value a
    /// date ([`date_part_refusal`]).
    DatePartUnit,
    /// `round(x)`, or `round(x, n)` with `x` a float or `n` a literal 0 or more
    /// ([`round_digits_allowed`]).
    RoundDigits,
}

/// One allowed scalar function.
#[derive(Debug, Clone, Copy)]
pub struct ScalarAllowance {
    pub name: &'static str,
    pub rule: ArgRule,
}

impl ScalarAllowance {
    const fn any(name: &'static str) -> Self {
        ScalarAllowance {
            name,
            rule: ArgRule::Any,
        }
    }
    const fn with(name: &'static str, rule: ArgRule) -> Self {
        ScalarAllowance { name, rule }
    }
}

/// The allowance for a scalar function, if it is allowed.
pub fn scalar_allowance(name: &str) -> Option<&'static ScalarAllowance> {
    SCALAR_FUNCTIONS.iter().find(|a| a.name == name)
}

/// Registers the safe functions (`quarter_of`, `safe_div`, `add_days`) in a session.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(QuarterOf::new()));
    ctx.register_udf(ScalarUDF::from(SafeDiv::new()));
    ctx.register_udf(ScalarUDF::from(AddDays::new()));
}

/// `days` from 1970-01-01 as a `Date32` value, if chrono's calendar holds that day. Arrow's
/// date kernels and its date-to-text conversion work exactly on those days.
pub fn representable_date(days: i64) -> Option<i32> {
    let days = i32::try_from(days).ok()?;
    let ce = days.checked_add(EPOCH_DAYS_FROM_CE)?;
    NaiveDate::from_num_days_from_ce_opt(ce).map(|_| days)
}

/// Why `date_part(unit, value)` is refused, or `None` when it computes on every value: the
/// unit must be a text literal from [`DATE_PART_UNITS`], and the value a date.
pub fn date_part_refusal(unit: &ScalarValue, value: Option<&DataType>) -> Option<String> {
    // DataFusion reads the unit from a Utf8 or Utf8View literal only; anything else raises.
    let text = match unit {
        ScalarValue::Utf8(Some(u)) | ScalarValue::Utf8View(Some(u)) => u.as_str(),
        other => {
            return Some(format!(
                "`date_part` needs a text literal unit, not {}",
                other.data_type()
            ));
        }
    };
    if !DATE_PART_UNITS.iter().any(|u| u.eq_ignore_ascii_case(text)) {
        let shown: String = text.chars().take(40).collect();
        return Some(format!(
            "`date_part` unit '{shown}' is not one of {}: DataFusion raises on other units when a row reaches them",
            DATE_PART_UNITS.join(", ")
        ));
    }
    match value {
        Some(DataType::Date32) => None,
        Some(t) => Some(format!(
            "`date_part` on {t}: only on dates (a timestamp could overflow)"
        )),
        None => Some("`date_part` on an expression of unknown type".into()),
    }
}

/// Whether `round(value, digits)` cannot raise, where `digits` is the literal number of digits
/// (`None` when it is not a literal). DataFusion rounds floats without error, and integers to
/// 0 or more digits as they are; to negative digits it multiplies back with checked
/// arithmetic, which raises near the integer's limits, so that needs a float or a literal 0
/// or more.
pub fn round_digits_allowed(value: &DataType, digits: Option<&ScalarValue>) -> bool {
    if value.is_floating() {
        return true;
    }
    if !value.is_integer() {
        return false;
    }
    let fits = |n: i128| (0..=i128::from(i32::MAX)).contains(&n);
    match digits {
        Some(ScalarValue::Int8(Some(n))) => fits((*n).into()),
        Some(ScalarValue::Int16(Some(n))) => fits((*n).into()),
        Some(ScalarValue::Int32(Some(n))) => fits((*n).into()),
        Some(ScalarValue::Int64(Some(n))) => fits((*n).into()),
        Some(ScalarValue::UInt8(Some(n))) => fits((*n).into()),
        Some(ScalarValue::UInt16(Some(n))) => fits((*n).into()),
        Some(ScalarValue::UInt32(Some(n))) => fits((*n).into()),
        Some(ScalarValue::UInt64(Some(n))) => fits((*n).into()),
        _ => false,
    }
}

/// Why a window frame is refused, or `None`. A `RANGE` frame with an offset
/// (`RANGE BETWEEN INTERVAL '7 days' PRECEDING AND CURRENT ROW`, `RANGE 5 PRECEDING`) finds
/// its edges by computing value ± offset for every row, date ± interval or integer ± integer,
/// with arithmetic that raises on overflow. `ROWS` and `GROUPS` frames count rows or peer
/// groups, and `UNBOUNDED` and `CURRENT ROW` compute nothing.
pub fn window_frame_refusal(frame: &WindowFrame) -> Option<String> {
    if frame.units != WindowFrameUnits::Range {
        return None;
    }
    let offset = |b: &WindowFrameBound| match b {
        WindowFrameBound::Preceding(v) | WindowFrameBound::Following(v) => !v.is_null(),
        WindowFrameBound::CurrentRow => false,
    };
    if offset(&frame.start_bound) || offset(&frame.end_bound) {
        Some(format!(
            "the window frame `{frame}`: a RANGE frame with an offset computes value ± offset for every row (date ± interval, integer ± integer), which raises on overflow; use ROWS, or a join on person_key with add_days(date, n) for a window of days"
        ))
    } else {
        None
    }
}

/// Why a literal is refused, or `None`. Literals are values too: the simplifier folds
/// `arrow_cast(2147483647, 'Date32')` or `arrow_cast('a', 'Dictionary(Int8, Utf8)')` into
/// literals, and a `CASE` that picks between them puts them in a column.
pub fn literal_refusal(value: &ScalarValue) -> Option<String> {
    use ScalarValue as S;
    match value {
        S::Null
        | S::Boolean(_)
        | S::Int8(_)
        | S::Int16(_)
        | S::Int32(_)
        | S::Int64(_)
        | S::UInt8(_)
        | S::UInt16(_)
        | S::UInt32(_)
        | S::UInt64(_)
        | S::Float32(_)
        | S::Float64(_)
        | S::Utf8(_)
        | S::LargeUtf8(_)
        | S::Utf8View(_)
        | S::Date32(None) => None,
        S::Date32(Some(days)) => {
            if representable_date(i64::from(*days)).is_some() {
                None
            } else {
                Some(format!(
                    "the date literal {days} (days from 1970-01-01) is outside the calendar, and raises when a row shows it as text"
                ))
            }
        }
        // Comparing a dictionary column with text folds the text into a dictionary literal
        // of the column's type, which has `Int32` keys.
        S::Dictionary(key, inner) if **key == DataType::Int32 => literal_refusal(inner),
        S::Dictionary(key, _) => Some(format!(
            "a dictionary literal with {key} keys: a dictionary with keys narrower than Int32 raises on key overflow"
        )),
        other => Some(format!(
            "a literal of type {} is not on the allow-list",
            other.data_type()
        )),
    }
}

fn stringy(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn dict_of_strings(t: &DataType) -> bool {
    matches!(t, DataType::Dictionary(_, v) if stringy(v.as_ref()))
}

/// Types a cast may produce, for `CAST`, `TRY_CAST` and the casts type coercion inserts.
pub fn cast_target_allowed(to: &DataType) -> bool {
    use DataType::*;
    matches!(
        to,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Utf8
            | LargeUtf8
            | Utf8View
            | Date32
    )
}

/// Types a cast written in the SQL (`CAST`, `TRY_CAST`, `::`, `arrow_cast`, `arrow_try_cast`)
/// may produce, checked on the plan as written, before the optimiser evaluates casts of
/// constants: those of [`cast_target_allowed`], and the dictionary of text with `Int32` keys
/// that enum columns have. Any other type is refused there, since its constant can be huge
/// (`CAST(NULL AS INT[2000000000])` is an 8 GB fixed-size list) and the optimized plan's
/// check would refuse it anyway.
pub fn written_cast_target_allowed(to: &DataType) -> bool {
    cast_target_allowed(to)
        || matches!(to, DataType::Dictionary(k, v) if **k == DataType::Int32 && stringy(v.as_ref()))
}

/// Types a cast may read: those it may produce, NULL, and dictionaries of text.
fn cast_source_allowed(from: &DataType) -> bool {
    *from == DataType::Null || cast_target_allowed(from) || dict_of_strings(from)
}

/// Why a cast from `from` to `to` is refused, or `None` when it cannot raise on any value.
/// `try_cast` is `TRY_CAST` (Arrow's safe mode: NULL where a value does not convert), else
/// `CAST`, which raises on such a value.
///
/// The target must be on an allow-list: no dictionaries (key overflow raises even in safe
/// mode), no timestamps (a date converts to nanoseconds unchecked), no decimals, intervals,
/// times or nested types. Nothing casts to a date (text and integers alike make dates outside
/// the calendar); a date casts only to text. A `CAST` must also be one that cannot
/// fail ([`cast_cannot_fail`]).
pub fn cast_refusal(from: &DataType, to: &DataType, try_cast: bool) -> Option<String> {
    use DataType::*;
    let what = if try_cast { "TRY_CAST" } else { "CAST" };
    // Arrow returns the input unchanged for a cast to its own type, and only NULLs for a
    // cast of NULL (such as the NULL of `CASE ... ELSE NULL END` cast to the CASE's type).
    if from == to || *from == Null {
        return None;
    }
    if !cast_target_allowed(to) {
        return Some(match to {
            Dictionary(..) => format!(
                "{what} to {to}: casts to dictionary types are refused, since Arrow's dictionary builder raises on key overflow (at 128 distinct values with Int8 keys), even in TRY_CAST"
            ),
            Timestamp(..) | Date64 => format!(
                "{what} from {from} to {to}: a date becomes a timestamp unchecked and overflows after 2262-04-11, which raises (date_trunc on a date makes this cast): use quarter_of(date), date_part('year' | 'month' | ..., date) or add_days(date, n)"
            ),
            _ => format!("{what} to {to} is not on the allow-list"),
        });
    }
    if !cast_source_allowed(from) {
        return Some(format!("{what} from {from} is not on the allow-list"));
    }
    if *to == Date32 {
        // Arrow parses text into dates over the whole i32 range of days (`+5881580-07-11`),
        // far outside chrono's calendar, and such a date raises when it is shown as text.
        // Date literals are folded into checked literals before the analyser sees them.
        return Some(format!(
            "{what} from {from} to Date32: no value of a row is made into a date (text parses to dates far outside the calendar, which raise when shown as text); write dates as literals (DATE '2025-01-01') and move them with add_days(date, n)"
        ));
    }
    if *from == Date32 && !stringy(to) {
        return Some(format!(
            "{what} from Date32 to {to}: a date casts only to text"
        ));
    }
    if !try_cast && !cast_cannot_fail(from, to) {
        return Some(format!(
            "CAST from {from} to {to} can fail on data: use TRY_CAST"
        ));
    }
    None
}

/// Whether casting `from` to `to` with `CAST` (Arrow's unsafe mode) can never fail on any
/// value a query can make. Dates convert to text only inside the calendar, which every date a
/// query can make stays in (see the module's notes).
pub fn cast_cannot_fail(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to || *from == Null {
        return true;
    }
    if stringy(to) {
        return stringy(from)
            || dict_of_strings(from)
            || from.is_integer()
            || from.is_floating()
            || matches!(from, Boolean | Date32);
    }
    if let Dictionary(_, v) = from {
        return cast_cannot_fail(v, to);
    }
    // Into a dictionary: Arrow's dictionary builder raises on key overflow, even in safe mode.
    if matches!(to, Dictionary(..)) {
        return false;
    }
    let width = |t: &DataType| match t {
        Int8 => Some((true, 8)),
        Int16 => Some((true, 16)),
        Int32 => Some((true, 32)),
        Int64 => Some((true, 64)),
        UInt8 => Some((false, 8)),
        UInt16 => Some((false, 16)),
        UInt32 => Some((false, 32)),
        UInt64 => Some((false, 64)),
        _ => None,
    };
    match (width(from), width(to)) {
        // Widening: a signed target strictly wider than an unsigned source, or same sign.
        (Some((fs, fw)), Some((ts, tw))) => (fs == ts && tw >= fw) || (!fs && ts && tw > fw),
        (Some(_), None) => matches!(to, Float32 | Float64),
        (None, Some(_)) => *from == Boolean,
        (None, None) => matches!((from, to), (Float32, Float64) | (Boolean, Float64)),
    }
}

/// `quarter_of(date)`: the calendar quarter of a date as text, such as `2025Q1`, the form of
/// the quarter cell key. NULL for NULL. Never fails: every Date32 value has a quarter.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct QuarterOf {
    signature: Signature,
}

impl QuarterOf {
    pub fn new() -> Self {
        QuarterOf {
            signature: Signature::exact(vec![DataType::Date32], Volatility::Immutable),
        }
    }
}

impl Default for QuarterOf {
    fn default() -> Self {
        Self::new()
    }
}

/// The quarter of one day, as `quarter_of` writes it, with the days it spans where the
/// calendar holds them: `[first, next)` in days since 1970-01-01.
struct QuarterSpan {
    text: String,
    span: Option<(i64, i64)>,
}

impl QuarterSpan {
    fn of(days: i32) -> QuarterSpan {
        use chrono::Datelike;
        let (year, month) = civil_year_month(days);
        let q = (month - 1) / 3 + 1;
        let start = |y: i64, m: u32| {
            let y = i32::try_from(y).ok()?;
            let d = NaiveDate::from_ymd_opt(y, m, 1)?;
            Some(i64::from(d.num_days_from_ce()) - i64::from(EPOCH_DAYS_FROM_CE))
        };
        let (next_year, next_month) = if q == 4 {
            (year + 1, 1)
        } else {
            (year, q * 3 + 1)
        };
        let span = start(year, q * 3 - 2).zip(start(next_year, next_month));
        QuarterSpan {
            text: format!("{year}Q{q}"),
            span,
        }
    }

    fn holds(&self, days: i32) -> bool {
        self.span
            .is_some_and(|(first, next)| (first..next).contains(&i64::from(days)))
    }
}

/// Year and month of a count of days since 1970-01-01 (H. Hinnant's civil-from-days), in
/// i64 so that no Date32 value overflows.
pub fn civil_year_month(days: i32) -> (i64, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

impl ScalarUDFImpl for QuarterOf {
    fn name(&self) -> &str {
        "quarter_of"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let array = args.args[0].to_array(args.number_rows)?;
        let dates = array
            .as_any()
            .downcast_ref::<Date32Array>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal("quarter_of expects Date32".into())
            })?;
        let mut out = StringBuilder::with_capacity(dates.len(), dates.len() * 6);
        // Consecutive rows are often in the same quarter: the last quarter's first and next
        // day are kept, and a day between them reuses its text without the calendar.
        let mut last: Option<QuarterSpan> = None;
        for d in dates.iter() {
            match d {
                None => out.append_null(),
                Some(days) => match &last {
                    Some(span) if span.holds(days) => out.append_value(&span.text),
                    _ => {
                        let span = QuarterSpan::of(days);
                        out.append_value(&span.text);
                        last = Some(span);
                    }
                },
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `safe_div(a, b)`: `a / b` as a float, NULL when `b` is 0 or either side is NULL. Never
/// fails, unlike `/`, which raises on an integer zero divisor.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SafeDiv {
    signature: Signature,
}

impl SafeDiv {
    pub fn new() -> Self {
        SafeDiv {
            signature: Signature::uniform(2, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl Default for SafeDiv {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for SafeDiv {
    fn name(&self) -> &str {
        "safe_div"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let as_f64 = |v: &ColumnarValue| -> DfResult<ArrayRef> {
            let array = v.to_array(n)?;
            Ok(cast(&array, &DataType::Float64)?)
        };
        let a = as_f64(&args.args[0])?;
        let b = as_f64(&args.args[1])?;
        let a = a.as_any().downcast_ref::<Float64Array>().expect("cast");
        let b = b.as_any().downcast_ref::<Float64Array>().expect("cast");
        let out: Float64Array = a
            .iter()
            .zip(b.iter())
            .map(|(x, y)| match (x, y) {
                (Some(x), Some(y)) if y != 0.0 => Some(x / y),
                _ => None,
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `add_days(date, n)`: the date `n` days after `date` (before it, for a negative `n`), the
/// safe form of `date + INTERVAL 'n days'`. NULL when either is NULL or when the result
/// leaves the calendar (chrono's, so every date it gives converts to text and through Arrow's
/// date kernels). Never fails, unlike date ± interval, which raises on overflow.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AddDays {
    signature: Signature,
}

impl AddDays {
    pub fn new() -> Self {
        AddDays {
            // Exact types; DataFusion still coerces narrower integers (and NULL) to Int64.
            signature: Signature::exact(
                vec![DataType::Date32, DataType::Int64],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for AddDays {
    fn default() -> Self {
        Self::new()
    }
}

/// `date` plus `n` days, or `None` when the sum overflows or leaves the calendar.
pub fn add_days(date: i32, n: i64) -> Option<i32> {
    i64::from(date).checked_add(n).and_then(representable_date)
}

impl ScalarUDFImpl for AddDays {
    fn name(&self) -> &str {
        "add_days"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Date32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let dates = args.args[0].to_array(n)?;
        let days = args.args[1].to_array(n)?;
        let dates = dates
            .as_any()
            .downcast_ref::<Date32Array>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal("add_days expects Date32".into())
            })?;
        let days = days.as_any().downcast_ref::<Int64Array>().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(
                "add_days expects an Int64 count of days".into(),
            )
        })?;
        let out: Date32Array = dates
            .iter()
            .zip(days.iter())
            .map(|(d, k)| match (d, k) {
                (Some(d), Some(k)) => add_days(d, k),
                _ => None,
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_year_month_matches_chrono() {
        for days in [-719_468, -1, 0, 59, 60, 10_957, 20_000, 2_932_896] {
            let d = chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163).unwrap();
            use chrono::Datelike;
            assert_eq!(
                civil_year_month(days),
                (d.year() as i64, d.month()),
                "{days}"
            );
        }
        // The extremes of Date32 do not overflow.
        civil_year_month(i32::MIN);
        civil_year_month(i32::MAX);
    }

    /// `quarter_of` over days in runs, in jumps and across every quarter's edges writes
    /// exactly the quarter the calendar gives each day, reusing the last quarter's text only
    /// inside its own days, and a NULL as NULL.
    #[test]
    fn quarter_of_reuses_a_quarters_text_only_inside_its_days() {
        use chrono::Datelike;
        let expected = |days: i32| {
            let (y, m) = civil_year_month(days);
            format!("{y}Q{}", (m - 1) / 3 + 1)
        };
        let mut days: Vec<Option<i32>> = Vec::new();
        // Every day of ten years around the epoch and 2000, in order and backwards.
        days.extend((-1_830..1_830).map(Some));
        days.extend((10_000..13_660).rev().map(Some));
        // The first and last day of each quarter, one after the other, with NULLs between.
        for y in [1969, 1970, 1999, 2000, 2024, 2025] {
            for m in [1, 3, 4, 6, 7, 9, 10, 12] {
                let first = chrono::NaiveDate::from_ymd_opt(y, m, 1).unwrap();
                let d = first.num_days_from_ce() - EPOCH_DAYS_FROM_CE;
                days.extend([Some(d - 1), Some(d), None, Some(d + 27)]);
            }
        }
        // The ends of Date32, where the calendar holds no quarter bounds.
        days.extend([
            Some(i32::MIN),
            Some(i32::MIN + 1),
            Some(i32::MAX),
            Some(i32::MAX - 1),
        ]);
        let input = Date32Array::from(days.clone());
        let out = QuarterOf::new()
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(Arc::new(input))],
                arg_fields: vec![Arc::new(datafusion::arrow::datatypes::Field::new(
                    "d",
                    DataType::Date32,
                    true,
                ))],
                number_rows: days.len(),
                return_field: Arc::new(datafusion::arrow::datatypes::Field::new(
                    "q",
                    DataType::Utf8,
                    true,
                )),
                config_options: Arc::new(datafusion::config::ConfigOptions::default()),
            })
            .unwrap();
        let ColumnarValue::Array(out) = out else {
            panic!("an array")
        };
        let out = out
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        for (i, d) in days.iter().enumerate() {
            match d {
                None => assert!(out.is_null(i), "row {i}"),
                Some(d) => assert_eq!(out.value(i), expected(*d), "day {d}"),
            }
        }
    }

    #[test]
    fn no_function_whose_output_outgrows_its_arguments_is_allowed() {
        for name in SIZE_GROWTH_FUNCTIONS.iter().chain(STRING_GROWTH_FUNCTIONS) {
            assert!(
                scalar_allowance(name).is_none(),
                "{name} is on the allow-list"
            );
            let why = scalar_name_refusal(name).unwrap();
            assert!(why.contains(&format!("`{name}`")), "{why}");
        }
        for a in SCALAR_FUNCTIONS {
            assert_eq!(scalar_name_refusal(a.name), None, "{}", a.name);
        }
        assert!(
            scalar_name_refusal("date_trunc")
                .unwrap()
                .contains("quarter_of")
        );
        assert!(
            scalar_name_refusal("repeat")
                .unwrap()
                .contains("evaluates a function of constants")
        );
    }

    #[test]
    fn written_casts_may_also_make_the_enum_columns_dictionary() {
        use DataType::*;
        assert!(written_cast_target_allowed(&Date32));
        assert!(written_cast_target_allowed(&Utf8View));
        assert!(written_cast_target_allowed(&dict(Int32)));
        assert!(!written_cast_target_allowed(&dict(Int8)));
        assert!(!written_cast_target_allowed(&dict(Int16)));
        let list = datafusion::arrow::datatypes::Field::new("item", Int32, true);
        assert!(!written_cast_target_allowed(&FixedSizeList(
            std::sync::Arc::new(list.clone()),
            2_000_000_000
        )));
        assert!(!written_cast_target_allowed(&List(std::sync::Arc::new(
            list
        ))));
        assert!(!written_cast_target_allowed(&Decimal128(38, 0)));
    }

    #[test]
    fn casts_that_can_fail_are_not_safe() {
        use DataType::*;
        assert!(!cast_cannot_fail(&Utf8, &Int64));
        assert!(!cast_cannot_fail(&Utf8, &Date32));
        assert!(!cast_cannot_fail(&Int64, &Int32));
        assert!(!cast_cannot_fail(&Int64, &UInt64));
        assert!(!cast_cannot_fail(&Float64, &Int64));
        assert!(cast_cannot_fail(&Int32, &Int64));
        assert!(cast_cannot_fail(&UInt32, &Int64));
        assert!(cast_cannot_fail(&Date32, &Utf8));
        assert!(cast_cannot_fail(
            &Dictionary(Box::new(Int32), Box::new(Utf8)),
            &Utf8
        ));
    }

    fn dict(key: DataType) -> DataType {
        DataType::Dictionary(Box::new(key), Box::new(DataType::Utf8))
    }

    #[test]
    fn casts_to_dictionaries_and_timestamps_are_refused_in_cast_and_try_cast() {
        use DataType::*;
        use datafusion::arrow::datatypes::TimeUnit;
        for try_cast in [false, true] {
            for to in [
                dict(Int8),
                dict(Int16),
                dict(Int32),
                Timestamp(TimeUnit::Nanosecond, None),
                Timestamp(TimeUnit::Second, None),
                Date64,
                Decimal128(38, 0),
                Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
            ] {
                for from in [Utf8, Date32, Int64, dict(Int32)] {
                    if from == to {
                        continue;
                    }
                    assert!(
                        cast_refusal(&from, &to, try_cast).is_some(),
                        "{from} -> {to} (try_cast {try_cast})"
                    );
                }
            }
        }
        let why = cast_refusal(&Utf8, &dict(Int8), true).unwrap();
        assert!(why.contains("dictionary"), "{why}");
        let why = cast_refusal(&Date32, &Timestamp(TimeUnit::Nanosecond, None), false).unwrap();
        assert!(why.contains("2262") && why.contains("quarter_of"), "{why}");
    }

    #[test]
    fn nothing_casts_to_a_date_and_dates_only_become_text() {
        use DataType::*;
        // Arrow parses text into dates over the whole i32 range of days (`+5881580-07-11`),
        // outside chrono's calendar: refused in CAST and TRY_CAST alike.
        for try_cast in [false, true] {
            for from in [Utf8, LargeUtf8, Utf8View, dict(Int32)] {
                let why = cast_refusal(&from, &Date32, try_cast)
                    .unwrap_or_else(|| panic!("{from} -> Date32 (try_cast {try_cast})"));
                assert!(why.contains("DATE '2025-01-01'"), "{why}");
            }
        }
        assert_eq!(cast_refusal(&Null, &Date32, false), None);
        assert_eq!(cast_refusal(&Date32, &Date32, false), None);
        assert!(cast_refusal(&Int32, &Date32, true).is_some());
        assert!(cast_refusal(&Int64, &Date32, true).is_some());
        assert!(cast_refusal(&Float64, &Date32, true).is_some());
        assert!(cast_refusal(&Date32, &Int32, true).is_some());
        assert_eq!(cast_refusal(&Date32, &Utf8, false), None);
        assert_eq!(cast_refusal(&Date32, &Utf8View, true), None);
        // The ordinary ones stay allowed.
        assert_eq!(cast_refusal(&Utf8, &Int64, true), None);
        assert_eq!(cast_refusal(&Float64, &Int64, true), None);
        assert_eq!(cast_refusal(&Int32, &Int64, false), None);
        assert_eq!(cast_refusal(&Int64, &Float64, false), None);
        assert_eq!(cast_refusal(&dict(Int32), &Utf8, false), None);
        assert_eq!(cast_refusal(&dict(Int32), &dict(Int32), false), None);
        assert!(cast_refusal(&Int64, &Int32, false).is_some());
    }

    #[test]
    fn literals_outside_the_calendar_or_with_narrow_dictionary_keys_are_refused() {
        let (lo, hi) = (
            crate::dictionary::epoch_days(NaiveDate::MIN),
            crate::dictionary::epoch_days(NaiveDate::MAX),
        );
        assert_eq!(literal_refusal(&ScalarValue::Date32(Some(lo))), None);
        assert_eq!(literal_refusal(&ScalarValue::Date32(Some(hi))), None);
        assert_eq!(literal_refusal(&ScalarValue::Date32(None)), None);
        for days in [lo - 1, hi + 1, i32::MIN, i32::MAX] {
            assert!(
                literal_refusal(&ScalarValue::Date32(Some(days))).is_some(),
                "{days}"
            );
        }
        let text = Box::new(ScalarValue::Utf8(Some("ems".into())));
        assert_eq!(
            literal_refusal(&ScalarValue::Dictionary(
                Box::new(DataType::Int32),
                text.clone()
            )),
            None
        );
        for key in [DataType::Int8, DataType::Int16, DataType::UInt8] {
            assert!(
                literal_refusal(&ScalarValue::Dictionary(Box::new(key), text.clone())).is_some()
            );
        }
        assert!(literal_refusal(&ScalarValue::TimestampNanosecond(Some(0), None)).is_some());
        assert_eq!(literal_refusal(&ScalarValue::Int64(Some(i64::MIN))), None);
        assert_eq!(
            literal_refusal(&ScalarValue::Utf8(Some(String::new()))),
            None
        );
    }

    #[test]
    fn date_part_units_are_checked_by_value() {
        let unit = |u: &str| ScalarValue::Utf8(Some(u.into()));
        for u in DATE_PART_UNITS {
            assert_eq!(date_part_refusal(&unit(u), Some(&DataType::Date32)), None);
            let upper = u.to_ascii_uppercase();
            assert_eq!(
                date_part_refusal(&unit(upper.as_str()), Some(&DataType::Date32)),
                None
            );
        }
        for bad in [
            "century",
            "decade",
            "bogus",
            "",
            "'year'",
            "years ",
            "millennium",
        ] {
            assert!(
                date_part_refusal(&unit(bad), Some(&DataType::Date32)).is_some(),
                "{bad}"
            );
        }
        assert!(date_part_refusal(&ScalarValue::Utf8(None), Some(&DataType::Date32)).is_some());
        assert!(
            date_part_refusal(
                &ScalarValue::LargeUtf8(Some("year".into())),
                Some(&DataType::Date32)
            )
            .is_some()
        );
        assert!(date_part_refusal(&unit("year"), Some(&DataType::Utf8)).is_some());
    }

    #[test]
    fn round_to_negative_digits_only_on_floats() {
        use DataType::*;
        let int = |n: i64| ScalarValue::Int64(Some(n));
        assert!(round_digits_allowed(&Int64, Some(&int(0))));
        assert!(round_digits_allowed(&Int64, Some(&int(2))));
        assert!(round_digits_allowed(
            &Int32,
            Some(&ScalarValue::Int32(Some(3)))
        ));
        assert!(!round_digits_allowed(&Int64, Some(&int(-1))));
        assert!(!round_digits_allowed(
            &Int32,
            Some(&ScalarValue::Int32(Some(-2)))
        ));
        assert!(!round_digits_allowed(
            &Int64,
            Some(&ScalarValue::Int32(None))
        ));
        assert!(!round_digits_allowed(&Int64, None), "digits read from data");
        assert!(round_digits_allowed(&Float64, None));
        assert!(round_digits_allowed(&Float64, Some(&int(-5))));
        assert!(!round_digits_allowed(&Decimal128(38, 0), Some(&int(0))));
    }

    #[test]
    fn add_days_is_null_outside_the_calendar() {
        let (lo, hi) = (
            crate::dictionary::epoch_days(NaiveDate::MIN),
            crate::dictionary::epoch_days(NaiveDate::MAX),
        );
        assert_eq!(add_days(20_089, 7), Some(20_096));
        assert_eq!(add_days(20_089, -20_089), Some(0));
        assert_eq!(add_days(hi, 0), Some(hi));
        assert_eq!(add_days(hi, 1), None);
        assert_eq!(add_days(lo, -1), None);
        assert_eq!(add_days(lo, 1), Some(lo + 1));
        assert_eq!(add_days(0, i64::MAX), None);
        assert_eq!(add_days(0, i64::MIN), None);
        assert_eq!(add_days(i32::MAX, i64::MAX), None);
        assert_eq!(add_days(i32::MIN, 1), None);
        assert_eq!(representable_date(i64::from(i32::MAX) + 1), None);
    }
}
