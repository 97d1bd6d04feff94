//! A [`JobFilter`] as SQLite conditions: the lists and the payload match here, the rest
//! shared with Postgres (`store/filter_sql.rs`). Only the conditions a filter sets are
//! written, lists are written as `IN (?, ?)` (bounded by [`JobFilter::check`]) so the
//! planner can use the `(state, id)` and `(queue, id)` indexes, every value is a bound
//! parameter, and the SQL text is made of the fixed fragments below alone.

use sqlx::{QueryBuilder, Sqlite};

use crate::store::filter::JobFilter;
pub(super) use crate::store::filter_sql::push_page;
use crate::store::filter_sql::push_scalars;

/// Appends SQL text; only ever fixed fragments, never a value.
fn sql(b: &mut QueryBuilder<Sqlite>, fragment: &'static str) {
    b.push(fragment);
}

/// Appends ` AND column IN (?, ...)` for `values` (nothing when empty).
fn push_in(b: &mut QueryBuilder<Sqlite>, column: &'static str, values: &[String]) {
    if values.is_empty() {
        return;
    }
    sql(b, " AND ");
    sql(b, column);
    sql(b, " IN (");
    let mut list = b.separated(", ");
    for v in values {
        list.push_bind(v.clone());
    }
    sql(b, ")");
}

/// Appends ` AND ...` for each condition `filter` sets, with `states` in place of the
/// filter's own (a bulk action narrows them; an empty list does not restrict).
pub(super) fn push_conditions(b: &mut QueryBuilder<Sqlite>, filter: &JobFilter, states: &[&str]) {
    push_in(b, "queue", &filter.queues);
    let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    push_in(b, "state", &states);
    push_scalars(b, filter);
    if let Some(m) = &filter.payload {
        // The type first, so that a string never equals a number and `true` never
        // equals 1 (json_extract gives 1 for both); an invalid payload (a row this
        // version cannot read) matches nothing instead of failing the statement.
        let path = m.sqlite_path();
        let (t1, t2) = m.sqlite_types();
        sql(
            b,
            " AND (CASE WHEN json_valid(payload) AND json_type(payload, ",
        );
        b.push_bind(path.clone());
        sql(b, ") IN (");
        b.push_bind(t1);
        sql(b, ", ");
        b.push_bind(t2);
        let value = m.value();
        if value.is_number() || value.is_string() {
            sql(b, ") THEN json_extract(payload, ");
            b.push_bind(path);
            sql(b, ") = ");
            if let Some(i) = value.as_i64() {
                b.push_bind(i);
            } else if let Some(f) = value.as_f64() {
                b.push_bind(f);
            } else {
                b.push_bind(value.as_str().unwrap_or_default().to_string());
            }
            sql(b, " ELSE 0 END)");
        } else {
            // true, false, null: the type says it all.
            sql(b, ") THEN 1 ELSE 0 END)");
        }
    }
}

/// Whether `filter` names nothing but queues, states and a kind: the conditions the
/// counts kept per queue, kind and state (`job_counts`, migration 0016) answer.
pub(super) fn names_only(filter: &JobFilter) -> bool {
    filter.priority_min.is_none()
        && filter.priority_max.is_none()
        && filter.created.from.is_none()
        && filter.created.to.is_none()
        && filter.finished.from.is_none()
        && filter.finished.to.is_none()
        && filter.payload.is_none()
}

/// Appends ` AND ...` for the queues, `states` and kind of `filter` alone (the columns
/// `job_counts` shares with `jobs`).
pub(super) fn push_names(b: &mut QueryBuilder<Sqlite>, filter: &JobFilter, states: &[&str]) {
    push_in(b, "queue", &filter.queues);
    let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    push_in(b, "state", &states);
    if let Some(kind) = &filter.kind {
        sql(b, " AND kind = ");
        b.push_bind(kind.clone());
    }
}
