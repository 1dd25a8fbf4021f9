//! The SQLite store: one table of items (the columns the queries filter and
//! group on, plus the item's full JSON) and one of rejections, each bounded.

use std::path::Path;

use std::collections::HashMap;

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::validate::{self, ItemType};

/// The most rejections kept; older ones are deleted first.
pub const MAX_REJECTIONS: i64 = 10_000;

/// The most bytes of a refused item (or body) kept with its rejection.
pub const MAX_REJECTED_ITEM_BYTES: usize = 4096;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    time TEXT NOT NULL,
    item_type TEXT NOT NULL,
    role TEXT,
    role_instance TEXT,
    operation_id TEXT,
    operation_name TEXT,
    parent_id TEXT,
    item_id TEXT,
    name TEXT,
    success INTEGER,
    result_code TEXT,
    duration_ms REAL,
    target TEXT,
    dependency_type TEXT,
    message TEXT,
    url TEXT,
    data TEXT,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_operation ON items (operation_id, ts);
CREATE INDEX IF NOT EXISTS items_ts ON items (ts);
CREATE INDEX IF NOT EXISTS items_type ON items (item_type, ts);
CREATE INDEX IF NOT EXISTS items_role ON items (role, ts);
CREATE TABLE IF NOT EXISTS rejections (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    item_index INTEGER,
    status INTEGER NOT NULL,
    message TEXT NOT NULL,
    item TEXT NOT NULL
);
";

/// The schema version [`AGGREGATES`] brings a database to.
const VERSION: i64 = 1;

/// What keeps the map, failures and performance off a scan of the items
/// (schema version 1): per item columns resolved at insert, partial
/// indexes, and aggregate tables kept by [`Store::insert`] in the batch's
/// transaction: each batch's changes (its items in, the items retention
/// deletes out, dependencies whose callee changed moved from one edge to
/// the other) summed in memory and written once per key, so deletes
/// decrement exactly what inserts incremented.
///
/// In the aggregates' keys a missing (NULL) role, name or result code is
/// the integer 0, which is unequal to every text (so an upsert finds its
/// row, where NULLs would all differ) and sorts before every text, as
/// NULL does. Durations are summed in integer ticks of 100 ns (the
/// precision of the service's duration format), so sums do not drift as
/// items come and go.
const AGGREGATES: &str = "
ALTER TABLE items ADD COLUMN callee_role TEXT;
ALTER TABLE items ADD COLUMN bucket INTEGER;
CREATE INDEX items_request_perf ON items (role, name, duration_ms) WHERE item_type = 'request';
CREATE INDEX items_failed ON items (item_type, name, result_code, operation_id) WHERE success = 0;
CREATE INDEX items_exception ON items (name, operation_id) WHERE item_type = 'exception';
CREATE TABLE request_stats (
    role NOT NULL, name NOT NULL,
    requests INTEGER NOT NULL, failed INTEGER NOT NULL, timed INTEGER NOT NULL,
    ticks INTEGER NOT NULL,
    PRIMARY KEY (role, name)
) WITHOUT ROWID;
CREATE TABLE request_hist (
    role NOT NULL, name NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (role, name, bucket)
) WITHOUT ROWID;
CREATE TABLE edges (
    source TEXT NOT NULL, target TEXT NOT NULL,
    calls INTEGER NOT NULL, failures INTEGER NOT NULL, timed INTEGER NOT NULL,
    ticks INTEGER NOT NULL,
    PRIMARY KEY (source, target)
) WITHOUT ROWID;
CREATE TABLE failure_groups (
    kind TEXT NOT NULL, name NOT NULL, result_code NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (kind, name, result_code)
) WITHOUT ROWID;
";

/// What an item adds to (or takes from) the aggregates: its columns.
struct Counted {
    item_type: String,
    role: Option<String>,
    name: Option<String>,
    success: Option<bool>,
    result_code: Option<String>,
    duration_ms: Option<f64>,
    bucket: Option<i64>,
    dependency_type: Option<String>,
    target: Option<String>,
    callee_role: Option<String>,
}

/// The columns of [`Counted`], in `SELECT` order.
const COUNTED: &str = "item_type, role, name, success, result_code, duration_ms, bucket, \
    dependency_type, target, callee_role";

impl Counted {
    fn from_row(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Counted> {
        Ok(Counted {
            item_type: row.get(at)?,
            role: row.get(at + 1)?,
            name: row.get(at + 2)?,
            success: row.get(at + 3)?,
            result_code: row.get(at + 4)?,
            duration_ms: row.get(at + 5)?,
            bucket: row.get(at + 6)?,
            dependency_type: row.get(at + 7)?,
            target: row.get(at + 8)?,
            callee_role: row.get(at + 9)?,
        })
    }
}

/// A batch's changes to the aggregates, summed in memory and written once
/// per key at the end of the batch (in its transaction).
#[derive(Default)]
struct Deltas {
    /// (role, name): requests, failed, timed, ticks.
    requests: HashMap<(Option<String>, Option<String>), [i64; 4]>,
    /// (role, name, bucket): requests.
    hist: HashMap<(Option<String>, Option<String>, i64), i64>,
    /// (source, target): calls, failures, timed, ticks.
    edges: HashMap<(String, String), [i64; 4]>,
    /// (kind, name, result code): items.
    failures: HashMap<(String, Option<String>, Option<String>), i64>,
}

/// 100 ns ticks, as SQLite's `CAST(round(ms * 10000) AS INTEGER)`. (A
/// sum of ticks that outgrows an integer saturates here and becomes a
/// float in SQLite, whose `+` does not fail; queries sum with `TOTAL`.)
fn ticks(duration_ms: Option<f64>) -> i64 {
    duration_ms.map_or(0, |ms| (ms * 10_000.0).round() as i64)
}

impl Deltas {
    /// Counts `r` with sign `d`.
    fn count(&mut self, r: &Counted, d: i64) {
        let failed = i64::from(r.success == Some(false));
        let timed = i64::from(r.duration_ms.is_some());
        match r.item_type.as_str() {
            "request" => {
                let e = self
                    .requests
                    .entry((r.role.clone(), r.name.clone()))
                    .or_default();
                e[0] += d;
                e[1] += d * failed;
                e[2] += d * timed;
                e[3] = e[3].saturating_add(d * ticks(r.duration_ms));
                if let Some(b) = r.bucket {
                    *self
                        .hist
                        .entry((r.role.clone(), r.name.clone(), b))
                        .or_default() += d;
                }
            }
            "dependency" => self.edge(r, r.callee_role.as_deref(), d),
            _ => {}
        }
        let kind = r.item_type.as_str();
        if (failed == 1 && (kind == "request" || kind == "dependency")) || kind == "exception" {
            *self
                .failures
                .entry((r.item_type.clone(), r.name.clone(), r.result_code.clone()))
                .or_default() += d;
        }
    }

