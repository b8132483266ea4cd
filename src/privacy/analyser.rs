//! The person-locality analyser (privacy model §2).
//!
//! First, on the plan *as written* ([`check_unoptimised`]): every function must be on the
//! allow-list and every written cast must be to an allowed type, before DataFusion's optimiser
//! can evaluate any expression of constants (it would fold `repeat('a1', 300000000)` into a
//! 600 MB literal while planning). Then the full analysis below, on the optimized plan.
//!
//! A person-level query is planned by DataFusion with DDL, DML and statements disabled, then
//! optimized, so that subqueries are already decorrelated into (semi, anti, left) joins. The
//! analyser walks that optimized `LogicalPlan` bottom-up and computes, for every node:
//!
//! - whether its rows depend on private data, and
//! - which of its output columns are, by lineage, an unmodified `person_key` column of a
//!   private table (a *person column*), and
//! - which hold, by lineage, an unmodified `person_key` or NULL, such as the `person_key` of
//!   the nullable side of an outer join (a *person-or-NULL column*; every person column is
//!   one too).
//!
//! The invariant it keeps: every row of a private node depends only on one person's records
//! and on public tables, every person column of that row holds that person's key, and every
//! person-or-NULL column holds that person's key or NULL. A node that cannot keep the
//! invariant is refused, by name, with the rule it broke. Aggregates, windows, DISTINCT and
//! private joins must use a person column: a person-or-NULL column would put the NULL rows of
//! many persons together. The query is accepted when its output has a `person_key` column that
//! is a person-or-NULL column; the engine drops the rows whose `person_key` is NULL.

use std::fmt;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, JoinType};
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::{
    Aggregate, Distinct, Expr, ExprSchemable, Join, LogicalPlan, Operator, WindowFunctionDefinition,
};

use super::functions::{self, AGGREGATE_FUNCTIONS, ArgRule, WINDOW_FUNCTIONS};
use crate::dictionary::{ColumnClass, Dictionary, TableKind};

/// Why a query was refused: the rule and the plan node that broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    /// The offending plan node, as DataFusion displays it on one line.
    pub node: String,
    pub detail: String,
}

/// The rules of the privacy model's §2 that a query can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A statement, DDL, DML, EXPLAIN or another plan node that is not a query.
    NotAQuery,
    /// A scan of something other than the warehouse's tables.
    UnknownTable,
    /// An aggregate, window, distinct or join that mixes persons.
    NotPersonLocal,
    /// A `person_key` that does not trace to an unmodified private `person_key`.
    Lineage,
    /// A function, operator or cast that is not on the allow-list.
    Function,
    /// `LIMIT`/`OFFSET`, which keeps rows depending on other persons' rows.
    Limit,
    /// A subquery that DataFusion could not turn into a join.
    Subquery,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::NotAQuery => "not a query",
            Rule::UnknownTable => "unknown table",
            Rule::NotPersonLocal => "not person-local",
            Rule::Lineage => "person_key lineage",
            Rule::Function => "function not allowed",
            Rule::Limit => "LIMIT not allowed",
            Rule::Subquery => "subquery not allowed",
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (at `{}`)", self.rule, self.detail, self.node)
    }
}

/// What the analyser knows about one plan node's output.
#[derive(Debug, Clone)]
struct Rel {
    private: bool,
    /// One flag per output column: a person column, the row's person's key and never NULL.
    person: Vec<bool>,
    /// One flag per output column: a person-or-NULL column, the row's person's key or NULL
    /// (true for every person column too).
    key_or_null: Vec<bool>,
}

impl Rel {
    fn public(n: usize) -> Rel {
        Rel {
            private: false,
            person: vec![false; n],
            key_or_null: vec![false; n],
        }
    }
}

/// Checks that an optimized plan is person-local and that its output column `person_key`
/// is an unmodified private `person_key`. Returns the index of that output column.
pub fn analyse(plan: &LogicalPlan, dict: &Dictionary) -> Result<usize, Refusal> {
    let rel = walk(plan, dict)?;
    let schema = plan.schema();
    let idx = schema
        .fields()
        .iter()
        .position(|f| f.name() == "person_key")
        .ok_or_else(|| {
            refusal(
                Rule::Lineage,
                plan,
                "the query has no output column `person_key`",
            )
        })?;
    // The nullable side of an outer join still holds that person's key or NULL, and the
    // engine drops rows whose `person_key` is NULL.
    if !rel.private || !(rel.person[idx] || rel.key_or_null[idx]) {
        return Err(refusal(
            Rule::Lineage,
            plan,
            "the output `person_key` is not an unmodified `person_key` column of a person table",
        ));
    }
    Ok(idx)
}

