//! Every function and operator on the analyser's allow-list runs without error over
//! adversarial values: NULLs, integer extremes, NaN and infinities, empty and odd text, and
//! the widest dates a query can make (chrono's calendar, which ingest, date literals and
//! `add_days` all stay inside; no value of a row is cast to a date). An error that one person's
//! value can trigger would be a channel, so an entry that can raise on data must not be on the
//! list.
//! `allowlist_audit` runs the same entries through the analyser.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, DictionaryArray, Float64Array, Int32Array,
    Int64Array, StringArray,
};
use datafusion::arrow::datatypes::Int32Type;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use outreach_warehouse::dictionary::epoch_days;
use outreach_warehouse::privacy::functions::{
    AGGREGATE_FUNCTIONS, DATE_PART_UNITS, SCALAR_FUNCTIONS, WINDOW_FUNCTIONS, register,
};

/// Days from 1970-01-01 of the first and last day of chrono's calendar (about 262,000 years
/// either side): the widest dates a query can make, far wider than ingest admits. The day
/// after 2262-04-11 is where a date cast to nanoseconds overflows.
fn first_day() -> i32 {
    epoch_days(chrono::NaiveDate::MIN)
}
fn last_day() -> i32 {
    epoch_days(chrono::NaiveDate::MAX)
}
const NANOS_LAST_DAY: i32 = 106_751;

fn adversarial() -> SessionContext {
    let n = 8;
    let i: ArrayRef = Arc::new(Int64Array::from(vec![
        Some(i64::MIN),
        Some(i64::MAX),
        Some(0),
        Some(-1),
        None,
        Some(1),
        Some(i64::MIN + 1),
        Some(2),
    ]));
    let i32s: ArrayRef = Arc::new(Int32Array::from(vec![
        Some(i32::MIN),
        Some(i32::MAX),
        Some(0),
        Some(-1),
        None,
        Some(400),
        Some(-400),
        Some(3),
    ]));
    let f: ArrayRef = Arc::new(Float64Array::from(vec![
        Some(f64::NAN),
        Some(f64::INFINITY),
        Some(f64::NEG_INFINITY),
        Some(0.0),
        Some(-0.0),
        None,
        Some(1e308),
        Some(-2.5),
    ]));
    let long = "ü".repeat(5000);
    let s: ArrayRef = Arc::new(StringArray::from(vec![
        Some(""),
        Some("abc"),
        Some(long.as_str()),
        Some("1e400"),
        Some("+5881580-07-11"),
        None,
        Some("  x  "),
        Some("quarter"),
    ]));
    let d: ArrayRef = Arc::new(Date32Array::from(vec![
        Some(first_day()),
        Some(last_day()),
        None,
        Some(20_089),
        Some(NANOS_LAST_DAY + 1),
        Some(first_day() + 59),
        Some(last_day() - 1),
        Some(-106_752),
    ]));
    let b: ArrayRef = Arc::new(BooleanArray::from(vec![
        Some(true),
        Some(false),
        None,
        Some(true),
        Some(false),
        None,
        Some(true),
        Some(false),
    ]));
    let ds: ArrayRef = Arc::new(
        vec![
            Some("a"),
            None,
            Some(""),
            Some("b"),
            Some("a"),
            None,
            Some("zz"),
            Some("b"),
        ]
        .into_iter()
        .collect::<DictionaryArray<Int32Type>>(),
    );
    let batch = RecordBatch::try_from_iter(vec![
        ("i", i),
        ("i32", i32s),
        ("f", f),
        ("s", s),
        ("d", d),
        ("b", b),
        ("ds", ds),
    ])
    .unwrap();
    assert_eq!(batch.num_rows(), n);
    let ctx = SessionContext::new();
    register(&ctx);
    ctx.register_batch("adv", batch).unwrap();
    // More than 128 distinct values in one batch: a dictionary with Int8 keys overflows.
    let many: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..300).map(|k| format!("v{k}")),
    ));
    ctx.register_batch(
        "many",
        RecordBatch::try_from_iter(vec![("t", many)]).unwrap(),
    )
    .unwrap();
    ctx
}

