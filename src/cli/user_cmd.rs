//! `stormbell user`: the duty office's accounts for the office page (`/office`).

use std::io::BufRead;

use clap::Subcommand;
use stormbell::config::Config;
use stormbell::store::audit;
use stormbell::web::auth;

use super::{EXIT_PROBLEMS, EXIT_USAGE};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add an office user, or set an existing one's password and role (ends their sessions).
    /// The password is read from the first line of standard input, never from the command
    /// line (where `ps` and the shell history would keep it).
    Add {
        /// User name.
        name: String,
        /// officer (may act) or viewer (reads only).
        #[arg(long, default_value = "officer")]
        role: String,
    },
    /// List users.
    List,
    /// Disable a user and end their sessions.
    Disable {
        /// User name.
        name: String,
    },
}

pub fn run(cmd: UserCommand, cfg: &Config) -> u8 {
    let store = match cfg.store.location().open() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stormbell: {e}");
            return EXIT_PROBLEMS;
        }
    };
    let tz = cfg.time_zone();
    let code = match cmd {
        UserCommand::Add { name, role } => {
            let mut password = String::new();
            if let Err(e) = std::io::stdin().lock().read_line(&mut password) {
                eprintln!("stormbell: reading the password from standard input: {e}");
                return EXIT_USAGE;
            }
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            let user = match auth::NewUser::new(&name, &password, &role) {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("stormbell: user {name}: {e}");
                    return EXIT_USAGE;
                }
            };
            let now = jiff::Timestamp::now();
            let (n, r, tz2) = (name.clone(), role.clone(), tz.clone());
            match store.write_blocking(move |tx| {
                auth::put_user(tx, &user, now)?;
                audit::append(
                    tx,
                    &audit::Entry::now(
                        &tz2,
                        "admin",
                        "office.user_set",
                        n.clone(),
                        serde_json::json!({ "role": r }),
                    ),
                )?;
                Ok::<_, anyhow::Error>(())
            }) {
                Ok(()) => {
                    println!("user {name}: {role}");
                    0
                }
                Err(e) => {
                    eprintln!("stormbell: user {name}: {e}");
                    EXIT_USAGE
                }
            }
        }
        UserCommand::List => match store.read_blocking(auth::users) {
            Ok(users) => {
                for u in users {
                    println!(
                        "{}\t{}\t{}{}",
                        u.name,
                        u.role,
                        u.created,
                        if u.disabled { "\tdisabled" } else { "" }
                    );
                }
                0
            }
            Err(e) => {
                eprintln!("stormbell: {e}");
                EXIT_PROBLEMS
            }
        },
        UserCommand::Disable { name } => {
            let now = jiff::Timestamp::now();
            let n = name.clone();
            match store.write_blocking(move |tx| {
                let found = auth::disable_user(tx, &n, now)?;
                if found {
                    audit::append(
                        tx,
                        &audit::Entry::now(
                            &tz,
                            "admin",
                            "office.user_disabled",
                            n.clone(),
                            serde_json::json!({}),
                        ),
                    )?;
                }
                Ok::<_, anyhow::Error>(found)
            }) {
                Ok(true) => {
                    println!("user {name}: disabled");
                    0
                }
                Ok(false) => {
                    eprintln!("stormbell: no user {name}");
                    EXIT_USAGE
                }
                Err(e) => {
                    eprintln!("stormbell: {e}");
                    EXIT_PROBLEMS
                }
            }
        }
    };
    // The change folded into the database file before we exit (see registry import).
    store.close(super::CLOSE_WITHIN);
    code
}
