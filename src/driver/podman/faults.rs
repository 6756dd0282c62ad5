//! Faults on Podman hosts, for the `side_effect` step: a host killed, stopped, paused, cut
//! off its network or destroyed with its disks, and each undone (a destroyed host is
//! created again by [`super::heal`]).

use std::net::IpAddr;

use super::plan::{container_name, network_name};
use super::{PodmanError, command_err, podman};
use crate::scenario::FaultAction;

/// Makes `action` happen to the container of `host`. Unit faults are not the driver's.
pub async fn hit(instance: &str, host: &str, action: FaultAction) -> Result<(), PodmanError> {
    let container = container_name(instance, host);
    let network = network_name(instance);
    let args: Vec<&str> = match action {
        FaultAction::Kill => vec!["kill", "--signal", "SIGKILL", &container],
        FaultAction::Stop => vec!["stop", "-t", "10", &container],
        FaultAction::Pause => vec!["pause", &container],
        FaultAction::Disconnect => vec!["network", "disconnect", "-f", &network, &container],
        // Its volumes go with it: a new disk.
        FaultAction::Replace => vec!["rm", "-f", "-t0", "-v", &container],
        FaultAction::StopService => return Ok(()),
    };
    podman(&args)
        .await
        .map_err(command_err("make a fault on container", &container))?;
    if action == FaultAction::Replace {
        remove_volumes(instance, host).await?;
    }
    Ok(())
}

/// Undoes `action` on `host` (at `address` on the instance's network) where only the
/// fault knows how: a disconnected host is connected again. A killed, stopped, paused or
/// replaced host is brought back by [`super::heal`], which waits until its SSH answers (a
/// container started here would be reported back before its sshd listens).
pub async fn undo(
    instance: &str,
    host: &str,
    address: IpAddr,
    action: FaultAction,
) -> Result<(), PodmanError> {
    let container = container_name(instance, host);
    let network = network_name(instance);
    let ip = address.to_string();
    if action != FaultAction::Disconnect {
        return Ok(());
    }
    podman(&["network", "connect", "--ip", &ip, &network, &container])
        .await
        .map_err(command_err("undo a fault on container", &container))?;
    Ok(())
}

/// The named volumes of `host` (a node's containerd and kubelet state).
async fn remove_volumes(instance: &str, host: &str) -> Result<(), PodmanError> {
    let prefix = format!("{}-", container_name(instance, host));
    let names = podman(&["volume", "ls", "--format", "{{.Name}}"])
        .await
        .map_err(command_err("list volumes of instance", instance))?;
    for volume in names.lines().filter(|v| v.starts_with(&prefix)) {
        podman(&["volume", "rm", "-f", volume])
            .await
            .map_err(command_err("remove volume", volume))?;
    }
    Ok(())
}
