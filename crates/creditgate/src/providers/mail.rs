//! The mail transport: `.eml` files in a directory (the embedded default) or an SMTP server,
//! as the configuration names. What is sent, to whom and when is the notice worker's
//! ([`crate::workers::notices`]).

use std::path::PathBuf;
use std::time::Duration;

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Config, MailTransport, SmtpTls};

/// Why a notice could not be delivered now.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The message could not be built (a bad address, say): retrying will not help.
    #[error("building the message: {0}")]
    Build(String),
    /// The delivery failed; a later attempt may succeed.
    #[error("delivering: {0}")]
    Deliver(String),
}

/// Where emails go.
pub enum Mailer {
    /// `.eml` files in a directory, named by notice id (the embedded default).
    Files(PathBuf),
    /// An SMTP server.
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>),
}

impl Mailer {
    /// The mailer the configuration names.
    pub fn from_config(config: &Config) -> Result<Mailer, String> {
        match config.mail {
            MailTransport::Files => Ok(Mailer::Files(config.data_dir.join("mail"))),
            MailTransport::Smtp => {
                use lettre::transport::smtp::authentication::Credentials;
                let host = config.smtp_host.as_str();
                let mut builder = match config.smtp_tls {
                    SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
                    SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                        .map_err(|e| format!("smtp_host {host}: {e}"))?,
                    SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                        .map_err(|e| format!("smtp_host {host}: {e}"))?,
                };
                if config.smtp_port != 0 {
                    builder = builder.port(config.smtp_port);
                }
                if !config.smtp_username.is_empty() {
                    builder = builder.credentials(Credentials::new(
                        config.smtp_username.clone(),
                        config.smtp_password.clone(),
                    ));
                }
                builder =
                    builder.timeout(Some(Duration::from_millis(config.smtp_timeout_ms.max(1))));
                Ok(Mailer::Smtp(Box::new(builder.build())))
            }
        }
    }

    /// Sends `message`, named `id` (a file's name, the Message-ID's notice id).
    pub async fn send(&self, id: &str, message: Message) -> Result<(), MailError> {
        match self {
            Mailer::Files(dir) => {
                let path = dir.join(format!("{id}.eml"));
                let bytes = message.formatted();
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| MailError::Deliver(e.to_string()))?;
                // Written whole, then renamed: a reader never sees half an email.
                let partial = dir.join(format!(".{id}.eml.partial"));
                tokio::fs::write(&partial, bytes)
                    .await
                    .map_err(|e| MailError::Deliver(e.to_string()))?;
                tokio::fs::rename(&partial, &path)
                    .await
                    .map_err(|e| MailError::Deliver(e.to_string()))
            }
            Mailer::Smtp(transport) => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Deliver(e.to_string())),
        }
    }
}