/// Checks the plan *as written*, before DataFusion's optimiser sees it: every function it
/// calls is on the allow-list ([`functions::scalar_name_refusal`], [`AGGREGATE_FUNCTIONS`],
/// [`WINDOW_FUNCTIONS`]), no `||` builds text, and every cast written in the SQL (`CAST`,
/// `TRY_CAST`, `::`, `arrow_cast`, `arrow_try_cast`) is to a type of
/// [`functions::written_cast_target_allowed`]. Returns the first refusal, naming the node.
///
/// The optimiser evaluates expressions of constants while it plans: `repeat('a1', 300000000)`
/// became a 600 MB literal, six of them took the API server to 6 GiB, before [`analyse`] saw
/// the optimized plan (which then held only a literal). So a function that is not on the list
/// is refused here, by its name, before anything is folded; [`analyse`] then checks the
/// optimized plan in full as before, with the argument rules of the functions that passed.
/// Functions that DataFusion rewrites before evaluating them, but that are not on the list
/// (`nvl`, `nvl2`, `cast_to_type`), are refused here too: nothing outside the list is ever
/// evaluated, folded or not. `arrow_cast` and `arrow_try_cast` pass when their target type
/// does, since the optimiser turns them into the casts that [`analyse`] checks.
pub fn check_unoptimised(plan: &LogicalPlan) -> Result<(), Refusal> {
    let mut result = Ok(());
    let _ = plan.apply_with_subqueries(|node| {
        let mut found: Option<String> = None;
        let _ = node.apply_expressions(|e| {
            e.apply(|e| match written_refusal(e, node) {
                None => Ok(TreeNodeRecursion::Continue),
                Some(why) => {
                    if found.is_none() {
                        found = Some(why);
                    }
                    Ok(TreeNodeRecursion::Stop)
                }
            })
        });
        match found {
            None => Ok(TreeNodeRecursion::Continue),
            Some(why) => {
                result = Err(refusal(Rule::Function, node, why));
                Ok(TreeNodeRecursion::Stop)
            }
        }
    });
    result
}

/// Why an expression of the plan as written is refused before the optimiser, or `None`.
/// Only names and written cast targets: everything else waits for [`analyse`].
fn written_refusal(e: &Expr, node: &LogicalPlan) -> Option<String> {
    match e {
        Expr::ScalarFunction(f) => {
            let name = f.name();
            if name == "arrow_cast" || name == "arrow_try_cast" {
                return arrow_cast_refusal(name, &f.args, node);
            }
            functions::scalar_name_refusal(name)
        }
        Expr::AggregateFunction(AggregateFunction { func, .. }) => {
            let name = func.name();
            (!AGGREGATE_FUNCTIONS.contains(&name))
                .then(|| format!("aggregate function `{name}` is not on the allow-list"))
        }
        Expr::WindowFunction(wf) => {
            let name = match &wf.as_ref().fun {
                WindowFunctionDefinition::AggregateUDF(f) => f.name().to_string(),
                WindowFunctionDefinition::WindowUDF(f) => f.name().to_string(),
            };
            let allowed = WINDOW_FUNCTIONS.contains(&name.as_str())
                || AGGREGATE_FUNCTIONS.contains(&name.as_str());
            (!allowed).then(|| format!("window function `{name}` is not on the allow-list"))
        }
        Expr::Cast(c) => written_cast_refusal(&c.expr, c.field.data_type(), false, node),
        Expr::TryCast(c) => written_cast_refusal(&c.expr, c.field.data_type(), true, node),
        Expr::BinaryExpr(b) if b.op == Operator::StringConcat => {
            Some(format!("`||`: {}", functions::STRING_GROWTH_REFUSAL))
        }
        _ => None,
    }
}

/// `arrow_cast(x, 'type')` and `arrow_try_cast(x, 'type')` as written: the type must be one a
/// written cast may produce.
fn arrow_cast_refusal(name: &str, args: &[Expr], node: &LogicalPlan) -> Option<String> {
    let text = match args.get(1).map(unalias) {
        Some(Expr::Literal(v, _)) => v.try_as_str().flatten(),
        _ => None,
    };
    let Some(text) = text else {
        return Some(format!("`{name}` needs a text literal naming its type"));
    };
    let Ok(to) = text.parse::<datafusion::arrow::datatypes::DataType>() else {
        let shown: String = text.chars().take(60).collect();
        return Some(format!(
            "`{name}` to a type DataFusion does not know: '{shown}'"
        ));
    };
    let value = args.first()?;
    written_cast_refusal(value, &to, name == "arrow_try_cast", node)
}

