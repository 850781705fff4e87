//! This node's rate-limit buckets, one per org and per key that called lately: the state
//! behind `domain::rate`'s decisions. In memory and per node: with N nodes behind a load
//! balancer, a limit lets through up to N times its rate (README says so).

use std::collections::HashMap;
use std::sync::Mutex;

use creditgate_domain::rate::{self, Ask, Buckets, Dimension, RateLimits, Refusal, Standing};
use creditgate_domain::Timestamp;

/// Most scopes kept; past it, the idle ones (full buckets) are forgotten first.
pub const RATE_BUCKETS_MAX: usize = 100_000;

/// One scope a call counts against: an org or a key, by id, with its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// `org_…` or `key_…`.
    pub id: String,
    /// Its limits.
    pub limits: RateLimits,
}

/// Where each limited dimension stands for a call: the tightest of its scopes.
pub type Standings = [Option<Standing>; 3];

/// A refused call: why, and where its dimensions stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    /// The refusal (the scope and dimension that frees up last).
    pub refusal: Refusal,
    /// The refused scope's id.
    pub scope: String,
    /// Where each dimension stands.
    pub standings: Standings,
}

/// The buckets of every scope seen lately.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (Buckets, RateLimits)>>,
}

impl RateLimiter {
    /// Admits one call against every scope (all or nothing), or says why not.
    pub fn admit(
        &self,
        scopes: &[Scope],
        ask: Ask,
        now: Timestamp,
    ) -> Result<Standings, Box<Limited>> {
        let limited: Vec<&Scope> = scopes.iter().filter(|s| !s.limits.is_unlimited()).collect();
        if limited.is_empty() {
            return Ok([None; 3]);
        }
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut after = Vec::with_capacity(limited.len());
        let mut refused: Option<(Refusal, &str)> = None;
        for scope in &limited {
            let current = map.get(&scope.id).map(|(b, _)| *b).unwrap_or_default();
            match rate::admit(current, &scope.limits, ask, now) {
                Ok(next) => after.push(next),
                Err(refusal) if refusal.frees_later_than(refused.map(|r| r.0)) => {
                    refused = Some((refusal, &scope.id));
                }
                Err(_) => {}
            }
        }
        if let Some((refusal, scope)) = refused {
            return Err(Box::new(Limited {
                refusal,
                scope: scope.to_owned(),
                standings: standings(&map, &limited, now),
            }));
        }
        if map.len() + limited.len() > RATE_BUCKETS_MAX {
            map.retain(|_, (b, limits)| !rate::is_idle(*b, limits, now));
        }
        for (scope, next) in limited.iter().zip(after) {
            map.insert(scope.id.clone(), (next, scope.limits));
        }
        Ok(standings(&map, &limited, now))
    }

    /// Gives back what an admitted call did not use.
    pub fn give_back(&self, scopes: &[Scope], unused: Ask, now: Timestamp) {
        if scopes.iter().all(|s| s.limits.is_unlimited()) {
            return;
        }
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        for scope in scopes {
            if let Some((buckets, _)) = map.get_mut(&scope.id) {
                *buckets = rate::give_back(*buckets, &scope.limits, unused, now);
            }
        }
    }
}

fn standings(
    map: &HashMap<String, (Buckets, RateLimits)>,
    scopes: &[&Scope],
    now: Timestamp,
) -> Standings {
    Dimension::ALL.map(|dimension| {
        scopes
            .iter()
            .filter_map(|scope| {
                let buckets = map.get(&scope.id).map(|(b, _)| *b).unwrap_or_default();
                rate::standing(buckets, &scope.limits, dimension, now)
            })
            .min_by_key(|standing| standing.remaining)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(id: &str, requests: u64) -> Scope {
        Scope {
            id: id.to_owned(),
            limits: RateLimits {
                requests_per_minute: Some(requests),
                ..RateLimits::default()
            },
        }
    }

    #[test]
    fn a_call_counts_against_every_scope_or_none() {
        let limiter = RateLimiter::default();
        let now = Timestamp::from_unix_ms(0);
        let (org, key) = (scope("org_a", 2), scope("key_a", 1));
        let both = [org.clone(), key.clone()];
        let standings = limiter.admit(&both, Ask::default(), now).expect("fits");
        assert_eq!(
            standings[0].map(|s| s.remaining),
            Some(0),
            "the key's is tighter"
        );
        let refused = limiter.admit(&both, Ask::default(), now).unwrap_err();
        assert_eq!(refused.scope, "key_a");
        // The refused call took nothing from the org: another key still has one request.
        limiter
            .admit(&[org.clone(), scope("key_b", 5)], Ask::default(), now)
            .expect("the org has one left");
        assert!(limiter.admit(&[org], Ask::default(), now).is_err());
    }

    #[test]
    fn unlimited_scopes_keep_no_state() {
        let limiter = RateLimiter::default();
        let unlimited = Scope {
            id: "org_x".into(),
            limits: RateLimits::default(),
        };
        let now = Timestamp::from_unix_ms(0);
        for _ in 0..10 {
            assert_eq!(
                limiter.admit(std::slice::from_ref(&unlimited), Ask::default(), now),
                Ok([None; 3])
            );
        }
        assert!(limiter.buckets.lock().expect("lock").is_empty());
    }
}
