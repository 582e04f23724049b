//! The knowledge-base actor on the in-memory store.

use super::*;
use crate::store::KbStore;
use crate::testkit::{eventually, kit, kit_with, quick_passivation};

#[tokio::test]
async fn articles_are_kept_searched_changed_and_deleted() {
    let k = kit().await;
    let kb = &k.system.kb;
    let refunds = kb
        .put(k.article(
            "Refunds",
            "Refunds reach your card within five working days.",
        ))
        .await
        .unwrap();
    let reset = kb
        .put(k.article("Passwords", "Use the reset link on the sign-in page."))
        .await
        .unwrap();
    assert_eq!(kb.list(&k.project).await.unwrap().len(), 2);
    assert_eq!(kb.get(&k.project, reset.id).await.unwrap(), reset);

    let found = kb.search(&k.project, "refund card", 3).await.unwrap();
    assert_eq!(found[0].article_id, refunds.id);

    let change = ArticleChange {
        body: Some(crate::domain::ArticleBody::parse("Refunds take three days now.").unwrap()),
        at: crate::clock::now_millis(),
        ..ArticleChange::default()
    };
    let changed = kb.patch(&k.project, refunds.id, change).await.unwrap();
    assert_eq!(changed.title, refunds.title, "fields not given stay");
    let found = kb.search(&k.project, "three days", 3).await.unwrap();
    assert_eq!(
        found[0].article_id, refunds.id,
        "the index follows the change"
    );

    kb.delete(&k.project, reset.id, chrono::Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        kb.get(&k.project, reset.id).await,
        Err(KbError::NotFound)
    ));
    assert!(matches!(
        kb.delete(&k.project, reset.id, chrono::Utc::now()).await,
        Err(KbError::NotFound)
    ));
    // The store holds what the actor acknowledged.
    assert_eq!(
        k.store.list_articles(&k.project).await.unwrap(),
        vec![changed]
    );
}

#[tokio::test]
async fn a_full_knowledge_base_refuses_new_articles_but_takes_changes() {
    let kb_config = KbConfig {
        max_articles: 2,
        ..KbConfig::default()
    };
    let k = kit_with(Default::default(), kb_config, Default::default()).await;
    let kb = &k.system.kb;
    let first = kb.put(k.article("One", "First article.")).await.unwrap();
    kb.put(k.article("Two", "Second article.")).await.unwrap();
    let third = kb.put(k.article("Three", "Third article.")).await;
    assert!(matches!(third, Err(KbError::Full(2))), "{third:?}");
    let mut replaced = first.clone();
    replaced.body = crate::domain::ArticleBody::parse("First, rewritten.").unwrap();
    assert!(kb.put(replaced).await.is_ok());
}

#[tokio::test]
async fn an_idle_knowledge_base_is_freed_and_rebuilt_from_the_store() {
    let (tickets, kb_config, chat) = quick_passivation();
    let k = kit_with(tickets, kb_config, chat).await;
    let kb = &k.system.kb;
    let article = kb
        .put(k.article("Shipping", "Parcels leave the warehouse every morning."))
        .await
        .unwrap();
    // Whether it is still up right after the put depends on the machine's load (it idles out
    // after 50 ms), so only the freeing and the rebuild are asserted.
    eventually("the idle knowledge base passivates", async || {
        kb.active() == 0
    })
    .await;
    let found = kb.search(&k.project, "parcels warehouse", 1).await.unwrap();
    assert_eq!(found[0].article_id, article.id);
}