    /// Counts dependency `r` with sign `d` on its edge to `callee` (a role,
    /// else its target); in-process dependencies are not on the map.
    fn edge(&mut self, r: &Counted, callee: Option<&str>, d: i64) {
        if r.dependency_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("inproc"))
        {
            return;
        }
        let source = format!("role:{}", r.role.as_deref().unwrap_or(""));
        let target = match callee {
            Some(role) => format!("role:{role}"),
            None => format!(
                "external:{}",
                r.target
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .or(r.dependency_type.as_deref())
                    .or(r.name.as_deref())
                    .unwrap_or("")
            ),
        };
        let e = self.edges.entry((source, target)).or_default();
        e[0] += d;
        e[1] += d * i64::from(r.success == Some(false));
        e[2] += d * i64::from(r.duration_ms.is_some());
        e[3] = e[3].saturating_add(d * ticks(r.duration_ms));
    }

    /// Writes the sums, and deletes the rows they bring to zero.
    fn apply(self, tx: &rusqlite::Transaction<'_>) -> Result<(), String> {
        let k = |v: &Option<String>| match v {
            Some(s) => rusqlite::types::Value::Text(s.clone()),
            None => rusqlite::types::Value::Integer(0),
        };
        let run = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<(), String> {
            tx.prepare_cached(sql)
                .and_then(|mut s| s.execute(args))
                .map(drop)
                .map_err(err)
        };
        for ((role, name), [n, failed, timed, t]) in self.requests {
            if n == 0 && failed == 0 && timed == 0 && t == 0 {
                continue;
            }
            let (role, name) = (k(&role), k(&name));
            run(
                "INSERT INTO request_stats VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT DO UPDATE SET requests = requests + excluded.requests, \
                 failed = failed + excluded.failed, timed = timed + excluded.timed, \
                 ticks = ticks + excluded.ticks",
                &[&role, &name, &n, &failed, &timed, &t],
            )?;
            if n < 0 {
                run(
                    "DELETE FROM request_stats WHERE role = ?1 AND name = ?2 AND requests <= 0",
                    &[&role, &name],
                )?;
            }
        }
        for ((role, name, b), n) in self.hist {
            if n == 0 {
                continue;
            }
            let (role, name) = (k(&role), k(&name));
            run(
                "INSERT INTO request_hist VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT DO UPDATE SET n = n + excluded.n",
                &[&role, &name, &b, &n],
            )?;
            if n < 0 {
                run(
                    "DELETE FROM request_hist WHERE role = ?1 AND name = ?2 AND bucket = ?3 \
                     AND n <= 0",
                    &[&role, &name, &b],
                )?;
            }
        }
        for ((source, target), [n, failures, timed, t]) in self.edges {
            if n == 0 && failures == 0 && timed == 0 && t == 0 {
                continue;
            }
            run(
                "INSERT INTO edges VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT DO UPDATE SET calls = calls + excluded.calls, \
                 failures = failures + excluded.failures, timed = timed + excluded.timed, \
                 ticks = ticks + excluded.ticks",
                &[&source, &target, &n, &failures, &timed, &t],
            )?;
            if n < 0 {
                run(
                    "DELETE FROM edges WHERE source = ?1 AND target = ?2 AND calls <= 0",
                    &[&source, &target],
                )?;
            }
        }
        for ((kind, name, code), n) in self.failures {
            if n == 0 {
                continue;
            }
            let (name, code) = (k(&name), k(&code));
            run(
                "INSERT INTO failure_groups VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT DO UPDATE SET n = n + excluded.n",
                &[&kind, &name, &code, &n],
            )?;
            if n < 0 {
                run(
                    "DELETE FROM failure_groups WHERE kind = ?1 AND name = ?2 \
                     AND result_code = ?3 AND n <= 0",
                    &[&kind, &name, &code],
                )?;
            }
        }
        Ok(())
    }
}

/// Histogram buckets of request durations: bucket `b` holds durations in
/// (`R^(b-1)`, `R^b`] microseconds, bucket 0 those up to 1 µs, with `R`
/// such that bucket 199 ends at 1000 days (every duration the format can
/// say). A percentile read from it is the bucket's upper bound: at most
/// `R - 1` (17.4 %) above the true value, never below it.
const BUCKETS: i64 = 200;

fn bucket_ratio() -> f64 {
    // 1000 days in microseconds, over 199 steps.
    (86_400_000_000_000f64).ln() / (BUCKETS - 1) as f64
}

/// The bucket of a duration in milliseconds.
pub fn bucket(duration_ms: f64) -> i64 {
    let micros = duration_ms * 1000.0;
    if micros.is_nan() || micros <= 1.0 {
        return 0;
    }
    let b = (micros.ln() / bucket_ratio()).ceil();
    // A float just past a bound lands one bucket up; fine for a bound.
    (b as i64).clamp(0, BUCKETS - 1)
}

/// The upper bound of bucket `b`, in milliseconds.
pub fn bucket_upper_ms(b: i64) -> f64 {
    (b as f64 * bucket_ratio()).exp() / 1000.0
}

/// Groups of at most this many timed requests get exact percentiles (from
/// the `items_request_perf` index); larger ones read the histogram.
pub const EXACT_PERCENTILES_UP_TO: i64 = 10_000;

/// The most requests read for exact percentiles in one answer: the
/// smallest groups first, while they fit; the others read the histogram.
pub const EXACT_PERCENTILES_BUDGET: i64 = 100_000;

/// Free text (`q`) looks at the newest this many items (by arrival): a
/// scan, without an index, bounded so it answers in well under 200 ms.
pub const TEXT_SEARCH_WINDOW: i64 = 100_000;

/// The columns of an item, in `SELECT` order.
const COLUMNS: &str = "seq, time, item_type, role, role_instance, operation_id, operation_name, \
    parent_id, item_id, name, success, result_code, duration_ms, target, dependency_type, \
    message, url, data, json";

