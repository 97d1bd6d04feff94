//! The `http` client's DNS resolver: resolves, then drops every address the
//! [`AddressPolicy`] refuses.
//!
//! The client connects only to addresses its resolver returned, so checking here is
//! checking what is connected to: a name that resolved to a public address when the job
//! was submitted and to `127.0.0.1` now (DNS rebinding) is refused now, and so is every
//! redirect hop, which resolves again.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::address::{AddressPolicy, AddressRefused};

/// A resolver that only hands out allowed addresses.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

/// Keeps the addresses of `host` that `policy` allows. Refuses the name when none is
/// left, quoting the first refused address; an empty answer is no refusal (the lookup
/// found nothing, which the caller reports).
pub fn filter(
    policy: &AddressPolicy,
    host: &str,
    found: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, AddressRefused> {
    let mut kept = Vec::new();
    let mut first_refusal = None;
    for addr in found {
        match policy.check(Some(host), addr.ip()) {
            Ok(()) => kept.push(addr),
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    match first_refusal {
        Some(e) if kept.is_empty() => Err(e),
        _ => Ok(kept),
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_string();
        Box::pin(async move {
            // Port 0: the client puts the URL's port in.
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept = filter(&policy, &host, found)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| SocketAddr::new(a.parse().unwrap(), 0))
            .collect()
    }

    #[test]
    fn refused_addresses_are_dropped_whatever_the_name() {
        let p = AddressPolicy::default();
        // A name that resolves to both: only the public address is connected to.
        assert_eq!(
            filter(&p, "mixed.example", addrs(&["127.0.0.1", "93.184.215.14"])).unwrap(),
            addrs(&["93.184.215.14"])
        );
        // A rebound name: every answer internal.
        let e = filter(&p, "rebound.example", addrs(&["10.0.0.5", "::1"])).unwrap_err();
        assert_eq!(e.addr.to_string(), "10.0.0.5");
        assert_eq!(e.host.as_deref(), Some("rebound.example"));
        assert!(filter(&p, "nothing.example", []).unwrap().is_empty());
    }

    #[test]
    fn opened_names_and_networks_pass() {
        let p = AddressPolicy::parse(&["db.internal", "10.0.0.0/8"]).unwrap();
        assert_eq!(
            filter(&p, "DB.internal.", addrs(&["192.168.3.3"])).unwrap(),
            addrs(&["192.168.3.3"])
        );
        assert_eq!(
            filter(&p, "other", addrs(&["10.9.9.9", "127.0.0.1"])).unwrap(),
            addrs(&["10.9.9.9"])
        );
    }

    #[tokio::test]
    async fn localhost_is_refused_through_the_real_lookup() {
        let r = GuardedResolver::new(Arc::new(AddressPolicy::default()));
        let e = r
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost must be refused");
        let refused = e
            .downcast_ref::<AddressRefused>()
            .expect("an AddressRefused");
        assert!(refused.addr.is_loopback(), "{refused}");
    }
}
