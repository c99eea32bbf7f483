//! The Kubernetes base in `deploy/kubernetes/`, checked for shape (no cluster runs here): every
//! manifest parses, the kustomization lists every file, the ConfigMap's freshwatch.toml is a
//! valid config whose `${VAR}`s the Deployment provides, and the probes, container port, Service
//! and ServiceMonitor all point at the port freshwatch listens on, and the paths they use answer
//! 200 from the real binary.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, freshwatch_bin, wait_until};

use freshwatch::config::{Config, StateBackend};
use serde::Deserialize;
use serde_yaml::Value;

const BASE: &str = "deploy/kubernetes";

/// Example values for the Secret keys the config reads, standing in for what an operator puts
/// in the Secret.
const SECRET_EXAMPLES: &[(&str, &str)] = &[
    (
        "FRESHWATCH_REDIS_URL",
        "redis://:password@redis.redis.svc:6379/0",
    ),
    ("FRESHWATCH_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef"),
];

/// Every document of every YAML file of the base, by file name.
fn manifests() -> Vec<(String, Value)> {
    let mut documents = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(BASE)
        .unwrap_or_else(|error| panic!("{BASE}: {error}"))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".yaml"),
            "{name}: only .yaml files belong in {BASE}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{name} is not valid YAML: {error}"));
            documents.push((name.clone(), value));
        }
    }
    documents
}

/// The one manifest of `kind`.
fn manifest(kind: &str) -> Value {
    let mut found: Vec<Value> = manifests()
        .into_iter()
        .map(|(_, value)| value)
        .filter(|value| value["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found.remove(0)
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {value:?}"))
}

/// The Deployment's only container.
fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

/// A port given by number or by the container port's name.
fn resolve_port(port: &Value, container: &Value) -> u16 {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).unwrap();
    }
    let name = text(port, "port");
    container["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|candidate| candidate["name"] == name)
        .and_then(|candidate| candidate["containerPort"].as_u64())
        .map(|number| u16::try_from(number).unwrap())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// Where an environment variable of the container comes from.
#[derive(Debug)]
enum EnvSource {
    Value(String),
    Secret { name: String, key: String },
    Other,
}

/// The environment variables the container sets.
fn container_env(container: &Value) -> Vec<(String, EnvSource)> {
    container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|variable| {
            let name = text(&variable["name"], "env name").to_owned();
            let reference = &variable["valueFrom"]["secretKeyRef"];
            let source = if let Some(value) = variable["value"].as_str() {
                EnvSource::Value(value.to_owned())
            } else if reference.is_mapping() {
                EnvSource::Secret {
                    name: text(&reference["name"], "secretKeyRef.name").to_owned(),
                    key: text(&reference["key"], "secretKeyRef.key").to_owned(),
                }
            } else {
                EnvSource::Other
            };
            (name, source)
        })
        .collect()
}

/// The ConfigMap's freshwatch.toml, validated by freshwatch's own parser with the environment
/// the Deployment gives the container: a `${VAR}` it does not set fails here.
fn configmap_config() -> Config {
    let configmap = manifest("ConfigMap");
    let toml = text(&configmap["data"]["freshwatch.toml"], "freshwatch.toml");
    let env = container_env(container(&manifest("Deployment")));
    let lookup = |name: &str| -> Option<String> {
        let (_, source) = env.iter().find(|(variable, _)| variable == name)?;
        match source {
            EnvSource::Value(value) => Some(value.clone()),
            EnvSource::Secret { key, .. } => {
                let example = SECRET_EXAMPLES
                    .iter()
                    .find(|(example_key, _)| example_key == key)
                    .unwrap_or_else(|| panic!("{key}: add an example value to SECRET_EXAMPLES"));
                Some(example.1.to_owned())
            }
            EnvSource::Other => panic!("{name}: set from neither a value nor a Secret"),
        }
    };
    freshwatch::config::parse(toml, Path::new("configmap/freshwatch.toml"), &lookup)
        .unwrap_or_else(|error| panic!("the ConfigMap's freshwatch.toml: {error}"))
}

/// Where freshwatch listens without an `[http]` section.
fn default_listen() -> SocketAddr {
    let minimal = "[kafka]\nbrokers = \"kafka:9092\"\n[[feed]]\nname = \"a\"\ntopic = \"a\"\n";
    freshwatch::config::parse(minimal, Path::new("minimal.toml"), &|_| None)
        .unwrap()
        .http
        .listen
}

#[test]
fn every_manifest_parses_and_the_kustomization_lists_every_file() {
    let documents = manifests();
    let mut files = BTreeSet::new();
    for (file, document) in &documents {
        files.insert(file.clone());
        for field in ["apiVersion", "kind"] {
            assert!(document[field].is_string(), "{file}: no {field}");
        }
        if document["kind"] != "Kustomization" {
            assert!(document["metadata"]["name"].is_string(), "{file}: no name");
        }
    }
    let kustomization = manifest("Kustomization");
    assert_eq!(
        kustomization["apiVersion"],
        "kustomize.config.k8s.io/v1beta1"
    );
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|resource| text(resource, "resource").to_owned())
        .collect();
    files.remove("kustomization.yaml");
    assert_eq!(
        listed, files,
        "kustomization.yaml resources vs the files in {BASE}"
    );
    let kinds: BTreeSet<&str> = documents
        .iter()
        .filter_map(|(_, document)| document["kind"].as_str())
        .collect();
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ServiceMonitor",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {BASE}");
    }
}

