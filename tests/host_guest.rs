//! The real-host harness itself: the tiny guest boots from IDE with an e1000 NIC, reports its
//! devices on the serial console, and powers off on an ACPI power button press.

mod support;

use std::time::{Duration, Instant};

use support::host::{GuestSpec, Host};
use virt::domain::{DomainShutoffReason, DomainState, DomainStateReason};
use virt::enumutil::Enum;

#[test]
fn tiny_guest_boots_on_ide_and_e1000_and_honours_acpi() {
    let Some(host) = Host::acquire("tiny_guest_boots_on_ide_and_e1000_and_honours_acpi") else {
        return;
    };
    let guest = host.guest("harness", &GuestSpec::ide_e1000());
    let (dom, boot) = guest.define_and_boot(Duration::from_secs(120));
    assert!(boot.blocks.contains(&"sda".to_string()), "{boot:?}");
    assert!(boot.blocks.contains(&"vda".to_string()), "{boot:?}");
    assert!(
        boot.pci.contains(&"8086:100e".to_string()),
        "e1000 missing: {boot:?}"
    );

    let devices = guest.last_qemu_devices();
    let drivers: Vec<&str> = devices
        .iter()
        .filter_map(|d| d["driver"].as_str())
        .collect();
    assert!(drivers.contains(&"ide-hd"), "{drivers:?}");
    assert!(drivers.contains(&"e1000"), "{drivers:?}");

    dom.shutdown_flags(virt::sys::VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        .expect("ACPI shutdown");
    let start = Instant::now();
    loop {
        let (state, reason) = dom.state().expect("state");
        if state == Enum::Known(DomainState::Shutoff) {
            assert_eq!(
                reason,
                Enum::Known(DomainStateReason::Shutoff(Enum::Known(
                    DomainShutoffReason::Shutdown
                )))
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no power-off after ACPI"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
