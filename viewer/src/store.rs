//! The SQLite store: one table of items (the columns the queries filter and
//! group on, plus the item's full JSON) and one of rejections, each bounded.

use std::path::Path;

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
        let conn = match path {
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
                     target, dependency_type, message, url, data, json) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                     ?17, ?18, ?19)",
                )
                .map_err(err)?;
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
                ])
                .map_err(err)?;
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
                tx.execute(
                    "DELETE FROM items WHERE seq <= (SELECT MAX(seq) FROM items) - ?1",
                    [self.max_items],
                )
                .map_err(err)?;
            }
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
        eq(&mut sql, "item_type", &filter.item_type);
        eq(&mut sql, "role", &filter.role);
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
                 OR url LIKE ?{n} ESCAPE '\\' OR data LIKE ?{n} ESCAPE '\\')"
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
        sql.push_str(&format!(
            " ORDER BY ts DESC, seq DESC LIMIT ?{}",
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
    /// dependency target, an edge per caller role and callee. (The unary
    /// `+` keeps SQLite from looking the callee up through the type index,
    /// which would scan every request per dependency; the operation index
    /// finds the few items of the dependency's operation.)
    pub fn map(&self) -> Result<Value, String> {
        let mut nodes: Vec<Value> = Vec::new();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT role, COUNT(*), COALESCE(SUM(success = 0), 0), AVG(duration_ms) \
                 FROM items WHERE item_type = 'request' AND role IS NOT NULL \
                 GROUP BY role \
                 UNION ALL \
                 SELECT DISTINCT role, 0, 0, NULL FROM items WHERE role IS NOT NULL \
                 AND role NOT IN (SELECT role FROM items WHERE item_type = 'request' \
                 AND role IS NOT NULL) \
                 ORDER BY 1",
            )
            .map_err(err)?;
        let roles = stmt
            .query_map([], |row| {
                Ok(json!({
                    "id": format!("role:{}", row.get::<_, String>(0)?),
                    "kind": "role",
                    "name": row.get::<_, String>(0)?,
                    "requests": row.get::<_, i64>(1)?,
                    "failed_requests": row.get::<_, i64>(2)?,
                    "mean_duration_ms": row.get::<_, Option<f64>>(3)?,
                }))
            })
            .map_err(err)?;
        for role in roles {
            nodes.push(role.map_err(err)?);
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT d.role, r.role, COALESCE(NULLIF(d.target, ''), d.dependency_type, d.name), \
                 COUNT(*), COALESCE(SUM(d.success = 0), 0), AVG(d.duration_ms) \
                 FROM items d LEFT JOIN items r ON r.operation_id = d.operation_id \
                 AND r.parent_id = d.item_id AND +r.item_type = 'request' \
                 WHERE d.item_type = 'dependency' \
                 AND lower(COALESCE(d.dependency_type, '')) <> 'inproc' \
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, Option<String>>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<f64>>(5)?,
                ))
            })
            .map_err(err)?;
        let mut edges = Vec::new();
        let mut externals: Vec<String> = Vec::new();
        for row in rows {
            let (caller, callee_role, target, calls, failures, mean) = row.map_err(err)?;
            let caller = format!("role:{}", caller.unwrap_or_default());
            let callee = match callee_role {
                Some(role) => format!("role:{role}"),
                None => {
                    let target = target.unwrap_or_default();
                    if !externals.contains(&target) {
                        externals.push(target.clone());
                    }
                    format!("external:{target}")
                }
            };
            edges.push(json!({
                "source": caller,
                "target": callee,
                "calls": calls,
                "failures": failures,
                "mean_duration_ms": mean,
            }));
        }
        edges.sort_by(|a, b| {
            (a["source"].as_str(), a["target"].as_str())
                .cmp(&(b["source"].as_str(), b["target"].as_str()))
        });
        externals.sort();
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
    /// exceptions by type, each with a count and a sample operation.
    pub fn failures(&self) -> Result<Value, String> {
        let groups = |sql: &str, key: &str| -> Result<Vec<Value>, String> {
            let mut stmt = self.conn.prepare(sql).map_err(err)?;
            let rows = stmt
                .query_map([], |row| {
                    let mut group = json!({
                        "count": row.get::<_, i64>(2)?,
                        "sample_operation_id": row.get::<_, Option<String>>(3)?,
                    });
                    group[key] = json!(row.get::<_, Option<String>>(0)?);
                    if key == "name" {
                        group["result_code"] = json!(row.get::<_, Option<String>>(1)?);
                    }
                    Ok(group)
                })
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        };
        let failed = |item_type: &str| {
            format!(
                "SELECT name, result_code, COUNT(*), MAX(operation_id) FROM items \
                 WHERE item_type = '{item_type}' AND success = 0 \
                 GROUP BY name, result_code ORDER BY 3 DESC, 1, 2 LIMIT 1000"
            )
        };
        Ok(json!({
            "requests": groups(&failed("request"), "name")?,
            "dependencies": groups(&failed("dependency"), "name")?,
            "exceptions": groups(
                "SELECT name, NULL, COUNT(*), MAX(operation_id) FROM items \
                 WHERE item_type = 'exception' GROUP BY name ORDER BY 3 DESC, 1 LIMIT 1000",
                "type",
            )?,
        }))
    }

    /// Requests by role and name, with count and p50/p95/p99 durations
    /// (nearest rank).
    pub fn performance(&self) -> Result<Value, String> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT role, name, duration_ms FROM items \
                 WHERE item_type = 'request' AND duration_ms IS NOT NULL \
                 ORDER BY role, name, duration_ms",
            )
            .map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        let mut operations = Vec::new();
        let mut current: Option<(Option<String>, Option<String>, Vec<f64>)> = None;
        let flush = |group: (Option<String>, Option<String>, Vec<f64>), out: &mut Vec<Value>| {
            let (role, name, durations) = group;
            let rank = |p: f64| {
                // Nearest rank: the smallest value with at least p of the
                // values at or below it.
                let n = durations.len();
                let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
                durations[i]
            };
            out.push(json!({
                "role": role,
                "name": name,
                "count": durations.len(),
                "mean_ms": durations.iter().sum::<f64>() / durations.len() as f64,
                "p50_ms": rank(0.50),
                "p95_ms": rank(0.95),
                "p99_ms": rank(0.99),
            }));
        };
        while let Some(row) = rows.next().map_err(err)? {
            let role: Option<String> = row.get(0).map_err(err)?;
            let name: Option<String> = row.get(1).map_err(err)?;
            let duration: f64 = row.get(2).map_err(err)?;
            match &mut current {
                Some((r, n, d)) if *r == role && *n == name => d.push(duration),
                _ => {
                    if let Some(group) = current.take() {
                        flush(group, &mut operations);
                    }
                    current = Some((role, name, vec![duration]));
                }
            }
        }
        if let Some(group) = current.take() {
            flush(group, &mut operations);
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

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
