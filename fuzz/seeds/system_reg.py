#!/usr/bin/env python3
"""Write the .reg files for the small SYSTEM-shaped hives that seed the registry fuzz targets.

usage: system_reg.py base|change > FILE.reg
Keys are the ones the verdict looks up (Select, ControlSet001\\Services\\viostor, the
CriticalDeviceDatabase entry, DriverDatabase\\DeviceIds\\PCI\\VEN_1AF4&DEV_1001), with one value
of every registry type.
"""
import sys


def hexbytes(data: bytes) -> str:
    return ",".join(f"{b:02x}" for b in data)


def utf16z(s: str) -> bytes:
    return (s + "\0").encode("utf-16-le")


def base() -> str:
    out = ["Windows Registry Editor Version 5.00", ""]
    out += ["[\\Select]", '"Current"=dword:00000001', '"Default"=dword:00000001',
            '"LastKnownGood"=dword:00000002', ""]
    out += ["[\\ControlSet001\\Services\\viostor]",
            '"Start"=dword:00000003', '"Type"=dword:00000001', '"ErrorControl"=dword:00000001',
            '"Group"="SCSI miniport"',
            '"ImagePath"=hex(2):' + hexbytes(utf16z("system32\\drivers\\viostor.sys")),
            '"DependOnService"=hex(7):' + hexbytes(utf16z("one") + utf16z("two") + bytes(2)),
            '"Tag"=hex(b):' + hexbytes((0x21).to_bytes(8, "little")),
            '"Binary"=hex:01,02,03,04,05',
            '"None"=hex(0):',
            '"BigEndian"=hex(5):00,00,00,2a',
            '"Link"=hex(6):41,00,42,00',
            '"Resource"=hex(8):01,02,03', ""]
    out += ["[\\ControlSet001\\Services\\netkvm]", '"Start"=dword:00000003', ""]
    out += ["[\\ControlSet001\\Control\\CriticalDeviceDatabase\\pci#ven_1af4&dev_1001&subsys_00021af4]",
            '"Service"="viostor"',
            '"ClassGUID"="{4D36E97B-E325-11CE-BFC1-08002BE10318}"', ""]
    out += ["[\\ControlSet002\\Services\\viostor]", '"Start"=dword:00000000', ""]
    out += ["[\\DriverDatabase\\DeviceIds\\PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00]",
            '"viostor.inf"=hex:01,ff,00,00', ""]
    out += ["[\\DriverDatabase\\DriverPackages\\viostor.inf_amd64_0123456789abcdef]",
            '@="viostor.inf"', '"Version"=hex:00,ff,09,00', ""]
    return "\n".join(out) + "\n"


def change() -> str:
    return "\n".join([
        "Windows Registry Editor Version 5.00", "",
        "[\\ControlSet001\\Services\\viostor]", '"Start"=dword:00000000', "",
        "[\\ControlSet001\\Services\\vioscsi]", '"Start"=dword:00000000', '"Type"=dword:00000001', "",
    ]) + "\n"


def with_parents(reg: str) -> str:
    """hivexregedit creates a key only under an existing parent: add every missing ancestor."""
    out, seen = [], set()
    for line in reg.split("\n"):
        if line.startswith("[\\") and line.endswith("]"):
            parts = line[2:-1].split("\\")
            for depth in range(1, len(parts)):
                parent = "\\".join(parts[:depth])
                if parent.lower() not in seen:
                    seen.add(parent.lower())
                    out += [f"[\\{parent}]", ""]
            seen.add("\\".join(parts).lower())
        out.append(line)
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(with_parents({"base": base, "change": change}[sys.argv[1]]()))