/// A cast as written, of `value` to `to`: refused unless `to` is a type a written cast may
/// produce, with [`functions::cast_refusal`]'s reason where it has one.
fn written_cast_refusal(
    value: &Expr,
    to: &datafusion::arrow::datatypes::DataType,
    try_cast: bool,
    node: &LogicalPlan,
) -> Option<String> {
    use datafusion::arrow::datatypes::DataType;
    if functions::written_cast_target_allowed(to) {
        return None;
    }
    // The source's type only words the reason; a NULL (or an unknown type) reads as text, so
    // that `cast_refusal` does not wave the cast through as a cast of NULL.
    let from = written_type(value, node)
        .filter(|t| *t != DataType::Null)
        .unwrap_or(DataType::Utf8);
    let what = if try_cast { "TRY_CAST" } else { "CAST" };
    Some(
        functions::cast_refusal(&from, to, try_cast)
            .unwrap_or_else(|| format!("{what} to {to} is not on the allow-list")),
    )
}

/// The type of an expression of `node` as written, from its inputs' schemas, if known.
fn written_type(e: &Expr, node: &LogicalPlan) -> Option<datafusion::arrow::datatypes::DataType> {
    let inputs = node.inputs();
    match inputs.as_slice() {
        [] => e.get_type(&DFSchema::empty()).ok(),
        [one] => {
            let schema: &DFSchema = one.schema();
            e.get_type(schema).ok()
        }
        [left, right] => {
            let left: &DFSchema = left.schema();
            let both = left.join(right.schema()).ok()?;
            e.get_type(&both).ok()
        }
        _ => None,
    }
}

fn refusal(rule: Rule, plan: &LogicalPlan, detail: impl Into<String>) -> Refusal {
    let node = plan.display().to_string();
    let node = if node.chars().count() > 160 {
        format!("{}…", node.chars().take(160).collect::<String>())
    } else {
        node
    };
    Refusal {
        rule,
        node,
        detail: detail.into(),
    }
}

/// The input column a bare (possibly aliased) column expression refers to.
fn column_index(expr: &Expr, schema: &DFSchema) -> Option<usize> {
    match expr {
        Expr::Column(c) => schema.index_of_column(c).ok(),
        Expr::Alias(a) => column_index(&a.expr, schema),
        _ => None,
    }
}

fn is_person(expr: &Expr, schema: &DFSchema, rel: &Rel) -> bool {
    column_index(expr, schema).is_some_and(|i| rel.person.get(i).copied().unwrap_or(false))
}

fn is_key_or_null(expr: &Expr, schema: &DFSchema, rel: &Rel) -> bool {
    column_index(expr, schema).is_some_and(|i| rel.key_or_null.get(i).copied().unwrap_or(false))
}

/// The end of a refusal for grouping or partitioning by a person-or-NULL column only.
fn nullable_key_note(used: bool) -> &'static str {
    if used {
        " (a `person_key` from the nullable side of an outer join is NULL for many persons at once)"
    } else {
        ""
    }
}

