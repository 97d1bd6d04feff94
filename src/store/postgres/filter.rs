//! A [`JobFilter`] as Postgres conditions. Only the conditions a filter sets are
//! written (so the planner sees `state = $1 AND id > $2`, which the `(state, id)`
//! index answers in order, rather than a generic `($1 IS NULL OR ...)`), every value is a bound
//! parameter, and the SQL text is made of the fixed fragments below alone.

use sqlx::{Postgres, QueryBuilder};

use crate::store::filter::{After, JobFilter, Order, SortKey};

/// Appends SQL text; only ever fixed fragments, never a value.
fn sql(b: &mut QueryBuilder<Postgres>, fragment: &'static str) {
    b.push(fragment);
}

/// Appends `<column> = $n` for one value, `<column> = ANY($n)` for several, nothing for
/// none. One value is written as `=` because Postgres before 17 reads an index in order
/// only for `=`: `queue = ANY('{q2}')` makes a page of one queue sort its rows (or walk
/// the primary key and filter) where `queue = 'q2'` reads `(queue, id)` in order.
fn push_any(b: &mut QueryBuilder<Postgres>, column: &'static str, values: &[String]) {
    match values {
        [] => {}
        [one] => {
            sql(b, column);
            sql(b, " = ");
            b.push_bind(one.clone());
        }
        many => {
            sql(b, column);
            sql(b, " = ANY(");
            b.push_bind(many.to_vec());
            sql(b, ")");
        }
    }
}

/// Appends ` AND ...` for each condition `filter` sets, with `states` in place of the
/// filter's own (a bulk action narrows them; an empty list does not restrict).
pub(super) fn push_conditions(b: &mut QueryBuilder<Postgres>, filter: &JobFilter, states: &[&str]) {
    push_any(b, " AND queue", &filter.queues);
    let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    push_any(b, " AND state", &states);
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
    if let Some(m) = &filter.payload {
        // Containment rather than `payload #> path = value`: for a scalar under a
        // path of object keys the two agree (typed: "42" is not 42, 1 is 1.0), and
        // `@>` can use the GIN index `jobs_payload` where operators created it (see
        // migration 0014; when a page uses it is decided in `listing.rs`).
        sql(b, " AND payload @> ");
        b.push_bind(m.containment());
        sql(b, "::jsonb");
    }
}

/// Appends the keyset condition past `filter.after` (checked by [`JobFilter::check`] to
/// be of the filter's [`SortKey`]) and, for a listing by finish time, `finished_at IS
/// NOT NULL`, the predicate of the `(finished_at, id)` index that serves it.
pub(super) fn push_keyset(b: &mut QueryBuilder<Postgres>, filter: &JobFilter) {
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
pub(super) fn push_page(b: &mut QueryBuilder<Postgres>, filter: &JobFilter) {
    push_keyset(b, filter);
    sql(b, order_by(filter));
    sql(b, " LIMIT ");
    b.push_bind(i64::from(filter.limit));
}
