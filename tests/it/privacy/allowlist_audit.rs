//! The allow-list audit: every allowed function, operator and cast, and the coercions
//! DataFusion inserts around them, planned through the analyser and run on adversarial rows
//! stored under the warehouse's own table names, in a session set up as the warehouse's
//! (`open_session`'s configuration, with the safe functions registered).
//!
//! An entry either runs on every row without an error, or the analyser refuses it. The rows
//! hold integer extremes (reached through `TRY_CAST` of text: there are no integer columns),
//! NaN and infinities, the first and last days of chrono's calendar and the days around
//! 2262-04-11 where nanoseconds overflow, texts that Arrow parses into dates far outside that
//! calendar (`+5881580-07-11`), NULLs, empty and 64 KiB texts, and more than 128 distinct
//! values in one batch. For the forms that are refused, a second test shows that
//! these rows do make them raise, so the audit's rows are adversarial enough to mean
//! something.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Date32Array, DictionaryArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use outreach_warehouse::dictionary::{Dictionary, epoch_days};
use outreach_warehouse::privacy::PrivacyError;
use outreach_warehouse::privacy::functions::{
    self, AGGREGATE_FUNCTIONS, DATE_PART_UNITS, SCALAR_FUNCTIONS, WINDOW_FUNCTIONS,
};
use outreach_warehouse::privacy::release::plan_query;

use self::Expect::{Refused, RefusedRaises, Runs, Safe};
use self::Form::{Aggregate, Query, Scalar};

/// Rows per table, all in one batch.
const ROWS: usize = 300;

