//! Enrollment: create a token for a user, show the enroll command and a QR code of it (for a
//! device with a camera); list and withdraw unused tokens.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use qrcode::QrCode;
use qrcode::render::svg;
use serde::Deserialize;
use ward_proto::v1::{
    CreateEnrollmentTokenRequest, ListEnrollmentTokensRequest, RevokeEnrollmentTokensRequest,
};

use super::{Page, answer};
use crate::console::http::{CsrfForm, Shared};
use crate::console::{Console, ui};

pub(crate) async fn page(State(console): State<Shared>) -> Page {
    render(&console, None, None).await
}

async fn render(console: &Console, created: Option<Markup>, error: Option<String>) -> Page {
    let tokens = answer(
        console,
        console
            .client()
            .list_enrollment_tokens(ListEnrollmentTokensRequest::default())
            .await,
    )?
    .tokens;
    let may = console.me.may("enroll");
    let body = html! {
        @if let Some(c) = created { (c) }
        @if may {
            h2 { "New enrollment token" }
            @if let Some(e) = &error { p.error role="alert" { (e) } }
            form method="post" action="/enroll" {
                (ui::csrf_field(console))
                div.field { label for="enroll-user" { "User (e-mail) the device will belong to" } input #enroll-user type="email" name="user" required; }
                div.field { label for="enroll-ttl" { "Valid for (1m to 7d)" } input #enroll-ttl type="text" name="ttl" value="15m" required; }
                button type="submit" { "Create token" }
            }
        } @else {
            p.muted { "Your role (" (console.me.role) ") may not create enrollment tokens." }
        }
        h2 { "Unused tokens" }
        @if tokens.is_empty() {
            p.muted { "None: every token was used, has expired or was withdrawn." }
        } @else {
            table #tokens {
                thead { tr { th scope="col" { "Id" } th scope="col" { "User" } th scope="col" { "Expires" } th scope="col" { "Created by" } @if may { th scope="col" { "Withdraw" } } } }
                tbody {
                    @for t in &tokens {
                        tr {
                            td { code { (t.id) } }
                            td { (t.user) }
                            td { (ui::ago(t.expires_at_unix_ms)) }
                            td { (t.created_by) }
                            @if may {
                                td {
                                    form.inline method="post" action="/enroll/revoke" {
                                        (ui::csrf_field(console))
                                        input type="hidden" name="id" value=(t.id);
                                        button.danger type="submit" aria-label={"Withdraw token " (t.id) " of " (t.user)} { "Withdraw" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(ui::page(console, "/enroll", "Enrollment", body))
}

#[derive(Deserialize)]
pub(crate) struct CreateForm {
    user: String,
    #[serde(default)]
    ttl: String,
}

pub(crate) async fn create(
    State(console): State<Shared>,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> Page {
    let ttl = match crate::cli::tokens::TOKEN_TTL.parse("valid for", &form.ttl) {
        Ok(d) => d.as_secs(),
        Err(e) => return render(&console, None, Some(e)).await,
    };
    let created = match console
        .client()
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            user: form.user.trim().to_owned(),
            ttl_seconds: ttl,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            return render(&console, None, Some(s.message().to_owned())).await;
        }
        Err(s) => return Err(ui::status_page(&console, &s)),
    };
    let command = format!(
        "ward-agent enroll --server {} --token {} --ca-hash {}",
        created.server_url, created.token, created.ca_hash
    );
    let qr = QrCode::new(command.as_bytes())
        .map(|code| {
            let svg = code
                .render::<svg::Color>()
                .min_dimensions(220, 220)
                .dark_color(svg::Color("#000000"))
                .light_color(svg::Color("#ffffff"))
                .build();
            // Inline: the token must not sit behind a URL of its own.
            svg.split_once("?>")
                .map_or(svg.clone(), |(_, rest)| rest.to_owned())
        })
        .ok();
    let shown = html! {
        section.card #created aria-labelledby="h-created" {
            h2 #h-created { "Token for " (created.user) }
            p { "Single use, expires " (ui::ago(created.expires_at_unix_ms)) ". It is shown once: copy it now." }
            p { label for="enroll-command" { "On the device, run:" } }
            pre #enroll-command tabindex="0" { (command) }
            @if let Some(svg) = qr {
                figure.qr {
                    div role="img" aria-label="QR code of the enroll command" { (ui::svg(svg)) }
                    figcaption.muted { "The same command as a QR code, for a device with a camera." }
                }
            }
        }
    };
    render(&console, Some(shown), None).await
}

#[derive(Deserialize)]
pub(crate) struct RevokeForm {
    id: String,
}

pub(crate) async fn revoke(
    State(console): State<Shared>,
    CsrfForm(form): CsrfForm<RevokeForm>,
) -> Page {
    answer(
        &console,
        console
            .client()
            .revoke_enrollment_tokens(RevokeEnrollmentTokensRequest {
                token_id: form.id,
                reason: "withdrawn in wardctl console".into(),
                ..Default::default()
            })
            .await,
    )?;
    Ok(Redirect::to("/enroll").into_response())
}