/// Sample calls of each allowed scalar function, with arguments read from data wherever the
/// allow-list lets data reach them.
const SCALAR_SAMPLES: &[(&str, &[&str])] = &[
    ("quarter_of", &["quarter_of(d)"]),
    (
        "safe_div",
        &[
            "safe_div(i, i)",
            "safe_div(f, i)",
            "safe_div(i, 0)",
            "safe_div(i32, f)",
        ],
    ),
    (
        "coalesce",
        &["coalesce(s, 'x')", "coalesce(i, f)", "coalesce(d, d)"],
    ),
    ("nullif", &["nullif(i, 0)", "nullif(s, '')"]),
    (
        "greatest",
        &[
            "greatest(i, f)",
            "greatest(d, DATE '2020-01-01')",
            "greatest(s, ds)",
        ],
    ),
    ("least", &["least(i, i32)", "least(s, 'm')"]),
    (
        "add_days",
        &[
            "add_days(d, 1)",
            "add_days(d, -1)",
            "add_days(d, i)",
            "add_days(d, i32)",
            "add_days(d, 9223372036854775807)",
        ],
    ),
    (
        "date_part",
        &[
            "date_part('year', d)",
            "date_part('isoyear', d)",
            "date_part('quarter', d)",
            "date_part('month', d)",
            "date_part('week', d)",
            "date_part('day', d)",
            "date_part('dow', d)",
            "date_part('isodow', d)",
            "date_part('doy', d)",
            "date_part('epoch', d)",
            "extract(epoch FROM d)",
            "extract(YEAR FROM d)",
        ],
    ),
    ("lower", &["lower(s)", "lower(ds)"]),
    ("upper", &["upper(s)"]),
    ("btrim", &["btrim(s)", "trim(s)", "btrim(s, s)"]),
    ("ltrim", &["ltrim(s)", "ltrim(s, s)"]),
    ("rtrim", &["rtrim(s)"]),
    ("character_length", &["character_length(s)", "length(ds)"]),
    ("starts_with", &["starts_with(s, s)"]),
    (
        "round",
        &[
            "round(f)",
            "round(f, i32)",
            "round(f, 2)",
            "round(i)",
            "round(i, 2)",
            "round(i32, 0)",
        ],
    ),
    ("floor", &["floor(f)", "floor(i)"]),
    ("ceil", &["ceil(f)", "ceil(i)"]),
];

/// Operators, casts and conditionals the analyser allows.
const OPERATOR_SAMPLES: &[&str] = &[
    "i + i",
    "i - i",
    "i * i",
    "i32 * i32",
    "i + i32",
    "-i",
    "f * f",
    "f - i",
    "d - d",
    "i = f",
    "s < ds",
    "d >= DATE '2025-01-01'",
    "i BETWEEN 0 AND 1",
    "i IN (1, 2, i32)",
    "s LIKE 'a%'",
    "s ILIKE '%Ü%'",
    "CASE WHEN b THEN i ELSE i32 END",
    "TRY_CAST(s AS BIGINT)",
    "TRY_CAST(f AS BIGINT)",
    "CAST(i32 AS BIGINT)",
    "CAST(i AS VARCHAR)",
    "CAST(d AS VARCHAR)",
    "CAST(ds AS VARCHAR)",
    "CAST(b AS BIGINT)",
    "s IS NULL",
    "NOT b",
    "b AND b OR b",
    "b IS TRUE",
    "i IS DISTINCT FROM 0",
];

fn run(ctx: &SessionContext, rt: &tokio::runtime::Runtime, sql: &str) {
    rt.block_on(async {
        let df = ctx
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: plan: {e}"));
        df.collect()
            .await
            .unwrap_or_else(|e| panic!("{sql}: raised on data: {e}"));
    });
}

#[test]
fn every_allowed_scalar_function_has_a_sample_and_never_raises() {
    let ctx = adversarial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for allowed in SCALAR_FUNCTIONS {
        let samples = SCALAR_SAMPLES
            .iter()
            .find(|(n, _)| *n == allowed.name)
            .unwrap_or_else(|| panic!("allowed function `{}` has no test sample", allowed.name));
        for expr in samples.1 {
            run(&ctx, &rt, &format!("SELECT {expr} FROM adv"));
        }
    }
}

#[test]
fn allowed_operators_and_casts_never_raise() {
    let ctx = adversarial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for expr in OPERATOR_SAMPLES {
        run(&ctx, &rt, &format!("SELECT {expr} FROM adv"));
    }
}