fn walk(plan: &LogicalPlan, dict: &Dictionary) -> Result<Rel, Refusal> {
    let out_len = plan.schema().fields().len();
    let rel = match plan {
        LogicalPlan::TableScan(scan) => {
            if scan.fetch.is_some() {
                return Err(refusal(Rule::Limit, plan, "a scan with a row limit"));
            }
            let name = scan.table_name.table();
            let bare = scan.table_name.schema().is_none() && scan.table_name.catalog().is_none();
            let table = dict.table(name).filter(|_| bare).ok_or_else(|| {
                refusal(
                    Rule::UnknownTable,
                    plan,
                    format!("`{}` is not a warehouse table", scan.table_name),
                )
            })?;
            if !scan.filters.is_empty() {
                let full = DFSchema::try_from_qualified_schema(
                    scan.table_name.clone(),
                    scan.source.schema().as_ref(),
                )
                .map_err(|e| refusal(Rule::NotAQuery, plan, format!("internal: {e}")))?;
                for f in &scan.filters {
                    check_expr_df(f, &full, plan, dict)?;
                }
            }
            match table.kind {
                TableKind::Public => Rel::public(out_len),
                TableKind::Person => {
                    let person: Vec<bool> = scan
                        .projected_schema
                        .fields()
                        .iter()
                        .map(|f| {
                            table
                                .column(f.name())
                                .is_some_and(|c| c.class == ColumnClass::PersonKey)
                        })
                        .collect();
                    Rel {
                        private: true,
                        key_or_null: person.clone(),
                        person,
                    }
                }
            }
        }
        LogicalPlan::EmptyRelation(_) => Rel::public(out_len),
        LogicalPlan::Values(values) => {
            for row in &values.values {
                for e in row {
                    check_expr_df(e, &values.schema, plan, dict)?;
                }
            }
            Rel::public(out_len)
        }
        LogicalPlan::SubqueryAlias(alias) => walk(&alias.input, dict)?,
        LogicalPlan::Projection(p) => {
            let input = walk(&p.input, dict)?;
            let schema = p.input.schema();
            let mut person = Vec::with_capacity(p.expr.len());
            let mut key_or_null = Vec::with_capacity(p.expr.len());
            for e in &p.expr {
                check_expr_df(e, schema, plan, dict)?;
                person.push(is_person(e, schema, &input));
                key_or_null.push(is_key_or_null(e, schema, &input));
            }
            Rel {
                private: input.private,
                person,
                key_or_null,
            }
        }
        LogicalPlan::Filter(f) => {
            let input = walk(&f.input, dict)?;
            check_expr_df(&f.predicate, f.input.schema(), plan, dict)?;
            input
        }
        LogicalPlan::Sort(s) => {
            if s.fetch.is_some() {
                return Err(refusal(Rule::Limit, plan, "ORDER BY with LIMIT"));
            }
            let input = walk(&s.input, dict)?;
            for e in &s.expr {
                check_expr_df(&e.expr, s.input.schema(), plan, dict)?;
            }
            input
        }
        LogicalPlan::Repartition(r) => walk(&r.input, dict)?,
        LogicalPlan::Limit(_) => {
            return Err(refusal(
                Rule::Limit,
                plan,
                "LIMIT/OFFSET keeps or drops a person's rows depending on other persons",
            ));
        }
        LogicalPlan::Aggregate(a) => aggregate(plan, a, dict)?,
        LogicalPlan::Window(w) => {
            let input = walk(&w.input, dict)?;
            let schema = w.input.schema();
            for e in &w.window_expr {
                let inner = unalias(e);
                let Expr::WindowFunction(wf) = inner else {
                    return Err(refusal(
                        Rule::Function,
                        plan,
                        "unexpected window expression",
                    ));
                };
                let WindowFunction { fun, params } = wf.as_ref();
                let name = match fun {
                    WindowFunctionDefinition::AggregateUDF(f) => f.name().to_string(),
                    WindowFunctionDefinition::WindowUDF(f) => f.name().to_string(),
                };
                let allowed = WINDOW_FUNCTIONS.contains(&name.as_str())
                    || AGGREGATE_FUNCTIONS.contains(&name.as_str());
                if !allowed {
                    return Err(refusal(
                        Rule::Function,
                        plan,
                        format!("window function `{name}` is not on the allow-list"),
                    ));
                }
                if params.distinct {
                    return Err(refusal(
                        Rule::Function,
                        plan,
                        "DISTINCT in a window function",
                    ));
                }
                for a in params.args.iter().chain(&params.partition_by) {
                    check_expr_df(a, schema, plan, dict)?;
                }
                for s in &params.order_by {
                    check_expr_df(&s.expr, schema, plan, dict)?;
                }
                if let Some(f) = &params.filter {
                    check_expr_df(f, schema, plan, dict)?;
                }
                if let Some(why) = functions::window_frame_refusal(&params.window_frame) {
                    return Err(refusal(Rule::Function, plan, why));
                }
                if input.private
                    && !params
                        .partition_by
                        .iter()
                        .any(|p| is_person(p, schema, &input))
                {
                    let nullable = params
                        .partition_by
                        .iter()
                        .any(|p| is_key_or_null(p, schema, &input));
                    return Err(refusal(
                        Rule::NotPersonLocal,
                        plan,
                        format!(
                            "window `{}` over private data is not partitioned by an unmodified `person_key`{}",
                            e.schema_name(),
                            nullable_key_note(nullable)
                        ),
                    ));
                }
            }
            let mut person = input.person.clone();
            person.resize(out_len, false);
            let mut key_or_null = input.key_or_null.clone();
            key_or_null.resize(out_len, false);
            Rel {
                private: input.private,
                person,
                key_or_null,
            }
        }
        LogicalPlan::Join(j) => join(plan, j, dict)?,
        LogicalPlan::Union(u) => {
            let inputs = u
                .inputs
                .iter()
                .map(|i| walk(i, dict))
                .collect::<Result<Vec<_>, _>>()?;
            let all_private = inputs.iter().all(|r| r.private);
            let person = (0..out_len)
                .map(|i| all_private && inputs.iter().all(|r| r.person.get(i) == Some(&true)))
                .collect();
            let key_or_null = (0..out_len)
                .map(|i| all_private && inputs.iter().all(|r| r.key_or_null.get(i) == Some(&true)))
                .collect();
            Rel {
                private: inputs.iter().any(|r| r.private),
                person,
                key_or_null,
            }
        }
        LogicalPlan::Distinct(Distinct::All(input)) => {
            let rel = walk(input, dict)?;
            if rel.private && !rel.person.iter().any(|p| *p) {
                return Err(refusal(
                    Rule::NotPersonLocal,
                    plan,
                    "DISTINCT over private data without an unmodified `person_key` column",
                ));
            }
            rel
        }
        LogicalPlan::Distinct(Distinct::On(on)) => {
            let input = walk(&on.input, dict)?;
            let schema = on.input.schema();
            for e in on.on_expr.iter().chain(&on.select_expr) {
                check_expr_df(e, schema, plan, dict)?;
            }
            for s in on.sort_expr.iter().flatten() {
                check_expr_df(&s.expr, schema, plan, dict)?;
            }
            if input.private && !on.on_expr.iter().any(|e| is_person(e, schema, &input)) {
                return Err(refusal(
                    Rule::NotPersonLocal,
                    plan,
                    "DISTINCT ON over private data without an unmodified `person_key`",
                ));
            }
            Rel {
                private: input.private,
                person: on
                    .select_expr
                    .iter()
                    .map(|e| is_person(e, schema, &input))
                    .collect(),
                key_or_null: on
                    .select_expr
                    .iter()
                    .map(|e| is_key_or_null(e, schema, &input))
                    .collect(),
            }
        }
        LogicalPlan::Subquery(_) => {
            return Err(refusal(
                Rule::Subquery,
                plan,
                "a subquery that could not be turned into a join",
            ));
        }
        LogicalPlan::Statement(_)
        | LogicalPlan::Explain(_)
        | LogicalPlan::Analyze(_)
        | LogicalPlan::Extension(_)
        | LogicalPlan::Dml(_)
        | LogicalPlan::Ddl(_)
        | LogicalPlan::Copy(_)
        | LogicalPlan::DescribeTable(_) => {
            return Err(refusal(
                Rule::NotAQuery,
                plan,
                "only a SELECT query is allowed",
            ));
        }
        LogicalPlan::Unnest(_) => {
            return Err(refusal(
                Rule::Function,
                plan,
                "UNNEST is not on the allow-list",
            ));
        }
        LogicalPlan::RecursiveQuery(_) => {
            return Err(refusal(
                Rule::NotAQuery,
                plan,
                "recursive queries are not allowed",
            ));
        }
    };
    if rel.person.len() != out_len || rel.key_or_null.len() != out_len {
        return Err(refusal(
            Rule::NotAQuery,
            plan,
            "internal: the analyser lost track of this node's columns",
        ));
    }
    Ok(rel)
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

fn aggregate(plan: &LogicalPlan, a: &Aggregate, dict: &Dictionary) -> Result<Rel, Refusal> {
    let input = walk(&a.input, dict)?;
    let schema = a.input.schema();
    for g in &a.group_expr {
        if matches!(g, Expr::GroupingSet(_)) {
            return Err(refusal(
                Rule::NotPersonLocal,
                plan,
                "GROUPING SETS, CUBE and ROLLUP aggregate over subsets of the keys",
            ));
        }
        check_expr_df(g, schema, plan, dict)?;
    }
    for e in &a.aggr_expr {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = unalias(e) else {
            return Err(refusal(
                Rule::Function,
                plan,
                "unexpected aggregate expression",
            ));
        };
        if !AGGREGATE_FUNCTIONS.contains(&func.name()) {
            return Err(refusal(
                Rule::Function,
                plan,
                format!(
                    "aggregate function `{}` is not on the allow-list",
                    func.name()
                ),
            ));
        }
        for arg in &params.args {
            check_expr_df(arg, schema, plan, dict)?;
        }
        if let Some(f) = &params.filter {
            check_expr_df(f, schema, plan, dict)?;
        }
        for s in &params.order_by {
            check_expr_df(&s.expr, schema, plan, dict)?;
        }
    }
    if input.private && !a.group_expr.iter().any(|g| is_person(g, schema, &input)) {
        let nullable = a
            .group_expr
            .iter()
            .any(|g| is_key_or_null(g, schema, &input));
        return Err(refusal(
            Rule::NotPersonLocal,
            plan,
            format!(
                "an aggregate over private data must group by an unmodified `person_key`{}",
                nullable_key_note(nullable)
            ),
        ));
    }
    let out_len = plan.schema().fields().len();
    let mut person: Vec<bool> = a
        .group_expr
        .iter()
        .map(|g| is_person(g, schema, &input))
        .collect();
    person.resize(out_len, false);
    let mut key_or_null: Vec<bool> = a
        .group_expr
        .iter()
        .map(|g| is_key_or_null(g, schema, &input))
        .collect();
    key_or_null.resize(out_len, false);
    Ok(Rel {
        private: input.private,
        person,
        key_or_null,
    })
}

fn join(plan: &LogicalPlan, j: &Join, dict: &Dictionary) -> Result<Rel, Refusal> {
    let left = walk(&j.left, dict)?;
    let right = walk(&j.right, dict)?;
    let (ls, rs) = (j.left.schema(), j.right.schema());
    for (l, r) in &j.on {
        check_expr_df(l, ls, plan, dict)?;
        check_expr_df(r, rs, plan, dict)?;
    }
    if let Some(f) = &j.filter {
        let both =
            ls.as_ref().clone().join(rs).map_err(|e| {
                refusal(Rule::NotAQuery, plan, format!("internal: join schema: {e}"))
            })?;
        check_expr_df(f, &both, plan, dict)?;
    }
    if j.null_aware && right.private {
        return Err(refusal(
            Rule::NotPersonLocal,
            plan,
            "NOT IN over a subquery on private data empties the result when any person has a NULL: use NOT EXISTS",
        ));
    }
    if left.private && right.private {
        let keyed =
            j.on.iter()
                .any(|(l, r)| is_person(l, ls, &left) && is_person(r, rs, &right));
        if !keyed {
            let what = if j.on.is_empty() && j.filter.is_none() {
                "a cross join between private tables"
            } else {
                "a join between private tables must include equality of unmodified `person_key` columns"
            };
            return Err(refusal(Rule::NotPersonLocal, plan, what));
        }
    }
    // A public side whose rows the join keeps, or marks, according to private rows would
    // publish something about all persons at once (such as "no survivor in this program").
    let public_kept_against_private =
        |kept_public: bool, other_private: bool| kept_public && other_private;
    let (lp, rp) = (!left.private, !right.private);
    let refused = match j.join_type {
        JoinType::Inner => false,
        JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
            public_kept_against_private(lp, right.private)
        }
        JoinType::Right | JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
            public_kept_against_private(rp, left.private)
        }
        JoinType::Full => (lp && right.private) || (rp && left.private),
    };
    if refused {
        return Err(refusal(
            Rule::NotPersonLocal,
            plan,
            format!(
                "a {} join that keeps or filters public rows by private rows",
                j.join_type
            ),
        ));
    }
    // The nullable side of an outer join keeps its person columns as person-or-NULL ones: a
    // NULL-extended row holds NULL there, any other row the same person's key (the join is
    // on `person_key` equality whenever both sides are private).
    let none = |r: &Rel| vec![false; r.person.len()];
    let both = [left.key_or_null.clone(), right.key_or_null.clone()].concat();
    let (person, key_or_null): (Vec<bool>, Vec<bool>) = match j.join_type {
        JoinType::Inner => ([left.person.clone(), right.person.clone()].concat(), both),
        JoinType::Left => ([left.person.clone(), none(&right)].concat(), both),
        JoinType::Right => ([none(&left), right.person.clone()].concat(), both),
        JoinType::Full => ([none(&left), none(&right)].concat(), both),
        JoinType::LeftSemi | JoinType::LeftAnti => (left.person.clone(), left.key_or_null.clone()),
        JoinType::RightSemi | JoinType::RightAnti => {
            (right.person.clone(), right.key_or_null.clone())
        }
        JoinType::LeftMark => (
            [left.person.clone(), vec![false]].concat(),
            [left.key_or_null.clone(), vec![false]].concat(),
        ),
        JoinType::RightMark => (
            [right.person.clone(), vec![false]].concat(),
            [right.key_or_null.clone(), vec![false]].concat(),
        ),
    };
    Ok(Rel {
        private: left.private || right.private,
        person,
        key_or_null,
    })
}

