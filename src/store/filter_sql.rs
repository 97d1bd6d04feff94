//! The SQL of a [`JobFilter`] that is the same on every backend: the conditions on one
//! value (kind, priority, created and finished ranges), the keyset condition past the
//! cursor, the order and the limit. Written into a `QueryBuilder` of either backend,
//! whose binds write that backend's placeholders (`$n` or `?`); each backend's
//! `filter.rs` adds what differs (lists of queues and states, the payload match). The
//! SQL text is made of the fixed fragments below alone; every value is a bound parameter.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::filter::{After, JobFilter, Order, SortKey};

/// Appends SQL text; only ever fixed fragments, never a value.
fn sql<DB: Database>(b: &mut QueryBuilder<DB>, fragment: &'static str) {
    b.push(fragment);
}

/// Appends ` AND ...` for the kind, priority and time conditions `filter` sets (the
/// lists and the payload match are the backend's: see its `filter.rs`).
pub(crate) fn push_scalars<DB>(b: &mut QueryBuilder<DB>, filter: &JobFilter)
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i16: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    if let Some(kind) = &filter.kind {
        sql(b, " AND kind = ");
        b.push_bind(kind.clone());
    }
    if let Some(p) = filter.priority_min {
        sql(b, " AND priority >= ");
        b.push_bind(p);
    }
    if let Some(p) = filter.priority_max {
        sql(b, " AND priority <= ");
        b.push_bind(p);
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
}

/// Appends the keyset condition past `filter.after` (checked by [`JobFilter::check`] to
/// be of the filter's [`SortKey`]) and, for a listing by finish time, `finished_at IS
/// NOT NULL`, the predicate of the `(finished_at, id)` index that serves it.
pub(crate) fn push_keyset<DB>(b: &mut QueryBuilder<DB>, filter: &JobFilter)
where
    DB: Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    if filter.sort_key() == SortKey::Finished {
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
pub(crate) fn order_by(filter: &JobFilter) -> &'static str {
    match (filter.sort_key(), filter.order) {
        (SortKey::Id, Order::Asc) => " ORDER BY id",
        (SortKey::Id, Order::Desc) => " ORDER BY id DESC",
        (SortKey::Finished, Order::Asc) => " ORDER BY finished_at, id",
        (SortKey::Finished, Order::Desc) => " ORDER BY finished_at DESC, id DESC",
    }
}

/// Appends the keyset condition past `filter.after`, the order and the limit.
pub(crate) fn push_page<DB>(b: &mut QueryBuilder<DB>, filter: &JobFilter)
where
    DB: Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    push_keyset(b, filter);
    sql(b, order_by(filter));
    sql(b, " LIMIT ");
    b.push_bind(i64::from(filter.limit));
}