#[test]
fn the_configmap_is_a_valid_config_with_redis_state_for_two_replicas() {
    let config = configmap_config();
    assert!(
        matches!(
            config.state.backend,
            StateBackend::Redis { .. } | StateBackend::RedisCluster { .. }
        ),
        "replicas share state through Redis, not the embedded store"
    );
    let deployment = manifest("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    // The container reads the file where the ConfigMap is mounted.
    let container = container(&deployment);
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|arg| text(arg, "arg"))
        .collect();
    let config_path = args
        .windows(2)
        .find(|pair| pair[0] == "--config")
        .map(|pair| pair[1])
        .expect("--config in args");
    let mount = container["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|mount| Path::new(config_path).parent() == mount["mountPath"].as_str().map(Path::new))
        .unwrap_or_else(|| panic!("nothing mounted at the directory of {config_path}"));
    assert!(config_path.ends_with("/freshwatch.toml"));
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(
        volume["configMap"]["name"],
        manifest("ConfigMap")["metadata"]["name"]
    );
    // Secrets come from the Secret `freshwatch`, the admin token among them.
    let secret_keys: Vec<(String, String)> = container_env(container)
        .into_iter()
        .filter_map(|(_, source)| match source {
            EnvSource::Secret { name, key } => Some((name, key)),
            _ => None,
        })
        .collect();
    assert!(secret_keys.iter().all(|(name, _)| name == "freshwatch"));
    for key in ["FRESHWATCH_ADMIN_TOKEN", "FRESHWATCH_REDIS_URL"] {
        assert!(
            secret_keys.iter().any(|(_, found)| found == key),
            "{key} is not taken from the Secret: {secret_keys:?}"
        );
    }
}

#[test]
fn probes_container_port_service_and_servicemonitor_meet_the_port_freshwatch_listens_on() {
    let listen = configmap_config().http.listen;
    assert!(
        listen.ip().is_unspecified(),
        "{listen}: kubelet probes and the Service reach the pod's IP, not loopback"
    );
    assert_eq!(
        listen.port(),
        default_listen().port(),
        "the ConfigMap moves freshwatch off its default port"
    );
    let deployment = manifest("Deployment");
    let container = container(&deployment);
    let container_ports: Vec<u16> = container["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(|port| port["containerPort"].as_u64())
        .map(|port| u16::try_from(port).unwrap())
        .collect();
    assert_eq!(container_ports, [listen.port()]);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let http_get = &container[probe]["httpGet"];
        assert_eq!(http_get["path"], path, "{probe}");
        assert_eq!(
            resolve_port(&http_get["port"], container),
            listen.port(),
            "{probe}"
        );
    }
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], pod_labels);

    let service = manifest("Service");
    assert_eq!(&service["spec"]["selector"], pod_labels);
    let service_ports = service["spec"]["ports"].as_sequence().expect("ports");
    assert_eq!(service_ports.len(), 1);
    let service_port = &service_ports[0];
    assert_eq!(
        resolve_port(&service_port["targetPort"], container),
        listen.port()
    );

    let budget = manifest("PodDisruptionBudget");
    assert_eq!(budget["apiVersion"], "policy/v1");
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], pod_labels);

    let monitor = manifest("ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let service_labels = service["metadata"]["labels"].as_mapping().expect("labels");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(
            service_labels.get(key),
            Some(value),
            "ServiceMonitor selector"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["port"], service_port["name"]);
}

#[test]
fn the_pod_runs_as_non_root_on_a_read_only_root_without_capabilities() {
    let deployment = manifest("Deployment");
    let pod = &deployment["spec"]["template"]["spec"]["securityContext"];
    let container = container(&deployment);
    let security = &container["securityContext"];
    assert_eq!(pod["runAsNonRoot"], true);
    // runAsNonRoot needs a numeric user: the image's `USER freshwatch` is a name.
    assert!(pod["runAsUser"].as_u64().is_some_and(|uid| uid > 0));
    assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    let dropped: Vec<&str> = security["capabilities"]["drop"]
        .as_sequence()
        .expect("capabilities.drop")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(dropped, ["ALL"]);
    assert!(security["capabilities"]["add"].is_null());
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !container["resources"][kind][resource].is_null(),
                "resources.{kind}.{resource}"
            );
        }
    }
}

#[test]
fn the_probe_and_scrape_paths_answer_200_from_the_binary() {
    let deployment = manifest("Deployment");
    let container = container(&deployment);
    let monitor = manifest("ServiceMonitor");
    let paths: Vec<String> = [
        &container["livenessProbe"]["httpGet"]["path"],
        &container["readinessProbe"]["httpGet"]["path"],
        &monitor["spec"]["endpoints"][0]["path"],
    ]
    .into_iter()
    .map(|path| text(path, "path").to_owned())
    .collect();
    // The demo needs no servers: librdkafka's mock cluster and the embedded store, in-process.
    let port = free_port();
    let mut demo = Command::new(freshwatch_bin())
        .args([
            "demo",
            "--for",
            "60s",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for path in &paths {
            let url = format!("http://127.0.0.1:{port}{path}");
            wait_until(
                &format!("200 from {path}"),
                Duration::from_secs(30),
                || async {
                    reqwest::get(&url)
                        .await
                        .is_ok_and(|response| response.status().is_success())
                },
            )
            .await;
        }
    });
    let _ = demo.kill();
    let _ = demo.wait();
}
