//! The billing pages' HTML: one layout (navigation, access banner slot, sign-out), one
//! stylesheet inlined in every page (no external resources), and small builders. The
//! markup is `maud` templates, which escape every interpolated value by default; only
//! trusted markup of our own (the stylesheet, the usage chart's SVG) is `PreEscaped`.

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use creditgate_domain::member::{allows, Action, Role};
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// The stylesheet: system fonts, WCAG AA contrast, one column below 40rem.
const CSS: &str = "\
*{box-sizing:border-box}\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1a1a1a;background:#f6f7f9;line-height:1.5}\
a{color:#1f4fd8}a:focus,button:focus,input:focus,select:focus{outline:3px solid #ffbf47;outline-offset:1px}\
header{background:#fff;border-bottom:1px solid #d9dce1;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center}\
header .brand{font-weight:700;margin-right:auto}\
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.25rem .9rem}\
nav a[aria-current=page]{font-weight:700;text-decoration:none;color:#1a1a1a}\
main{max-width:60rem;margin:0 auto;padding:1rem}\
h1{font-size:1.5rem;margin:.5rem 0 1rem}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}\
.card{background:#fff;border:1px solid #d9dce1;border-radius:.4rem;padding:1rem;margin:0 0 1rem}\
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));gap:1rem}\
.figure .label{color:#4a4f57;font-size:.9rem}.figure .value{font-size:1.6rem;font-weight:700}\
.banner{border-radius:.4rem;padding:1rem;margin:0 0 1rem;border:2px solid}\
.banner.off{background:#fdecea;border-color:#a40000;color:#5c0000}\
.banner.low{background:#fff6e0;border-color:#8a5a00;color:#4d3200}\
.banner.ok{background:#e8f5ec;border-color:#1e6b34;color:#0f3d1d}\
.banner h2{margin:0 0 .3rem;font-size:1.1rem}\
.notice{background:#e8f0fe;border:1px solid #1f4fd8;border-radius:.4rem;padding:.8rem;margin:0 0 1rem}\
.error{background:#fdecea;border:1px solid #a40000;color:#5c0000;border-radius:.4rem;padding:.8rem;margin:0 0 1rem}\
label{display:block;font-weight:600;margin:.6rem 0 .2rem}\
.hint{color:#4a4f57;font-size:.9rem;font-weight:400}\
input[type=text],input[type=email],input[type=number],select,textarea{font:inherit;padding:.45rem .55rem;border:1px solid #6b7280;border-radius:.3rem;width:100%;max-width:24rem;background:#fff;color:#1a1a1a}\
button,.button{font:inherit;display:inline-block;padding:.5rem 1.1rem;border-radius:.3rem;border:1px solid #1f4fd8;background:#1f4fd8;color:#fff;cursor:pointer;text-decoration:none;margin:.6rem .4rem 0 0}\
button.secondary{background:#fff;color:#1f4fd8}button.danger{background:#a40000;border-color:#a40000}\
.presets{display:flex;flex-wrap:wrap;gap:.5rem}.presets button{margin:0}\
table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #d9dce1;vertical-align:top}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
.table-wrap{overflow-x:auto}\
.secret{font-family:ui-monospace,monospace;background:#fff6e0;padding:.5rem;border:1px dashed #8a5a00;word-break:break-all}\
.chart svg{width:100%;height:auto}\
.inline{display:inline}\
.muted{color:#4a4f57}\
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}\
@media (max-width:40rem){main{padding:.6rem}.figure .value{font-size:1.3rem}}";

/// The pages of the navigation: (path under `/billing/{org}`, label, action needed).
pub const NAV: [(&str, &str, Action); 8] = [
    ("", "Overview", Action::ViewBalance),
    ("/credits", "Add credits", Action::AddCredits),
    ("/auto-reload", "Auto-reload", Action::ViewPayments),
    ("/usage", "Usage", Action::ViewUsage),
    ("/history", "History", Action::ViewHistory),
    ("/keys", "API keys", Action::ViewKeys),
    ("/settings", "Settings", Action::ManageSettings),
    ("/members", "Members", Action::ViewMembers),
];

/// Who is looking at a page, for its layout.
pub struct Viewer<'a> {
    /// The product's name.
    pub product: &'a str,
    /// The org's id.
    pub org_id: &'a str,
    /// The org's name.
    pub org_name: &'a str,
    /// The member's email.
    pub email: &'a str,
    /// The member's role.
    pub role: Role,
    /// The session's CSRF token.
    pub csrf: &'a str,
}

/// A hidden CSRF field.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A whole page for a signed-in member: `current` is the navigation entry's path.
pub fn page(viewer: &Viewer, current: &str, title: &str, body: Markup) -> String {
    let base = format!("/billing/{}", viewer.org_id);
    let entries = NAV
        .iter()
        .filter(|(_, _, action)| allows(viewer.role, *action));
    let header = html! {
        header {
            span.brand { (viewer.product) " · " (viewer.org_name) }
            nav aria-label="Billing" {
                ul {
                    @for (path, label, _) in entries {
                        li {
                            @let here = (*path == current).then_some("page");
                            a href={ (base) (path) } aria-current=[here] { (label) }
                        }
                    }
                }
            }
            form.inline method="post" action="/billing/sign-out" {
                (csrf_field(viewer.csrf))
                span.muted { (viewer.email) " (" (viewer.role.label()) ")" }
                " "
                button.secondary type="submit" { "Sign out" }
            }
        }
    };
    document(
        &format!("{title} · {}", viewer.org_name),
        html! { (header) main #main { h1 { (title) } (body) } },
    )
}

/// A page for someone not signed in.
pub fn public_page(product: &str, title: &str, body: Markup) -> String {
    document(
        title,
        html! {
            header { span.brand { (product) } }
            main #main { h1 { (title) } (body) }
        },
    )
}

fn document(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) }
                // Our own constant stylesheet: trusted markup.
                style { (PreEscaped(CSS)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

/// An HTML response that is never cached, framed or sniffed.
pub fn respond(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'",
            ),
        ],
        Html(html),
    )
        .into_response()
}

/// A message box: `class` is `notice` or `error`.
pub fn message(class: &str, text: &str) -> Markup {
    let role = if class == "error" { "alert" } else { "status" };
    html! { div class=(class) role=(role) { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interpolated_value_is_escaped() {
        let hostile = "<script>x</script>&\"q\"";
        let viewer = Viewer {
            product: hostile,
            org_id: "org_1\"><img src=x>",
            org_name: hostile,
            email: hostile,
            role: Role::Owner,
            csrf: "t\"><b>",
        };
        let body = html! { p { (hostile) } (message("error", hostile)) };
        let page = page(&viewer, "/keys", hostile, body);
        assert!(!page.contains("<script>") && !page.contains("<img") && !page.contains("<b>"));
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;&amp;&quot;q&quot;"));
        assert!(page.contains("href=\"/billing/org_1&quot;&gt;&lt;img src=x&gt;/keys\""));
        assert!(page.contains("name=\"csrf\" value=\"t&quot;&gt;&lt;b&gt;\""));
        assert!(page.contains("aria-current=\"page\">API keys</a>"));
        // The stylesheet is our own markup, inlined as it is.
        assert!(page.contains("<style>*{box-sizing:border-box}"));
    }
}