/// Checks every node of an expression against the allow-list, with types from `schema`;
/// subqueries left in it are walked against `dict`.
fn check_expr_df(
    expr: &Expr,
    schema: &DFSchema,
    plan: &LogicalPlan,
    dict: &Dictionary,
) -> Result<(), Refusal> {
    let mut result = Ok(());
    let _ = expr.apply(|e| match check_node(e, plan, Some(schema), dict) {
        Ok(()) => Ok(TreeNodeRecursion::Continue),
        Err(r) => {
            result = Err(r);
            Ok(TreeNodeRecursion::Stop)
        }
    });
    result
}

/// A subquery left in an expression (DataFusion keeps uncorrelated scalar subqueries so):
/// allowed only over public data, since its value would otherwise mix persons.
fn subquery(
    sq: &datafusion::logical_expr::Subquery,
    plan: &LogicalPlan,
    dict: &Dictionary,
) -> Result<(), Refusal> {
    if !sq.outer_ref_columns.is_empty() {
        return Err(refusal(
            Rule::Subquery,
            plan,
            "a correlated subquery that DataFusion could not turn into a join",
        ));
    }
    let rel = walk(&sq.subquery, dict)?;
    if rel.private {
        return Err(refusal(
            Rule::NotPersonLocal,
            plan,
            "a subquery over private data gives every row a value computed from all persons",
        ));
    }
    Ok(())
}

