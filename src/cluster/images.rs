//! Container image references. The bundle's own images are `kubeforge.local/...`, built by
//! `cargo xtask artifacts` and imported from tarballs; add-on and Calico images are the
//! upstream references a cluster with registry access would pull.

use serde::Serialize;

/// The sandbox (pause) image; kubelet's `--pod-infra-container-image` names the same one.
pub const PAUSE: &str = "kubeforge.local/pause:3.4";
/// The API servers' load balancer on every node of a cluster with several masters.
pub const HAPROXY: &str = "kubeforge.local/haproxy:2.6";
/// Images of the guestbook (the default scenario's workloads), imported on the workers.
pub const REDIS: &str = "kubeforge.local/redis:7";
pub const GUESTBOOK_FRONTEND: &str = "kubeforge.local/guestbook-frontend:v1";

/// A Kubernetes component's image at `version`.
pub fn component(component: &str, version: &str) -> String {
    format!("kubeforge.local/{component}:{version}")
}

/// Upstream add-on images by release line.
#[derive(Debug, Serialize)]
pub struct AddonImages {
    pub dns: &'static str,
    pub dashboard: &'static str,
    pub metrics_scraper: &'static str,
}

pub fn addons(k8s_minor: u32) -> AddonImages {
    if k8s_minor >= 30 {
        AddonImages {
            dns: "registry.k8s.io/coredns/coredns:v1.11.3",
            dashboard: "docker.io/kubernetesui/dashboard:v2.7.0",
            metrics_scraper: "docker.io/kubernetesui/metrics-scraper:v1.0.8",
        }
    } else {
        AddonImages {
            dns: "k8s.gcr.io/coredns:1.7.0",
            dashboard: "docker.io/kubernetesui/dashboard:v2.1.0",
            metrics_scraper: "docker.io/kubernetesui/metrics-scraper:v1.0.6",
        }
    }
}

/// Calico's upstream images by release line.
#[derive(Debug, Serialize)]
pub struct CalicoImages {
    pub node: &'static str,
    pub kube_controllers: &'static str,
}

pub fn calico(k8s_minor: u32) -> CalicoImages {
    if k8s_minor >= 30 {
        CalicoImages {
            node: "docker.io/calico/node:v3.28.2",
            kube_controllers: "docker.io/calico/kube-controllers:v3.28.2",
        }
    } else {
        CalicoImages {
            node: "docker.io/calico/node:v3.17.1",
            kube_controllers: "docker.io/calico/kube-controllers:v3.17.1",
        }
    }
}
