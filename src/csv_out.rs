//! CSV bodies: one header, one line per row, fields in the order the type declares them.

use super::views::{AllocationBudget, Figure, Metric, Program, Quarter, ReleaseSummary};

/// A value in one CSV field.
pub trait CsvField {
    fn csv(&self) -> String;
}

impl CsvField for String {
    /// Quoted as needed, and guarded against spreadsheet formulas ([`crate::report`]).
    fn csv(&self) -> String {
        crate::report::csv_field(self)
    }
}

macro_rules! display_field {
    ($($t:ty),*) => {$(
        impl CsvField for $t {
            fn csv(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
display_field!(f64, i64, u32, usize, bool);

impl<T: CsvField> CsvField for Option<T> {
    fn csv(&self) -> String {
        self.as_ref().map(CsvField::csv).unwrap_or_default()
    }
}

impl CsvField for [i64; 2] {
    fn csv(&self) -> String {
        format!("{}-{}", self[0], self[1])
    }
}

/// A type that is one CSV line.
pub trait CsvRow {
    const HEADER: &'static [&'static str];
    fn fields(&self) -> Vec<String>;
}

macro_rules! csv_row {
    ($t:ty { $($f:ident),* $(,)? }) => {
        impl CsvRow for $t {
            const HEADER: &'static [&'static str] = &[$(stringify!($f)),*];
            fn fields(&self) -> Vec<String> {
                vec![$(CsvField::csv(&self.$f)),*]
            }
        }
    };
}

csv_row!(Figure {
    quarter,
    scope,
    by,
    kind,
    name,
    breakdown,
    breakdown_value,
    value,
    lower,
    upper,
    raw,
    insufficient_data,
    complete,
    distribution,
    scale,
    release_id,
    dataset_version,
});
csv_row!(Program {
    program_id,
    program_name,
    region,
    team_model,
    police_on_visits,
    warrant_check,
});
csv_row!(Metric {
    metric,
    kind,
    name,
    window_days,
    definition,
});
csv_row!(Quarter {
    quarter,
    publication_id,
    release_id,
    equity_release_id,
    dataset_version,
    published_at,
    approver,
    supersedes,
    rho,
    epsilon,
    display_delta,
    epsilon_delta,
    standard_rho,
    standard_epsilon,
    equity_rho,
    equity_epsilon,
    superseded_rho,
    superseded_epsilon,
});
csv_row!(ReleaseSummary {
    id,
    name,
    quarter,
    dataset_version,
    approver,
    published_at,
    rho,
    delta,
    statistics,
    cells,
    superseded_by,
});
csv_row!(AllocationBudget {
    name,
    rho,
    spent_rho,
    remaining_rho,
    epsilon,
    spent_epsilon,
    remaining_epsilon,
});

/// Rows as a CSV body with its header.
pub fn rows<T: CsvRow>(rows: &[T]) -> String {
    let mut out = T::HEADER.join(",");
    out.push('\n');
    for r in rows {
        out.push_str(&r.fields().join(","));
        out.push('\n');
    }
    out
}
