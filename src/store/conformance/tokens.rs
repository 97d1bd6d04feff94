//! API tokens and the idempotent answers of the HTTP API.

use super::*;

/// API tokens: only the hash is kept and it verifies only its own secret; listing,
/// revoking (at once, first time kept), last use, and hostile names kept as data or
/// refused by field.
pub async fn api_tokens(s: &dyn Store) {
    use crate::store::tokens::{NewApiToken, Scope, TokenId, TokenSecret};
    assert!(
        !s.has_live_tokens().await.unwrap(),
        "a fresh store has no token"
    );
    let billing = NewApiToken {
        name: "billing'); DROP TABLE api_tokens; --".into(),
        scopes: vec![Scope::Enqueue, Scope::Read],
        queues: vec!["emails".into(), "sms".into()],
    };
    let ops = NewApiToken {
        name: "ops".into(),
        scopes: vec![Scope::Admin],
        queues: vec![],
    };
    let (a, b) = (TokenSecret::generate(), TokenSecret::generate());
    let ida = s
        .create_token(&sys(), &billing, &a.hash(), T0)
        .await
        .unwrap();
    let idb = s.create_token(&sys(), &ops, &b.hash(), T0).await.unwrap();
    assert_ne!(ida, idb);
    assert!(s.has_live_tokens().await.unwrap());
    let (token, hash) = s.token(ida).await.unwrap().expect("the new token");
    assert_eq!(token.name, billing.name, "the name is data, not SQL");
    assert_eq!(token.scopes, vec![Scope::Read, Scope::Enqueue]);
    assert_eq!(token.queues, billing.queues);
    assert_eq!(
        (token.created_at, token.last_used_at, token.revoked_at),
        (T0, None, None)
    );
    assert!(a.verify(&hash), "the stored hash is the secret's");
    assert!(!b.verify(&hash), "another secret does not verify");
    assert!(
        s.token(TokenId(ida.0 + idb.0 + 1000))
            .await
            .unwrap()
            .is_none()
    );
    let listed: Vec<TokenId> = s
        .list_tokens()
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, vec![ida, idb]);

    s.touch_token(ida, Millis(T0.0 + 5)).await.unwrap();
    s.touch_token(ida, Millis(T0.0 + 1)).await.unwrap();
    let (token, _) = s.token(ida).await.unwrap().unwrap();
    assert_eq!(
        token.last_used_at,
        Some(Millis(T0.0 + 5)),
        "last use never goes back"
    );

    assert!(
        s.revoke_token(&sys(), ida, Millis(T0.0 + 10))
            .await
            .unwrap()
    );
    assert!(
        s.revoke_token(&sys(), ida, Millis(T0.0 + 20))
            .await
            .unwrap()
    );
    let (token, _) = s.token(ida).await.unwrap().unwrap();
    assert_eq!(
        token.revoked_at,
        Some(Millis(T0.0 + 10)),
        "the first revoke counts"
    );
    assert!(s.has_live_tokens().await.unwrap(), "ops is still live");
    assert!(s.revoke_token(&sys(), idb, T0).await.unwrap());
    assert!(!s.has_live_tokens().await.unwrap());
    assert!(!s.revoke_token(&sys(), TokenId(-1), T0).await.unwrap());

    for (bad, field) in [
        (
            NewApiToken {
                name: "nul\0".into(),
                ..ops.clone()
            },
            "name",
        ),
        (
            NewApiToken {
                scopes: vec![],
                ..ops.clone()
            },
            "scopes",
        ),
        (
            NewApiToken {
                queues: vec!["q'; --".into()],
                ..ops.clone()
            },
            "queues",
        ),
    ] {
        let err = s
            .create_token(&sys(), &bad, &a.hash(), T0)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, crate::store::StoreError::Invalid(m) if m.starts_with(field)),
            "{field}: {err}"
        );
    }
    assert_eq!(
        s.list_tokens().await.unwrap().len(),
        2,
        "refused tokens are not stored"
    );
}

/// Idempotent answers: a key is reserved once, answered once, and the answer comes
/// back for the same request; another request with the key is refused; a reservation
/// whose request died is taken over once stale; answers of a key are per token.
pub async fn idempotent_answers(s: &dyn Store) {
    use crate::store::tokens::{NewApiToken, Reservation, Scope, StoredAnswer, TokenSecret};
    let new = NewApiToken {
        name: "app".into(),
        scopes: vec![Scope::Enqueue],
        queues: vec![],
    };
    let t1 = s
        .create_token(&sys(), &new, &TokenSecret::generate().hash(), T0)
        .await
        .unwrap();
    let t2 = s
        .create_token(&sys(), &new, &TokenSecret::generate().hash(), T0)
        .await
        .unwrap();
    let stale = Millis(T0.0 - 60_000);
    let key = "order-17';DELETE/**/FROM/**/jobs;--";
    let reserve = |t, print: &'static str, now: Millis| async move {
        s.reserve_answer(t, key, print, now, Millis(now.0 - 60_000))
            .await
            .unwrap()
    };
    assert_eq!(reserve(t1, "f1", T0).await, Reservation::Reserved);
    assert_eq!(reserve(t1, "f1", T0).await, Reservation::InProgress);
    assert_eq!(reserve(t1, "f2", T0).await, Reservation::Mismatch);
    assert_eq!(
        reserve(t2, "f2", T0).await,
        Reservation::Reserved,
        "keys are per token"
    );
    let answer = StoredAnswer {
        status: 201,
        body: json!({"id": 7, "outcome": "inserted"}),
    };
    s.record_answer(t1, key, &answer).await.unwrap();
    assert_eq!(
        reserve(t1, "f1", T0).await,
        Reservation::Answered(answer.clone())
    );
    assert_eq!(
        reserve(t1, "f1", Millis(T0.0 + 3_600_000)).await,
        Reservation::Answered(answer.clone()),
        "an answer is never taken over"
    );
    assert_eq!(reserve(t1, "f2", T0).await, Reservation::Mismatch);
    // t2's request died without an answer: a retry within the stale window waits,
    // a later one takes the key over.
    assert_eq!(
        reserve(t2, "f2", Millis(T0.0 + 1000)).await,
        Reservation::InProgress
    );
    assert_eq!(
        reserve(t2, "f2", Millis(T0.0 + 61_000)).await,
        Reservation::Reserved
    );
    s.forget_answer(t2, key).await.unwrap();
    s.forget_answer(t1, key).await.unwrap();
    assert_eq!(
        reserve(t1, "f1", T0).await,
        Reservation::Answered(answer),
        "forgetting drops only unanswered reservations"
    );
    assert_eq!(
        reserve(t2, "f3", T0).await,
        Reservation::Reserved,
        "a forgotten key is free"
    );
    assert!(
        s.reserve_answer(t1, "bad key", "f", T0, stale)
            .await
            .is_err(),
        "a key with a space is refused"
    );
    assert_eq!(s.purge_answers(Millis(T0.0 + 1)).await.unwrap(), 2);
    assert_eq!(
        reserve(t1, "f9", T0).await,
        Reservation::Reserved,
        "purged keys are free"
    );
}