/// Text values: numbers at and past the integer limits, float specials, dates at the ends of
/// the calendar, LIKE metacharacters, empty, blank, `null` (made NULL below), long texts.
fn texts() -> Vec<String> {
    let mut v: Vec<String> = [
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "2147483647",
        "-2147483648",
        "2147483648",
        "32767",
        "-129",
        "0",
        "-1",
        "1",
        "-0",
        "NaN",
        "inf",
        "-inf",
        "1e308",
        "-1e308",
        "1e400",
        "",
        " ",
        "null",
        "abc",
        "  x  ",
        "E01",
        "2025-01-01",
        "2262-04-12",
        "1677-09-21",
        "-262143-01-01",
        "+262142-12-31",
        "99999-12-31",
        // Arrow parses signed extended years over the whole i32 range of days: these make
        // dates far outside chrono's calendar, which raise when shown as text.
        "+300000-01-01",
        "-300000-01-01",
        "+5881580-07-11",
        "-5877641-06-23",
        "true",
        "%",
        "_",
        "\\",
        "ü",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("ü".repeat(1000));
    v.push("x".repeat(65_536));
    v
}

/// Dates: the first and last days of chrono's calendar (the widest a query can make) and
/// their neighbours, the epoch, ingest's first day, and the days around the ends of the
/// nanosecond range (1677-09-21 and 2262-04-11).
fn dates() -> Vec<i32> {
    let (lo, hi) = (epoch_days(NaiveDate::MIN), epoch_days(NaiveDate::MAX));
    vec![
        lo,
        hi,
        lo + 1,
        hi - 1,
        0,
        -1,
        10_957,
        20_089,
        106_751,
        106_752,
        -106_751,
        -106_752,
        2_932_896,
    ]
}

/// One batch of adversarial rows for a warehouse table's schema.
fn adversarial_batch(schema: &SchemaRef) -> RecordBatch {
    let texts = texts();
    let dates = dates();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| {
            let null_at = |row: usize| field.is_nullable() && row % 7 == 3;
            // Persons and programs repeat, so that groups hold many extreme values; every
            // other text is distinct, so a batch holds far more than 128 distinct values.
            let text = |row: usize| -> String {
                match field.name().as_str() {
                    "person_key" => format!("pk{}", row % 4),
                    "program_id" => format!("P00{}", row % 3 + 1),
                    _ if row.is_multiple_of(2) => texts[(row / 2) % texts.len()].clone(),
                    _ => format!("id{row}"),
                }
            };
            let array: ArrayRef = match field.data_type() {
                DataType::Utf8 => Arc::new(
                    (0..ROWS)
                        .map(|r| (!null_at(r)).then(|| text(r)))
                        .collect::<StringArray>(),
                ),
                DataType::Dictionary(key, value)
                    if **key == DataType::Int32 && **value == DataType::Utf8 =>
                {
                    // Half the values distinct by row: far more than 128 in the batch.
                    let value = |r: usize| match r % 2 {
                        0 => format!("v{r}"),
                        _ => text(r),
                    };
                    let values: Vec<Option<String>> =
                        (0..ROWS).map(|r| (!null_at(r)).then(|| value(r))).collect();
                    Arc::new(
                        values
                            .iter()
                            .map(|v| v.as_deref())
                            .collect::<DictionaryArray<Int32Type>>(),
                    )
                }
                DataType::Date32 => Arc::new(
                    (0..ROWS)
                        .map(|r| (!null_at(r)).then(|| dates[r % dates.len()]))
                        .collect::<Date32Array>(),
                ),
                DataType::Boolean => Arc::new(
                    (0..ROWS)
                        .map(|r| (!null_at(r)).then_some(r.is_multiple_of(3)))
                        .collect::<BooleanArray>(),
                ),
                other => panic!(
                    "the audit has no adversarial values for {other} (column {})",
                    field.name()
                ),
            };
            array
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

/// A session configured as `warehouse::open_session` configures it, with the privacy
/// engine's functions registered as the release path registers them, and every dictionary
/// table registered under its name with adversarial rows.
fn session() -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(false));
    functions::register(&ctx);
    let dict = Dictionary::builtin().expect("the built-in dictionary");
    for table in dict.tables() {
        let schema = table.schema();
        let batch = adversarial_batch(&schema);
        let mem = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table(table.name.as_str(), Arc::new(mem))
            .unwrap();
    }
    ctx
}

/// The adversarial columns, as a person-level relation: `i` (Int64 extremes), `i32`, `f`
/// (NaN, infinities, ±1e308), `s` (text), `d` (dates), `ds` (a dictionary column with more
/// than 128 distinct values), `b` (booleans), each with NULLs.
const ADV: &str = "WITH adv AS (SELECT person_key, program_id, \
     TRY_CAST(event_id AS BIGINT) AS i, \
     TRY_CAST(event_id AS INT) AS i32, \
     TRY_CAST(event_id AS DOUBLE) AS f, \
     CASE WHEN event_id = 'null' THEN NULL ELSE event_id END AS s, \
     CASE WHEN event_id = 'null' THEN NULL ELSE event_date END AS d, \
     source AS ds, \
     CASE WHEN event_id = 'null' THEN NULL ELSE fatal END AS b \
     FROM overdose_events)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `SELECT person_key, <expr> AS v FROM adv`
    Scalar,
    /// `SELECT person_key, <expr> AS v FROM adv GROUP BY person_key`
    Aggregate,
    /// A whole query over `adv` and the warehouse's tables.
    Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The analyser accepts it, and it runs without error.
    Runs,
    /// Refused, not planned, or run without error: whichever DataFusion's coercion picks.
    Safe,
    /// The analyser refuses it.
    Refused,
    /// The analyser refuses it, and run without the analyser it raises on these rows.
    RefusedRaises,
}

struct Entry {
    /// The allow-list entry it exercises (a function's name, `operator`, `cast`, `join`).
    tag: &'static str,
    form: Form,
    expr: String,
    expect: Expect,
}

impl Entry {
    fn sql(&self) -> String {
        match self.form {
            Form::Scalar => format!("{ADV} SELECT person_key, {} AS v FROM adv", self.expr),
            Form::Aggregate => format!(
                "{ADV} SELECT person_key, {} AS v FROM adv GROUP BY person_key",
                self.expr
            ),
            Form::Query => format!("{ADV} {}", self.expr),
        }
    }
}

