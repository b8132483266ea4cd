//! The OpenAPI document is the whole truth. A schema-conformance fuzzer (CI runs
//! schemathesis, `.ci/schemathesis.sh`) judges the server by `/openapi.json`: every status an
//! operation can answer must be listed, and every parameter must say which values it takes,
//! so that the values the document allows are answered and the others refused with a 400.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{StatusCode, header};
use outreach_warehouse::api::{Limits, app};
use outreach_warehouse::ledger::Ledger;
use outreach_warehouse::metrics::Catalog;
use outreach_warehouse::present::views::COMPARE_BY;
use serde_json::Value;

use crate::common::server::{
    app_for, assert_error, current_doc, get, get_as, published, roomy, state, with_researcher,
};

const HANDLERS: &str = include_str!("../../../src/api/handlers.rs");
const ERRORS: &str = include_str!("../../../src/api/error.rs");
const ROUTES_RS: &str = include_str!("../../../src/api/routes.rs");

/// The document as the server builds it.
fn document() -> Value {
    serde_json::to_value(outreach_warehouse::api::openapi::document()).unwrap()
}

/// Every operation of the document: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

/// `src` with comments and the insides of string and char literals blanked out, lines kept:
/// what is left is code, so a status named in a message or a comment is not counted.
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if c.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c[i] == '\'' && (c.get(i + 2) == Some(&'\'') || c.get(i + 1) == Some(&'\\')) {
            // A char literal ('x', '\n', '\u{0}'); a lifetime ('a) has no closing quote.
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            out.push_str("' '");
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The top-level functions of `code` by name, each with its text from `fn` to its closing
/// brace; an `impl X for Name` block counts as a function called `Name` (an extractor).
fn functions(code: &str) -> BTreeMap<String, String> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let name = if let Some(pos) = line.find("fn ").filter(|_| {
            [
                "fn ",
                "pub fn ",
                "pub(super) fn ",
                "async fn ",
                "pub async fn ",
            ]
            .iter()
            .any(|p| line.starts_with(p))
        }) {
            line[pos + 3..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap()
                .to_string()
        } else if line.starts_with("impl ") && line.contains(" for ") {
            line.rsplit(" for ")
                .next()
                .unwrap()
                .trim_end_matches('{')
                .trim()
                .to_string()
        } else {
            continue;
        };
        let end = (i..lines.len())
            .find(|&j| lines[j] == "}")
            .unwrap_or_else(|| panic!("{name} has no closing brace at the start of a line"));
        out.insert(name, lines[i..=end].join("\n"));
    }
    out
}

