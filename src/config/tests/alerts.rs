//! `[alerts]`: sink URLs, names, routing and fallbacks.

use super::*;

#[test]
fn alert_urls_must_be_http_or_https() {
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[[alerts.webhook]]\nurl = \"ftp://hooks.example/x\"\n"
        )),
        "alerts.webhook[0].url: scheme must be http or https"
    );
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[[alerts.alertmanager]]\nurl = \"http://a:9093\"\n[[alerts.alertmanager]]\nurl = \"file:///etc/passwd\"\n"
        )),
        "alerts.alertmanager[1].url: scheme must be http or https"
    );
    let error = error_of(&format!(
        "{MINIMAL}[[alerts.webhook]]\nurl = \"not a url\"\n"
    ));
    assert!(
        error.starts_with("alerts.webhook[0].url: not a URL: "),
        "{error}"
    );
}

#[test]
fn two_sinks_with_the_same_name_are_refused() {
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[[alerts.alertmanager]]\nname = \"ops\"\nurl = \"http://a:9093\"\n[[alerts.webhook]]\nname = \"ops\"\nurl = \"http://b/hook\"\n"
        )),
        "alerts.webhook[0].name: duplicate sink name \"ops\""
    );
    // A default name counts too.
    assert_eq!(
        error_of(&format!(
            "{MINIMAL}[[alerts.webhook]]\nurl = \"http://a/hook\"\n[[alerts.webhook]]\nname = \"webhook-0\"\nurl = \"http://b/hook\"\n"
        )),
        "alerts.webhook[1].name: duplicate sink name \"webhook-0\""
    );
}

#[test]
fn an_alertmanager_takes_routing_and_a_fallback_to_a_notification_sink() {
    let text = format!(
        "{MINIMAL}[[alerts.alertmanager]]\nurl = \"http://am:9093\"\nmin_severity = \"critical\"\nfeeds = [\"billing/*\"]\nfallback = [\"oncall-mail\"]\nfallback_after = \"30s\"\n[[alerts.email]]\nname = \"oncall-mail\"\nsmtp_host = \"smtp\"\nfrom = \"fw@example.com\"\nto = [\"oncall@example.com\"]\n"
    );
    let config = parse_with(&text, &[]).unwrap();
    let alertmanager = &config.alerts.alertmanager[0];
    assert_eq!(alertmanager.min_severity, crate::model::Severity::Critical);
    assert!(alertmanager.feeds[0].matches("billing", "eu"));
    assert_eq!(alertmanager.fallback, ["oncall-mail"]);
    assert_eq!(alertmanager.fallback_after, Duration::from_secs(30));

    let defaults = parse_with(
        &format!("{MINIMAL}[[alerts.alertmanager]]\nurl = \"http://am:9093\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        defaults.alerts.alertmanager[0].fallback_after,
        Duration::from_secs(120)
    );

    let error = error_of(&format!(
        "{MINIMAL}[[alerts.alertmanager]]\nurl = \"http://am:9093\"\nfallback = [\"nobody\"]\n"
    ));
    assert!(
        error.contains("alerts.alertmanager[0].fallback") && error.contains("\"nobody\""),
        "{error}"
    );
}

#[test]
fn smtp_credentials_without_tls_are_refused() {
    let message = error_of(&format!(
        "{KAFKA}[[feed]]\nname = \"a\"\ntopic = \"a\"\n[[alerts.email]]\nsmtp_host = \"smtp.internal\"\nusername = \"u\"\npassword = \"p\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n"
    ));
    assert!(
        message.starts_with("alerts.email[0].security: username and password need"),
        "{message}"
    );
}

#[test]
fn glob_routes_match_by_star_and_stay_linear_with_many_stars() {
    let pattern = |text: &str| FeedPattern(text.into());
    assert!(pattern("billing/*").matches("billing", "acme"));
    assert!(pattern("cdp.*/acme").matches("cdp.profiles", "acme"));
    assert!(!pattern("cdp.*/acme").matches("cdp.profiles", "globex"));
    assert!(pattern("*a*b*c*").matches("xaybzc", ""));
    assert!(!pattern("*a*b*c*d").matches("xaybzc", ""));
    // 30 stars against a long key that never matches: instant, not 2^30 steps.
    let stars = "*a".repeat(30) + "b";
    let started = std::time::Instant::now();
    assert!(!pattern(&stars).matches(&"a".repeat(200), ""));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}
