//! kubeforge: a Molecule-style test harness whose converge engine installs a TLS-secured
//! Kubernetes cluster over SSH. The CLI (`src/main.rs`) is a thin layer over this library.

pub mod access;
pub mod artifacts;
pub mod cluster;
pub mod connections;
pub mod debian;
pub mod driver;
pub mod engine;
pub mod files;
pub mod inventory;
pub mod net;
pub mod pki;
pub mod process;
pub mod report;
pub mod roles;
pub mod runner;
pub mod scenario;
pub mod ssh;
pub mod state;
pub mod steps;
pub mod syntax;
pub mod templates;
pub mod timeouts;
pub mod verify;
