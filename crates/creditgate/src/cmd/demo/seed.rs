//! Seeding, idempotent: prices only for models that have none, then the demo org and its key,
//! kept in `<data dir>/demo.json` (mode 0600) and reused while the org exists and the key is
//! live. Also the making of a new org with credit, a member and a key, which the tour reuses.

use std::io::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api::{Api, As};
use super::{BILLING_EMAIL, DEMO_CREDIT, DEMO_LOW_THRESHOLD, DEMO_ORG_NAME, PRICES, STATE_FILE};

/// The demo org and its key, as kept in `demo.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(super) struct DemoOrg {
    pub(super) org_id: String,
    pub(super) key_id: String,
    pub(super) key: String,
}

/// Prices, then the demo org and its key: made once, reused afterwards.
pub(super) async fn seed(api: &Api, data_dir: &Path) -> anyhow::Result<DemoOrg> {
    for price in &PRICES {
        let listed = api
            .operator(
                Method::GET,
                &format!("/v1/prices?model={}", price.model),
                None,
                None,
            )
            .await?;
        if listed["data"]
            .as_array()
            .is_some_and(|data| !data.is_empty())
        {
            continue;
        }
        let body = json!({
            "input": price.input,
            "output": price.output,
            "cache_write": price.cache_write,
            "cache_read": price.cache_read,
        });
        api.operator(
            Method::PUT,
            &format!("/v1/prices/{}", price.model),
            Some(&body),
            None,
        )
        .await?;
    }
    let state_path = data_dir.join(STATE_FILE);
    if let Some(saved) = load_state(&state_path)? {
        if let Some(reused) = reuse(api, &state_path, saved).await? {
            return Ok(reused);
        }
    }
    let demo = new_org(
        api,
        DEMO_ORG_NAME,
        DEMO_LOW_THRESHOLD,
        DEMO_CREDIT,
        "demo-seed",
    )
    .await?;
    save_state(&state_path, &demo)?;
    Ok(demo)
}

/// The saved org with a live key (a new one if the saved key was revoked), or `None` when
/// the org is gone (a fresh database under an old `demo.json`).
async fn reuse(api: &Api, state_path: &Path, saved: DemoOrg) -> anyhow::Result<Option<DemoOrg>> {
    let org_path = format!("/v1/orgs/{}", saved.org_id);
    let reply = api
        .send(Method::GET, &org_path, As::Operator, None, &[])
        .await?;
    if reply.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !reply.status.is_success() {
        bail!("GET {org_path}: {} {}", reply.status, reply.text.trim());
    }
    let keys = api
        .operator(Method::GET, &format!("{org_path}/keys"), None, None)
        .await?;
    let live = keys["data"].as_array().is_some_and(|keys| {
        keys.iter()
            .any(|key| key["id"] == saved.key_id.as_str() && key["revoked_at"].is_null())
    });
    if live {
        return Ok(Some(saved));
    }
    let (key_id, key) = new_key(api, &saved.org_id, "demo").await?;
    let renewed = DemoOrg {
        org_id: saved.org_id,
        key_id,
        key,
    };
    save_state(state_path, &renewed)?;
    Ok(Some(renewed))
}

/// A new org with its billing contact, one low-balance threshold, `credit` (promotional) and
/// a key.
pub(super) async fn new_org(
    api: &Api,
    name: &str,
    low_threshold: &str,
    credit: &str,
    purpose: &str,
) -> anyhow::Result<DemoOrg> {
    let org = api
        .operator(
            Method::POST,
            "/v1/orgs",
            Some(&json!({
                "name": name,
                "billing_emails": [BILLING_EMAIL],
                "low_thresholds": [low_threshold],
            })),
            None,
        )
        .await?;
    let org_id = org["id"]
        .as_str()
        .ok_or_else(|| anyhow!("POST /v1/orgs: no id in {org}"))?
        .to_owned();
    api.operator(
        Method::POST,
        &format!("/v1/orgs/{org_id}/grants"),
        Some(&json!({
            "amount": credit,
            "origin": "promotional",
            "reference": format!("{purpose}: starting credit"),
        })),
        Some(&format!("{purpose}-{org_id}")),
    )
    .await?;
    // Its owner, who signs in to the billing page with an emailed link.
    api.operator(
        Method::POST,
        &format!("/v1/orgs/{org_id}/members"),
        Some(&json!({"email": BILLING_EMAIL, "name": "Demo owner", "role": "owner", "invite": false})),
        None,
    )
    .await?;
    let (key_id, key) = new_key(api, &org_id, purpose).await?;
    Ok(DemoOrg {
        org_id,
        key_id,
        key,
    })
}

/// A new key of `org_id`: its id and secret.
async fn new_key(api: &Api, org_id: &str, name: &str) -> anyhow::Result<(String, String)> {
    let created = api
        .operator(
            Method::POST,
            &format!("/v1/orgs/{org_id}/keys"),
            Some(&json!({ "name": name })),
            None,
        )
        .await?;
    let id = created["id"].as_str();
    let secret = created["secret"].as_str();
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
        _ => bail!("POST /v1/orgs/{org_id}/keys: no key in {created}"),
    }
}

pub(super) fn load_state(path: &Path) -> anyhow::Result<Option<DemoOrg>> {
    match std::fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(saved) => Ok(Some(saved)),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "unreadable; seeding a new demo org");
                Ok(None)
            }
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `demo.json` readable by its owner only (it holds a key's secret).
pub(super) fn save_state(path: &Path, demo: &DemoOrg) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(demo)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        // An existing file keeps its mode on open: narrow it first.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}