/// Longest LIKE pattern, in characters: a longer one could compile to a regular expression
/// over the regex crate's size limit, which raises only when a row reaches it.
const MAX_LIKE_PATTERN: usize = 1000;

fn type_of(e: &Expr, schema: Option<&DFSchema>) -> Option<datafusion::arrow::datatypes::DataType> {
    schema.and_then(|s| e.get_type(s).ok())
}

fn check_node(
    e: &Expr,
    plan: &LogicalPlan,
    schema: Option<&DFSchema>,
    dict: &Dictionary,
) -> Result<(), Refusal> {
    use datafusion::arrow::datatypes::DataType;
    let bad = |detail: String| Err(refusal(Rule::Function, plan, detail));
    match e {
        Expr::Alias(_)
        | Expr::Column(_)
        | Expr::Not(_)
        | Expr::IsNotNull(_)
        | Expr::IsNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsNotUnknown(_)
        | Expr::Between(_)
        | Expr::Case(_)
        | Expr::InList(_) => Ok(()),
        Expr::Literal(value, _) => match functions::literal_refusal(value) {
            Some(why) => bad(why),
            None => Ok(()),
        },
        // Aggregate and window calls are checked by their plan nodes; their arguments are
        // visited as children here.
        Expr::AggregateFunction(_) | Expr::WindowFunction(_) => Ok(()),
        Expr::Negative(inner) => match type_of(inner, schema) {
            Some(t) if t.is_integer() || t.is_floating() => Ok(()),
            Some(t) => bad(format!("negation of {t}")),
            None => bad("negation of an expression of unknown type".into()),
        },
        Expr::Like(like) => {
            // The pattern becomes a regular expression when a row reaches it: a pattern too
            // long to compile, or an escape character DataFusion does not support, would
            // raise then.
            match unalias(&like.pattern) {
                Expr::Literal(v, _)
                    if v.try_as_str()
                        .flatten()
                        .is_some_and(|p| p.chars().count() > MAX_LIKE_PATTERN) =>
                {
                    bad(format!(
                        "LIKE with a pattern over {MAX_LIKE_PATTERN} characters"
                    ))
                }
                Expr::Literal(..) if like.escape_char.is_some_and(|c| c != '\\') => {
                    bad("LIKE with an ESCAPE character other than the backslash".into())
                }
                Expr::Literal(..) => Ok(()),
                _ => bad("LIKE with a pattern read from data".into()),
            }
        }
        Expr::SimilarTo(_) => {
            bad("SIMILAR TO (regular expressions) is not on the allow-list".into())
        }
        Expr::BinaryExpr(b) => {
            use Operator::*;
            match b.op {
                Eq | NotEq | Lt | LtEq | Gt | GtEq | And | Or | IsDistinctFrom
                | IsNotDistinctFrom => Ok(()),
                StringConcat => bad(format!("`||`: {}", functions::STRING_GROWTH_REFUSAL)),
                Plus | Minus | Multiply => {
                    let (lt, rt) = (type_of(&b.left, schema), type_of(&b.right, schema));
                    let numeric = |t: &Option<DataType>| {
                        t.as_ref()
                            .is_some_and(|t| t.is_integer() || t.is_floating())
                    };
                    let dates = b.op == Minus
                        && lt == Some(DataType::Date32)
                        && rt == Some(DataType::Date32);
                    let temporal =
                        |t: &Option<DataType>| t.as_ref().is_some_and(|t| t.is_temporal());
                    if (numeric(&lt) && numeric(&rt)) || dates {
                        Ok(())
                    } else if temporal(&lt) || temporal(&rt) {
                        bad(format!(
                            "`{}` on {} and {}: date ± interval (or ± a number) raises when the result overflows: use add_days(date, n), which gives NULL outside the calendar, or date - date for a number of days",
                            b.op,
                            lt.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                            rt.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                        ))
                    } else {
                        bad(format!(
                            "`{}` on {} and {}: only integer and float arithmetic (wrapping) and date - date are allowed",
                            b.op,
                            lt.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                            rt.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                        ))
                    }
                }
                Divide | Modulo => bad(format!(
                    "`{}` raises on a zero divisor: use safe_div(a, b)",
                    b.op
                )),
                other => bad(format!("operator `{other}` is not on the allow-list")),
            }
        }
        // Every cast, whether written or inserted by type coercion, and `arrow_cast` /
        // `arrow_try_cast`, which the simplifier turns into casts.
        Expr::Cast(c) => {
            let to = c.field.data_type();
            match type_of(&c.expr, schema) {
                Some(from) => match functions::cast_refusal(&from, to, false) {
                    Some(why) => bad(why),
                    None => Ok(()),
                },
                None => bad(format!(
                    "CAST to {to} of an expression of unknown type: use TRY_CAST"
                )),
            }
        }
        Expr::TryCast(c) => {
            let to = c.field.data_type();
            match type_of(&c.expr, schema) {
                Some(from) => match functions::cast_refusal(&from, to, true) {
                    Some(why) => bad(why),
                    None => Ok(()),
                },
                None => bad(format!("TRY_CAST to {to} of an expression of unknown type")),
            }
        }
        Expr::ScalarFunction(f) => {
            let name = f.name();
            if let Some(why) = functions::scalar_name_refusal(name) {
                return bad(why);
            }
            let Some(allowance) = functions::scalar_allowance(name) else {
                return bad(format!("function `{name}` is not on the allow-list"));
            };
            match allowance.rule {
                ArgRule::Any => Ok(()),
                ArgRule::DatePartUnit => match f.args.first().map(unalias) {
                    Some(Expr::Literal(unit, _)) => {
                        let value = f.args.get(1).and_then(|x| type_of(x, schema));
                        match functions::date_part_refusal(unit, value.as_ref()) {
                            Some(why) => bad(why),
                            None => Ok(()),
                        }
                    }
                    _ => bad(format!(
                        "`{name}` needs a literal unit as its first argument"
                    )),
                },
                ArgRule::RoundDigits => {
                    let Some(value) = f.args.first().and_then(|x| type_of(x, schema)) else {
                        return bad(format!("`{name}` of an expression of unknown type"));
                    };
                    if !(value.is_integer() || value.is_floating()) {
                        return bad(format!("`{name}` of {value}: only integers and floats"));
                    }
                    let digits = match f.args.get(1).map(unalias) {
                        // One argument: round to 0 digits, which never raises.
                        None => return Ok(()),
                        Some(Expr::Literal(v, _)) => Some(v),
                        Some(_) => None,
                    };
                    if functions::round_digits_allowed(&value, digits) {
                        Ok(())
                    } else {
                        bad(format!(
                            "`{name}` of {value} to a number of digits that is not a literal 0 or more: DataFusion raises on overflow when it rounds an integer to negative digits; round a float, or give a literal 0 or more"
                        ))
                    }
                }
            }
        }
        Expr::ScalarSubquery(sq) => subquery(sq, plan, dict),
        Expr::Exists(e) => subquery(&e.subquery, plan, dict),
        Expr::InSubquery(i) => subquery(&i.subquery, plan, dict),
        Expr::SetComparison(_) => Err(refusal(
            Rule::Subquery,
            plan,
            "a subquery that DataFusion could not turn into a join",
        )),
        Expr::OuterReferenceColumn(..) => Err(refusal(
            Rule::Subquery,
            plan,
            "a correlated reference that DataFusion could not decorrelate",
        )),
        other => bad(format!(
            "expression `{}` is not on the allow-list",
            other.schema_name()
        )),
    }
}