/// An accepted item, ready to be stored.
pub struct NewItem {
    ts: i64,
    item_type: ItemType,
    json: String,
    value: Value,
}

impl NewItem {
    /// An item [`validate::check`] accepted as `item_type`; `None` if its
    /// time does not parse (which the check has ruled out).
    pub fn new(value: Value, item_type: ItemType) -> Option<NewItem> {
        let ts = validate::parse_time(value.get("time")?.as_str()?)?;
        let json = serde_json::to_string(&value).ok()?;
        Some(NewItem {
            ts,
            item_type,
            json,
            value,
        })
    }
}

/// A refused item (or body), kept for the UI.
pub struct NewRejection {
    /// Its position in the posted batch; `None` for a whole body.
    pub index: Option<usize>,
    /// The status the service answers for it.
    pub status: u16,
    /// Why it was refused.
    pub message: String,
    /// The raw item, cut to [`MAX_REJECTED_ITEM_BYTES`].
    pub item: String,
}

/// The filters of `GET /api/items`.
#[derive(Default, Debug)]
pub struct ItemFilter {
    /// `request`, `dependency`, `trace`, `exception`, `event` or `metric`.
    pub item_type: Option<String>,
    /// `ai.cloud.role`.
    pub role: Option<String>,
    /// `ai.operation.id`.
    pub operation_id: Option<String>,
    /// A substring of the name, message, URL or dependency data.
    pub q: Option<String>,
    /// The response or result code.
    pub result_code: Option<String>,
    /// Items at or after this time (microseconds since the epoch).
    pub from: Option<i64>,
    /// Items at or before this time (microseconds since the epoch).
    pub to: Option<i64>,
    /// The most items returned.
    pub limit: usize,
}

/// The SQLite database behind a viewer.
pub struct Store {
    conn: Connection,
    max_items: i64,
}

fn err(e: rusqlite::Error) -> String {
    format!("database: {e}")
}