/// (tag, form, expression or query, expectation).
const TABLE: &[(&str, Form, &str, Expect)] = &[
    // The safe functions.
    ("quarter_of", Scalar, "quarter_of(d)", Runs),
    ("safe_div", Scalar, "safe_div(i, i)", Runs),
    ("safe_div", Scalar, "safe_div(f, i32)", Runs),
    ("safe_div", Scalar, "safe_div(i, 0)", Runs),
    ("add_days", Scalar, "add_days(d, 1)", Runs),
    ("add_days", Scalar, "add_days(d, -1)", Runs),
    ("add_days", Scalar, "add_days(d, i)", Runs),
    ("add_days", Scalar, "add_days(d, i32)", Runs),
    ("add_days", Scalar, "add_days(d, 9223372036854775807)", Runs),
    ("add_days", Scalar, "quarter_of(add_days(d, -36500))", Runs),
    // Conditionals.
    ("coalesce", Scalar, "coalesce(s, 'x')", Runs),
    ("coalesce", Scalar, "coalesce(i, f)", Runs),
    ("coalesce", Scalar, "coalesce(d, DATE '2000-01-01')", Runs),
    ("coalesce", Scalar, "coalesce(ds, s)", Safe),
    ("nullif", Scalar, "nullif(i, 0)", Runs),
    ("nullif", Scalar, "nullif(s, '')", Runs),
    ("nullif", Scalar, "nullif(d, d)", Runs),
    ("greatest", Scalar, "greatest(i, f)", Runs),
    ("greatest", Scalar, "greatest(d, DATE '2020-01-01')", Runs),
    ("greatest", Scalar, "greatest(s, 'm')", Runs),
    ("greatest", Scalar, "greatest(s, ds)", Safe),
    ("least", Scalar, "least(i, i32)", Runs),
    ("least", Scalar, "least(s, 'm')", Runs),
    ("least", Scalar, "least(d, add_days(d, 1))", Runs),
    // Dates: units outside the list raise when a row reaches them.
    ("date_part", Scalar, "extract(YEAR FROM d)", Runs),
    ("date_part", Scalar, "extract(epoch FROM d)", Runs),
    (
        "date_part",
        Scalar,
        "date_part('century', d)",
        RefusedRaises,
    ),
    ("date_part", Scalar, "date_part('decade', d)", RefusedRaises),
    (
        "date_part",
        Scalar,
        "date_part('millennium', d)",
        RefusedRaises,
    ),
    ("date_part", Scalar, "date_part('bogus', d)", RefusedRaises),
    ("date_part", Scalar, "date_part('year', s)", RefusedRaises),
    (
        "date_trunc",
        Scalar,
        "date_trunc('month', d)",
        RefusedRaises,
    ),
    ("date_trunc", Scalar, "date_trunc('day', d)", RefusedRaises),
    (
        "date_trunc",
        Scalar,
        "date_trunc('bogus', d)",
        RefusedRaises,
    ),
    (
        "date_trunc",
        Scalar,
        "date_trunc('month', TRY_CAST(d AS TIMESTAMP))",
        RefusedRaises,
    ),
    // Text.
    ("lower", Scalar, "lower(s)", Runs),
    ("lower", Scalar, "lower(ds)", Runs),
    ("upper", Scalar, "upper(s)", Runs),
    ("upper", Scalar, "upper(ds)", Runs),
    ("btrim", Scalar, "btrim(s)", Runs),
    ("btrim", Scalar, "trim(s)", Runs),
    ("btrim", Scalar, "btrim(s, s)", Runs),
    ("ltrim", Scalar, "ltrim(s, s)", Runs),
    ("rtrim", Scalar, "rtrim(s)", Runs),
    ("rtrim", Scalar, "rtrim(s, 'x')", Runs),
    // Concatenation can double a text at every step until it passes Arrow's 2 GiB offsets
    // (raising, or panicking for ||) depending on one row: refused.
    ("concat", Scalar, "concat(s, i, f, d, b, ds)", Refused),
    ("concat", Scalar, "concat(s, s, s, s)", Refused),
    ("concat_ws", Scalar, "concat_ws(s, s, 'x', i)", Refused),
    ("concat_ws", Scalar, "concat_ws('-', d, ds, b)", Refused),
    (
        "concat",
        Query,
        "SELECT person_key, character_length(x) AS v FROM (SELECT person_key, concat(x, x) AS x FROM (SELECT person_key, concat(x, x) AS x FROM (SELECT person_key, CASE WHEN s = 'E01' THEN s ELSE '' END AS x FROM adv) a) b) c",
        Refused,
    ),
    ("character_length", Scalar, "character_length(s)", Runs),
    ("character_length", Scalar, "length(ds)", Runs),
    ("starts_with", Scalar, "starts_with(s, s)", Runs),
    ("starts_with", Scalar, "starts_with(s, '9')", Runs),
    // Numbers: integers rounded to negative digits raise near the limits.
    ("round", Scalar, "round(f)", Runs),
    ("round", Scalar, "round(f, 2)", Runs),
    ("round", Scalar, "round(f, -2)", Runs),
    ("round", Scalar, "round(f, i32)", Runs),
    ("round", Scalar, "round(i)", Runs),
    ("round", Scalar, "round(i, 2)", Runs),
    ("round", Scalar, "round(i, 400)", Runs),
    ("round", Scalar, "round(i32, 0)", Runs),
    ("round", Scalar, "round(i, -1)", RefusedRaises),
    (
        "round",
        Scalar,
        "round(CASE WHEN i = 9223372036854775807 THEN 9223372036854775807 ELSE 0 END, -1)",
        RefusedRaises,
    ),
    ("round", Scalar, "round(i, i32)", Refused),
    ("floor", Scalar, "floor(f)", Runs),
    ("floor", Scalar, "floor(i)", Runs),
    ("ceil", Scalar, "ceil(f)", Runs),
    ("ceil", Scalar, "ceil(i)", Runs),
    // Operators, with the coercions the planner inserts around them.
    ("operator", Scalar, "i + i", Runs),
    ("operator", Scalar, "i - i", Runs),
    ("operator", Scalar, "i * i", Runs),
    ("operator", Scalar, "i32 * i32", Runs),
    ("operator", Scalar, "i + i32", Runs),
    ("operator", Scalar, "-i", Runs),
    ("operator", Scalar, "-i32", Runs),
    ("operator", Scalar, "f * f", Runs),
    ("operator", Scalar, "f - i", Runs),
    ("operator", Scalar, "d - d", Runs),
    ("operator", Scalar, "d - DATE '2000-01-01'", Runs),
    ("operator", Scalar, "s || s", Refused),
    ("operator", Scalar, "i = f", Runs),
    ("operator", Scalar, "i32 < i", Runs),
    ("operator", Scalar, "d >= DATE '2025-01-01'", Runs),
    ("operator", Scalar, "d = '2025-01-01'", Runs),
    ("operator", Scalar, "ds = 'v10'", Runs),
    ("operator", Scalar, "ds IN ('v10', 'E01', '')", Runs),
    ("operator", Scalar, "i BETWEEN 0 AND 1", Runs),
    ("operator", Scalar, "i IN (1, 2, i32)", Runs),
    ("operator", Scalar, "i IN (1, 2.5)", Runs),
    ("operator", Scalar, "s LIKE 'a%'", Runs),
    ("operator", Scalar, "s ILIKE '%Ü%'", Runs),
    ("operator", Scalar, "ds LIKE 'v1%'", Runs),
    ("operator", Scalar, "CASE WHEN b THEN i ELSE f END", Runs),
    ("operator", Scalar, "CASE WHEN b THEN d END", Runs),
    ("operator", Scalar, "s IS NULL", Runs),
    ("operator", Scalar, "NOT b", Runs),
    ("operator", Scalar, "b AND b OR b", Runs),
    ("operator", Scalar, "b IS TRUE", Runs),
    ("operator", Scalar, "i IS DISTINCT FROM 0", Runs),
    ("operator", Scalar, "s < ds", Safe),
    ("operator", Scalar, "ds || s", Refused),
    ("operator", Scalar, "ds = s", Safe),
    ("operator", Scalar, "s = i", Safe),
    ("operator", Scalar, "i / i", RefusedRaises),
    ("operator", Scalar, "i % i32", RefusedRaises),
    ("operator", Scalar, "d + INTERVAL '1 day'", RefusedRaises),
    ("operator", Scalar, "d - INTERVAL '1 day'", RefusedRaises),
    ("operator", Scalar, "d = s", RefusedRaises),
    ("operator", Scalar, "s LIKE 'a$%' ESCAPE '$'", RefusedRaises),
    // Casts and TRY_CASTs.
    ("cast", Scalar, "TRY_CAST(s AS BIGINT)", Runs),
    ("cast", Scalar, "TRY_CAST(s AS INT)", Runs),
    ("cast", Scalar, "TRY_CAST(s AS SMALLINT)", Runs),
    ("cast", Scalar, "TRY_CAST(s AS TINYINT)", Runs),
    ("cast", Scalar, "TRY_CAST(s AS DOUBLE)", Runs),
    ("cast", Scalar, "TRY_CAST(s AS REAL)", Runs),
    ("cast", Scalar, "TRY_CAST(s AS BOOLEAN)", Runs),
    // Text never becomes a date; date literals are folded into checked literals.
    ("cast", Scalar, "TRY_CAST(s AS DATE)", Refused),
    ("cast", Scalar, "TRY_CAST(ds AS DATE)", Refused),
    (
        "cast",
        Scalar,
        "CAST(TRY_CAST(s AS DATE) AS VARCHAR)",
        RefusedRaises,
    ),
    (
        "cast",
        Scalar,
        "CAST(arrow_try_cast(s, 'Date32') AS VARCHAR)",
        RefusedRaises,
    ),
    ("cast", Scalar, "quarter_of(TRY_CAST(s AS DATE))", Refused),
    ("cast", Scalar, "TRY_CAST('2025-01-01' AS DATE)", Runs),
    ("cast", Scalar, "CAST('2025-01-01' AS DATE)", Runs),
    ("cast", Scalar, "'2025-01-01'::date", Runs),
    ("cast", Scalar, "d IN ('2025-01-01', '2025-02-01')", Runs),
    ("cast", Scalar, "'+5881580-07-11'::date", Refused),
    ("cast", Scalar, "d < '-5877641-06-23'::date", Refused),
    ("cast", Scalar, "TRY_CAST(f AS BIGINT)", Runs),
    ("cast", Scalar, "TRY_CAST(f AS INT)", Runs),
    ("cast", Scalar, "TRY_CAST(i AS INT)", Runs),
    ("cast", Scalar, "TRY_CAST(i AS SMALLINT)", Runs),
    ("cast", Scalar, "TRY_CAST(d AS VARCHAR)", Runs),
    ("cast", Scalar, "TRY_CAST(ds AS BIGINT)", Runs),
    ("cast", Scalar, "TRY_CAST(b AS INT)", Runs),
    ("cast", Scalar, "CAST(i32 AS BIGINT)", Runs),
    ("cast", Scalar, "CAST(i32 AS DOUBLE)", Runs),
    ("cast", Scalar, "CAST(i AS VARCHAR)", Runs),
    ("cast", Scalar, "CAST(f AS VARCHAR)", Runs),
    ("cast", Scalar, "CAST(d AS VARCHAR)", Runs),
    ("cast", Scalar, "CAST(ds AS VARCHAR)", Runs),
    ("cast", Scalar, "CAST(b AS BIGINT)", Runs),
    ("cast", Scalar, "CAST(b AS VARCHAR)", Runs),
    ("cast", Scalar, "CAST(s AS BIGINT)", RefusedRaises),
    ("cast", Scalar, "CAST(d AS TIMESTAMP)", RefusedRaises),
    ("cast", Scalar, "TRY_CAST(d AS TIMESTAMP)", Refused),
    ("cast", Scalar, "TRY_CAST(i32 AS DATE)", Refused),
    (
        "cast",
        Scalar,
        "CAST(TRY_CAST(i32 AS DATE) AS VARCHAR)",
        RefusedRaises,
    ),
    (
        "cast",
        Scalar,
        "arrow_cast(s, 'Dictionary(Int8, Utf8)')",
        RefusedRaises,
    ),
    (
        "cast",
        Scalar,
        "arrow_try_cast(s, 'Dictionary(Int8, Utf8)')",
        RefusedRaises,
    ),
    (
        "cast",
        Scalar,
        "arrow_cast(ds, 'Dictionary(Int8, Utf8)')",
        RefusedRaises,
    ),
    (
        "cast",
        Scalar,
        "arrow_cast(arrow_cast(2147483647, 'Int32'), 'Date32')",
        Refused,
    ),
    (
        "cast",
        Scalar,
        "CAST(CASE WHEN b THEN arrow_cast(arrow_cast(2147483647, 'Int32'), 'Date32') END AS VARCHAR)",
        RefusedRaises,
    ),
    // Aggregates grouped by person_key: sums overflow (wrapping), many distinct values.
    ("count", Aggregate, "count(i)", Runs),
    ("count", Aggregate, "count(DISTINCT s)", Runs),
    ("count", Aggregate, "count(DISTINCT ds)", Runs),
    ("count", Aggregate, "count(*)", Runs),
    ("count", Aggregate, "count(*) FILTER (WHERE b)", Runs),
    ("sum", Aggregate, "sum(i)", Runs),
    ("sum", Aggregate, "sum(i32)", Runs),
    ("sum", Aggregate, "sum(f)", Runs),
    ("sum", Aggregate, "sum(DISTINCT i)", Runs),
    ("sum", Aggregate, "sum(CASE WHEN b THEN 1 ELSE 0 END)", Runs),
    ("min", Aggregate, "min(s)", Runs),
    ("min", Aggregate, "min(d)", Runs),
    ("min", Aggregate, "min(i)", Runs),
    ("min", Aggregate, "min(ds)", Runs),
    ("max", Aggregate, "max(ds)", Runs),
    ("max", Aggregate, "max(d)", Runs),
    ("max", Aggregate, "max(f)", Runs),
    ("max", Aggregate, "max(s)", Runs),
    ("bool_or", Aggregate, "bool_or(b)", Runs),
    ("bool_and", Aggregate, "bool_and(b)", Runs),
    ("avg", Aggregate, "avg(i)", Runs),
    ("avg", Aggregate, "avg(i32)", Runs),
    ("avg", Aggregate, "avg(f)", Runs),
    // Windows partitioned by person_key.
    (
        "row_number",
        Scalar,
        "row_number() OVER (PARTITION BY person_key ORDER BY i)",
        Runs,
    ),
    (
        "rank",
        Scalar,
        "rank() OVER (PARTITION BY person_key ORDER BY s)",
        Runs,
    ),
    (
        "dense_rank",
        Scalar,
        "dense_rank() OVER (PARTITION BY person_key ORDER BY d)",
        Runs,
    ),
    (
        "lag",
        Scalar,
        "lag(i, 1) OVER (PARTITION BY person_key ORDER BY i)",
        Runs,
    ),
    (
        "lag",
        Scalar,
        "lag(s, 2, 'x') OVER (PARTITION BY person_key ORDER BY d)",
        Runs,
    ),
    (
        "lag",
        Scalar,
        "lag(ds) OVER (PARTITION BY person_key ORDER BY i)",
        Runs,
    ),
    (
        "lag",
        Scalar,
        "lag(d, 1000000) OVER (PARTITION BY person_key ORDER BY i)",
        Runs,
    ),
    (
        "lead",
        Scalar,
        "lead(d) OVER (PARTITION BY person_key ORDER BY i)",
        Runs,
    ),
    (
        "lead",
        Scalar,
        "lead(i, 2, 0) OVER (PARTITION BY person_key ORDER BY s)",
        Runs,
    ),
    (
        "first_value",
        Scalar,
        "first_value(f) OVER (PARTITION BY person_key ORDER BY i)",
        Runs,
    ),
    (
        "last_value",
        Scalar,
        "last_value(s) OVER (PARTITION BY person_key ORDER BY i)",
        Runs,
    ),
    (
        "sum",
        Scalar,
        "sum(i) OVER (PARTITION BY person_key ORDER BY i ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)",
        Runs,
    ),
    ("max", Scalar, "max(s) OVER (PARTITION BY person_key)", Runs),
    (
        "count",
        Scalar,
        "count(*) OVER (PARTITION BY person_key ORDER BY i RANGE BETWEEN 5 PRECEDING AND 5 FOLLOWING)",
        Refused,
    ),
    (
        "count",
        Scalar,
        "count(*) OVER (PARTITION BY person_key ORDER BY d RANGE BETWEEN INTERVAL '7 days' PRECEDING AND CURRENT ROW)",
        Refused,
    ),
    (
        "count",
        Scalar,
        "count(*) OVER (PARTITION BY person_key ORDER BY d RANGE BETWEEN CURRENT ROW AND INTERVAL '7 days' FOLLOWING)",
        Refused,
    ),
    (
        "count",
        Scalar,
        "count(*) OVER (PARTITION BY person_key ORDER BY d RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
        Runs,
    ),
    // Joins on person_key, with date windows the safe way and the nullable side's key.
    (
        "join",
        Query,
        "SELECT a.person_key, b.ds AS v FROM adv a JOIN adv b ON a.person_key = b.person_key AND b.d >= a.d AND b.d < add_days(a.d, 7)",
        Runs,
    ),
    (
        "join",
        Query,
        "SELECT o.person_key, a.s AS v FROM adv a LEFT JOIN overdose_events o ON a.person_key = o.person_key AND o.event_date > add_days(a.d, -30)",
        Runs,
    ),
    (
        "join",
        Query,
        "SELECT a.person_key, x.arrest_id AS v FROM adv a JOIN arrests x ON x.person_key = a.person_key AND x.arrest_date + INTERVAL '90 days' > a.d",
        RefusedRaises,
    ),
];