/// The identifiers that follow `prefix` (such as `ApiError::`) in `code`.
fn named_after(code: &str, prefix: &str) -> BTreeSet<String> {
    code.match_indices(prefix)
        .map(|(at, _)| {
            code[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .collect()
}

/// Whether `code` calls the function `name` (not a method or a path's function of that name).
fn calls(code: &str, name: &str) -> bool {
    code.match_indices(&format!("{name}(")).any(|(at, _)| {
        code[..at]
            .chars()
            .next_back()
            .is_none_or(|p| !(p.is_alphanumeric() || p == '_' || p == '.' || p == ':'))
    })
}

/// The status of each [`ApiError`] variant, read from `ApiError::status` in `error.rs`.
fn variant_statuses() -> BTreeMap<String, u16> {
    let methods = functions_in_impls(&code_only(ERRORS));
    let status_fn = &methods["status"];
    let mut out = BTreeMap::new();
    for line in status_fn.lines().filter(|l| l.contains("=> StatusCode::")) {
        let variant = named_after(line, "ApiError::");
        let status = named_after(line, "StatusCode::");
        assert_eq!((variant.len(), status.len()), (1, 1), "{line}");
        let (variant, status) = (variant.first().unwrap(), status.first().unwrap());
        out.insert(variant.clone(), code_of(status));
    }
    assert!(out.len() >= 10, "ApiError::status was not read: {out:?}");
    out
}

/// The methods of `impl` blocks, by name, indented one level.
fn functions_in_impls(code: &str) -> BTreeMap<String, String> {
    let dedented: String = code
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    functions(&dedented)
}

/// A `StatusCode` constant's code.
fn code_of(name: &str) -> u16 {
    let s = match name {
        "OK" => StatusCode::OK,
        "CREATED" => StatusCode::CREATED,
        "NOT_MODIFIED" => StatusCode::NOT_MODIFIED,
        "BAD_REQUEST" => StatusCode::BAD_REQUEST,
        "UNAUTHORIZED" => StatusCode::UNAUTHORIZED,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "METHOD_NOT_ALLOWED" => StatusCode::METHOD_NOT_ALLOWED,
        "CONFLICT" => StatusCode::CONFLICT,
        "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
        "UNPROCESSABLE_ENTITY" => StatusCode::UNPROCESSABLE_ENTITY,
        "TOO_MANY_REQUESTS" => StatusCode::TOO_MANY_REQUESTS,
        "INTERNAL_SERVER_ERROR" => StatusCode::INTERNAL_SERVER_ERROR,
        "SERVICE_UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        "GATEWAY_TIMEOUT" => StatusCode::GATEWAY_TIMEOUT,
        other => panic!("StatusCode::{other} is not in this test's table: add it"),
    };
    s.as_u16()
}

/// What the code of one function can answer, read from its text: the statuses of the
/// `ApiError` variants it names, the `StatusCode`s it names, those of the functions of the
/// same file it calls (an extractor counts as called when a parameter has its type), and,
/// when it returns an `ApiResult`, those of `From<crate::Error>` for each `?` that passes a
/// library error on unconverted (a statement with a `?` but no `map_err`, `ok_or` or call of
/// a function of the file).
struct StatusReader {
    functions: BTreeMap<String, String>,
    variants: BTreeMap<String, u16>,
    from_library: BTreeSet<u16>,
}

impl StatusReader {
    fn new(source: &str) -> StatusReader {
        let variants = variant_statuses();
        let errors = code_only(ERRORS);
        let from = errors
            .split("impl From<crate::Error> for ApiError")
            .nth(1)
            .expect("error.rs converts crate::Error")
            .split("\n}\n")
            .next()
            .unwrap();
        let from_library: BTreeSet<u16> = named_after(from, "ApiError::")
            .iter()
            .map(|v| variants[v])
            .collect();
        assert!(from_library.contains(&500), "{from_library:?}");
        StatusReader {
            functions: functions(&code_only(source)),
            variants,
            from_library,
        }
    }

    fn statuses(&self, name: &str) -> BTreeSet<u16> {
        let mut seen = BTreeSet::new();
        let mut out = BTreeSet::new();
        self.collect(name, &mut seen, &mut out);
        out
    }

    fn collect(&self, name: &str, seen: &mut BTreeSet<String>, out: &mut BTreeSet<u16>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        let body = &self.functions[name];
        for v in named_after(body, "ApiError::") {
            let status = self
                .variants
                .get(&v)
                .unwrap_or_else(|| panic!("{name} names ApiError::{v}, which has no status"));
            out.insert(*status);
        }
        out.extend(named_after(body, "StatusCode::").iter().map(|s| code_of(s)));
        let local = |text: &str| -> Vec<String> {
            self.functions
                .keys()
                .filter(|f| f.as_str() != name && calls(text, f))
                .cloned()
                .collect()
        };
        for callee in local(body) {
            self.collect(&callee, seen, out);
        }
        for (extractor, _) in self.functions.iter().filter(|(f, _)| {
            f.chars().next().is_some_and(char::is_uppercase) && body.contains(&format!(": {f}"))
        }) {
            self.collect(extractor, seen, out);
        }
        let signature = body.split('{').next().unwrap_or_default();
        if signature.contains("ApiResult") {
            let passes_library_error = body.split(';').any(|statement| {
                statement.contains('?')
                    && !statement.contains("map_err")
                    && !statement.contains("ok_or")
                    && local(statement).is_empty()
            });
            if passes_library_error {
                out.extend(&self.from_library);
            }
        }
    }
}

/// Every status an operation's handler can answer (read from `handlers.rs` and `error.rs`)
/// and every status the router's layers answer on every route (the rate limiter's and the
/// timeout's, read from `routes.rs`) is listed by the operation in the document: the fuzzer
/// found a 429 that `GET /v1/requests/{id}` did not list.
#[test]
fn every_operation_lists_each_status_its_handler_and_the_layers_can_answer() {
    let handlers = StatusReader::new(HANDLERS);
    let routes = StatusReader::new(ROUTES_RS);
    let mut layers = BTreeSet::new();
    for layer in ["too_many", "json_timeout"] {
        layers.extend(routes.statuses(layer));
    }
    assert!(
        [429, 500, 504].iter().all(|s| layers.contains(s)),
        "{layers:?}"
    );
    // A sanity check of the reader on the submission handler, which answers the most statuses.
    let submit = handlers.statuses("submit");
    for s in [201, 400, 401, 409, 413, 422, 429, 500, 503] {
        assert!(submit.contains(&s), "submit: {s} not read in {submit:?}");
    }
    let doc = document();
    let ops = operations(&doc);
    assert_eq!(ops.len(), outreach_warehouse::api::ROUTES.len());
    let mut missing = Vec::new();
    for (method, path, op) in &ops {
        let handler = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId naming its handler"));
        assert!(
            handlers.functions.contains_key(handler),
            "{method} {path}: no function {handler} in handlers.rs"
        );
        let listed: BTreeSet<u16> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        let mut can = handlers.statuses(handler);
        can.extend(&layers);
        for status in can.difference(&listed) {
            missing.push(format!(
                "{method} {path} ({handler}) does not list {status}"
            ));
        }
        // Every error answer is the JSON error body.
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"];
                let is_error = schema["$ref"] == "#/components/schemas/ErrorBody";
                // `/healthz` answers 503 with its own body, the health view.
                assert!(
                    is_error || (path == "/healthz" && status == "503"),
                    "{method} {path} {status}: {response}"
                );
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// The values of a parameter's schema: its pattern, or its list of values.
fn pattern_of(p: &Value) -> Option<&str> {
    p["schema"]["pattern"].as_str()
}

fn values_of(p: &Value) -> Option<Vec<String>> {
    p["schema"]["enum"]
        .as_array()
        .map(|vs| vs.iter().map(|v| v.as_str().unwrap().to_string()).collect())
}

/// The names `compare` takes and the `kind:name` the dashboard takes, from the catalog's
/// per-program files.
fn catalog_metrics() -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let catalog = Catalog::standard().unwrap();
    let mut kinds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in catalog.per_program() {
        let named = f
            .statistics
            .iter()
            .map(|s| ("count", &s.name))
            .chain(f.rates.iter().map(|r| ("rate", &r.name)))
            .chain(f.differences.iter().map(|d| ("difference", &d.name)));
        for (kind, name) in named {
            kinds.entry(name.clone()).or_default().insert(kind.into());
        }
    }
    let keys = kinds
        .iter()
        .flat_map(|(name, ks)| ks.iter().map(move |k| format!("{k}:{name}")))
        .collect();
    (kinds, keys)
}

/// A fuzzer sends the values the document allows, so every path and query parameter states a
/// pattern or a list of values, from the code's own constants, the catalog and the data
/// dictionary; the one free text parameter says so; typed ones have their type.
#[test]
fn every_parameter_states_a_pattern_or_its_values() {
    let doc = document();
    let (kinds, keys) = catalog_metrics();
    let names: BTreeSet<String> = kinds.keys().cloned().collect();
    let dictionary = outreach_warehouse::dictionary::Dictionary::builtin().unwrap();
    assert_eq!(
        dictionary
            .table("programs")
            .and_then(|t| t.column("program_id"))
            .and_then(|c| c.pattern.as_deref()),
        Some("[A-Za-z][A-Za-z0-9_.:-]{0,63}|[0-9]{1,8}"),
        "the dictionary's program id changed: update the regular expression below"
    );
    let program_id = r"^(?:[A-Za-z][\-.0-9:A-Z_a-z]{0,63}|[0-9]{1,8})$";
    let free = [("/v1/releases", "name")];
    let mut checked = 0;
    for (method, path, op) in operations(&doc) {
        for p in op["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap();
            let at = format!("{method} {path} {name}");
            assert!(p["in"] == "path" || p["in"] == "query", "{at}: {p}");
            let set = |v: Option<Vec<String>>| -> BTreeSet<String> {
                v.unwrap_or_else(|| panic!("{at}: no list of values: {p}"))
                    .into_iter()
                    .collect()
            };
            match name {
                "quarter" => assert_eq!(pattern_of(p), Some("^[0-9]{4}Q[1-4]$"), "{at}"),
                "program_id" | "program" => assert_eq!(pattern_of(p), Some(program_id), "{at}"),
                "id" if path == "/v1/requests/{id}" => assert_eq!(
                    pattern_of(p),
                    Some(outreach_warehouse::requests::REQUEST_ID_PATTERN),
                    "{at}"
                ),
                "id" | "current" | "page" | "size" => assert!(
                    p["schema"]["type"] == "integer" || p["schema"]["type"] == "boolean",
                    "{at}: {p}"
                ),
                "since" => assert!(
                    pattern_of(p).is_some_and(|x| x.starts_with("^[0-9]{4}-[0-9]{2}-[0-9]{2}")),
                    "{at}: {p}"
                ),
                "format" => assert_eq!(
                    set(values_of(p)),
                    BTreeSet::from(["csv", "json"].map(String::from))
                ),
                "kind" => assert_eq!(
                    set(values_of(p)),
                    BTreeSet::from(["count", "difference", "rate"].map(String::from))
                ),
                "by" => assert_eq!(
                    set(values_of(p)),
                    COMPARE_BY
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<BTreeSet<String>>()
                ),
                "metric" if path == "/" => assert_eq!(set(values_of(p)), keys, "{at}"),
                "metric" => assert_eq!(set(values_of(p)), names, "{at}"),
                _ if free.contains(&(path.as_str(), name)) => assert!(
                    p["description"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("Any text")),
                    "{at}: a free value says so: {p}"
                ),
                _ => panic!("{at}: no pattern, list of values or type is known: {p}"),
            }
            // Whatever the name, a string parameter is constrained unless it is free text.
            if p["schema"]["type"] == "string" && !free.contains(&(path.as_str(), name)) {
                assert!(
                    pattern_of(p).is_some() || values_of(p).is_some(),
                    "{at}: {p}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} parameters");
}

/// Every answer that has a CSV form (an operation with `format`) lists `text/csv` beside its
/// JSON: the fuzzer's content-type check refused the CSV it got for `?format=csv`.
#[tokio::test(flavor = "multi_thread")]
async fn every_csv_answer_is_documented_as_text_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let app = app_for(&wh).await;
    let release = current_doc(&wh, "2025Q1")["release_id"].to_string();
    // A head the warehouse signed, for `/v1/ledger/heads/{size}`.
    let head_size = Ledger::open_read_only(&wh)
        .unwrap()
        .chain_head()
        .unwrap()
        .unwrap()
        .size
        .to_string();
    let doc = document();
    let mut with_csv = 0;
    for (method, path, op) in operations(&doc) {
        let has_format = op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "format"));
        let content = &op["responses"]["200"]["content"];
        assert_eq!(
            content["text/csv"].is_object(),
            has_format,
            "{method} {path}: {content}"
        );
        if !has_format {
            continue;
        }
        with_csv += 1;
        let uri = path
            .replace("{quarter}", "2025Q1")
            .replace("{program_id}", "P1")
            .replace("{page}", "1")
            .replace("{size}", &head_size)
            .replace("{id}", &release);
        let uri = if uri.ends_with("/compare") {
            format!("{uri}?metric=identified&format=csv")
        } else {
            format!("{uri}?format=csv")
        };
        let r = get(&app, &uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
        assert!(
            r.header(header::CONTENT_TYPE).starts_with("text/csv"),
            "{uri}"
        );
    }
    assert_eq!(with_csv, 12);
}

/// `GET /v1/requests/{id}` without a token, once the client's requests run out, is answered
/// 429, and the document lists it.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_request_without_a_token_gets_a_status_the_document_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let tight = Limits {
        per_ip_per_second: 1.0 / 600.0,
        per_ip_burst: 2,
        ..roomy()
    };
    let app = app(state(&wh, tight).await);
    let uri = format!("/v1/requests/{}", "0".repeat(32));
    let statuses: Vec<StatusCode> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(get(&app, &uri).await.status);
        }
        out
    };
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_error(
        &get(&app, &uri).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    );
    let doc = document();
    let listed = doc["paths"]["/v1/requests/{id}"]["get"]["responses"]
        .as_object()
        .unwrap();
    for s in statuses {
        assert!(
            listed.contains_key(s.as_str()),
            "{s} is not listed: {:?}",
            listed.keys()
        );
    }
    assert!(listed["429"]["headers"]["Retry-After"].is_object());
}

/// The values the document allows are answered without a 400: every format, grouping and
/// metric (with each kind it has), every metric of the dashboard, and a quarter written
/// right but not published, which is a 404 like any other thing not published.
#[tokio::test(flavor = "multi_thread")]
async fn every_documented_value_is_answered_without_a_400() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let app = app_for(&wh).await;
    for format in ["json", "csv"] {
        for route in ["/v1/programs", "/v1/metrics", "/v1/quarters", "/v1/budget"] {
            let r = get(&app, &format!("{route}?format={format}")).await;
            assert_eq!(r.status, StatusCode::OK, "{route} {format}: {}", r.text());
        }
    }
    for by in COMPARE_BY {
        let uri = format!("/v1/quarters/2025Q1/compare?metric=identified&by={by}");
        let r = get(&app, &uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
    }
    let (kinds, keys) = catalog_metrics();
    for (name, ks) in &kinds {
        for kind in ks {
            let uri = format!("/v1/quarters/2025Q1/compare?metric={name}&kind={kind}");
            let r = get(&app, &uri).await;
            assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
        }
    }
    for key in &keys {
        let uri = format!("/?quarter=2025Q1&metric={key}");
        let r = get(&app, &uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
    }
    for (uri, code) in [
        ("/v1/quarters/2031Q1/programs/P1", "not_found"),
        ("/v1/quarters/0000Q4/compare?metric=identified", "not_found"),
        ("/?quarter=2031Q1", "not_found"),
        ("/?quarter=2025Q1&program=P9", "not_found"),
        ("/?program=P9", "not_found"),
    ] {
        assert_error(&get(&app, uri).await, StatusCode::NOT_FOUND, code);
    }
    let none = get(&app, "/v1/releases?quarter=2031Q1").await;
    assert_eq!(none.status, StatusCode::OK, "{}", none.text());
    assert_eq!(none.json(), serde_json::json!([]));
    for since in [
        "2025-01-01",
        "2025-01-01T00:00:00Z",
        "2025-01-01T00:00:00.5%2B02:00",
        "1999-99-99",
    ] {
        let r = get(&app, &format!("/v1/releases?since={since}")).await;
        assert_eq!(r.status, StatusCode::OK, "{since}: {}", r.text());
    }
}

/// The values the document refuses are 400s: a quarter written otherwise than `2025Q3`
/// (which the command line would take), a `since` that is not a day, empty choices of the
/// dashboard, also once its default page is kept in memory (`?quarter=` is not the page of no
/// choice), and a metric that is not a standard one.
#[tokio::test(flavor = "multi_thread")]
async fn values_the_document_refuses_are_400() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "rosa", 0.0, roomy()).await;
    let app = app(st);
    assert_eq!(get(&app, "/").await.status, StatusCode::OK);
    for uri in [
        "/v1/quarters/2025q1/programs/P1",
        "/v1/quarters/%202025Q1/programs/P1",
        "/v1/quarters/2025Q1%0A/compare?metric=identified",
        "/v1/releases?quarter=2025q1",
        "/v1/releases?quarter=",
        "/v1/releases?since=",
        "/v1/releases?since=yesterday",
        "/v1/releases?since=2025-1-1",
        "/v1/releases?since=2025-01-01T12:00",
        "/v1/releases?since=2025-01-01%20",
        "/v1/releases?current=maybe",
        "/v1/programs?format=",
        "/?quarter=",
        "/?quarter=2025q1",
        "/?metric=",
        "/?metric=engagement_30d",
        "/?quarter=2025Q1&metric=rate:nothing",
    ] {
        let r = get(&app, uri).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    }
    let r = get_as(&app, "/v1/requests/ABC", &token).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
}

/// The reader of the code above finds what each function answers.
#[test]
fn the_status_reader_reads_variants_calls_extractors_and_library_errors() {
    let source = "\
fn helper() -> ApiResult<()> {
    Err(ApiError::NotFound(\"ApiError::Timeout\".into()))
}

pub async fn handler(researcher: Researcher) -> ApiResult<Response> {
    // ApiError::MethodNotAllowed in a comment
    helper()?;
    let x = library_call()?;
    let c = '\"';
    Ok(StatusCode::CREATED.into_response())
}

impl FromRequestParts<AppState> for Researcher {
    async fn from_request_parts() -> ApiResult<Researcher> {
        Err(ApiError::Unauthorized)
    }
}

fn quiet() -> Option<u8> {
    let v = thing()?;
    Some(v)
}
";
    let reader = StatusReader::new(source);
    assert_eq!(
        reader.statuses("helper"),
        BTreeSet::from([404]),
        "{:?}",
        reader.functions
    );
    let handler = reader.statuses("handler");
    for s in [404, 201, 401, 500, 409, 422] {
        assert!(handler.contains(&s), "{s} not in {handler:?}");
    }
    assert!(!handler.contains(&504) && !handler.contains(&405));
    assert!(reader.statuses("quiet").is_empty());
}
