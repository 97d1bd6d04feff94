//! Cross-site request forgery checks for requests authenticated by the dashboard's
//! session cookie.
//!
//! A browser attaches the cookie to any request it sends to this origin, including one
//! a hostile page makes it send (a form POST, an `<img>`); a bearer token it never
//! attaches by itself. So a cookie-authenticated request that changes something must
//! prove it comes from a page of this origin: modern browsers say where a request comes
//! from in `Sec-Fetch-Site` (which a page cannot set), older ones in `Origin`. A request
//! with neither is refused: every browser that honours `SameSite` sends one of them on
//! a POST. The cookie's `SameSite=Strict` is a second, independent line.

use axum::http::{HeaderMap, Method, header};

/// Whether `method` only reads (GET, HEAD, OPTIONS): those need no check, and the API
/// changes nothing on them.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `Ok` if a cookie-authenticated `method` request with `headers` may proceed; else why
/// not (for the 403's detail).
pub fn check(method: &Method, headers: &HeaderMap) -> Result<(), &'static str> {
    if is_safe(method) {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site.as_bytes().eq_ignore_ascii_case(b"same-origin") {
            Ok(())
        } else {
            Err("a cross-site request may not act with the session cookie (Sec-Fetch-Site)")
        };
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Err("a request acting with the session cookie must say its Origin");
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin_host(origin), host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h.trim()) => Ok(()),
        _ => Err("a cross-origin request may not act with the session cookie (Origin)"),
    }
}

/// The `host[:port]` of an `Origin` value (`https://a.example:8443`), `None` for
/// `null` or anything not shaped like an origin.
fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn reads_pass_and_same_origin_writes_pass() {
        assert!(check(&Method::GET, &HeaderMap::new()).is_ok());
        let same = headers(&[("sec-fetch-site", "same-origin")]);
        assert!(check(&Method::POST, &same).is_ok());
        let origin = headers(&[
            ("origin", "http://127.0.0.1:7780"),
            ("host", "127.0.0.1:7780"),
        ]);
        assert!(check(&Method::DELETE, &origin).is_ok());
    }

    #[test]
    fn cross_site_or_unattributed_writes_are_refused() {
        for site in ["cross-site", "same-site", "none"] {
            let h = headers(&[
                ("sec-fetch-site", site),
                ("origin", "http://h"),
                ("host", "h"),
            ]);
            assert!(check(&Method::POST, &h).is_err(), "{site}");
        }
        assert!(
            check(&Method::POST, &HeaderMap::new()).is_err(),
            "no header at all"
        );
        let other = headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:7780"),
        ]);
        assert!(check(&Method::POST, &other).is_err());
        let null = headers(&[("origin", "null"), ("host", "127.0.0.1:7780")]);
        assert!(check(&Method::POST, &null).is_err());
        let port = headers(&[
            ("origin", "http://127.0.0.1:9999"),
            ("host", "127.0.0.1:7780"),
        ]);
        assert!(
            check(&Method::POST, &port).is_err(),
            "another port is another origin"
        );
    }
}