impl Store {
    /// Opens (creating it if needed) the database at `path`, or an
    /// in-memory one when `path` is `None`.
    pub fn open(path: Option<&Path>, max_items: u64) -> Result<Store, String> {
        let mut conn = match path {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                Connection::open(p).map_err(err)?
            }
            None => Connection::open_in_memory().map_err(err)?,
        };
        conn.execute_batch(SCHEMA).map_err(err)?;
        migrate(&mut conn)?;
        Ok(Store {
            conn,
            max_items: i64::try_from(max_items.max(1)).unwrap_or(i64::MAX),
        })
    }

    /// Stores accepted items and rejections, then deletes the oldest items
    /// beyond the retention bound and the oldest rejections beyond
    /// [`MAX_REJECTIONS`].
    pub fn insert(&mut self, items: &[NewItem], rejections: &[NewRejection]) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO items (ts, time, item_type, role, role_instance, operation_id, \
                     operation_name, parent_id, item_id, name, success, result_code, duration_ms, \
                     target, dependency_type, message, url, data, json, callee_role, bucket) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                     ?17, ?18, ?19, ?20, ?21)",
                )
                .map_err(err)?;
            // A dependency's callee: the request it is the parent of, found
            // when the second of the two arrives (the map never joins).
            let mut callee = tx
                .prepare_cached(
                    "SELECT role FROM items WHERE operation_id = ?1 AND parent_id = ?2 \
                     AND +item_type = 'request' AND role IS NOT NULL ORDER BY seq LIMIT 1",
                )
                .map_err(err)?;
            let mut resolve = tx
                .prepare_cached(&format!(
                    "UPDATE items SET callee_role = ?3 WHERE operation_id = ?1 AND item_id = ?2 \
                     AND +item_type = 'dependency' AND callee_role IS NULL RETURNING {COUNTED}"
                ))
                .map_err(err)?;
            let mut deltas = Deltas::default();
            for item in items {
                let v = &item.value;
                let tag = |k: &str| v.pointer(&format!("/tags/{k}")).and_then(Value::as_str);
                let base = v.pointer("/data/baseData");
                let field = |k: &str| base.and_then(|b| b.get(k)).and_then(Value::as_str);
                let first_exception = base.and_then(|b| b.pointer("/exceptions/0"));
                let exception = |k: &str| first_exception.and_then(|e| e.get(k)?.as_str());
                let (name, message, result_code, success) = match item.item_type {
                    ItemType::Request => (
                        field("name"),
                        None,
                        field("responseCode"),
                        base.and_then(|b| b.get("success")?.as_bool()),
                    ),
                    ItemType::Dependency => (
                        field("name"),
                        None,
                        field("resultCode"),
                        // The schema's default is true.
                        Some(
                            base.and_then(|b| b.get("success")?.as_bool())
                                .unwrap_or(true),
                        ),
                    ),
                    ItemType::Trace => (None, field("message"), None, None),
                    ItemType::Exception => (
                        Some(exception("typeName").unwrap_or("Exception")),
                        exception("message"),
                        None,
                        None,
                    ),
                    ItemType::Event => (field("name"), None, None, None),
                    ItemType::Metric => (
                        base.and_then(|b| b.pointer("/metrics/0/name")?.as_str()),
                        None,
                        None,
                        None,
                    ),
                };
                let duration = field("duration").and_then(validate::parse_duration_ms);
                let is_dependency = item.item_type == ItemType::Dependency;
                let is_request = item.item_type == ItemType::Request;
                let (operation_id, role) = (tag("ai.operation.id"), tag("ai.cloud.role"));
                let bucket = if is_request {
                    duration.map(bucket)
                } else {
                    None
                };
                let callee_role: Option<String> = match (is_dependency, operation_id, field("id")) {
                    (true, Some(op), Some(id)) => callee
                        .query_row(params![op, id], |r| r.get(0))
                        .optional()
                        .map_err(err)?,
                    _ => None,
                };
                stmt.execute(params![
                    item.ts,
                    validate::format_time(item.ts),
                    item.item_type.as_str(),
                    tag("ai.cloud.role"),
                    tag("ai.cloud.roleInstance"),
                    tag("ai.operation.id"),
                    tag("ai.operation.name"),
                    tag("ai.operation.parentId"),
                    field("id"),
                    name,
                    success,
                    result_code,
                    duration,
                    if is_dependency { field("target") } else { None },
                    if is_dependency { field("type") } else { None },
                    message,
                    if is_dependency { None } else { field("url") },
                    if is_dependency { field("data") } else { None },
                    item.json,
                    callee_role,
                    bucket,
                ])
                .map_err(err)?;
                let owned = |s: Option<&str>| s.map(str::to_owned);
                deltas.count(
                    &Counted {
                        item_type: item.item_type.as_str().to_owned(),
                        role: owned(role),
                        name: owned(name),
                        success,
                        result_code: owned(result_code),
                        duration_ms: duration,
                        bucket,
                        dependency_type: if is_dependency {
                            owned(field("type"))
                        } else {
                            None
                        },
                        target: if is_dependency {
                            owned(field("target"))
                        } else {
                            None
                        },
                        callee_role,
                    },
                    1,
                );
                if let (true, Some(op), Some(parent), Some(role)) =
                    (is_request, operation_id, tag("ai.operation.parentId"), role)
                {
                    let resolved = resolve
                        .query_map(params![op, parent, role], |r| Counted::from_row(r, 0))
                        .map_err(err)?;
                    for dependency in resolved {
                        let dependency = dependency.map_err(err)?;
                        deltas.edge(&dependency, None, -1);
                        deltas.edge(&dependency, Some(role), 1);
                    }
                }
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO rejections (received_at, item_index, status, message, item) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?;
            let now = validate::format_time(now_micros());
            for r in rejections {
                stmt.execute(params![
                    now,
                    r.index.and_then(|i| i64::try_from(i).ok()),
                    r.status,
                    r.message,
                    r.item
                ])
                .map_err(err)?;
            }
            if !items.is_empty() {
                let last: i64 = tx
                    .query_row("SELECT COALESCE(MAX(seq), 0) FROM items", [], |r| r.get(0))
                    .map_err(err)?;
                let bound = last.saturating_sub(self.max_items);
                if bound > 0 {
                    retire(&tx, bound, &mut callee, &mut deltas)?;
                }
            }
            deltas.apply(&tx)?;
            if !rejections.is_empty() {
                tx.execute(
                    "DELETE FROM rejections WHERE seq <= (SELECT MAX(seq) FROM rejections) - ?1",
                    [MAX_REJECTIONS],
                )
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// The items matching `filter`, newest first.
    pub fn items(&self, filter: &ItemFilter) -> Result<Vec<Value>, String> {
        let mut sql = format!("SELECT {COLUMNS} FROM items WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut eq = |sql: &mut String, column: &str, v: &Option<String>| {
            if let Some(v) = v {
                args.push(v.clone().into());
                sql.push_str(&format!(" AND {column} = ?{}", args.len()));
            }
        };
        // With free text, the type and role indexes would walk every item
        // of the type or role: a unary `+` keeps SQLite on the window.
        let plus = if filter.q.is_some() { "+" } else { "" };
        eq(&mut sql, &format!("{plus}item_type"), &filter.item_type);
        eq(&mut sql, &format!("{plus}role"), &filter.role);
        eq(&mut sql, "operation_id", &filter.operation_id);
        eq(&mut sql, "result_code", &filter.result_code);
        if let Some(q) = &filter.q {
            let escaped = q
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            args.push(format!("%{escaped}%").into());
            let n = args.len();
            sql.push_str(&format!(
                " AND (name LIKE ?{n} ESCAPE '\\' OR message LIKE ?{n} ESCAPE '\\' \
                 OR url LIKE ?{n} ESCAPE '\\' OR data LIKE ?{n} ESCAPE '\\') \
                 AND seq > (SELECT MAX(seq) FROM items) - {TEXT_SEARCH_WINDOW}"
            ));
        }
        if let Some(from) = filter.from {
            args.push(from.into());
            sql.push_str(&format!(" AND ts >= ?{}", args.len()));
        }
        if let Some(to) = filter.to {
            args.push(to.into());
            sql.push_str(&format!(" AND ts <= ?{}", args.len()));
        }
        args.push(i64::try_from(filter.limit).unwrap_or(i64::MAX).into());
        // With free text, `+ts` keeps SQLite off the time index (a walk of
        // every item, newest first, to the window's edge): it reads the
        // window by `seq` and sorts what matched.
        let order = if filter.q.is_some() { "+ts" } else { "ts" };
        sql.push_str(&format!(
            " ORDER BY {order} DESC, seq DESC LIMIT ?{}",
            args.len()
        ));
        self.select(&sql, params_from_iter(args))
    }

    /// Every item of an operation, oldest first (the first 1000).
    pub fn operation(&self, operation_id: &str) -> Result<Vec<Value>, String> {
        self.select(
            &format!(
                "SELECT {COLUMNS} FROM items WHERE operation_id = ?1 ORDER BY ts, seq LIMIT 1000"
            ),
            [operation_id],
        )
    }

    fn select(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Value>, String> {
        let mut stmt = self.conn.prepare(sql).map_err(err)?;
        let rows = stmt
            .query_map(args, |row| {
                let json: String = row.get(18)?;
                let item: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
                let properties = item
                    .pointer("/data/baseData/properties")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                Ok(json!({
                    "seq": row.get::<_, i64>(0)?,
                    "time": row.get::<_, String>(1)?,
                    "type": row.get::<_, String>(2)?,
                    "role": row.get::<_, Option<String>>(3)?,
                    "role_instance": row.get::<_, Option<String>>(4)?,
                    "operation_id": row.get::<_, Option<String>>(5)?,
                    "operation_name": row.get::<_, Option<String>>(6)?,
                    "parent_id": row.get::<_, Option<String>>(7)?,
                    "id": row.get::<_, Option<String>>(8)?,
                    "name": row.get::<_, Option<String>>(9)?,
                    "success": row.get::<_, Option<bool>>(10)?,
                    "result_code": row.get::<_, Option<String>>(11)?,
                    "duration_ms": row.get::<_, Option<f64>>(12)?,
                    "target": row.get::<_, Option<String>>(13)?,
                    "dependency_type": row.get::<_, Option<String>>(14)?,
                    "message": row.get::<_, Option<String>>(15)?,
                    "url": row.get::<_, Option<String>>(16)?,
                    "data": row.get::<_, Option<String>>(17)?,
                    "properties": properties,
                    "item": item,
                }))
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// The application map: a node per cloud role and per external
    /// dependency target, an edge per caller role and callee. From the
    /// aggregates (`request_stats`, `edges`): a dependency's callee was
    /// resolved when it or its callee's request arrived, whichever came
    /// second. Roles without requests come from the role index, one
    /// lookup per role.
    pub fn map(&self) -> Result<Value, String> {
        let mut nodes: Vec<Value> = Vec::new();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT role, SUM(requests), SUM(failed), SUM(timed), TOTAL(ticks) \
                 FROM request_stats WHERE typeof(role) = 'text' GROUP BY role",
            )
            .map_err(err)?;
        let mut with_requests: Vec<(String, Value)> = stmt
            .query_map([], |row| {
                let role: String = row.get(0)?;
                let timed: i64 = row.get(3)?;
                let ticks: f64 = row.get(4)?;
                Ok((
                    role.clone(),
                    json!({
                        "id": format!("role:{role}"),
                        "kind": "role",
                        "name": role,
                        "requests": row.get::<_, i64>(1)?,
                        "failed_requests": row.get::<_, i64>(2)?,
                        "mean_duration_ms": mean(ticks, timed),
                    }),
                ))
            })
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        // Every distinct role, by skipping along the role index.
        let mut stmt = self
            .conn
            .prepare(
                "WITH RECURSIVE roles(role) AS ( \
                   SELECT MIN(role) FROM items WHERE role IS NOT NULL \
                   UNION ALL \
                   SELECT (SELECT MIN(role) FROM items WHERE role > roles.role) FROM roles \
                   WHERE roles.role IS NOT NULL) \
                 SELECT role FROM roles WHERE role IS NOT NULL",
            )
            .map_err(err)?;
        let roles = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(err)?;
        for role in roles {
            let role = role.map_err(err)?;
            if !with_requests.iter().any(|(r, _)| *r == role) {
                with_requests.push((
                    role.clone(),
                    json!({
                        "id": format!("role:{role}"),
                        "kind": "role",
                        "name": role,
                        "requests": 0,
                        "failed_requests": 0,
                        "mean_duration_ms": null,
                    }),
                ));
            }
        }
        with_requests.sort_by(|a, b| a.0.cmp(&b.0));
        nodes.extend(with_requests.into_iter().map(|(_, node)| node));
        let mut stmt = self
            .conn
            .prepare(
                "SELECT source, target, calls, failures, timed, ticks FROM edges \
                 ORDER BY source, target",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([], |row| {
                let timed: i64 = row.get(4)?;
                let ticks: f64 = row.get(5)?;
                Ok(json!({
                    "source": row.get::<_, String>(0)?,
                    "target": row.get::<_, String>(1)?,
                    "calls": row.get::<_, i64>(2)?,
                    "failures": row.get::<_, i64>(3)?,
                    "mean_duration_ms": mean(ticks, timed),
                }))
            })
            .map_err(err)?;
        let edges = rows.collect::<Result<Vec<_>, _>>().map_err(err)?;
        let mut externals: Vec<&str> = edges
            .iter()
            .filter_map(|e| e["target"].as_str()?.strip_prefix("external:"))
            .collect();
        externals.sort_unstable();
        externals.dedup();
        for target in externals {
            nodes.push(json!({
                "id": format!("external:{target}"),
                "kind": "external",
                "name": target,
            }));
        }
        Ok(json!({ "nodes": nodes, "edges": edges }))
    }

    /// Failed requests and dependencies by name and result code, and
    /// exceptions by type, each with a count (the `failure_groups`
    /// aggregate) and a sample operation (the greatest operation id of the
    /// group, one lookup in a partial index).
    pub fn failures(&self) -> Result<Value, String> {
        let mut sample_failed = self
            .conn
            .prepare(
                "SELECT MAX(operation_id) FROM items WHERE success = 0 AND item_type = ?1 \
                 AND name IS ?2 AND result_code IS ?3",
            )
            .map_err(err)?;
        let mut sample_exception = self
            .conn
            .prepare(
                "SELECT MAX(operation_id) FROM items WHERE item_type = 'exception' AND name IS ?1",
            )
            .map_err(err)?;
        let mut groups = |kind: &str| -> Result<Vec<Value>, String> {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT name, result_code, n FROM failure_groups WHERE kind = ?1 \
                     ORDER BY n DESC, name, result_code LIMIT 1000",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map([kind], |row| {
                    Ok((key(row.get(0)?), key(row.get(1)?), row.get::<_, i64>(2)?))
                })
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            let mut out = Vec::with_capacity(rows.len());
            for (name, result_code, count) in rows {
                let group = if kind == "exception" {
                    let sample: Option<String> = sample_exception
                        .query_row(params![name], |r| r.get(0))
                        .map_err(err)?;
                    json!({ "count": count, "sample_operation_id": sample, "type": name })
                } else {
                    let sample: Option<String> = sample_failed
                        .query_row(params![kind, name, result_code], |r| r.get(0))
                        .map_err(err)?;
                    json!({ "count": count, "sample_operation_id": sample, "name": name,
                            "result_code": result_code })
                };
                out.push(group);
            }
            Ok(out)
        };
        Ok(json!({
            "requests": groups("request")?,
            "dependencies": groups("dependency")?,
            "exceptions": groups("exception")?,
        }))
    }

    /// Requests by role and name, with count, mean and p50/p95/p99
    /// durations (nearest rank). Count and mean are exact (the
    /// `request_stats` aggregate); the percentiles are exact for a group of
    /// at most [`EXACT_PERCENTILES_UP_TO`] requests (read from an index;
    /// the smallest groups first, [`EXACT_PERCENTILES_BUDGET`] requests in
    /// all), and otherwise the upper bound of the histogram bucket holding
    /// the rank (200 log-scale buckets from 1 µs to 1000 days): never below
    /// the exact value, at most 17.4 % above it.
    pub fn performance(&self) -> Result<Value, String> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT role, name, timed, ticks FROM request_stats WHERE timed > 0 \
                 ORDER BY role, name",
            )
            .map_err(err)?;
        let groups = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, rusqlite::types::Value>(0)?,
                    row.get::<_, rusqlite::types::Value>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, f64>(3)?,
                ))
            })
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let mut exact = self
            .conn
            .prepare(
                "SELECT duration_ms FROM items WHERE item_type = 'request' AND role IS ?1 \
                 AND name IS ?2 AND duration_ms IS NOT NULL ORDER BY duration_ms",
            )
            .map_err(err)?;
        let mut histogram = self
            .conn
            .prepare(
                "SELECT bucket, n FROM request_hist WHERE role = ?1 AND name = ?2 ORDER BY bucket",
            )
            .map_err(err)?;
        let mut by_size: Vec<(i64, usize)> =
            groups.iter().enumerate().map(|(i, g)| (g.2, i)).collect();
        by_size.sort_unstable();
        let mut exact_groups = vec![false; groups.len()];
        let mut budget = EXACT_PERCENTILES_BUDGET;
        for (count, i) in by_size {
            if count > EXACT_PERCENTILES_UP_TO || count > budget {
                break;
            }
            budget -= count;
            exact_groups[i] = true;
        }
        let mut operations = Vec::with_capacity(groups.len());
        for (i, (role_key, name_key, count, ticks)) in groups.into_iter().enumerate() {
            let (role, name) = (key(role_key.clone()), key(name_key.clone()));
            // Nearest rank: the smallest value with at least p of the
            // values at or below it.
            let rank = |p: f64, n: i64| ((p * n as f64).ceil() as i64).clamp(1, n.max(1));
            let (n, mean_ms, p50, p95, p99) = if exact_groups[i] {
                let durations = exact
                    .query_map(params![role, name], |r| r.get::<_, f64>(0))
                    .map_err(err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                let n = durations.len() as i64;
                if n == 0 {
                    continue;
                }
                let at = |p: f64| durations[(rank(p, n) - 1) as usize];
                let mean = durations.iter().sum::<f64>() / n as f64;
                (n, mean, at(0.50), at(0.95), at(0.99))
            } else {
                let buckets = histogram
                    .query_map(params![role_key, name_key], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                    })
                    .map_err(err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                let total: i64 = buckets.iter().map(|b| b.1).sum();
                let at = |p: f64| {
                    let want = rank(p, total);
                    let mut seen = 0;
                    for (b, n) in &buckets {
                        seen += n;
                        if seen >= want {
                            return Some(bucket_upper_ms(*b));
                        }
                    }
                    buckets.last().map(|(b, _)| bucket_upper_ms(*b))
                };
                (
                    count,
                    mean(ticks, count).unwrap_or(0.0),
                    at(0.50).unwrap_or(0.0),
                    at(0.95).unwrap_or(0.0),
                    at(0.99).unwrap_or(0.0),
                )
            };
            operations.push(json!({
                "role": role,
                "name": name,
                "count": n,
                "mean_ms": mean_ms,
                "p50_ms": p50,
                "p95_ms": p95,
                "p99_ms": p99,
            }));
        }
        Ok(json!({ "operations": operations }))
    }

    /// The newest rejections first.
    pub fn rejections(&self, limit: usize) -> Result<Value, String> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT received_at, item_index, status, message, item FROM rejections \
                 ORDER BY seq DESC LIMIT ?1",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                Ok(json!({
                    "received_at": row.get::<_, String>(0)?,
                    "index": row.get::<_, Option<i64>>(1)?,
                    "status": row.get::<_, i64>(2)?,
                    "message": row.get::<_, String>(3)?,
                    "item": row.get::<_, String>(4)?,
                }))
            })
            .map_err(err)?;
        let list = rows.collect::<Result<Vec<_>, _>>().map_err(err)?;
        Ok(json!({ "rejections": list }))
    }

    /// How many items are stored.
    pub fn count(&self) -> Result<i64, String> {
        self.conn
            .query_row("SELECT COUNT(*) FROM items", [], |r| r.get(0))
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(err)
    }
}

