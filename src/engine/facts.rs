//! Facts: what a host has, observed by one script in one round trip.
//!
//! Each resource says how it is observed ([`Probe`]) and the script gathers probes by kind,
//! so that a host costs a few processes whatever its number of resources: one `stat` over
//! every managed path (a sha256 only for the files whose stat differs from the host's hash
//! index, see [`super::hash_index`]), one `kubectl get` per kubectl for all API objects
//! (one call per object only when that call fails, so that an object of a kind the API does
//! not know yet reads as absent alone), one `ctr images ls` for all images, two `systemctl`
//! for all units, and the resources' own lines for the rest. Facts
//! come back as `KF <id> <field> <value>` lines. The resources of several plans of a host
//! (every phase of a check-mode run) can be observed by one script.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use super::hash_index::{Hashing, KEY_FORMAT};
use super::image::{self, Image};
use super::resource::{MAX_DIFF_BYTES, Observation, Resource};
use super::transport::Transport;
use super::{ApiObject, Cost, EngineError, HostPlan, quoted, tail};
use crate::ssh::shell_quote;

const FACTS_TIMEOUT: Duration = Duration::from_secs(120);

/// The Go runtime settings of the script's Go processes (kubectl, ctr): each is a short
/// read, for which Go's parallel garbage collector costs more CPU than it saves. Collecting
/// only near 128 MiB, on one thread, a `kubectl get` used about 30% less CPU (50 -> 35 ms on
/// the default scenario's master, 1.19 -> 1.03 s on an emulated one) and `ctr images ls`
/// 20 -> 16 ms, for 4 MB more memory.
const GO_CLI_ENV: &str = "GOGC=off GOMEMLIMIT=128MiB GOMAXPROCS=1";

/// How the facts script observes one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// A path's type (`type`: file, dir, link, other, none), and `perms` (`644 root root`).
    Path { path: String, want: Want },
    /// An image in containerd, read with every other image of the same `ctr` command from
    /// one listing (facts `digest` and `marker`, see [`super::image`]).
    Image { ctr: String, image: Image },
    /// A systemd unit, read with every other unit of the host by one `systemctl
    /// list-unit-files` (facts `enabled`: the unit file's state, read from disk as
    /// `is-enabled` does, where `show` would give a state cached until a daemon-reload) and
    /// one `systemctl show` (`active`, `reload`, and `exe`, the running binary), and
    /// `pending` when the unit's restart-pending marker exists.
    Service { unit: String },
    /// A Kubernetes object, read with every other object of the same `kubectl` command in
    /// one call; its live JSON becomes the fact `live` (none when absent or unreadable).
    Object { kubectl: String, object: ApiObject },
    /// Shell lines that print the resource's `KF <id> <field> <value>` facts; they only
    /// read, and never fail the script.
    Lines(String),
    /// Nothing to observe.
    Nothing,
}

/// What else a [`Probe::Path`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Type and perms only.
    Kind,
    /// A link's `target` too.
    Target,
    /// A file's `sha` (sha256), and when it is not `sha256` and `show` holds, its `content`
    /// (base64, at most [`MAX_DIFF_BYTES`]) for a diff.
    Sha256 { sha256: String, show: bool },
}

/// What one plan's resources were found to be, by their index in the plan.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub(super) observed: BTreeMap<usize, Observation>,
    /// What observing them cost: a round trip that observed several plans counts with the
    /// first.
    pub(super) cost: Cost,
}

