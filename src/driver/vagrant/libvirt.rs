//! What the Vagrant driver asks libvirt directly: the run's own storage pool, and after
//! `vagrant destroy` whatever of the instance libvirt still holds.

use std::path::Path;

use super::{
    DestroyReport, VagrantError, VagrantPlan, domain_name, io_err, network_names, pool_dir,
    pool_name,
};
use crate::process;
use crate::report::Logger;

/// Names of libvirt objects of one kind (`list`, `net-list`, `pool-list` with `--name`).
async fn virsh_names(args: &[&str]) -> Vec<String> {
    process::run("virsh", args)
        .await
        .map(|out| {
            out.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Volume names from `virsh vol-list --pool P`, a table (virsh 9 has no `--name` there).
fn volume_names(table: &str) -> Vec<String> {
    table
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("---"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

async fn virsh(action: &'static str, target: &str, args: &[&str]) -> Result<(), VagrantError> {
    process::run("virsh", args)
        .await
        .map(|_| ())
        .map_err(|source| VagrantError::Command {
            action,
            target: target.to_string(),
            source,
        })
}

/// The run's own storage pool, a directory in the scenario's state: the box volume and the
/// VMs' disks go there, and [`destroy`] removes it whole, so no volume outlives the run.
pub(super) async fn ensure_pool(plan: &VagrantPlan, log: &Logger) -> Result<(), VagrantError> {
    let name = pool_name(&plan.instance);
    let dir = pool_dir(plan);
    tokio::fs::create_dir_all(&dir).await.map_err(io_err(
        &plan.instance,
        "create directory",
        &dir,
    ))?;
    if !virsh_names(&["pool-list", "--all", "--name"])
        .await
        .contains(&name)
    {
        let target = dir.display().to_string();
        virsh(
            "define storage pool",
            &name,
            &["pool-define-as", &name, "dir", "--target", &target],
        )
        .await?;
        log.verbose(format!("libvirt storage pool {name} in {target}"));
    }
    if !virsh_names(&["pool-list", "--name"]).await.contains(&name) {
        virsh("start storage pool", &name, &["pool-start", &name]).await?;
    }
    Ok(())
}

/// Whether a domain's XML names a file in `dir`: its disks, or (running VMs) their backing
/// chain.
fn uses_dir(domain_xml: &str, dir: &Path) -> bool {
    domain_xml.contains(&format!("'{}/", dir.display()))
}

/// VMs of other runs whose disks live on files of this run's pool: vagrant-libvirt finds a
/// box volume by name in any pool, so a run started while this one was up may have based
/// its disks on this pool's copy of the box.
async fn foreign_pool_users(plan: &VagrantPlan) -> Vec<String> {
    let dir = pool_dir(plan);
    let mut users = Vec::new();
    for domain in virsh_names(&["list", "--all", "--name"]).await {
        if domain.starts_with(&format!("{}-", plan.instance)) {
            continue;
        }
        if let Ok(xml) = process::run("virsh", &["dumpxml", &domain]).await
            && uses_dir(&xml, &dir)
        {
            users.push(domain);
        }
    }
    users
}

/// What libvirt still holds of the instance after `vagrant destroy` (or a failed `vagrant
/// up`): its VMs, its storage pool (refused while another run's VMs use its files) and its
/// two networks; each removal is recorded in `report`.
pub(super) async fn remove_leftovers(
    plan: &VagrantPlan,
    report: &mut DestroyReport,
) -> Result<(), VagrantError> {
    let domains = virsh_names(&["list", "--all", "--name"]).await;
    for h in &plan.hosts {
        let name = domain_name(&plan.instance, &h.name);
        if domains.contains(&name) {
            // Stopping an already stopped VM fails harmlessly.
            let _ = process::run("virsh", &["destroy", &name]).await;
            virsh(
                "undefine VM",
                &name,
                &["undefine", &name, "--remove-all-storage"],
            )
            .await?;
            report.domains.push(name);
        }
    }
    let pool = pool_name(&plan.instance);
    if virsh_names(&["pool-list", "--all", "--name"])
        .await
        .contains(&pool)
    {
        let users = foreign_pool_users(plan).await;
        if !users.is_empty() {
            return Err(VagrantError::PoolInUse {
                pool,
                dir: pool_dir(plan),
                users,
            });
        }
        // The volumes go with the pool's directory below; libvirt only forgets the pool.
        report.volumes = process::run("virsh", &["vol-list", "--pool", &pool])
            .await
            .map(|table| volume_names(&table))
            .unwrap_or_default();
        // Stopping an inactive pool fails harmlessly.
        let _ = process::run("virsh", &["pool-destroy", &pool]).await;
        virsh("undefine storage pool", &pool, &["pool-undefine", &pool]).await?;
        report.pools.push(pool);
    }
    let networks = virsh_names(&["net-list", "--all", "--name"]).await;
    for name in network_names(&plan.instance) {
        if networks.contains(&name) {
            let _ = process::run("virsh", &["net-destroy", &name]).await;
            virsh("undefine network", &name, &["net-undefine", &name]).await?;
            report.networks.push(name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_from_the_vol_list_table() {
        let table = " Name                                   Path\n\
                     -------------------------------------------------------------\n \
                     kf-a-1-etcd-01.img                     /s/pool/kf-a-1-etcd-01.img\n \
                     box_vagrant_box_image_0_17_box.img     /s/pool/box_vagrant_box_image_0_17_box.img\n\n";
        assert_eq!(
            volume_names(table),
            ["kf-a-1-etcd-01.img", "box_vagrant_box_image_0_17_box.img"]
        );
        assert!(volume_names(" Name   Path\n--------------\n\n").is_empty());
    }

    #[test]
    fn pool_users_are_found_by_disk_and_backing_paths() {
        let dir = Path::new("/s/vagrant-etcd/vagrant/pool");
        let backed = "<disk type='file' device='disk'>\n\
                      <source file='/s/other/vagrant/pool/kf-b-1-etcd-01.img'/>\n\
                      <backingStore type='file'>\n<format type='qcow2'/>\n\
                      <source file='/s/vagrant-etcd/vagrant/pool/box_vagrant_box_image_0_1_box.img'/>";
        assert!(uses_dir(backed, dir));
        let elsewhere = "<source file='/s/vagrant-etcd/vagrant/pool2/x.img'/>\n\
                         <source file='/var/lib/libvirt/images/box.img'/>";
        assert!(!uses_dir(elsewhere, dir));
    }
}