/// The new columns and the aggregates, computed from the items.
const BACKFILL: &str = "UPDATE items SET callee_role = (SELECT r.role FROM items r \
           WHERE r.operation_id = items.operation_id AND r.parent_id = items.item_id \
           AND +r.item_type = 'request' AND r.role IS NOT NULL ORDER BY r.seq LIMIT 1) \
         WHERE item_type = 'dependency' AND operation_id IS NOT NULL AND item_id IS NOT NULL;
         INSERT INTO request_stats SELECT COALESCE(role, 0), COALESCE(name, 0), COUNT(*), \
           COALESCE(SUM(success = 0), 0), COUNT(duration_ms), \
           TOTAL(CAST(round(duration_ms * 10000) AS INTEGER)) \
           FROM items WHERE item_type = 'request' GROUP BY 1, 2;
         INSERT INTO request_hist SELECT COALESCE(role, 0), COALESCE(name, 0), bucket, COUNT(*) \
           FROM items WHERE item_type = 'request' AND bucket IS NOT NULL GROUP BY 1, 2, 3;
         INSERT INTO failure_groups SELECT item_type, COALESCE(name, 0), \
           COALESCE(result_code, 0), COUNT(*) FROM items \
           WHERE (item_type IN ('request', 'dependency') AND success = 0) \
           OR item_type = 'exception' GROUP BY 1, 2, 3;
         INSERT INTO edges SELECT 'role:' || COALESCE(role, ''), \
           CASE WHEN callee_role IS NOT NULL THEN 'role:' || callee_role \
           ELSE 'external:' || COALESCE(NULLIF(target, ''), dependency_type, name, '') END, \
           COUNT(*), COALESCE(SUM(success = 0), 0), COUNT(duration_ms), \
           TOTAL(CAST(round(duration_ms * 10000) AS INTEGER)) FROM items \
           WHERE item_type = 'dependency' AND lower(COALESCE(dependency_type, '')) <> 'inproc' \
           GROUP BY 1, 2;";

