//! The whole call-and-respond loop as the people in it see it, in a real browser (headless
//! Chromium driven through ChromeDriver): rain on the synthetic county raises a red flash-flood
//! warning; the node-smpp SMSC delivers the texts with their check-in links; one lead answers
//! by SMS reply ("3 12"); the others stay silent and the red ladder climbs to the county's
//! silent list. The duty officer signs in to the office page and sees the silent villages.
//! Then a silent village's lead opens the link from the SMS on their phone, acknowledges and
//! reports 23 people moved to a shelter; the office page, live, turns that village from
//! "silent" to "answered" and the counts change. A screenshot of the office page is kept in
//! `target/test-artefacts/office-<engine>.png`. Finally `stormbell report` tells it all
//! afterwards. On both engines.

use crate::common;
use crate::common::backend::{Place, on_both};

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::smsc::Smsc;
use common::webdriver::Browser;
use stormbell::correlate::Tier;
use stormbell::runtime::clock::SimClock;
use stormbell::store::Store;

const PASSWORD: &str = "值班室 duty 2019";

fn count(store: &Store, sql: &'static str) -> i64 {
    store
        .read_blocking(move |c| Ok(c.query_row(sql, (), |r| r.get(0))?))
        .unwrap()
}

/// The stormbell binary on this test's database, with nothing from the caller's environment.
fn stormbell_cli(place: &Place, data: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_stormbell"));
    for (k, _) in std::env::vars() {
        if k.starts_with("STORMBELL_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    place.env(&mut c, data);
    c
}

on_both! {
fn a_silent_village_answers_from_its_link_and_the_office_page_turns_it_answered(backend) {
    let smsc = Smsc::start(5);
    let dir = tempfile::tempdir().unwrap();
    let place = Place::new(backend);
    let store = place.open();
    let reg = common::county::registry(&store);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cfg = stormbell::config::Config::load(None, &Default::default()).unwrap();
    let mut policy = cfg.dispatch_policy();
    policy.link_base = Some(format!("{base}/r/"));
    let settings = cfg.respond.clone();
    let warned = common::county::warn_zone(&store, reg.clone(), &cfg, &policy, &settings, 50.0);
    assert_eq!(warned.tier, Tier::Red, "50 mm in an hour: move now");
    // The office's account, made as an administrator would (the password on standard input).
    let mut add = stormbell_cli(&place, dir.path())
        .args(["user", "add", "duty"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        writeln!(add.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    }
    let added = add.wait_with_output().unwrap();
    assert!(added.status.success(), "{added:?}");

    let (by_sms, by_link) = rt.block_on(async {
        let clock = Arc::new(SimClock::new(warned.at));
        let stages = common::county::Stages::start(
            &store,
            &reg,
            (&policy, &settings),
            smsc.account(),
            clock.clone(),
        );
        let office = stormbell::web::office::Office::new(
            store.clone(),
            reg.clone(),
            cfg.time_zone(),
            "东溟县防汛办（合成）",
            &base,
        )
        .await
        .unwrap();
        let web = stages
            .serve(
                listener,
                &store,
                &reg,
                (&policy, &settings),
                clock.clone(),
                Some(office),
            )
            .await;
        let wait = |what: &'static str, sql: &'static str, want: i64| {
            let store = store.clone();
            async move { common::wait_count(&store, what, sql, want).await }
        };
        let all_out = common::ALL_OUT;
        wait("warnings out", all_out, 1).await;

        // Places the warning calls for, by level: one village answers by SMS; the others
        // stay silent.
        let villages: Vec<(String, String, String)> = store
            .read_blocking(|c| {
                let mut q = c.prepare(
                    "SELECT target, person, mobile FROM respond_call
                     WHERE level = 'village' AND state = 'open' ORDER BY target, id",
                )?;
                let r = q.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(r.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        let mut targets: Vec<&str> = villages.iter().map(|v| v.0.as_str()).collect();
        targets.dedup();
        assert!(targets.len() >= 2, "two villages at least: {villages:?}");
        let by_sms = villages.iter().find(|v| v.0 == targets[0]).unwrap().clone();
        let by_link = villages.iter().find(|v| v.0 == targets[1]).unwrap().clone();
        let mo = |mobile: &str, text: &str| smsc.reply_from(mobile, text);
        mo(&by_sms.2, "3 12");
        wait("the SMS reply", "SELECT count(*) FROM respond_answer", 1).await;

        // Sixteen minutes of silence: the red ladder (5, 5, 10, 10, 15 min) runs out.
        // One move: the steps fall due at their own times, and the respond stage's next turn
        // fires every step due by then, as after any pause.
        clock.advance(Duration::from_secs(16 * 60));
        wait(
            "silent list",
            "SELECT count(*) FROM respond_call WHERE state = 'silent' AND level = 'village'",
            1,
        )
        .await;
        wait("chases out", all_out, 1).await;

        let browser = Browser::start().await;
        // Office pages need a session.
        browser.goto(&format!("{base}/office")).await;
        assert!(browser.url().await.ends_with("/office/login"));
        // A wrong password is refused and says so.
        browser
            .type_in(&browser.find("input[name=user]").await, "duty")
            .await;
        browser
            .type_in(
                &browser.find("input[name=password]").await,
                "wrong password 1",
            )
            .await;
        browser.click(&browser.find("#sign-in").await).await;
        let error = browser.wait_for("#error", 10).await;
        assert!(browser.text(&error).await.contains("用户名或密码错误"));
        browser
            .type_in(&browser.find("input[name=user]").await, "duty")
            .await;
        browser
            .type_in(&browser.find("input[name=password]").await, PASSWORD)
            .await;
        browser.click(&browser.find("#sign-in").await).await;
        browser.wait_url("/office", 10).await;
        let office_window = browser.window().await;

        // The link village is silent on the table and on the map; the SMS village answered.
        let row =
            |id: &str, answer: &str| format!("tr[data-place=\"{id}\"][data-answer=\"{answer}\"]");
        browser.find(&row(&by_link.0, "silent")).await;
        browser
            .find(&format!(
                "circle[data-place=\"{}\"][data-answer=\"silent\"]",
                by_link.0
            ))
            .await;
        // The 12 are on the village's row, or on the row of the hazard site that threatens
        // it, when that row counts its people (the table says where).
        let counted_in = browser
            .attr_of(&row(&by_sms.0, "answered"), "data-counted-in")
            .await;
        let carrier = counted_in.unwrap_or_else(|| by_sms.0.clone());
        assert_eq!(
            browser
                .attr_of(
                    &format!("details.warning tr[data-place=\"{carrier}\"]"),
                    "data-moved"
                )
                .await
                .as_deref(),
            Some("12")
        );
        assert_eq!(browser.text_of("#moved-total").await.as_deref(), Some("12"));
        browser.screenshot(&format!("office-before-{}", backend.name())).await;
        // The silent filter: only places nobody answered, the totals theirs.
        let filtered = browser.new_window().await;
        browser.switch_to(&filtered).await;
        browser.set_size(1400, 2400).await;
        browser.goto(&format!("{base}/office?filter=silent")).await;
        browser.screenshot(&format!("office-silent-{}", backend.name())).await;
        let kept = browser
            .run(
                "const rows = [...document.querySelectorAll('details.warning tr[data-place]')];
                 return {
                   answers: [...new Set(rows.map(r => r.dataset.answer))],
                   places: new Set(rows.map(r => r.dataset.place)).size,
                   total: Number(document.querySelector('#totals').dataset.places),
                   silent: Number(document.querySelector('#totals').dataset.silent)
                         + Number(document.querySelector('#totals').dataset.waiting),
                 };",
            )
            .await;
        let answers: Vec<&str> = kept["answers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert!(
            !answers.is_empty() && answers.iter().all(|a| matches!(*a, "silent" | "waiting")),
            "{kept}"
        );
        assert_eq!(kept["places"], kept["total"], "{kept}");
        assert_eq!(kept["total"], kept["silent"], "{kept}");
        browser.switch_to(&office_window).await;
        // Wait for the live stream to be open before anything changes.
        let t0 = Instant::now();
        while browser
            .text_of("#live")
            .await
            .unwrap_or_default()
            .is_empty()
        {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "live updates did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Said in the page's words (its template's), as all else on a Chinese page.
        assert_eq!(browser.text_of("#live").await.as_deref(), Some("● 实时"));

        // The lead's phone: the link in the SMS they received.
        let n = stormbell::dispatch::outbox::normalise_mobile(&by_link.2).unwrap();
        let texts: Vec<String> = smsc
            .phones()
            .iter()
            .filter(|p| p["dest"] == format!("86{n}"))
            .filter_map(|p| p["text"].as_str().map(String::from))
            .collect();
        let text = texts
            .iter()
            .find(|t| t.contains(&format!("{base}/r/")))
            .unwrap_or_else(|| panic!("a link in {texts:?}"));
        let at = text.find(&format!("{base}/r/")).unwrap();
        let link: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_graphic())
            .collect();

        let phone = browser.new_window().await;
        browser.switch_to(&phone).await;
        // A cheap phone's screen: the page fits its width, the answer buttons in reach.
        browser.set_size(360, 740).await;
        browser.goto(&link).await;
        browser.screenshot(&format!("checkin-phone-{}", backend.name())).await;
        assert_eq!(
            browser
                .run("return document.documentElement.scrollWidth <= window.innerWidth;")
                .await,
            serde_json::Value::Bool(true),
            "the check-in page scrolls sideways on a phone"
        );
        assert_eq!(
            browser
                .run(
                    "const b = document.querySelector('form:has(input[value=ack]) button').getBoundingClientRect();
                     return b.top >= 0 && b.bottom <= window.innerHeight && b.width >= 280;"
                )
                .await,
            serde_json::Value::Bool(true),
            "the acknowledge button is on the first screen, full width"
        );
        browser
            .click(&browser.find("form:has(input[value=ack]) button").await)
            .await;
        browser.wait_for("p.ok", 10).await;
        browser
            .type_in(&browser.find("input[name=people]").await, "23")
            .await;
        let shelter = browser.find("select[name=shelter] option").await;
        let shelter_name = browser.text(&shelter).await;
        assert!(!shelter_name.is_empty(), "the warning names a shelter");
        browser.click(&shelter).await;
        browser
            .click(&browser.find("form:has(input[value=moved]) button").await)
            .await;
        browser.wait_for("#reported", 10).await;
        let done = browser.text_of("#reported").await.unwrap_or_default();
        assert!(done.contains("已转移 23 人"), "{done}");

        // The office page, untouched, turns the village answered with 23 moved.
        browser.switch_to(&office_window).await;
        // It carries the SMS village's 12 too when that village is counted on its row.
        let expect = if carrier == by_link.0 { 35 } else { 23 };
        browser
            .wait_for(
                &format!("{}[data-moved=\"{expect}\"]", row(&by_link.0, "answered")),
                20,
            )
            .await;
        browser
            .find(&format!(
                "circle[data-place=\"{}\"][data-answer=\"answered\"]",
                by_link.0
            ))
            .await;
        assert_eq!(browser.text_of("#moved-total").await.as_deref(), Some("35"));
        let shelters = browser.text_of(".tables").await.unwrap_or_default();
        assert!(shelters.contains(&shelter_name), "{shelters}");
        // The silent filter no longer lists it.
        browser.click(&browser.find("#filter-silent").await).await;
        assert!(
            browser
                .try_find(&row(&by_link.0, "answered"))
                .await
                .is_none()
        );
        // The whole board: the county's to-move is the registry's figures of its places,
        // each once, and moved never exceeds it.
        browser.set_size(1400, 2400).await;
        browser.goto(&format!("{base}/office")).await;
        let county = browser
            .run(
                "const t = document.querySelector('#totals').dataset;
                 return [Number(t.toMove), Number(t.moved)];",
            )
            .await;
        let (to_move, moved) = (county[0].as_u64().unwrap(), county[1].as_u64().unwrap());
        assert!(moved <= to_move && to_move > 0, "{county}");
        let shot = browser.screenshot(&format!("office-{}", backend.name())).await;
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 10_000,
            "a real picture"
        );
        drop(browser);

        stages.stop().await;
        web.await.unwrap().unwrap();
        (by_sms, by_link)
    });

    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM respond_answer WHERE channel = 'link'"
        ),
        2,
        "the acknowledgement and the report"
    );
    assert_eq!(
        count(&store, "SELECT sum(people) FROM respond_evacuation"),
        35
    );

    // Afterwards: the after-action report tells it all.
    let out = dir.path().join("report");
    let o = stormbell_cli(&place, dir.path())
        .args(["report", common::county::ZONE, "--pdf", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The PDF, read back page by page by poppler (not by us): every page a real picture,
    // the first with the title and the evacuation line the table and the board agree on.
    let pdf = out.join("report.pdf");
    let o = std::process::Command::new("pdftoppm")
        .args(["-r", "50", "-png"])
        .arg(&pdf)
        .arg(out.join("page"))
        .output()
        .expect("pdftoppm (Debian poppler-utils; scripts/test installs it)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut pages: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "no pages");
    for p in &pages {
        assert!(
            std::fs::metadata(p).unwrap().len() > 2_000,
            "{p:?} is blank"
        );
    }
    let text = |first: usize, last: usize| {
        let o = std::process::Command::new("pdftotext")
            .args(["-f", &first.to_string(), "-l", &last.to_string()])
            .arg(&pdf)
            .arg("-")
            .output()
            .unwrap();
        // Line breaks and spacing are the printer's: compare the words only.
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .collect::<String>()
    };
    let first = text(1, 1);
    assert!(first.contains("预警复盘报告"), "{first}");
    assert!(first.contains("应转移172人，已转移35人"), "{first}");
    let all = text(1, pages.len());
    assert!(all.contains("人员转移") && all.contains("时间线"), "{all}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 3, "three charts");
    assert!(
        html.contains(r#"data-series="moved" data-last="35""#),
        "the chart ends on the table's figure"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    std::fs::write(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/test-artefacts/report-{}.md", backend.name())),
        &md,
    )
    .ok();
    let persons = std::fs::read_to_string(out.join("persons.csv")).unwrap();
    let timeline = std::fs::read_to_string(out.join("timeline.csv")).unwrap();
    assert!(md.contains("山洪灾害红色预警"), "{md}");
    assert!(md.contains("已转移 **35** 人"), "{md}");
    // Both answers, with their channels and minutes; the silent ones named.
    let line_of = |person: &str| {
        persons
            .lines()
            .find(|l| l.starts_with(&format!("{person},")))
            .unwrap_or_else(|| panic!("{person} in {persons}"))
            .to_string()
    };
    assert!(
        line_of(&by_sms.1).contains(",sms,answered,"),
        "{}",
        line_of(&by_sms.1)
    );
    let link_line = line_of(&by_link.1);
    assert!(link_line.contains(",link,answered,"), "{link_line}");
    let never: Vec<&str> = persons.lines().filter(|l| l.contains(",silent,")).collect();
    assert!(!never.is_empty(), "{persons}");
    for l in &never {
        let name = l.split(',').nth(1).unwrap();
        assert!(md.contains(name), "{name} is named in the report");
    }
    // The late answer took more than the ladder's 15 minutes; the SMS reply less.
    let minutes = |l: &str| -> f64 { l.split(',').nth(7).unwrap().parse().unwrap() };
    assert!(minutes(&link_line) >= 15.0, "{link_line}");
    assert!(minutes(&line_of(&by_sms.1)) < 5.0);
    for kind in ["issued", "sms", "answer", "escalation", "evacuation"] {
        assert!(
            timeline.lines().any(|l| l.split(',').nth(1) == Some(kind)),
            "{kind} in the timeline:\n{timeline}"
        );
    }
    let en = stormbell_cli(&place, dir.path())
        .args(["report", common::county::ZONE, "--lang", "en", "--out"])
        .arg(dir.path().join("report-en"))
        .output()
        .unwrap();
    assert!(en.status.success());
    let md_en = std::fs::read_to_string(dir.path().join("report-en/report.md")).unwrap();
    assert!(md_en.contains("**35** moved"), "{md_en}");
    // A warning that does not exist is a clear error.
    let none = stormbell_cli(&place, dir.path())
        .args(["report", "flash_flood:NOPE"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no warning"));
}
}