/// Observes the resources of `plans` (all for one host, in order) in one round trip.
pub async fn gather<T: Transport>(
    transport: &T,
    host: &str,
    plans: &[&HostPlan],
    hashing: &Hashing,
) -> Result<Vec<Facts>, EngineError> {
    let resources: Vec<&Resource> = plans
        .iter()
        .flat_map(|p| p.tasks.iter().flat_map(|t| &t.resources))
        .collect();
    let probes: Vec<Probe> = resources
        .iter()
        .enumerate()
        .map(|(id, r)| r.probe(id))
        .collect();
    let script = script(&probes, hashing);
    let out = transport
        .exec_root("sh -s", Some(script.as_bytes()), FACTS_TIMEOUT)
        .await
        .map_err(|source| EngineError::Transport {
            host: host.to_string(),
            what: "gather facts",
            tasks: quoted(
                &plans
                    .iter()
                    .flat_map(|p| &p.tasks)
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>(),
            ),
            source,
        })?;
    if out.status != 0 {
        return Err(EngineError::Facts {
            host: host.to_string(),
            status: out.status,
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 1500),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut observed = parse(&stdout, &probes);
    let cost = Cost {
        round_trips: 1,
        bytes_sent: script.len() as u64,
        bytes_received: (out.stdout.len() + out.stderr.len()) as u64,
        facts_cpu_seconds: cpu_seconds(&stdout),
    };
    // Split back by plan; the round trip counts with the first plan that has resources.
    let mut facts = Vec::with_capacity(plans.len());
    let mut offset = 0;
    let mut counted = false;
    for plan in plans {
        let n: usize = plan.tasks.iter().map(|t| t.resources.len()).sum();
        let mut mine = Facts::default();
        for id in offset..offset + n {
            if let Some(o) = observed.remove(&id) {
                mine.observed.insert(id - offset, o);
            }
        }
        if n > 0 && !counted {
            mine.cost = cost;
            counted = true;
        }
        offset += n;
        facts.push(mine);
    }
    Ok(facts)
}

/// Functions of the paths probe: `kf_paths FULL PATH...` reads, on fd 3, a line
/// `id<TAB>path<TAB>want<TAB>show` per PATH in the same order (`want`: `-` for the type
/// only, `@` for a link's target, else the wanted sha256), stats every path in one call and
/// prints each one's facts; `kf_file` hashes one file unless the index knows its stat.
fn paths_functions() -> String {
    format!(
        r#"kf_file() {{
  case $kf_want in -|@) return 0 ;; esac
  kf_sha=
  if [ "$kf_full" = 0 ] && read -r kf_e1 kf_e2 kf_e3 kf_e4 kf_e5 kf_esha 2>/dev/null <"$KF_IDX$kf_p" && [ "$kf_e1 $kf_e2 $kf_e3 $kf_e4 $kf_e5" = "$kf_key" ]; then kf_sha=$kf_esha
  elif kf_sha=$(sha256sum <"$kf_p" 2>/dev/null); then kf_sha=${{kf_sha%% *}}; kf_record "$kf_p" "$kf_key" "$kf_sha"
  fi
  echo "KF $kf_id sha $kf_sha"
  if [ "$kf_sha" != "$kf_want" ] && [ "$kf_show" = 1 ] && [ "${{kf_key%% *}}" -le {MAX_DIFF_BYTES} ]; then echo "KF $kf_id content $(base64 -w0 <"$kf_p")"; fi
}}
kf_paths() {{
  kf_full=$1; shift
  kf_now=$(date +%s)
  stat --printf '%n\t%f\t%a %U %G\t{KEY_FORMAT}\n' -- "$@" 2>/dev/null | {{
    while IFS='	' read -r kf_p kf_f kf_perms kf_key; do
      while IFS='	' read -r kf_id kf_wp kf_want kf_show <&3 && [ "$kf_wp" != "$kf_p" ]; do echo "KF $kf_id type none"; done
      case $kf_f in
        a???) echo "KF $kf_id type link"; if [ "$kf_want" = @ ]; then echo "KF $kf_id target $(readlink -- "$kf_p")"; fi ;;
        4???) echo "KF $kf_id type dir"; echo "KF $kf_id perms $kf_perms" ;;
        8???) echo "KF $kf_id type file"; echo "KF $kf_id perms $kf_perms"; kf_file ;;
        *) echo "KF $kf_id type other" ;;
      esac
    done
    while IFS='	' read -r kf_id kf_wp kf_want kf_show <&3; do echo "KF $kf_id type none"; done
  }}
}}
"#
    )
}