/// Deletes the items up to `bound` (a `seq`), counting them out of the
/// aggregates; a surviving dependency whose callee's Request goes falls
/// back to the next Request it is the parent of, else to its target.
fn retire(
    tx: &rusqlite::Transaction<'_>,
    bound: i64,
    callee: &mut rusqlite::CachedStatement<'_>,
    deltas: &mut Deltas,
) -> Result<(), String> {
    // `CROSS JOIN` keeps SQLite to this order: the leaving Requests by
    // `seq`, then each one's dependency through the operation index.
    let mut orphans = tx
        .prepare_cached(
            "SELECT DISTINCT d.seq, d.operation_id, d.item_id, d.item_type, d.role, d.name, \
             d.success, d.result_code, d.duration_ms, d.bucket, d.dependency_type, d.target, \
             d.callee_role FROM items r CROSS JOIN items d ON d.operation_id = r.operation_id \
             AND d.item_id = r.parent_id \
             WHERE r.seq <= ?1 AND +r.item_type = 'request' AND r.role IS NOT NULL \
             AND r.parent_id IS NOT NULL AND +d.item_type = 'dependency' \
             AND d.callee_role = r.role AND d.seq > ?1",
        )
        .map_err(err)?;
    let orphans = orphans
        .query_map([bound], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                Counted::from_row(r, 3)?,
            ))
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let mut leaving = tx
        .prepare_cached(&format!("SELECT {COUNTED} FROM items WHERE seq <= ?1"))
        .map_err(err)?;
    let rows = leaving
        .query_map([bound], |r| Counted::from_row(r, 0))
        .map_err(err)?;
    for row in rows {
        deltas.count(&row.map_err(err)?, -1);
    }
    tx.prepare_cached("DELETE FROM items WHERE seq <= ?1")
        .and_then(|mut s| s.execute([bound]))
        .map_err(err)?;
    for (seq, operation_id, item_id, dependency) in orphans {
        let next: Option<String> = callee
            .query_row(params![operation_id, item_id], |r| r.get(0))
            .optional()
            .map_err(err)?;
        if next != dependency.callee_role {
            tx.prepare_cached("UPDATE items SET callee_role = ?2 WHERE seq = ?1")
                .and_then(|mut s| s.execute(params![seq, next]))
                .map_err(err)?;
            deltas.edge(&dependency, dependency.callee_role.as_deref(), -1);
            deltas.edge(&dependency, next.as_deref(), 1);
        }
    }
    Ok(())
}

