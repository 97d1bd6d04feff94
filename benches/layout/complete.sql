-- The completion of every job this client's worker holds, all succeeded, in one call of
-- jm_complete (today's, or the variant's redefinition).
WITH t AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms),
held AS (
    SELECT array_agg(id ORDER BY id) AS ids, array_agg(lease_token ORDER BY id) AS toks,
           array_agg(attempt ORDER BY id) AS atts, count(*)::int AS n
    FROM jobs WHERE lease_expires_at IS NOT NULL AND lease_owner = 'w' || :client_id
)
SELECT count(*) FROM held, t, LATERAL jm_complete(
    held.ids, held.toks, held.atts,
    array_fill('w' || :client_id, ARRAY[held.n]), array_fill('bench'::text, ARRAY[held.n]),
    array_fill(t.ms - 1, ARRAY[held.n]), array_fill(t.ms, ARRAY[held.n]),
    array_fill('succeeded'::text, ARRAY[held.n]), array_fill(NULL::text, ARRAY[held.n]),
    array_fill(0::bigint, ARRAY[held.n]), array_fill(NULL::jsonb, ARRAY[held.n]));
