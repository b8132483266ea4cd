//! The functions a person-level query may call, and the safe forms of the unsafe ones.
//!
//! An error that one person's data can trigger is a channel: the release fails, or not,
//! depending on that person. So every function and operator that the analyser lets through
//! is on an allow-list here, and each entry is exercised by a test over adversarial values
//! (`tests/it/privacy_functions.rs`) that fails if the entry can raise an error on data.
//!
//! Refused on purpose, with the safe form to use instead:
//! - `/` and `%` raise on a zero divisor: use `safe_div(a, b)`, NULL when `b` is 0 or NULL.
//! - `CAST` raises on text that does not parse: use `TRY_CAST`, NULL on failure. Casts that
//!   cannot fail (widening numbers, anything to text, dictionary to its values) stay allowed,
//!   since DataFusion's type coercion inserts them itself.
//! - `to_date`, `make_date`, `substr` (negative lengths), `abs` (overflow on the minimum),
//!   date ± interval (overflow), regular expressions, and every function not listed.
//! - `date_trunc` and `date_part` only with a literal unit: a unit read from data may be
//!   invalid, which raises.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Date32Array, Float64Array, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Scalar functions a person-level query may call, by DataFusion's canonical name.
/// `literal_first` marks functions whose first argument must be a literal.
pub const SCALAR_FUNCTIONS: &[ScalarAllowance] = &[
    ScalarAllowance::any("quarter_of"),
    ScalarAllowance::any("safe_div"),
    ScalarAllowance::any("coalesce"),
    ScalarAllowance::any("nullif"),
    ScalarAllowance::any("greatest"),
    ScalarAllowance::any("least"),
    ScalarAllowance::literal_first("date_trunc"),
    ScalarAllowance::literal_first("date_part"),
    ScalarAllowance::any("lower"),
    ScalarAllowance::any("upper"),
    ScalarAllowance::any("btrim"),
    ScalarAllowance::any("ltrim"),
    ScalarAllowance::any("rtrim"),
    ScalarAllowance::any("concat"),
    ScalarAllowance::any("concat_ws"),
    ScalarAllowance::any("character_length"),
    ScalarAllowance::any("starts_with"),
    ScalarAllowance::any("round"),
    ScalarAllowance::any("floor"),
    ScalarAllowance::any("ceil"),
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

/// One allowed scalar function.
#[derive(Debug, Clone, Copy)]
pub struct ScalarAllowance {
    pub name: &'static str,
    /// The first argument must be a literal (a unit such as `'quarter'`).
    pub literal_first: bool,
}

impl ScalarAllowance {
    const fn any(name: &'static str) -> Self {
        ScalarAllowance {
            name,
            literal_first: false,
        }
    }
    const fn literal_first(name: &'static str) -> Self {
        ScalarAllowance {
            name,
            literal_first: true,
        }
    }
}

/// The allowance for a scalar function, if it is allowed.
pub fn scalar_allowance(name: &str) -> Option<&'static ScalarAllowance> {
    SCALAR_FUNCTIONS.iter().find(|a| a.name == name)
}

/// Registers the safe functions (`quarter_of`, `safe_div`) in a session.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(QuarterOf::new()));
    ctx.register_udf(ScalarUDF::from(SafeDiv::new()));
}

/// Whether casting `from` to `to` can never fail on any value.
pub fn cast_cannot_fail(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to || *from == Null {
        return true;
    }
    let stringy = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let dict_of_strings = |t: &DataType| matches!(t, Dictionary(_, v) if stringy(v.as_ref()));
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
    if let Dictionary(_, v) = to {
        // Values into a dictionary of the same value type: never fails for Int32 keys on
        // batches of DataFusion's size.
        return stringy(v) && (stringy(from) || dict_of_strings(from));
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
    // Dates reach queries only through ingest, which bounds them to [2000-01-01, today], so
    // a date converts to a timestamp of any unit without overflow.
    if *from == Date32 && matches!(to, Timestamp(..) | Date64) {
        return true;
    }
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
        // Consecutive rows are often in the same quarter: reuse the last text.
        let mut last: Option<(i64, u32, String)> = None;
        for d in dates.iter() {
            match d {
                None => out.append_null(),
                Some(days) => {
                    let (year, month) = civil_year_month(days);
                    let q = (month - 1) / 3 + 1;
                    match &last {
                        Some((y, lq, text)) if *y == year && *lq == q => out.append_value(text),
                        _ => {
                            let text = format!("{year}Q{q}");
                            out.append_value(&text);
                            last = Some((year, q, text));
                        }
                    }
                }
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
}