/// Brings a database of schema version 0 (items only) to [`VERSION`]: the
/// new columns filled from the items, the aggregates computed from them
/// once, then kept by [`Store::insert`]. One transaction: a crash leaves the
/// old version, migrated again at the next open.
fn migrate(conn: &mut Connection) -> Result<(), String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version >= VERSION {
        // Builds of this branch before the aggregates were summed per batch
        // kept them with triggers; those would count every item twice now.
        conn.execute_batch(
            "DROP TRIGGER IF EXISTS items_counted; DROP TRIGGER IF EXISTS items_uncounted;
             DROP TRIGGER IF EXISTS items_request_in; DROP TRIGGER IF EXISTS items_request_out;
             DROP TRIGGER IF EXISTS items_failure_in; DROP TRIGGER IF EXISTS items_failure_out;
             DROP TRIGGER IF EXISTS items_edge_in; DROP TRIGGER IF EXISTS items_edge_out;
             DROP TRIGGER IF EXISTS items_callee_out; DROP TRIGGER IF EXISTS items_callee;",
        )
        .map_err(err)?;
        return Ok(());
    }
    let tx = conn.transaction().map_err(err)?;
    tx.execute_batch(AGGREGATES).map_err(err)?;
    {
        let mut read = tx
            .prepare("SELECT seq, duration_ms FROM items WHERE item_type = 'request' AND duration_ms IS NOT NULL")
            .map_err(err)?;
        let mut write = tx
            .prepare("UPDATE items SET bucket = ?2 WHERE seq = ?1")
            .map_err(err)?;
        let mut rows = read.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let seq: i64 = row.get(0).map_err(err)?;
            let duration: f64 = row.get(1).map_err(err)?;
            write.execute(params![seq, bucket(duration)]).map_err(err)?;
        }
    }
    tx.execute_batch(BACKFILL).map_err(err)?;
    tx.execute_batch(&format!("PRAGMA user_version = {VERSION}"))
        .map_err(err)?;
    tx.commit().map_err(err)
}

/// A mean in milliseconds from a sum of 100 ns ticks over `n`.
fn mean(ticks: f64, n: i64) -> Option<f64> {
    (n > 0).then(|| ticks / 10_000.0 / n as f64)
}

