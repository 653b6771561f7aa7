//! Someone holding the database (or a backup that is restored) plants a webhook receiver with
//! an id Ward would never make. It receives signed events, so the admins' remedy must still
//! work: `webhook remove` with the id `webhook list` shows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_e2e::inprocess::TestController;
use ward_proto::v1::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_planted_with_an_id_ward_never_makes_is_listed_and_removed() {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let added = admin
        .add_webhook(AddWebhookRequest {
            url: "https://127.0.0.1:9/hook".into(),
            events: vec!["command.finished".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let path = controller.data.database();
    let id = added.webhook.unwrap().id;
    tokio::task::spawn_blocking(move || {
        let db = rusqlite::Connection::open(path).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        let edited = db
            .execute(
                "UPDATE webhook SET id = 'exfil' WHERE id = ?1",
                rusqlite::params![id],
            )
            .unwrap();
        assert_eq!(edited, 1);
    })
    .await
    .unwrap();

    let listed = admin
        .list_webhooks(ListWebhooksRequest {})
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.webhooks.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["exfil"]);
    admin
        .list_webhook_deliveries(ListWebhookDeliveriesRequest {
            webhook_id: "exfil".into(),
            limit: 10,
        })
        .await
        .expect("the planted receiver's deliveries can be listed");
    let removed = admin
        .remove_webhook(RemoveWebhookRequest { id: "exfil".into() })
        .await
        .expect("the planted receiver can be removed by the id the list shows")
        .into_inner();
    assert_eq!(removed.id, "exfil");
    let left = admin
        .list_webhooks(ListWebhooksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(left.webhooks.is_empty(), "{:?}", left.webhooks);
}
