//! Every user-facing word stormbell writes comes from `templates/` (minijinja), compiled into
//! the binary and parsed once into one environment: CAP (`cap/…`), SMS (`sms/…`) and
//! broadcast scripts (`broadcast/…`), Chinese and English. A template is named by its path
//! without `.j2`, e.g. `sms/warning.zh-CN`.

use std::sync::OnceLock;

use minijinja::Environment;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name, ".j2")))),*]
    };
}

const ALL: &[(&str, &str)] = templates![
    "cap/event.zh-CN",
    "cap/event.en",
    "cap/headline.zh-CN",
    "cap/headline.en",
    "cap/why.zh-CN",
    "cap/why.en",
    "cap/description.zh-CN",
    "cap/description.en",
    "cap/instruction.zh-CN",
    "cap/instruction.en",
    "sms/warning.zh-CN",
    "sms/warning.en",
    "sms/merged.zh-CN",
    "sms/merged.en",
    "sms/chase.zh-CN",
    "sms/chase.en",
    "sms/escalate.zh-CN",
    "sms/escalate.en",
    "sms/assist.zh-CN",
    "sms/assist.en",
    "sms/codes.zh-CN",
    "sms/codes.en",
    "sms/confirm.zh-CN",
    "sms/confirm.en",
    "sms/unbooked.zh-CN",
    "sms/unbooked.en",
    "sms/terminal.zh-CN",
    "sms/terminal.en",
    "sms/shelter.zh-CN",
    "sms/shelter.en",
    "sms/test.zh-CN",
    "sms/test.en",
    "broadcast/warning.zh-CN",
    "broadcast/warning.en",
    "broadcast/title.zh-CN",
    "broadcast/title.en",
    "voice/prompt.zh-CN",
    "voice/prompt.en",
    "voice/call.zh-CN",
    "voice/call.en",
    "web/checkin.zh-CN",
    "web/office.zh-CN",
    "web/office_board.zh-CN",
    "web/office_login.zh-CN",
    "report/words.zh-CN",
    "report/warning.zh-CN",
    "report/warning_html.zh-CN",
    "report/warning_html.en",
    "report/warning.en",
    "report/drill.zh-CN",
    "report/drill.en",
];

/// The environment (a template that does not parse is an error at first use, naming it).
pub fn env() -> anyhow::Result<&'static Environment<'static>> {
    static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Web pages are HTML and escaped as such; texts, scripts and CAP fields are not HTML
        // (CAP values are escaped by the XML writer).
        env.set_auto_escape_callback(|name| {
            if name.starts_with("web/") || name.starts_with("report/warning_html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        for (name, src) in ALL {
            env.add_template(name, src)
                .map_err(|e| format!("{name}: {e:#}"))?;
        }
        Ok(env)
    })
    .as_ref()
    .map_err(|e| anyhow::anyhow!("templates: {e}"))
}

/// The language a setting asks for: `en`, else Chinese.
pub fn lang(setting: &str) -> &'static str {
    if setting == "en" { "en" } else { "zh-CN" }
}

/// A hazard's name in a language (`cap/event`), for texts that are not CAP. A relayed
/// upstream warning is named by the hazard it is about when the text knows it
/// ([`event_name_of`]); here it is "the upstream's".
pub fn event_name(hazard: &str, lang: &str) -> anyhow::Result<String> {
    event_name_of(hazard, None, lang)
}

/// A hazard's name in a language, a relayed upstream warning's by the name of its event
/// (`relayed`: "暴雨").
pub fn event_name_of(hazard: &str, relayed: Option<&str>, lang: &str) -> anyhow::Result<String> {
    Ok(env()?.get_template(&format!("cap/event.{lang}"))?.render(
        minijinja::context! { hazard => hazard, upstream => minijinja::context! { event => relayed } },
    )?)
}

#[cfg(test)]
mod tests {
    /// One template that does not parse stops every text and page that uses the environment
    /// (warnings included): this is where it must fail first, naming the template.
    #[test]
    fn every_template_parses() {
        if let Err(e) = super::env() {
            panic!("{e:#}");
        }
        for (name, _) in super::ALL {
            assert!(super::env().unwrap().get_template(name).is_ok(), "{name}");
        }
    }
}