/// An aggregate's key: the integer 0 stands for NULL (see [`AGGREGATES`]).
fn key(v: rusqlite::types::Value) -> Option<String> {
    match v {
        rusqlite::types::Value::Text(t) => Some(t),
        _ => None,
    }
}

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every aggregate row and every resolved callee, as text.
    fn snapshot(store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        for sql in [
            "SELECT * FROM request_stats ORDER BY 1, 2",
            "SELECT * FROM request_hist ORDER BY 1, 2, 3",
            "SELECT * FROM edges ORDER BY 1, 2",
            "SELECT * FROM failure_groups ORDER BY 1, 2, 3",
            "SELECT seq, callee_role, bucket FROM items ORDER BY seq",
        ] {
            let mut stmt = store.conn.prepare(sql).unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |row| {
                    let cells: Vec<String> = (0..n)
                        .map(|i| format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap()))
                        .collect();
                    Ok(format!("{sql}: {}", cells.join(" | ")))
                })
                .unwrap();
            out.extend(rows.map(Result::unwrap));
        }
        out
    }

    fn item(v: Value) -> NewItem {
        let t = match v["data"]["baseType"].as_str().unwrap() {
            "RequestData" => ItemType::Request,
            "RemoteDependencyData" => ItemType::Dependency,
            "MessageData" => ItemType::Trace,
            _ => ItemType::Exception,
        };
        NewItem::new(v, t).unwrap()
    }

    /// Random items, out of order, with duplicate ids, missing roles and
    /// codes and in-process dependencies, through a small retention bound:
    /// the aggregates kept by `insert` equal those computed afresh.
    #[test]
    fn aggregates_stay_equal_to_a_recount_through_retention() {
        let mut store = Store::open(None, 120).unwrap();
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for batch in 0..60 {
            let mut items = Vec::new();
            for _ in 0..rnd(25) + 1 {
                let op = format!("op{}", rnd(15));
                let role = ["a", "b", "c", ""][rnd(4) as usize];
                let mut tags = json!({ "ai.operation.id": op });
                if rnd(6) != 0 {
                    tags["ai.cloud.role"] = json!(role);
                }
                if rnd(3) != 0 {
                    tags["ai.operation.parentId"] = json!(format!("d{}", rnd(6)));
                }
                let time = validate::format_time(1_795_996_800_000_000 + rnd(1_000_000) as i64);
                let ms = rnd(3000);
                let dur = format!(
                    "0.00:00:{:02}.{:06}",
                    ms / 1000,
                    (ms % 1000) * 1000 + rnd(999)
                );
                let success = rnd(3) != 0;
                let (base_type, base) = match rnd(4) {
                    0 => (
                        "RequestData",
                        json!({ "id": format!("r{}", rnd(10)), "name": format!("GET /{}", rnd(3)),
                                "duration": dur, "responseCode": if success { "200" } else { "500" },
                                "success": success }),
                    ),
                    1 => {
                        let mut base = json!({ "id": format!("d{}", rnd(6)), "name": "call",
                            "duration": dur, "success": success,
                            "type": (["HTTP", "InProc", "SQL"][rnd(3) as usize]),
                            "target": (["x.example", "", "y"][rnd(3) as usize]) });
                        if rnd(2) == 0 {
                            base["resultCode"] = json!(if success { "0" } else { "9" });
                        }
                        ("RemoteDependencyData", base)
                    }
                    2 => ("MessageData", json!({ "message": "hello" })),
                    _ => (
                        "ExceptionData",
                        json!({ "exceptions": [ { "typeName": (["E1", "E2"][rnd(2) as usize]),
                                "message": "m" } ] }),
                    ),
                };
                items.push(item(json!({
                    "time": time, "tags": tags,
                    "data": { "baseType": base_type, "baseData": base },
                })));
            }
            store.insert(&items, &[]).unwrap();
            if batch % 7 == 6 {
                let kept = snapshot(&store);
                store
                    .conn
                    .execute_batch(
                        "SAVEPOINT recount;
                         UPDATE items SET callee_role = NULL;
                         DELETE FROM request_stats; DELETE FROM request_hist;
                         DELETE FROM edges; DELETE FROM failure_groups;",
                    )
                    .unwrap();
                store.conn.execute_batch(BACKFILL).unwrap();
                let recounted = snapshot(&store);
                store
                    .conn
                    .execute_batch("ROLLBACK TO recount; RELEASE recount;")
                    .unwrap();
                assert_eq!(kept, recounted, "after batch {batch}");
            }
        }
        assert_eq!(store.count().unwrap(), 120);
        let resolved: i64 = store
            .conn
            .query_row(
                "SELECT COUNT(*) FROM items WHERE callee_role IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(resolved > 0);
        // Zero rows go: every aggregate row counts something.
        let empty: i64 = store
            .conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM request_stats WHERE requests <= 0) \
                 + (SELECT COUNT(*) FROM request_hist WHERE n <= 0) \
                 + (SELECT COUNT(*) FROM edges WHERE calls <= 0) \
                 + (SELECT COUNT(*) FROM failure_groups WHERE n <= 0)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(empty, 0);
    }

    fn request(i: u64, micros: u64) -> NewItem {
        item(json!({
            "time": validate::format_time(1_795_996_800_000_000 + i as i64),
            "tags": { "ai.cloud.role": "api", "ai.operation.id": format!("op{i}"),
                      "ai.operation.parentId": format!("d{i}") },
            "data": { "baseType": "RequestData", "baseData": {
                "id": format!("r{i}"), "name": "GET /", "responseCode": "200", "success": true,
                "duration": format!("0.00:00:{:02}.{:06}", micros / 1_000_000, micros % 1_000_000),
            } },
        }))
    }

    /// Above 10,000 requests a group's percentiles come from the histogram:
    /// never below the exact value, at most 17.4 % above; count and mean
    /// stay exact.
    #[test]
    fn large_groups_have_percentiles_within_the_bucket_bound() {
        let mut store = Store::open(None, 1_000_000).unwrap();
        let n = 12_000u64;
        let items: Vec<NewItem> = (1..=n)
            .map(|i| request(i, ((i * 7919) % n + 1) * 100))
            .collect();
        store.insert(&items, &[]).unwrap();
        let perf = store.performance().unwrap();
        let op = &perf["operations"][0];
        assert_eq!(op["count"], 12_000);
        let mean = op["mean_ms"].as_f64().unwrap();
        assert!((mean - 600.05).abs() < 1e-9, "{mean}");
        for (key, exact) in [("p50_ms", 600.0), ("p95_ms", 1140.0), ("p99_ms", 1188.0)] {
            let got = op[key].as_f64().unwrap();
            assert!(
                got >= exact && got <= exact * 1.175,
                "{key}: {got} for {exact}"
            );
        }
    }

    /// A database of schema version 0 (items only) gets the columns, the
    /// aggregates when it is opened.
    #[test]
    fn a_version_0_database_is_migrated_on_open() {
        let path =
            std::env::temp_dir().join(format!("viewer-migrate-{}.sqlite3", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut store = Store::open(Some(&path), 1000).unwrap();
        let items: Vec<NewItem> = (1..=50).map(|i| request(i, i * 1000)).collect();
        store.insert(&items, &[]).unwrap();
        let before = snapshot(&store);
        let (map, perf) = (store.map().unwrap(), store.performance().unwrap());
        store
            .conn
            .execute_batch(
                "DROP TABLE request_stats; DROP TABLE request_hist; DROP TABLE edges;
                 DROP TABLE failure_groups; DROP INDEX items_request_perf;
                 DROP INDEX items_failed; DROP INDEX items_exception;
                 ALTER TABLE items DROP COLUMN callee_role; ALTER TABLE items DROP COLUMN bucket;
                 PRAGMA user_version = 0;",
            )
            .unwrap();
        drop(store);
        let mut store = Store::open(Some(&path), 1000).unwrap();
        assert_eq!(snapshot(&store), before);
        assert_eq!(store.map().unwrap(), map);
        assert_eq!(store.performance().unwrap(), perf);
        store.insert(&[request(51, 51_000)], &[]).unwrap();
        assert_eq!(store.performance().unwrap()["operations"][0]["count"], 51);
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn buckets_bound_their_durations_within_17_4_percent() {
        for ms in [
            0.0005,
            0.001,
            0.0011,
            0.5,
            1.0,
            7.0,
            99.9,
            1234.5,
            86_400_000.0 * 999.0,
        ] {
            let upper = bucket_upper_ms(bucket(ms));
            assert!(upper >= ms * (1.0 - 1e-9), "{ms}: {upper}");
            assert!(ms <= 0.001 || upper <= ms * 1.175, "{ms}: {upper}");
        }
        assert_eq!(bucket(f64::NAN), 0);
        assert_eq!(bucket(-1.0), 0);
        assert_eq!(bucket(f64::INFINITY), BUCKETS - 1);
    }
}
