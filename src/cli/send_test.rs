//! `send-test PHONE`: a text from the office to itself, through the running daemon's outbox and
//! SMS accounts, followed until the SMS centre has it (or says why not).

use std::time::{Duration, Instant};

use clap::Args;

use stormbell::config::Config;
use stormbell::dispatch::outbox::{self, MessageState};

use super::{EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Args, Debug)]
pub struct SendTestArgs {
    /// The mobile number to send to (your own).
    #[arg(value_name = "PHONE")]
    phone: String,
    /// Seconds to wait for the SMS centre's verdict (0: queue it and return).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    wait: u64,
}

pub fn run(args: SendTestArgs, cfg: &Config) -> u8 {
    let store = match super::admin::open_existing(cfg) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let policy = cfg.dispatch_policy();
    let by = format!(
        "admin:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    );
    let phone = args.phone.clone();
    let queued = match store.write_blocking(move |tx| {
        outbox::queue_test(tx, &policy, &phone, &by, jiff::Timestamp::now())
    }) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("stormbell send-test: {e}");
            return EXIT_USAGE;
        }
    };
    println!(
        "queued:   message #{} to {}",
        queued.message, queued.address
    );
    println!("text:     {}", queued.text);
    if args.wait == 0 {
        return 0;
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut said = None;
    loop {
        let id = queued.message;
        let now = store.read_blocking(move |c| outbox::message_state(c, id));
        match now {
            Ok(Some((state, account, error))) => {
                if said != Some(state) {
                    said = Some(state);
                    let via = account.map(|a| format!(" via {a}")).unwrap_or_default();
                    let why = error.map(|e| format!(": {e}")).unwrap_or_default();
                    println!("state:    {}{via}{why}", state.as_str());
                }
                match state {
                    MessageState::Delivered => return 0,
                    MessageState::Accepted | MessageState::DeliveryUnknown => {
                        // The centre has it; a receipt may follow.
                    }
                    MessageState::Failed | MessageState::Expired => return EXIT_PROBLEMS,
                    _ => {}
                }
            }
            Ok(None) => {
                eprintln!("stormbell send-test: message #{id} is gone from the outbox");
                return EXIT_PROBLEMS;
            }
            Err(e) => {
                eprintln!("stormbell send-test: {e}");
                return EXIT_PROBLEMS;
            }
        }
        if Instant::now() >= deadline {
            return match said {
                Some(MessageState::Accepted | MessageState::DeliveryUnknown) => {
                    println!("          the SMS centre accepted it; no delivery receipt yet");
                    0
                }
                _ => {
                    eprintln!(
                        "stormbell send-test: not sent within {} s: is the daemon running \
                         (systemctl status stormbell) and an SMS account bound (stormbell status)?",
                        args.wait
                    );
                    EXIT_PROBLEMS
                }
            };
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
