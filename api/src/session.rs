//! The dashboard's session cookie: the API token a user logged in with, kept where the
//! page's scripts cannot read it (`HttpOnly`), sent only to this origin by same-site
//! navigation and requests (`SameSite=Strict`), and over TLS only when the page was
//! served over TLS (`Secure`).
//!
//! The cookie holds the token itself, not a server-side session id: the token is read
//! from the store on every request, so revoking it logs the browser out at its next
//! request, and the node keeps no session table to lose or replicate.

use axum::http::{HeaderMap, HeaderValue, header};

/// The cookie's name.
pub const COOKIE: &str = "jobmesh_session";

/// The session cookie's value among the request's `Cookie` headers, if any.
pub fn from_headers(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the browser loaded the page over TLS: its `Origin` (which a page cannot
/// forge, and which browsers send on every POST) says `https`. Behind a TLS proxy this
/// is what the user's browser sees, whatever the proxy speaks to the node.
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.starts_with("https://"))
}

/// The `Set-Cookie` value that keeps `token` for the browser's session.
///
/// Returns `None` if `token` holds characters a cookie value may not (tokens are
/// `jmt_<digits>_<hex>`, checked by the caller before this).
pub fn set(token: &str, secure: bool) -> Option<HeaderValue> {
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"
    ))
    .ok()
}

/// The `Set-Cookie` value that makes the browser forget the session.
pub fn clear(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
    ))
    .expect("a fixed cookie is a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others_and_set_strictly() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; jobmesh_session=jmt_1_ab ; b=2".parse().unwrap(),
        );
        assert_eq!(from_headers(&h), Some("jmt_1_ab"));
        h.clear();
        h.append(header::COOKIE, "xjobmesh_session=no".parse().unwrap());
        assert_eq!(from_headers(&h), None);

        let v = set("jmt_1_ab", false).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "jobmesh_session=jmt_1_ab; Path=/; HttpOnly; SameSite=Strict"
        );
        assert!(
            set("jmt_1_ab", true)
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
        assert!(
            set("a;b", false).is_none(),
            "no attribute can be smuggled in"
        );
        assert!(clear(false).to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn tls_is_what_the_browser_says() {
        let mut h = HeaderMap::new();
        assert!(!over_tls(&h));
        h.insert(header::ORIGIN, "https://jobs.example".parse().unwrap());
        assert!(over_tls(&h));
    }
}