fn entries() -> Vec<Entry> {
    let mut out: Vec<Entry> = TABLE
        .iter()
        .map(|&(tag, form, expr, expect)| Entry {
            tag,
            form,
            expr: expr.to_string(),
            expect,
        })
        .collect();
    // Every unit on the list, in both cases, on every date.
    for unit in DATE_PART_UNITS {
        for u in [unit.to_string(), unit.to_ascii_uppercase()] {
            out.push(Entry {
                tag: "date_part",
                form: Form::Scalar,
                expr: format!("date_part('{u}', d)"),
                expect: Expect::Runs,
            });
        }
    }
    // LIKE patterns: the longest allowed (1000 characters of wildcards, the costliest to
    // compile and match, also case-folded) runs on every row; one character more is refused.
    let worst = "%_".repeat(500);
    for (op, pattern, expect) in [
        ("LIKE", worst.clone(), Expect::Runs),
        ("ILIKE", worst.clone(), Expect::Runs),
        ("LIKE", format!("{worst}a"), Expect::Refused),
    ] {
        out.push(Entry {
            tag: "like pattern length",
            form: Form::Scalar,
            expr: format!("s {op} '{pattern}'"),
            expect,
        });
    }
    out
}

/// What happened to an entry; the texts are read through `Debug`, in the failure lists.
#[derive(Debug)]
#[allow(dead_code)]
enum Outcome {
    Refused(String),
    NotPlanned(String),
    Ran,
    Raised(String),
}

