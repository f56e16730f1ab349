#![allow(clippy::unwrap_used)]
use super::*;
use crate::discovery::Endpoint;

fn snapshot(eps: &[(&str, u32, u32, EnvoyHealth)]) -> Snapshot {
    let eps = eps
        .iter()
        .map(|&(a, weight, priority, health)| Endpoint {
            address: a.parse().unwrap(),
            weight,
            priority,
            health,
        })
        .collect();
    Snapshot::default().next(eps, 0).unwrap()
}

#[test]
fn derived_ids_are_stable_distinct_and_valid() {
    for (addr, id) in [
        ("10.0.0.7:8080", "10.0.0.7_8080"),
        ("[fd00::7]:8080", "fd00--7_8080"),
        ("[::ffff:10.0.0.7]:80", "--ffff-10.0.0.7_80"),
        (
            "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535",
            "2001-db8-aaaa-bbbb-cccc-dddd-eeee-ffff_65535",
        ),
    ] {
        let a: SocketAddr = addr.parse().unwrap();
        assert_eq!(derived_id(a), id);
        assert!(crate::backend::is_valid_id(id), "{id}");
        assert_eq!(derived_address(id), Some(a));
    }
    assert_eq!(derived_address("backend-0"), None);
    assert_eq!(derived_address("10.0.0.7_99999"), None);
}

#[test]
fn envoy_health_decides_who_is_used_and_how() {
    use EnvoyHealth::*;
    let s = snapshot(&[
        ("10.0.0.1:80", 3, 0, Healthy),
        ("10.0.0.2:80", 1, 0, Unknown),
        ("10.0.0.3:80", 1, 0, Unhealthy),
        ("10.0.0.4:80", 1, 0, Timeout),
        ("10.0.0.5:80", 1, 0, Draining),
        ("10.0.0.6:80", 1, 0, Degraded),
        ("10.0.0.7:80", 1, 1, Healthy),
        ("10.0.0.8:80", 99_999, 0, Healthy),
    ]);
    let pool = pool_of(&s, &[]);
    let got: Vec<_> = pool.iter().map(|b| (b.id.as_str(), b.weight, b.backup, b.drain)).collect();
    assert_eq!(
        got,
        [
            ("10.0.0.1_80", 3, false, false),
            ("10.0.0.2_80", 1, false, false),
            ("10.0.0.5_80", 1, false, true),
            ("10.0.0.6_80", 1, true, false),
            ("10.0.0.7_80", 1, true, false),
            ("10.0.0.8_80", MAX_WEIGHT, false, false),
        ]
    );
    assert!(pool.iter().all(|b| b.slot.is_some()));
}

#[test]
fn when_envoy_reports_every_endpoint_unhealthy_all_are_used() {
    let s = snapshot(&[
        ("10.0.0.1:80", 1, 0, EnvoyHealth::Unhealthy),
        ("10.0.0.2:80", 1, 0, EnvoyHealth::Timeout),
    ]);
    assert_eq!(pool_of(&s, &[]).len(), 2);
}

#[test]
fn listed_backends_name_and_weigh_discovered_addresses_and_add_nothing() {
    let s = snapshot(&[
        ("10.0.0.1:80", 5, 0, EnvoyHealth::Healthy),
        ("10.0.0.2:80", 5, 0, EnvoyHealth::Healthy),
    ]);
    let listed = [
        Backend::new("blue".into(), "10.0.0.1:80".parse().unwrap(), 2).into_backup(),
        Backend::new("gone".into(), "10.0.0.9:80".parse().unwrap(), 1),
    ];
    let pool = pool_of(&s, &listed);
    let got: Vec<_> = pool.iter().map(|b| (b.id.as_str(), b.weight, b.backup)).collect();
    assert_eq!(got, [("blue", 2, true), ("10.0.0.2_80", 5, false)]);
}