#[test]
fn every_allowed_aggregate_and_window_function_never_raises() {
    let ctx = adversarial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let aggregates: &[(&str, &str)] = &[
        ("count", "count(i), count(DISTINCT s), count(*)"),
        ("sum", "sum(i), sum(i32), sum(f)"),
        ("min", "min(s), min(d), min(i)"),
        ("max", "max(ds), max(d), max(f)"),
        ("bool_or", "bool_or(b)"),
        ("bool_and", "bool_and(b)"),
        ("avg", "avg(i), avg(f)"),
    ];
    for name in AGGREGATE_FUNCTIONS {
        let (_, exprs) = aggregates
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("allowed aggregate `{name}` has no test sample"));
        run(&ctx, &rt, &format!("SELECT {exprs} FROM adv"));
        run(&ctx, &rt, &format!("SELECT b, {exprs} FROM adv GROUP BY b"));
    }
    let windows: &[(&str, &str)] = &[
        (
            "row_number",
            "row_number() OVER (PARTITION BY b ORDER BY i)",
        ),
        ("rank", "rank() OVER (PARTITION BY b ORDER BY s)"),
        (
            "dense_rank",
            "dense_rank() OVER (PARTITION BY b ORDER BY d)",
        ),
        (
            "lag",
            "lag(i, 1) OVER (PARTITION BY b ORDER BY i), lag(s, 2, 'x') OVER (ORDER BY d)",
        ),
        ("lead", "lead(d) OVER (PARTITION BY b ORDER BY i)"),
        (
            "first_value",
            "first_value(f) OVER (PARTITION BY b ORDER BY i)",
        ),
        (
            "last_value",
            "last_value(s) OVER (PARTITION BY b ORDER BY i)",
        ),
    ];
    for name in WINDOW_FUNCTIONS {
        let (_, exprs) = windows
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("allowed window function `{name}` has no test sample"));
        run(&ctx, &rt, &format!("SELECT {exprs} FROM adv"));
    }
    run(
        &ctx,
        &rt,
        "SELECT sum(i) OVER (PARTITION BY b ORDER BY i ROWS BETWEEN 2 PRECEDING AND CURRENT ROW), max(s) OVER (PARTITION BY b) FROM adv",
    );
}

/// The forms the analyser refuses raise on these rows (so the rows are adversarial enough
/// for the samples above to mean something).
const RAISING_FORMS: &[&str] = &[
    "SELECT 1 / i FROM adv",
    "SELECT i % i32 FROM adv",
    "SELECT CAST(s AS BIGINT) FROM adv",
    // Integers rounded to negative digits: checked arithmetic near the limits.
    "SELECT round(i, -1) FROM adv",
    "SELECT round(CASE WHEN i = 9223372036854775807 THEN 9223372036854775807 ELSE 0 END, -1) FROM adv",
    // A date cast to a timestamp overflows after 2262-04-11; date_trunc makes that cast.
    "SELECT CAST(d AS TIMESTAMP) FROM adv",
    "SELECT date_trunc('month', d) FROM adv",
    // Units that plan but raise when a row reaches them.
    "SELECT date_part('century', d) FROM adv",
    "SELECT date_part('decade', d) FROM adv",
    "SELECT date_trunc('bogus', d) FROM adv WHERE d = DATE '2025-01-01'",
    // Dictionary casts raise on key overflow, even TRY_CAST.
    "SELECT arrow_cast(t, 'Dictionary(Int8, Utf8)') FROM many",
    "SELECT arrow_try_cast(t, 'Dictionary(Int8, Utf8)') FROM many",
    // Date ± interval overflows at the end of the calendar.
    "SELECT d + INTERVAL '1 day' FROM adv",
    "SELECT d - INTERVAL '1 day' FROM adv",
    // Text parses to dates far outside chrono's calendar (`+5881580-07-11` is i32::MAX
    // days), which raise when shown as text: text never casts to a date.
    "SELECT CAST(TRY_CAST(s AS DATE) AS VARCHAR) FROM adv",
    "SELECT concat(TRY_CAST(s AS DATE), '') FROM adv",
    "SELECT CAST(TRY_CAST(CASE WHEN i = 9223372036854775807 THEN '+300000-01-01' END AS DATE) AS VARCHAR) FROM adv",
];

#[test]
fn the_refused_forms_do_raise_on_data_and_the_safe_forms_do_not() {
    let ctx = adversarial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for sql in RAISING_FORMS {
        let failed = rt.block_on(async {
            match ctx.sql(sql).await {
                Err(_) => true,
                Ok(df) => df.collect().await.is_err(),
            }
        });
        assert!(
            failed,
            "{sql} was expected to raise on the adversarial data"
        );
    }
    let values = rt.block_on(async {
        ctx.sql("SELECT safe_div(1, 0) IS NULL, safe_div(3, 2), quarter_of(DATE '2025-02-01'), quarter_of(DATE '2024-12-31')")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
    });
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&values)
        .unwrap()
        .to_string();
    assert!(text.contains("true") && text.contains("1.5"), "{text}");
    assert!(text.contains("2025Q1") && text.contains("2024Q4"), "{text}");
}