/// The facts script of `probes` (their ids are their positions).
pub(super) fn script(probes: &[Probe], hashing: &Hashing) -> String {
    let mut paths = String::new();
    let mut args = String::new();
    let mut objects: BTreeMap<&str, Vec<(usize, &ApiObject)>> = BTreeMap::new();
    let mut images: BTreeMap<&str, Vec<(usize, &Image)>> = BTreeMap::new();
    let mut units: Vec<(usize, &str)> = Vec::new();
    let mut lines = String::new();
    for (id, probe) in probes.iter().enumerate() {
        match probe {
            Probe::Path { path, want } => {
                let want = match want {
                    Want::Kind => "-\t0".to_string(),
                    Want::Target => "@\t0".to_string(),
                    Want::Sha256 { sha256, show } => format!("{sha256}\t{}", u8::from(*show)),
                };
                paths.push_str(&format!("{id}\t{path}\t{want}\n"));
                args.push(' ');
                args.push_str(&shell_quote(path));
            }
            Probe::Object { kubectl, object } => {
                objects.entry(kubectl).or_default().push((id, object))
            }
            Probe::Image { ctr, image } => images.entry(ctr).or_default().push((id, image)),
            Probe::Service { unit } => units.push((id, unit)),
            Probe::Lines(s) => lines.push_str(s),
            Probe::Nothing => {}
        }
    }
    let mut script = format!("export LC_ALL=C {GO_CLI_ENV}\n");
    if !paths.is_empty() {
        script.push_str(&hashing.shell_functions());
        script.push_str(&paths_functions());
        script.push_str(&format!(
            "kf_paths {}{args} 3<<'KF_EOF'\n{paths}KF_EOF\n",
            u8::from(hashing.full)
        ));
    }
    for (g, (kubectl, group)) in objects.iter().enumerate() {
        script.push_str(&objects_probe(g, kubectl, group));
    }
    for (ctr, group) in &images {
        script.push_str(&image::probe_script(ctr, group));
    }
    if !units.is_empty() {
        script.push_str(&units_probe(&units));
    }
    script.push_str(&lines);
    // What the script and its children used, for the run's cost.
    script.push_str("echo KF-TIMES\ntimes\n");
    script
}

/// The CPU seconds the `times` after `KF-TIMES` printed: the shell's user and system time,
/// then its children's (`0m0.090000s 0m0.010000s`).
fn cpu_seconds(stdout: &str) -> f64 {
    let seconds = |t: &str| {
        let (m, s) = t.strip_suffix('s')?.split_once('m')?;
        Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
    };
    stdout
        .lines()
        .skip_while(|l| *l != "KF-TIMES")
        .skip(1)
        .take(2)
        .flat_map(str::split_whitespace)
        .filter_map(seconds)
        .sum()
}

