//! A [`JobFilter`] as SQLite conditions. Only the conditions a filter sets are
//! written, lists are written as `IN (?, ?)` (bounded by [`JobFilter::check`]) so the
//! planner can use the `(state, id)` and `(queue, id)` indexes, every value is a bound
//! parameter, and the SQL text is made of the fixed fragments below alone.

use sqlx::{QueryBuilder, Sqlite};

use crate::store::filter::{After, JobFilter, Order, SortKey};

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
    if let Some(kind) = &filter.kind {
        sql(b, " AND kind = ");
        b.push_bind(kind.clone());
    }
    if let Some(p) = filter.priority_min {
        sql(b, " AND priority >= ");
        b.push_bind(i64::from(p));
    }
    if let Some(p) = filter.priority_max {
        sql(b, " AND priority <= ");
        b.push_bind(i64::from(p));
    }
    if let Some(t) = filter.created.from {
        sql(b, " AND created_at >= ");
        b.push_bind(t.0);
    }
    if let Some(t) = filter.created.to {
        sql(b, " AND created_at < ");
        b.push_bind(t.0);
    }
    if let Some(t) = filter.finished.from {
        sql(b, " AND finished_at >= ");
        b.push_bind(t.0);
    }
    if let Some(t) = filter.finished.to {
        sql(b, " AND finished_at < ");
        b.push_bind(t.0);
    }
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

/// Appends the keyset condition past `filter.after` (checked by [`JobFilter::check`] to
/// be of the filter's [`SortKey`]) and, for a listing by finish time, `finished_at IS
/// NOT NULL`, the predicate of the `(finished_at, id)` index that serves it.
pub(super) fn push_keyset(b: &mut QueryBuilder<Sqlite>, filter: &JobFilter) {
    let key = filter.sort_key();
    if key == SortKey::Finished {
        sql(b, " AND finished_at IS NOT NULL");
    }
    let past = match filter.order {
        Order::Asc => " > ",
        Order::Desc => " < ",
    };
    match filter.after {
        None => {}
        Some(After::Id(id)) => {
            sql(b, " AND id");
            sql(b, past);
            b.push_bind(id.0);
        }
        Some(After::Finished { at, id }) => {
            sql(b, " AND (finished_at, id)");
            sql(b, past);
            sql(b, "(");
            b.push_bind(at.0);
            sql(b, ", ");
            b.push_bind(id.0);
            sql(b, ")");
        }
    }
}

/// The `ORDER BY` of a listing: its [`SortKey`] in its [`Order`].
pub(super) fn order_by(filter: &JobFilter) -> &'static str {
    match (filter.sort_key(), filter.order) {
        (SortKey::Id, Order::Asc) => " ORDER BY id",
        (SortKey::Id, Order::Desc) => " ORDER BY id DESC",
        (SortKey::Finished, Order::Asc) => " ORDER BY finished_at, id",
        (SortKey::Finished, Order::Desc) => " ORDER BY finished_at DESC, id DESC",
    }
}

/// Appends the keyset condition past `filter.after`, the order and the limit.
pub(super) fn push_page(b: &mut QueryBuilder<Sqlite>, filter: &JobFilter) {
    push_keyset(b, filter);
    sql(b, order_by(filter));
    sql(b, " LIMIT ");
    b.push_bind(i64::from(filter.limit));
}