/// Asserts that every value of every column of `sql`'s result is true, over at least one row.
fn all_true(ctx: &SessionContext, rt: &tokio::runtime::Runtime, sql: &str) {
    let batches = rt.block_on(async {
        ctx.sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: plan: {e}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{sql}: raised on data: {e}"))
    });
    let mut rows = 0;
    for b in &batches {
        for (k, c) in b.columns().iter().enumerate() {
            let c = c
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap_or_else(|| panic!("{sql}: column {k} is not boolean"));
            for row in 0..c.len() {
                assert!(
                    c.is_valid(row) && c.value(row),
                    "{sql}: column {k} is false or NULL in row {row}"
                );
            }
        }
        rows += b.num_rows();
    }
    assert!(rows > 0, "{sql}: no rows");
}

#[test]
fn add_days_moves_dates_and_gives_null_outside_the_calendar() {
    let ctx = adversarial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    all_true(
        &ctx,
        &rt,
        "SELECT add_days(DATE '2025-01-30', 7) = DATE '2025-02-06', \
         add_days(DATE '2024-03-01', -1) = DATE '2024-02-29', \
         add_days(DATE '2025-01-01', 0) = DATE '2025-01-01', \
         add_days(DATE '2025-01-01', 365) = DATE '2026-01-01', \
         add_days(DATE '2025-01-01', CAST(NULL AS BIGINT)) IS NULL, \
         add_days(DATE '2025-01-01', 9223372036854775807) IS NULL, \
         add_days(DATE '2025-01-01', -9223372036854775807) IS NULL",
    );
    // A window written the safe way: attempts within 7 days of the event.
    all_true(
        &ctx,
        &rt,
        "SELECT (DATE '2025-01-08' < add_days(DATE '2025-01-01', 7)) = false, \
         DATE '2025-01-07' < add_days(DATE '2025-01-01', 7)",
    );
    // The last and first day of the calendar: one step further is NULL, not an error.
    all_true(
        &ctx,
        &rt,
        "SELECT add_days(d, 1) IS NULL, add_days(d, -1) IS NOT NULL, add_days(d, 0) = d \
         FROM adv WHERE d = (SELECT max(d) FROM adv)",
    );
    all_true(
        &ctx,
        &rt,
        "SELECT add_days(d, -1) IS NULL, add_days(d, 1) IS NOT NULL \
         FROM adv WHERE d = (SELECT min(d) FROM adv)",
    );
    // NULL dates and NULL counts give NULL; extreme counts give NULL.
    all_true(
        &ctx,
        &rt,
        "SELECT add_days(d, i32) IS NULL FROM adv WHERE d IS NULL OR i32 IS NULL \
         OR i32 = 2147483647 OR i32 = -2147483648",
    );
    all_true(
        &ctx,
        &rt,
        "SELECT add_days(d, i) IS NULL FROM adv \
         WHERE d IS NULL OR i IS NULL OR i = 9223372036854775807 OR i < -9223372036854775806",
    );
}

#[test]
fn date_functions_never_raise_on_any_date32_value() {
    // No query can make a date outside the calendar (literals are checked, nothing casts to a
    // date, add_days gives NULL), but the date functions do not depend on that: they give NULL
    // or a number for every Date32 value, even those Arrow parses from text such as
    // `+5881580-07-11` (i32::MAX days).
    let ctx = SessionContext::new();
    register(&ctx);
    let d: ArrayRef = Arc::new(Date32Array::from(vec![
        Some(i32::MIN),
        Some(i32::MAX),
        Some(first_day() - 1),
        Some(last_day() + 1),
        Some(first_day()),
        Some(last_day()),
        Some(0),
        None,
    ]));
    let n: ArrayRef = Arc::new(Int64Array::from(vec![
        Some(i64::MAX),
        Some(i64::MIN),
        Some(-1),
        Some(1),
        Some(-1),
        Some(1),
        Some(0),
        Some(5),
    ]));
    ctx.register_batch(
        "wide",
        RecordBatch::try_from_iter(vec![("d", d), ("n", n)]).unwrap(),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut exprs: Vec<String> = [
        "quarter_of(d)",
        "add_days(d, n)",
        "add_days(d, 1)",
        "add_days(d, -1)",
        "d - d",
        "d < DATE '2025-01-01'",
        "greatest(d, DATE '2025-01-01')",
        "coalesce(d, DATE '2025-01-01')",
        "min(d) OVER (PARTITION BY n)",
    ]
    .iter()
    .map(|e| e.to_string())
    .collect();
    for unit in DATE_PART_UNITS {
        exprs.push(format!("date_part('{unit}', d)"));
        exprs.push(format!("date_part('{}', d)", unit.to_ascii_uppercase()));
    }
    for e in &exprs {
        run(&ctx, &rt, &format!("SELECT {e} FROM wide"));
    }
    // Out of the calendar in, NULL (or a date in the calendar) out.
    all_true(
        &ctx,
        &rt,
        "SELECT add_days(d, 1) IS NULL FROM wide WHERE n = 1 OR n = 5",
    );
}
