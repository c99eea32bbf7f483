//! No Docker engine runs here, so the deployment files are checked for shape: they parse, name
//! the services, and point at files that exist.

use serde_yaml::Value;

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_yaml::from_str(&text).unwrap_or_else(|error| panic!("{path} is not valid YAML: {error}"))
}

#[test]
fn compose_runs_kafka_redis_freshwatch_prometheus_and_alertmanager() {
    let compose = load("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    for name in ["kafka", "redis", "freshwatch", "prometheus", "alertmanager"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let kafka = &compose["services"]["kafka"];
    assert_eq!(
        kafka["environment"]["KAFKA_PROCESS_ROLES"], "broker,controller",
        "KRaft mode"
    );
    let freshwatch = &compose["services"]["freshwatch"];
    assert_eq!(freshwatch["build"], ".");
    assert!(std::path::Path::new("Dockerfile").is_file());
    for service in services.values() {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if let Some(relative) = source.strip_prefix("./") {
                assert!(
                    std::path::Path::new(relative).is_file(),
                    "{relative} is mounted but missing"
                );
            }
        }
    }
    let dockerfile = std::fs::read_to_string("Dockerfile").unwrap();
    assert!(
        dockerfile.matches("FROM ").count() >= 2,
        "multi-stage build"
    );
}

#[test]
fn prometheus_scrapes_freshwatch_and_alertmanager_routes_by_severity() {
    let prometheus = load("config/prometheus.yml");
    let targets: Vec<&str> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().unwrap())
        .flat_map(|config| config["targets"].as_sequence().unwrap())
        .filter_map(Value::as_str)
        .collect();
    assert!(targets.contains(&"freshwatch:9187"), "{targets:?}");
    let rules = load("config/freshwatch-rules.yml");
    assert_eq!(rules["groups"][0]["rules"][0]["alert"], "FreshwatchDown");

    let alertmanager = load("config/alertmanager.yml");
    let group_by: Vec<&str> = alertmanager["route"]["group_by"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(group_by, ["alertname", "feed", "key"]);
    assert!(alertmanager["inhibit_rules"][0]["equal"]
        .as_sequence()
        .is_some());
}