/// Plans `sql` through the analyser and, if it is accepted, runs the accepted plan as the
/// release path does.
async fn through_the_analyser(ctx: &SessionContext, sql: &str) -> Outcome {
    match plan_query(ctx, "audit", sql).await {
        Err(PrivacyError::Refused { refusal, .. }) => Outcome::Refused(refusal.to_string()),
        Err(other) => Outcome::NotPlanned(other.to_string()),
        Ok(q) => match DataFrame::new(ctx.state(), q.plan).collect().await {
            Ok(_) => Outcome::Ran,
            Err(e) => Outcome::Raised(e.strip_backtrace()),
        },
    }
}

#[test]
fn every_entry_runs_on_adversarial_rows_or_is_refused() {
    let ctx = session();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut failures = Vec::new();
    for e in entries() {
        let outcome = rt.block_on(through_the_analyser(&ctx, &e.sql()));
        let ok = matches!(
            (e.expect, &outcome),
            (Expect::Runs, Outcome::Ran)
                | (
                    Expect::Safe,
                    Outcome::Ran | Outcome::Refused(_) | Outcome::NotPlanned(_)
                )
                | (Expect::Refused | Expect::RefusedRaises, Outcome::Refused(_))
        );
        if !ok {
            let shown: String = format!("{outcome:?}").chars().take(400).collect();
            failures.push(format!(
                "[{}] {}: expected {:?}, got {shown}",
                e.tag, e.expr, e.expect
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} audit entries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_allowed_function_has_an_audit_entry_that_runs() {
    let entries = entries();
    let runs = |name: &str| {
        entries
            .iter()
            .any(|e| e.tag == name && e.expect == Expect::Runs)
    };
    let names = SCALAR_FUNCTIONS
        .iter()
        .map(|a| a.name)
        .chain(AGGREGATE_FUNCTIONS.iter().copied())
        .chain(WINDOW_FUNCTIONS.iter().copied());
    for name in names {
        assert!(
            runs(name),
            "allowed function `{name}` has no audit entry that runs"
        );
    }
}

#[test]
fn the_refused_entries_raise_on_these_rows_without_the_analyser() {
    let ctx = session();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut quiet = Vec::new();
    for e in entries()
        .into_iter()
        .filter(|e| e.expect == Expect::RefusedRaises)
    {
        let sql = e.sql();
        let raised = rt.block_on(async {
            match ctx.sql(&sql).await {
                Err(_) => true,
                Ok(df) => df.collect().await.is_err(),
            }
        });
        if !raised {
            quiet.push(format!("[{}] {}", e.tag, e.expr));
        }
    }
    assert!(
        quiet.is_empty(),
        "these refused forms did not raise on the adversarial rows:\n{}",
        quiet.join("\n")
    );
}
