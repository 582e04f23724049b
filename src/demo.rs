//! The demo project's knowledge base: a handful of help-center articles, so that a fresh
//! install's assistant answers real questions and shows how articles are written.

use std::sync::Arc;

use fleety_actors::domain::{Article, ArticleBody, ArticleTitle, ProjectId};

use crate::http::Ctx;

/// (title, tags, body). Blank lines separate the passages the assistant retrieves.
const ARTICLES: &[(&str, &[&str], &str)] = &[
    (
        "Resetting your password",
        &["account", "login"],
        "If you forgot your password, open the sign-in page and choose \"Forgot password\". \
         Enter the email address of your account and we send you a reset link that works for \
         one hour.\n\n\
         If the email does not arrive within a few minutes, check your spam folder, then ask \
         for a new link. Only the newest link works.\n\n\
         If you can sign in but want a new password, go to Settings, then Security, and choose \
         \"Change password\".",
    ),
    (
        "Invoices, payment methods and refunds",
        &["billing"],
        "Invoices are emailed to the account owner on the first day of each month. You can \
         also download every past invoice from Settings, then Billing.\n\n\
         To change your card or payment method, go to Settings, then Billing, and choose \
         \"Update payment method\". The new method is used from the next invoice.\n\n\
         Refunds go back to the original payment method within 5 to 10 business days. You can \
         ask for a refund within 30 days of a payment.",
    ),
    (
        "Shipping times and tracking",
        &["orders", "delivery"],
        "Orders ship within two business days. Standard delivery takes 3 to 5 business days \
         within the EU and 5 to 10 business days elsewhere.\n\n\
         As soon as your parcel leaves our warehouse you get an email with a tracking number. \
         The tracking page shows where your parcel is and when it should arrive.",
    ),
    (
        "Deleting your account and exporting your data",
        &["account", "privacy"],
        "You can export all your data at any time from Settings, then Privacy, with \
         \"Download my data\". The export is a ZIP file of JSON documents.\n\n\
         To delete your account, go to Settings, then Privacy, and choose \"Delete account\". \
         Deletion is permanent after 14 days; signing in before then cancels it.",
    ),
    (
        "Contacting the support team",
        &["support"],
        "Our support team answers Monday to Friday, 9:00 to 18:00 CET, usually within four \
         hours. Ask the assistant to open a ticket and a person from the team replies on that \
         ticket; you see the answer here at once.",
    ),
];

/// Adds the demo articles to `project`'s knowledge base.
pub async fn seed_knowledge_base(ctx: &Arc<Ctx>, project: &ProjectId) -> anyhow::Result<()> {
    let now = ctx.clock.now();
    for (title, tags, body) in ARTICLES {
        let article = Article {
            id: uuid::Uuid::new_v4(),
            project_id: project.clone(),
            title: ArticleTitle::parse(title).map_err(|e| anyhow::anyhow!(e))?,
            body: ArticleBody::parse(body).map_err(|e| anyhow::anyhow!(e))?,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            created_at: now,
            updated_at: now,
            language: Default::default(),
            url: None,
        };
        ctx.system
            .kb
            .put(article)
            .await
            .map_err(|e| anyhow::anyhow!("cannot seed the demo knowledge base: {e}"))?;
    }
    Ok(())
}
