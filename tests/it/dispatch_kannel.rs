//! SMS through Kannel (Debian `kannel`: bearerbox + smsbox, a production SMS gateway) bound
//! over SMPP to the node-smpp test SMSC: stormbell speaks only HTTP sendsms and takes
//! Kannel's delivery reports on its own listener.

use crate::common;
use crate::common::backend::{Place, on_both};

use std::sync::Arc;

use common::dispatch::{contact, targets};
use common::kannel::{free_port, start_kannel};
use common::smsc::Smsc;
use jiff::Timestamp;
use stormbell::correlate::assess::PlaceKind;
use stormbell::correlate::lifecycle::MessageKind;
use stormbell::correlate::tier::{Hazard, Tier};
use stormbell::correlate::warning::TargetPlace;
use stormbell::dispatch::kannel::KannelChannel;
use stormbell::dispatch::outbox::{self, Policy};
use stormbell::store::Store;

on_both! {
    fn warnings_go_through_kannel_and_its_delivery_reports_come_back(backend) {
        let place = Place::new(backend);
        let smsc = Smsc::start(20);
        let dir = tempfile::tempdir().unwrap();
        let kannel = start_kannel(&smsc, dir.path());
        let store = place.open();
        smsc.control("/undeliverable?number=8613700000009");
        let contacts: Vec<_> = (0..10)
            .map(|i| contact(i, &format!("1370000000{i}")))
            .collect();
        let mut t = targets(
            "geo_hazard:331098102",
            1,
            Hazard::GeoHazard,
            Tier::Orange,
            MessageKind::Alert,
            contacts,
        );
        t.places = vec![TargetPlace {
            kind: PlaceKind::Site,
            id: "DZ-0001".into(),
            name: "后山滑坡隐患点".into(),
            tier: Tier::Orange,
            evacuate: 12,
        }];
        t.evacuate = 12;
        let e = store
            .write_blocking(move |tx| outbox::enqueue(tx, 1, &t, Timestamp::now(), &Policy::default()))
            .unwrap();
        assert_eq!(e.queued, 10);
        let dlr_port = free_port();
        let settings = kannel.settings(dlr_port);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let done = |s: &Store| -> i64 {
            s.read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM dispatch_message WHERE state IN ('delivered', 'failed')",
                    (),
                    |r| r.get(0),
                )?)
            })
            .unwrap()
        };
        rt.block_on(async {
            let (stop_tx, stop) = stormbell::runtime::Trigger::new();
            let ch = KannelChannel::new(settings, store.clone(), Policy::default()).unwrap();
            let task = tokio::spawn(stormbell::dispatch::drive(
                ch,
                stop,
                Arc::new(tokio::sync::Notify::new()),
            ));
            common::wait_store(
                common::Said(|| {
                    let log = dir.path().join("smsbox.log");
                    format!(
                        "delivery reports: {}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    )
                }),
                40,
                &store,
                || std::future::ready(tokio::task::block_in_place(|| done(&store)) >= 10),
            )
            .await;
            stop_tx.fire();
            task.await.unwrap().unwrap();
        });
        let rows: Vec<(String, String, String, Option<String>)> = store
            .read_blocking(|c| {
                let mut st = c.prepare(
                    "SELECT address, state, text, last_error FROM dispatch_message ORDER BY id",
                )?;
                let r = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        assert_eq!(
            rows.iter().filter(|r| r.1 == "delivered").count(),
            9,
            "{rows:?}"
        );
        let failed = rows.iter().find(|r| r.0 == "13700000009").unwrap();
        assert_eq!(failed.1, "failed");
        assert!(
            failed.3.as_deref().unwrap_or("").contains("UNDELIV"),
            "{failed:?}"
        );
        // Kannel encoded the UTF-8 text as UCS-2 and split it; the handsets show it whole.
        let phones = smsc.phones();
        assert_eq!(phones.len(), 10);
        for (addr, _, text, _) in &rows {
            let p = phones
                .iter()
                .find(|p| p["dest"] == format!("86{addr}"))
                .unwrap();
            assert_eq!(p["text"], text.as_str());
        }
        assert!(smsc.submits().iter().all(|s| s["data_coding"] == 8));
        assert!(rows[0].2.contains("地质灾害"), "{}", rows[0].2);
    }
}