/// Two `systemctl` processes for all units of the host, whatever their number. `show`
/// prints one block per unit named, in order and also for a unit that does not exist, each
/// ended by an empty line.
fn units_probe(units: &[(usize, &str)]) -> String {
    let names: String = units
        .iter()
        .map(|(_, u)| format!(" {}", shell_quote(u)))
        .collect();
    let mut s = format!(
        "systemctl list-unit-files --no-legend{names} 2>/dev/null | while read -r kf_u kf_s kf_rest; do case $kf_u in\n"
    );
    let mut by_unit: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (id, unit) in units {
        by_unit.entry(unit).or_default().push(*id);
    }
    for (unit, ids) in &by_unit {
        let echo: String = ids
            .iter()
            .map(|id| format!(" echo \"KF {id} enabled $kf_s\";"))
            .collect();
        s.push_str(&format!("{}){echo} ;;\n", shell_quote(unit)));
    }
    s.push_str("esac; done\n");
    let next: String = units
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, (id, _))| format!(" {i}) kf_id={id} ;;"))
        .collect();
    s.push_str(&format!(
        "kf_i=0; kf_id={first}\n\
         systemctl show -p ActiveState -p NeedDaemonReload -p MainPID{names} 2>/dev/null | while IFS== read -r kf_k kf_v; do case $kf_k in\n\
         '') kf_i=$((kf_i + 1)); case $kf_i in{next} esac ;;\n\
         ActiveState) echo \"KF $kf_id active $kf_v\" ;;\n\
         NeedDaemonReload) echo \"KF $kf_id reload $kf_v\" ;;\n\
         MainPID) if [ \"$kf_v\" != 0 ]; then echo \"KF $kf_id exe $(readlink /proc/$kf_v/exe 2>/dev/null)\"; fi ;;\n\
         esac; done\n",
        first = units[0].0,
    ));
    for (id, unit) in units {
        s.push_str(&format!(
            "if [ -e {} ]; then echo \"KF {id} pending yes\"; fi\n",
            shell_quote(&super::resource::pending_marker(unit))
        ));
    }
    s
}

/// One `kubectl get` for a group of objects (their JSON, one a line), or, when that fails
/// (a kind the API does not know), one per object.
fn objects_probe(g: usize, kubectl: &str, group: &[(usize, &ApiObject)]) -> String {
    let mut s = format!("kf_objects_{g}() {{ cat <<'KF_EOF'\n");
    for (id, object) in group {
        s.push_str(&format!("{id} {}\n", object.manifest()));
    }
    let get = format!("{kubectl} get --request-timeout=10s");
    s.push_str(&format!(
        "KF_EOF\n}}\n\
         if kf_v=$(kf_objects_{g} | cut -d' ' -f2- | {get} --ignore-not-found -f - -o json 2>/dev/null); then echo \"KF {first} objects $(printf %s \"$kf_v\" | base64 -w0)\"\n\
         else kf_objects_{g} | while read -r kf_id kf_o; do if kf_v=$(printf '%s\\n' \"$kf_o\" | {get} -f - -o json 2>/dev/null); then echo \"KF $kf_id objects $(printf %s \"$kf_v\" | base64 -w0)\"; fi; done\n\
         fi\n",
        first = group[0].0,
    ));
    s
}

/// Parses `KF <id> <field> [value]` lines (anything else is ignored), then gives each
/// object probe its live object out of what its group's kubectl printed.
pub(super) fn parse(stdout: &str, probes: &[Probe]) -> BTreeMap<usize, Observation> {
    let mut facts: BTreeMap<usize, Observation> = BTreeMap::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("KF ") else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let (Some(id), Some(field)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(id) = id.parse::<usize>() else {
            continue;
        };
        let value = parts.next().unwrap_or("").trim_end().to_string();
        let seen = facts.entry(id).or_default();
        if field != "value-absent" {
            seen.insert(field.to_string(), value);
        }
    }
    let mut printed: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (id, probe) in probes.iter().enumerate() {
        if let Probe::Object { kubectl, .. } = probe
            && let Some(b64) = facts.get_mut(&id).and_then(|o| o.remove("objects"))
        {
            printed.entry(kubectl).or_default().extend(items(&b64));
        }
    }
    for (id, probe) in probes.iter().enumerate() {
        if let Probe::Object { kubectl, object } = probe
            && let Some(live) = printed
                .get(kubectl.as_str())
                .and_then(|all| all.iter().find(|l| object.identifies(l)))
        {
            facts
                .entry(id)
                .or_default()
                .insert("live".into(), live.to_string());
        }
    }
    facts
}

/// The objects in what `kubectl get -o json` printed (base64): a `List`'s items, or one.
fn items(b64: &str) -> Vec<Value> {
    let printed = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    match printed {
        Some(Value::Object(mut o)) if o.get("kind").and_then(Value::as_str) == Some("List") => {
            match o.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            }
        }
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[path = "facts_tests.rs"]
mod tests;
